"""Writing an output file so that a failure never costs the user a file.

- :class:`AtomicOutput`: the file is written to a temporary beside the target and renamed over
  it only once complete, flushed and fsynced. On any failure, an interrupt (SIGINT, SIGTERM) or
  a failed commit, the temporary is removed and an existing target is left byte for byte as it
  was. Temporaries are named ``.mlstm-HOST-PID-XXXX.tmp``; one left by a killed run (SIGKILL,
  power loss) is removed by the next run into the same directory on the same host once its
  process is gone.
- :class:`GuardedFile`: the file object HDF5 writes through. A full disk or a file-size limit
  inside HDF5's own flush corrupts the HDF5 library's state (h5py then crashes the process at
  exit); so write errors are recorded here and the write reported as done, HDF5 finishes and
  closes normally, and the recorded error is raised afterwards — the temporary is discarded.
- :func:`check_output_path`: refuses, before any computing, an output that is an input (same
  file, also through links), a directory, a FIFO or a device, or in a directory that cannot
  be written.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import socket
import stat
import sys
import tempfile
from collections.abc import Iterable
from typing import Any, BinaryIO

from ..errors import MlstmError, ReaderGone  # noqa: F401 (ReaderGone: raised here, and importable from here)

TEMP_PREFIX = ".mlstm-"
TEMP_SUFFIX = ".tmp"


def _host() -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in socket.gethostname())[:40] or "host"


def write_error(path: str, exc: OSError) -> MlstmError:
    """``path: cannot write the output: No space left on device`` (the errno's text)."""
    reason = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
    return MlstmError(f"{path}: cannot write the output: {reason}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def remove_stale_temporaries(directory: str) -> list[str]:
    """Remove ``.mlstm-HOST-PID-*.tmp`` files of this host whose process no longer exists."""
    prefix = f"{TEMP_PREFIX}{_host()}-"
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(prefix) and name.endswith(TEMP_SUFFIX)):
            continue
        pid_text = name[len(prefix) :].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _pid_alive(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(directory, name))
            removed.append(name)
    return removed


def is_temporary(name: str) -> bool:
    """Whether a file name is one of mlstm's temporaries (never an output)."""
    base = os.path.basename(name)
    return base.startswith(TEMP_PREFIX) and base.endswith(TEMP_SUFFIX)


class AtomicOutput:
    """A temporary file beside ``path`` that becomes ``path`` only on :meth:`commit`.

    ``path`` '-' sends the finished file's bytes to stdout instead. Whatever happens before
    or during the commit, an existing file at ``path`` is left as it was and the temporary is
    removed. Write errors (``OSError``: a full disk, a file-size limit, a read-only or vanished
    directory) come out as one :class:`MlstmError` naming ``path`` and the reason.
    """

    def __init__(self, path: str, stdout: BinaryIO | None = None):
        self.path = path
        self._stdout = stdout
        shown = "-o -" if path == "-" else path
        directory = os.path.dirname(os.path.abspath(path)) if path != "-" else None
        if directory is not None:
            remove_stale_temporaries(directory)
        try:
            fd, self.tmp = tempfile.mkstemp(
                prefix=f"{TEMP_PREFIX}{_host()}-{os.getpid()}-", suffix=TEMP_SUFFIX, dir=directory
            )
        except OSError as exc:
            where = directory if directory is not None else "the temporary directory"
            raise MlstmError(
                f"{shown}: cannot create a file in {where}: {os.strerror(exc.errno or errno.EIO)}"
            ) from None
        os.close(fd)

    def commit(self) -> None:
        from .. import signals

        try:
            signals.check()  # an interrupt that a library swallowed still stops the commit
            if self.path == "-":
                out = self._stdout if self._stdout is not None else sys.stdout.buffer
                with open(self.tmp, "rb") as fh:
                    _copy_to(fh, out)
            else:
                atomic_replace(self.tmp, self.path)
        except BrokenPipeError:
            raise ReaderGone() from None
        except OSError as exc:
            raise write_error(self.path if self.path != "-" else "standard output", exc) from None
        finally:
            self.discard()

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)

    def __enter__(self) -> AtomicOutput:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc_type is None:
            self.commit()
            return
        self.discard()
        if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
            raise write_error(self.path, exc) from None


def _copy_to(source: BinaryIO, out: BinaryIO) -> None:
    """Copy to ``out`` with plain write calls on its descriptor where it has one: a buffered
    write of a large block into a pipe whose reader has gone can report success."""
    try:
        out.flush()
        fd = out.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    while chunk := source.read(1 << 20):
        if fd is None:
            out.write(chunk)
            continue
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]
    out.flush()


def atomic_replace(tmp: str, path: str) -> None:
    """fsync ``tmp``, give it the permissions a new file would get, and rename it over ``path``."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    try:
        dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class GuardedFile(io.RawIOBase):
    """A read-write file for h5py's ``fileobj`` driver that never reports a write failure to HDF5.

    The first ``OSError`` of a write or truncate is kept in :attr:`error`; later writes are
    skipped (the position still advances) and reads past the end read zeros, as HDF5's own
    driver does. The owner raises :attr:`error` once HDF5 has closed the file.
    """

    def __init__(self, path: str):
        super().__init__()
        self._fh = open(path, "w+b", buffering=0)  # noqa: SIM115 - closed by close()
        self.error: OSError | None = None

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        return self._fh.seek(pos, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        done = self._fh.readinto(view) or 0
        if done < len(view):
            view[done:] = bytes(len(view) - done)
            self._fh.seek(len(view) - done, os.SEEK_CUR)
        return len(view)

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if self.error is None:
            try:
                done = 0
                while done < len(view):
                    done += self._fh.write(view[done:])
                return len(view)
            except OSError as exc:
                self.error = exc
        self._fh.seek(len(view), os.SEEK_CUR)
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        size = self.tell() if size is None else size
        if self.error is None:
            try:
                return self._fh.truncate(size)
            except OSError as exc:
                self.error = exc
        return size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        super().close()

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_output_path(output: str, inputs: Iterable[str] = ()) -> None:
    """Refuse an output that would destroy an input or cannot be a regular file, before computing."""
    if output == "-":
        if sys.stdout is not None and sys.stdout.isatty():
            raise MlstmError(
                "refusing to write a binary MAT/HDF5 file to a terminal; redirect it (> out.mat) or pipe it", "-o -"
            )
        return
    where = f"-o {output}"
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        raise MlstmError(f"the directory {os.path.dirname(output) or '.'!r} does not exist", where)
    try:
        st = os.stat(output)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise MlstmError(f"cannot check the output path: {os.strerror(exc.errno or errno.EIO)}", where) from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise MlstmError("expected a file name, found a directory", where)
        if not stat.S_ISREG(st.st_mode):
            kind = (
                "a FIFO"
                if stat.S_ISFIFO(st.st_mode)
                else "a device"
                if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                else "a socket"
                if stat.S_ISSOCK(st.st_mode)
                else "not a regular file"
            )
            raise MlstmError(f"expected a regular file to write, found {kind} (use -o - for a pipe)", where)
        for path in inputs:
            if path != "-" and _identity(path) == (st.st_dev, st.st_ino):
                raise MlstmError(f"is the input {path!r}; writing it would destroy that input", where)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise MlstmError(f"the directory {os.path.dirname(output) or '.'!r} is not writable", where)
