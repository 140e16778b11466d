"""A tiny CIFAR-10-shaped ImageFolder written by the tests (never the real dataset) and checks on what it loads."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from quest_lightning.lightning.data import CIFAR10_CLASSES, CIFAR10Tensors

N_TRAIN, N_TEST = 3, 2


def class_value(idx: int) -> int:
    return 10 + 24 * idx


def write_image(path: Path, idx: int, blue: int = 0) -> None:
    """A solid-colour 32x32 JPEG whose red channel encodes the class ``idx``."""
    img = np.empty((32, 32, 3), dtype=np.uint8)
    img[..., 0] = class_value(idx)
    img[..., 1] = 255 - class_value(idx)
    img[..., 2] = blue
    Image.fromarray(img).save(path, format="JPEG", quality=95)


def make_imagefolder(root: Path, n_train: int = N_TRAIN, n_test: int = N_TEST) -> Path:
    """Writes ``n_train``/``n_test`` JPEGs per class; the red channel encodes the class, so labels can be checked."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for idx in reversed(range(10)):  # creation order must not matter
            folder = root / split / CIFAR10_CLASSES[idx]
            folder.mkdir(parents=True)
            for k in range(n):
                write_image(folder / f"{k:04d}.jpg", idx, int(rng.integers(0, 256)))
    return root


def make_tarball(folder: Path, path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        tf.add(folder, arcname="cifar10-jpeg")
    return path


def labels_from_pixels(images: torch.Tensor) -> torch.Tensor:
    red = images[:, 0].float().mean(dim=(1, 2))
    return torch.round((red - 10) / 24).long()


def check_tensors(data: CIFAR10Tensors, n_train: int = N_TRAIN, n_test: int = N_TEST) -> None:
    assert data.train_images.shape == (10 * n_train, 3, 32, 32)
    assert data.test_images.shape == (10 * n_test, 3, 32, 32)
    assert data.train_images.dtype == torch.uint8 and data.test_images.dtype == torch.uint8
    assert data.train_labels.dtype == torch.int64
    assert torch.equal(data.train_labels, labels_from_pixels(data.train_images))
    assert torch.equal(data.test_labels, labels_from_pixels(data.test_images))
    assert torch.bincount(data.train_labels, minlength=10).tolist() == [n_train] * 10


def crop_flip_reference(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, padding: int) -> torch.Tensor:
    """Crop and flip one sample at a time with slicing: the reference the batched gather is checked against."""
    b, c, h, w = images.shape
    padded = torch.zeros(b, c, h + 2 * padding, w + 2 * padding, dtype=images.dtype)
    padded[:, :, padding : padding + h, padding : padding + w] = images
    out = torch.empty_like(images)
    for n in range(b):
        oy, ox = int(offsets[n, 0]), int(offsets[n, 1])
        crop = padded[n, :, oy : oy + h, ox : ox + w]
        out[n] = crop.flip(-1) if flips[n] else crop
    return out
