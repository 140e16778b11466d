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
from quest_lightning.lightning.module import QuestModule
from quest_lightning.nn import SpikingVGG

BATCH, BATCHES = 8, 7
# "a" is cut by the checkpoint at step 4; "b" spans the end of epoch 0 (cut short there); "c" runs in epoch 1
STAGES = [("a", 2, 5), ("b", 6, 9, 0), ("c", 2, 4, 1)]


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _data():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(BATCH, 1, 8, 8, generator=g), torch.randint(0, 10, (BATCH,), generator=g)
    repeated = TensorDataset(x.repeat(BATCHES, 1, 1, 1), y.repeat(BATCHES))  # every batch is (x, y)
    return DataLoader(repeated, batch_size=BATCH, shuffle=False), DataLoader(TensorDataset(x, y), batch_size=4)


def _run(tmp_path, alone, ckpt_path=None, max_steps=-1):
    pl.seed_everything(0, verbose=False)
    net = SpikingVGG([4, "P", 8, "P"], [16], in_channels=1, image_size=8, num_classes=10)
    module = QuestModule(net, timesteps=2, lr=0.05)
    energy = DeviceEnergyCallback("skmtj7", states=(0, 3, 6))
    if alone:  # the energy callback runs its own monitor and meter; their state rides in its checkpoint entry
        callbacks = [energy]
        energy_monitor = WeightTransitionMonitor(stages=STAGES)
        energy._owned.append(energy_monitor)  # what setup would create, but with these stages
    else:
        callbacks = [WeightTransitionMonitor(stages=STAGES), AORMeter(), energy]
    checkpoint = ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), every_n_train_steps=4, save_top_k=-1)
    trainer = pl.Trainer(
        max_epochs=2,
        max_steps=max_steps,
        callbacks=[*callbacks, checkpoint],
        logger=False,
        default_root_dir=str(tmp_path),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=True,
    )
    train, val = _data()
    trainer.fit(module, train, val, ckpt_path=ckpt_path)
    return trainer, energy


def _outcome(energy):
    summary = energy.summary_payload()
    return {
        "transitions": summary["transitions"],
        "activity": summary["activity"],
        "write": {k: v["report"]["total"]["per_pattern_j"] for k, v in summary["energy"]["write"].items()},
        "read": {k: [e["report"]["total"]["per_pattern_j"] for e in v] for k, v in summary["energy"]["read"].items()},
        "ann_over_quest": {k: v["ann_over_quest"] for k, v in summary["energy"]["compute"].items()},
    }


@pytest.mark.parametrize("alone", [False, True], ids=["three_callbacks", "energy_alone"])
def test_resume_mid_epoch_and_mid_stage_matches_an_uninterrupted_run(alone, one_thread, tmp_path):
    _, full = _run(tmp_path / "full", alone)
    expected = _outcome(full)
    assert set(expected["transitions"]) == {"a", "b", "c"}
    assert expected["transitions"]["a"]["steps"] == 4 and expected["transitions"]["b"]["steps"] == 2
    assert expected["write"]["a"] != [0.0] * 6 and len(expected["activity"]["train"]) == 2

    # first leg: stop at step 4, in the middle of stage "a" and of epoch 0
    first, _ = _run(tmp_path / "legs", alone, max_steps=4)
    assert first.global_step == 4
    [ckpt] = glob.glob(str(tmp_path / "legs" / "ckpt" / "*step=4*.ckpt"))
    state = torch.load(ckpt, weights_only=False)["callbacks"]
    saved = next(v for k, v in state.items() if "DeviceEnergyCallback" in k)
    monitor_state = saved["owned"][0] if alone else next(v for k, v in state.items() if "WeightTransition" in k)
    assert "a" in monitor_state["counters"] and monitor_state["previous"] is not None  # a stage in flight

    # second leg: a fresh Trainer, model and callbacks, from the checkpoint
    second, resumed = _run(tmp_path / "legs2", alone, ckpt_path=ckpt)
    assert second.global_step == 2 * BATCHES
    got = _outcome(resumed)
    assert got["transitions"] == expected["transitions"]
    assert got["activity"] == expected["activity"]
    assert got["write"].keys() == expected["write"].keys()
    for key in expected["write"]:
        assert got["write"][key] == pytest.approx(expected["write"][key], rel=1e-12)
    assert got["read"].keys() == expected["read"].keys()
    for key in expected["read"]:
        torch.testing.assert_close(
            torch.tensor(got["read"][key]), torch.tensor(expected["read"][key]), rtol=1e-12, atol=0
        )
    assert got["ann_over_quest"] == pytest.approx(expected["ann_over_quest"], rel=1e-12)
    assert os.path.exists(resumed.summary_path)


def test_callback_state_round_trips_through_torch_save(one_thread, tmp_path):
    """``state_dict`` → ``torch.save``/``load`` → ``load_state_dict`` on fresh callbacks before ``setup``."""
    _, energy = _run(tmp_path, alone=False, max_steps=3)
    monitor, meter = energy.monitor, energy.meter
    path = tmp_path / "state.pt"
    torch.save({"m": monitor.state_dict(), "a": meter.state_dict(), "e": energy.state_dict()}, path)
    loaded = torch.load(path, weights_only=False)
    monitor2, meter2, energy2 = WeightTransitionMonitor(stages=STAGES), AORMeter(), DeviceEnergyCallback("skmtj7")
    monitor2.load_state_dict(loaded["m"])
    meter2.load_state_dict(loaded["a"])
    energy2.load_state_dict(loaded["e"])
    assert energy2.summary == energy.summary
    assert meter2.history == meter.history
    assert monitor2._pending is not None  # applied at setup, once the layers are known
