"""DDP measures the same network as one process: the recipe at 2 CPU ranks (gloo, ``quest-lightning run --devices 2``)
with batch B per rank against 1 rank with batch 2B, on the same data in the same global order, crops and flips on,
same seed, 2 epochs, in float64.

What is guaranteed, and asserted:

* **The data.** Both runs see the same global batches with the same crops and flips: rank ``r`` takes positions
  ``r, r + 2, ...`` of one global order, and a position's crop and flip depend on the position, not on the rank.
* **Padding is left out.** 19 training and 9 validation images do not split evenly: each epoch rank 1 serves a
  repeat of the order's first sample at the end of its last training batch, and a last validation batch that is such
  a repeat alone.
  Every count holds the real samples once (19 and 9, never the 20 and 10 served); ``QuestModule`` leaves the repeat out
  of its loss and accuracy, and weights each rank's loss by its real samples, so that a step's gradient is one
  process's mean over the global batch.
* **Weights, to rounding.** Each step's gradient is the ranks' gradients averaged: one process's up to the order of
  the floating-point additions. The weights agree to 1e-12 (float64), not bit for bit.
* **Every figure, exactly.** A difference of 1e-12 flips no spike and no weight code here (a flip needs a membrane
  or a weight within 1e-12 of a threshold or a rounding boundary), and spikes, codes and operation counts are
  integers: the AOR, spike rates, per-level operations, samples, transition counts, the write and read energies of
  every pattern, and the accuracies are equal, bit for bit. The validation loss is a mean of float64 losses summed in
  another order (equal to 1e-12). ``train/loss`` is what rank 0 logs, the mean over its own samples, as Lightning
  logs a training step's value under DDP: not compared.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from recipe_helpers import free_port, make_tiny_cifar, recipe_config, run_recipe

from quest_lightning.summary import RunSummary, read_summary

pytestmark = [
    pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available"),
    pytest.mark.skipif(os.environ.get("QUEST_SKIP_DDP") == "1", reason="QUEST_SKIP_DDP=1 (CPU DDP)"),
]

B, N_TRAIN, N_VAL, EPOCHS = 4, 19, 9, 2
STAGES = [["a", 1, 2], ["b", 3, 3, None]]  # a: steps 1-2 of epoch 0; b: the last (padded) step of every epoch


def _fit(folder: Path, data: Path, ranks: int) -> tuple[RunSummary, dict]:
    checkpoints = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"dirpath": str(folder)}}
    config = recipe_config(
        folder / "config.yaml",
        data,
        stages=STAGES,
        epochs=EPOCHS,
        batch_size=B * 2 // ranks,
        callbacks=[checkpoints],
        trainer={"precision": "64-true"},
        data_options={"train_subset": N_TRAIN, "test_subset": N_VAL},
    )
    launcher = ["--accelerator", "cpu", "--devices", str(ranks), "--main-port", str(free_port())] if ranks > 1 else []
    done = run_recipe(["fit", "--config", str(config)], cwd=folder, launcher=launcher)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    (summary,) = (folder / "run").rglob("quest_summary.json")
    (ckpt,) = folder.glob("*.ckpt")
    return read_summary(summary), torch.load(ckpt, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[int, tuple[RunSummary, dict]]:
    data = make_tiny_cifar(tmp_path_factory.mktemp("cifar") / "cifar", train_per_class=2, test_per_class=1)
    return {ranks: _fit(tmp_path_factory.mktemp(f"ranks{ranks}"), data, ranks) for ranks in (1, 2)}


def test_two_ranks_measure_what_one_process_measures(runs):
    (one, one_ckpt), (two, two_ckpt) = runs[1], runs[2]
    for stage, n in (("train", N_TRAIN), ("val", N_VAL)):  # an odd N: 2 ranks served N + 1, the repeat left out
        for record in (*one.activity[stage], *two.activity[stage]):
            assert {r.samples for r in record.layers} == {n}, (stage, record.epoch)
        assert [r.epoch for r in two.activity[stage]] == list(range(EPOCHS))
    assert {k: t.samples for k, t in two.transitions.items()} == {"a": 16, "b@epoch0": 3, "b@epoch1": 3}
    for name, value in one_ckpt["state_dict"].items():
        torch.testing.assert_close(two_ckpt["state_dict"][name], value, rtol=0, atol=1e-12, msg=name)
    assert two.activity == one.activity
    assert two.transitions == one.transitions
    assert two.devices == one.devices  # every energy figure, every pattern
    assert two.flags == one.flags == ()  # nothing the counts could not leave out
    assert [(c.epoch, c.step, c.learning_rates) for c in two.curves] == [
        (c.epoch, c.step, c.learning_rates) for c in one.curves
    ]
    for curve, expected in zip(two.curves, one.curves, strict=True):
        assert [curve.accuracy(s) for s in ("train", "val")] == [expected.accuracy(s) for s in ("train", "val")]
        assert curve.loss("val") == pytest.approx(expected.loss("val"), rel=1e-12, abs=0)
