"""Energy-aware runs in the typed run record and the report: tiny digits runs with QuestModule's write and read knobs
on and TrainingCostMeter attached, checked against what the module holds and the meter logged; a plain run and a run
with EnergyAwareTraining have no made-up records; the flags box and the section show the knobs and the cost."""

from __future__ import annotations

import html
import json
import math
import re
import types
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from recipe_helpers import torch_threads
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

from quest_lightning.lightning.callbacks import DeviceEnergyCallback
from quest_lightning.lightning.callbacks.energy_aware import EnergyAwareTraining
from quest_lightning.lightning.callbacks.training_ops import TrainingCostMeter
from quest_lightning.lightning.module import QuestModule
from quest_lightning.nn import SpikingVGG, quantized_layers
from quest_lightning.report import build_report
from quest_lightning.report.inputs import read_metrics_csv
from quest_lightning.report.sections.training_cost import NO_COST, NO_SETTINGS
from quest_lightning.summary import (
    SUMMARY_FILE,
    EnergyAwareSettings,
    RunSummary,
    TrainingCost,
    TrainingStepEnergy,
    read_summary,
)

TRAIN, BATCH, EPOCHS = 96, 32, 2


def _loaders():
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target)
    train = DataLoader(TensorDataset(x[:TRAIN], y[:TRAIN]), batch_size=BATCH)
    return train, DataLoader(TensorDataset(x[-50:], y[-50:]), batch_size=50)


def _fit(folder: Path, callbacks: list, epochs: int = EPOCHS, **knobs) -> tuple[QuestModule, Path]:
    """A 2-bit conv + FC network on the digits, T = 2; returns the module and the run's folder (CSVLogger)."""
    torch.manual_seed(0)
    net = SpikingVGG([8, "P", 16, "P"], [16], in_channels=1, image_size=8, num_classes=10, bits=2)
    module = QuestModule(net, timesteps=2, lr=3e-3, device_name="skmtj7", **knobs)
    logger = CSVLogger(folder, name="run", version=0)
    trainer = pl.Trainer(
        max_epochs=epochs,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        logger=logger,
        callbacks=[DeviceEnergyCallback(stages="all"), *callbacks],
    )
    with torch_threads(1):
        trainer.fit(module, *_loaders())
    return module, Path(logger.log_dir)


@pytest.fixture(scope="module")
def aware_run(tmp_path_factory):
    """QuestModule(write_aware=0.3, read_aware=0.5) with a TrainingCostMeter, 2 epochs."""
    meter = TrainingCostMeter()
    module, folder = _fit(tmp_path_factory.mktemp("aware"), [meter], write_aware=0.3, read_aware=0.5)
    return module, meter, folder, read_summary(folder / SUMMARY_FILE)


