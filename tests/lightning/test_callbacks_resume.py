"""Stopping mid-epoch and resuming from a checkpoint gives the same transition counts, activity and energy as a run
that never stopped.

Lightning restarts a plain (non-stateful) dataloader from its beginning when it resumes mid-epoch, while the batch
index continues. Every batch here is the same fixed batch, so the data a step sees does not depend on that.
"""

import glob
import os

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from quest_lightning.lightning.callbacks import AORMeter, DeviceEnergyCallback, WeightTransitionMonitor
from quest_lightning.lightning.callbacks.resume import validate_after_resume
from quest_lightning.lightning.module import QuestModule
from quest_lightning.nn import SpikingVGG

BATCH, BATCHES = 8, 7
# "a" is cut by the checkpoint at step 4; "b" spans the end of epoch 0 (cut short there); "c" runs in epoch 1
STAGES = [("a", 2, 5), ("b", 6, 9, 0), ("c", 2, 4, 1)]


def _data():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(BATCH, 1, 8, 8, generator=g), torch.randint(0, 10, (BATCH,), generator=g)
    repeated = TensorDataset(x.repeat(BATCHES, 1, 1, 1), y.repeat(BATCHES))  # every batch is (x, y)
    return DataLoader(repeated, batch_size=BATCH, shuffle=False), DataLoader(TensorDataset(x, y), batch_size=4)


DEVICES = {"skmtj7": (0, 3, 6), "rram8": (0, 4, 7)}


def _callbacks(config):
    if config == "three_callbacks":
        return [WeightTransitionMonitor(stages=STAGES), AORMeter(), DeviceEnergyCallback("skmtj7", states=(0, 3, 6))]
    if config == "energy_alone":  # the energy callback drives the counts; their state rides in its checkpoint entry
        return [DeviceEnergyCallback("skmtj7", states=(0, 3, 6), stages=STAGES)]
    # two devices priced from one set of counts, driven by the first energy callback
    return [DeviceEnergyCallback(name, states=states, stages=STAGES) for name, states in DEVICES.items()]


def _run(tmp_path, config, ckpt_path=None, max_steps=-1, every=4, validate=True):
    pl.seed_everything(0, verbose=False)
    net = SpikingVGG([4, "P", 8, "P"], [16], in_channels=1, image_size=8, num_classes=10)
    module = QuestModule(net, timesteps=2, lr=0.05)
    callbacks = _callbacks(config)
    checkpoint = ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), every_n_train_steps=every, save_top_k=-1)
    trainer = pl.Trainer(
        max_epochs=2,
        max_steps=max_steps,
        callbacks=[*callbacks, checkpoint],
        logger=False,
        default_root_dir=str(tmp_path),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=None if validate else 0,
        deterministic=True,
    )
    train, val = _data()
    trainer.fit(module, train, val if validate else None, ckpt_path=ckpt_path)
    return trainer, [c for c in callbacks if isinstance(c, DeviceEnergyCallback)]


def _outcome(energies):
    summary = energies[0].run_summary()
    assert [d.name for d in summary.devices] == [e.device.name for e in energies]
    return {
        "transitions": summary.transitions,
        "activity": summary.activity,
        "write": {d.name: {k: v.report.total.per_pattern_j for k, v in d.write.items()} for d in summary.devices},
        "read": {
            d.name: {k: [e.report.total.per_pattern_j for e in v] for k, v in d.read.items()} for d in summary.devices
        },
        "ann_over_quest": {d.name: {k: v.ann_over_quest for k, v in d.compute.items()} for d in summary.devices},
    }


def _same(got, expected):
    assert got["transitions"] == expected["transitions"]
    assert got["activity"] == expected["activity"]
    for kind in ("write", "read"):
        assert got[kind].keys() == expected[kind].keys()
        for device in expected[kind]:
            assert got[kind][device].keys() == expected[kind][device].keys()
            for key, value in expected[kind][device].items():
                torch.testing.assert_close(
                    torch.tensor(got[kind][device][key]), torch.tensor(value), rtol=1e-12, atol=0
                )
    for device, ratios in expected["ann_over_quest"].items():
        assert got["ann_over_quest"][device] == pytest.approx(ratios, rel=1e-12)


