"""The activity section (``AORMeter``): spike rate, weight sparsity and the Activation Operation Rate, how each
layer's input was classified, and the synaptic layers the counts left out."""

from __future__ import annotations

from quest_lightning.report import plots
from quest_lightning.report.html import Section, Table
from quest_lightning.report.plots import short_name, stage_order
from quest_lightning.report.sections.common import FigureWriter, new_section, skipped
from quest_lightning.summary import ActivityRecord, LayerActivity, RunSummary
from quest_lightning.summary import activity as summary_activity

_ACTIVITY_CAPTIONS = {
    "spike_rate": "Spikes per neuron per sample, summed over the T time steps and averaged over the epoch; one line "
    "per spiking layer, one panel per stage. Dashed: the mean over layers.",
    "sparsity": "Share of zero codes among each quantized layer's weights at the end of the epoch (full-precision "
    "layers have no codes and are left out). Dashed: the mean over the inner quantized layers.",
    "aor": "Activation Operation Rate: the share of the ANN-equivalent operations × T in which an input spike meets a "
    "non-zero weight, i.e. the reads the device makes. A layer whose input is analog (the first layer, which sees "
    "the image) counts every MAC that meets a non-zero weight; it is left out of the dashed mean.",
}
KIND_SOURCES = dict(
    zip(
        summary_activity.KIND_SOURCES,
        ("recorded (what the layer saw)", "override (the layer's input_kind)", "AORMeter(first_layer_analog=...)"),
        strict=True,
    )
)
"""How the activity table names who decided a layer's input kind, by ``LayerActivity.input_kind_source``."""


def _input_kind(r: LayerActivity) -> tuple[str, str]:
    """The layer's input kind and who decided it; files written before the kind was recorded say so."""
    if r.input_kind is None:
        return ("analog" if r.input_layer else "spikes"), "not recorded (older summary)"
    return r.input_kind, KIND_SOURCES.get(r.input_kind_source or "", r.input_kind_source or "–")


def _layer_table(stage: str, last: ActivityRecord) -> Table:
    rows = []
    for r in last.layers:
        kind, source = _input_kind(r)
        rows.append(
            [short_name(r.layer), r.module or "–", r.quantized, kind, source, r.aor, r.synaptic_rate, r.sparsity,
             r.ops, r.samples]
        )  # fmt: skip
    rows += [[short_name(n.neuron) + " (spikes)", "neurons", None, None, None, None, n.rate, None, None, None]
             for n in last.neurons]  # fmt: skip
    cols = ["layer", "module", "quantized", "input", "input classified by", "AOR", "synaptic / spike rate",
            "sparsity", "ANN ops/sample", "samples"]  # fmt: skip
    return Table(cols, rows, f"{stage}, epoch {last.epoch} (T = {last.timesteps})")


def activity_section(b: FigureWriter, summary: RunSummary) -> Section:
    """Spike rate, weight sparsity and AOR per layer over epochs, and the last epoch's table per stage, with each
    layer's input classification, the skipped layers and the empty epochs."""
    sec = new_section("activity")
    activity = summary.activity
    stages = [s for s in stage_order(activity) if any(r.empty is None for r in activity[s])]
    for stage in stage_order(activity):
        for rec in activity[stage]:
            if rec.empty is not None:
                sec.notes.append(f"{stage}, epoch {rec.epoch}: nothing was counted ({rec.empty}).")
    if not stages:
        return skipped(sec, "the summary has no activity records (attach AORMeter to the Trainer).")
    if "val" not in stages:
        sec.notes.append("No val records (no validation loop, or AORMeter(on=('train',))): training stage only.")
    if "train" not in stages:
        sec.notes.append("No train records (AORMeter(on=('val',))): validation stage only.")
    kept = {s: tuple(r for r in activity[s] if r.empty is None) for s in stages}
    for metric, spec in plots.ACTIVITY_METRICS.items():
        fig = plots.activity_figure(kept, metric)
        if not b.add(sec, fig, ["activity", metric], spec.title, _ACTIVITY_CAPTIONS[metric]):
            sec.notes.append(f"Skipped {spec.title.lower()}: no values recorded.")
    skipped_rows = []
    for stage in stages:
        last = kept[stage][-1]
        if last.layers or last.neurons:
            sec.tables.append(_layer_table(stage, last))
        seen = set()
        for rec in kept[stage]:
            for layer in rec.skipped:
                if (layer.layer, layer.reason) not in seen:
                    seen.add((layer.layer, layer.reason))
                    skipped_rows.append([stage, rec.epoch, short_name(layer.layer), layer.module, layer.reason])
    if skipped_rows:
        sec.warnings.append(
            f"{len(skipped_rows)} synaptic layer entr{'y is' if len(skipped_rows) == 1 else 'ies are'} not in the "
            "operation counts (listed below): the AOR, read and compute energy leave them out."
        )
        cols = ["stage", "first epoch", "layer", "module", "why it is not counted"]
        sec.tables.append(Table(cols, skipped_rows, "Synaptic layers left out of the counts"))
    return sec
