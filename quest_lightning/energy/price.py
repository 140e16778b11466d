r"""Counts → joules per sample: the one pricing path of every writer and reader of energy figures.

**The per-sample divisor** is the number of samples actually seen by the counts (:func:`per_sample`): the real
sizes of the counted batches, a partial last batch included, summed over DDP ranks. 30 samples at batch 8 are
batches of 8, 8, 8 and 6: the divisor is 30, not 4 steps × 8. Write energy is divided by the samples of the
observed optimizer steps (every batch of a gradient-accumulation window, a partial window included), read energy by
the samples of the counted batches.

.. math::

    E_{upd}^p = \frac{1}{M} \sum_{i \ne j} C[i, j] \, E_w^p[i, j], \qquad
    E_{act}^p = \frac{1}{M} \sum_v N(v) \, E_r^p[v] \qquad (M = \text{samples seen})

(QUEST, arXiv 2504.00679, Algorithms 1 and 2; METHOD.md §7). :func:`joules_per_sample` is the function; the four
``write_*``/``read_*`` names are its fixed-kind spellings. :func:`compare_compute` prices an epoch's activity on the
CMOS reference.

>>> import torch
>>> from quest_lightning.devices import get_device, pattern_energies
>>> pe = pattern_energies(get_device("ideal7"), bits=2)
>>> c = torch.tensor([[9.0, 1, 0], [0, 9, 1], [0, 0, 9]])  # 2 writes of 100 fJ over steps of 8, 8, 8 and 6 samples
>>> rep = write_energy_report({"fc": c}, pe, samples=8 + 8 + 8 + 6, steps=4)
>>> round(rep.total.best_j * 1e15, 6), rep.normalisation
(6.666667, {'steps': 4, 'samples': 30})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch

from quest_lightning.devices.patterns import PatternEnergies
from quest_lightning.energy.cmos import CMOSEnergy, ann_energy, diet_snn_energy, get_cmos, quest_energy
from quest_lightning.energy.device import (
    LayerwiseEnergyReport,
    counts_tensor,
    layerwise_report,
    read_energy_j,
    write_energy_j,
)
from quest_lightning.summary import ActivityRecord, ComputeComparison

__all__ = [
    "compare_compute",
    "per_sample",
    "joules_per_sample",
    "read_energy_per_sample",
    "read_energy_report",
    "write_energy_per_sample",
    "write_energy_report",
]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}={value!r} is invalid: expected a positive integer")
    return value


def per_sample(joules: torch.Tensor, samples: int) -> torch.Tensor:
    """``joules`` divided by ``samples``, the samples actually seen: the one per-sample divisor.

    Raises:
        ValueError: ``samples`` is not a positive integer (nothing was seen: there is no per-sample figure).
    """
    return joules / _positive_int("samples", samples)


def write_energy_per_sample(transitions: torch.Tensor, write_j: torch.Tensor, samples: int) -> torch.Tensor:
    """Write energy per sample of one layer (``[L, L]``) or ``K`` layers (``[K, L, L]``) for every pattern:
    :func:`~quest_lightning.energy.device.write_energy_j` over :func:`per_sample`. Returns ``[P]`` (``[K, P]``)."""
    return per_sample(write_energy_j(transitions, write_j), samples)


def read_energy_per_sample(
    level_counts: torch.Tensor, read_j: torch.Tensor, samples: int, *, count_zero_level_reads: bool = False
) -> torch.Tensor:
    """Read energy per sample of one layer (``[L]``) or ``K`` layers (``[K, L]``) for every pattern:
    :func:`~quest_lightning.energy.device.read_energy_j` over :func:`per_sample`. Returns ``[P]`` (``[K, P]``)."""
    return per_sample(read_energy_j(level_counts, read_j, count_zero_level_reads=count_zero_level_reads), samples)


def joules_per_sample(
    kind: Literal["write", "read"],
    counts: Mapping[str, Any],
    energies: PatternEnergies,
    *,
    samples: int,
    steps: int | None = None,
    count_zero_level_reads: bool = False,
) -> LayerwiseEnergyReport:
    """Energy per sample of every layer and of the network, for every R-S pattern, from counts.

    Args:
        kind: ``"write"`` (``counts`` are ``[L, L]`` transition matrices) or ``"read"`` (``[L]`` operations per
            level, :math:`N(v)`).
        counts: ``{layer_name: counts}``, summed over what the ``samples`` samples did.
        energies: The pattern energies of the device and bit width (:func:`pattern_energies`).
        samples: The samples the counts cover, as seen (:func:`per_sample`).
        steps: For writes, the optimizer steps the counts cover (kept for the record, not a divisor).
        count_zero_level_reads: For reads, charge operations on zero weights too.

    Returns:
        Per-layer reports, the total, and the best pattern of each.

    Raises:
        ValueError: An unknown ``kind``, an empty mapping, the reserved layer name ``"total"``, counts of the wrong
            shape or negative, or ``samples`` not a positive integer.
    """
    if kind not in ("write", "read"):
        raise ValueError(f"kind={kind!r} is unknown: use 'write' or 'read'")
    if not isinstance(counts, Mapping) or not counts:
        raise ValueError(f"counts must be a non-empty {{layer_name: counts}} mapping, got {counts!r}")
    _positive_int("samples", samples)
    if steps is not None:
        _positive_int("steps", steps)
    table = energies.write_j if kind == "write" else energies.read_j
    shape = tuple(table.shape[1:])
    stacked = torch.stack([counts_tensor(f"counts[{n!r}]", c, shape, table, batched=False) for n, c in counts.items()])
    if kind == "write":
        joules = write_energy_j(stacked, table)
    else:
        joules = read_energy_j(stacked, table, count_zero_level_reads=count_zero_level_reads)
    return layerwise_report(
        kind,
        list(counts),
        per_sample(joules, samples),
        energies.patterns,
        samples=samples,
        steps=steps if kind == "write" else None,
        count_zero_level_reads=count_zero_level_reads if kind == "read" else None,
    )


def write_energy_report(
    transition_counts: Mapping[str, Any], energies: PatternEnergies, *, samples: int, steps: int | None = None
) -> LayerwiseEnergyReport:
    """:func:`joules_per_sample` of writes: ``{layer: C [L, L]}`` over the ``samples`` of the ``steps`` observed."""
    return joules_per_sample("write", transition_counts, energies, samples=samples, steps=steps)


def read_energy_report(
    level_counts: Mapping[str, Any], energies: PatternEnergies, *, samples: int, count_zero_level_reads: bool = False
) -> LayerwiseEnergyReport:
    """:func:`joules_per_sample` of reads: ``{layer: N [L]}`` over the ``samples`` seen."""
    zero = count_zero_level_reads
    return joules_per_sample("read", level_counts, energies, samples=samples, count_zero_level_reads=zero)


def compare_compute(
    record: ActivityRecord,
    cmos: str | CMOSEnergy = "45nm_fp32",
    *,
    first_layer: Literal["mac", "reads"] = "mac",
    first_layer_every_step: bool = False,
) -> ComputeComparison:
    """CMOS ANN, DIET-SNN-style and QUEST-style energy per sample of one epoch's activity.

    The DIET-SNN style charges each layer after the first its synaptic rate × T × ops accumulates, QUEST its AOR ×
    T × ops (see :mod:`quest_lightning.energy.cmos`), with each layer's own :math:`T` (its recorded rows per sample:
    a layer called once per sample outside a single-step loop has :math:`T = 1`). Layer 1 is the first layer the
    network calls (the record's order). With ``first_layer="reads"`` the first layer is charged its reads of
    non-zero weights, ``AOR_1 × ops_1``: once per sample for an analog-input layer (its input is the same at every
    step and is computed once), at every step for a spike-input one or with ``first_layer_every_step``. A record
    whose network never fired is marked ``silent_network``: its ratios are no saving.

    Raises:
        ValueError: ``record`` is empty (nothing to price), or an unknown CMOS preset or ``first_layer``.
    """
    if record.empty is not None or not record.layers:
        raise ValueError(f"the {record.stage} record of epoch {record.epoch} is empty ({record.empty}): no energy")
    layers, t = record.layers, record.timesteps or 1
    c = get_cmos(cmos)
    ops = [r.ops for r in layers]
    reads = None
    if first_layer == "reads":
        first = layers[0]
        reads = first.aor * first.ops * (first.timesteps if first_layer_every_step or not first.input_layer else 1)
    kwargs: dict[str, Any] = dict(first_layer=first_layer, first_layer_reads=reads)
    diet = diet_snn_energy(ops, [None] + [r.synaptic_rate * r.timesteps for r in layers[1:]], c, **kwargs)
    quest = quest_energy(ops, [None] + [r.aor * r.timesteps for r in layers[1:]], c, timesteps=1, **kwargs)
    ann = ann_energy(ops, c)
    return ComputeComparison(
        stage=record.stage,
        epoch=record.epoch,
        timesteps=t,
        first_layer=first_layer,
        convention=quest.convention,
        layers=tuple(r.layer for r in layers),
        ann=ann.to_record(),
        diet_snn=diet.to_record(),
        quest=quest.to_record(),
        silent_network=record.silent,
    )
