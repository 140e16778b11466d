"""Activity figures (``AORMeter``): spike rate, weight sparsity and AOR per layer over epochs."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from matplotlib.figure import Figure

from quest_lightning.report.plots.common import (
    TOTAL_COLOR,
    color_map,
    figure_legend,
    finite_values,
    integer_x_axis,
    new_figure,
    short_name,
    stage_order,
    x_axis,
)
from quest_lightning.summary import ActivityRecord

__all__ = ["ACTIVITY_METRICS", "ActivityMetric", "activity_figure"]


@dataclass(frozen=True)
class ActivityMetric:
    """One activity figure: what it plots per layer (or neuron group) and the epoch's mean.

    Attributes:
        title: The figure's title.
        ylabel: The y axis label.
        per_layer: The synaptic layers (``True``) or the neuron groups (``False``).
        items: ``(name, value, analog input)`` of every layer or neuron group of one epoch record.
        mean: The record's mean, the dashed line.
    """

    title: str
    ylabel: str
    per_layer: bool
    items: Callable[[ActivityRecord], Iterable[tuple[str, float | None, bool]]]
    mean: Callable[[ActivityRecord], float | None]


ACTIVITY_METRICS: dict[str, ActivityMetric] = {
    "spike_rate": ActivityMetric(
        "Spike rate per layer",
        "spikes / neuron / sample (over T)",
        False,
        lambda rec: ((n.neuron, n.rate, False) for n in rec.neurons),
        lambda rec: rec.spike_rate_mean,
    ),
    "sparsity": ActivityMetric(
        "Weight sparsity per layer",
        "weight sparsity (share of zero codes)",
        True,
        lambda rec: ((r.layer, r.sparsity, r.input_layer) for r in rec.layers),
        lambda rec: rec.sparsity_mean,
    ),
    "aor": ActivityMetric(
        "Activation operation rate (AOR) per layer",
        "AOR (share of ANN ops × T)",
        True,
        lambda rec: ((r.layer, r.aor, r.input_layer) for r in rec.layers),
        lambda rec: rec.aor_mean,
    ),
}
"""The activity figures by id: ``spike_rate``, ``sparsity`` and ``aor``."""

Series = dict[str, tuple[list[float], list[float]]]


def _activity_series(
    records: Sequence[ActivityRecord], metric: ActivityMetric
) -> tuple[str, Series, tuple[list[float], list[float]], set[str]]:
    kept = [r for r in records if r.empty is None]
    xlabel, xs = x_axis([r.epoch for r in kept], [r.step for r in kept])
    series: Series = {}
    mean: tuple[list[float], list[float]] = ([], [])
    inputs: set[str] = set()
    for x, rec in zip(xs, kept, strict=True):
        for name, value, analog in metric.items(rec):
            if not finite_values([value]):
                continue
            if analog:
                inputs.add(name)
            series.setdefault(name, ([], []))
            series[name][0].append(x)
            series[name][1].append(float(value))
        m = metric.mean(rec)
        if m is not None:
            mean[0].append(x)
            mean[1].append(float(m))
    return xlabel, series, mean, inputs


def activity_figure(activity: Mapping[str, Sequence[ActivityRecord]], metric: str) -> Figure | None:
    """One line per layer (or neuron group) over epochs, one panel per stage (``train``, ``val``).

    Args:
        activity: ``RunSummary.activity``: ``{stage: (epoch record, ...)}``; empty epochs are left out.
        metric: ``"spike_rate"``, ``"sparsity"`` or ``"aor"`` (:data:`ACTIVITY_METRICS`).

    Returns:
        The figure, or ``None`` when no record holds a value of ``metric``.
    """
    spec = ACTIVITY_METRICS[metric]
    panels = []
    for stage in stage_order(activity):
        xlabel, series, mean, inputs = _activity_series(activity.get(stage) or (), spec)
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
            note = "mean (inner layers)" if spec.per_layer else "mean"
            ax.plot(*mean, linestyle="--", marker="_", markersize=14, color=TOTAL_COLOR, linewidth=2, label=note)
        ax.set_title(stage)
        ax.set_xlabel(xlabel)
        integer_x_axis(ax, [x for xs, _ in series.values() for x in xs])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(spec.ylabel)
    fig.suptitle(spec.title)
    figure_legend(fig, axes)
    return fig
