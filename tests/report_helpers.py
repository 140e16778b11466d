"""Shared by the report and CLI tests: hand-written typed run records, a minimal summary (one device, train
activity, one write stage, one compute comparison) and a full one (two devices, flags, a silent network, curves,
writes per cell, endurance, a skipped layer, an overridden input kind) with figures simple enough to check by hand,
and the check of a report page."""

from __future__ import annotations

import base64
import html
import re
from itertools import permutations
from pathlib import Path

from quest_lightning.devices import DeviceSpec
from quest_lightning.devices.io import device_to_dict
from quest_lightning.devices.patterns import format_mapping
from quest_lightning.report import SECTION_TITLES
from quest_lightning.summary import (
    SUMMARY_FILE,
    ActivityRecord,
    CmosReference,
    ComputeComparison,
    ComputeEnergy,
    DeviceEndurance,
    DevicePricing,
    EnergyReport,
    EpochCurve,
    Flag,
    LayerActivity,
    LayerEndurance,
    LayerTransitions,
    LayerWrites,
    NeuronActivity,
    PatternEnergy,
    ReadEnergy,
    RunSummary,
    SkippedLayer,
    TransitionStage,
    WriteEnergy,
    WritesPerCell,
    write_summary,
)

IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
FIGURE_ID = re.compile(r'<figure id="fig-([^"]+)">')
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def check_page(page: Path, expected_ids: set[str]) -> str:
    """The page embeds exactly the expected figures, each equal to its non-trivial PNG file next to it."""
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert "<script" not in text and 'src="http' not in text and "<link" not in text  # self-contained
    ids = FIGURE_ID.findall(text)
    images = IMG.findall(text)
    assert set(ids) == expected_ids and len(ids) == len(expected_ids)
    assert len(images) == len(expected_ids)
    pngs = {p.stem: p for p in page.parent.glob("*.png")}
    assert set(pngs) == expected_ids
    for plot_id, data in zip(ids, images, strict=True):
        raw = base64.b64decode(data)
        assert raw.startswith(PNG_MAGIC)
        assert raw == pngs[plot_id].read_bytes()
        assert len(raw) > 10_000, f"{plot_id}.png is suspiciously small ({len(raw)} bytes)"
    for sid, title in SECTION_TITLES.items():
        assert f'<section id="sec-{sid}">\n<h2>{html.escape(title)}</h2>' in text
    return text


def toy_device(name: str, resistances_ohm: tuple[float, ...], write_j: float, can_leak: bool = False) -> DeviceSpec:
    """A 3-state device: up by one state for ``write_j``, reset to R0 for twice that."""
    edges = ((0, 1, write_j), (1, 2, write_j), (2, 0, 2 * write_j))
    return DeviceSpec(name, resistances_ohm, can_leak, edges, read_voltage_v=0.1, read_time_s=1e-8, source="test")


TOY = toy_device("toy", (1e3, 2e3, 3e3), 1e-12)
SIX = tuple(permutations(range(3)))  # the six patterns of 2 bits on 3 states, in enumerate_patterns' order
CMOS = CmosReference("45nm_fp32", 4.6e-12, 9e-13)


def activity_record(epoch: int, stage: str = "train") -> ActivityRecord:
    layers = (
        LayerActivity("model.features.0.layer", quantized=False, input_layer=True, bits=None, ops=1000, rows=20,
                      samples=10, level_ops=(0.0, 0.0, 0.0), aor=0.8, synaptic_rate=0.8, input_kind="analog",
                      input_kind_source="recorded", module="QuantConv2d"),
        LayerActivity("model.features.1.layer", quantized=True, input_layer=False, bits=2, ops=5000, rows=20,
                      samples=10, level_ops=(100.0, 300.0, 120.0), aor=0.1 + 0.01 * epoch, synaptic_rate=0.2,
                      sparsity=0.6, input_kind="spikes", input_kind_source="recorded", module="QuantConv2d"),
    )  # fmt: skip
    neurons = (NeuronActivity("model.features.0.neuron", 0.5 - 0.05 * epoch, 0.25),)
    return ActivityRecord(stage, epoch, 5 * (epoch + 1), layers, neurons)


def pattern_energy(kind: str, scope: str, scale: float) -> PatternEnergy:
    values = tuple(scale * (1 + 0.1 * i) for i in (3, 1, 0, 4, 2, 5))
    best = min(range(6), key=values.__getitem__)
    return PatternEnergy(kind, scope, values, best, SIX[best], format_mapping(SIX[best]), values[best], max(values))


def pattern_report(kind: str, scale: float, samples: int = 24, steps: int | None = 3) -> EnergyReport:
    layer = "model.features.1.layer"
    return EnergyReport(kind, "toy", 2, samples, {layer: pattern_energy(kind, layer, scale)},
                        pattern_energy(kind, "total", scale), steps=steps)  # fmt: skip


