"""The section in NeuroBench's vocabulary: one table of NeuroBench's metrics of the latest measured epoch, from the
run record's :class:`~quest_lightning.summary.NeuroBenchRecord`."""

from __future__ import annotations

from typing import Any

from quest_lightning.report.html import Section, Table
from quest_lightning.report.sections.common import new_section
from quest_lightning.summary import NeuroBenchRecord, RunSummary

NO_RECORD = (
    "The run record holds no NeuroBench metrics: no epoch of the activity counts (AORMeter, or DeviceEnergyCallback "
    "with AORMeter's defaults) ran the network, or the summary was written before they were recorded. "
    "quest_lightning.deploy.neurobench_metrics(model, x_seq) computes them from a model and a batch."
)
NOT_COMPUTED = "not computed (see the notes)"


def _value(value: float | int | None, fmt: str) -> str:
    return NOT_COMPUTED if value is None else format(value, fmt)


def neurobench_rows(r: NeuroBenchRecord) -> list[list[Any]]:
    """The table's rows: NeuroBench's metric and key, the value, its unit and what it counts."""
    per_sample = "per sample"
    return [
        ["SynapticOperations", "Effective_ACs", _value(r.effective_acs, ",.2f"), per_sample,
         "non-zero weights meeting a spike (accumulates)"],
        ["SynapticOperations", "Effective_MACs", _value(r.effective_macs, ",.2f"), per_sample,
         "non-zero weights meeting a non-zero analog input (multiply-accumulates)"],
        ["SynapticOperations", "Dense", _value(r.dense, ",.2f"), per_sample,
         "every product with all-ones inputs and weights, padding left out"],
        ["ActivationSparsity", "", _value(r.activation_sparsity, ".6f"), "fraction",
         "zero neuron outputs over all neurons, time steps and samples"],
        ["ConnectionSparsity", "", _value(r.connection_sparsity, ".6f"), "fraction",
         "zero weights (integer codes) over all synaptic weights"],
        ["Footprint", "", _value(r.footprint_bytes, ","), "bytes",
         "every parameter and buffer at its storage size (the float32 training model)"],
        ["Footprint", "deployed", _value(r.deployed_bytes, ","), "bytes",
         "codes packed at b bits, α, biases and full-precision weights in float32"],
    ]  # fmt: skip


def neurobench_section(summary: RunSummary) -> Section:
    """NeuroBench's metrics of the latest measured epoch in one table, with the notes on what could not be computed;
    a note saying how to get them when the record has none."""
    sec = new_section("neurobench")
    r = summary.neurobench
    if r is None:
        sec.notes.append(NO_RECORD)
        return sec
    when = f"{r.stage} epoch {r.epoch}, {r.samples} samples"
    sec.tables.append(Table(["NeuroBench metric", "key", "value", "unit", "what it counts"], neurobench_rows(r), when))
    sec.notes.append(
        f"Counted exactly over the counted batches of {when}; the sparsity of the connections and the footprints are "
        f"those of the weights when the record was written. Definitions: {r.definition}."
    )
    sec.notes.extend(r.notes)
    return sec
