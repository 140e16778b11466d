"""Crop, flip and normalisation against per-sample references and hand values."""

from __future__ import annotations

import pytest
import torch
from tiny_cifar import crop_flip_reference

from quest_lightning.lightning.data import CIFAR10_MEAN, CIFAR10_STD, crop_flip, gpu_augment, normalize_images
from quest_lightning.lightning.data.augment import draw_crop_flip


@pytest.mark.parametrize("padding", [0, 1, 4])
def test_crop_flip_matches_loop(padding):
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8, generator=gen)
    offsets = torch.randint(0, 2 * padding + 1, (16, 2), generator=gen)
    flips = torch.randint(0, 2, (16,), generator=gen).bool()
    assert torch.equal(crop_flip(images, offsets, flips, padding), crop_flip_reference(images, offsets, flips, padding))


def test_gpu_augment_uses_generator_in_documented_order():
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    out = gpu_augment(images, generator=torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)
    offsets = torch.randint(0, 9, (32, 2), generator=gen)
    flips = torch.randint(0, 2, (32,), generator=gen).bool()
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert torch.equal(out, crop_flip_reference(images, offsets, flips, 4))
    assert not torch.equal(out, images)
    assert torch.equal(out, gpu_augment(images, generator=torch.Generator().manual_seed(7)))


def test_draw_crop_flip_ranges_and_no_flip():
    offsets, flips = draw_crop_flip(4000, torch.Generator().manual_seed(0), padding=4)
    assert offsets.shape == (4000, 2) and flips.shape == (4000,) and flips.dtype == torch.bool
    assert set(offsets.unique().tolist()) == set(range(9))  # every offset 0..8 occurs, nothing else
    assert 1800 < int(flips.sum()) < 2200  # about half flipped
    offsets, flips = draw_crop_flip(5, torch.Generator().manual_seed(0), padding=0, flip=False)
    assert not offsets.any() and not flips.any()


def test_augmented_pixels_come_from_padded_source():
    # Each pixel value is unique, so every output value must be 0 (padding) or its original value in a nearby spot.
    images = torch.arange(1, 2 * 3 * 32 * 32 + 1, dtype=torch.int64).reshape(2, 3, 32, 32)
    out = gpu_augment(images, generator=torch.Generator().manual_seed(3))
    for n in range(2):
        values = out[n][out[n] > 0]
        assert set(values.tolist()) <= set(images[n].flatten().tolist())
        for c in range(3):  # channels are never mixed
            nz = out[n, c][out[n, c] > 0]
            assert ((nz - 1) // 1024 == n * 3 + c).all()
        assert (out[n] == 0).sum() <= 3 * (32 * 32 - 28 * 28)  # at most 4 pixels of padding per side


def test_flip_only_and_identity():
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    centre = torch.full((4, 2), 4)
    assert torch.equal(crop_flip(images, centre, torch.ones(4, dtype=torch.bool), 4), images.flip(-1))
    assert torch.equal(crop_flip(images, centre, torch.zeros(4, dtype=torch.bool), 4), images)
    assert torch.equal(gpu_augment(images, padding=0, flip=False), images)


def test_normalize_images():
    images = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 3, 2, 2)
    out = normalize_images(images)
    assert out.dtype == torch.float32
    mean, std = torch.tensor(CIFAR10_MEAN), torch.tensor(CIFAR10_STD)
    torch.testing.assert_close(out[0, :, 0, 0], -mean / std)
    torch.testing.assert_close(out[1, :, 0, 0], (1 - mean) / std)
