"""The one error type the library raises for bad input.

The CLI turns an :class:`MlstmError` into a single ``Error: ...`` line on
stderr and exit status 2; the Python API lets it propagate. It subclasses
``ValueError`` (and :class:`MlstmTypeError` also ``TypeError``) so callers can
catch it the way they would catch NumPy's own errors.
"""

from __future__ import annotations


class MlstmError(ValueError):
    """Bad input or bad invocation.

    ``argument`` names the MATLAB argument the message is about (``"X"``,
    ``"H0"``, ``"DataFormat"``, ...) when there is one, so a front end that
    knows where the argument came from (a file and a variable) can say so.
    ``detail`` is the message without the argument's name in front.
    """

    def __init__(self, detail: str, argument: str | None = None):
        self.detail = detail
        self.argument = argument
        super().__init__(f"{argument}: {detail}" if argument else detail)


def failure_text(err: BaseException) -> str:
    """One line for a failure that ends one input of many (batch, verify): an MlstmError's own
    text, anything else named as an internal error."""
    text = str(err) if isinstance(err, MlstmError) else f"internal error {type(err).__name__}: {err}"
    return " ".join(text.split())


class ReaderGone(BaseException):
    """The process reading our standard output went away (EPIPE). A BaseException so that no
    handler on the way (click turns OSError EPIPE into exit status 1) mistakes it for bad input.
    Here, not in mlstm.io, so that the command line can catch it without importing NumPy."""


class MlstmTypeError(MlstmError, TypeError):
    """An input of the wrong class (integer, complex, char, cell, ...)."""
