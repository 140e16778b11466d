"""Energy figures: device energy per R-S pattern (write and read, ``DeviceEnergyCallback``) and the compute energy
against the CMOS reference."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from quest_lightning.report.plots.common import (
    TOTAL_COLOR,
    color_map,
    figure_legend,
    finite_values,
    format_joules,
    integer_x_axis,
    joule_axis,
    new_figure,
    short_name,
    stage_order,
    x_axis,
)
from quest_lightning.summary import ComputeComparison, EnergyReport, ReadEnergy, WriteEnergy

MANY_PATTERNS = 24
"""Above this many R-S patterns the pattern plots show the sorted distribution instead of grouped bars."""
SILENT_NOTE = "silent network: no spike reached an inner layer; the ratios are the cost of a dead network, not a saving"
"""What the compute figure and tables say next to the ratios of a network that never fired."""
_COMPUTE_COLORS = ("#7f7f7f", "#ff7f0e", "#1f77b4")


def _pattern_series(report: EnergyReport) -> dict[str, np.ndarray]:
    series = {name: np.asarray(r.per_pattern_j, dtype=float) for name, r in report.per_layer.items() if r.per_pattern_j}
    if report.total.per_pattern_j:
        series["total"] = np.asarray(report.total.per_pattern_j, dtype=float)
    sizes = {len(v) for v in series.values()}
    return series if len(sizes) == 1 else {}


def _pattern_labels(labels: Sequence[str] | None, count: int) -> list[str]:
    if labels and len(labels) == count:
        return [str(s) for s in labels]
    return [f"#{i}" for i in range(count)]


def pattern_energy_figure(
    report: EnergyReport,
    title: str,
    labels: Sequence[str] | None = None,
    chosen: int | None = None,
    many: int = MANY_PATTERNS,
) -> Figure | None:
    """Energy per sample of every R-S pattern, per layer and in total.

    Left: joules per sample; right: the same relative to each layer's best pattern. With at most ``many`` patterns,
    grouped bars with the pattern labels (the best total pattern starred); with more, each curve sorted from cheapest
    to dearest, the best marked, and the rank of the best total pattern marked on every layer's curve.

    Args:
        report: A write or read energy report (per layer and total, joules per sample for every pattern).
        title: Figure title.
        labels: Pattern labels in pattern order (``DevicePricing.patterns``); ``#i`` when missing.
        chosen: The pattern the run reports its per-layer figures with, marked when it is not the best.
    """
    series = _pattern_series(report)
    if not series:
        return None
    count = len(next(iter(series.values())))
    labels = _pattern_labels(labels, count)
    colors = color_map(series)
    colors["total"] = TOTAL_COLOR
    best_total = int(np.argmin(series["total"])) if "total" in series else int(np.argmin(next(iter(series.values()))))
    fig = new_figure(2, width=6.2 if count <= many else 5.0, height=4.0, legend_space=True)
    ax_abs, ax_rel = fig.subplots(1, 2)
    all_values = np.concatenate(list(series.values()))
    if count <= many:
        n = len(series)
        width = 0.8 / n
        x = np.arange(count)
        for k, (name, values) in enumerate(series.items()):
            pos = x + (k - (n - 1) / 2) * width
            best = values.min()
            rel = 100.0 * (values / best - 1.0) if best > 0 else np.zeros_like(values)
            hatch = "//" if name == "total" else None
            label = "total" if name == "total" else short_name(name)
            ax_abs.bar(pos, values, width=width, color=colors[name], hatch=hatch, label=label, edgecolor="white")
            ax_rel.bar(pos, rel, width=width, color=colors[name], hatch=hatch, label=label, edgecolor="white")
            ib = int(np.argmin(values))
            ax_rel.plot(pos[ib], 0, marker="^", color=colors[name], markersize=7, clip_on=False)
        tick_labels = [lab.replace(", ", "\n") for lab in labels]
        for ax in (ax_abs, ax_rel):
            ax.set_xticks(x, tick_labels, fontsize="x-small")
            ax.get_xticklabels()[best_total].set_fontweight("bold")
            ax.set_xlabel("R-S pattern (level → device state)")
            ax.grid(axis="y", alpha=0.3)
        top = float(np.nanmax(all_values)) if all_values.size else 0.0
        ax_abs.annotate("★ best total", (best_total, top), ha="center", va="bottom", fontsize="small")
        ax_abs.set_ylim(top=top * 1.12 if top > 0 else None)
        if chosen is not None and chosen != best_total and 0 <= chosen < count:
            ax_abs.annotate("◆ chosen", (chosen, top), ha="center", va="bottom", fontsize="small")
        ax_rel.set_ylabel("% above layer's best (▲ best)")
    else:
        ranks = np.arange(1, count + 1)
        for name, values in series.items():
            order = np.argsort(values, kind="stable")
            sorted_values = values[order]
            label = "total" if name == "total" else short_name(name)
            lw = 2.2 if name == "total" else 1.3
            best = sorted_values[0]
            ax_abs.plot(ranks, sorted_values, color=colors[name], linewidth=lw, label=label)
            ax_rel.plot(ranks, sorted_values / best if best > 0 else sorted_values, color=colors[name], linewidth=lw)
            ax_abs.plot(1, best, marker="*", color=colors[name], markersize=12, linestyle="none")
            rank_of_best_total = int(np.nonzero(order == best_total)[0][0]) + 1
            ax_rel.plot(
                rank_of_best_total,
                values[best_total] / best if best > 0 else values[best_total],
                marker="o",
                color=colors[name],
                markersize=6,
                markeredgecolor="black",
                linestyle="none",
            )
        for ax in (ax_abs, ax_rel):
            ax.set_xscale("log")
            ax.set_xlabel(f"pattern rank (1 = cheapest, of {count})")
            ax.grid(alpha=0.3, which="both")
        best_text = f"★ best total: {labels[best_total]}"
        if "total" in series:
            best_text += f"\n{format_joules(series['total'][best_total])}"
        ax_abs.text(
            0.02,
            0.98,
            best_text,
            transform=ax_abs.transAxes,
            va="top",
            fontsize="small",
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85},
        )
        ax_rel.set_ylabel("energy / layer's best (● best total)")
    joule_axis(ax_abs, all_values)
    fig.suptitle(title)
    figure_legend(fig, [ax_abs])
    return fig


def _at_reported(entry: WriteEnergy | ReadEnergy) -> dict[str, float]:
    """Joules per sample of each layer (and ``"total"``) at the entry's reported pattern, or at the layer's cheapest
    pattern when the entry names none."""
    series = _pattern_series(entry.report) if entry.report is not None else {}
    if not series:
        return {}
    count = len(next(iter(series.values())))
    idx = entry.pattern_index
    valid = idx is not None and 0 <= idx < count
    return {name: float(vec[idx] if valid else vec.min()) for name, vec in series.items()}


def _energy_line(ax: Any, xs: Sequence[float], ys: Sequence[float], name: str, color: str) -> None:
    """One layer's energy curve; the total is drawn thicker and dashed."""
    is_total = name == "total"
    ax.plot(
        xs,
        ys,
        marker="o",
        color=color,
        linewidth=2.2 if is_total else 1.3,
        linestyle="--" if is_total else "-",
        label="total" if is_total else short_name(name),
    )


