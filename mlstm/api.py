"""The Python API: ``lstm`` = options -> formats -> engine -> outputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .engines import get_engine
from .formats import Problem, array_module, resolve
from .options import Options, parse_options
from .pipeline import chunk_length, run_blocks


@dataclass
class Result:
    """MATLAB's three outputs plus what a writer or a log needs to know."""

    Y: Any
    hiddenState: Any
    cellState: Any
    y_format: str
    engine: str
    problem: Problem
    detail: str = ""  # what the engine chose, for -v: which CPU loop (and why), which GPU kernel


def compute(
    X: Any,
    H0: Any,
    C0: Any,
    weights: Any,
    recurrentWeights: Any,
    bias: Any,
    options: Options,
    engine: str = "numpy",
    chunk_steps: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    prepared: dict[Any, Any] | None = None,
) -> Result:
    """Run MATLAB's ``lstm`` with resolved :class:`~mlstm.options.Options`.

    ``chunk_steps`` runs the time loop in blocks of that many steps (the same arithmetic,
    block by block), calling ``progress(steps_done, steps)`` after each. ``prepared`` caches
    the engine's prepared weights across calls that share weights, recurrentWeights and bias
    (as ``mlstm batch`` does), keyed by compute class and activations.
    """
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
    key = (backend.name, problem.dtype.name, problem.gate_activation, problem.state_activation)
    runner = prepared.get(key) if prepared is not None else None
    if runner is None:
        runner = prepare_runner(backend, problem)
        if prepared is not None:
            prepared[key] = runner
    y, hidden, cell = run_in_chunks(runner, problem, chunk_steps, progress)
    Y, hidden_state, cell_state = problem.restore(y, hidden, cell)
    if backend.name == "cupy" and array_module(problem.x) is np:
        # NumPy in, NumPy out: the GPU is an implementation detail for the caller.
        Y, hidden_state, cell_state = (
            a if isinstance(a, np.ndarray) else a.get() for a in (Y, hidden_state, cell_state)
        )
    detail = getattr(runner, "detail", "")
    return Result(Y, hidden_state, cell_state, problem.y_format, backend.name, problem, detail)


def prepare_runner(backend: Any, problem: Problem) -> Any:
    """The engine with the problem's weights and activations prepared (reusable across calls)."""
    return backend.prepare(
        problem.weights,
        problem.recurrent_weights,
        problem.bias,
        problem.gate_activation,
        problem.state_activation,
        problem.dtype,
    )


PROGRESS_BLOCKS = 50


def run_in_chunks(
    runner: Any, problem: Problem, chunk_steps: int | None, progress: Callable[[int, int], None] | None
) -> tuple[Any, Any, Any]:
    """The engine over all of ``problem.x``, in blocks of about ``chunk_steps`` steps (with a
    progress callback and no size: about 50 blocks, so a display moves), carrying h and c. The
    blocks are rounded to the engine's own (see :mod:`mlstm.pipeline`): same bits as one call."""
    steps = problem.num_steps
    if steps == 0:
        y0, hidden0, cell0 = runner.run(problem.x, problem.hidden_state, problem.cell_state)
        return y0, hidden0, cell0
    default = -(-steps // PROGRESS_BLOCKS) if progress is not None else None
    chunk = chunk_length(runner, steps, problem.batch_size, chunk_steps, default)
    y = runner.empty_output(steps, problem.batch_size, like=problem.x)
    hidden, cell = run_blocks(
        runner,
        steps,
        chunk,
        lambda start, stop: problem.x[start:stop],
        None,
        problem.hidden_state,
        problem.cell_state,
        out=y,
        progress=progress,
    )
    return y, hidden, cell


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
