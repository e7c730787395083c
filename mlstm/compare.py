"""Compare LSTM outputs the way a MATLAB user reads them: MATLAB size, class, values.

Used by ``mlstm check`` (two files) and ``mlstm verify`` (a file's stored outputs
against a recomputation). Tolerances default by class (docs/BEHAVIOUR.md §7): double
rtol 1e-12 / atol 1e-13, single rtol 1e-5 / atol 1e-6; a value passes when
``|actual - expected| <= atol + rtol * |expected|``. NaN must be NaN in both;
``Inf`` must be the same ``Inf``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .errors import MlstmError
from .formats import matlab_class, matlab_shape, matlab_size

COMPARED = ("Y", "hiddenState", "cellState")
DEFAULT_TOLERANCES = {"double": (1e-12, 1e-13), "single": (1e-5, 1e-6)}


@dataclass
class VariableReport:
    """One variable's comparison. ``worst`` is a 1-based MATLAB subscript, e.g. ``(2,1,5)``."""

    name: str
    ok: bool
    problem: str = ""
    actual_size: str = ""
    expected_size: str = ""
    actual_class: str = ""
    expected_class: str = ""
    rtol: float = 0.0
    atol: float = 0.0
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    worst: str | None = None
    worst_actual: float | None = None
    worst_expected: float | None = None
    nan_mismatches: int = 0
    mismatches: int = 0


@dataclass
class Report:
    variables: list[VariableReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.variables)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "variables": [asdict(v) for v in self.variables]}


def default_tolerance(actual_class: str, expected_class: str, compute_class: str = "double") -> tuple[float, float]:
    """(rtol, atol) for the least precise of the classes (a double Y computed in single gets single's)."""
    if "single" in (actual_class, expected_class, compute_class):
        return DEFAULT_TOLERANCES["single"]
    return DEFAULT_TOLERANCES["double"]


def matlab_subscript(flat_index: int, size: tuple[int, ...]) -> str:
    """1-based MATLAB subscript of a column-major linear index."""
    subs = np.unravel_index(flat_index, size, order="F")
    return "(" + ",".join(str(int(s) + 1) for s in subs) + ")"


def compare_variable(
    name: str,
    actual: Any,
    expected: Any,
    rtol: float | None = None,
    atol: float | None = None,
    compute_class: str = "double",
) -> VariableReport:
    a_cls, e_cls = matlab_class(actual), matlab_class(expected)
    a_size, e_size = matlab_shape(np.shape(actual)), matlab_shape(np.shape(expected))
    d_rtol, d_atol = default_tolerance(a_cls, e_cls, compute_class)
    report = VariableReport(
        name,
        ok=False,
        actual_size=matlab_size(a_size),
        expected_size=matlab_size(e_size),
        actual_class=a_cls,
        expected_class=e_cls,
        rtol=d_rtol if rtol is None else rtol,
        atol=d_atol if atol is None else atol,
    )
    problems = []
    if a_cls != e_cls:
        problems.append(f"class {a_cls}, expected {e_cls}")
    if a_size != e_size:
        problems.append(f"size {report.actual_size}, expected {report.expected_size}")
        report.problem = "; ".join(problems)
        return report
    if a_cls not in ("double", "single") or e_cls not in ("double", "single"):
        report.problem = "; ".join(problems + [f"not numeric data ({a_cls} vs {e_cls})"])
        return report
    # Column-major flattening, so the worst element's linear index is MATLAB's.
    a = np.asarray(actual, dtype=np.float64).reshape(a_size).ravel(order="F")
    e = np.asarray(expected, dtype=np.float64).reshape(e_size).ravel(order="F")
    a_nan, e_nan = np.isnan(a), np.isnan(e)
    nan_bad = a_nan != e_nan
    report.nan_mismatches = int(nan_bad.sum())
    both = ~(a_nan | e_nan)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(both, np.abs(a - e), 0.0)
        equal = a == e  # also the only way an Inf matches
        diff = np.where(equal, 0.0, diff)
        rel = np.where(both & (e != 0), diff / np.abs(e), np.where(diff > 0, np.inf, 0.0))
        close = equal | (np.isfinite(e) & (diff <= report.atol + report.rtol * np.abs(e)))
        bad = nan_bad | (both & ~close)
    report.mismatches = int(bad.sum())
    if a.size:
        report.max_abs_error = float(diff.max())
        report.max_rel_error = float(rel.max())
        # The worst element: a NaN-pattern mismatch first, else the largest excess over the tolerance.
        if nan_bad.any():
            worst = int(np.argmax(nan_bad))
        else:
            with np.errstate(invalid="ignore"):
                excess = diff - (report.atol + report.rtol * np.abs(e))
            worst = int(np.nanargmax(np.where(np.isnan(excess), np.inf, excess)))
        report.worst = matlab_subscript(worst, a_size)
        report.worst_actual, report.worst_expected = float(a[worst]), float(e[worst])
    if report.nan_mismatches:
        problems.append(f"{report.nan_mismatches} NaN pattern mismatch(es)")
    if report.mismatches - report.nan_mismatches > 0:
        problems.append(f"{report.mismatches - report.nan_mismatches} value(s) outside tolerance")
    report.problem = "; ".join(problems)
    report.ok = not problems
    return report


