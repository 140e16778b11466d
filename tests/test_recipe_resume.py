"""Never lose or corrupt a run: the recipe killed with SIGKILL after any training step and resumed from its
``last.ckpt`` finishes with what the uninterrupted run on the same seed gives, bit for bit: the weights and optimizer
state, the transition counts, AOR, spike rates, samples, write and read energies of every pattern, the per-epoch
curves and the flags (the whole run summary the report is built from).

The recipe runs as a subprocess (``python recipes/vgg6_cifar10.py fit ...``) on a tiny ImageFolder (20 training
images of 10 classes, batch 4: 5 steps per epoch, 2 epochs; 10 test images for validation), VGG6 with a 64-unit
hidden layer, one thread. A checkpoint callback writes ``last.ckpt`` after every step and kills its own process with
SIGKILL right after the checkpoint of the chosen step; the resumed run is the same command with ``--ckpt_path``.
The three points: the middle of transition stage "a" (step 3), the last batch of epoch 0 (step 5, before epoch 0's
validation and epoch-end hooks), and the middle of epoch 1 (step 7, no stage in flight, the next stage about to start).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from recipe_helpers import make_tiny_cifar, recipe_config, run_recipe

from quest_lightning.summary import RunSummary, read_summary

STEPS_PER_EPOCH, EPOCHS = 5, 2
STAGES = [["a", 2, 4], ["b", 5, 5], ["c", 3, 5, 1]]  # a: mid epoch 0; b: its last batch; c: epoch 1
POINTS = {"mid_stage": 3, "last_batch_of_epoch": 5, "mid_epoch": 7}


@dataclass
class Finished:
    summary: RunSummary
    checkpoint: dict
    run: Path


def _kill_callback(folder: Path, kill_at_step: int | None) -> dict:
    init = {"dirpath": str(folder / "checkpoints"), "kill_at_step": kill_at_step}
    return {"class_path": "recipe_helpers.KillAfterCheckpoint", "init_args": init}


def _config(folder: Path, data: Path, kill_at_step: int | None, resident: bool) -> Path:
    return recipe_config(
        folder / "config.yaml",
        data,
        stages=STAGES,
        epochs=EPOCHS,
        callbacks=[_kill_callback(folder, kill_at_step)],
        data_options={"device_resident": resident},
    )


def _finished(folder: Path, version: int) -> Finished:
    run = folder / "run" / f"version_{version}"
    checkpoint = torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert (run / "report" / "report.html").is_file()  # the report is built from the summary compared below
    return Finished(read_summary(run / "quest_summary.json"), checkpoint, run)


def _fit(folder: Path, data: Path, *extra: str) -> None:
    done = run_recipe(["fit", "--config", str(folder / "config.yaml"), *extra], cwd=folder)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_tiny_cifar(tmp_path_factory.mktemp("cifar") / "cifar", train_per_class=2, test_per_class=1)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data) -> Finished:
    folder = tmp_path_factory.mktemp("uninterrupted")
    _config(folder, data, None, resident=False)
    _fit(folder, data)
    return _finished(folder, 0)


def _assert_same_state(got: dict, expected: dict) -> None:
    assert got["global_step"] == expected["global_step"] == STEPS_PER_EPOCH * EPOCHS
    assert got["state_dict"].keys() == expected["state_dict"].keys()
    for name, value in expected["state_dict"].items():
        assert torch.equal(got["state_dict"][name], value), name  # bit for bit
    (opt,), (opt_expected,) = got["optimizer_states"], expected["optimizer_states"]
    assert opt["state"].keys() == opt_expected["state"].keys()
    for index, state in opt_expected["state"].items():
        for key, value in state.items():
            assert torch.equal(opt["state"][index][key], value), (index, key)
    assert got["lr_schedulers"] == expected["lr_schedulers"]


def _assert_same_summary(got: RunSummary, expected: RunSummary) -> None:
    """Figure by figure first (a readable failure), then the whole record."""
    assert [(c.epoch, c.step) for c in got.curves] == [(c.epoch, c.step) for c in expected.curves]
    for curve, curve_expected in zip(got.curves, expected.curves, strict=True):
        assert curve == curve_expected, curve.epoch
    assert got.activity.keys() == expected.activity.keys() == {"train", "val"}
    for stage, records in expected.activity.items():
        assert [r.epoch for r in got.activity[stage]] == [r.epoch for r in records] == list(range(EPOCHS)), stage
        for record, record_expected in zip(got.activity[stage], records, strict=True):
            assert [r.samples for r in record.layers] == [r.samples for r in record_expected.layers], stage
            assert record == record_expected, (stage, record.epoch)
    assert got.transitions.keys() == expected.transitions.keys() == {"a", "b", "c"}
    for key, stage in expected.transitions.items():
        assert got.transitions[key] == stage, key
    for device, device_expected in zip(got.devices, expected.devices, strict=True):
        assert device.write == device_expected.write
        assert device.read == device_expected.read
        assert device.compute == device_expected.compute
    assert got.flags == expected.flags
    assert got == expected


def test_the_uninterrupted_run_measures_every_stage_and_epoch(uninterrupted):
    """What the resumed runs are compared with is complete: every stage with its steps and samples, two epochs of
    train and val activity, non-zero energies."""
    s = uninterrupted.summary
    assert {k: (t.epoch, t.steps, t.samples) for k, t in s.transitions.items()} == {
        "a": (0, 3, 12),
        "b": (0, 1, 4),
        "c": (1, 3, 12),
    }
    assert [r.layers[0].samples for r in s.activity["train"]] == [20, 20]
    assert [r.layers[0].samples for r in s.activity["val"]] == [10, 10]
    (device,) = s.devices
    assert all(e.total_j > 0 for e in device.write.values()) and len(device.read["val"]) == 2
    assert [c.epoch for c in s.curves] == [0, 1]


@pytest.mark.parametrize(
    ("point", "resident"),
    [("mid_stage", False), ("last_batch_of_epoch", False), ("mid_epoch", False), ("mid_epoch", True)],
)
def test_sigkill_and_resume_gives_the_uninterrupted_run(point, resident, tmp_path, data, uninterrupted):
    """Killed right after the checkpoint of step ``POINTS[point]``, resumed with ``--ckpt_path last.ckpt``: the same
    weights and figures as the uninterrupted run (which used the CPU data path; the resident path gives the same)."""
    step = POINTS[point]
    config = _config(tmp_path, data, step, resident=resident)
    killed = run_recipe(["fit", "--config", str(config)], cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL, (killed.stdout + killed.stderr)[-4000:]
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == step
    assert not (tmp_path / "run" / "version_0" / "report").exists()  # it never got to the end

    _fit(tmp_path, data, "--ckpt_path", str(tmp_path / "checkpoints" / "last.ckpt"))
    resumed = _finished(tmp_path, 1)
    _assert_same_state(resumed.checkpoint, uninterrupted.checkpoint)
    _assert_same_summary(resumed.summary, uninterrupted.summary)
