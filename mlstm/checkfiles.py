"""Checking outputs against other outputs, and MATLAB exports against a recomputation.

- :func:`check_files`: ``mlstm check ACTUAL EXPECTED`` (sizes, classes, values within
  tolerances by class; optionally which porting mistake explains a mismatch, and a picture).
- :func:`verify_file` / :func:`verify_files`: ``mlstm verify``: recompute lstm from the inputs a
  file holds and compare with the outputs stored beside them, one record per file; a failure
  of one file, foreseen or not, is that file's record.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .compare import COMPARED, check_tolerances, compare_outputs
from .errors import MlstmError, failure_text
from .inputs import Inputs
from .options import parse_options
from .runfile import class_name, output_variables


def output_names(f: Any, required: bool) -> list[str]:
    names = [name for name in COMPARED if f.has(name)]
    if required and not names:
        raise MlstmError(
            f"{f.label}: expected variables {', '.join(COMPARED)}, found {', '.join(f.names()) or 'no variables'}"
        )
    return names


def read_outputs(f: Any, required: bool, against: dict[str, Any] | None = None) -> dict[str, Any]:
    """Y, hiddenState, cellState of ``f``. A variable whose size (from metadata) differs from its
    counterpart in ``against`` is not read: its size stands in, and the comparison reports it."""
    import numpy as np

    from .formats import matlab_shape

    found = {}
    for name in output_names(f, required):
        if against is not None and name in against:
            declared = f.declared(name)
            if declared is not None and matlab_shape(declared.shape) != matlab_shape(np.shape(against[name])):
                found[name] = declared
                continue
        found[name] = f.read(name)
    return found


def read_layout(f: Any) -> dict[str, Any]:
    """The char variables YFormat and DataFormat, where a file holds them (the layout of Y for plots)."""
    found = {}
    for name in ("YFormat", "DataFormat"):
        if f.has(name):
            value = f.read(name)
            if isinstance(value, str):
                found[name] = value
    return found


def _diagnose_check(
    actual_path: str,
    expected_path: str,
    actual: dict[str, Any],
    expected: dict[str, Any],
    input_paths: tuple[str, ...],
    mapping: dict[str, str],
    pairs: list[tuple[str, str]],
    order: str,
    rtol: float | None,
    atol: float | None,
) -> tuple[list[str], dict[str, Any]]:
    """Diagnose EXPECTED from the inputs; if the inputs as given reproduce it, diagnose ACTUAL instead."""
    from .diagnose import diagnose

    with Inputs(list(input_paths) or [actual_path], order) as inputs:
        x_name = mapping.get("X", "X")
        if not input_paths and not inputs.files[0].has(x_name):
            raise MlstmError(
                f"{actual_path} holds no inputs ({x_name!r} and the rest) to rerun lstm on; give --inputs FILE "
                "with X, H0, C0, weights, recurrentWeights, bias",
                "--diagnose",
            )
        options = parse_options(inputs.option_variables(pairs))
        arguments = inputs.read_arguments(mapping)
        try:
            found = diagnose(arguments, options, expected, rtol, atol)
            lines, record = found.summary(expected_path), {"expected": found.to_dict()}
            if found.given.matches and actual:
                other = diagnose(arguments, options, actual, rtol, atol)
                lines += [f"so {actual_path} is the one that differs:"] + other.summary(actual_path)
                record["actual"] = other.to_dict()
        except MlstmError as err:
            raise inputs.locate(err) from None
    return lines, record


def _diagnose_file(
    path: str,
    stored: dict[str, Any],
    mapping: dict[str, str],
    pairs: list[tuple[str, str]],
    order: str,
    rtol: float | None,
    atol: float | None,
) -> Any:
    """verify --diagnose: which known mistake, undone in the file's inputs, reproduces its stored outputs."""
    from .diagnose import diagnose

    with Inputs([path], order) as inputs:
        options = parse_options(inputs.option_variables(pairs))
        try:
            return diagnose(inputs.read_arguments(mapping), options, stored, rtol, atol)
        except MlstmError as err:
            raise inputs.locate(err) from None