def check_tolerances(rtol: float | None, atol: float | None) -> None:
    """``--rtol`` and ``--atol``: None (the class's default) or a finite number >= 0."""
    for option, value in (("--rtol", rtol), ("--atol", atol)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise MlstmError(f"expected a finite tolerance >= 0, found {value!r}", option)


def compare_outputs(
    actual: dict[str, Any],
    expected: dict[str, Any],
    rtol: float | None = None,
    atol: float | None = None,
    names: tuple[str, ...] = COMPARED,
    compute_class: str = "double",
) -> Report:
    """Compare ``names`` present in ``expected``; a name missing from ``actual`` is a mismatch.

    ``compute_class`` is the class the outputs were computed in, when known ("single" widens
    the default tolerances even for double outputs, as MATLAB's mixed-class rule makes them).
    """
    check_tolerances(rtol, atol)
    report = Report()
    for name in names:
        if name not in expected:
            continue
        if name not in actual:
            report.variables.append(VariableReport(name, ok=False, problem="missing from the actual outputs"))
            continue
        report.variables.append(compare_variable(name, actual[name], expected[name], rtol, atol, compute_class))
    return report


def scaled_error(actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    """|a - e| / (atol + rtol |e|) element-wise: <= 1 is within the tolerance, 0 equal (NaN and NaN, Inf and
    the same Inf); a NaN in one only, or an Inf against another value, is inf."""
    a, e = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        same = (a == e) | (np.isnan(a) & np.isnan(e))
        diff = np.where(same, 0.0, np.abs(a - e))
        diff = np.where(np.isnan(diff), np.inf, diff)
        scale = atol + rtol * np.abs(np.where(np.isfinite(e), e, 0.0))
        return np.where(diff == 0, 0.0, diff / scale)


def format_table(report: Report) -> str:
    """A per-variable table for people."""
    header = f"{'variable':<12} {'result':<6} {'size':>12} {'class':>8} {'max abs err':>12} {'max rel err':>12}  worst"
    lines = [header]
    for v in report.variables:
        abs_e = "-" if v.max_abs_error is None else f"{v.max_abs_error:.3g}"
        rel_e = "-" if v.max_rel_error is None else f"{v.max_rel_error:.3g}"
        worst = "-"
        if v.worst is not None and (not v.ok or v.max_abs_error):
            worst = f"{v.name}{v.worst}: {v.worst_actual!r} vs {v.worst_expected!r}"
        lines.append(
            f"{v.name:<12} {'ok' if v.ok else 'FAIL':<6} {v.actual_size or '-':>12} {v.actual_class or '-':>8} "
            f"{abs_e:>12} {rel_e:>12}  {worst}"
        )
        if not v.ok:
            lines.append(f"{'':<12} {v.problem} (rtol {v.rtol:g}, atol {v.atol:g})")
    return "\n".join(lines)
