"""The typed run record: round trips, validation (no NaN), the v1 file written by quest-lightning 0.1.0, refusals with
a way out, and the module's purity (no torch, no Lightning)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import quest_lightning.summary as summary_module
from quest_lightning.summary import (
    SCHEMA,
    SUMMARY_FILE,
    ActivityRecord,
    LayerActivity,
    RunSummary,
    SummaryFormatError,
    read_summary,
    write_summary,
)

V1 = Path(__file__).parent / "data" / "summary-v1.json"  # written by quest-lightning 0.1.0: 30 samples at batch 8


def test_docstring_example_runs():
    import doctest

    result = doctest.testmod(summary_module)
    assert result.attempted > 0 and result.failed == 0


def test_a_v1_file_loads_with_its_figures_and_a_flag_on_the_wrong_write_divisor():
    raw = json.loads(V1.read_text())
    assert raw["format"] == "quest-lightning/summary-v1"
    s = read_summary(V1)
    device = s.primary
    assert s.format == SCHEMA and len(s.devices) == 1 and device.name == "skmtj7" and s.bits == 2
    # every figure is the file's own
    w = raw["energy"]["write"]["all@epoch0"]
    assert device.write["all@epoch0"].report.total.per_pattern_j == tuple(w["report"]["total"]["per_pattern_j"])
    assert device.write["all@epoch0"].samples == 4 * 7  # what v1 divided by: steps x (30 // 4)
    val = raw["activity"]["val"][-1]
    assert [r.aor for r in s.activity["val"][-1].layers] == [r["aor"] for r in val["layers"]]
    per_sample = val["layers"][1]["level_ops_per_sample"]
    assert s.activity["val"][-1].layers[1].level_ops_per_sample == pytest.approx(per_sample)
    assert device.compute["val"].ann_over_quest == pytest.approx(raw["energy"]["compute"]["val"]["ann_over_quest"])
    # 30 samples in batches of 8, 8, 8, 6 were divided by 4 x 7 = 28: the flag says by how much, and what to do
    codes = {f.code: f for f in s.flags}
    assert set(codes) == {"summary_v1", "v1_write_divisor"}
    message = codes["v1_write_divisor"].message
    assert "28 samples but 30 were seen" in message and "1.0714x" in message and "regenerate" in message
    assert device.headline() is device.compute["val"] and device.last_read("val") is device.read["val"][-1]
    assert (
        device.last_read("val").total_j
        == device.read["val"][-1].report.total.per_pattern_j[device.read["val"][-1].pattern_index]
    )
    # the record reads like the v1 dict (for code written against 0.1.0), and survives a v2 round trip
    assert device["write"]["all@epoch0"]["batch_size"] == 7
    assert RunSummary.from_dict(json.loads(json.dumps(s.to_dict()))) == s


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: d.update(format="quest-lightning/summary-v9"), r"unknown summary format '.*summary-v9'"),
        (lambda d: d["activity"]["val"][0]["layers"][1].update(aor=math.nan), r"aor=nan is not a finite number.*regen"),
        (lambda d: d["activity"]["val"][0].pop("epoch"), r"ActivityRecord.*epoch.*regenerate it by training again"),
        (lambda d: d["energy"]["write"]["all@epoch0"].update(steps="four"), r"expected a number, got 'four'"),
    ],
    ids=["unknown-format", "nan", "missing-field", "wrong-type"],
)
def test_an_unreadable_file_is_refused_with_how_to_regenerate_it(tmp_path, edit, match):
    raw = json.loads(V1.read_text())
    edit(raw)
    path = tmp_path / SUMMARY_FILE
    path.write_text(json.dumps(raw))
    with pytest.raises(SummaryFormatError, match=match):
        read_summary(path)


def test_no_nan_gets_into_a_record_and_the_file_is_never_half_written(tmp_path):
    layer = dict(layer="l", quantized=True, input_layer=False, bits=2, ops=6, rows=4, samples=2)
    with pytest.raises(ValueError, match=r"LayerActivity.aor=nan is not a finite number"):
        LayerActivity(**layer, level_ops=(0.0, 1.0, 2.0), aor=math.nan, synaptic_rate=0.5)
    with pytest.raises(ValueError, match=r"level_ops\[2\]=inf"):
        LayerActivity(**layer, level_ops=(0.0, 1.0, math.inf), aor=0.1, synaptic_rate=0.5)
    with pytest.raises(ValueError, match=r"rows=0, samples=0; a layer that recorded nothing has no activity"):
        LayerActivity(**{**layer, "rows": 0, "samples": 0}, level_ops=(0.0, 0.0, 0.0), aor=0.0, synaptic_rate=0.0)
    empty = ActivityRecord("val", 3, 40, empty="no forward pass through the network was recorded")
    assert (empty.aor_mean, empty.timesteps, empty.silent) == (None, None, False)
    summary = RunSummary(bits=2, activity={"val": (empty,)})
    path = tmp_path / "run" / SUMMARY_FILE
    write_summary(path, summary)
    assert sorted(p.name for p in path.parent.iterdir()) == [SUMMARY_FILE]  # the temporary file was renamed
    assert read_summary(path) == summary and "NaN" not in path.read_text()


def test_a_silent_record_is_flagged_by_its_rates():
    zero = dict(quantized=True, bits=2, ops=6, rows=4, samples=2, level_ops=(0.0, 0.0, 0.0), aor=0.0)
    layers = (
        LayerActivity("in", input_layer=True, synaptic_rate=0.9, **zero),  # the analog input always "fires"
        LayerActivity("l2", input_layer=False, synaptic_rate=0.0, **zero),
    )
    from quest_lightning.summary import NeuronActivity

    silent = ActivityRecord("val", 0, 1, layers, (NeuronActivity("n", 0.0, 0.0, 0.0),))
    assert silent.silent and silent.to_dict()["silent"] is True
    alive = ActivityRecord("val", 0, 1, layers, (NeuronActivity("n", 0.1, 0.05, 2.0),))
    assert not alive.silent


def test_the_module_is_pure():
    code = "import sys, quest_lightning.summary; print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _new_records_summary():
    from quest_lightning.summary import (
        CmosReference,
        DeviceEndurance,
        DevicePricing,
        LayerEndurance,
        LayerWrites,
        SkippedLayer,
        WritesPerCell,
    )

    common = dict(bits=None, ops=6, rows=8, samples=2, level_ops=(0.0, 3.0, 1.0), aor=0.1, synaptic_rate=0.5)
    layers = (
        LayerActivity("conv1", quantized=False, input_layer=True, input_kind="analog", input_kind_source="recorded",
                      module="Conv2d", **common),
        LayerActivity("conv2", quantized=True, input_layer=False, input_kind="spikes", input_kind_source="override",
                      module="QuantConv2d", sparsity=0.5, **{**common, "bits": 2}),
    )  # fmt: skip
    record = ActivityRecord("val", 0, 4, layers, skipped=(SkippedLayer("lift", "Conv3d", "not counted"),))
    writes = WritesPerCell(step=4, steps=4, epochs=0.5, layers={"conv2": LayerWrites(9, 5, 2, 5 / 9, {"p50": 0})})
    endurance = DeviceEndurance(
        endurance_cycles=1e6,
        endurance_sigma=0.0,
        epochs=0.5,
        epochs_to_first_failure=250000.0,
        first_layer="conv2",
        layers={"conv2": LayerEndurance(2, 4.0, 250000.0, 249999.5, 0)},
    )
    device = DevicePricing(
        key="k", device={"name": "d"}, bits=2, patterns=("a",), pattern_selection="best",
        cmos=CmosReference("45nm_fp32", 4.6e-12, 0.9e-12), first_layer="mac", count_zero_level_reads=False,
        endurance=endurance,
    )  # fmt: skip
    return RunSummary(bits=2, activity={"val": (record,)}, devices=(device,), writes=writes)


def test_the_records_of_writes_endurance_skipped_layers_and_input_kinds_round_trip(tmp_path):
    summary = _new_records_summary()
    path = tmp_path / SUMMARY_FILE
    write_summary(path, summary)
    back = read_summary(path)
    assert back == summary
    assert back.writes.max_writes == 2 and back.primary.endurance.layers["conv2"].remaining_epochs == 249999.5
    assert back.activity["val"][0].inner_layers == (summary.activity["val"][0].layers[1],)
    raw = json.loads(path.read_text())
    assert raw["writes"]["max_writes"] == 2 and raw["devices"][0]["endurance"]["first_layer"] == "conv2"


def test_a_summary_v2_file_written_before_the_new_fields_still_loads():
    raw = _new_records_summary().to_dict()
    raw.pop("writes")
    raw["devices"][0].pop("endurance")
    record = raw["activity"]["val"][0]
    record.pop("skipped")
    for layer in record["layers"]:
        for key in ("input_kind", "input_kind_source", "module"):
            layer.pop(key)
    old = RunSummary.from_dict(raw)
    assert old.writes is None and old.primary.endurance is None and old.activity["val"][0].skipped == ()
    assert [r.input_kind for r in old.activity["val"][0].layers] == [None, None]
    assert old.activity["val"][0].layers[0].input_layer  # the flag the older files carry


def test_an_input_kind_that_contradicts_the_input_layer_flag_is_refused():
    common = dict(quantized=True, bits=2, ops=6, rows=8, samples=2, level_ops=(0.0, 3.0, 1.0), aor=0.1)
    with pytest.raises(ValueError, match=r"input_kind='pixels' \(one of \('spikes', 'analog'\)\)"):
        LayerActivity("l", input_layer=False, synaptic_rate=0.5, input_kind="pixels", **common)
    with pytest.raises(ValueError, match=r"input_layer=True but self.input_kind='spikes'"):
        LayerActivity("l", input_layer=True, synaptic_rate=0.5, input_kind="spikes", **common)
