"""Exact histograms of small integers, with no host synchronisation on any device: the counting under the AOR and
transition meters."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["FLOAT32_EXACT", "histogram", "weighted_histogram"]

FLOAT32_EXACT = 2**24  # every integer up to 2**24 is a float32


def histogram(index: Tensor, bins: int) -> Tensor:
    """How often each of ``0 .. bins - 1`` occurs in ``index`` (``int64 [bins]``), exactly and with no host
    synchronisation.

    ``torch.bincount`` on the CPU. On other devices ``torch.bincount`` reads its input's range on the host, so this
    counts with ``torch.histc`` over ``float32`` chunks of at most :math:`2^{24}` elements (each chunk's counts are
    exact ``float32`` integers) and adds the chunks in ``int64``; under ``torch.use_deterministic_algorithms`` (which
    refuses ``histc`` on CUDA) it falls back to ``torch.bincount``.

    Example:
        >>> histogram(torch.tensor([0, 2, 2, 3]), 5).tolist()
        [1, 0, 2, 1, 0]
    """
    flat = index.flatten()
    if flat.device.type == "cpu" or torch.are_deterministic_algorithms_enabled():
        return torch.bincount(flat, minlength=bins)[:bins]
    return _histc(flat, bins)


def _histc(flat: Tensor, bins: int) -> Tensor:
    """:func:`histogram` by ``torch.histc`` over ``float32`` chunks of at most :math:`2^{24}` elements (exact)."""
    out = torch.zeros(bins, dtype=torch.int64, device=flat.device)
    for chunk in flat.split(FLOAT32_EXACT):
        out += torch.histc(chunk.to(torch.float32), bins=bins, min=-0.5, max=bins - 0.5).to(torch.int64)
    return out


def weighted_histogram(index: Tensor, weights: Tensor, bins: int) -> Tensor:
    """:math:`\\sum_{k: \\text{index}_k = b} \\text{weights}_k` for every bin ``b`` (float64), with no host
    synchronisation (``index_add_`` off the CPU, where a weighted ``bincount`` reads the input's range)."""
    weights = weights.flatten().to(torch.float64)
    if index.device.type == "cpu":
        return torch.bincount(index.flatten(), weights=weights, minlength=bins)
    return torch.zeros(bins, dtype=torch.float64, device=index.device).index_add_(0, index.flatten(), weights)
