"""Level → level transitions of integer weight codes between two optimizer steps: the full count (the reference),
the count from the changed weights only, and the fractions a stage is summed up by."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from quest_lightning.functional.grid import level_index, levels_of_qmax
from quest_lightning.metrics.histogram import histogram

__all__ = [
    "TransitionChanges",
    "TransitionFractions",
    "level_counts",
    "changed_index",
    "transition_changes",
    "transition_counts",
    "transition_summary",
]


class TransitionFractions(NamedTuple):
    """What :func:`transition_summary` returns; ``None`` where there is nothing to divide by."""

    frozen_fraction: float | None  # weight-steps that kept their level
    changed_fraction: float | None  # 1 - frozen_fraction
    non_adjacent_fraction: float | None  # changes that skip a level (|i - j| >= 2), among the changes


def transition_counts(previous: Tensor, current: Tensor, qmax: int) -> Tensor:
    """Level → level transition matrix :math:`C[i, j]` between two code tensors, as ``int64`` ``[L, L]``.

    Row ``i`` is the previous level :math:`i - Q`, column ``j`` the new level :math:`j - Q`; one ``bincount`` over
    every weight. This is the reference; :func:`transition_changes` gives the same matrix from the changed weights.

    Example:
        >>> prev = torch.tensor([-1, 0, 0, 1], dtype=torch.int8)
        >>> transition_counts(prev, torch.tensor([-1, 1, 0, -1], dtype=torch.int8), qmax=1).tolist()
        [[1, 0, 0], [0, 1, 1], [1, 0, 0]]
    """
    if previous.shape != current.shape:
        raise ValueError(f"code shapes differ: {tuple(previous.shape)} vs {tuple(current.shape)}.")
    levels = levels_of_qmax(qmax)
    # int32: the index reaches 254 * 255 + 254 = 65024 at 8 bits, past int16
    index = level_index(previous.to(torch.int32), qmax) * levels + level_index(current.to(torch.int32), qmax)
    return torch.bincount(index.flatten(), minlength=levels * levels).view(levels, levels)


def level_counts(codes: Tensor, qmax: int) -> Tensor:
    """How many codes sit at each level :math:`v = -Q \\dots Q` (index :math:`v + Q`), ``int64`` ``[L]``.

    Example:
        >>> level_counts(torch.tensor([-1, 0, 0, 1], dtype=torch.int8), qmax=1).tolist()
        [1, 2, 1]
    """
    return histogram(level_index(codes.to(torch.int32), qmax), levels_of_qmax(qmax))


class TransitionChanges(NamedTuple):
    """What :func:`transition_changes` returns."""

    counts: Tensor  # int64 [L, L], the transition matrix of the step
    levels: Tensor  # int64 [L], how many codes sit at each level after the step
    changed: Tensor  # bool, the shape of the codes: the weights whose code changed (the writes)
    index: Tensor | None  # int64, the flat indices of the changed weights (on the CPU, where they were gathered)
    before: Tensor | None = None  # the changed weights' codes before the step (with ``index``)
    after: Tensor | None = None  # and after it

    def add_writes(self, writes: Tensor) -> Tensor:
        """Add one write to every changed weight of an ``int32`` writes-per-cell counter the shape of the codes (in
        place; through ``index`` when there is one, which touches only the changed cells)."""
        if self.index is None:
            return writes.add_(self.changed)
        flat = writes.view(-1)
        flat.index_add_(0, self.index, torch.ones(self.index.numel(), dtype=writes.dtype, device=writes.device))
        return writes


def transition_changes(
    previous: Tensor, current: Tensor, qmax: int, previous_levels: Tensor | None = None, *, out: Tensor | None = None
) -> TransitionChanges:
    """The transition matrix of one step from the weights that changed: one comparison over the codes, then a
    histogram of the changed ones only.

    .. math::

        C[i, j] = \\#\\{k : \\hat w_k = i \\to j\\}\\ (i \\ne j), \\qquad
        C[i, i] = n_i - \\sum_{j \\ne i} C[i, j],

    with :math:`n_i` the codes at level :math:`i` before the step (``previous_levels``; counted here when ``None``).
    Frozen weights are the total minus the changed ones, so :math:`C` equals :func:`transition_counts` exactly; the
    levels after the step, :math:`n_j + \\sum_{i \\ne j} C[i, j] - \\sum_{i \\ne j} C[j, i]`, chain into the next
    step without another pass. No host synchronisation off the CPU either (:func:`histogram`).

    Args:
        previous: Codes before the step (integer, any shape).
        current: Codes after the step, the same shape.
        qmax: Largest code :math:`Q`.
        previous_levels: ``level_counts(previous, qmax)``, when the caller has it from the step before.
        out: A ``bool`` tensor the shape of the codes for the ``changed`` mask (kept from step to step, it spares
            the allocation; the result's mask is then this tensor).

    Returns:
        A :class:`TransitionChanges`: ``counts`` (``int64 [L, L]``), ``levels`` after the step, the ``changed`` mask
        (the writes of the step, one per changed weight) and, on the CPU, the changed weights' flat ``index`` with
        their codes ``before`` and ``after`` the step.

    Raises:
        ValueError: The shapes differ.

    Example:
        >>> prev = torch.tensor([-1, 0, 0, 1], dtype=torch.int8)
        >>> out = transition_changes(prev, torch.tensor([-1, 1, 0, -1], dtype=torch.int8), qmax=1)
        >>> out.counts.tolist(), out.levels.tolist(), out.changed.tolist(), out.index.tolist()
        ([[1, 0, 0], [0, 1, 1], [1, 0, 0]], [2, 1, 1], [False, True, False, True], [1, 3])
    """
    if previous.shape != current.shape:
        raise ValueError(f"code shapes differ: {tuple(previous.shape)} vs {tuple(current.shape)}.")
    levels = levels_of_qmax(qmax)
    if previous_levels is None:
        previous_levels = level_counts(previous, qmax)
    before = after = index = None
    if previous.device.type == "cpu":
        changed, index = changed_index(previous, current, out=out)
        before, after = previous.reshape(-1)[index], current.reshape(-1)[index]
        pairs = _pair_histogram(before, after, qmax)
    else:
        changed = torch.ne(previous, current, out=out)
        pairs = _changed_pairs(previous, current, changed, qmax)
    pairs = pairs.view(levels, levels)
    left, arrived = pairs.sum(1), pairs.sum(0)
    counts = pairs + torch.diag(previous_levels - left)
    return TransitionChanges(counts, previous_levels - left + arrived, changed, index, before, after)


_CHANGE_BLOCK = 1 << 20  # elements compared per block: the block's mask is still in cache when it is gathered


def changed_index(previous: Tensor, current: Tensor, *, out: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The mask of the codes that differ and their flat indices (``int64``, ascending), as ``nonzero`` gives them.

    One comparison per block of codes, each block's indices gathered while its mask is in cache (twice as fast on
    the CPU as a comparison over the whole tensor followed by one ``nonzero``). ``out``: a ``bool`` tensor the shape
    of the codes to write the mask into (a mask kept from step to step spares the allocation). The index reads the
    mask, so this synchronises with the host off the CPU.
    """
    prev, cur = previous.reshape(-1), current.reshape(-1)
    usable = out is not None and out.shape == previous.shape and out.dtype == torch.bool and out.is_contiguous()
    mask = out if usable else torch.empty(previous.shape, dtype=torch.bool, device=previous.device)
    flat = mask.view(-1)
    parts = []
    for start in range(0, prev.numel(), _CHANGE_BLOCK):
        stop = min(start + _CHANGE_BLOCK, prev.numel())
        part = torch.ne(prev[start:stop], cur[start:stop], out=flat[start:stop]).nonzero().squeeze(1)
        parts.append(part.add_(start) if start else part)
    if not parts:
        return mask, torch.zeros(0, dtype=torch.int64, device=previous.device)
    return mask, torch.cat(parts) if len(parts) > 1 else parts[0]


def _pair_histogram(before: Tensor, after: Tensor, qmax: int) -> Tensor:
    """The ``L * L`` histogram of (old, new) level pairs of the codes ``before`` and ``after`` a step."""
    levels = levels_of_qmax(qmax)
    return histogram(
        level_index(before.to(torch.int32), qmax) * levels + level_index(after.to(torch.int32), qmax), levels * levels
    )


def _changed_pairs(
    previous: Tensor, current: Tensor, changed: Tensor, qmax: int, *, index: Tensor | None = None
) -> Tensor:
    """The ``L * L`` histogram of (old, new) level pairs of the changed weights: with their flat ``index`` (gathered
    on the CPU, where that costs no synchronisation), over them only; otherwise a fixed-size histogram over every
    weight whose extra last bin takes the unchanged ones."""
    levels = levels_of_qmax(qmax)
    if index is not None:
        return _pair_histogram(previous.reshape(-1)[index], current.reshape(-1)[index], qmax)
    index = level_index(previous.to(torch.int32), qmax) * levels + level_index(current.to(torch.int32), qmax)
    return histogram(torch.where(changed, index, levels * levels), levels * levels + 1)[:-1]


def _transition_update(previous: Tensor, current: Tensor, qmax: int) -> Tensor:
    """Sufficient statistics of one optimizer step: its ``int64`` transition matrix."""
    return transition_counts(previous, current, qmax)


def _transition_compute(counts: Tensor) -> Tensor:
    """The summed ``[L, L]`` matrix itself (the counts are the result)."""
    return counts


def transition_summary(counts: Tensor) -> TransitionFractions:
    """Frozen fraction, changed fraction and the share of changes between non-adjacent levels (:math:`|i-j| \\ge 2`).

    A fraction with nothing to divide by (no weight-steps, or no change for the non-adjacent share) is ``None``.
    """
    counts = counts.to(torch.float64)
    total = counts.sum()
    levels = counts.shape[0]
    i, j = torch.meshgrid(torch.arange(levels), torch.arange(levels), indexing="ij")
    distance = (i - j).abs().to(counts.device)
    changed = counts[distance > 0].sum()
    non_adjacent = counts[distance > 1].sum()
    return TransitionFractions(
        frozen_fraction=float(counts.diagonal().sum() / total) if total > 0 else None,
        changed_fraction=float(changed / total) if total > 0 else None,
        non_adjacent_fraction=float(non_adjacent / changed) if changed > 0 else (0.0 if total > 0 else None),
    )