@pytest.mark.parametrize("config", ["three_callbacks", "energy_alone", "two_devices"])
def test_resume_mid_epoch_and_mid_stage_matches_an_uninterrupted_run(config, one_thread, tmp_path):
    _, full = _run(tmp_path / "full", config)
    expected = _outcome(full)
    assert set(expected["transitions"]) == {"a", "b", "c"}
    assert expected["transitions"]["a"].steps == 4 and expected["transitions"]["b"].steps == 2
    assert expected["write"]["skmtj7"]["a"] != [0.0] * 6 and len(expected["activity"]["train"]) == 2
    if config == "two_devices":  # the same counts, two prices
        assert expected["write"]["rram8"]["a"] != expected["write"]["skmtj7"]["a"]

    # first leg: stop at step 4, in the middle of stage "a" and of epoch 0
    first, _ = _run(tmp_path / "legs", config, max_steps=4)
    assert first.global_step == 4
    [ckpt] = glob.glob(str(tmp_path / "legs" / "ckpt" / "*step=4*.ckpt"))
    state = torch.load(ckpt, weights_only=False)["callbacks"]
    saved = [v for k, v in state.items() if "DeviceEnergyCallback" in k]
    assert len(saved) == len(full)
    monitor_state = (
        next(v for k, v in state.items() if "WeightTransition" in k) if config == "three_callbacks" else saved[0]
    )
    monitor_state = monitor_state.get("transitions", monitor_state)
    assert "a" in monitor_state["counters"] and monitor_state["previous"] is not None  # a stage in flight
    assert all("transitions" not in v for v in saved[1:])  # the counts are saved once, by their driver

    # second leg: a fresh Trainer, model and callbacks, from the checkpoint
    second, resumed = _run(tmp_path / "legs2", config, ckpt_path=ckpt)
    assert second.global_step == 2 * BATCHES
    _same(_outcome(resumed), expected)
    assert os.path.exists(resumed[0].summary_path)


@pytest.mark.filterwarnings("ignore:.*limit_val_batches=0")
@pytest.mark.parametrize("config", ["three_callbacks", "two_devices"])
def test_resume_from_the_last_batch_of_an_epoch_keeps_the_epochs_apart(config, one_thread, tmp_path):
    """A checkpoint at the last batch of epoch 0 holds that epoch's sums; Lightning resumes in epoch 1 without the
    epoch-end hooks of epoch 0. Epoch 0's record is finished as it was, and epoch 1's holds epoch 1 only."""
    _, full = _run(tmp_path / "full", config, validate=False)
    expected = _outcome(full)
    first, _ = _run(tmp_path / "legs", config, max_steps=BATCHES, every=BATCHES, validate=False)
    [ckpt] = glob.glob(str(tmp_path / "legs" / "ckpt" / f"*step={BATCHES}*.ckpt"))
    _, resumed = _run(tmp_path / "legs2", config, ckpt_path=ckpt, validate=False)
    got = _outcome(resumed)
    train = got["activity"]["train"]
    assert [r.epoch for r in train] == [0, 1] and [r.layers[0].samples for r in train] == [BATCH * BATCHES] * 2
    _same(got, expected)


def test_callback_state_round_trips_through_torch_save(one_thread, tmp_path):
    """``state_dict`` → ``torch.save``/``load`` → ``load_state_dict`` on fresh callbacks before ``setup``."""
    trainer, [energy] = _run(tmp_path, "three_callbacks", max_steps=3)
    monitor, meter = trainer.callbacks[0], trainer.callbacks[1]
    path = tmp_path / "state.pt"
    torch.save({"m": monitor.state_dict(), "a": meter.state_dict(), "e": energy.state_dict()}, path)
    loaded = torch.load(path, weights_only=True)  # plain data and tensors only
    monitor2, meter2, energy2 = WeightTransitionMonitor(stages=STAGES), AORMeter(), DeviceEnergyCallback("skmtj7")
    monitor2.load_state_dict(loaded["m"])
    meter2.load_state_dict(loaded["a"])
    energy2.load_state_dict(loaded["e"])
    assert energy2.summary == energy.summary
    assert meter2.history == meter.history
    assert monitor2.results == monitor.results and monitor.results  # restored now, applied to the counts at setup


