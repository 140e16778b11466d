"""What a training step costs (``TrainingCostMeter``): the non-zero operations of the forward, backward and
weight-gradient passes per layer, the share of non-zero :math:`\\delta`, and the energy per sample, for the last
measured epoch and over the epochs."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from quest_lightning.report.plots.common import (
    COLORS,
    TOTAL_COLOR,
    figure_legend,
    finite_values,
    integer_x_axis,
    joule_axis,
    log_or_linear,
    new_figure,
    short_name,
)
from quest_lightning.summary import TrainingCost, TrainingStepCost

__all__ = ["PASS_LABELS", "training_cost_epochs_figure", "training_cost_layers_figure"]

PASS_LABELS = {"forward": "forward", "backward": "backward (input gradient)", "weight_grad": "weight gradient"}
"""The three passes of a training step and their names in the figures and tables."""


def training_cost_layers_figure(step: TrainingStepCost) -> Figure | None:
    """One epoch's training step per layer: the non-zero operations per sample of each pass (summed over the time
    steps) and the energy per sample (CMOS arithmetic of the three passes, device reads of both passes); ``None``
    without layers."""
    if not step.layers:
        return None
    names = [layer.layer for layer in step.layers]
    fig = new_figure(2, width=max(4.5, 1.1 * len(names) + 2.5), height=3.8, legend_space=True)
    ops_ax, energy_ax = fig.subplots(1, 2)
    x = np.arange(len(names))
    width = 0.8 / len(PASS_LABELS)
    for k, (name, label) in enumerate(PASS_LABELS.items()):
        ys = [layer.total(name) for layer in step.layers]
        ops_ax.bar(x + (k - 1) * width, ys, width=width, color=COLORS[k], label=label)
    ops_ax.set_xticks(x, [short_name(n) for n in names], rotation=20, ha="right")
    ops_ax.set_ylabel("non-zero operations per sample")
    ops_ax.set_title("operations per pass")
    ops_ax.grid(axis="y", alpha=0.3)
    layers = [step.energy.layers.get(n) for n in names]
    parts = {
        "CMOS arithmetic": [e.compute_j if e is not None else None for e in layers],
        "device reads": [e.device_read_j if e is not None else None for e in layers],
    }
    every = []
    for k, (label, values) in enumerate(parts.items()):
        ys = [np.nan if v is None or v <= 0 else v for v in values]
        every += [y for y in ys if np.isfinite(y)]
        energy_ax.bar(x + (k - 0.5) * 0.4, ys, width=0.4, color=COLORS[3 + k], label=label)
    energy_ax.set_xticks(x, [short_name(n) for n in names], rotation=20, ha="right")
    if every:
        energy_ax.set_yscale("log")
    joule_axis(energy_ax, every, "energy per sample")
    energy_ax.set_title("energy per layer")
    energy_ax.grid(axis="y", alpha=0.3, which="both")
    fig.suptitle(f"A training step per sample, epoch {step.epoch} (TrainingCostMeter)")
    figure_legend(fig, [ops_ax, energy_ax])
    return fig


def training_cost_epochs_figure(cost: TrainingCost) -> Figure | None:
    """The training step over the measured epochs: the network's non-zero operations per sample of each pass, each
    layer's mean share of non-zero :math:`\\delta`, and the energy per sample (arithmetic, device reads, total);
    ``None`` with fewer than two epochs (the layers figure shows one)."""
    epochs = cost.epochs
    if len(epochs) < 2:
        return None
    xs = [e.epoch for e in epochs]
    fig = new_figure(3, width=4.2, height=3.6, legend_space=True)
    ops_ax, delta_ax, energy_ax = fig.subplots(1, 3)
    for k, (name, label) in enumerate(PASS_LABELS.items()):
        ops_ax.plot(xs, [e.total(name) for e in epochs], marker="o", markersize=4, color=COLORS[k], label=label)
    ops_ax.set_ylabel("non-zero operations per sample")
    ops_ax.set_title("operations per pass (network)")
    layers = list(dict.fromkeys(layer.layer for e in epochs for layer in e.layers))
    for k, name in enumerate(layers):
        points = [(e.epoch, layer.delta_density_mean) for e in epochs for layer in e.layers if layer.layer == name]
        points = [(x, y) for x, y in points if y is not None]
        if points:
            px, py = zip(*points, strict=True)
            delta_ax.plot(px, py, marker="s", markersize=4, color=COLORS[(k + 5) % len(COLORS)], label=short_name(name))
    delta_ax.set_ylabel("share of non-zero δ (mean over T)")
    delta_ax.set_ylim(0, 1.05)
    delta_ax.set_title("δ density per layer")
    lines = {
        "CMOS arithmetic": [e.energy.compute_j for e in epochs],
        "device reads": [e.energy.device_read_j for e in epochs],
        "total": [e.energy.total_j for e in epochs],
    }
    every = []
    for k, (label, ys) in enumerate(lines.items()):
        color = TOTAL_COLOR if label == "total" else COLORS[3 + k]
        energy_ax.plot(xs, ys, marker="o", markersize=4, color=color, label=label, ls="--" if label == "total" else "-")
        every += finite_values(ys)
    log_or_linear(energy_ax, every, span=10.0)
    joule_axis(energy_ax, every, "energy per sample")
    energy_ax.set_title("energy per sample")
    for ax in (ops_ax, delta_ax, energy_ax):
        ax.set_xlabel("epoch")
        integer_x_axis(ax, xs)
        ax.grid(alpha=0.3)
    fig.suptitle("A training step per sample over the epochs (TrainingCostMeter)")
    figure_legend(fig, [ops_ax, delta_ax, energy_ax])
    return fig
