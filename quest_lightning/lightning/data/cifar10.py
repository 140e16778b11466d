"""CIFAR-10 as a LightningDataModule that serves uint8 tensors and augments on the device.

Where the data is found: :mod:`~quest_lightning.lightning.data.sources`. How it is extracted, decoded and cached:
:mod:`~quest_lightning.lightning.data.cache`. Batches leave the dataloader as ``(uint8 images [B, 3, 32, 32], int64
labels [B])``. Augmentation (:mod:`~quest_lightning.lightning.data.augment`: random crop with 4-pixel zero padding and
horizontal flip, training only) and normalisation happen in :meth:`CIFAR10DataModule.on_after_batch_transfer`, i.e.
on the device that holds the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Literal

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from quest_lightning.lightning.data.augment import gpu_augment, normalize_images
from quest_lightning.lightning.data.cache import CIFAR10_CLASSES, CIFAR10Tensors, load_cifar10

__all__ = ["CIFAR10DataModule", "DeviceBatchLoader", "balanced_subset_indices"]


def balanced_subset_indices(labels: Tensor, n: int, seed: int = 0) -> Tensor:
    """Picks ``n`` sample indices, as evenly spread over the classes as the data allows, deterministically.

    Samples are shuffled with ``seed``; each then gets its rank within its class, and the ``n`` samples with the
    lowest ranks are kept (class counts differ by at most one while every class has enough samples).

    Args:
        labels: int64 tensor of shape ``[N]``.
        n: number of indices to return; ``n >= N`` returns all indices.
        seed: seed of the shuffle.

    Returns:
        Sorted int64 tensor of ``min(n, N)`` unique indices.
    """
    if n < 0:
        raise ValueError(f"subset size must be >= 0, got {n}")
    total = labels.numel()
    if n >= total:
        return torch.arange(total)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(total, generator=gen)
    shuffled = labels.cpu()[perm]
    rank = torch.empty(total, dtype=torch.long)
    for cls in shuffled.unique():
        where = (shuffled == cls).nonzero(as_tuple=True)[0]
        rank[where] = torch.arange(where.numel())
    order = torch.argsort(rank * (int(shuffled.max()) + 1) + shuffled, stable=True)
    return perm[order[:n]].sort().values


class DeviceBatchLoader:
    """Iterates over tensors that already live on the device, by indexing with a (sharded) permutation.

    It replaces a DataLoader when the whole dataset fits on the GPU: no workers, no collation, no host-to-device
    copies. Under DDP each rank takes every ``world_size``-th index of a permutation shared by all ranks (the same
    seed and epoch), padded by wrapping around so that every rank yields the same number of batches, like
    :class:`~torch.utils.data.DistributedSampler`.

    Args:
        images: tensor ``[N, ...]`` on any device.
        labels: tensor ``[N]`` on the same device.
        batch_size: samples per batch.
        shuffle: draw a new permutation every epoch (seeded by ``seed + epoch``).
        drop_last: drop this rank's last incomplete batch.
        rank: this process's global rank.
        world_size: number of processes.
        seed: base seed of the permutations.
        epoch_fn: returns the current epoch when iteration starts (e.g. ``lambda: trainer.current_epoch``), so that
            every rank, and a resumed run, draws the same permutation for the same epoch. Without it the loader
            counts its own epochs (see :meth:`set_epoch`).
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        epoch_fn: Callable[[], int] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.epoch_fn = epoch_fn
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch that seeds the next permutation (like ``DistributedSampler.set_epoch``)."""
        self.epoch = epoch

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch."""
        return math.ceil(self.labels.numel() / self.world_size)

    def indices(self) -> Tensor:
        """This rank's sample indices for the current epoch, on the CPU."""
        n = self.labels.numel()
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(n)
        total = self.num_samples * self.world_size
        if total > n:
            order = torch.cat([order, order[: total - n]]) if n else order
        return order[self.rank : total : self.world_size]

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if self.epoch_fn is not None:
            self.epoch = self.epoch_fn()
        idx = self.indices().to(self.images.device)
        if self.shuffle and self.epoch_fn is None:
            self.epoch += 1  # a fresh order next time even if nobody calls set_epoch
        for b in range(len(self)):
            sel = idx[b * self.batch_size : (b + 1) * self.batch_size]
            yield self.images[sel], self.labels[sel]


