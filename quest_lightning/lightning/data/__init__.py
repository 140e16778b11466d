"""LightningDataModules and device-side batch transforms.

``sources`` finds CIFAR-10, ``cache`` extracts and decodes it once into uint8 tensors, ``augment`` crops, flips and
normalises batches on their device, ``loader`` serves sharded, per-sample augmented, resumable batches from tensors in
memory, and ``cifar10`` holds the DataModule.
"""

from quest_lightning.lightning.data.augment import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    crop_flip,
    gpu_augment,
    normalize_images,
)
from quest_lightning.lightning.data.cache import CIFAR10_CLASSES, CIFAR10DataError, CIFAR10Tensors, load_cifar10
from quest_lightning.lightning.data.cifar10 import CIFAR10DataModule
from quest_lightning.lightning.data.loader import DeviceBatchLoader, ShardLayout, balanced_subset_indices
from quest_lightning.lightning.data.sources import CIFAR10NotFoundError, find_cifar10, search_path

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR10DataError",
    "CIFAR10DataModule",
    "CIFAR10NotFoundError",
    "CIFAR10Tensors",
    "DeviceBatchLoader",
    "ShardLayout",
    "balanced_subset_indices",
    "crop_flip",
    "find_cifar10",
    "gpu_augment",
    "load_cifar10",
    "normalize_images",
    "search_path",
]
