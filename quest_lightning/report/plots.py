"""Figures of a run summary (``quest_summary.json``), drawn on matplotlib's Agg canvas.

Every function takes plain JSON data (the parts of the summary written by
:class:`~quest_lightning.lightning.callbacks.DeviceEnergyCallback`) and returns a :class:`matplotlib.figure.Figure`,
or ``None`` when the data holds nothing to draw. No pyplot state is touched, so building a report neither needs a
display nor changes the backend of the calling program. Energies are in joules per sample and are labelled with SI
prefixes (fJ, pJ, nJ, µJ).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

__all__ = [
    "MANY_PATTERNS",
    "activity_figure",
    "code_label",
    "compute_figure",
    "format_joules",
    "joule_prefix",
    "pattern_energy_figure",
    "read_epochs_figure",
    "save_png",
    "short_name",
    "stage_order",
    "trajectory_figure",
    "training_figure",
    "transition_figure",
    "transition_overview_figure",
    "write_overview_figure",
]

MANY_PATTERNS = 24
"""Above this many R-S patterns the pattern plots show the sorted distribution instead of grouped bars."""

_PREFIXES = ((1e-18, "a"), (1e-15, "f"), (1e-12, "p"), (1e-9, "n"), (1e-6, "µ"), (1e-3, "m"), (1.0, ""))
_STAGE_FIRST = ("train", "val", "validation", "test")
_COMPUTE_MODELS = (("ann", "CMOS ANN"), ("diet_snn", "DIET-SNN"), ("quest", "QUEST"))
_COLORS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
]  # fmt: skip
_TOTAL_COLOR = "#222222"


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


def _finite(values: Iterable[Any]) -> list[float]:
    out = []
    for v in values:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out.append(float(v))
    return out


def _joule_axis(ax: Any, values: Iterable[Any], label: str = "energy per sample", axis: str = "y") -> None:
    """Tick labels in one SI prefix chosen from the largest value; the prefix goes into the axis label."""
    finite = [abs(v) for v in _finite(values) if v != 0]
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


def _color_map(names: Iterable[str]) -> dict[str, str]:
    return {n: _COLORS[i % len(_COLORS)] for i, n in enumerate(dict.fromkeys(names))}


def _figure(ncols: int, nrows: int = 1, width: float = 5.0, height: float = 3.6, legend_space: bool = False) -> Figure:
    extra = 2.4 if legend_space else 0.0
    return Figure(figsize=(width * ncols + extra, height * nrows), layout="constrained")


def _legend(fig: Figure, axes: Sequence[Any], ncol: int = 1) -> None:
    """One legend for the whole figure (outside on the right), without duplicate labels."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize="small", ncol=ncol)


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(n, max_cols)
    return cols, math.ceil(n / cols)


def _x_of(records: Sequence[Mapping[str, Any]]) -> tuple[str, list[float]]:
    """Epochs as the x axis, or the global step when one epoch holds several records."""
    epochs = [r.get("epoch") for r in records]
    if all(isinstance(e, int) for e in epochs) and len(set(epochs)) == len(epochs):
        return "epoch", [float(e) for e in epochs]
    steps = [r.get("step") for r in records]
    if all(isinstance(s, int) for s in steps):
        return "global step", [float(s) for s in steps]
    return "record", [float(i) for i in range(len(records))]


# --------------------------------------------------------------------------------------------------------------------
# activity (AORMeter)

ACTIVITY_METRICS: dict[str, dict[str, str]] = {
    "spike_rate": {
        "group": "neurons",
        "name": "neuron",
        "value": "rate",
        "mean": "spike_rate_mean",
        "ylabel": "spikes / neuron / sample (over T)",
        "title": "Spike rate per layer",
    },
    "sparsity": {
        "group": "layers",
        "name": "layer",
        "value": "sparsity",
        "mean": "sparsity_mean",
        "ylabel": "weight sparsity (share of zero codes)",
        "title": "Weight sparsity per layer",
    },
    "aor": {
        "group": "layers",
        "name": "layer",
        "value": "aor",
        "mean": "aor_mean",
        "ylabel": "AOR (share of ANN ops × T)",
        "title": "Activation operation rate (AOR) per layer",
    },
}


