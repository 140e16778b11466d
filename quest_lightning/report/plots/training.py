"""Training curves: the per-epoch curves of the run summary (whatever the logger), or Lightning's ``metrics.csv`` for
runs whose summary has none."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from quest_lightning.report.plots.common import COLORS, finite_values, integer_x_axis, log_or_linear, new_figure
from quest_lightning.summary import EpochCurve

__all__ = ["CURVE_STAGES", "curve_columns", "curves_figure", "training_columns", "training_figure"]

CURVE_STAGES = ("train", "val")
"""The stages whose loss and accuracy the curves figure draws."""

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
        if not any(finite_values([r.get(col)]) for r in rows):
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
    fig = new_figure(len(groups), width=4.4)
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    use_step = all(finite_values([r.get("step")]) for r in rows)
    for ax, (metric, cols) in zip(axes, groups.items(), strict=True):
        for k, col in enumerate(cols):
            pts = [
                (float(r["step"]) if use_step else float(i), float(r[col]))
                for i, r in enumerate(rows)
                if finite_values([r.get(col)])
            ]
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, marker="o" if len(pts) < 30 else None, markersize=4, color=COLORS[k], label=col)
        ax.set_title(metric)
        ax.set_xlabel("global step" if use_step else "row")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("Training metrics (metrics.csv)")
    return fig


def curve_columns(curves: Sequence[EpochCurve]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """The per-epoch curves as panels of lines: ``{"loss": {"train": [(epoch, value), ...], "val": ...},
    "accuracy": {...}, "learning rate": {"group 0": ...}}``; lines and panels without a value are left out."""
    panels: dict[str, dict[str, list[tuple[int, float]]]] = {"loss": {}, "accuracy": {}, "learning rate": {}}
    for curve in curves:
        for stage in CURVE_STAGES:
            for panel, value in (("loss", curve.loss(stage)), ("accuracy", curve.accuracy(stage))):
                if value is not None:
                    panels[panel].setdefault(stage, []).append((curve.epoch, value))
        for k, lr in enumerate(curve.learning_rates):
            panels["learning rate"].setdefault(f"group {k}", []).append((curve.epoch, lr))
    return {name: lines for name, lines in panels.items() if lines}


def curves_figure(curves: Sequence[EpochCurve]) -> Figure | None:
    """Loss, accuracy (train and val) and the learning rate of every parameter group at the end of each epoch, as
    the run summary recorded them (``RunSummary.curves``), one panel each."""
    panels = curve_columns(curves)
    if not panels:
        return None
    fig = new_figure(len(panels), width=4.4)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, lines) in zip(axes, panels.items(), strict=True):
        for k, (label, points) in enumerate(lines.items()):
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o" if len(points) < 30 else None, markersize=4, color=COLORS[k], label=label)
        if name == "learning rate":
            log_or_linear(ax, [y for pts in lines.values() for _, y in pts], span=10.0)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        integer_x_axis(ax, [x for pts in lines.values() for x, _ in pts])
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("Training curves per epoch (run summary)")
    return fig
