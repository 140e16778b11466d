"""Training records: the energy-aware knobs a run trained with, and what its training steps cost (the forward,
backward and weight-gradient passes counted by ``TrainingCostMeter``).

Both are filled from the run only when it has them: :class:`EnergyAwareSettings` when a knob was on
(``QuestModule(write_aware=..., read_aware=...)`` or ``EnergyAwareTraining``), :class:`TrainingCost` when a
``TrainingCostMeter`` measured at least one epoch. A run without them has ``None``, never a record of zeros.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from quest_lightning.summary.record import UNIT, Record

__all__ = [
    "ENERGY_AWARE_FLAG",
    "EnergyAwareSettings",
    "LayerTrainingEnergy",
    "LayerTrainingOps",
    "TrainingCost",
    "TrainingStepCost",
    "TrainingStepEnergy",
]

ENERGY_AWARE_FLAG = "energy_aware"
"""The code of the flag a run trained with an energy-aware knob on carries."""

PASSES = ("forward", "backward", "weight_grad")
"""The three passes of a training step, in the order of the records' fields."""


@dataclass(frozen=True)
class EnergyAwareSettings(Record):
    """The energy-aware knobs a run trained with (:mod:`quest_lightning.energy.aware`), at least one of them on.

    Attributes:
        source: who set the knobs: the LightningModule's class (``QuestModule``, ``QuestVGG``: its ``write_aware``,
            ``read_aware`` and ``energy_weighted``) or ``EnergyAwareTraining``.
        write_margin: :math:`h`, the write-aware hysteresis margin in grid steps, in ``[0, 0.5)`` (0: off);
            weighted, the margin of the most expensive neighbouring move.
        read_weight: :math:`\\lambda_r`, the weight of the read penalty in the training loss (0: off).
        write_weighted: the margin is scaled per transition by the pattern's write energy.
        read_weighted: the penalty weighs each level by the pattern's read energy (else it is the AOR).
        count_zero_level_reads: the penalty charges zero weights as reads too.
        pattern_selection: the pattern asked for: ``"best"``, an index or a mapping.
        device: the device whose energies weigh the knobs (``None``: no weighted knob is on, so none does).
        pattern_index: the R-S pattern they weigh by (``None`` with ``device``).
        pattern: its mapping, e.g. ``"-1→R0, 0→R2, +1→R1"``.
        write_margins: the margin table :math:`h_{ij}` in grid steps (``[L][L]``) of a weighted write knob.
        read_costs: :math:`c[v]`, each level's relative read cost in the penalty (``[L]``), with the read knob on.

    Raises:
        ValueError: both knobs off (such a run has no settings: leave the record out), a margin outside
            ``[0, 0.5)`` or a negative weight.
    """

    source: str
    write_margin: float
    read_weight: float
    write_weighted: bool = True
    read_weighted: bool = True
    count_zero_level_reads: bool = False
    pattern_selection: str | int | tuple[int, ...] = "best"
    device: str | None = None
    pattern_index: int | None = None
    pattern: str | None = None
    write_margins: tuple[tuple[float, ...], ...] | None = None
    read_costs: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.write_margin < 0.5:
            raise ValueError(f"write_margin={self.write_margin!r} must lie in [0, 0.5) grid steps.")
        if self.read_weight < 0:
            raise ValueError(f"read_weight={self.read_weight!r} must be >= 0.")
        if not self.on:
            raise ValueError(
                "EnergyAwareSettings with write_margin=0 and read_weight=0: a run with both knobs off trained plainly "
                "and has no energy-aware settings; leave the record out (None)."
            )

    @property
    def write_on(self) -> bool:
        """Whether the write knob (hysteresis) was on."""
        return self.write_margin > 0

    @property
    def read_on(self) -> bool:
        """Whether the read knob (penalty) was on."""
        return self.read_weight > 0

    @property
    def on(self) -> bool:
        """Whether any knob was on (always, for a valid record)."""
        return self.write_on or self.read_on

    @property
    def weighted(self) -> bool:
        """Whether a knob that was on is weighted by a device's energies."""
        return (self.write_on and self.write_weighted) or (self.read_on and self.read_weighted)

    def describe(self) -> str:
        """The knobs as text: ``"write margin h = 0.3 grid steps, read penalty weight λ = 0.5, weighted by skmtj7's
        R-S pattern 5 (-1→R0, 0→R2, +1→R1)"``."""
        parts = []
        if self.write_on:
            parts.append(f"write margin h = {self.write_margin:g} grid steps")
            if not self.write_weighted:
                parts[-1] += " (the same for every move)"
        if self.read_on:
            parts.append(f"read penalty weight λ = {self.read_weight:g}")
            if not self.read_weighted:
                parts[-1] += " (unweighted: the AOR)"
        if self.weighted and self.device is not None:
            parts.append(f"weighted by {self.device}'s R-S pattern {self.pattern_index} ({self.pattern})")
        return ", ".join(parts)

    def caveat(self) -> str:
        """The message of the ``energy_aware`` flag: which figures are of an energy-aware run, and its knobs."""
        lowered = " and ".join(w for w, on in (("writes", self.write_on), ("reads", self.read_on)) if on)
        return (
            f"trained energy-aware ({self.source}: {self.describe()}): the writes and reads figures (transitions, "
            f"write and read energy, AOR, endurance) are those of a network trained to make fewer device {lowered}, "
            "not of plain QUEST training; compare them with the same network trained with the knobs off."
        )

    @classmethod
    def from_record(cls, record: Mapping[str, Any], source: str) -> EnergyAwareSettings | None:
        """The settings of an ``EnergyAware.record()`` / ``EnergyAwareTraining.record()`` dict, or ``None`` when
        both knobs were off (the run trained plainly)."""
        if not (record.get("write_margin", 0) > 0 or record.get("read_weight", 0) > 0):
            return None
        margins = record.get("write_margins")
        data = {
            **record,
            "source": source,
            "write_margins": margins if isinstance(margins, (list, tuple)) else None,
        }
        return cls.from_dict(data)