def write_overview_figure(write: Mapping[str, WriteEnergy]) -> Figure | None:
    """Write energy per sample seen of every stage at the reported pattern, per layer and in total."""
    per_stage = {s: _at_reported(e) for s, e in write.items()}
    stages = [s for s, values in per_stage.items() if values]
    if not stages:
        return None
    names = list(dict.fromkeys(n for s in stages for n in per_stage[s]))
    values = {n: [per_stage[s].get(n, np.nan) for s in stages] for n in names}
    colors = color_map(names)
    colors["total"] = TOTAL_COLOR
    fig = new_figure(1, width=6.0, legend_space=True)
    ax = fig.subplots()
    x = np.arange(len(stages))
    for name in names:
        _energy_line(ax, x, values[name], name, colors[name])
    ax.set_xticks(x, stages, rotation=30 if len(stages) > 4 else 0, ha="right" if len(stages) > 4 else "center")
    ax.set_xlabel("stage")
    ax.set_yscale("log")
    joule_axis(ax, [v for vs in values.values() for v in vs], "write energy per sample seen")
    ax.grid(alpha=0.3, which="both")
    fig.suptitle("Write energy by stage (reported pattern)")
    figure_legend(fig, [ax])
    return fig


def read_epochs_figure(read: Mapping[str, Sequence[ReadEnergy]]) -> Figure | None:
    """Read energy per sample over epochs at the reported pattern, per layer and in total; one panel per stage."""
    panels = []
    for stage in stage_order(read):
        entries = [e for e in read.get(stage) or () if e.report is not None]
        if not entries:
            continue
        xlabel, xs = x_axis([e.epoch for e in entries])
        series: dict[str, tuple[list[float], list[float]]] = {}
        for x, entry in zip(xs, entries, strict=True):
            for name, value in _at_reported(entry).items():
                series.setdefault(name, ([], []))
                series[name][0].append(x)
                series[name][1].append(value)
        if series:
            panels.append((stage, xlabel, series))
    if not panels:
        return None
    colors = color_map(n for _, _, series in panels for n in series)
    colors["total"] = TOTAL_COLOR
    fig = new_figure(len(panels), legend_space=True)
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    every = []
    for ax, (stage, xlabel, series) in zip(axes, panels, strict=True):
        for name, (xs, ys) in series.items():
            _energy_line(ax, xs, ys, name, colors[name])
            every.extend(ys)
        ax.set_title(stage)
        ax.set_xlabel(xlabel)
        ax.set_yscale("log")
        integer_x_axis(ax, [x for xs, _ in series.values() for x in xs])
        ax.grid(alpha=0.3, which="both")
    joule_axis(axes[0], every, "read energy per sample")
    fig.suptitle("Read energy per layer (reported pattern)")
    figure_legend(fig, axes)
    return fig


