"""Two CPU processes (DDP over gloo) together see what one process sees: same global order, same crops and flips,
and the padding that evens out the ranks is reported so that it can be left out of counts.

``ddp_spawn`` starts fresh interpreters, so everything handed to the Trainer is defined at module level, and the
children write what they saw to files that the test reads back.
"""

from __future__ import annotations

import os

import lightning as L
import pytest
import torch

from quest_lightning.lightning.data import CIFAR10DataModule

pytestmark = [
    pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available"),
    pytest.mark.skipif(os.environ.get("QUEST_SKIP_DDP") == "1", reason="QUEST_SKIP_DDP=1 (about 10 s of CPU DDP)"),
]


class Recorder(L.LightningModule):
    """Records every batch it is given and the loaders' padding, and writes them to ``rank{r}.pt`` at the end."""

    def __init__(self, root: str):
        super().__init__()
        self.root = root
        self.layer = torch.nn.Linear(3 * 32 * 32, 10)
        self.train_seen: list[tuple[int, int, torch.Tensor, torch.Tensor]] = []
        self.val_seen: list[tuple[int, torch.Tensor, int]] = []

    def setup(self, stage):
        torch.set_num_threads(1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.train_seen.append((self.current_epoch, batch_idx, x.clone(), y.clone()))
        return torch.nn.functional.cross_entropy(self.layer(x.flatten(1)), y)

    def validation_step(self, batch, batch_idx):
        _, y = batch
        self.val_seen.append((batch_idx, y.clone(), self.trainer.val_dataloaders.padded_in_batch(batch_idx)))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def on_fit_end(self):
        loader = self.trainer.train_dataloader
        blob = {
            "train": self.train_seen,
            "val": self.val_seen,
            "positions": loader.positions(),
            "num_padded": loader.num_padded,
            "padded": [loader.padded_in_batch(b) for b in range(len(loader))],
        }
        torch.save(blob, os.path.join(self.root, f"rank{self.global_rank}.pt"))


def fit(folder, root, devices):
    os.makedirs(root, exist_ok=True)
    dm = CIFAR10DataModule(
        data_dir=str(folder),
        download=False,
        cache_dir=str(root / "cache"),
        batch_size=4,
        train_subset=29,
        test_subset=15,
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn" if devices > 1 else "auto",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(root),
    )
    trainer.fit(Recorder(str(root)), datamodule=dm)
    return [torch.load(root / f"rank{r}.pt", weights_only=False) for r in range(devices)]


def test_two_ranks_see_one_global_order_with_the_same_crops(folder, env):
    (one,) = fit(folder, env / "one", devices=1)
    ranks = fit(folder, env / "two", devices=2)
    n = 29
    for epoch in range(2):
        single_x = torch.cat([x for e, _, x, _ in one["train"] if e == epoch])
        single_y = torch.cat([y for e, _, _, y in one["train"] if e == epoch])
        assert single_y.numel() == n
        glob_x = torch.empty((n + 1, *single_x.shape[1:]))
        glob_y = torch.empty(n + 1, dtype=torch.long)
        for blob in ranks:
            x = torch.cat([x for e, _, x, _ in blob["train"] if e == epoch])
            y = torch.cat([y for e, _, _, y in blob["train"] if e == epoch])
            glob_x[blob["positions"]], glob_y[blob["positions"]] = x, y
        assert torch.equal(glob_x[:n], single_x) and torch.equal(glob_y[:n], single_y), epoch
        assert torch.equal(glob_x[n], single_x[0]) and glob_y[n] == single_y[0]  # the one padded sample repeats #0
    # 29 training and 15 test samples on 2 ranks: 15 and 8 each, rank 1's last one is padding.
    assert [b["num_padded"] for b in ranks] == [0, 1] and one["num_padded"] == 0
    assert ranks[1]["padded"] == [0, 0, 0, 1] and ranks[0]["padded"] == [0, 0, 0, 0]
    for epoch_batches in (one["val"][:4], ranks[0]["val"][:2], ranks[1]["val"][:2]):
        assert epoch_batches  # validation ran
    val_real = sum(y.numel() - padded for blob in ranks for _, y, padded in blob["val"][:2])
    assert val_real == 15 and [p for _, _, p in ranks[1]["val"][:2]] == [0, 1]
    val_labels = torch.cat([y[: y.numel() - p] for blob in ranks for _, y, p in blob["val"][:2]]).sort().values
    assert torch.equal(val_labels, torch.cat([y for _, y, _ in one["val"][:4]]).sort().values)
