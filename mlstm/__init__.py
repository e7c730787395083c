"""mlstm: MATLAB's Deep Learning Toolbox ``lstm`` for Python and the shell."""

from typing import TYPE_CHECKING, Any

from .errors import MlstmError, MlstmTypeError

if TYPE_CHECKING:  # type checkers see the signatures; at run time they are imported on first use
    from .api import lstm as lstm
    from .batch import prepare_batch as prepare_batch
    from .checkfiles import check_files as check_files
    from .checkfiles import verify_files as verify_files
    from .convert import convert_file as convert_file
    from .runfile import RunReport as RunReport
    from .runfile import run_file as run_file

__version__ = "0.1.0"
__all__ = [
    "lstm",
    "run_file",
    "RunReport",
    "prepare_batch",
    "verify_files",
    "check_files",
    "convert_file",
    "MlstmError",
    "MlstmTypeError",
    "__version__",
]
# Where each public name lives; imported on first use, so `mlstm --help` does not pay for NumPy.
_LAZY = {
    "lstm": "api",
    "run_file": "runfile",
    "RunReport": "runfile",
    "prepare_batch": "batch",
    "verify_files": "checkfiles",
    "check_files": "checkfiles",
    "convert_file": "convert",
}


def __getattr__(name: str) -> Any:
    # Imported on first use, so `mlstm --help` does not pay for NumPy.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'mlstm' has no attribute {name!r}")