def _activity_series(
    records: Sequence[Mapping[str, Any]], metric: str
) -> tuple[str, dict[str, tuple[list[float], list[float]]], tuple[list[float], list[float]], set[str]]:
    spec = ACTIVITY_METRICS[metric]
    xlabel, xs = _x_of(records)
    series: dict[str, tuple[list[float], list[float]]] = {}
    mean: tuple[list[float], list[float]] = ([], [])
    inputs: set[str] = set()
    for x, rec in zip(xs, records, strict=True):
        for item in rec.get(spec["group"]) or []:
            value = item.get(spec["value"])
            name = item.get(spec["name"])
            if name is None or not _finite([value]):
                continue
            if item.get("input_layer"):
                inputs.add(name)
            series.setdefault(name, ([], []))
            series[name][0].append(x)
            series[name][1].append(float(value))
        if _finite([rec.get(spec["mean"])]):
            mean[0].append(x)
            mean[1].append(float(rec[spec["mean"]]))
    return xlabel, series, mean, inputs


def activity_figure(activity: Mapping[str, Sequence[Mapping[str, Any]]], metric: str) -> Figure | None:
    """One line per layer (or neuron) over epochs, one panel per stage (``train``, ``val``).

    Args:
        activity: ``summary["activity"]``: ``{stage: [epoch record, ...]}`` as written by ``AORMeter``.
        metric: ``"spike_rate"``, ``"sparsity"`` or ``"aor"``.
    """
    spec = ACTIVITY_METRICS[metric]
    panels = []
    for stage in stage_order(activity):
        records = activity.get(stage) or []
        xlabel, series, mean, inputs = _activity_series(records, metric)
        if series:
            panels.append((stage, xlabel, series, mean, inputs))
    if not panels:
        return None
    colors = _color_map(name for *_, series, _, _ in panels for name in series)
    fig = _figure(len(panels), legend_space=True)
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (stage, xlabel, series, mean, inputs) in zip(axes, panels, strict=True):
        for name, (xs, ys) in series.items():
            label = short_name(name) + (" (analog input)" if name in inputs else "")
            ax.plot(xs, ys, marker="o", color=colors[name], label=label)
        if mean[0]:
            note = "mean (inner layers)" if spec["group"] == "layers" else "mean"
            ax.plot(*mean, linestyle="--", color=_TOTAL_COLOR, linewidth=2, label=note)
        ax.set_title(stage)
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(spec["ylabel"])
    fig.suptitle(spec["title"])
    _legend(fig, axes)
    return fig


# --------------------------------------------------------------------------------------------------------------------
# weight transitions (WeightTransitionMonitor)


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


