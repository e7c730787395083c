"""mlstm: MATLAB's Deep Learning Toolbox ``lstm`` for Python and the shell."""

from typing import TYPE_CHECKING, Any

from .errors import MlstmError, MlstmTypeError

if TYPE_CHECKING:  # type checkers see the signatures; at run time they are imported on first use
    from .api import lstm as lstm
    from .runfile import RunReport as RunReport
    from .runfile import run_file as run_file

__version__ = "0.1.0"
__all__ = ["lstm", "run_file", "RunReport", "MlstmError", "MlstmTypeError", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so `mlstm --help` does not pay for NumPy.
    if name == "lstm":
        from .api import lstm

        return lstm
    if name in ("run_file", "RunReport"):
        from . import runfile

        return getattr(runfile, name)
    raise AttributeError(f"module 'mlstm' has no attribute {name!r}")
