"""mlstm: MATLAB's Deep Learning Toolbox ``lstm`` for Python and the shell."""

from typing import Any

from .errors import MlstmError, MlstmTypeError

__version__ = "0.1.0"
__all__ = ["lstm", "MlstmError", "MlstmTypeError", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so `mlstm --help` does not pay for NumPy.
    if name == "lstm":
        from .api import lstm

        return lstm
    raise AttributeError(f"module 'mlstm' has no attribute {name!r}")
