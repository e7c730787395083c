"""The ``mlstm`` command line: thin Click commands over the library.

    base.py     the group and the options several commands share
    run.py      run                                (mlstm.runfile)
    inspect.py  info, check, verify, plot, doctor  (mlstm.checkfiles, mlstm.plot, mlstm.doctor)
    batch.py    batch                              (mlstm.batch)
    convert.py  convert                            (mlstm.convert)

Every failure the library reports (an :class:`MlstmError`) and every usage error becomes one
``Error: ...`` line on stderr with exit status 2; ``--debug`` shows the traceback instead.
Exit statuses: 0 done, 1 mismatch or failed batch inputs, 2 bad input, 130 SIGINT, 143 SIGTERM,
141 when the reader of standard output went away.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback

import click

from ..errors import MlstmError
from . import batch, convert, inspect, run  # noqa: F401 - each registers its commands
from .base import NO_COMMAND, cli, echo_err

__all__ = ["cli", "main"]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # pragma: no cover - no stdout at all
        pass


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning every error into one ``Error:`` line and exit 2."""
    from .. import signals
    from ..errors import ReaderGone

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    signals.install()
    try:
        code = cli.main(args=args, prog_name="mlstm", standalone_mode=False)
        signals.check()  # a signal whose exception a library swallowed still counts
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except NO_COMMAND:
        commands = ", ".join(cli.list_commands(click.Context(cli)))
        echo_err(f"Error: mlstm: expected a command ({commands}); see mlstm --help")
        code = 2
    except click.ClickException as exc:
        if debug:
            traceback.print_exc()
        ctx = getattr(exc, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None and ctx.command_path else ""
        echo_err(f"Error: {where}{_one_line(exc.format_message())}")
        code = 2
    except MlstmError as exc:
        if debug:
            traceback.print_exc()
        echo_err(f"Error: {_one_line(str(exc))}")
        code = 2
    except (signals.Interrupted, KeyboardInterrupt) as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        echo_err(f"mlstm: interrupted by {signals.NAMES.get(signum, signum)}; no output was written")
        code = 128 + int(signum)
    except click.Abort:  # click's prompt interrupted (Ctrl-C or end of input)
        echo_err("Error: aborted")
        code = 2
    except (BrokenPipeError, ReaderGone):
        # The reader went away (`mlstm run ... -o - | head -c 10`): stop quietly with the status of
        # a process killed by SIGPIPE, as cat and other Unix tools do; Python must not complain
        # again when it flushes stdout at exit.
        _silence_stdout()
        code = 128 + signal.SIGPIPE
    except MemoryError:
        if debug:
            traceback.print_exc()
        echo_err("Error: out of memory; for long sequences use MAT v7.3/HDF5 input with --chunk-steps")
        code = 2
    except Exception as exc:  # a failure we did not foresee: still one line, never a traceback
        if debug:
            traceback.print_exc()
        echo_err(f"Error: unexpected {type(exc).__name__}: {_one_line(str(exc))} (rerun with --debug for details)")
        code = 2
    sys.exit(code if isinstance(code, int) else 0)
