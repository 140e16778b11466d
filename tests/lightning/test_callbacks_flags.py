"""What cannot be computed is said, never logged as a number: a validation epoch that never runs the network is an
empty record with its reason, a network that never fires is flagged and its energy ratios are not logged as a
saving; and the per-epoch training curves the record carries for the report."""

import csv
import math
import os

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from quest_lightning.lightning.callbacks import SUMMARY_FILE, AORMeter, DeviceEnergyCallback
from quest_lightning.lightning.module import QuestModule
from quest_lightning.nn import SpikingVGG
from quest_lightning.summary import read_summary


class IdleSecondValidation(QuestModule):
    """Its validation_step runs the network in epoch 0 only."""

    def validation_step(self, batch, batch_idx):
        if self.current_epoch == 0:
            super().validation_step(batch, batch_idx)


def _fit(tmp_path, module, epochs=2):
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g))
    meter, energy = AORMeter(), DeviceEnergyCallback("skmtj7", states=(0, 3, 6), stages="all")
    logger = CSVLogger(str(tmp_path))
    trainer = pl.Trainer(
        max_epochs=epochs,
        callbacks=[meter, energy],
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    trainer.fit(module, DataLoader(data, batch_size=8), DataLoader(data, batch_size=8))
    with open(os.path.join(logger.log_dir, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    return meter, energy, rows, read_summary(os.path.join(logger.log_dir, SUMMARY_FILE))


def _net(threshold=0.5):
    return SpikingVGG([4, "P", 8, "P"], [16], in_channels=1, image_size=8, num_classes=10, threshold=threshold)


def test_a_validation_epoch_that_never_runs_the_network_is_empty_not_nan(tmp_path):
    pl.seed_everything(0, verbose=False)
    with pytest.warns(UserWarning, match=r"val epoch 1: no forward pass .*validation_step did not run the network"):
        meter, energy, rows, summary = _fit(tmp_path, IdleSecondValidation(_net(), timesteps=2, lr=0.05))
    first, second = meter.history["val"]
    assert first.empty is None and first.layers
    assert second.epoch == 1 and "validation_step did not run the network" in second.empty and not second.layers
    # nothing was logged for it, and no logged value anywhere is NaN
    values = [float(v) for r in rows for k, v in r.items() if v not in ("", None)]
    assert values and all(math.isfinite(v) for v in values)
    val_aor = [r for r in rows if r.get("aor/val/model.features.1.layer")]
    assert len(val_aor) == 1
    # the record says so; the read energy of that epoch is empty too, and the headline stays epoch 0's
    assert [(f.code, f.epoch) for f in summary.flags] == [("empty_epoch", 1)]
    reads = summary.primary.read["val"]
    assert reads[1].empty == second.empty and reads[1].report is None and reads[1].total_j is None
    assert summary.primary.compute["val"].epoch == 0


def test_a_network_that_never_fires_is_flagged_and_no_ratio_is_logged_as_a_saving(tmp_path):
    pl.seed_everything(0, verbose=False)
    with pytest.warns(UserWarning, match="never fired"):
        meter, energy, rows, summary = _fit(tmp_path, QuestModule(_net(threshold=1e9), timesteps=2), epochs=1)
    record = meter.latest("val")
    assert record.silent and all(n.rate == 0 for n in record.neurons)
    assert {(f.code, f.stage) for f in summary.flags} == {("silent_network", "train"), ("silent_network", "val")}
    compute = summary.primary.compute["val"]
    assert compute.silent_network and compute.ann_over_quest > 1  # in the record, with its flag
    logged = {k for r in rows for k, v in r.items() if v not in ("", None)}
    assert not {k for k in logged if k.endswith(("ann_over_quest", "diet_over_quest"))}
    assert "energy/read/val/total" in logged  # the device figures (0 J) are not ratios


def test_neurons_that_never_fire_in_a_network_that_does_are_flagged_by_name(tmp_path):
    """At threshold 1 this network's first neurons fire and the next two layers' never do: what those feed reads
    nothing, which the record must not let pass as a saving."""
    pl.seed_everything(0, verbose=False)
    with pytest.warns(UserWarning, match="never fired; what they feed sees no spikes"):
        meter, _, _, summary = _fit(tmp_path, QuestModule(_net(threshold=1.0), timesteps=2), epochs=1)
    for stage in ("train", "val"):
        record = meter.latest(stage)
        fired = {n.neuron: n.spikes for n in record.neurons}
        assert not record.silent and any(v > 0 for v in fired.values()) and any(v == 0 for v in fired.values())
        (flag,) = [f for f in summary.flags if f.code == "silent_neurons" and f.stage == stage]
        named = {n for n in fired if repr(n) in flag.message}
        assert named == {n for n, v in fired.items() if v == 0} and flag.epoch == 0
    assert "silent_network" not in {f.code for f in summary.flags}


def test_the_record_carries_per_epoch_curves_whatever_the_logger(tmp_path):
    pl.seed_everything(0, verbose=False)
    module = QuestModule(_net(), timesteps=2, lr=0.05, schedule="step", milestones=[0.5], gamma=0.1)
    _, _, rows, summary = _fit(tmp_path, module)
    csv_val = [float(r["val/acc"]) for r in rows if r.get("val/acc")]  # what the CSV logger received
    assert [c.epoch for c in summary.curves] == [0, 1]
    assert [c.accuracy("val") for c in summary.curves] == pytest.approx(csv_val)
    assert all(c.loss("train") is not None and c.loss("val") is not None for c in summary.curves)
    # the rate each epoch trained with: the step schedule divides it by 10 after epoch 0 (milestone 0.5 x 2)
    assert [c.learning_rates for c in summary.curves] == [pytest.approx((0.05,)), pytest.approx((0.005,))]


def test_each_curve_holds_its_own_epochs_figures(tmp_path):
    """A curve is taken after every epoch-end hook, the module's included: QuestModule logs train/acc there, after
    the callbacks' hooks, so a curve taken in the callbacks' hook would hold no train/acc for epoch 0 and the
    previous epoch's value in every later one."""
    pl.seed_everything(0, verbose=False)
    _, _, rows, summary = _fit(tmp_path, QuestModule(_net(), timesteps=2, lr=0.05), epochs=3)
    logged = {int(r["epoch"]): float(r["train/acc"]) for r in rows if r.get("train/acc")}
    assert sorted(logged) == [0, 1, 2]
    assert [c.accuracy("train") for c in summary.curves] == [logged[0], logged[1], logged[2]]
    val = {int(r["epoch"]): float(r["val/acc"]) for r in rows if r.get("val/acc")}
    assert [c.accuracy("val") for c in summary.curves] == [val[0], val[1], val[2]]
