"""The activity section (``AORMeter``): spike rate, weight sparsity and the Activation Operation Rate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from quest_lightning.report import plots
from quest_lightning.report.html import Section, Table
from quest_lightning.report.plots import short_name, stage_order
from quest_lightning.report.sections.common import FigureWriter, mapping_at, new_section, skipped

_ACTIVITY_CAPTIONS = {
    "spike_rate": "Spikes per neuron per sample, summed over the T time steps and averaged over the epoch; one line "
    "per spiking layer, one panel per stage. Dashed: the mean over layers.",
    "sparsity": "Share of zero codes among each quantized layer's weights at the end of the epoch (full-precision "
    "layers have no codes and are left out). Dashed: the mean over the inner quantized layers.",
    "aor": "Activation Operation Rate: the share of the ANN-equivalent operations × T in which an input spike meets a "
    "non-zero weight, i.e. the reads the device makes. The first layer sees the analog input, so its AOR is the share "
    "of its MACs that meet a non-zero weight; it is left out of the dashed mean.",
}


def activity_section(b: FigureWriter, summary: Mapping[str, Any]) -> Section:
    """Spike rate, weight sparsity and AOR per layer over epochs, and the last epoch's table per stage."""
    sec = new_section("activity")
    activity = mapping_at(summary, "activity")
    stages = [s for s in stage_order(activity) if activity.get(s)]
    if not stages:
        return skipped(sec, "the summary has no activity records (attach AORMeter to the Trainer).")
    if "val" not in stages:
        sec.notes.append("No val records (no validation loop, or AORMeter(on=('train',))): training stage only.")
    if "train" not in stages:
        sec.notes.append("No train records (AORMeter(on=('val',))): validation stage only.")
    for metric, spec in plots.ACTIVITY_METRICS.items():
        fig = plots.activity_figure({s: activity[s] for s in stages}, metric)
        if not b.add(sec, fig, ["activity", metric], spec["title"], _ACTIVITY_CAPTIONS[metric]):
            sec.notes.append(f"Skipped {spec['title'].lower()}: no values recorded.")
    for stage in stages:
        last = activity[stage][-1]
        rows = [
            [short_name(r.get("layer", "?")), r.get("quantized"), r.get("input_layer"), r.get("aor"),
             r.get("synaptic_rate"), r.get("sparsity"), r.get("ops")]
            for r in last.get("layers") or []
        ]  # fmt: skip
        rows += [[short_name(n.get("neuron", "?")) + " (spikes)", None, None, None, n.get("rate"), None, None]
                 for n in last.get("neurons") or []]  # fmt: skip
        if rows:
            title = f"{stage}, epoch {last.get('epoch')} (T = {last.get('timesteps')})"
            cols = ["layer", "quantized", "analog input", "AOR", "synaptic / spike rate", "sparsity", "ANN ops/sample"]
            sec.tables.append(Table(cols, rows, title))
    return sec
