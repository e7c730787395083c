"""Why do two LSTM outputs differ? Re-run lstm under known porting mistakes and see which one
reproduces the expected outputs within tolerance (``mlstm check/verify --diagnose``).

Each candidate undoes one mistake in the *inputs as stored* and runs mlstm on the result:

- gate order: the 4 gate blocks of weights, recurrentWeights and bias taken in each of the 23
  other orders. MATLAB, PyTorch (i, f, g, o) and Keras (i, f, c, o) stack the blocks the same
  way, so weights copied from them need no reordering; ONNX stacks i, o, f, c.
- weights layout: H-by-H gate blocks transposed (recurrentWeights; weights when InputSize = H),
  weights transposed when square, and a transposed kernel (Keras's InputSize-by-4H) that was
  reshaped instead of transposed, column-major (MATLAB) or row-major (NumPy);
- bias doubled, halved (a two-part bias: one part dropped, or both counted), or left out;
- X read with every other DataFormat the sizes allow;
- computed in single instead of double (or double instead of single);
- the other gate and state activations, and a hard-sigmoid of slope 1/6 (Keras 3; MATLAB's is 0.2);
- H0 and C0 swapped, or zero instead of the given ones.

Candidates are screened on a prefix of the sequence (the first few steps of a few observations,
compared on Y) and every match is confirmed on the whole problem.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .compare import COMPARED, default_tolerance, scaled_error
from .errors import MlstmError
from .formats import Problem, canonical_y, matlab_class, matlab_shape, matlab_size, resolve
from .mistakes import KERAS3_HARD_SIGMOID, Mistake, mistakes, same
from .options import ARGUMENT_NAMES, Options

SCREEN_STEPS = 24
SCREEN_OBSERVATIONS = 4


@dataclass
class Candidate:
    """One re-run: ``excess`` is the worst |a - e| / (atol + rtol |e|), so <= 1 is within tolerance."""

    key: str
    family: str
    description: str
    matches: bool = False
    problem: str = ""
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    excess: float = math.inf
    rtol: float = 0.0
    atol: float = 0.0
    compared: list[str] = field(default_factory=list)
    steps: int = 0
    observations: int = 0


@dataclass
class Diagnosis:
    """The inputs as given, the candidates that reproduce the target, and the closest one if none does."""

    given: Candidate
    matches: list[Candidate]
    closest: Candidate | None
    tried: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "given": asdict(self.given),
            "matches": [asdict(c) for c in self.matches],
            "closest": asdict(self.closest) if self.closest else None,
            "tried": self.tried,
        }

    def summary(self, target: str = "expected") -> list[str]:
        """Lines for people, e.g. ``expected matches mlstm with the forget and output gate blocks swapped``."""
        if self.given.matches:
            return [f"{target} matches mlstm on the inputs as given{_errors(self.given)}"]
        if self.matches:
            return [f"{target} matches mlstm with {c.description}{_errors(c)}" for c in self.matches]
        lines = [f"no single known mistake ({self.tried} tried) reproduces {target}"]
        if self.closest is not None:
            c = self.closest
            lines.append(f"closest: mlstm with {c.description}{_errors(c, excess=True)}")
        return lines


def _errors(c: Candidate, excess: bool = False) -> str:
    if c.max_rel_error is None:
        return f" ({c.problem})" if c.problem else ""
    text = f"max rel err {c.max_rel_error:.2g}"
    if excess:
        text = f"max abs err {c.max_abs_error:.2g}, {text}, {c.excess:.3g}x the tolerance"
    if c.key == "compute-single":
        text += f", single tolerance rtol {c.rtol:g}"
    return f" ({text})"


def _hard_sigmoid_sixth(x: np.ndarray) -> np.ndarray:
    return np.clip(x / 6 + 0.5, 0, 1)


def _run(p: Problem, gate: str, state: str, dtype: Any, steps: int, observations: int) -> tuple[Any, Any, Any]:
    """Canonical (Y (t, b, H), h (b, H), c (b, H)) over the first ``steps`` x ``observations``."""
    from .engines import numpy_engine

    x = np.ascontiguousarray(p.x[:steps, :observations], dtype=dtype)
    h0 = np.ascontiguousarray(p.hidden_state[:observations], dtype=dtype)
    c0 = np.ascontiguousarray(p.cell_state[:observations], dtype=dtype)
    if gate != KERAS3_HARD_SIGMOID:
        runner = numpy_engine.prepare(p.weights, p.recurrent_weights, p.bias, gate, state, np.dtype(dtype))
        return runner.run(x, h0, c0)
    # Keras 3's hard sigmoid is no mlstm activation: a plain loop in SPEC §1's words.
    W, R, b = (np.asarray(a, dtype=dtype) for a in (p.weights, p.recurrent_weights, p.bias))
    sigma_c = {"tanh": np.tanh, "softsign": lambda v: v / (1 + np.abs(v)), "relu": lambda v: np.maximum(v, 0)}[state]
    H = p.hidden_size
    y = np.empty((x.shape[0], x.shape[1], H), dtype=dtype)
    h, c = h0, c0
    with np.errstate(all="ignore"):
        for t in range(x.shape[0]):
            z = x[t] @ W.T + h @ R.T + b
            i, f, o = (_hard_sigmoid_sixth(z[:, k * H : (k + 1) * H]) for k in (0, 1, 3))
            c = f * c + i * sigma_c(z[:, 2 * H : 3 * H])
            h = o * sigma_c(c)
            y[t] = h
    return y, h, c


def _targets(p: Problem, target: dict[str, Any], steps: int, observations: int) -> dict[str, Any] | str:
    """The target's variables as canonical arrays over the same prefix, or why they cannot be compared."""
    out: dict[str, Any] = {}
    whole = steps == p.num_steps and observations == p.batch_size
    if "Y" in target:
        want = matlab_shape(p.y_sizes)
        if matlab_shape(np.shape(target["Y"])) != want:
            return f"Y would be {matlab_size(want)}, the target's is {matlab_size(np.shape(target['Y']))}"
        out["Y"] = canonical_y(target["Y"], p.y_format)[:steps, :observations]
    if whole:
        for name in ("hiddenState", "cellState"):
            if name in target:
                want = (p.hidden_size, p.batch_size)
                if matlab_shape(np.shape(target[name])) != matlab_shape(want):
                    return f"{name} would be {matlab_size(want)}, the target's is {matlab_size(np.shape(target[name]))}"
                out[name] = np.asarray(target[name]).reshape(want).T
    return out