@pytest.mark.parametrize("config", ["three_callbacks", "energy_alone"])
def test_resume_from_the_last_batch_of_an_epoch_runs_its_validation(config, one_thread, tmp_path):
    """A checkpoint at the last batch of epoch 0 comes before epoch 0's validation. Lightning would resume in epoch 1
    and never validate epoch 0; the callbacks have the resumed fit run that validation first, as the uninterrupted
    run did: the same val records, read energies and curves."""
    _, full = _run(tmp_path / "full", config)
    expected = _outcome(full)
    assert [r.epoch for r in expected["activity"]["val"]] == [0, 1]
    _run(tmp_path / "legs", config, max_steps=BATCHES, every=BATCHES)
    [ckpt] = glob.glob(str(tmp_path / "legs" / "ckpt" / f"*step={BATCHES}*.ckpt"))
    _, resumed = _run(tmp_path / "legs2", config, ckpt_path=ckpt)
    got = _outcome(resumed)
    assert [r.epoch for r in got["activity"]["val"]] == [0, 1]
    _same(got, expected)
    assert resumed[0].run_summary().curves == full[0].run_summary().curves


class _ValidatesOnResume(pl.Callback):
    def on_load_checkpoint(self, trainer, pl_module, checkpoint):
        validate_after_resume(trainer, checkpoint)


class _Events(pl.LightningModule):
    """Records the hooks that matter for a resume: training and validation batches, epoch ends, the learning rate."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)
        self.events = []

    def training_step(self, batch, batch_idx):
        self.events.append(("train", self.current_epoch, batch_idx, self.lr()))
        return self.layer(batch[0]).sum()

    def validation_step(self, batch, batch_idx):
        self.events.append(("val", self.current_epoch, batch_idx))

    def on_train_epoch_end(self):
        self.events.append(("epoch_end", self.current_epoch, self.lr()))

    def lr(self):
        return self.trainer.optimizers[0].param_groups[0]["lr"]

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.1)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, 1, 0.5)}


@pytest.mark.filterwarnings("ignore:.*does not have many workers", "ignore:Be aware that when using `ckpt_path`")
@pytest.mark.parametrize(("every_n_epochs", "step", "validated"), [(1, 3, True), (1, 9, True), (2, 3, False)])
def test_a_fit_resumed_after_the_last_batch_of_an_epoch_validates_it_if_due(tmp_path, every_n_epochs, step, validated):
    """``validate_after_resume`` in a callback's ``on_load_checkpoint``: resumed from the checkpoint after the last
    training batch of an epoch (3 batches, 3 epochs), the fit runs what the uninterrupted one ran next, in order (that
    epoch's validation, its end, the next epochs). When that epoch had no validation due, nothing changes: Lightning
    goes on with the next epoch (and skips that epoch's end hooks)."""

    def fit(events_from, **kwargs):
        module = _Events()
        loader = DataLoader(TensorDataset(torch.rand(12, 4)), batch_size=4)
        pl.Trainer(
            max_epochs=3, logger=False, enable_progress_bar=False, enable_model_summary=False,
            num_sanity_val_steps=0, default_root_dir=str(tmp_path), check_val_every_n_epoch=every_n_epochs, **kwargs,
        ).fit(module, loader, loader, ckpt_path=events_from)  # fmt: skip
        return module.events

    every_step = ModelCheckpoint(str(tmp_path / "ckpt"), "{step}", every_n_train_steps=1, save_top_k=-1)
    full = fit(None, callbacks=[every_step])
    resumed = fit(str(tmp_path / "ckpt" / f"step={step}.ckpt"), callbacks=[_ValidatesOnResume()])
    after = [i for i, e in enumerate(full) if e[0] == "train"][step - 1] + 1  # the events after the step
    if validated:
        assert resumed == full[after:]
        assert resumed[0] == ("val", step // 3 - 1, 0)
    else:
        assert resumed == [e for e in full[after:] if e[0] != "epoch_end" or e[1] != step // 3 - 1]
