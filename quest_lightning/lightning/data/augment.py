"""Random crop, horizontal flip and normalisation as batched tensor functions that run on the batch's own device.

The random part (:func:`draw_crop_flip`) is separate from the deterministic part (:func:`crop_flip`), so that the
loader can draw the parameters of a whole epoch at once from a seeded stream and apply each sample's own parameters
wherever and whenever that sample is served (see :class:`~quest_lightning.lightning.data.loader.DeviceBatchLoader`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "crop_flip",
    "draw_crop_flip",
    "gpu_augment",
    "normalize_images",
]

CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
"""Per-channel mean of the CIFAR-10 training images, on the [0, 1] scale."""

CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)
"""Per-channel standard deviation of the CIFAR-10 training images, on the [0, 1] scale."""


def crop_flip(images: Tensor, offsets: Tensor, flips: Tensor, padding: int = 4) -> Tensor:
    """Crops each image from its zero-padded version at the given offsets, mirroring it where ``flips`` is true.

    This is the deterministic core of :func:`gpu_augment`: one padding and one gather for the whole batch.
    Output pixel ``(c, i, j)`` of sample ``b`` is ``padded[b, c, oy + i, ox + j]``, or
    ``padded[b, c, oy + i, ox + W - 1 - j]`` when flipped, where ``padded`` has ``padding`` zeros on every side.

    Args:
        images: tensor of shape ``[B, C, H, W]`` (any dtype; uint8 for CIFAR batches).
        offsets: int64 tensor of shape ``[B, 2]`` holding ``(oy, ox)`` in ``[0, 2 * padding]``.
        flips: bool tensor of shape ``[B]``; true mirrors the sample horizontally.
        padding: zero padding on each side, in pixels.

    Returns:
        Tensor with the shape, dtype and device of ``images``.

    Raises:
        ValueError: ``images`` is not 4-dimensional.
    """
    if images.ndim != 4:
        raise ValueError(f"images must have shape [B, C, H, W], got {tuple(images.shape)}")
    b, c, h, w = images.shape
    device = images.device
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding)) if padding else images
    offsets = offsets.to(device=device, dtype=torch.long)
    flips = flips.to(device=device, dtype=torch.bool)
    ar_h = torch.arange(h, device=device)
    ar_w = torch.arange(w, device=device)
    rows = offsets[:, 0:1] + ar_h  # [B, H]
    cols = offsets[:, 1:2] + torch.where(flips[:, None], (w - 1) - ar_w, ar_w)  # [B, W]
    batch_idx = torch.arange(b, device=device)[:, None, None, None]
    chan_idx = torch.arange(c, device=device)[None, :, None, None]
    return padded[batch_idx, chan_idx, rows[:, None, :, None], cols[:, None, None, :]]


def draw_crop_flip(
    n: int,
    generator: torch.Generator | None = None,
    padding: int = 4,
    flip: bool = True,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Draws random crop offsets and flips for ``n`` samples, in a fixed, documented order.

    ``offsets = randint(0, 2 * padding + 1, (n, 2))`` first, then ``flips = randint(0, 2, (n,))`` (only when
    ``flip``), both from ``generator`` or the device's default generator. The same generator state therefore always
    gives the same parameters.

    Args:
        n: number of samples.
        generator: optional random generator, on ``device``.
        padding: zero padding on each side before cropping, in pixels (0 gives all-zero offsets).
        flip: whether to draw flips; false gives no flips and draws nothing for them.
        device: where the tensors are made (the generator's device).

    Returns:
        ``(offsets, flips)``: int64 ``[n, 2]`` holding ``(oy, ox)`` in ``[0, 2 * padding]``, and bool ``[n]``.
    """
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator, device=device)
    if flip:
        flips = torch.randint(0, 2, (n,), generator=generator, device=device).bool()
    else:
        flips = torch.zeros(n, dtype=torch.bool, device=device)
    return offsets, flips


def gpu_augment(
    images: Tensor,
    generator: torch.Generator | None = None,
    padding: int = 4,
    flip: bool = True,
) -> Tensor:
    """Random crop with zero padding plus random horizontal flip, vectorised over the batch on its own device.

    Equivalent to torchvision's ``RandomCrop(32, padding=4)`` followed by ``RandomHorizontalFlip()`` per sample,
    but done as one gather so it runs on the GPU without a Python loop. The parameters are drawn by
    :func:`draw_crop_flip` from ``generator`` (which must live on ``images.device``) or the device's default generator.

    Args:
        images: tensor of shape ``[B, C, H, W]``, usually uint8.
        generator: optional random generator on the same device as ``images``.
        padding: zero padding on each side before cropping, in pixels (0 disables the crop).
        flip: whether to flip half of the samples horizontally.

    Returns:
        Augmented tensor with the shape, dtype and device of ``images``.
    """
    offsets, flips = draw_crop_flip(images.shape[0], generator, padding, flip, images.device)
    return crop_flip(images, offsets, flips, padding)


def normalize_images(
    images: Tensor,
    mean: Sequence[float] = CIFAR10_MEAN,
    std: Sequence[float] = CIFAR10_STD,
) -> Tensor:
    """Converts uint8 images to float32 on their device and normalises each channel.

    .. math::
        y_c = (x_c / 255 - \\mu_c) / \\sigma_c

    Args:
        images: uint8 tensor of shape ``[B, C, H, W]``.
        mean: per-channel mean on the [0, 1] scale.
        std: per-channel standard deviation on the [0, 1] scale.

    Returns:
        float32 tensor of the same shape.
    """
    m = torch.tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    return images.to(torch.float32).div_(255.0).sub_(m).div_(s)