def _valid_layers(layers: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    out = {}
    for name, info in (layers or {}).items():
        counts = info.get("counts") if isinstance(info, Mapping) else None
        if counts and isinstance(info.get("qmax"), int) and np.asarray(counts).shape == (2 * info["qmax"] + 1,) * 2:
            out[name] = info
    return out


def transition_figure(stage: str, layers: Mapping[str, Mapping[str, Any]]) -> Figure | None:
    """Off-diagonal level transitions of one stage, as a share of weight-steps.

    With 3 levels (2 bits) a grouped bar chart (one bar per layer for each transition ``-1→0``, ``-1→+1`` ...);
    with more levels one heatmap per layer (rows: level before the step, columns: level after; diagonal blank).
    """
    layers = _valid_layers(layers)
    if not layers:
        return None
    qmaxes = {info["qmax"] for info in layers.values()}
    if qmaxes == {1}:
        colors = _color_map(layers)
        fig = _figure(1, width=7.0, legend_space=True)
        ax = fig.subplots()
        n = len(layers)
        width = 0.8 / n
        for k, (name, info) in enumerate(layers.items()):
            labels, values, total = _off_diagonal(info["counts"], 1)
            share = 100.0 * values / total if total else values * 0
            x = np.arange(len(labels)) + (k - (n - 1) / 2) * width
            frozen = info.get("frozen_fraction")
            label = short_name(name) + (f" (frozen {100 * frozen:.1f}%)" if _finite([frozen]) else "")
            ax.bar(x, share, width=width, color=colors[name], label=label)
        ax.set_xticks(np.arange(len(labels)), labels)
        ax.set_xlabel("level transition (code before → code after one optimizer step)")
        ax.set_ylabel("transitions per weight per step (%)")
        ax.grid(axis="y", alpha=0.3)
        fig.suptitle(f"Weight transitions, stage {stage!r}")
        _legend(fig, [ax])
        return fig
    cols, rows = _grid(len(layers))
    fig = _figure(cols, rows, width=4.4, height=3.8)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (name, info) in zip(axes, layers.items(), strict=False):
        q = info["qmax"]
        c = np.asarray(info["counts"], dtype=float)
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
    for ax in axes[len(layers) :]:
        ax.set_visible(False)
    fig.suptitle(f"Weight transitions (off-diagonal), stage {stage!r}")
    return fig


def trajectory_figure(stage: str, layers: Mapping[str, Mapping[str, Any]], max_weights: int = 16) -> Figure | None:
    """Integer codes of the followed weights at each optimizer step of a stage (QUEST Fig. 7a), one panel per layer.

    Lines are offset slightly so that weights sitting on the same level stay visible.
    """
    panels = {
        name: info
        for name, info in (layers or {}).items()
        if isinstance(info, Mapping) and info.get("trajectory") and isinstance(info.get("qmax"), int)
    }
    if not panels:
        return None
    cols, rows = _grid(len(panels))
    fig = _figure(cols, rows, width=4.6, height=3.2)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (name, info) in zip(axes, panels.items(), strict=False):
        q = info["qmax"]
        trajectories = [t for t in info["trajectory"][:max_weights] if t]
        n = len(trajectories)
        for k, codes in enumerate(trajectories):
            offset = (k - (n - 1) / 2) * (0.5 / max(n, 1))
            ys = np.asarray(codes, dtype=float) + offset
            ax.step(np.arange(len(codes)), ys, where="post", color=_COLORS[k % len(_COLORS)], linewidth=1.2)
        ticks = list(range(-q, q + 1))
        ax.set_yticks(ticks, [code_label(t) for t in ticks])
        ax.set_ylim(-q - 0.5, q + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("optimizer step in stage")
        ax.set_ylabel("weight code")
        ax.set_title(f"{short_name(name)} ({n} weights)", fontsize="medium")
        ax.grid(alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(f"Weight trajectories, stage {stage!r}")
    return fig


def transition_overview_figure(transitions: Mapping[str, Mapping[str, Any]]) -> Figure | None:
    """Share of weights that changed level per step, and share of changes that skip a level, across stages."""
    stages = [s for s, res in transitions.items() if isinstance(res, Mapping) and res.get("layers")]
    if not stages:
        return None
    names = list(dict.fromkeys(n for s in stages for n in transitions[s]["layers"]))
    colors = _color_map(names)
    fig = _figure(2, legend_space=True)
    axes = fig.subplots(1, 2)
    keys = (("changed_fraction", "weights that changed level per step (%)"),
            ("non_adjacent_fraction", "changes that skip a level (%)"))  # fmt: skip
    x = np.arange(len(stages))
    for ax, (key, ylabel) in zip(axes, keys, strict=True):
        for name in names:
            ys = [transitions[s]["layers"].get(name, {}).get(key) for s in stages]
            ys = [100.0 * v if _finite([v]) else np.nan for v in ys]
            ax.plot(x, ys, marker="o", color=colors[name], label=short_name(name))
        ax.set_xticks(x, stages, rotation=30 if len(stages) > 4 else 0, ha="right" if len(stages) > 4 else "center")
        ax.set_xlabel("stage")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    fig.suptitle("Weight transitions by stage")
    _legend(fig, axes)
    return fig


# --------------------------------------------------------------------------------------------------------------------
# device energy per R-S pattern (DeviceEnergyCallback)


def _pattern_series(report: Mapping[str, Any]) -> dict[str, np.ndarray]:
    series = {
        name: np.asarray(r["per_pattern_j"], dtype=float)
        for name, r in (report.get("per_layer") or {}).items()
        if isinstance(r, Mapping) and r.get("per_pattern_j")
    }
    total = report.get("total")
    if isinstance(total, Mapping) and total.get("per_pattern_j"):
        series["total"] = np.asarray(total["per_pattern_j"], dtype=float)
    sizes = {len(v) for v in series.values()}
    return series if len(sizes) == 1 else {}


def _pattern_labels(labels: Sequence[str] | None, count: int) -> list[str]:
    if labels and len(labels) == count:
        return [str(s) for s in labels]
    return [f"#{i}" for i in range(count)]


def pattern_energy_figure(
    report: Mapping[str, Any],
    title: str,
    labels: Sequence[str] | None = None,
    chosen: int | None = None,
    many: int = MANY_PATTERNS,
) -> Figure | None:
    """Energy per sample of every R-S pattern, per layer and in total (``LayerwiseEnergyReport.to_dict()``).

    Left: joules per sample; right: the same relative to each layer's best pattern. With at most ``many`` patterns,
    grouped bars with the pattern labels (the best total pattern starred); with more, each curve sorted from cheapest
    to dearest, the best marked, and the rank of the best total pattern marked on every layer's curve.

    Args:
        report: The layerwise report (``per_layer`` and ``total``, each with ``per_pattern_j``).
        title: Figure title.
        labels: Pattern labels in pattern order (``summary["patterns"]``); ``#i`` when missing.
        chosen: The pattern the run reports its per-layer figures with, marked when it is not the best.
    """
    series = _pattern_series(report)
    if not series:
        return None
    count = len(next(iter(series.values())))
    labels = _pattern_labels(labels, count)
    colors = _color_map(series)
    colors["total"] = _TOTAL_COLOR
    best_total = int(np.argmin(series["total"])) if "total" in series else int(np.argmin(next(iter(series.values()))))
    fig = _figure(2, width=6.2 if count <= many else 5.0, height=4.0, legend_space=True)
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
    _joule_axis(ax_abs, all_values)
    fig.suptitle(title)
    _legend(fig, [ax_abs])
    return fig


def write_overview_figure(write: Mapping[str, Mapping[str, Any]]) -> Figure | None:
    """Write energy per sample of every stage at the reported pattern, per layer and in total."""
    stages = [s for s, e in write.items() if isinstance(e, Mapping) and _pattern_series(e.get("report") or {})]
    if not stages:
        return None
    names: list[str] = []
    values: dict[str, list[float]] = {}
    for s in stages:
        entry = write[s]
        series = _pattern_series(entry["report"])
        count = len(next(iter(series.values())))
        idx = entry.get("pattern_index")
        idx = idx if isinstance(idx, int) and 0 <= idx < count else None
        for name, per_pattern in series.items():
            if name not in values:
                names.append(name)
                values[name] = [np.nan] * len(stages)
            values[name][stages.index(s)] = float(per_pattern[idx] if idx is not None else per_pattern.min())
    colors = _color_map(names)
    colors["total"] = _TOTAL_COLOR
    fig = _figure(1, width=6.0, legend_space=True)
    ax = fig.subplots()
    x = np.arange(len(stages))
    for name in names:
        is_total = name == "total"
        ax.plot(
            x,
            values[name],
            marker="o",
            color=colors[name],
            linewidth=2.2 if is_total else 1.3,
            linestyle="--" if is_total else "-",
            label="total" if is_total else short_name(name),
        )
    ax.set_xticks(x, stages, rotation=30 if len(stages) > 4 else 0, ha="right" if len(stages) > 4 else "center")
    ax.set_xlabel("stage")
    ax.set_yscale("log")
    _joule_axis(ax, [v for vs in values.values() for v in vs], "write energy per sample")
    ax.grid(alpha=0.3, which="both")
    fig.suptitle("Write energy by stage (reported pattern)")
    _legend(fig, [ax])
    return fig


def read_epochs_figure(read: Mapping[str, Sequence[Mapping[str, Any]]]) -> Figure | None:
    """Read energy per sample over epochs at the reported pattern, per layer and in total; one panel per stage."""
    panels = []
    for stage in stage_order(read):
        entries = [e for e in read.get(stage) or [] if isinstance(e, Mapping) and e.get("report")]
        if not entries:
            continue
        xlabel, xs = _x_of(entries)
        series: dict[str, tuple[list[float], list[float]]] = {}
        for x, entry in zip(xs, entries, strict=True):
            per = _pattern_series(entry["report"])
            if not per:
                continue
            idx = entry.get("pattern_index")
            count = len(next(iter(per.values())))
            for name, vec in per.items():
                v = float(vec[idx]) if isinstance(idx, int) and 0 <= idx < count else float(vec.min())
                series.setdefault(name, ([], []))
                series[name][0].append(x)
                series[name][1].append(v)
        if series:
            panels.append((stage, xlabel, series))
    if not panels:
        return None
    colors = _color_map(n for _, _, series in panels for n in series)
    colors["total"] = _TOTAL_COLOR
    fig = _figure(len(panels), legend_space=True)
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    every = []
    for ax, (stage, xlabel, series) in zip(axes, panels, strict=True):
        for name, (xs, ys) in series.items():
            is_total = name == "total"
            ax.plot(
                xs,
                ys,
                marker="o",
                color=colors[name],
                linewidth=2.2 if is_total else 1.3,
                linestyle="--" if is_total else "-",
                label="total" if is_total else short_name(name),
            )
            every.extend(ys)
        ax.set_title(stage)
        ax.set_xlabel(xlabel)
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3, which="both")
    _joule_axis(axes[0], every, "read energy per sample")
    fig.suptitle("Read energy per layer (reported pattern)")
    _legend(fig, axes)
    return fig


# --------------------------------------------------------------------------------------------------------------------
# compute energy against CMOS


def compute_figure(stage: str, compute: Mapping[str, Any]) -> Figure | None:
    """Compute energy per sample of the CMOS ANN, a DIET-SNN-style SNN and QUEST (log scale), ratios annotated.

    Left: the totals; right: per layer (when the summary names the layers).
    """
    models = [
        (key, label, compute[key])
        for key, label in _COMPUTE_MODELS
        if isinstance(compute.get(key), Mapping) and _finite([compute[key].get("total_j")])
    ]
    if not models:
        return None
    layer_names = compute.get("layers") or []
    per_layer_ok = bool(layer_names) and all(
        len(m.get("per_layer_j") or []) == len(layer_names) and _finite(m["per_layer_j"]) for _, _, m in models
    )
    colors = {"ann": "#7f7f7f", "diet_snn": "#ff7f0e", "quest": "#1f77b4"}
    fig = _figure(2 if per_layer_ok else 1, width=5.2, height=4.0)
    axes = fig.subplots(1, 2 if per_layer_ok else 1, squeeze=False)[0]
    ax = axes[0]
    totals = [float(m["total_j"]) for _, _, m in models]
    x = np.arange(len(models))
    ax.bar(x, totals, color=[colors[k] for k, _, _ in models], width=0.6)
    ax.set_yscale("log")
    for xi, v in zip(x, totals, strict=True):
        ax.annotate(format_joules(v), (xi, v), ha="center", va="bottom", fontsize="small", xytext=(0, 2),
                    textcoords="offset points")  # fmt: skip
    ax.set_xticks(x, [label for _, label, _ in models])
    positive = [v for v in totals if v > 0]
    if positive:
        ax.set_ylim(min(positive) / 2, max(positive) * 3)
    _joule_axis(ax, totals, "compute energy per sample")
    ratios = []
    if _finite([compute.get("ann_over_quest")]):
        ratios.append(f"ANN / QUEST = {compute['ann_over_quest']:.3g}×")
    if _finite([compute.get("diet_over_quest")]):
        ratios.append(f"DIET-SNN / QUEST = {compute['diet_over_quest']:.3g}×")
    if ratios:
        ax.text(0.98, 0.98, "\n".join(ratios), transform=ax.transAxes, ha="right", va="top", fontsize="small",
                bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.9})  # fmt: skip
    ax.set_title("total")
    ax.grid(axis="y", alpha=0.3, which="both")
    if per_layer_ok:
        ax = axes[1]
        n = len(models)
        width = 0.8 / n
        xl = np.arange(len(layer_names))
        every = []
        for k, (key, label, m) in enumerate(models):
            vals = [float(v) for v in m["per_layer_j"]]
            every.extend(vals)
            ax.bar(xl + (k - (n - 1) / 2) * width, vals, width=width, color=colors[key], label=label)
        ax.set_yscale("log")
        ax.set_xticks(xl, [short_name(n) for n in layer_names], rotation=30, ha="right", fontsize="small")
        _joule_axis(ax, every, "energy per sample")
        ax.set_title("per layer")
        ax.grid(axis="y", alpha=0.3, which="both")
        ax.legend(fontsize="small")
    first = compute.get("first_layer")
    fig.suptitle(f"Compute energy vs CMOS ({stage})" + (f", first layer: {first!r}" if first else ""))
    return fig


# --------------------------------------------------------------------------------------------------------------------
# training curves (Lightning's metrics.csv)

_CALLBACK_PREFIXES = ("aor/", "sparsity/", "spike_rate/", "energy/", "transitions/")


def training_columns(rows: Sequence[Mapping[str, float | None]]) -> dict[str, list[str]]:
    """The logged model metrics of ``metrics.csv`` grouped by name: ``{"loss": ["train/loss", "val/loss"], ...}``.

    The callbacks' own keys (``aor/``, ``energy/`` ...) and ``epoch``/``step`` are left out; ``_step``/``_epoch``
    suffixes are grouped with their metric.
    """
    columns = list(dict.fromkeys(k for r in rows for k in r))
    groups: dict[str, list[str]] = {}
    for col in columns:
        if col in ("epoch", "step") or col.startswith(_CALLBACK_PREFIXES):
            continue
        if not any(_finite([r.get(col)]) for r in rows):
            continue
        metric = col.rsplit("/", 1)[-1]
        for suffix in ("_step", "_epoch"):
            if metric.endswith(suffix):
                metric = metric[: -len(suffix)]
        groups.setdefault(metric, []).append(col)
    return groups


def training_figure(rows: Sequence[Mapping[str, float | None]], max_panels: int = 4) -> Figure | None:
    """Loss, accuracy and the other metrics the module logged, over the global step, one panel per metric."""
    groups = training_columns(rows)
    if not groups:
        return None
    groups = dict(list(groups.items())[:max_panels])
    fig = _figure(len(groups), width=4.4)
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    use_step = all(_finite([r.get("step")]) for r in rows)
    for ax, (metric, cols) in zip(axes, groups.items(), strict=True):
        for k, col in enumerate(cols):
            pts = [
                (float(r["step"]) if use_step else float(i), float(r[col]))
                for i, r in enumerate(rows)
                if _finite([r.get(col)])
            ]
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, marker="o" if len(pts) < 30 else None, markersize=4, color=_COLORS[k], label=col)
        ax.set_title(metric)
        ax.set_xlabel("global step" if use_step else "row")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("Training metrics (metrics.csv)")
    return fig