def compute_figure(stage: str, compute: ComputeComparison) -> Figure | None:
    """Compute energy per sample of the CMOS ANN, a DIET-SNN-style SNN and QUEST (log scale), ratios annotated.

    Left: the totals; right: per layer (when the comparison names the layers). A network that never fired gets
    :data:`SILENT_NOTE` instead of the ratios being read as savings.
    """
    every = (("CMOS ANN", compute.ann, _COMPUTE_COLORS[0]), ("DIET-SNN", compute.diet_snn, _COMPUTE_COLORS[1]),
             ("QUEST", compute.quest, _COMPUTE_COLORS[2]))  # fmt: skip
    models = [(label, energy, color) for label, energy, color in every if finite_values([energy.total_j])]
    if not models:
        return None
    layer_names = compute.layers
    per_layer_ok = bool(layer_names) and all(
        len(m.per_layer_j) == len(layer_names) and finite_values(m.per_layer_j) for _, m, _ in models
    )
    fig = new_figure(2 if per_layer_ok else 1, width=5.2, height=4.0)
    axes = fig.subplots(1, 2 if per_layer_ok else 1, squeeze=False)[0]
    ax = axes[0]
    totals = [float(m.total_j) for _, m, _ in models]
    x = np.arange(len(models))
    ax.bar(x, totals, color=[c for *_, c in models], width=0.6)
    ax.set_yscale("log")
    for xi, v in zip(x, totals, strict=True):
        ax.annotate(format_joules(v), (xi, v), ha="center", va="bottom", fontsize="small", xytext=(0, 2),
                    textcoords="offset points")  # fmt: skip
    ax.set_xticks(x, [label for label, _, _ in models])
    positive = [v for v in totals if v > 0]
    if positive:
        ax.set_ylim(min(positive) / 2, max(positive) * 3)
    joule_axis(ax, totals, "compute energy per sample")
    ratios = []
    if compute.ann_over_quest is not None:
        ratios.append(f"ANN / QUEST = {compute.ann_over_quest:.3g}×")
    if compute.diet_over_quest is not None:
        ratios.append(f"DIET-SNN / QUEST = {compute.diet_over_quest:.3g}×")
    if compute.silent_network:
        ratios.append("SILENT NETWORK: not a saving")
    if ratios:
        box = {"boxstyle": "round", "facecolor": "#fff0f0" if compute.silent_network else "white", "alpha": 0.9}
        ax.text(0.98, 0.98, "\n".join(ratios), transform=ax.transAxes, ha="right", va="top", fontsize="small",
                bbox=box)  # fmt: skip
    ax.set_title("total")
    ax.grid(axis="y", alpha=0.3, which="both")
    if per_layer_ok:
        ax = axes[1]
        n = len(models)
        width = 0.8 / n
        xl = np.arange(len(layer_names))
        every = []
        for k, (label, m, color) in enumerate(models):
            vals = [float(v) for v in m.per_layer_j]
            every.extend(vals)
            ax.bar(xl + (k - (n - 1) / 2) * width, vals, width=width, color=color, label=label)
        ax.set_yscale("log")
        ax.set_xticks(xl, [short_name(n) for n in layer_names], rotation=30, ha="right", fontsize="small")
        joule_axis(ax, every, "energy per sample")
        ax.set_title("per layer")
        ax.grid(axis="y", alpha=0.3, which="both")
        ax.legend(fontsize="small")
    fig.suptitle(f"Compute energy vs CMOS ({stage}), first layer: {compute.first_layer!r}")
    return fig
