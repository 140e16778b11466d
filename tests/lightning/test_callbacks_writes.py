"""Writes per cell in the transition monitor: a brute-force count from code snapshots through a real Trainer run, the
statistics and the endurance projection by hand, and a resume mid-stage that continues the counters exactly."""

import dataclasses
import glob
import math

import lightning.pytorch as pl
import pytest
import torch
from callback_helpers import CodeSnapshots
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from quest_lightning.devices import get_device
from quest_lightning.lightning.callbacks import DeviceEnergyCallback, WeightTransitionMonitor
from quest_lightning.lightning.module import QuestModule
from quest_lightning.nn import SpikingVGG
from quest_lightning.summary import RunSummary

BATCH, BATCHES, CYCLES = 4, 6, 50


def _device():
    return dataclasses.replace(get_device("skmtj7"), name="worn7", nonideal={"endurance_cycles": CYCLES})


def _run(root, stages, *, epochs=2, max_steps=-1, ckpt_path=None, every=None, snapshots=None):
    pl.seed_everything(0, verbose=False)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(BATCH, 1, 8, 8, generator=g), torch.randint(0, 10, (BATCH,), generator=g)
    data = TensorDataset(x.repeat(BATCHES, 1, 1, 1), y.repeat(BATCHES))  # every batch the same: resumable exactly
    net = SpikingVGG([4, "P", 8, "P"], [16], in_channels=1, image_size=8, num_classes=10)
    monitor = WeightTransitionMonitor(stages=stages, trajectories=0, track_writes_per_cell=True)
    energy = DeviceEnergyCallback(_device(), states=(0, 3, 6))
    callbacks = [monitor, energy] + ([snapshots] if snapshots else [])
    if every:
        callbacks.append(ModelCheckpoint(dirpath=str(root / "ckpt"), every_n_train_steps=every, save_top_k=-1))
    trainer = pl.Trainer(
        max_epochs=epochs,
        max_steps=max_steps,
        callbacks=callbacks,
        logger=False,
        default_root_dir=str(root),
        enable_checkpointing=bool(every),
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )
    module = QuestModule(net, timesteps=2, lr=0.5, optimizer="sgd")
    trainer.fit(module, DataLoader(data, batch_size=BATCH), ckpt_path=ckpt_path)
    return monitor, energy


def _nearest_rank(values, q):
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def test_writes_per_cell_equal_a_brute_force_count_and_project_the_first_failure(one_thread, tmp_path):
    snapshots = CodeSnapshots()
    monitor, energy = _run(tmp_path, "all", snapshots=snapshots)
    writes = monitor.writes_per_cell
    assert set(writes) == set(monitor.layer_names) and all(w.dtype == torch.int32 for w in writes.values())
    record = monitor.counts.run_summary().writes
    assert (record.steps, record.epochs) == (2 * BATCHES, 2.0)
    first_failure = math.inf
    for name, counter in writes.items():
        by_hand = torch.zeros_like(counter, dtype=torch.int64)
        for key, before in snapshots.before.items():
            by_hand += (snapshots.after[key][name] != before[name]).to(torch.int64)
        assert torch.equal(counter.to(torch.int64), by_hand), name
        flat = by_hand.flatten().tolist()
        stats = record.layers[name]
        assert (stats.cells, stats.total, stats.max) == (len(flat), sum(flat), max(flat))
        assert stats.percentiles == {f"p{q:g}": _nearest_rank(flat, q) for q in (50, 90, 99, 99.9)}
        if max(flat):
            first_failure = min(first_failure, CYCLES * 2 / max(flat))  # N E / max writes, E = 2 epochs
    assert record.max_writes > 0
    endurance = energy.summary.endurance
    assert endurance.endurance_cycles == CYCLES and endurance.epochs == 2.0
    assert endurance.epochs_to_first_failure == pytest.approx(first_failure, rel=1e-12)
    worn = sum(int((w >= CYCLES).sum()) for w in writes.values())
    assert sum(layer.worn_out_cells for layer in endurance.layers.values()) == worn
    # the record survives the file
    summary = RunSummary.from_dict(energy.summary_payload())
    assert summary.writes == record and summary.primary.endurance == endurance


@pytest.mark.filterwarnings("ignore:.*start after max_steps")
def test_writes_per_cell_survive_a_resume_mid_stage(one_thread, tmp_path):
    stages = [("s", 2, 5), ("t", 2, 4, 1)]
    full, _ = _run(tmp_path / "full", stages)
    _run(tmp_path / "legs", stages, max_steps=4, every=4)  # stops in the middle of stage "s"
    [ckpt] = glob.glob(str(tmp_path / "legs" / "ckpt" / "*step=4*.ckpt"))
    state = torch.load(ckpt, weights_only=True)["callbacks"]
    saved = next(v for k, v in state.items() if "WeightTransition" in k)
    assert saved["writes"] and saved["write_steps"] == 3  # steps 2, 3 and 4 of stage "s" so far
    resumed, energy = _run(tmp_path / "legs2", stages, ckpt_path=ckpt)
    assert resumed.results == full.results
    for name, writes in full.writes_per_cell.items():
        assert torch.equal(resumed.writes_per_cell[name], writes), name
    record = resumed.counts.run_summary().writes
    assert record == full.counts.run_summary().writes and record.steps == 4 + 3
    assert record.epochs == pytest.approx(7 / BATCHES)
    assert energy.summary.endurance is not None


def test_writes_are_off_by_default_and_the_option_is_checked():
    assert not WeightTransitionMonitor().track_writes_per_cell
    with pytest.raises(ValueError, match=r"track_writes_per_cell='yes' must be True or False"):
        WeightTransitionMonitor(track_writes_per_cell="yes")