def compute(stage: str = "train", epoch: int = 1, silent: bool = False) -> ComputeComparison:
    convention = "layer 1 charged as 1000 MACs at E_MAC (first_layer='mac')"

    def energy(label: str, per_layer: tuple[float, float]) -> ComputeEnergy:
        return ComputeEnergy(label, "45nm_fp32", "mac", convention, per_layer, sum(per_layer), 2.76e-8)

    return ComputeComparison(
        stage, epoch, 2, "mac", convention, ("model.features.0.layer", "model.features.1.layer"),
        energy("ann", (4.6e-9, 2.3e-8)), energy("diet-snn", (4.6e-9, 7.4e-9)), energy("quest", (4.6e-9, 1.4e-9)),
        silent_network=silent,
    )  # fmt: skip


def pricing(device: DeviceSpec = TOY, **parts) -> DevicePricing:
    return DevicePricing(
        key=f"DeviceEnergyCallback[{device.name}]", device=device_to_dict(device), bits=2,
        patterns=tuple(format_mapping(p) for p in SIX), pattern_selection="best", cmos=CMOS, first_layer="mac",
        count_zero_level_reads=False, **parts,
    )  # fmt: skip


def minimal_summary() -> RunSummary:
    """Activity of train only (no val), write energy of one stage (6 patterns), compute of train; nothing else."""
    write = WriteEnergy("a", steps=3, samples=24, pattern_index=2, pattern=format_mapping(SIX[2]),
                        report=pattern_report("write", 2e-12))  # fmt: skip
    device = pricing(write={"a": write}, compute={"train": compute()})
    return RunSummary(bits=2, activity={"train": (activity_record(0), activity_record(1))}, devices=(device,))


def write_run(folder: Path, summary: RunSummary) -> Path:
    """``summary`` written as ``folder/quest_summary.json``."""
    path = folder / SUMMARY_FILE
    write_summary(path, summary)
    return path


TOY2 = toy_device("toy2", (1e3, 3e3, 9e3), 3e-12, can_leak=True)
INNER = "model.features.1.layer"
ENDURANCE = DeviceEndurance(
    endurance_cycles=1e6,
    endurance_sigma=0.0,
    epochs=2.0,
    epochs_to_first_failure=1e6 / 3.5,
    first_layer=INNER,
    layers={INNER: LayerEndurance(7, 3.5, 1e6 / 3.5, 1e6 / 3.5 - 2.0, 0)},
)
FLAGS = (
    Flag("silent_network", "no spike reached an inner layer in val epoch 1: its energy ratios are no saving",
         stage="val", epoch=1),
    Flag("layer_skipped", "model.head (ConvTranspose2d) is not in the operation counts", stage="train", epoch=0),
)  # fmt: skip


def full_summary() -> RunSummary:
    """Two devices (toy: write 2 pJ, read 1 pJ per sample at their best patterns; toy2 three times as dear) on the
    same counts; a val epoch that never fired (silent, flagged); curves of 2 epochs; writes per cell with the
    endurance of toy; a transposed convolution left out of the counts; one layer's input kind overridden."""
    train = [activity_record(e) for e in (0, 1)]
    skip = (SkippedLayer("model.head", "ConvTranspose2d", "transposed convolutions are not counted"),)
    train = [ActivityRecord("train", r.epoch, r.step, r.layers, r.neurons, skipped=skip) for r in train]
    silent_layers = (
        train[1].layers[0],
        LayerActivity(INNER, True, False, 2, 5000, 20, 10, (0.0, 0.0, 0.0), 0.0, 0.0, 0.6, "spikes", "override",
                      "QuantConv2d"),
    )  # fmt: skip
    val = ActivityRecord("val", 1, 10, silent_layers, (NeuronActivity("model.features.0.neuron", 0.0, 0.0),))
    counts = ((90, 5, 1), (4, 80, 6), (0, 2, 12))
    transitions = {"a": TransitionStage("a", 0, 3, 24, {INNER: LayerTransitions(1, counts, 3, ((0, 1, 1, 0),))})}
    writes = WritesPerCell(
        8, 8, 2.0, {INNER: LayerWrites(100, 150, 7, 1.5, {"p50": 1, "p90": 3, "p99": 6, "p99.9": 7})}
    )
    curves = (
        EpochCurve(0, 4, {"train/loss": 2.0, "val/loss": 1.9, "train/acc": 0.25, "val/acc": 0.3}, (0.01,)),
        EpochCurve(1, 8, {"train/loss": 1.5, "val/loss": 1.6, "train/acc": 0.4, "val/acc": 0.35}, (0.005,)),
    )
    devices = []
    for device, scale, endurance in ((TOY, 1.0, ENDURANCE), (TOY2, 3.0, None)):
        write = WriteEnergy("a", 3, 24, 2, format_mapping(SIX[2]), pattern_report("write", 2e-12 * scale))
        read = ReadEnergy("val", 1, 10, 2, format_mapping(SIX[2]), pattern_report("read", 1e-12 * scale, 10, None))
        parts = {"write": {"a": write}, "read": {"val": (read,)}, "compute": {"val": compute("val", 1, silent=True)}}
        devices.append(pricing(device, endurance=endurance, **parts))
    return RunSummary(
        bits=2,
        activity={"train": tuple(train), "val": (val,)},
        transitions=transitions,
        devices=tuple(devices),
        curves=curves,
        flags=FLAGS,
        writes=writes,
    )
