"""Plots of hardware-aware results, with matplotlib's object API (no pyplot state; any backend).

>>> fig = plot_variation_sweep(sweep)          # doctest: +SKIP
>>> fig.savefig("accuracy-vs-sigma.png", dpi=120)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quest_lightning.hardware.results import VariationSweep

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_variation_sweep"]


def plot_variation_sweep(sweep: VariationSweep, ax: Axes | None = None, *, title: str | None = None) -> Figure:
    """Accuracy (mean ± std over draws, percent) against the swept non-ideality, one line per R-S pattern.

    The ideal model's accuracy is a dashed horizontal line.

    Args:
        sweep: The sweep to draw.
        ax: Axes to draw into; default a new 7 × 4.5 inch figure.
        title: Axes title; default names the device, the converter and the number of draws.

    Returns:
        The figure holding the axes.
    """
    from matplotlib.figure import Figure

    if ax is None:
        fig = Figure(figsize=(7.0, 4.5), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    xs = list(sweep.values)
    for label, means, stds in zip(sweep.labels, sweep.mean, sweep.std, strict=True):
        ys = [100 * m for m in means]
        err = [0.0 if s is None else 100 * s for s in stds]
        line = ax.plot(xs, ys, marker="o", markersize=4, label=label)[0]
        low = [y - e for y, e in zip(ys, err, strict=True)]
        high = [y + e for y, e in zip(ys, err, strict=True)]
        ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    ax.axhline(100 * sweep.ideal_accuracy, color="black", linestyle="--", linewidth=1, label="ideal")
    ax.set_xlabel(f"{sweep.vary}" + (" (σ of ln R)" if sweep.vary.endswith("sigma") else ""))
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title or f"{sweep.device}: {sweep.mapping}, mean ± std over {sweep.draws} arrays")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", title="R-S pattern", title_fontsize="small")
    return fig
