"""Tests of the CIFAR-10 batch loader and DataModule on tiny synthetic data (never the real dataset)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from quest_lightning.lightning.data import (
    CIFAR10_CLASSES,
    CIFAR10DataModule,
    DeviceBatchLoader,
    balanced_subset_indices,
    cifar10,
    gpu_augment,
    normalize_images,
)

N_TRAIN, N_TEST = 3, 2


def _class_value(idx: int) -> int:
    return 10 + 24 * idx


def _make_imagefolder(root: Path, n_train: int = N_TRAIN, n_test: int = N_TEST) -> Path:
    """Writes solid-colour JPEGs whose red channel encodes the class, so labels can be checked by name."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for idx in reversed(range(10)):  # creation order must not matter
            folder = root / split / CIFAR10_CLASSES[idx]
            folder.mkdir(parents=True)
            for k in range(n):
                img = np.empty((32, 32, 3), dtype=np.uint8)
                img[..., 0] = _class_value(idx)
                img[..., 1] = 255 - _class_value(idx)
                img[..., 2] = rng.integers(0, 256)
                Image.fromarray(img).save(folder / f"{k:04d}.jpg", quality=95)
    return root


@pytest.fixture
def env(tmp_path, monkeypatch):
    """An empty working directory without QUEST_CIFAR10, so no real dataset can be found by accident."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("QUEST_CIFAR10", raising=False)
    monkeypatch.delenv("QUEST_DATA_PATH", raising=False)
    return tmp_path


@pytest.fixture
def folder(env) -> Path:
    return _make_imagefolder(env / "cifar10-jpeg")


# --------------------------------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------------------------
# Subsets, loaders and the DataModule
# --------------------------------------------------------------------------------------------------------------------


def test_balanced_subset_indices():
    labels = torch.arange(10).repeat_interleave(torch.tensor([50, 40, 30, 20, 10, 60, 70, 80, 90, 100]))
    idx = balanced_subset_indices(labels, 95, seed=3)
    assert idx.numel() == 95 and idx.unique().numel() == 95 and torch.equal(idx, idx.sort().values)
    counts = torch.bincount(labels[idx], minlength=10)
    assert counts.max() - counts.min() <= 1
    assert torch.equal(idx, balanced_subset_indices(labels, 95, seed=3))
    assert not torch.equal(idx, balanced_subset_indices(labels, 95, seed=4))
    assert torch.equal(balanced_subset_indices(labels, 10_000), torch.arange(labels.numel()))


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_device_batch_loader_shards_like_distributed_sampler(world_size):
    n = 10
    images, labels = torch.arange(n).view(n, 1).float(), torch.arange(n)
    loaders = [DeviceBatchLoader(images, labels, 3, True, rank=r, world_size=world_size) for r in range(world_size)]
    seen = []
    for loader in loaders:
        loader.set_epoch(5)
        batches = list(loader)
        assert len(batches) == len(loader)
        got = torch.cat([y for _, y in batches])
        assert got.numel() == -(-n // world_size)
        assert torch.equal(torch.cat([x for x, _ in batches]).view(-1).long(), got)
        seen.append(got)
    assert set(torch.cat(seen).tolist()) == set(range(n))
    again = loaders[0]
    again.set_epoch(5)
    assert torch.equal(torch.cat([y for _, y in again]), seen[0])
    again.set_epoch(6)
    assert not torch.equal(torch.cat([y for _, y in again]), seen[0])


def test_datamodule_subsets_and_batches(folder, env):
    dm = CIFAR10DataModule(
        data_dir=str(folder), download=False, cache_dir=str(env / "cache"), batch_size=4, train_subset=10, test_subset=5
    )
    dm.prepare_data()
    dm.setup("fit")
    assert dm.train_data[0].shape == (10, 3, 32, 32)
    assert torch.bincount(dm.train_data[1], minlength=10).tolist() == [1] * 10
    assert dm.test_data[1].unique().numel() == 5
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (4, 3, 32, 32) and y.dtype == torch.int64
    assert isinstance(dm.train_dataloader(), torch.utils.data.DataLoader)
    # Without a trainer (or outside training) batches are only normalised.
    xf, yf = dm.on_after_batch_transfer((x, y), 0)
    assert xf.dtype == torch.float32 and torch.equal(yf, y)
    torch.testing.assert_close(xf, normalize_images(x))
    assert len(dm.val_dataloader()) == 2 and len(dm.test_dataloader()) == 2


class _Probe(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(3 * 32 * 32, 10)
        self.seen: list[tuple[str, torch.dtype, tuple[int, ...]]] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.seen.append(("train", x.dtype, tuple(x.shape)))
        return torch.nn.functional.cross_entropy(self.layer(x.flatten(1)), y)

    def validation_step(self, batch, batch_idx):
        x, _ = batch
        self.seen.append(("val", x.dtype, tuple(x.shape)))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("device_resident", [False, True])
def test_trainer_fit_augments_only_training_batches(folder, env, monkeypatch, device_resident):
    calls = []

    def counting_augment(images, generator=None):
        calls.append(images.shape[0])
        return gpu_augment(images, generator)

    monkeypatch.setattr(cifar10, "gpu_augment", counting_augment)
    dm = CIFAR10DataModule(
        data_dir=str(folder),
        download=False,
        cache_dir=str(env / "cache"),
        batch_size=8,
        device_resident=device_resident,
    )
    model = _Probe()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(env),
    )
    trainer.fit(model, datamodule=dm)
    loader = trainer.train_dataloader
    assert isinstance(loader, DeviceBatchLoader if device_resident else torch.utils.data.DataLoader)
    train = [s for s in model.seen if s[0] == "train"]
    val = [s for s in model.seen if s[0] == "val"]
    assert len(train) == 2 * 4 and len(val) == 2 * 3  # 30 train / 8 -> 4 batches, 20 test / 8 -> 3 batches
    assert all(dtype == torch.float32 and shape[1:] == (3, 32, 32) for _, dtype, shape in model.seen)
    assert sum(calls) == 2 * 30  # every training sample augmented once per epoch, no validation sample
