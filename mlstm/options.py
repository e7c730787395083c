"""MATLAB name-value options: case-insensitive names and values, unambiguous prefixes.

``parse_options`` is shared by the Python API (keyword arguments) and the CLI
(``Name=Value`` tokens), so both accept and reject exactly the same things.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .errors import MlstmError

ARGUMENT_NAMES = ("X", "H0", "C0", "weights", "recurrentWeights", "bias")
GATE_ACTIVATIONS = ("sigmoid", "hard-sigmoid")
STATE_ACTIVATIONS = ("tanh", "softsign", "relu")

# Name -> allowed values (None: free text, checked by formats.py).
OPTION_CHOICES: dict[str, tuple[str, ...] | None] = {
    "DataFormat": None,
    "StateActivationFunction": STATE_ACTIVATIONS,
    "GateActivationFunction": GATE_ACTIVATIONS,
}


@dataclass(frozen=True)
class Options:
    """Resolved name-value options; ``data_format`` is None when not given."""

    data_format: str | None = None
    state_activation: str = "tanh"
    gate_activation: str = "sigmoid"


def resolve_name(name: str) -> str:
    """Full option name for ``name``: exact or an unambiguous prefix, any case."""
    key = name.strip().lower()
    exact = [full for full in OPTION_CHOICES if full.lower() == key]
    if exact:
        return exact[0]
    matches = [full for full in OPTION_CHOICES if key and full.lower().startswith(key)]
    valid = ", ".join(OPTION_CHOICES)
    if not matches:
        raise MlstmError(
            f"unknown name-value option {name!r}; valid names are {valid} "
            f"(expected one of them or an unambiguous prefix, found {name!r})"
        )
    if len(matches) > 1:
        raise MlstmError(
            f"ambiguous name-value option {name!r} matches {', '.join(matches)}; valid names are {valid} "
            f"(expected an unambiguous prefix, found {name!r})"
        )
    return matches[0]


def resolve_value(full_name: str, value: object) -> str:
    """Check an option's value: a string, and one of the choices where there are choices."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        raise MlstmError(
            f"expected a character vector or string scalar, found {type(value).__name__} {value!r}",
            argument=full_name,
        )
    choices = OPTION_CHOICES[full_name]
    if choices is None:
        return value
    lowered = value.strip().lower()
    if lowered not in choices:
        raise MlstmError(
            f"expected one of {', '.join(repr(c) for c in choices)}, found {value!r}",
            argument=full_name,
        )
    return lowered


def parse_options(pairs: Iterable[tuple[str, object]]) -> Options:
    """Resolve ``(name, value)`` pairs into :class:`Options`.

    A name given twice (even under two spellings, ``DataFormat`` and ``DataF``)
    is an error, as in MATLAB.
    """
    seen: dict[str, str] = {}
    values: dict[str, str] = {}
    for name, value in pairs:
        full = resolve_name(name)
        if full in seen:
            raise MlstmError(
                f"name-value option {full} given twice (as {seen[full]!r} and {name!r}); expected each name once"
            )
        seen[full] = name
        values[full] = resolve_value(full, value)
    return Options(
        data_format=values.get("DataFormat"),
        state_activation=values.get("StateActivationFunction", "tanh"),
        gate_activation=values.get("GateActivationFunction", "sigmoid"),
    )


def split_name_value(token: str) -> tuple[str, str]:
    """Split a command-line ``Name=Value`` token."""
    name, sep, value = token.partition("=")
    if not sep or not name:
        raise MlstmError(f"expected a Name=Value token, found {token!r}")
    return name, value
