"""CPU plans chosen by measurement (mlstm/engines/cpu_plans.py): every plan against the float64
reference, a measured run's output is one plan's from first step to last (so later runs, which
reuse the plan, give the same bits, as does the same run in blocks), and the plan file is
written, read, and ignored when it is corrupt, foreign, or of another version."""

import importlib.util
import json
import os
from dataclasses import replace

import numpy as np
import pytest
from reference import random_problem, reference_lstm

from mlstm import api, options
from mlstm.engines import cpu_plans, numpy_engine
from mlstm.errors import MlstmError
from mlstm.formats import resolve

COMPILED = importlib.util.find_spec("mlstm.engines._cpu_lstm") is not None
pytestmark = pytest.mark.skipif(not COMPILED, reason="the compiled loop is not built")
TOL = {np.float64: dict(rtol=1e-12, atol=1e-13), np.float32: dict(rtol=1e-5, atol=1e-6)}  # BEHAVIOUR.md §7


@pytest.fixture
def measuring(monkeypatch, tmp_path):
    """Small problems measured (as big ones are), a plan file of the test's own, two threads."""
    monkeypatch.setattr(cpu_plans, "MEASURE_MIN_WORK", 0)
    monkeypatch.setattr(cpu_plans, "PROBE_WORK", 1)
    monkeypatch.setattr(cpu_plans, "TRIAL_SECONDS", 0.0001)
    monkeypatch.setenv("MLSTM_NUM_THREADS", "2")
    monkeypatch.delenv("MLSTM_CPU_PLAN", raising=False)
    path = tmp_path / "plans.json"
    monkeypatch.setenv("MLSTM_CPU_CACHE", str(path))
    cpu_plans.forget()
    yield path
    cpu_plans.forget()


def engine_and_problem(dtype, H=40, B=3, T=12, C=5, seed=3):
    args = random_problem(np.random.default_rng(seed), C=C, H=H, B=B, T=T, scale=0.3, dtype=dtype)
    p = resolve(*args, "CBT")
    eng = numpy_engine.prepare(p.weights, p.recurrent_weights, p.bias, "sigmoid", "tanh", p.dtype)
    assert eng.loop is not None
    return eng, p, args


def run(eng, p):
    y, h, c = eng.run(p.x, p.hidden_state, p.cell_state)
    return p.restore(y, h, c)


def assert_matches_reference(got, args, dtype):
    for g, w in zip(got, reference_lstm(*args, "CBT")):
        np.testing.assert_allclose(g, w, **TOL[dtype])


