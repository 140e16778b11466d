"""Weight-transition figures (``WeightTransitionMonitor``): level-to-level transitions, weight trajectories and
the change rates across stages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from quest_lightning.report.plots.common import (
    COLORS,
    code_label,
    color_map,
    figure_legend,
    finite_values,
    new_figure,
    panel_grid,
    short_name,
)
from quest_lightning.summary import LayerTransitions, TransitionStage


def _off_diagonal(counts: Sequence[Sequence[float]], qmax: int) -> tuple[list[str], np.ndarray, float]:
    c = np.asarray(counts, dtype=float)
    total = float(c.sum())
    levels = c.shape[0]
    labels, values = [], []
    for i in range(levels):
        for j in range(levels):
            if i != j:
                labels.append(f"{code_label(i - qmax)}→{code_label(j - qmax)}")
                values.append(c[i, j])
    return labels, np.asarray(values), total


def _valid_layers(layers: Mapping[str, LayerTransitions]) -> dict[str, LayerTransitions]:
    """The layers whose counts are a square matrix over their ``2 qmax + 1`` levels."""
    return {
        name: info
        for name, info in layers.items()
        if info.counts and np.asarray(info.counts).shape == (2 * info.qmax + 1,) * 2
    }


def transition_figure(stage: str, layers: Mapping[str, LayerTransitions]) -> Figure | None:
    """Off-diagonal level transitions of one stage, as a share of weight-steps.

    With 3 levels (2 bits) a grouped bar chart (one bar per layer for each transition ``-1→0``, ``-1→+1`` ...);
    with more levels one heatmap per layer (rows: level before the step, columns: level after; diagonal blank).
    """
    layers = _valid_layers(layers)
    if not layers:
        return None
    qmaxes = {info.qmax for info in layers.values()}
    if qmaxes == {1}:
        colors = color_map(layers)
        fig = new_figure(1, width=7.0, legend_space=True)
        ax = fig.subplots()
        n = len(layers)
        width = 0.8 / n
        for k, (name, info) in enumerate(layers.items()):
            labels, values, total = _off_diagonal(info.counts, 1)
            share = 100.0 * values / total if total else values * 0
            x = np.arange(len(labels)) + (k - (n - 1) / 2) * width
            frozen = info.frozen_fraction
            label = short_name(name) + (f" (frozen {100 * frozen:.1f}%)" if finite_values([frozen]) else "")
            ax.bar(x, share, width=width, color=colors[name], label=label)
        ax.set_xticks(np.arange(len(labels)), labels)
        ax.set_xlabel("level transition (code before → code after one optimizer step)")
        ax.set_ylabel("transitions per weight per step (%)")
        ax.grid(axis="y", alpha=0.3)
        fig.suptitle(f"Weight transitions, stage {stage!r}")
        figure_legend(fig, [ax])
        return fig
    fig, axes = panel_grid(len(layers), width=4.4, height=3.8)
    for ax, (name, info) in zip(axes, layers.items(), strict=True):
        q = info.qmax
        c = np.asarray(info.counts, dtype=float)
        total = c.sum()
        share = 100.0 * c / total if total else c
        np.fill_diagonal(share, np.nan)
        im = ax.imshow(share, cmap="viridis", origin="upper")
        ticks = list(range(2 * q + 1))
        ax.set_xticks(ticks, [code_label(i - q) for i in ticks], fontsize="small")
        ax.set_yticks(ticks, [code_label(i - q) for i in ticks], fontsize="small")
        ax.set_xlabel("code after the step")
        ax.set_ylabel("code before the step")
        ax.set_title(short_name(name), fontsize="medium")
        fig.colorbar(im, ax=ax, shrink=0.8, label="% of weight-steps")
    fig.suptitle(f"Weight transitions (off-diagonal), stage {stage!r}")
    return fig


def trajectory_figure(stage: str, layers: Mapping[str, LayerTransitions], max_weights: int = 16) -> Figure | None:
    """Integer codes of the followed weights at each optimizer step of a stage (QUEST Fig. 7a), one panel per layer.

    Lines are offset slightly so that weights sitting on the same level stay visible.
    """
    panels = {name: info for name, info in layers.items() if info.trajectory}
    if not panels:
        return None
    fig, axes = panel_grid(len(panels), width=4.6, height=3.2)
    for ax, (name, info) in zip(axes, panels.items(), strict=True):
        q = info.qmax
        trajectories = [t for t in info.trajectory[:max_weights] if t]
        n = len(trajectories)
        for k, codes in enumerate(trajectories):
            offset = (k - (n - 1) / 2) * (0.5 / max(n, 1))
            ys = np.asarray(codes, dtype=float) + offset
            ax.step(np.arange(len(codes)), ys, where="post", color=COLORS[k % len(COLORS)], linewidth=1.2)
        ticks = list(range(-q, q + 1))
        ax.set_yticks(ticks, [code_label(t) for t in ticks])
        ax.set_ylim(-q - 0.5, q + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("optimizer step in stage")
        ax.set_ylabel("weight code")
        ax.set_title(f"{short_name(name)} ({n} weights)", fontsize="medium")
        ax.grid(alpha=0.3)
    fig.suptitle(f"Weight trajectories, stage {stage!r}")
    return fig


def transition_overview_figure(transitions: Mapping[str, TransitionStage]) -> Figure | None:
    """Share of weights that changed level per step, and share of changes that skip a level, across stages."""
    stages = [s for s, res in transitions.items() if res.layers]
    if not stages:
        return None
    names = list(dict.fromkeys(n for s in stages for n in transitions[s].layers))
    colors = color_map(names)
    fig = new_figure(2, legend_space=True)
    axes = fig.subplots(1, 2)
    panels = ((lambda t: t.changed_fraction, "weights that changed level per step (%)"),
              (lambda t: t.non_adjacent_fraction, "changes that skip a level (%)"))  # fmt: skip
    x = np.arange(len(stages))
    for ax, (fraction, ylabel) in zip(axes, panels, strict=True):
        for name in names:
            layers = [transitions[s].layers.get(name) for s in stages]
            ys = [fraction(t) if t is not None else None for t in layers]
            ys = [100.0 * v if finite_values([v]) else np.nan for v in ys]
            ax.plot(x, ys, marker="o", color=colors[name], label=short_name(name))
        ax.set_xticks(x, stages, rotation=30 if len(stages) > 4 else 0, ha="right" if len(stages) > 4 else "center")
        ax.set_xlabel("stage")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    fig.suptitle("Weight transitions by stage")
    figure_legend(fig, axes)
    return fig
