"""Pictures of LSTM outputs (``mlstm plot``) and of where two outputs differ (``mlstm check --plot``).

matplotlib is an optional extra (``pip install 'mlstm[plot]'``), imported only here, with the
Agg backend (no display). Images are PNGs of exactly the requested pixel size.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from .compare import scaled_error
from .errors import MlstmError
from .formats import FORMAT_LABELS, canonical_y, matlab_size

DPI = 100
PLOT_SIZE = (1000, 600)
DIFF_SIZE = (1000, 800)


def pyplot(option: str = "plot") -> Any:
    """matplotlib.pyplot on the Agg backend, or a one-line error saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise MlstmError("needs matplotlib, which is not installed: pip install 'mlstm[plot]'", option) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def parse_size(text: str | None, default: tuple[int, int]) -> tuple[int, int]:
    """``WxH`` in pixels (each 100..10000), or ``default``."""
    if text is None:
        return default
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or not all(100 <= int(v) <= 10000 for v in match.groups()):
        raise MlstmError(
            f"expected WIDTHxHEIGHT in pixels, each 100 to 10000 (e.g. 1000x600), found {text!r}", "--size"
        )
    return int(match[1]), int(match[2])


def y_format(variables: dict[str, Any], data_format: str | None, label: str) -> str:
    """The layout of Y: the YFormat variable a run writes, else DataFormat= (X's or Y's format,
    S dimensions dropped as lstm drops them), else a DataFormat variable."""
    source = variables.get("YFormat") if data_format is None else data_format
    if source is None:
        source = variables.get("DataFormat")
    if not isinstance(source, str) or not source.strip():
        raise MlstmError(
            f"{label}: the layout of Y is unknown: expected a char variable YFormat (as mlstm run writes) "
            "or DataFormat=... on the command line (for example DataFormat=CBT)"
        )
    labels = "".join(ch for ch in source.strip().upper() if ch != "S")
    if any(ch not in FORMAT_LABELS for ch in labels):
        raise MlstmError(f"expected only the labels S, C, B, T, U, found {source!r}", "DataFormat")
    return labels if "C" in labels else "C" + labels


def _observation(obs: int | None, batch: int, default: int, y_layout: str) -> int:
    """0-based index of the 1-based ``--obs``."""
    if obs is None:
        return default
    if not 1 <= obs <= batch:
        raise MlstmError(
            f"expected an observation 1 to {batch} (B = {batch} from Y, format {y_layout}), found {obs}", "--obs"
        )
    return obs - 1


def _nonempty(y: np.ndarray, stored: Any, label: str) -> None:
    if y.size == 0:
        raise MlstmError(
            f"{label}: variable 'Y': expected at least one element to draw, found size {matlab_size(np.shape(stored))}"
        )


def _figure(plt: Any, size: tuple[int, int]) -> Any:
    return plt.figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, layout="constrained")


def _save(plt: Any, fig: Any, path: str) -> None:
    try:
        fig.savefig(path, dpi=DPI, format="png")
    except OSError as exc:
        raise MlstmError(f"cannot write the image ({exc.strerror or exc})", f"-o {path}") from None
    finally:
        plt.close(fig)


def _integer_ticks(ax: Any, x: bool = True, y: bool = True) -> None:
    from matplotlib.ticker import MaxNLocator

    if x:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if y:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _steps_extent(steps: int, units: int) -> tuple[float, float, float, float]:
    return (0.5, steps + 0.5, units + 0.5, 0.5)  # 1-based steps and units, unit 1 on top


def plot_outputs(
    variables: dict[str, Any],
    path: str,
    label: str,
    data_format: str | None = None,
    obs: int | None = None,
    size: tuple[int, int] = PLOT_SIZE,
) -> str:
    """Y(:, obs, :) as a heat map (hidden units x time) and, when present, the final hiddenState and
    cellState of every observation as heat strips (units x observations). Returns Y's format."""
    has_states = [n for n in ("hiddenState", "cellState") if n in variables]
    if "Y" not in variables:
        raise MlstmError(f"{label}: expected a variable Y to plot, found {', '.join(sorted(variables)) or 'none'}")
    layout = y_format(variables, data_format, label)
    y = np.asarray(canonical_y(np.asarray(variables["Y"], dtype=np.float64), layout))
    steps, batch, hidden = y.shape
    _nonempty(y, variables["Y"], label)
    k = _observation(obs, batch, 0, layout)
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig = _figure(plt, size)
    grid = fig.add_gridspec(1, 1 + len(has_states), width_ratios=[5] + [1.2] * len(has_states))
    ax = fig.add_subplot(grid[0, 0])
    image = y[:, k, :].T
    finite = image[np.isfinite(image)]
    limit = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.6")
    shown = ax.imshow(
        image,
        aspect="auto",
        cmap=cmap,
        vmin=-limit,
        vmax=limit,
        interpolation="nearest",
        extent=_steps_extent(steps, hidden),
    )
    ax.set(
        xlabel="time step",
        ylabel="hidden unit",
        title=f"{os.path.basename(label)}: Y, observation {k + 1} of {batch}\n"
        f"{hidden} units x {steps} steps ({layout})",
    )
    fig.colorbar(shown, ax=ax, label="Y")
    _integer_ticks(ax)
    for i, name in enumerate(has_states, start=1):
        state = np.asarray(variables[name], dtype=np.float64)
        if state.ndim > 2 or (state.ndim == 2 and state.shape != (hidden, batch)):
            raise MlstmError(
                f"{label}: variable {name!r}: expected size {hidden}x{batch}, found {matlab_size(state.shape)}"
            )
        state = state.reshape(hidden, batch)
        ax_s = fig.add_subplot(grid[0, i])
        finite = state[np.isfinite(state)]
        lim = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
        shown = ax_s.imshow(
            state,
            aspect="auto",
            cmap=cmap,
            vmin=-lim,
            vmax=lim,
            interpolation="nearest",
            extent=(0.5, batch + 0.5, hidden + 0.5, 0.5),
        )
        # The chosen observation, outlined thinly: at 32+ observations a column is a few pixels wide.
        ax_s.add_patch(plt.Rectangle((k + 0.5, 0.5), 1, hidden, fill=False, edgecolor="k", linewidth=1.0))
        ax_s.set_title(f"{name}\nafter step {steps}", fontsize=9)
        ax_s.set_xlabel("observation")
        _integer_ticks(ax_s)
        ax_s.xaxis.set_major_locator(MaxNLocator(4, integer=True))
        fig.colorbar(shown, ax=ax_s, location="bottom").ax.xaxis.set_major_locator(MaxNLocator(3))
    _save(plt, fig, path)
    return layout