class CIFAR10DataModule(L.LightningDataModule):
    """CIFAR-10 with uint8 batches, augmented and normalised on the device after transfer.

    Validation uses the test split (the convention of the papers this library reproduces); ``test`` is the test split
    too. See :mod:`~quest_lightning.lightning.data.sources` for where the data is searched and
    :mod:`~quest_lightning.lightning.data.cache` for how it is cached.

    Args:
        data_dir: folder (ImageFolder layout or with ``cifar-10-batches-py``) or ``.tar.gz``; ``None`` uses
            ``$QUEST_CIFAR10``, else searches the search path (``$QUEST_DATA_PATH``), then downloads.
        download: allow torchvision to download CIFAR-10 when it is found nowhere.
        batch_size: training batch size (per process).
        eval_batch_size: validation/test batch size; defaults to ``batch_size``.
        num_workers: DataLoader workers on the host path (the device-resident path never uses workers).
        train_subset: keep only this many training samples (class-balanced, deterministic in ``seed``).
        test_subset: keep only this many test samples (used for validation and test).
        augment: random crop (4-pixel zero padding) and horizontal flip for training batches.
        seed: seed of the subsets and of the shuffling.
        cache_dir: folder for extracted tarballs and decoded caches (default ``~/.cache/quest_lightning/cifar10``).
        device_resident: keep the uint8 dataset on the training device and batch by indexing; ``"auto"`` does it
            when the trainer runs on CUDA.
        drop_last: drop the last incomplete training batch.
        pin_memory: pin host batches when training on CUDA through a DataLoader.
    """

    classes: tuple[str, ...] = CIFAR10_CLASSES
    num_classes: int = 10
    dims: tuple[int, int, int] = (3, 32, 32)

    def __init__(
        self,
        data_dir: str | None = None,
        download: bool = True,
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        train_subset: int | None = None,
        test_subset: int | None = None,
        augment: bool = True,
        seed: int = 0,
        cache_dir: str | None = None,
        device_resident: bool | Literal["auto"] = "auto",
        drop_last: bool = False,
        pin_memory: bool = True,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if eval_batch_size is not None and eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be >= 1 or None, got {eval_batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        for name, value in (("train_subset", train_subset), ("test_subset", test_subset)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        if device_resident not in (True, False, "auto"):
            raise ValueError(f"device_resident must be True, False or 'auto', got {device_resident!r}")
        self.save_hyperparameters()
        self.source: str | None = None
        self.train_data: tuple[Tensor, Tensor] | None = None
        self.test_data: tuple[Tensor, Tensor] | None = None
        self._prepared: CIFAR10Tensors | None = None
        self._resident = False

    def _load(self) -> CIFAR10Tensors:
        hp = self.hparams
        return load_cifar10(hp.data_dir, download=hp.download, cache_dir=hp.cache_dir)

    def prepare_data(self) -> None:
        """Finds, downloads, extracts and decodes once (called on one process per node)."""
        self._prepared = self._load()

    def _device(self) -> torch.device:
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def setup(self, stage: str | None = None) -> None:
        """Loads the tensors (from the cache), applies the subsets and, if resident, moves them to the device."""
        if self.train_data is not None:
            return
        hp = self.hparams
        data = self._prepared if self._prepared is not None else self._load()
        self._prepared = None
        train = (data.train_images, data.train_labels)
        test = (data.test_images, data.test_labels)
        if hp.train_subset is not None:
            keep = balanced_subset_indices(train[1], hp.train_subset, hp.seed)
            train = (train[0][keep], train[1][keep])
        if hp.test_subset is not None:
            keep = balanced_subset_indices(test[1], hp.test_subset, hp.seed)
            test = (test[0][keep], test[1][keep])
        device = self._device()
        self._resident = hp.device_resident is True or (hp.device_resident == "auto" and device.type == "cuda")
        if self._resident:
            train = (train[0].to(device), train[1].to(device))
            test = (test[0].to(device), test[1].to(device))
        self.source = data.source
        self.train_data, self.test_data = train, test

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def _loader(self, data: tuple[Tensor, Tensor] | None, train: bool) -> DataLoader | DeviceBatchLoader:
        if data is None:
            raise RuntimeError("call setup() before asking for dataloaders")
        hp = self.hparams
        batch_size = hp.batch_size if train else hp.eval_batch_size or hp.batch_size
        drop_last = hp.drop_last and train
        if self._resident:
            rank, world = self._rank_world()
            trainer = self.trainer
            epoch_fn = (lambda: trainer.current_epoch) if trainer is not None else None
            return DeviceBatchLoader(*data, batch_size, train, drop_last, rank, world, hp.seed, epoch_fn)
        pin = hp.pin_memory and self._device().type == "cuda"
        return DataLoader(
            TensorDataset(*data),
            batch_size=batch_size,
            shuffle=train,
            drop_last=drop_last,
            num_workers=hp.num_workers,
            pin_memory=pin,
            persistent_workers=hp.num_workers > 0,
            generator=torch.Generator().manual_seed(hp.seed) if train else None,
        )

    def train_dataloader(self) -> DataLoader | DeviceBatchLoader:
        """Shuffled training batches of ``(uint8 images, int64 labels)``."""
        return self._loader(self.train_data, train=True)

    def val_dataloader(self) -> DataLoader | DeviceBatchLoader:
        """Test-split batches, used for validation."""
        return self._loader(self.test_data, train=False)

    def test_dataloader(self) -> DataLoader | DeviceBatchLoader:
        """Test-split batches."""
        return self._loader(self.test_data, train=False)

    def on_after_batch_transfer(self, batch: tuple[Tensor, Tensor], dataloader_idx: int) -> tuple[Tensor, Tensor]:
        """Augments (training only) and normalises a batch on the device it was moved to.

        Args:
            batch: ``(uint8 images [B, 3, 32, 32], labels [B])``.
            dataloader_idx: index of the dataloader (unused).

        Returns:
            ``(float32 normalised images, labels)``.
        """
        images, labels = batch
        if images.dtype != torch.uint8:
            return images, labels
        trainer = self.trainer
        if self.hparams.augment and trainer is not None and trainer.training:
            images = gpu_augment(images)
        return normalize_images(images), labels
