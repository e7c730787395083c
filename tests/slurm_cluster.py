"""A one-node SLURM cluster for the tests: munged, slurmctld and slurmd started as root from a
temporary directory (configuration, state, spool, logs, a MUNGE key and socket of its own) on
free ports, so that it touches nothing of the machine's own SLURM or MUNGE.

The node has 2 CPUs and 2 GPU generic resources backed by /dev/null and /dev/zero (so that the
README's ``#SBATCH --gres=gpu:1`` is accepted; no GPU is used), and a scheduler that starts
array tasks as soon as a CPU frees (``batch_sched_delay=0``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo", "scontrol")
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def slurm_or_skip() -> dict[str, str]:
    """Program name -> path. Missing programs or not root: a skip, or a failure under
    MLSTM_REQUIRE_SLURM=1 (which .ci/run sets, so CI cannot pass with these tests skipped)."""
    found = {name: shutil.which(name, path=SEARCH_PATH) for name in PROGRAMS}
    missing = [name for name, path in found.items() if path is None]
    reason = ""
    if missing:
        reason = f"SLURM/MUNGE programs not installed: {', '.join(missing)} (apt-get install slurm-wlm munge)"
    elif os.geteuid() != 0:
        reason = "a test SLURM cluster (slurmd) must run as root"
    if reason:
        if os.environ.get("MLSTM_REQUIRE_SLURM") == "1":
            pytest.fail(f"MLSTM_REQUIRE_SLURM=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return found  # type: ignore[return-value]


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Cluster:
    def __init__(self, programs: dict[str, str]):
        self.programs = programs
        # munged wants its socket's directory open to all (pytest's temporary folders are 0700).
        self.root = tempfile.mkdtemp(prefix="mlstm-slurm-")
        os.chmod(self.root, 0o755)
        self.node = socket.gethostname().split(".")[0]
        self.conf = os.path.join(self.root, "slurm.conf")
        self.env = {**os.environ, "SLURM_CONF": self.conf}
        self.daemons: list[subprocess.Popen] = []

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def _daemon(self, name: str, *args: str) -> None:
        with open(self.path("log", f"{name}.out"), "wb") as out:
            self.daemons.append(
                subprocess.Popen([self.programs[name], *args], stdout=out, stderr=subprocess.STDOUT, env=self.env)
            )

    def start(self) -> None:
        for d in ("state", "spool", "log"):
            os.makedirs(self.path(d))
        key = self.path("munge.key")
        with open(key, "wb") as fh:
            fh.write(os.urandom(1024))
        os.chmod(key, 0o400)
        munge_socket = self.path("munge.socket")
        self._daemon(
            "munged",
            "--foreground",
            f"--key-file={key}",
            f"--socket={munge_socket}",
            f"--pid-file={self.path('munged.pid')}",
            f"--log-file={self.path('log', 'munged.log')}",
            f"--seed-file={self.path('munged.seed')}",
        )
        self._wait(lambda: os.path.exists(munge_socket), "munged to create its socket")
        ctld_port, slurmd_port = _free_ports(2)
        with open(self.conf, "w") as fh:
            fh.write(
                f"""ClusterName=mlstmtest
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={self.path("state")}
SlurmdSpoolDir={self.path("spool")}
SlurmctldPidFile={self.path("slurmctld.pid")}
SlurmdPidFile={self.path("slurmd.pid")}
SlurmctldLogFile={self.path("log", "slurmctld.log")}
SlurmdLogFile={self.path("log", "slurmd.log")}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
SchedulerParameters=batch_sched_delay=0
ReturnToService=2
KillWait=5
GresTypes=gpu
NodeName={self.node} NodeAddr=127.0.0.1 CPUs=2 Gres=gpu:2 State=UNKNOWN
PartitionName=test Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
"""
            )
        with open(self.path("gres.conf"), "w") as fh:
            fh.write("Name=gpu File=/dev/null\nName=gpu File=/dev/zero\n")
        self._daemon("slurmctld", "-D", "-c", "-f", self.conf)
        self._daemon("slurmd", "-D", "-N", self.node, "-f", self.conf)
        self._wait(lambda: self.run("sinfo", "-h", "-o", "%t", check=False).stdout.strip() == "idle", "an idle node")

    def _wait(self, ready, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline or any(d.poll() is not None for d in self.daemons):
                raise RuntimeError(f"test SLURM cluster: no {what} after {timeout:.0f} s\n{self.logs()}")
            time.sleep(0.1)

    def logs(self) -> str:
        text = []
        for name in sorted(os.listdir(self.path("log"))):
            with open(self.path("log", name), errors="replace") as fh:
                text.append(f"--- {name}\n" + "".join(fh.readlines()[-15:]))
        return "\n".join(text)

    def run(self, *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        env = {**self.env, **kwargs.pop("env", {})}
        proc = subprocess.run(
            [self.programs.get(args[0], args[0]), *args[1:]],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            **kwargs,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: exit {proc.returncode}: {proc.stderr}\n{self.logs()}")
        return proc

    def submit(self, *args: str, cwd: str, env: dict[str, str] | None = None) -> str:
        """sbatch [OPTIONS...] SCRIPT (options override the script's #SBATCH lines); the job id."""
        return self.run("sbatch", "--parsable", *args, cwd=cwd, env=env or {}).stdout.strip().split(";")[0]

    def active(self, job: str) -> list[str]:
        """'TASK STATE' of the job's array tasks still pending or running."""
        proc = self.run("squeue", "-h", "-r", "-j", job, "-o", "%K %T", check=False)
        return proc.stdout.splitlines() if proc.returncode == 0 else []

    def wait(self, job: str, timeout: float = 40.0) -> None:
        self._wait(lambda: not self.active(job), f"end of job {job}", timeout)

    def stop(self) -> None:
        with contextlib.suppress(Exception):  # no job may outlive its cluster
            self.run("scancel", "--partition=test", check=False)
            self._wait(lambda: not self.run("squeue", "-h", check=False).stdout.strip(), "empty queue", 15)
        for daemon in reversed(self.daemons):
            daemon.terminate()
        for daemon in reversed(self.daemons):
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        shutil.rmtree(self.root, ignore_errors=True)
