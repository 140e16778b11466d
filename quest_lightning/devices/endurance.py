r"""Write endurance: writes per cell, their statistics, and the epochs until the first cell wears out.

Every weight lives on one device cell, and a *write* is a change of its integer code between two optimizer steps
(a level change; a frozen weight is not rewritten). The counter is one ``int32`` per weight on the weights' own
device, updated with one comparison per step (:func:`count_writes`), in the pass that already counts transitions.

A write that the RSTD makes through an intermediate state (the Sk-MTJ's decrease ``R_2 -> R_0 -> R_1``) is counted
once here; multiply by the path length (:meth:`~quest_lightning.devices.transitions.ShortestPaths.path`) if your
device wears per pulse.

**Projection.** A cell :math:`k` written :math:`w_k` times in :math:`E` epochs writes at :math:`w_k / E` per epoch
and reaches its limit :math:`N_k` after

.. math::

    E_k = \frac{N_k\, E}{w_k} \text{ epochs from the start of training}, \qquad
    E_{first} = \min_{k:\ w_k > 0} E_k = \frac{N E}{\max_k w_k} \text{ when every } N_k = N,

assuming the write rate stays at its measured value. :math:`N_k` is the device's ``endurance_cycles``, or drawn per
cell (lognormal, :func:`sample_endurance`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from quest_lightning.devices.nonideal import NonIdealities

__all__ = [
    "EnduranceProjection",
    "WriteStats",
    "count_writes",
    "endurance_report",
    "project_endurance",
    "sample_endurance",
    "write_stats",
]

DEFAULT_PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9)


def count_writes(previous_codes: Tensor, codes: Tensor, writes: Tensor | None = None) -> Tensor:
    """Add one write to every cell whose code changed: ``writes += (codes != previous_codes)``.

    Args:
        previous_codes: Integer codes after the previous optimizer step, any shape.
        codes: Integer codes now, the same shape.
        writes: The running ``int32`` counter of the same shape, updated in place; ``None`` starts one at zero.

    Returns:
        ``writes`` (a new ``int32`` tensor on the codes' device when ``None`` was passed).

    Raises:
        ValueError: If the shapes differ or ``writes`` is not ``int32``.
    """
    if previous_codes.shape != codes.shape:
        raise ValueError(
            f"count_writes: the codes changed shape from {tuple(previous_codes.shape)} to {tuple(codes.shape)}; "
            "writes per cell need the same weight tensor at every step"
        )
    if writes is None:
        writes = torch.zeros(codes.shape, dtype=torch.int32, device=codes.device)
    elif writes.dtype != torch.int32 or writes.shape != codes.shape:
        raise ValueError(
            f"count_writes: writes must be an int32 tensor of shape {tuple(codes.shape)}, got {writes.dtype} "
            f"{tuple(writes.shape)}"
        )
    writes += codes != previous_codes
    return writes


@dataclass(frozen=True)
class WriteStats:
    """Writes per cell of one weight tensor.

    Attributes:
        cells: Number of cells (weights).
        total: Writes summed over the cells.
        max: The most writes any cell took.
        mean: Writes per cell, averaged.
        percentiles: ``{q: v}``: the nearest-rank ``q``-th percentile, the smallest ``v`` such that at least
            ``q`` % of the cells took ``v`` writes or fewer.
    """

    cells: int
    total: int
    max: int
    mean: float
    percentiles: dict[float, int]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (percentile keys become strings such as ``"p99.9"``)."""
        out = asdict(self)
        out["percentiles"] = {f"p{q:g}": v for q, v in self.percentiles.items()}
        return out


def write_stats(writes: Tensor, percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> WriteStats:
    """Maximum, mean and nearest-rank percentiles of a writes-per-cell counter, exactly (one ``bincount``).

    Raises:
        ValueError: If ``writes`` is empty, holds a negative count, or a percentile is outside ``(0, 100]``.
    """
    if writes.numel() == 0:
        raise ValueError("write_stats: the counter is empty (a layer with no weights?)")
    bad = [q for q in percentiles if not 0.0 < float(q) <= 100.0]
    if bad:
        raise ValueError(f"write_stats: percentiles {bad} must be in (0, 100]")
    flat = writes.detach().flatten().to(torch.int64)
    if bool((flat < 0).any()):
        raise ValueError("write_stats: a write count is negative; the counter is corrupt")
    hist = torch.bincount(flat)
    cum = torch.cumsum(hist, 0)
    n = flat.numel()
    ranks = torch.tensor([max(1, math.ceil(float(q) / 100.0 * n)) for q in percentiles], device=cum.device)
    values = torch.searchsorted(cum, ranks).tolist()
    total = int(flat.sum())
    return WriteStats(
        cells=n,
        total=total,
        max=int(hist.numel() - 1),
        mean=total / n,
        percentiles={float(q): int(v) for q, v in zip(percentiles, values, strict=True)},
    )


def sample_endurance(
    nonideal: NonIdealities,
    shape: Sequence[int],
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Cycles to failure of every cell, ``float64`` of ``shape``: ``endurance_cycles`` or lognormal around it.

    .. math::

        N_k = N_{50}\\, e^{\\sigma_{end}\\,\\varepsilon_k}, \\qquad \\varepsilon_k \\sim \\mathcal N(0, 1).

    Raises:
        ValueError: If the device has unlimited endurance (``endurance_cycles is None``).
    """
    if nonideal.endurance_cycles is None:
        raise ValueError("sample_endurance: the device has unlimited endurance (endurance_cycles=None)")
    n50 = torch.full(tuple(shape), nonideal.endurance_cycles, dtype=torch.float64, device=device)
    if nonideal.endurance_sigma == 0.0:
        return n50
    eps = torch.randn(tuple(shape), generator=generator, dtype=torch.float64, device=device)
    return n50 * torch.exp(nonideal.endurance_sigma * eps)


@dataclass(frozen=True)
class EnduranceProjection:
    """When the first cell of a weight tensor reaches its endurance limit, at the measured write rate.

    Attributes:
        epochs_elapsed: Epochs over which the writes were counted (may be fractional).
        max_writes: The most writes any cell took.
        max_writes_per_epoch: ``max_writes / epochs_elapsed``.
        epochs_to_first_failure: :math:`E_{first}`, epochs from the start of training until the first cell reaches
            its limit; ``None`` if no cell was written (never, at this rate).
        remaining_epochs: ``epochs_to_first_failure - epochs_elapsed`` (negative once a cell is past its limit);
            ``None`` with it.
        worn_out_cells: Cells that have already taken at least their limit of writes.
        endurance_cycles: The median limit :math:`N_{50}` (or the single limit) used.
    """

    epochs_elapsed: float
    max_writes: int
    max_writes_per_epoch: float
    epochs_to_first_failure: float | None
    remaining_epochs: float | None
    worn_out_cells: int
    endurance_cycles: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of the fields."""
        return asdict(self)


def project_endurance(writes: Tensor, epochs_elapsed: float, endurance: float | Tensor) -> EnduranceProjection:
    """Project :math:`E_{first}` (module docstring) from a writes-per-cell counter.

    Args:
        writes: Writes per cell, any shape.
        epochs_elapsed: Epochs the counter covers (> 0; fractional for part of an epoch).
        endurance: Cycles to failure, one number for every cell or a tensor shaped like ``writes``
            (e.g. from :func:`sample_endurance`).

    Raises:
        ValueError: If ``epochs_elapsed`` is not positive or ``endurance`` is not positive or has the wrong shape.
    """
    epochs = float(epochs_elapsed)
    if not math.isfinite(epochs) or epochs <= 0:
        raise ValueError(f"project_endurance: epochs_elapsed={epochs_elapsed!r} must be a positive number of epochs")
    w = writes.detach().to(torch.float64)
    limit = torch.as_tensor(endurance, dtype=torch.float64, device=w.device)
    if limit.dim() and limit.shape != w.shape:
        raise ValueError(
            f"project_endurance: endurance has shape {tuple(limit.shape)}, expected one number or {tuple(w.shape)}"
        )
    if not bool(torch.isfinite(limit).all()) or bool((limit <= 0).any()):
        raise ValueError("project_endurance: endurance must be positive, finite cycles to failure")
    max_writes = int(w.max()) if w.numel() else 0
    worn = int((w >= limit).sum())
    if max_writes == 0:
        first = None
    else:
        written = w > 0
        per_cell = torch.where(written, limit * epochs / w.clamp_min(1.0), torch.full_like(w, math.inf))
        first = float(per_cell.min())
    median = float(limit.median()) if limit.dim() else float(limit)
    return EnduranceProjection(
        epochs_elapsed=epochs,
        max_writes=max_writes,
        max_writes_per_epoch=max_writes / epochs,
        epochs_to_first_failure=first,
        remaining_epochs=None if first is None else first - epochs,
        worn_out_cells=worn,
        endurance_cycles=median,
    )


def endurance_report(
    writes: Mapping[str, Tensor],
    epochs_elapsed: float,
    endurance: float | Mapping[str, Tensor],
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
) -> dict[str, Any]:
    """Write statistics and endurance projection per layer, and the first failure over all layers.

    Args:
        writes: Writes-per-cell counters by layer name.
        epochs_elapsed: Epochs the counters cover.
        endurance: One limit for every cell, or per-cell limits by layer name.
        percentiles: Percentiles for :func:`write_stats`.

    Returns:
        ``{"layers": {name: {"writes": WriteStats dict, "endurance": EnduranceProjection dict}},
        "epochs_to_first_failure": float | None, "first_layer": str | None}`` (JSON-safe).
    """
    layers: dict[str, Any] = {}
    first: tuple[float, str] | None = None
    for name, w in writes.items():
        limit = endurance[name] if isinstance(endurance, Mapping) else endurance
        proj = project_endurance(w, epochs_elapsed, limit)
        layers[name] = {"writes": write_stats(w, percentiles).to_dict(), "endurance": proj.to_dict()}
        if proj.epochs_to_first_failure is not None and (first is None or proj.epochs_to_first_failure < first[0]):
            first = (proj.epochs_to_first_failure, name)
    return {
        "layers": layers,
        "epochs_to_first_failure": None if first is None else first[0],
        "first_layer": None if first is None else first[1],
    }
