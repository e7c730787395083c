"""mlstm: MATLAB's Deep Learning Toolbox ``lstm`` for Python and the shell."""

from typing import TYPE_CHECKING, Any

from .errors import MlstmError, MlstmTypeError

if TYPE_CHECKING:  # type checkers see lstm's signature; at run time it is imported on first use
    from .api import lstm as lstm

__version__ = "0.1.0"
__all__ = ["lstm", "MlstmError", "MlstmTypeError", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so `mlstm --help` does not pay for NumPy.
    if name == "lstm":
        from .api import lstm

        return lstm
    raise AttributeError(f"module 'mlstm' has no attribute {name!r}")
