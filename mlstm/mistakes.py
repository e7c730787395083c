"""The porting mistakes ``mlstm check/verify --diagnose`` tries, each as a way to undo it.

A :class:`Mistake` maps the canonical :class:`~mlstm.formats.Problem` built from the inputs as
stored to the Problem the mistake hid. Gate orders: MATLAB, PyTorch (i, f, g, o) and Keras
(i, f, c, o) stack the gate blocks the same way; ONNX stacks i, o, f, c.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .errors import MlstmError
from .formats import Problem, resolve
from .options import ARGUMENT_NAMES, STATE_ACTIVATIONS, Options

MATLAB_ORDER = "ifgo"
GATE_NAMES = {"i": "input", "f": "forget", "g": "cell candidate", "o": "output"}
ONNX_ORDER = "iofg"  # ONNX's i, o, f, c
KERAS3_HARD_SIGMOID = "hard-sigmoid-1/6"


@dataclass(frozen=True)
class Mistake:
    """One mistake to undo: ``apply`` maps the Problem as given to the one the mistake hid; ``gate``,
    ``state`` and ``dtype``, when set, replace the activations and the compute class."""

    key: str
    family: str
    description: str
    apply: Callable[[Problem], Problem]
    gate: str | None = None
    state: str | None = None
    dtype: Any = None


def _blocks(a: np.ndarray, order: list[int]) -> np.ndarray:
    hidden = a.shape[0] // 4
    return np.concatenate([a[k * hidden : (k + 1) * hidden] for k in order])


def _gate_orders() -> list[Mistake]:
    out = []
    for stored in itertools.permutations(MATLAB_ORDER):
        stored = "".join(stored)
        if stored == MATLAB_ORDER:
            continue
        take = [stored.index(label) for label in MATLAB_ORDER]
        wrong = [k for k in range(4) if stored[k] != MATLAB_ORDER[k]]
        if stored == ONNX_ORDER:
            text = "the gate blocks taken in ONNX's order i, o, f, c (MATLAB, PyTorch and Keras stack i, f, g, o)"
        elif len(wrong) == 2:
            a, b = (GATE_NAMES[MATLAB_ORDER[k]] for k in wrong)
            text = f"the {a} and {b} gate blocks swapped"
        else:
            text = f"the gate blocks taken in the order {', '.join(stored)} (MATLAB's is i, f, g, o)"

        def apply(p: Problem, take: list[int] = take) -> Problem:
            return replace(
                p,
                weights=_blocks(p.weights, take),
                recurrent_weights=_blocks(p.recurrent_weights, take),
                bias=_blocks(p.bias, take),
            )

        out.append(Mistake(f"gates-{stored}", "gate order", text, apply))
    return out


def _block_transpose(a: np.ndarray) -> np.ndarray:
    hidden = a.shape[0] // 4
    return np.concatenate([a[k * hidden : (k + 1) * hidden].T for k in range(4)])


def _unreshape(a: np.ndarray, order: str) -> np.ndarray:
    """A 4H-by-N array that is an N-by-4H kernel reshaped instead of transposed, transposed properly."""
    rows, cols = a.shape
    return a.reshape((cols, rows), order=order).T


def _weight_layouts(p: Problem) -> list[Mistake]:
    hidden, inputs = p.hidden_size, p.input_size
    out = []

    def on(which: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[Problem], Problem]:
        def apply(q: Problem) -> Problem:
            changes = {}
            if which in ("weights", "both"):
                changes["weights"] = fn(q.weights)
            if which in ("recurrentWeights", "both"):
                changes["recurrent_weights"] = fn(q.recurrent_weights)
            return replace(q, **changes)

        return apply

    targets = {"recurrentWeights": hidden > 1, "weights": inputs == hidden > 1}
    targets["both"] = targets["weights"]
    names = {"recurrentWeights": "recurrentWeights", "weights": "weights", "both": "weights and recurrentWeights"}
    for which, ok in targets.items():
        if ok:
            text = f"each H-by-H gate block of {names[which]} transposed"
            out.append(Mistake(f"block-transposed-{which}", "weights layout", text, on(which, _block_transpose)))
    if inputs == 4 * hidden:
        out.append(Mistake("transposed-weights", "weights layout", "weights transposed", on("weights", np.transpose)))
    # A square weights' reshape is no reshape: "weights transposed" covers it.
    reshapable = {"recurrentWeights": hidden > 1, "weights": 1 < inputs != 4 * hidden}
    reshapable["both"] = reshapable["recurrentWeights"] and inputs > 1
    for which, ok in reshapable.items():
        for order, how in (("F", "column-major, as MATLAB's reshape"), ("C", "row-major, as NumPy's reshape")):
            if ok:
                text = f"{names[which]} taken as N-by-4H kernels (Keras's layout) reshaped, not transposed ({how})"
                fn = lambda a, order=order: _unreshape(a, order)  # noqa: E731
                out.append(Mistake(f"unreshaped-{which}-{order}", "weights layout", text, on(which, fn)))
    return out


def _change(**fields: Callable[[Problem], Any]) -> Callable[[Problem], Problem]:
    """A candidate that replaces fields of the Problem by functions of it."""
    return lambda p: replace(p, **{name: fn(p) for name, fn in fields.items()})


def _bias() -> list[Mistake]:
    return [
        Mistake(
            "bias-x2",
            "bias",
            "bias doubled (the inputs' bias is half the one used: one part of a two-part bias?)",
            _change(bias=lambda p: p.bias * 2),
        ),
        Mistake(
            "bias-half",
            "bias",
            "bias halved (the inputs' bias is twice the one used: a bias counted twice?)",
            _change(bias=lambda p: p.bias / 2),
        ),
        Mistake("bias-zero", "bias", "no bias (zero)", _change(bias=lambda p: np.zeros_like(p.bias))),
    ]


def _data_formats(arguments: dict[str, Any], options: Options) -> list[Mistake]:
    given = (options.data_format or "").strip().upper()
    out = []
    for labels in sorted({"".join(p) for p in itertools.permutations(given)} - {given}):
        try:
            q = resolve(
                *(arguments[n] for n in ARGUMENT_NAMES), labels, options.gate_activation, options.state_activation
            )
        except MlstmError:
            continue  # the sizes rule this format out
        text = f"DataFormat={labels} instead of {given}"
        out.append(Mistake(f"DataFormat={labels}", "DataFormat", text, lambda _p, q=q: q))
    return out


def _precision(p: Problem) -> list[Mistake]:
    other = "single" if p.dtype == np.float64 else "double"
    dtype = np.float32 if other == "single" else np.float64
    return [Mistake(f"compute-{other}", "precision", f"the computation in {other} precision", same, dtype=dtype)]


def _activations(p: Problem) -> list[Mistake]:
    out = []
    gates = {
        "sigmoid": "GateActivationFunction=sigmoid",
        "hard-sigmoid": "GateActivationFunction=hard-sigmoid (0.2x + 0.5)",
        KERAS3_HARD_SIGMOID: "a hard-sigmoid of slope 1/6 (Keras 3's x/6 + 1/2; MATLAB's is 0.2x + 0.5)",
    }
    for gate, text in gates.items():
        if gate != p.gate_activation:
            out.append(Mistake(f"gate-{gate}", "activation", f"{text} instead of {p.gate_activation}", same, gate))
    for state in STATE_ACTIVATIONS:
        if state != p.state_activation:
            text = f"StateActivationFunction={state} instead of {p.state_activation}"
            out.append(Mistake(f"state-{state}", "activation", text, same, state=state))
    return out


def same(p: Problem) -> Problem:
    return p


def _states(p: Problem) -> list[Mistake]:
    h, c = (lambda q: q.hidden_state), (lambda q: q.cell_state)
    h_zero, c_zero = (lambda q: np.zeros_like(q.hidden_state)), (lambda q: np.zeros_like(q.cell_state))
    out = []
    if not np.array_equal(p.hidden_state, p.cell_state):
        out.append(Mistake("states-swapped", "states", "H0 and C0 swapped", _change(hidden_state=c, cell_state=h)))
    given_h, given_c = bool(np.any(p.hidden_state)), bool(np.any(p.cell_state))
    if given_h or given_c:
        text = "zero initial states instead of H0 and C0"
        out.append(Mistake("states-zero", "states", text, _change(hidden_state=h_zero, cell_state=c_zero)))
    if given_h and given_c:
        out.append(Mistake("H0-zero", "states", "H0 zero (C0 as given)", _change(hidden_state=h_zero)))
        out.append(Mistake("C0-zero", "states", "C0 zero (H0 as given)", _change(cell_state=c_zero)))
    return out


def mistakes(base: Problem, arguments: dict[str, Any], options: Options) -> list[Mistake]:
    """Every candidate mistake for this problem, in the order they are reported."""
    return (
        _gate_orders()
        + _weight_layouts(base)
        + _bias()
        + _data_formats(arguments, options)
        + _precision(base)
        + _activations(base)
        + _states(base)
    )