def _score(
    cand: Candidate,
    outputs: dict[str, Any],
    targets: dict[str, Any],
    classes: dict[str, str],
    rtol: float | None,
    atol: float | None,
    compute: str,
) -> None:
    excess, max_abs, max_rel = 0.0, 0.0, 0.0
    for name, e in targets.items():
        d_rtol, d_atol = default_tolerance(classes[name], classes[name], compute)
        r, a_tol = (d_rtol if rtol is None else rtol), (d_atol if atol is None else atol)
        cand.rtol, cand.atol = max(cand.rtol, r), max(cand.atol, a_tol)
        a, e = np.asarray(outputs[name], dtype=np.float64), np.asarray(e, dtype=np.float64)
        scaled = scaled_error(a, e, r, a_tol)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            diff = np.where(scaled == 0, 0.0, np.abs(a - e))
            diff, rel = np.where(np.isnan(diff), np.inf, diff), np.where(diff == 0, 0.0, diff / np.abs(e))
        if a.size:
            excess = max(excess, float(scaled.max()))
            max_abs, max_rel = (
                max(max_abs, float(diff.max())),
                max(max_rel, float(np.nan_to_num(rel, nan=np.inf).max())),
            )
    cand.excess, cand.max_abs_error, cand.max_rel_error = excess, max_abs, max_rel
    cand.compared = list(targets)
    cand.matches = excess <= 1.0


def _try(
    m: Mistake,
    base: Problem,
    target: dict[str, Any],
    whole: bool,
    rtol: float | None,
    atol: float | None,
) -> Candidate:
    cand = Candidate(m.key, m.family, m.description)
    p = m.apply(base)
    steps = p.num_steps if whole else min(p.num_steps, SCREEN_STEPS)
    observations = p.batch_size if whole else min(p.batch_size, SCREEN_OBSERVATIONS)
    cand.steps, cand.observations = steps, observations
    targets = _targets(p, target, steps, observations)
    if isinstance(targets, str):
        cand.problem = targets
        return cand
    dtype = m.dtype or p.dtype
    with np.errstate(all="ignore"):
        y, h, c = _run(p, m.gate or p.gate_activation, m.state or p.state_activation, dtype, steps, observations)
    outputs = {"Y": y, "hiddenState": h, "cellState": c}
    classes = {name: matlab_class(target[name]) for name in targets}
    _score(cand, outputs, targets, classes, rtol, atol, "single" if np.dtype(dtype) == np.float32 else "double")
    return cand


def diagnose(
    arguments: dict[str, Any],
    options: Options,
    target: dict[str, Any],
    rtol: float | None = None,
    atol: float | None = None,
) -> Diagnosis:
    """Which known porting mistake makes mlstm reproduce ``target`` (Y, hiddenState, cellState)?

    ``arguments`` holds X, H0, C0, weights, recurrentWeights, bias (MATLAB sizes) and ``options``
    the name-value options they were run with. Tolerances as in :func:`mlstm.compare.compare_outputs`
    (by class when None; the single-precision candidate is judged with single's).
    """
    target = {name: target[name] for name in COMPARED if name in target}
    if not target:
        raise MlstmError(f"expected at least one of {', '.join(COMPARED)} to diagnose, found none")
    base = resolve(
        *(arguments[n] for n in ARGUMENT_NAMES), options.data_format, options.gate_activation, options.state_activation
    )
    screen = "Y" in target and (base.num_steps > SCREEN_STEPS or base.batch_size > SCREEN_OBSERVATIONS)

    def attempt(m: Mistake) -> Candidate:
        cand = _try(m, base, target, not screen, rtol, atol)
        if screen and cand.matches:
            cand = _try(m, base, target, True, rtol, atol)  # confirm on the whole problem
        return cand

    given = attempt(Mistake("given", "given", "the inputs as given", same))
    candidates = [(m, attempt(m)) for m in mistakes(base, arguments, options)]
    matches = [c for _, c in candidates if c.matches]
    closest = None
    if not matches:
        finite = [(m, c) for m, c in candidates if c.max_rel_error is not None]
        if finite:
            m, closest = min(finite, key=lambda mc: mc[1].max_abs_error)  # same target: abs error ranks fairly
            if screen:
                closest = _try(m, base, target, True, rtol, atol)
    return Diagnosis(given, matches, closest, len(candidates))