def _text(raw: str) -> str:
    raw = re.sub(r"<style>.*?</style>", "", raw, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", raw)))


def test_the_record_holds_the_knobs_the_layers_trained_with(aware_run) -> None:
    module, _, _, summary = aware_run
    aware = summary.energy_aware
    assert aware is not None and aware.source == "QuestModule"
    assert (aware.write_margin, aware.read_weight) == (0.3, 0.5)
    assert aware.write_weighted and aware.read_weighted and aware.device == "skmtj7"
    assert aware.pattern_index == module.energy_aware.pattern_index
    assert aware.pattern == module.energy_aware.energies.patterns[aware.pattern_index].label
    layers = quantized_layers(module)
    assert len(layers) == 2
    for _, layer in layers:  # the margin table each quantized layer's hysteresis used, and the penalty's level costs
        assert torch.equal(torch.tensor(aware.write_margins, dtype=torch.float64), layer.hysteresis.cpu())
        assert aware.read_costs == tuple(module.energy_aware.read_costs(layer.num_levels).tolist())
    # the most expensive move between neighbouring levels gets h; no margin on staying
    table = aware.write_margins
    assert max(table[0][1], table[1][0], table[1][2], table[2][1]) == pytest.approx(0.3)
    assert all(table[i][i] == 0 for i in range(3))
    assert aware.read_costs[1] == 0  # a zero weight is not read


def test_the_energy_aware_flag_says_which_figures_and_the_knob_values(aware_run) -> None:
    _, _, _, summary = aware_run
    flags = [f for f in summary.flags if f.code == "energy_aware"]
    assert len(flags) == 1
    message = flags[0].message
    assert "h = 0.3 grid steps" in message and "λ = 0.5" in message and "QuestModule" in message
    assert "writes and reads figures" in message and "skmtj7" in message


def test_the_training_cost_is_what_the_meter_kept_and_logged(aware_run) -> None:
    module, meter, folder, summary = aware_run
    cost = summary.training_cost
    assert cost is not None and len(cost.epochs) == EPOCHS == len(meter.history)
    logged = [r for r in read_metrics_csv(folder / "metrics.csv") if r.get("train_energy/total") is not None]
    assert len(logged) == EPOCHS
    for epoch, (record, kept, row) in enumerate(zip(cost.epochs, meter.history, logged, strict=True)):
        assert (record.epoch, record.step, row["step"]) == (epoch, kept["step"], kept["step"])
        assert record.timesteps == 2 and record.every_n_steps == 1 and record.delta_rule == kept["delta_rule"]
        assert record.energy.total_j == row["train_energy/total"] == kept["energy"]["total_j"]
        assert record.energy.compute_j == row["train_energy/compute"]
        assert record.energy.device_read_j == row["train_energy/device_read"] > 0
        assert record.energy.device_write_j is None  # the meter was given no writes: not a zero
        assert record.device == "skmtj7" and record.pattern == kept["pattern"]
        assert [layer.layer for layer in record.layers] == [layer["layer"] for layer in kept["layers"]]
        for layer in record.layers:
            for name in ("forward", "backward", "weight_grad"):
                assert layer.total(name) == row[f"train_ops/{layer.layer}/{name}"]
            assert layer.delta_density_mean == pytest.approx(row[f"train_ops/{layer.layer}/delta_density"])
            assert layer.samples == TRAIN and len(layer.forward) == len(layer.delta_density) == 2
            assert layer.total("forward") == pytest.approx(sum(layer.forward))
    # the forward counts of the quantized layers are the AOR meter's N(v) of the same epoch, counted independently
    activity = {r.layer: r for r in summary.activity["train"][-1].layers}
    for layer in cost.latest.layers:
        if layer.quantized and not layer.analog_input:
            assert layer.forward_levels == pytest.approx(activity[layer.layer].level_ops_per_sample, rel=1e-12)
    first = cost.latest.layers[0]
    assert first.analog_input and first.total("backward") == 0  # autograd computes no gradient for the image


def test_the_file_round_trips_and_an_older_summary_without_the_records_loads(aware_run) -> None:
    _, _, folder, summary = aware_run
    raw = json.loads((folder / SUMMARY_FILE).read_text())
    assert raw["energy_aware"]["write_margin"] == 0.3 and len(raw["training_cost"]["epochs"]) == EPOCHS
    assert raw["training_cost"]["epochs"][0]["energy"]["unit"] == "J/sample"
    assert RunSummary.from_dict(raw) == summary
    for key in ("energy_aware", "training_cost"):  # a summary-v2 file written before these records
        raw.pop(key)
    older = RunSummary.from_dict(raw)
    assert older.energy_aware is None and older.training_cost is None and older.devices == summary.devices


def test_the_report_shows_the_knobs_and_the_cost(aware_run, tmp_path) -> None:
    _, _, folder, summary = aware_run
    raw = build_report(folder, tmp_path / "report").read_text(encoding="utf-8")
    box = raw[raw.index('<div class="flags" id="flags">') : raw.index("<nav>")]
    assert "<code>energy_aware</code>" in box and "h = 0.3 grid steps" in html.unescape(box)
    start = raw.index('<section id="sec-training-cost">')
    section = raw[start : raw.index("</section>", start)]
    assert 'id="fig-training-cost-layers"' in section and 'id="fig-training-cost-epochs"' in section
    text = _text(section)
    assert "Energy-aware knobs" in text and "write-aware hysteresis margin h (grid steps) 0.3" in text
    assert "read penalty weight λ 0.5" in text and "Hysteresis margin h_ij per transition" in text
    last = summary.training_cost.latest
    layer = last.layers[1]
    assert f"{layer.total('forward'):,.1f}" in text and f"{layer.total('weight_grad'):,.1f}" in text
    assert NO_SETTINGS not in text and NO_COST not in text
    assert (tmp_path / "report" / "training-cost-epochs.png").stat().st_size > 10_000


def test_the_end_of_fit_summary_prints_the_knobs_and_the_step_energy(aware_run, monkeypatch, capsys) -> None:
    from quest_lightning.cli.run_summary import print_summary
    from quest_lightning.report.plots import format_joules

    _, _, folder, summary = aware_run
    energy = DeviceEnergyCallback()
    energy.summary_path = str(folder / SUMMARY_FILE)
    monkeypatch.setenv("COLUMNS", "300")  # rich wraps at the terminal's width
    print_summary(types.SimpleNamespace(callbacks=[energy], loggers=[]), {})
    out = capsys.readouterr().out
    knobs = r"energy-aware knobs \(QuestModule\)\s+│ write margin h = 0.3 grid steps, read penalty weight λ = 0.5"
    assert re.search(knobs, out)
    step = format_joules(summary.training_cost.latest.energy.total_j)
    assert re.search(rf"training step energy per sample \(epoch 1\)\s+│ {step}", out)
    assert "flag energy_aware: trained energy-aware (QuestModule" in out


def test_a_plain_run_has_no_energy_aware_or_training_cost_record(tmp_path) -> None:
    _, folder = _fit(tmp_path, [], epochs=1)
    summary = read_summary(folder / SUMMARY_FILE)
    assert summary.energy_aware is None and summary.training_cost is None
    assert "energy_aware" not in {f.code for f in summary.flags}
    raw = json.loads((folder / SUMMARY_FILE).read_text())
    assert raw["energy_aware"] is None and raw["training_cost"] is None
    text = _text(build_report(folder).read_text(encoding="utf-8"))
    assert NO_SETTINGS in text and NO_COST in text
    assert not list((folder / "report").glob("training-cost*.png"))


def test_energy_aware_training_is_recorded_as_its_own_source(tmp_path) -> None:
    """The callback's read knob alone, unweighted: no device weighs it, every non-zero level costs one read."""
    aware = EnergyAwareTraining(read_weight=0.7, read_weighted=False)
    _, folder = _fit(tmp_path, [aware], epochs=1)
    settings = read_summary(folder / SUMMARY_FILE).energy_aware
    assert settings.source == "EnergyAwareTraining" and settings.read_weight == 0.7
    assert not settings.write_on and settings.write_margins is None
    assert settings.device is None and settings.pattern_index is None
    assert settings.read_costs == (1.0, 0.0, 1.0)
    flag = next(f for f in read_summary(folder / SUMMARY_FILE).flags if f.code == "energy_aware")
    assert "λ = 0.7 (unweighted: the AOR)" in flag.message and "h =" not in flag.message


def test_records_refuse_what_is_not_a_measurement() -> None:
    with pytest.raises(ValueError, match="both knobs off"):
        EnergyAwareSettings("QuestModule", 0.0, 0.0)
    with pytest.raises(ValueError, match=r"write_margin=0.5 must lie in \[0, 0.5\)"):
        EnergyAwareSettings("QuestModule", 0.5, 0.0)
    with pytest.raises(ValueError, match="read_weight=-1"):
        EnergyAwareSettings("QuestModule", 0.1, -1.0)
    with pytest.raises(ValueError, match="at least one measured epoch"):
        TrainingCost(())
    assert TrainingCost.from_history([]) is None
    assert EnergyAwareSettings.from_record({"write_margin": 0.0, "read_weight": 0.0}, "QuestModule") is None
    with pytest.raises(ValueError, match="total_j=nan is not a finite number"):
        TrainingStepEnergy("45nm_fp32", 1e-9, 0.0, math.nan)
