"""The inputs of one run: which files, which variable plays which MATLAB argument, and which
file wins when several hold it.

- :func:`split_tokens` separates INPUT files from ``Name=Value`` options on a command line;
  :func:`parse_var_mappings` reads ``--var ROLE=NAME``.
- :class:`Inputs` opens the files and finds each argument: a variable in an input file wins
  over the same variable in the ``--weights`` file; among several input files, the first
  named wins (issue #15's rule, which replaced an error). The command line says which in a
  notice (``-q`` leaves it to ``-v``'s :attr:`Inputs.notes`), so the choice is never silent.
  With weights converted from ONNX, PyTorch or Keras (whose LSTMs start from zero states) a
  missing ``H0``/``C0`` is zeros; MATLAB-layout inputs must give them, as MATLAB's ``lstm``
  demands.
- Errors about an argument are put in front of the file and variable it came from
  (:meth:`Inputs.locate`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .errors import MlstmError
from .options import ARGUMENT_NAMES, OPTION_CHOICES, parse_options, split_name_value

ROLE_LOOKUP = {role.lower(): role for role in ARGUMENT_NAMES}
CONVERTED = "converted weights"  # the kind of a MemoryFile read from ONNX, PyTorch or Keras


def split_tokens(tokens: tuple[str, ...]) -> tuple[list[str], list[tuple[str, str]]]:
    """Separate INPUT files from Name=Value tokens: a token with '=' is Name=Value unless it is an
    existing file. A bare option name (``DataFormat`` with no ``=``) that is not a file is an error."""
    from .options import resolve_name

    inputs: list[str] = []
    pairs: list[tuple[str, str]] = []
    for token in tokens:
        if "=" in token and not os.path.exists(token):
            pairs.append(split_name_value(token))
            continue
        if token != "-" and not os.path.exists(token) and token.isalpha():
            try:
                name = resolve_name(token)
            except MlstmError:
                name = None
            if name is not None:
                raise MlstmError(f"expected Name=Value (for example {name}=...), found {token!r} with no value")
        inputs.append(token)
    return inputs, pairs


def parse_var(item: str) -> tuple[str, str]:
    """One ``--var ROLE=NAME`` value -> (role, variable name); the role case-insensitive."""
    role, sep, name = item.partition("=")
    key = ROLE_LOOKUP.get(role.strip().lower())
    if not sep or not name or key is None:
        raise MlstmError(f"expected ROLE=NAME with ROLE one of {', '.join(ARGUMENT_NAMES)}, found {item!r}", "--var")
    return key, name


def parse_var_mappings(mappings: tuple[str, ...]) -> dict[str, str]:
    """``--var ROLE=NAME`` values -> {role: variable name}; a role mapped twice is an error."""
    out: dict[str, str] = {}
    for item in mappings:
        key, name = parse_var(item)
        if key in out:
            raise MlstmError(f"role {key} mapped twice ({out[key]!r} and {name!r})", "--var")
        out[key] = name
    return out


class Inputs:
    """The input files of one command, and where each MATLAB argument comes from."""

    def __init__(
        self,
        paths: list[str],
        hdf5_order: str,
        shared: list[Any] | None = None,
        notice: Callable[[str], None] | None = None,
    ):
        from . import io

        if not paths:
            raise MlstmError("expected at least one INPUT file (or - for standard input)", "INPUT")
        if paths.count("-") > 1:
            raise MlstmError("standard input ('-') can be read only once", "INPUT")
        self.files = []
        try:
            for path in paths:
                self.files.append(io.open_matrix_file(path, hdf5_order))
        except BaseException:
            self.close()
            raise
        self.files.extend(shared or [])  # already open, e.g. batch's --weights (not closed here)
        self._own = len(self.files) - len(shared or [])
        self.sources: dict[str, tuple[Any, str]] = {}  # role -> (file, variable name)
        self.notes: list[str] = []  # which file gave what, for -v
        self._notice = notice  # where a variable found in several files is told (else: notes)

    def close(self) -> None:
        for f in self.files[: getattr(self, "_own", len(self.files))]:
            f.close()

    def __enter__(self) -> Inputs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def find(self, role: str, name: str, required: bool = True) -> Any | None:
        """The file holding variable ``name`` for ``role``: the first input file named that has it,
        else the ``--weights`` file. Which one, when several have it, goes to :attr:`notes`."""
        holders = [f for f in self.files if f.has(name)]
        if not holders:
            if not required:
                return None
            labels = ", ".join(f.label for f in self.files)
            found = sorted({n for f in self.files for n in f.names()})
            hint = f"; map another variable with --var {role}=NAME" if role in ARGUMENT_NAMES else ""
            raise MlstmError(
                f"{labels}: no variable {name!r} for {role} (found: {', '.join(found) or 'nothing'}){hint}"
            )
        if len(holders) > 1 and role not in self.sources:
            others = ", ".join(f.label for f in holders[1:])
            text = (
                f"{role}: variable {name!r} is in {holders[0].label} and {others}; using {holders[0].label} "
                "(input files before --weights, the first input file first)"
            )
            (self._notice or self.notes.append)(text)
        self.sources[role] = (holders[0], name)
        return holders[0]

    def read_arguments(self, mapping: dict[str, str], roles: tuple[str, ...] = ARGUMENT_NAMES) -> dict[str, Any]:
        values = {}
        for role in roles:
            name = mapping.get(role, role)
            if role in ("H0", "C0") and self._zero_state_allowed(name, mapping):
                values[role] = self._zero_state(role, mapping)
                continue
            values[role] = self.find(role, name).read(name)
        return values

    def _converted_weights(self) -> Any | None:
        """The --weights file when it was converted from ONNX, PyTorch or Keras, else None."""
        for f in self.files[self._own :]:
            if getattr(f, "kind", "") == CONVERTED:
                return f
        return None

    def _zero_state_allowed(self, name: str, mapping: dict[str, str] | None = None) -> bool:
        """Zeros for a missing H0/C0 with converted weights, but never for a --var the user named."""
        if mapping and name in mapping.values():
            return False
        return self._converted_weights() is not None and not any(f.has(name) for f in self.files)

    def _zero_state(self, role: str, mapping: dict[str, str], note: bool = True) -> Any:
        """H-by-1 zeros (MATLAB broadcasts an H-by-1 state over the batch), in the weights' class."""
        import numpy as np

        weights = self._converted_weights()
        name = mapping.get("recurrentWeights", "recurrentWeights")
        holder = self.find("recurrentWeights", name)
        recurrent = np.asarray(holder.read(name))
        hidden = recurrent.shape[1] if recurrent.ndim == 2 else 0
        if note:
            self.notes.append(
                f"{role}: not given; zeros ({hidden}x1), as {weights.label}'s framework starts from zero states"
            )
        return np.zeros((hidden, 1), dtype=recurrent.dtype if recurrent.dtype.kind == "f" else np.float64)

    def check_sizes(self, mapping: dict[str, str], data_format: str | None) -> Any:
        """Check the six arguments' classes and sizes from the files' metadata, before any array is
        read, so that a variable declaring more data than the others allow (a 960 MB ``weights``
        beside a 3-by-2 X) is an error without being read. Variables whose metadata says too
        little (char, cell, ...) are read here: their reads are small or fail at once."""
        from .formats import check_arguments

        names = [mapping.get(role, role) for role in ARGUMENT_NAMES]
        stand_ins = []
        for role, name in zip(ARGUMENT_NAMES, names):
            if role in ("H0", "C0") and self._zero_state_allowed(name, mapping):
                stand_ins.append(self._zero_state(role, mapping, note=False))
                continue
            holder = self.find(role, name, required=False)
            if holder is None:
                return None  # reading reports the missing variable, after what a damaged file says of the others
            declared = holder.declared(name)
            stand_ins.append(declared if declared is not None else holder.read(name))
        try:
            return check_arguments(*stand_ins, data_format)
        except MlstmError as err:
            raise self.locate(err) from None

    def plan_sizes(self, mapping: dict[str, str], data_format: str | None) -> Any:
        """:meth:`check_sizes`, and a missing argument is an error here too (a dry run reads no data)."""
        for role in ARGUMENT_NAMES:
            name = mapping.get(role, role)
            if not (role in ("H0", "C0") and self._zero_state_allowed(name, mapping)):
                self.find(role, name)
        return self.check_sizes(mapping, data_format)

    def option_variables(self, given: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Name-value options stored as char variables, for the options the command line leaves out."""
        from .options import resolve_name

        named = {resolve_name(name) for name, _ in given}
        pairs = list(given)
        for option in OPTION_CHOICES:
            if option in named:
                continue
            holder = self.find(option, option, required=False)
            if holder is None:
                continue
            value = holder.read(option)
            if not isinstance(value, str):
                from .matlab_types import matlab_class

                raise MlstmError(
                    f"{holder.label}: variable {option!r}: expected a char vector such as 'CBT', "
                    f"found a {matlab_class(value)} array"
                )
            pairs.append((option, value))
        return pairs

    def compute(
        self,
        mapping: dict[str, str],
        pairs: list[tuple[str, str]],
        engine: str,
        chunk_steps: int | None = None,
        progress: Any = None,
        prepared: dict[Any, Any] | None = None,
    ) -> Any:
        """Read the six arguments and the options, and run lstm; errors name the file and variable."""
        from .api import compute

        options = parse_options(self.option_variables(pairs))
        self.check_sizes(mapping, options.data_format)
        arguments = self.read_arguments(mapping)
        try:
            return compute(
                *(arguments[r] for r in ARGUMENT_NAMES),
                options=options,
                engine=engine,
                chunk_steps=chunk_steps,
                progress=progress,
                prepared=prepared,
            )
        except MlstmError as err:
            raise self.locate(err) from None

    def lazy_x(self, mapping: dict[str, str]) -> Any:
        """X as a :class:`mlstm.io.LazyArray` when its file can be read in slices (HDF5-based), else None."""
        name = mapping.get("X", "X")
        return self.find("X", name).lazy(name)

    def stream(
        self,
        x: Any,
        mapping: dict[str, str],
        pairs: list[tuple[str, str]],
        output: Any,
        engine: str,
        chunk_steps: int | None,
        progress: Any,
    ) -> Any:
        """Run lstm block by block from ``x`` into ``output``; errors name the file and variable."""
        from .stream import stream_lstm

        options = parse_options(self.option_variables(pairs))
        self.check_sizes(mapping, options.data_format)
        arguments = self.read_arguments(mapping, ARGUMENT_NAMES[1:])
        try:
            return stream_lstm(x, arguments, options, output, engine, chunk_steps, progress)
        except MlstmError as err:
            raise self.locate(err) from None

    def locate(self, err: MlstmError) -> MlstmError:
        """Put the file and variable in front of an error about a MATLAB argument."""
        if err.argument in self.sources:
            f, name = self.sources[err.argument]
            where = f"{f.label}: variable {name!r}"
            if name != err.argument:
                where += f" ({err.argument})"
            return MlstmError(f"{where}: {err.detail}")
        return err


SHARED_ROLES = ("weights", "recurrentWeights", "bias", "H0", "C0")


def shared_weights(
    path: str | None, order: str, mapping: dict[str, str], node: str | None, layer: str | None
) -> list[Any]:
    """[the --weights file, read once] or []: MATLAB variables, or ONNX/PyTorch/Keras weights converted."""
    if not path:
        if node or layer:
            raise MlstmError(
                "--node and --layer pick a layer of a --weights file; give --weights FILE", "--node/--layer"
            )
        return []
    from .foreign import open_weights_file

    names = [mapping.get(role, role) for role in SHARED_ROLES] + list(OPTION_CHOICES)
    return [open_weights_file(path, order, node, layer, names=names)]