@pytest.mark.parametrize("plan", ["serial", "single", "batch", "units"])
@pytest.mark.parametrize("threads", ["2", "3"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("H,B", [(40, 3), (9, 20), (130, 1)])
def test_every_plan_matches_reference(monkeypatch, plan, threads, dtype, H, B):
    monkeypatch.setenv("MLSTM_CPU_PLAN", plan)
    monkeypatch.setenv("MLSTM_NUM_THREADS", threads)
    eng, p, args = engine_and_problem(dtype, H=H, B=B)
    assert_matches_reference(run(eng, p), args, dtype)
    assert eng.chosen_plan.kind == plan and eng.chosen_plan.source == "forced"
    assert "plan=forced" in eng.detail and "blas=OpenBLAS" in eng.detail


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_measured_plan_is_right_and_kept(measuring, dtype):
    eng, p, args = engine_and_problem(dtype)
    first = run(eng, p)
    assert eng.chosen_plan.source == "measured", eng.detail
    assert "plan=measured (µs/step: single" in eng.detail, eng.detail
    assert_matches_reference(first, args, dtype)
    chosen = eng.chosen_plan
    # The trial's output was thrown away: the first run is the chosen plan's, step for step, so a
    # later run (which reuses the plan) gives the same bits.
    again = run(eng, p)
    assert eng.chosen_plan.source == "cached" and eng.chosen_plan.kind == chosen.kind
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    stored = json.loads(measuring.read_text())
    assert stored["format"] == "mlstm-cpu-plans"
    key = key_for(dtype)
    assert cpu_plans.cpu_model() in key and np.dtype(dtype).name in key
    assert stored["plans"][key]["plan"] == chosen.kind and stored["plans"][key]["confirmations"] == 1
    cpu_plans.forget()  # a new process: one measurement is not trusted yet, so it measures again
    run(eng, p)
    assert eng.chosen_plan.source == "measured"


ZEN = (
    "processor\t: {n}\nvendor_id\t: AuthenticAMD\ncpu family\t: {family}\nmodel\t\t: {model}\n"
    "model name\t: AMD EPYC\nstepping\t: 1\n\n"
)


def test_two_cpus_that_share_a_name_get_different_plan_keys():
    """Two VMs both named "AMD EPYC" (Zen 4 and Zen 5, seen on one machine kind) must not share
    measured plans: the key carries x86's family, model and stepping; ARM's "Model" line, after
    every processor's block, still names the CPU."""
    zen4 = cpu_plans.describe_cpu("".join(ZEN.format(n=n, family=25, model=17) for n in range(2)))
    zen5 = cpu_plans.describe_cpu("".join(ZEN.format(n=n, family=26, model=2) for n in range(2)))
    assert zen4 == "AMD EPYC (family 25 model 17 stepping 1)"
    assert zen5 == "AMD EPYC (family 26 model 2 stepping 1)"
    arm = "processor\t: 0\nFeatures\t: fp asimd\n\nHardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n"
    assert cpu_plans.describe_cpu(arm) == "Raspberry Pi 4 Model B Rev 1.4"


def test_a_plan_is_trusted_once_two_processes_measured_it(measuring, monkeypatch):
    """A measurement made while another process held a core can pick the wrong plan: the file's
    plan is used only once two measurements (in separate processes) agreed on it."""
    winners = iter(["batch", "units", "units"])

    def measured(plans, trial, steps):
        kind = next(winners)
        return next(replace(plan, source="measured") for plan in plans if plan.kind == kind)

    monkeypatch.setattr(cpu_plans, "measure", measured)
    key = key_for(np.float64)
    seen = []
    for _ in range(4):  # four processes in turn
        cpu_plans.forget()
        eng, p, args = engine_and_problem(np.float64)
        assert_matches_reference(run(eng, p), args, np.float64)
        entry = json.loads(measuring.read_text())["plans"][key]
        seen.append((eng.chosen_plan.source, eng.chosen_plan.kind, entry["plan"], entry["confirmations"]))
    assert seen == [
        ("measured", "batch", "batch", 1),
        ("measured", "units", "units", 1),  # disagrees: replaced, not confirmed
        ("measured", "units", "units", 2),  # agrees: confirmed
        ("cached", "units", "units", 2),  # from now on the file's plan runs without measuring
    ]


def test_blocked_run_gives_the_bits_of_one_call(measuring, monkeypatch):
    """The pipeline's blocks (plan_steps = the whole run): the first block measures, every block
    runs the plan chosen, and the result is bit for bit the one call's."""
    args = random_problem(np.random.default_rng(5), C=4, H=40, B=3, T=40, scale=0.3, dtype=np.float64)
    monkeypatch.setattr(numpy_engine, "BLOCK_BYTES", 3 * (4 + 160) * 8 * 4)  # 4 steps per projection block
    opts = options.parse_options([("DataFormat", "CBT")])
    blocked = api.compute(*args, opts, chunk_steps=8)
    assert "plan=measured" in blocked.detail, blocked.detail
    whole = api.compute(*args, opts)
    assert "plan=cached" in whole.detail
    for a, b in zip((blocked.Y, blocked.hiddenState, blocked.cellState), (whole.Y, whole.hiddenState, whole.cellState)):
        np.testing.assert_array_equal(a, b)
    assert_matches_reference((whole.Y, whole.hiddenState, whole.cellState), args, np.float64)


def key_for(dtype, B=3, C=5, H=40, threads=2):
    """The plan file's key for engine_and_problem's shape, with the recurrent kernel that runs it
    (packed by default: 4H * H * B is past the inline size)."""
    isa = numpy_engine.compiled_loop()[np.dtype(dtype)].packed.isa
    return cpu_plans.plan_key(np.dtype(dtype), B, C, H, threads, f"packed {isa}")


def seed_file(path, key, plan="batch", threads=2):
    data = {
        "format": "mlstm-cpu-plans",
        "version": cpu_plans.CACHE_VERSION,
        "plans": {key: {"plan": plan, "threads": threads}},
    }
    path.write_text(json.dumps(data))


def test_plan_file_is_read(measuring):
    eng, p, args = engine_and_problem(np.float32)
    seed_file(measuring, key_for(np.float32), "units", 2)
    assert_matches_reference(run(eng, p), args, np.float32)
    assert eng.chosen_plan.source == "cached" and eng.last_plan == "units split, 2 threads"
    assert "plan=cached" in eng.detail


@pytest.mark.parametrize(
    "content,replaced",
    [
        ("{not json", True),  # corrupt: ours to replace
        (b"\xff\xfe\x00garbage", True),
        (json.dumps({"format": "someone-else", "plans": {}}), False),  # foreign: left alone
        (json.dumps([1, 2, 3]), False),
        (json.dumps({"format": "mlstm-cpu-plans", "version": 99, "plans": {}}), False),  # a newer version
        (json.dumps({"format": "mlstm-cpu-plans", "version": 1, "plans": {}}), True),  # older: stale
        (json.dumps({"format": "mlstm-cpu-plans", "version": 2, "plans": {}}), True),  # before placement
    ],
)
def test_bad_plan_file_is_ignored(measuring, content, replaced):
    if isinstance(content, bytes):
        measuring.write_bytes(content)
    else:
        measuring.write_text(content)
    before = measuring.read_bytes()
    eng, p, args = engine_and_problem(np.float64)
    assert_matches_reference(run(eng, p), args, np.float64)
    assert eng.chosen_plan.source == "measured"
    if replaced:
        assert json.loads(measuring.read_text())["format"] == "mlstm-cpu-plans"
    else:
        assert measuring.read_bytes() == before


def test_unknown_entries_are_ignored(measuring):
    key = key_for(np.float64)
    for plan, threads in (("warp", 2), ("units", 1000), ("units", "2")):
        cpu_plans.forget()
        seed_file(measuring, key, plan, threads)
        eng, p, _ = engine_and_problem(np.float64)
        run(eng, p)
        assert eng.chosen_plan.source == "measured", (plan, threads)


def test_cache_off_and_default_place(measuring, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("MLSTM_CPU_CACHE", "0")
    eng, p, _ = engine_and_problem(np.float64)
    run(eng, p)
    assert eng.chosen_plan.source == "measured"
    assert not (tmp_path / "xdg").exists() and not measuring.exists()
    cpu_plans.forget()
    monkeypatch.delenv("MLSTM_CPU_CACHE")
    run(eng, p)
    assert json.loads((tmp_path / "xdg" / "mlstm" / "cpu-plans.json").read_text())["plans"]
    cpu_plans.forget()
    monkeypatch.setenv("MLSTM_CPU_CACHE", str(tmp_path / "a-file" / "below-a-file.json"))
    (tmp_path / "a-file").write_text("")
    run(eng, p)  # cannot be written: the run goes on
    assert eng.chosen_plan.source == "measured"


def test_small_runs_follow_the_rules_and_never_measure(monkeypatch, tmp_path):
    monkeypatch.setenv("MLSTM_CPU_CACHE", str(tmp_path / "plans.json"))
    monkeypatch.delenv("MLSTM_CPU_PLAN", raising=False)
    cpu_plans.forget()
    eng, p, _ = engine_and_problem(np.float64)
    run(eng, p)
    assert eng.chosen_plan.source == "rule" and not (tmp_path / "plans.json").exists()


def test_forced_plan_names_are_checked(monkeypatch):
    monkeypatch.setenv("MLSTM_CPU_PLAN", "warp")
    eng, p, _ = engine_and_problem(np.float64)
    with pytest.raises(MlstmError, match="MLSTM_CPU_PLAN: expected one of auto, serial, single, batch, units"):
        run(eng, p)


def test_measure_keeps_the_fastest_and_the_simplest_on_a_tie():
    plans = cpu_plans.candidates(batch=8, hidden=64, cores=4, max_unit_threads=64, blas_threads=4)
    assert [(p.kind, p.threads) for p in plans] == [
        ("single", 1),
        ("serial", 1),
        ("batch", 4),
        ("units", 2),
        ("units", 4),
    ]
    budgets = []

    def trial(times):
        def run_one(plan, budget):
            budgets.append(budget)
            t = times[(plan.kind, plan.threads)]
            return None if t is None or (budget is not None and t > budget) else t

        return run_one

    times = {("single", 1): 1.0, ("serial", 1): 2.5, ("batch", 4): None, ("units", 2): 0.5, ("units", 4): 0.99}
    chosen = cpu_plans.measure(plans, trial(times), steps=10)
    assert (chosen.kind, chosen.threads, chosen.source) == ("units", 2, "measured")
    assert budgets[0] is None and budgets[1] == 2.0  # a plan is stopped at twice the fastest so far
    assert "serial >" in chosen.timings  # stopped: slower than its budget
    times[("units", 2)] = 0.985  # within 3% of the fastest: the simpler plan wins
    assert cpu_plans.measure(plans, trial(times), steps=10).kind == "single"
    nothing = {k: None for k in times}
    assert cpu_plans.measure(plans, trial(nothing), steps=10).kind == "serial"


def queued_trials(results):
    """A fake ``trial`` for :func:`cpu_plans.measure` and the list of plans it was called for:
    each plan's trials return its queue's values in turn, the last one from then on."""
    calls = []

    def run_one(plan, budget):
        key = (plan.kind, plan.threads)
        calls.append(key)
        queue = results[key]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return run_one, calls


def test_a_starved_trial_is_retried_after_the_others_and_kept_only_if_starved_again():
    """A threaded plan whose trial ran while its cores were away (Starved) gets STARVED_RETRIES
    more trials after every other one; what they measure decides, starved or not. (The unit
    split at 1.3 here is over PLAYOFF_WITHIN of the others: no playoff trials for it.)"""
    plans = cpu_plans.candidates(batch=8, hidden=64, cores=2, max_unit_threads=64, blas_threads=2)
    assert [(p.kind, p.threads) for p in plans] == [("single", 1), ("serial", 1), ("batch", 2), ("units", 2)]

    # the unit split starved in every round, then fast once its cores are back: it wins
    results = {
        ("single", 1): [1.0],
        ("serial", 1): [0.9],
        ("batch", 2): [1.5],
        ("units", 2): [cpu_plans.Starved(1.3)] * 3 + [0.5],
    }
    run_one, calls = queued_trials(results)
    chosen = cpu_plans.measure(plans, run_one, steps=10)
    assert (chosen.kind, chosen.threads) == ("units", 2), chosen.timings
    assert calls[-1] == ("units", 2) and calls.count(("units", 2)) == 4  # 3 rounds, then one retry
    assert "(starved)" not in chosen.timings
    # starved in every trial, retries included: the cores really are busy, the serial plan wins
    results = {("single", 1): [1.0], ("serial", 1): [0.9], ("batch", 2): [1.5], ("units", 2): [cpu_plans.Starved(1.3)]}
    run_one, calls = queued_trials(results)
    chosen = cpu_plans.measure(plans, run_one, steps=10)
    assert chosen.kind == "serial" and "unitsx2 1.3e+05 (starved)" in chosen.timings, chosen.timings
    assert calls.count(("units", 2)) == 3 + cpu_plans.STARVED_RETRIES
    # a plan that was not starved is not tried again
    results = {("single", 1): [1.0], ("serial", 1): [0.9], ("batch", 2): [1.5], ("units", 2): [1.3]}
    run_one, calls = queued_trials(results)
    cpu_plans.measure(plans, run_one, steps=10)
    assert calls.count(("units", 2)) == 3


def test_a_trial_whose_threads_got_no_cpu_is_starved(monkeypatch):
    """The engine's trial marks a threaded plan's estimate Starved when the process's CPU time
    over the timed part is under STARVED_SHARE of threads x wall time; a one-thread plan never."""
    from mlstm.engines import numpy_engine as engine_module

    monkeypatch.setenv("MLSTM_NUM_THREADS", "2")
    eng, p, _ = engine_and_problem(np.float32, H=64, B=4, T=400, C=8)
    monkeypatch.setattr(engine_module.time, "process_time", lambda: 0.0)  # no CPU time at all
    probe, most = cpu_plans.trial_steps(400, 400, 4 * 4 * 64 * (8 + 64))
    for plan, starved in ((cpu_plans.Plan("units", 2), True), (cpu_plans.Plan("single"), False)):
        estimate = eng._trial(plan, p.x[:most], p.hidden_state, p.cell_state, probe, 400, budget=None)
        assert estimate is not None and estimate > 0
        assert isinstance(estimate, cpu_plans.Starved) is starved, plan


def test_a_trial_estimates_the_run_and_a_hopeless_one_ends_after_its_warm_up(monkeypatch):
    """A trial (a warm-up, then about TRIAL_SECONDS timed) estimates the whole run; a plan whose
    warm-up predicts more than 4 times the budget is not run through: only its warm-up's steps
    run (counted, not timed)."""
    monkeypatch.setenv("MLSTM_NUM_THREADS", "2")
    eng, p, _ = engine_and_problem(np.float32, H=256, B=1, T=4000, C=64)
    plan = cpu_plans.Plan("single")
    probe, most = cpu_plans.trial_steps(4000, 4000, 1 * 4 * 256 * (64 + 256))
    assert most == 1000 and 1 <= probe < most
    ran: list[int] = []
    execute = eng._execute

    def counted(plan, x, *args, **kwargs):
        ran.append(x.shape[0])
        return execute(plan, x, *args, **kwargs)

    monkeypatch.setattr(eng, "_execute", counted)
    estimate = eng._trial(plan, p.x[:most], p.hidden_state, p.cell_state, probe, 4000, budget=None)
    assert estimate is not None and estimate > 0
    assert ran[0] == probe and len(ran) == 2 and probe < ran[1] <= most
    ran.clear()
    assert eng._trial(plan, p.x[:most], p.hidden_state, p.cell_state, probe, 4000, budget=estimate / 100) is None
    assert ran == [probe]  # the warm-up only
    assert cpu_plans.timed_steps(10, 0.001, 1000) == 100  # 10 ms at 0.1 ms a step
    assert cpu_plans.timed_steps(10, 0.5, 1000) == 10 and cpu_plans.timed_steps(10, 1e-6, 50) == 50


def test_verbose_run_names_the_plan_and_the_blas(tmp_path):
    from conftest import run_mlstm

    example = os.path.join(os.path.dirname(__file__), "..", "fixtures", "example", "input.mat")
    env = {"MLSTM_PURE_NUMPY": "", "MLSTM_CPU_PLAN": "single"}
    proc = run_mlstm("run", example, "-o", tmp_path / "o.mat", "-v", env=env, check=0)
    assert "loop=compiled (serial, BLAS at 1 thread" in proc.stderr, proc.stderr
    assert "plan=forced recurrent=inline blas=OpenBLAS" in proc.stderr, proc.stderr


def test_plans_are_remembered_per_recurrent_kernel(measuring, monkeypatch):
    """A plan measured with the BLAS computing the recurrent product is not reused for the packed
    kernel (their speeds differ), and -v says which computed it."""
    monkeypatch.setenv("MLSTM_CPU_KERNEL", "blas")
    eng, p, args = engine_and_problem(np.float64)
    assert_matches_reference(run(eng, p), args, np.float64)
    assert eng.chosen_plan.source == "measured" and "recurrent=blas gemm" in eng.detail
    monkeypatch.delenv("MLSTM_CPU_KERNEL")
    eng, p, args = engine_and_problem(np.float64)
    assert_matches_reference(run(eng, p), args, np.float64)
    assert eng.chosen_plan.source == "measured" and "recurrent=packed " in eng.detail
    stored = json.loads(measuring.read_text())["plans"]
    assert sorted(k.rsplit("| ", 1)[1] for k in stored) == sorted(["recurrent blas", f"recurrent {eng.last_kernel}"])


def test_one_allowed_thread_keeps_the_blas_at_one_thread(monkeypatch):
    """MLSTM_NUM_THREADS=1 (or a one-CPU allowance) means one thread: the BLAS's own threads
    included (the serial plan would leave OpenBLAS at its default count)."""
    monkeypatch.setenv("MLSTM_NUM_THREADS", "1")
    monkeypatch.delenv("MLSTM_CPU_PLAN", raising=False)
    eng, p, args = engine_and_problem(np.float32, H=64, B=32, T=400, C=16)
    seen = []
    blas = eng.loop.blas_threads
    real_set = blas.set

    def recording_set(n):
        seen.append(n)
        return real_set(n)

    monkeypatch.setattr(blas, "set", recording_set)
    assert_matches_reference(run(eng, p), args, np.float32)
    assert eng.chosen_plan.kind == "single" and eng.last_plan == "serial, BLAS at 1 thread"
    assert seen[:1] == [1]  # set to one thread for the run (and put back after)


def test_the_kernel_reported_is_the_one_the_loop_ran(monkeypatch):
    """Small products are multiplied inline by the serial loops whatever kernel is asked for, and
    -v says so; an unknown MLSTM_CPU_KERNEL or MLSTM_PACKED_ISA is an error, as MLSTM_CPU_PLAN's is."""
    monkeypatch.setenv("MLSTM_CPU_KERNEL", "packed")
    monkeypatch.setenv("MLSTM_CPU_PLAN", "serial")
    eng, p, args = engine_and_problem(np.float64, H=8, B=4)  # 4H * H * B = 1024: inline
    assert_matches_reference(run(eng, p), args, np.float64)
    assert eng.last_kernel == "inline"
    monkeypatch.setenv("MLSTM_CPU_PLAN", "units")  # the unit split has no inline path: packed
    run(eng, p)
    assert eng.last_kernel.startswith("packed ")
    for name, value in (("MLSTM_CPU_KERNEL", "mkl"), ("MLSTM_PACKED_ISA", "avx-512")):
        monkeypatch.setenv(name, value)
        with pytest.raises(MlstmError, match=f"{name}: expected one of .*found '{value}'"):
            run(eng, p)
        monkeypatch.delenv(name)


def test_close_contenders_get_more_trials_before_one_is_chosen():
    """On the Intel Xeon of benchmarks/RESULTS.md (family 6 model 167) the unit split's 10 ms
    trials at (C,H,B,T) = (256,512,64,128) float32 ranged 830-1300 µs/step against 700 in whole
    runs (a stall of a 4 ms scheduler tick at a barrier is +40% of a trial): one run in ten chose
    the batch split, 5-14% slower. So the plans within PLAYOFF_WITHIN of the fastest get
    PLAYOFF_TRIALS more trials each; the BLAS-threaded plan's come last."""
    plans = cpu_plans.candidates(batch=64, hidden=512, cores=2, max_unit_threads=64, blas_threads=2)
    results = {
        ("single", 1): [1.6],
        ("serial", 1): [1.4],
        ("batch", 2): [1.0],
        ("units", 2): [1.2, 1.25, 1.15, 0.9],  # unlucky in every round, then its real speed
    }
    run_one, calls = queued_trials(results)
    chosen = cpu_plans.measure(plans, run_one, steps=10)
    assert (chosen.kind, chosen.threads) == ("units", 2), chosen.timings
    assert calls.count(("units", 2)) == cpu_plans.TRIAL_ROUNDS + cpu_plans.PLAYOFF_TRIALS
    assert calls.count(("batch", 2)) == cpu_plans.TRIAL_ROUNDS + cpu_plans.PLAYOFF_TRIALS
    assert calls.count(("single", 1)) == cpu_plans.ALL_ROUNDS  # far behind: no more trials
    # the BLAS-threaded plan in the playoff: its trials after the other's (its threads linger)
    results = {("single", 1): [1.6], ("serial", 1): [1.05], ("batch", 2): [1.0], ("units", 2): [1.5]}
    run_one, calls = queued_trials(results)
    cpu_plans.measure(plans, run_one, steps=10)
    tail = calls[-2 * cpu_plans.PLAYOFF_TRIALS :]
    assert tail == [("batch", 2)] * cpu_plans.PLAYOFF_TRIALS + [("serial", 1)] * cpu_plans.PLAYOFF_TRIALS
    # three close plans: each gets the playoff's trials, so none is judged on fewer
    results = {("single", 1): [1.03], ("serial", 1): [2.0], ("batch", 2): [1.0, 1.0, 1.0, 0.99], ("units", 2): [1.01]}
    run_one, calls = queued_trials(results)
    cpu_plans.measure(plans, run_one, steps=10)
    rounds = cpu_plans.TRIAL_ROUNDS + cpu_plans.PLAYOFF_TRIALS
    assert [calls.count(k) for k in [("single", 1), ("batch", 2), ("units", 2)]] == [rounds] * 3
    assert calls.count(("serial", 1)) == cpu_plans.ALL_ROUNDS  # far behind
    # our own threads' playoff comes before the BLAS-threaded plan's rounds (its threads linger)
    results = {("single", 1): [1.6], ("serial", 1): [1.1], ("batch", 2): [1.0], ("units", 2): [1.2]}
    run_one, calls = queued_trials(results)
    cpu_plans.measure(plans, run_one, steps=10)
    first_serial = calls.index(("serial", 1))
    assert calls[:first_serial].count(("units", 2)) == rounds and calls[:first_serial].count(("batch", 2)) == rounds
    assert calls[first_serial:] == [("serial", 1)] * rounds  # its rounds, then its own playoff trials
    # far apart: no playoff
    results = {("single", 1): [1.6], ("serial", 1): [1.4], ("batch", 2): [1.0], ("units", 2): [2.0]}
    run_one, calls = queued_trials(results)
    cpu_plans.measure(plans, run_one, steps=10)
    assert calls.count(("batch", 2)) == cpu_plans.TRIAL_ROUNDS