def plot_difference(
    actual: dict[str, Any],
    expected: dict[str, Any],
    path: str,
    labels: tuple[str, str],
    rtol: float,
    atol: float,
    data_format: str | None = None,
    obs: int | None = None,
    size: tuple[int, int] = DIFF_SIZE,
) -> dict[str, Any]:
    """Where Y differs: the tolerance-scaled error over units x time (log colours, the tolerance marked
    on the colour bar), the worst element's trajectory in both files, and its error against time.
    Returns what was drawn: observation, unit, first step over the tolerance (1-based; None if none)."""
    for name, variables in zip(labels, (actual, expected)):
        if "Y" not in variables:
            raise MlstmError(f"{name}: no variable Y to plot", "--plot")
    if np.shape(actual["Y"]) != np.shape(expected["Y"]):
        raise MlstmError(
            f"Y is {matlab_size(np.shape(actual['Y']))} in {labels[0]} and {matlab_size(np.shape(expected['Y']))} "
            f"in {labels[1]}: no element-wise difference to draw",
            "--plot",
        )
    try:
        layout = y_format(expected, data_format, labels[1])
    except MlstmError:
        layout = y_format(actual, data_format, labels[0])
    a, e = (np.asarray(canonical_y(v["Y"], layout), dtype=np.float64) for v in (actual, expected))
    steps, batch, hidden = e.shape
    _nonempty(e, expected["Y"], labels[1])
    err = scaled_error(a, e, rtol, atol)
    worst = np.unravel_index(int(np.argmax(err)), err.shape) if err.size else (0, 0, 0)
    k = _observation(obs, batch, int(worst[1]), layout)
    unit = int(np.argmax(err[:, k, :].max(axis=0))) if steps else 0
    over = np.flatnonzero((err > 1).any(axis=(1, 2)))
    first = int(over[0]) + 1 if over.size else None
    positive = err[(err > 0) & np.isfinite(err)]
    high = max(float(positive.max()) if positive.size else 1.0, 10.0)
    # At least 0.01 at the bottom, so the tolerance (1) is always inside the colour scale.
    low = min(max(float(positive.min()) if positive.size else 1e-3, high * 1e-16), 0.01)
    plt = pyplot("--plot")
    from matplotlib.colors import LogNorm

    fig = _figure(plt, size)
    grid = fig.add_gridspec(3, 1, height_ratios=[3, 2, 2])
    ax = fig.add_subplot(grid[0])
    shown = ax.imshow(
        np.clip(err[:, k, :].T, low, high),
        aspect="auto",
        cmap="inferno",
        norm=LogNorm(vmin=low, vmax=high),
        interpolation="nearest",
        extent=_steps_extent(steps, hidden),
    )
    bar = fig.colorbar(shown, ax=ax, label="|a - e| / (atol + rtol |e|)")
    bar.ax.axhline(1.0, color="c", linewidth=2)
    bar.ax.text(
        -0.1, 1.0, "tolerance", color="c", transform=bar.ax.get_yaxis_transform(), ha="right", va="center", fontsize=8
    )
    start = "no step over the tolerance" if first is None else f"first step over the tolerance: {first}"
    ax.set(
        ylabel="hidden unit",
        xlabel="time step",
        title=f"scaled error of Y(:, {k + 1}, :), observation {k + 1} of {batch} (Y is {layout}); {start}",
    )
    names = [os.path.basename(label) for label in labels]
    fig.suptitle(f"{names[0]} vs {names[1]} (rtol {rtol:g}, atol {atol:g})", fontsize=11)
    _integer_ticks(ax)
    t = np.arange(1, steps + 1)
    ax_y = fig.add_subplot(grid[1])
    ax_y.plot(t, a[:, k, unit], label=labels[0], linewidth=1.5)
    ax_y.plot(t, e[:, k, unit], "--", label=labels[1], linewidth=1.5)
    ax_y.set(ylabel="Y", title=f"Y of unit {unit + 1}, observation {k + 1} (the unit with the largest error)")
    ax_y.legend(loc="best", fontsize=8)
    ax_e = fig.add_subplot(grid[2], sharex=ax_y)
    ax_e.semilogy(t, np.clip(err[:, k, unit], low, high), label=f"unit {unit + 1}, observation {k + 1}")
    ax_e.semilogy(t, np.clip(err.max(axis=(1, 2)), low, high), ":", label="worst over all units and observations")
    ax_e.axhline(1.0, color="c", linewidth=1.5, label="tolerance")
    ax_e.set(xlabel="time step", ylabel="scaled error", ylim=(low, high))
    ax_e.legend(loc="best", fontsize=8)
    _integer_ticks(ax_e, y=False)
    _save(plt, fig, path)
    return {"observation": k + 1, "unit": unit + 1, "first_step_over_tolerance": first, "format": layout}
