"""Activity figures (``AORMeter``): spike rate, weight sparsity and AOR per layer over epochs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from quest_lightning.report.plots.common import (
    TOTAL_COLOR,
    color_map,
    figure_legend,
    finite_values,
    new_figure,
    short_name,
    stage_order,
    x_axis,
)

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
    xlabel, xs = x_axis(records)
    series: dict[str, tuple[list[float], list[float]]] = {}
    mean: tuple[list[float], list[float]] = ([], [])
    inputs: set[str] = set()
    for x, rec in zip(xs, records, strict=True):
        for item in rec.get(spec["group"]) or []:
            value = item.get(spec["value"])
            name = item.get(spec["name"])
            if name is None or not finite_values([value]):
                continue
            if item.get("input_layer"):
                inputs.add(name)
            series.setdefault(name, ([], []))
            series[name][0].append(x)
            series[name][1].append(float(value))
        if finite_values([rec.get(spec["mean"])]):
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
    colors = color_map(name for *_, series, _, _ in panels for name in series)
    fig = new_figure(len(panels), legend_space=True)
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (stage, xlabel, series, mean, inputs) in zip(axes, panels, strict=True):
        for name, (xs, ys) in series.items():
            label = short_name(name) + (" (analog input)" if name in inputs else "")
            ax.plot(xs, ys, marker="o", color=colors[name], label=label)
        if mean[0]:
            note = "mean (inner layers)" if spec["group"] == "layers" else "mean"
            ax.plot(*mean, linestyle="--", color=TOTAL_COLOR, linewidth=2, label=note)
        ax.set_title(stage)
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(spec["ylabel"])
    fig.suptitle(spec["title"])
    figure_legend(fig, axes)
    return fig