def _plot_difference(
    path: str,
    variables: tuple[dict[str, Any], dict[str, Any]],
    labels: tuple[str, str],
    tolerance: tuple[float, float],
    data_format: str | None,
    obs: int | None,
    size: tuple[int, int],
    notice: Callable[[str], None] | None,
) -> dict[str, Any] | None:
    """Draw the difference plot atomically; None (and a notice) when Y cannot be compared element-wise."""
    from .io import AtomicOutput
    from .plot import plot_difference

    shapes = [getattr(v.get("Y"), "shape", None) for v in variables]
    if None in shapes or shapes[0] != shapes[1]:
        if notice:
            notice(f"Y is missing from a file or its sizes differ; {path} not drawn")
        return None
    with AtomicOutput(path) as target:
        return plot_difference(*variables, target.tmp, labels, *tolerance, data_format, obs, size)


@dataclass
class CheckResult:
    """What ``mlstm check`` prints: the comparison, and the diagnosis lines when asked."""

    report: Any  # compare.Report
    record: dict[str, Any]  # the JSON form
    diagnosis: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.report.ok)


def check_files(
    actual_path: str,
    expected_path: str,
    rtol: float | None = None,
    atol: float | None = None,
    *,
    diagnose: bool = False,
    inputs: Sequence[str] = (),
    var: Mapping[str, str] | None = None,
    options: Sequence[tuple[str, str]] = (),
    plot: str | None = None,
    obs: int | None = None,
    size: str | None = None,
    hdf5_order: str = "numpy",
    notice: Callable[[str], None] | None = None,
    **name_value: str,
) -> CheckResult:
    """Compare Y, hiddenState and cellState of ACTUAL with EXPECTED (see ``mlstm check --help``)."""
    from .io import open_matrix_file

    pairs = [*options, *name_value.items()]
    mapping = dict(var or {})
    if pairs and not (diagnose or plot):
        raise MlstmError("Name=Value options are used only by --diagnose and --plot", pairs[0][0])
    if (inputs or mapping) and not diagnose:
        raise MlstmError("--inputs and --var name the inputs for --diagnose; add --diagnose", "--inputs/--var")
    if plot is None and (obs is not None or size is not None):
        raise MlstmError("--obs and --size describe the --plot image; add --plot PNG", "--obs/--size")
    parsed = parse_options(pairs)
    order = hdf5_order.lower()
    if plot:
        from .io import check_output_path
        from .plot import parse_size, pyplot

        check_output_path(plot, [actual_path, expected_path, *inputs])
        image_size = parse_size(size, (1000, 800))
        pyplot("--plot")  # no matplotlib: say so before any work
    with open_matrix_file(actual_path, order) as fa, open_matrix_file(expected_path, order) as fe:
        expected = read_outputs(fe, required=True)
        actual = read_outputs(fa, required=False, against=expected)
        layouts = (read_layout(fa), read_layout(fe))
    report = compare_outputs(actual, expected, rtol, atol)
    result = CheckResult(report, dict(report.to_dict(), actual=actual_path, expected=expected_path))
    if diagnose and not report.ok:
        result.diagnosis, result.record["diagnosis"] = _diagnose_check(
            actual_path, expected_path, actual, expected, tuple(inputs), mapping, pairs, order, rtol, atol
        )
    if plot:
        y_report = next((v for v in report.variables if v.name == "Y"), None)
        tol = (y_report.rtol, y_report.atol) if y_report and y_report.rtol else (1e-12, 1e-13)
        result.record["plot"] = _plot_difference(
            plot,
            (dict(actual, **layouts[0]), dict(expected, **layouts[1])),
            (actual_path, expected_path),
            tol,
            parsed.data_format,
            obs,
            image_size,
            notice,
        )
    return result


