"""Figures across devices and of the cells' wear: the devices' energies side by side, the writes per cell of every
layer, the projected epochs to the first worn-out cell, and the accuracy against device variation per R-S pattern."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from quest_lightning.report.plots.common import (
    COLORS,
    counted,
    figure_legend,
    finite_values,
    format_joules,
    joule_axis,
    new_figure,
    short_name,
)
from quest_lightning.summary import DevicePricing, WritesPerCell

if TYPE_CHECKING:
    from quest_lightning.hardware import VariationSweep
    from quest_lightning.report.headline import DeviceHeadline

__all__ = ["device_energy_figure", "endurance_figure", "sweep_figure", "writes_per_cell_figure"]

LEGEND_INSIDE = 8
"""Up to this many R-S patterns the sweep's legend stays inside the axes; more go to the right of the figure."""


def device_energy_figure(heads: Sequence[DeviceHeadline]) -> Figure | None:
    """Write (last stage, per sample seen), read (last epoch) and compute (QUEST) energy per sample of every device
    at its best R-S pattern, grouped bars on a log scale; ``None`` with fewer than two devices with a figure."""
    groups = ("write, best pattern", "read, best pattern", "compute (QUEST)")
    values = []
    for h in heads:
        compute = h.compute.quest.total_j if h.compute is not None else None
        values.append([h.write_best[1] if h.write_best else None, h.read_best[1] if h.read_best else None, compute])
    kept = [(h, v) for h, v in zip(heads, values, strict=True) if finite_values(v)]
    if len(kept) < 2:
        return None
    fig = new_figure(1, width=7.0, height=4.0, legend_space=True)
    ax = fig.subplots()
    n = len(kept)
    width = 0.8 / n
    x = np.arange(len(groups))
    every = []
    for k, (h, v) in enumerate(kept):
        ys = [np.nan if e is None or e <= 0 else e for e in v]
        every += [e for e in ys if np.isfinite(e)]
        bars = ax.bar(x + (k - (n - 1) / 2) * width, ys, width=width, color=COLORS[k % len(COLORS)], label=h.name)
        labels = ["" if not np.isfinite(y) else format_joules(y) for y in ys]
        ax.bar_label(bars, labels, fontsize="x-small", padding=2)
    ax.set_yscale("log")
    ax.set_xticks(x, groups)
    joule_axis(ax, every, "energy per sample")
    ax.grid(axis="y", alpha=0.3, which="both")
    fig.suptitle("Devices side by side (best R-S pattern of each)")
    figure_legend(fig, [ax])
    return fig


def writes_per_cell_figure(writes: WritesPerCell) -> Figure | None:
    """The writes per cell of every quantized layer: the mean, each recorded percentile and the maximum (grouped
    bars; a symmetric-log axis when they span more than two decades)."""
    layers = {name: w for name, w in writes.layers.items() if w.cells > 0}
    if not layers:
        return None
    table = {name: dict([("mean", w.mean), *w.percentiles.items(), ("max", w.max)]) for name, w in layers.items()}
    stats = list(dict.fromkeys(stat for row in table.values() for stat in row))
    fig = new_figure(1, width=max(6.0, 1.2 * len(layers) + 3), height=4.0, legend_space=True)
    ax = fig.subplots()
    width = 0.8 / len(stats)
    x = np.arange(len(layers))
    every = []
    for k, stat in enumerate(stats):
        ys = [float(row[stat]) if stat in row else np.nan for row in table.values()]
        every += [y for y in ys if np.isfinite(y)]
        ax.bar(x + (k - (len(stats) - 1) / 2) * width, ys, width=width, color=COLORS[k % len(COLORS)], label=stat)
    positive = [v for v in every if v > 0]
    if positive and max(positive) / min(positive) > 100:
        ax.set_yscale("symlog", linthresh=1.0)
    tilt = len(layers) > 4
    ax.set_xticks(x, [short_name(n) for n in layers], rotation=30 if tilt else 0, ha="right" if tilt else "center")
    ax.set_ylabel("writes per cell")
    ax.grid(axis="y", alpha=0.3)
    epochs = f", {counted(writes.epochs, 'epoch', '.3g')}" if writes.epochs is not None else ""
    fig.suptitle(f"Writes per cell over {writes.steps} observed optimizer steps{epochs}")
    figure_legend(fig, [ax])
    return fig


def endurance_figure(devices: Sequence[DevicePricing]) -> Figure | None:
    """Projected epochs from the start of training to the first worn-out cell of every layer, one colour per device
    with an endurance limit (log scale); the dotted line marks the epochs trained. Layers whose cells were never
    written have no bar."""
    worn = [d for d in devices if d.endurance is not None and d.endurance.layers]
    if not worn:
        return None
    names = list(dict.fromkeys(n for d in worn for n in d.endurance.layers))
    fig = new_figure(1, width=7.5, height=0.5 * len(names) * len(worn) + 2.0, legend_space=True)
    ax = fig.subplots()
    n = len(worn)
    height = 0.8 / n
    y = np.arange(len(names))
    every = []
    for k, d in enumerate(worn):
        layers = d.endurance.layers
        xs = [layers[m].epochs_to_first_failure if m in layers else None for m in names]
        xs = [np.nan if v is None else float(v) for v in xs]
        every += [v for v in xs if np.isfinite(v) and v > 0]
        label = f"{d.name} ({d.endurance.endurance_cycles:.3g} cycles)"
        bars = ax.barh(y + (k - (n - 1) / 2) * height, xs, height=height, color=COLORS[k % len(COLORS)], label=label)
        ax.bar_label(bars, ["never written" if not np.isfinite(v) else f"{v:.3g}" for v in xs], fontsize="x-small",
                     padding=3)  # fmt: skip
    trained = worn[0].endurance.epochs
    ax.axvline(
        trained, color="black", linestyle=":", linewidth=1.2, label=f"trained ({counted(trained, 'epoch', '.3g')})"
    )
    if every:
        ax.set_xscale("log")
    ax.set_yticks(y, [short_name(m) for m in names])
    ax.invert_yaxis()
    ax.set_xlabel("projected epochs to the first worn-out cell (log scale)")
    ax.grid(axis="x", alpha=0.3, which="both")
    fig.suptitle("Endurance: when the first cell of each layer wears out")
    figure_legend(fig, [ax])
    return fig


def sweep_figure(sweep: VariationSweep) -> Figure:
    """:func:`~quest_lightning.hardware.plot_variation_sweep` on a report-sized figure; with more than
    :data:`LEGEND_INSIDE` patterns the legend moves to the right of the axes."""
    from quest_lightning.hardware import plot_variation_sweep

    many = len(sweep.patterns) > LEGEND_INSIDE
    fig = Figure(figsize=(10.0 if many else 8.0, 4.8), layout="constrained")
    ax = fig.add_subplot()
    plot_variation_sweep(sweep, ax)
    if many:
        legend = ax.get_legend()
        handles, labels = ax.get_legend_handles_labels()
        legend.remove()
        fig.legend(handles, labels, loc="outside right upper", fontsize="x-small", title="R-S pattern")
    return fig
