"""The Python API: ``lstm`` = options -> formats -> engine -> outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .engines import get_engine
from .formats import Problem, resolve
from .options import Options, parse_options


@dataclass
class Result:
    """MATLAB's three outputs plus what a writer or a log needs to know."""

    Y: Any
    hiddenState: Any
    cellState: Any
    y_format: str
    engine: str
    problem: Problem


def compute(
    X: Any,
    H0: Any,
    C0: Any,
    weights: Any,
    recurrentWeights: Any,
    bias: Any,
    options: Options,
    engine: str = "numpy",
) -> Result:
    """Run MATLAB's ``lstm`` with resolved :class:`~mlstm.options.Options`."""
    backend = get_engine(engine)
    problem = resolve(
        X,
        H0,
        C0,
        weights,
        recurrentWeights,
        bias,
        options.data_format,
        gate_activation=options.gate_activation,
        state_activation=options.state_activation,
    )
    runner = backend.prepare(
        problem.weights,
        problem.recurrent_weights,
        problem.bias,
        problem.gate_activation,
        problem.state_activation,
        problem.dtype,
    )
    y, hidden, cell = runner.run(problem.x, problem.hidden_state, problem.cell_state)
    Y, hidden_state, cell_state = problem.restore(y, hidden, cell)
    return Result(Y, hidden_state, cell_state, problem.y_format, backend.name, problem)


def lstm(
    X: Any,
    H0: Any,
    C0: Any,
    weights: Any,
    recurrentWeights: Any,
    bias: Any,
    *,
    engine: str = "numpy",
    **name_value: Any,
) -> tuple[Any, Any, Any]:
    """MATLAB's ``[Y, hiddenState, cellState] = lstm(X, H0, C0, weights, recurrentWeights, bias, Name=Value)``.

    Sizes are MATLAB sizes (an array's ``.shape``). X has the layout that
    ``DataFormat`` names (for example ``"CBT"``: C x B x T); H0 and C0 are
    H x 1 (shared) or H x B; weights 4H x InputSize; recurrentWeights 4H x H;
    bias 4H. Classes: float32 (single) or float64 (double); the computation is
    single if any input is single.

    Name-value options (case-insensitive, unambiguous prefixes allowed):
    ``DataFormat`` (required), ``StateActivationFunction`` ("tanh",
    "softsign", "relu"), ``GateActivationFunction`` ("sigmoid", "hard-sigmoid").
    ``engine`` is "numpy", "cupy" or "auto".

    Returns Y (X's dimension order minus S, C of size H, class of X),
    hiddenState (H x B, class of H0) and cellState (H x B, class of C0).
    Raises :class:`~mlstm.errors.MlstmError` (a ``ValueError``) for bad input.
    """
    options = parse_options(name_value.items())
    result = compute(X, H0, C0, weights, recurrentWeights, bias, options, engine)
    return result.Y, result.hiddenState, result.cellState