@dataclass(frozen=True)
class LayerTrainingOps(Record):
    """One layer's non-zero operation counts of a training step per sample (``TrainingCostMeter``; METHOD.md §10):
    per time step (``[T]``: forward :math:`F_t`, backward :math:`B_t`, weight gradient :math:`G_t`), summed over
    the steps (``*_total``), per weight level (``[L]``, index :math:`v + Q`, summed over the steps), and the share of
    non-zero :math:`\\delta` per step, taken at ``delta_point``."""

    layer: str
    quantized: bool
    analog_input: bool
    delta_point: str
    samples: int
    macs: float
    forward: tuple[float, ...]
    backward: tuple[float, ...]
    weight_grad: tuple[float, ...]
    forward_total: float
    backward_total: float
    weight_grad_total: float
    forward_levels: tuple[float, ...] = ()
    backward_levels: tuple[float, ...] = ()
    delta_density: tuple[float, ...] = ()

    @property
    def delta_density_mean(self) -> float | None:
        """The share of non-zero :math:`\\delta`, mean over the time steps (``None`` without steps)."""
        return sum(self.delta_density) / len(self.delta_density) if self.delta_density else None

    def total(self, name: str) -> float:
        """The pass ``name`` (``"forward"``, ``"backward"``, ``"weight_grad"``) summed over the time steps."""
        if name not in PASSES:
            raise KeyError(f"unknown pass {name!r}: use one of {PASSES}")
        return getattr(self, f"{name}_total")


@dataclass(frozen=True)
class LayerTrainingEnergy(Record):
    """One layer's training-step energy per sample: the CMOS arithmetic of each pass and, for a layer held on the
    device, its device reads in the forward and the backward pass (``None``: not a device layer)."""

    forward_j: float
    backward_j: float
    weight_grad_j: float
    read_forward_j: float | None = None
    read_backward_j: float | None = None

    @property
    def compute_j(self) -> float:
        """The CMOS arithmetic of the three passes."""
        return self.forward_j + self.backward_j + self.weight_grad_j

    @property
    def device_read_j(self) -> float | None:
        """The device reads of both passes (``None``: not a device layer)."""
        if self.read_forward_j is None and self.read_backward_j is None:
            return None
        return (self.read_forward_j or 0.0) + (self.read_backward_j or 0.0)


@dataclass(frozen=True)
class TrainingStepEnergy(Record):
    """A training step's energy per sample (:func:`~quest_lightning.metrics.training.price_training_step`): CMOS
    arithmetic (``compute_j``) and device reads (``device_read_j``) of every layer, the device writes when the meter
    was given them (``None``: not in ``total_j``; ``DeviceEnergyCallback`` prices them), and the total."""

    cmos: str
    compute_j: float
    device_read_j: float
    total_j: float
    layers: dict[str, LayerTrainingEnergy] = field(default_factory=dict)
    pattern_index: int | None = None
    device_write_j: float | None = None

    def _derived(self) -> dict[str, Any]:
        return {"unit": UNIT}


@dataclass(frozen=True)
class TrainingStepCost(Record):
    """What a training step cost in one epoch, per sample (one ``TrainingCostMeter`` epoch record): the counts of
    every layer over the counted batches (one in ``every_n_steps``), how :math:`\\delta` was counted
    (``delta_rule``), the device and pattern of the reads, and the energy."""

    epoch: int
    step: int
    every_n_steps: int
    timesteps: int
    delta_rule: str
    layers: tuple[LayerTrainingOps, ...]
    energy: TrainingStepEnergy
    device: str | None = None
    pattern: str | None = None

    def total(self, name: str) -> float:
        """The pass ``name`` per sample, summed over the time steps and the layers."""
        return sum(layer.total(name) for layer in self.layers)


@dataclass(frozen=True)
class TrainingCost(Record):
    """Every epoch ``TrainingCostMeter`` measured, in order (at least one).

    Raises:
        ValueError: no epoch (a run whose meter measured nothing has no training cost: leave the record out).
    """

    epochs: tuple[TrainingStepCost, ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.epochs:
            raise ValueError("TrainingCost needs at least one measured epoch; without one, leave the record out.")

    @property
    def latest(self) -> TrainingStepCost:
        """The last measured epoch."""
        return self.epochs[-1]

    @classmethod
    def from_history(cls, history: Sequence[Mapping[str, Any]]) -> TrainingCost | None:
        """The record of ``TrainingCostMeter.history`` (its epoch records), or ``None`` when it is empty."""
        return cls.from_dict({"epochs": list(history)}) if history else None
