"""What every figure shares: SI energy labels, short layer names, stage order, the palette, figure and legend
layout, and PNG output on matplotlib's Agg canvas (no pyplot state is touched)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

_PREFIXES = ((1e-18, "a"), (1e-15, "f"), (1e-12, "p"), (1e-9, "n"), (1e-6, "µ"), (1e-3, "m"), (1.0, ""))
_STAGE_FIRST = ("train", "val", "validation", "test")
COLORS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
]  # fmt: skip
TOTAL_COLOR = "#222222"


# --------------------------------------------------------------------------------------------------------------------
# units and names


def joule_prefix(value: float) -> tuple[float, str]:
    """The SI scale and prefix to show ``value`` joules with, e.g. ``4.7e-12 -> (1e-12, "p")``."""
    v = abs(float(value))
    if not math.isfinite(v) or v == 0.0:
        return 1.0, ""
    chosen = _PREFIXES[0]
    for scale, prefix in _PREFIXES:
        if v >= scale * (1 - 1e-9):
            chosen = (scale, prefix)
    return chosen


def format_joules(value: float | None, digits: int = 3) -> str:
    """``4.718e-12 -> "4.72 pJ"``; ``None`` or a non-finite value gives ``"–"``."""
    if value is None or not math.isfinite(float(value)):
        return "–"
    if value == 0:
        return "0 J"
    scale, prefix = joule_prefix(value)
    return f"{value / scale:.{digits}g} {prefix}J"


def counted(value: float, unit: str, spec: str = ".4g") -> str:
    """``value`` and ``unit``, the unit in the plural unless the value is 1: ``"1 epoch"``, ``"2.5 epochs"``."""
    return f"{value:{spec}} {unit}" + ("" if value == 1 else "s")


def short_name(name: str) -> str:
    """A layer or neuron name without the LightningModule's ``model.`` prefix and the ``.layer``/``.neuron`` suffix."""
    out = name[len("model.") :] if name.startswith("model.") and len(name) > len("model.") else name
    for suffix in (".layer", ".neuron"):
        if out.endswith(suffix) and len(out) > len(suffix):
            out = out[: -len(suffix)]
    return out


def code_label(code: int) -> str:
    """A weight code as text: ``-1``, ``0``, ``+1``."""
    return "0" if code == 0 else f"{code:+d}"


def stage_order(stages: Iterable[str]) -> list[str]:
    """``train`` and ``val`` first, then the other stages in their given order."""
    stages = list(stages)
    return [s for s in _STAGE_FIRST if s in stages] + [s for s in stages if s not in _STAGE_FIRST]


def save_png(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Render ``fig`` with the Agg canvas into the PNG file ``path``."""
    path = Path(path)
    FigureCanvasAgg(fig)
    fig.set_dpi(dpi)
    if fig.get_layout_engine() is not None:
        # lay out once, then freeze: savefig would otherwise run the constrained layout twice
        fig.draw_without_rendering()
        fig.set_layout_engine("none")
    fig.savefig(path, format="png", dpi=dpi)
    return path


def finite_values(values: Iterable[Any]) -> list[float]:
    out = []
    for v in values:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out.append(float(v))
    return out


def joule_axis(ax: Any, values: Iterable[Any], label: str = "energy per sample", axis: str = "y") -> None:
    """Tick labels in one SI prefix chosen from the largest value; the prefix goes into the axis label."""
    finite = [abs(v) for v in finite_values(values) if v != 0]
    scale, prefix = joule_prefix(max(finite)) if finite else (1.0, "")
    fmt = FuncFormatter(lambda v, _pos: f"{v / scale:g}")
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(fmt)
    if target.get_scale() == "log":
        narrow = len(finite) > 0 and math.log10(max(finite) / min(finite)) < 1.5
        target.set_minor_formatter(FuncFormatter(lambda v, _pos: _minor_label(v, scale)) if narrow else NullFormatter())
    (ax.set_ylabel if axis == "y" else ax.set_xlabel)(f"{label} ({prefix}J)")


def _minor_label(value: float, scale: float) -> str:
    """Label the 2× and 5× minor ticks of a log axis only (enough to read a narrow range)."""
    if value <= 0:
        return ""
    mantissa = value / 10 ** math.floor(math.log10(value) + 1e-9)
    return f"{value / scale:g}" if round(mantissa) in (2, 5) and abs(mantissa - round(mantissa)) < 1e-6 else ""


def color_map(names: Iterable[str]) -> dict[str, str]:
    return {n: COLORS[i % len(COLORS)] for i, n in enumerate(dict.fromkeys(names))}


def new_figure(
    ncols: int, nrows: int = 1, width: float = 5.0, height: float = 3.6, legend_space: bool = False
) -> Figure:
    """An empty figure sized for ``ncols`` × ``nrows`` panels of ``width`` × ``height`` inches (plus room for a
    legend on the right), with the constrained layout."""
    extra = 2.4 if legend_space else 0.0
    return Figure(figsize=(width * ncols + extra, height * nrows), layout="constrained")


def panel_grid(n: int, width: float, height: float, max_cols: int = 3) -> tuple[Figure, list[Any]]:
    """A figure with ``n`` panels on a grid at most ``max_cols`` wide; the grid's spare cells are hidden.

    Returns:
        The figure and its ``n`` visible axes, row by row.
    """
    cols, rows = grid_shape(n, max_cols)
    fig = new_figure(cols, rows, width=width, height=height)
    axes = list(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def figure_legend(fig: Figure, axes: Sequence[Any], ncol: int = 1) -> None:
    """One legend for the whole figure (outside on the right), without duplicate labels."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize="small", ncol=ncol)


def grid_shape(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(n, max_cols)
    return cols, math.ceil(n / cols)


def x_axis(epochs: Sequence[int], steps: Sequence[int] | None = None) -> tuple[str, list[float]]:
    """Epochs as the x axis, or the global step when one epoch holds several records (or the record's index)."""
    if len(set(epochs)) == len(epochs):
        return "epoch", [float(e) for e in epochs]
    if steps is not None and len(set(steps)) == len(steps):
        return "global step", [float(s) for s in steps]
    return "record", [float(i) for i in range(len(epochs))]


def integer_x_axis(ax: Any, xs: Iterable[float], few: int = 12) -> None:
    """Integer ticks on the x axis (epochs, steps): every value when there are at most ``few``, and a unit of room
    around a single one (matplotlib would otherwise tick fractions of an epoch)."""
    values = sorted(set(finite_values(xs)))
    if 0 < len(values) <= few:
        ax.set_xticks(values, [f"{v:g}" for v in values])
        if len(values) == 1:
            ax.set_xlim(values[0] - 0.5, values[0] + 0.5)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def log_or_linear(ax: Any, values: Iterable[Any], axis: str = "y", span: float = 100.0) -> None:
    """A log scale when the positive ``values`` span more than ``span`` × and none is zero, else linear."""
    finite = finite_values(values)
    positive = [v for v in finite if v > 0]
    if positive and len(positive) == len(finite) and max(positive) / min(positive) > span:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
