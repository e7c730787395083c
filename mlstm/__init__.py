"""mlstm: MATLAB's Deep Learning Toolbox ``lstm`` for Python and the shell."""

from .api import lstm
from .errors import MlstmError, MlstmTypeError

__version__ = "0.1.0"
__all__ = ["lstm", "MlstmError", "MlstmTypeError", "__version__"]