@dataclass
class VerifyRecord:
    """One file of ``mlstm verify``: status ok / differ / error, a one-line detail, the JSON record,
    and the diagnosis lines when asked."""

    path: str
    status: str
    detail: str
    record: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def verify_file(
    path: str,
    *,
    var: Mapping[str, str] | None = None,
    options: Sequence[tuple[str, str]] = (),
    rtol: float | None = None,
    atol: float | None = None,
    engine: str = "numpy",
    hdf5_order: str = "numpy",
    diagnose: bool = False,
    **name_value: str,
) -> VerifyRecord:
    """Recompute lstm from the inputs in ``path`` and compare with the outputs stored beside them.
    Never raises for a problem of the file: it becomes the record's ``error``."""
    mapping, pairs = dict(var or {}), [*options, *name_value.items()]
    record: dict[str, Any] = {"file": path}
    try:
        with Inputs([path], hdf5_order.lower()) as inputs:
            output_names(inputs.files[0], required=True)
            result = inputs.compute(mapping, pairs, engine.lower())
            stored = read_outputs(inputs.files[0], required=True, against=output_variables(result))
        computed_in = class_name(result.problem.dtype)
        report = compare_outputs(stored, output_variables(result), rtol, atol, compute_class=computed_in)
        status = "ok" if report.ok else "differ"
        record.update(status=status, **report.to_dict())
        worst = max(report.variables, key=lambda v: v.max_rel_error or 0.0, default=None)
        bad = [v for v in report.variables if not v.ok]
        if bad:
            detail = "; ".join(
                f"{v.name}: {v.problem}" + (f", worst {v.name}{v.worst}" if v.worst else "") for v in bad
            )
        elif worst is not None:
            detail = f"max rel err {worst.max_rel_error:.3g} ({worst.name})"
        else:
            detail = ""
        notes: list[str] = []
        if diagnose and bad:
            found = _diagnose_file(path, stored, mapping, pairs, hdf5_order.lower(), rtol, atol)
            record["diagnosis"] = found.to_dict()
            notes = found.summary(os.path.basename(path))
        return VerifyRecord(path, status, detail, record, notes)
    except Exception as err:  # noqa: BLE001 - every file gets its record, whatever happens to one
        detail = failure_text(err)
        record.update(status="error", error=detail)
        return VerifyRecord(path, "error", detail, record)


def verify_files(paths: Sequence[str], **kwargs: Any) -> Iterator[VerifyRecord]:
    """:func:`verify_file` for each path, in order."""
    if not paths:
        raise MlstmError("expected at least one FILE", "FILE")
    from .engines import get_engine
    from .formats import check_options

    # A bad option, tolerance or engine is the invocation's error, not every file's.
    known = {"var", "options", "rtol", "atol", "engine", "hdf5_order", "diagnose"}
    check_options([*kwargs.get("options", ()), *((k, v) for k, v in kwargs.items() if k not in known)])
    check_tolerances(kwargs.get("rtol"), kwargs.get("atol"))
    get_engine(str(kwargs.get("engine", "numpy")).lower())
    for path in paths:
        yield verify_file(path, **kwargs)


def info_file(path: str, hdf5_order: str = "numpy", char_limit: int = 256) -> dict[str, Any]:
    """``mlstm info``: the file's container and, per variable, MATLAB size, class and (char) text."""
    from .io import open_matrix_file

    with open_matrix_file(path, hdf5_order.lower()) as f:
        return f.summary(char_limit)


def format_info(summary: dict[str, Any]) -> str:
    """The text form of :func:`info_file`: one line per variable, as MATLAB's ``whos``."""
    from .formats import matlab_size

    rows = summary["variables"]
    lines = [f"{summary['file']}: {summary['container']}, {len(rows)} variable(s)"]
    width = max([len(name) for name in rows] + [4])
    for name, entry in rows.items():
        size = "?" if entry["size"] is None else matlab_size(tuple(entry["size"]))
        note = f"  ({entry['note']})" if entry.get("note") else ""
        lines.append(f"  {name:<{width}}  {size:>16}  {entry['class']}{note}")
    return "\n".join(lines)


def plot_file(
    path: str,
    output: str,
    *,
    obs: int | None = None,
    size: str | None = None,
    options: Sequence[tuple[str, str]] = (),
    hdf5_order: str = "numpy",
) -> None:
    """``mlstm plot``: Y of ``path`` as a heat map (and the final states), written atomically to ``output``."""
    from .io import AtomicOutput, check_output_path, open_matrix_file
    from .plot import PLOT_SIZE, parse_size, plot_outputs, pyplot

    parsed = parse_options(list(options))
    image_size = parse_size(size, PLOT_SIZE)
    check_output_path(output, [path])
    pyplot()
    with open_matrix_file(path, hdf5_order.lower()) as f:
        variables = dict(read_outputs(f, required=False), **read_layout(f))
        label = f.label
    with AtomicOutput(output) as target:
        plot_outputs(variables, target.tmp, label, parsed.data_format, obs, image_size)
