"""CIFAR-10 as a LightningDataModule that serves uint8 tensors, augments them per sample and normalises on the device.

Where the data is found: :mod:`~quest_lightning.lightning.data.sources`. How it is extracted, decoded and cached:
:mod:`~quest_lightning.lightning.data.cache`. Every split is served by a
:class:`~quest_lightning.lightning.data.loader.DeviceBatchLoader` over the decoded tensors (on the training device when
resident, else on the CPU): batches are ``(uint8 images [B, 3, 32, 32], int64 labels [B])``, sharded by rank, with the
training images cropped and flipped where they live. :meth:`CIFAR10DataModule.on_after_batch_transfer` normalises them
on the device that holds the batch.
"""

from __future__ import annotations

import warnings
from typing import Literal

import lightning as L
import torch
from torch import Tensor

from quest_lightning.lightning.data.augment import normalize_images
from quest_lightning.lightning.data.cache import CIFAR10_CLASSES, CIFAR10Tensors, load_cifar10
from quest_lightning.lightning.data.loader import DeviceBatchLoader, balanced_subset_indices

__all__ = ["CIFAR10DataModule"]


class CIFAR10DataModule(L.LightningDataModule):
    """CIFAR-10 with uint8 batches, augmented per sample and normalised on the device after transfer.

    Validation uses the test split (the convention of the papers this library reproduces); ``test`` is the test split
    too. See :mod:`~quest_lightning.lightning.data.sources` for where the data is searched and
    :mod:`~quest_lightning.lightning.data.cache` for how it is cached.

    The training loader is stateful: a checkpoint taken mid-epoch resumes at the next batch with the same order and the
    same crops and flips (see :mod:`~quest_lightning.lightning.data.loader`). Under DDP each rank takes every
    ``world_size``-th sample of one global order; ``trainer.train_dataloader.num_padded`` and ``.padded_in_batch(i)``
    say which samples are padding (repeats that even out the ranks), for validation loaders too.

    Args:
        data_dir: folder (ImageFolder layout or with ``cifar-10-batches-py``) or ``.tar.gz``; ``None`` uses
            ``$QUEST_CIFAR10``, else searches the search path (``$QUEST_DATA_PATH``), then downloads.
        download: allow torchvision to download CIFAR-10 when it is found nowhere.
        batch_size: training batch size (per process).
        eval_batch_size: validation/test batch size; defaults to ``batch_size``.
        train_subset: keep only this many training samples (class-balanced, deterministic in ``seed``).
        test_subset: keep only this many test samples (used for validation and test).
        augment: random crop (4-pixel zero padding) and horizontal flip for training batches.
        seed: seed of the subsets, of the order of each epoch and of the augmentation.
        cache_dir: folder for extracted tarballs and decoded caches (default ``~/.cache/quest_lightning/cifar10``).
        device_resident: keep the uint8 dataset on the training device and batch by indexing there; ``"auto"`` does
            it when the trainer runs on CUDA. Otherwise batches are gathered on the CPU and moved by Lightning.
        drop_last: drop the last incomplete training batch.
        pin_memory: pin CPU batches when training on CUDA without ``device_resident``.
        num_workers: no longer used (batches are gathered from the decoded tensors in the training process); kept so
            that configs saved by earlier versions still load. A value other than 0 warns that it is ignored.

    Raises:
        ValueError: a size is out of range or ``device_resident`` is not ``True``, ``False`` or ``"auto"``.
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
        train_subset: int | None = None,
        test_subset: int | None = None,
        augment: bool = True,
        seed: int = 0,
        cache_dir: str | None = None,
        device_resident: bool | Literal["auto"] = "auto",
        drop_last: bool = False,
        pin_memory: bool = True,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if eval_batch_size is not None and eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be >= 1 or None, got {eval_batch_size}")
        for name, value in (("train_subset", train_subset), ("test_subset", test_subset)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        if device_resident not in (True, False, "auto"):
            raise ValueError(f"device_resident must be True, False or 'auto', got {device_resident!r}")
        if num_workers:
            warnings.warn(
                f"CIFAR10DataModule ignores num_workers={num_workers}: batches are gathered from the decoded tensors "
                "in the training process, so there is no work for DataLoader workers. Remove the setting.",
                stacklevel=2,
            )
        self.save_hyperparameters(ignore=["num_workers"])
        self.source: str | None = None
        self.train_data: tuple[Tensor, Tensor] | None = None
        self.test_data: tuple[Tensor, Tensor] | None = None
        self._prepared: CIFAR10Tensors | None = None

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
        if hp.device_resident is True or (hp.device_resident == "auto" and device.type == "cuda"):
            train = (train[0].to(device), train[1].to(device))
            test = (test[0].to(device), test[1].to(device))
        self.source = data.source
        self.train_data, self.test_data = train, test

    def _loader(self, data: tuple[Tensor, Tensor] | None, train: bool) -> DeviceBatchLoader:
        if data is None:
            raise RuntimeError("call setup() before asking for dataloaders")
        hp = self.hparams
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        return DeviceBatchLoader(
            *data,
            batch_size=hp.batch_size if train else hp.eval_batch_size or hp.batch_size,
            shuffle=train,
            drop_last=hp.drop_last and train,
            rank=rank,
            world_size=world,
            seed=hp.seed,
            epoch_fn=(lambda: trainer.current_epoch) if trainer is not None else None,
            augment=hp.augment and train,
            pin_memory=hp.pin_memory and self._device().type == "cuda",
        )

    def train_dataloader(self) -> DeviceBatchLoader:
        """Shuffled, augmented training batches of ``(uint8 images, int64 labels)``; resumable mid-epoch."""
        return self._loader(self.train_data, train=True)

    def val_dataloader(self) -> DeviceBatchLoader:
        """Test-split batches, used for validation."""
        return self._loader(self.test_data, train=False)

    def test_dataloader(self) -> DeviceBatchLoader:
        """Test-split batches."""
        return self._loader(self.test_data, train=False)

    def on_after_batch_transfer(self, batch: tuple[Tensor, Tensor], dataloader_idx: int) -> tuple[Tensor, Tensor]:
        """Normalises a uint8 batch on the device it was moved to (augmentation already happened in the loader), in
        the dtype of the Trainer's precision.

        Lightning converts a batch's floating tensors to the precision's dtype (``"64-true"``: float64,
        ``"bf16-true"``: bfloat16, ...) before the transfer, while the images are still uint8; the normalised images
        are converted here in the same way.

        Args:
            batch: ``(uint8 images [B, 3, 32, 32], labels [B])``.
            dataloader_idx: index of the dataloader (unused).

        Returns:
            ``(normalised images, labels)``: float32, or the precision's dtype in a Trainer; batches that are not
            uint8 pass through unchanged.
        """
        images, labels = batch
        if images.dtype != torch.uint8:
            return images, labels
        images = normalize_images(images)
        trainer = self.trainer
        if trainer is not None:
            images = trainer.precision_plugin.convert_input(images)
        return images, labels
