"""LightningDataModules and device-side batch transforms."""

from quest_lightning.lightning.data.cifar10 import (
    CIFAR10_CLASSES,
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR10DataModule,
    CIFAR10NotFoundError,
    CIFAR10Tensors,
    DeviceBatchLoader,
    balanced_subset_indices,
    crop_flip,
    find_cifar10,
    gpu_augment,
    load_cifar10,
    normalize_images,
)

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR10DataModule",
    "CIFAR10NotFoundError",
    "CIFAR10Tensors",
    "DeviceBatchLoader",
    "balanced_subset_indices",
    "crop_flip",
    "find_cifar10",
    "gpu_augment",
    "load_cifar10",
    "normalize_images",
]
