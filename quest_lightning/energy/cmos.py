r"""CMOS reference energies (Horowitz, ISSCC 2014) and ANN / DIET-SNN / QUEST-style compute energy.

Per-operation costs at 45 nm (Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014,
doi:10.1109/ISSCC.2014.6757323):

=============  ====================================  ==================
preset         :math:`E_{MAC}` = mult + add          :math:`E_{AC}`
=============  ====================================  ==================
``45nm_fp32``  3.7 + 0.9 = 4.6 pJ                    0.9 pJ
``45nm_fp16``  1.1 + 0.4 = 1.5 pJ                    0.4 pJ
``45nm_int8``  0.2 + 0.03 = 0.23 pJ                  0.03 pJ
=============  ====================================  ==================

SpikingJelly 2.0's ``op_counter.SimpleEnergyCostConfig`` uses the same three presets.

**Energy per sample.** ``ops[l]`` is layer ``l``'s ANN-equivalent MAC count per sample (one time step);
``rates[l]`` is the multiplier such that ``rates[l] * ops[l]`` is the number of accumulates layer ``l`` really
executes per sample, summed over all time steps:

.. math::

    E_{ANN} = \sum_l \text{ops}_l \, E_{MAC}, \qquad
    E_{SNN} = E_1 + \sum_{l \ge 2} \text{rate}_l \, \text{ops}_l \, E_{AC},

with the first-layer convention an explicit choice:

* ``first_layer="mac"``: :math:`E_1 = \text{ops}_1 E_{MAC}` (the analog input layer costs full MACs; DIET-SNN);
* ``first_layer="reads"``: :math:`E_1 = \text{reads}_1 E_{AC}` with ``reads_1`` given by the caller (an explicit
  count, or ``rates[0] * ops[0]``), e.g. the MACs on non-zero weights.

DIET-SNN style uses ``rate_l = r_{l-1}``, the spike rate of layer ``l``'s input summed over ``T``. QUEST style uses
the effective operations, ``rate_l = N_eff,l / ops_l = AOR_l * T`` (METHOD.md §6 normalises AOR per time step).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from quest_lightning.summary import ComputeEnergy

__all__ = [
    "CMOS_PRESETS",
    "CMOSEnergy",
    "ComputeEnergyReport",
    "EnergyComparison",
    "FirstLayer",
    "ann_energy",
    "compare_energy",
    "diet_snn_energy",
    "get_cmos",
    "list_cmos",
    "quest_energy",
    "snn_energy",
]

FirstLayer = Literal["mac", "reads"]
_HOROWITZ = "Horowitz, 'Computing's energy problem', ISSCC 2014 (45 nm, 0.9 V), doi:10.1109/ISSCC.2014.6757323"


@dataclass(frozen=True)
class CMOSEnergy:
    """Energy of one arithmetic operation on a CMOS reference processor.

    Attributes:
        name: Preset name, e.g. ``"45nm_fp32"``.
        e_mac_j: Energy of one multiply-accumulate, in joules.
        e_ac_j: Energy of one accumulate (addition), in joules.
        source: Where the numbers come from.
    """

    name: str
    e_mac_j: float
    e_ac_j: float
    source: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"CMOSEnergy.name={self.name!r} is invalid: expected a non-empty string")
        for attr in ("e_mac_j", "e_ac_j"):
            v = getattr(self, attr)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"CMOSEnergy.{attr}={v!r} is invalid: expected a positive, finite energy in joules")


CMOS_PRESETS: dict[str, CMOSEnergy] = {
    "45nm_fp32": CMOSEnergy("45nm_fp32", 4.6e-12, 0.9e-12, f"{_HOROWITZ}: FP32 mult 3.7 pJ + add 0.9 pJ"),
    "45nm_fp16": CMOSEnergy("45nm_fp16", 1.5e-12, 0.4e-12, f"{_HOROWITZ}: FP16 mult 1.1 pJ + add 0.4 pJ"),
    "45nm_int8": CMOSEnergy("45nm_int8", 0.23e-12, 0.03e-12, f"{_HOROWITZ}: INT8 mult 0.2 pJ + add 0.03 pJ"),
}


def list_cmos() -> list[str]:
    """Names of the CMOS presets."""
    return sorted(CMOS_PRESETS)


def get_cmos(name: str | CMOSEnergy) -> CMOSEnergy:
    """A CMOS preset by name (a :class:`CMOSEnergy` is returned as is).

    Raises:
        ValueError: If the name is unknown; the message lists the presets.
    """
    if isinstance(name, CMOSEnergy):
        return name
    try:
        return CMOS_PRESETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown CMOS preset {name!r}; available: {', '.join(list_cmos())}") from None


@dataclass(frozen=True)
class ComputeEnergyReport:
    """Compute energy per sample of one network under one convention.

    Attributes:
        label: What was computed, e.g. ``"ann"``, ``"diet-snn"``, ``"quest"``.
        cmos: The per-operation costs used.
        first_layer: ``"mac"`` or ``"reads"``: how layer 1 was charged (always ``"mac"`` for the ANN).
        ops: ANN MACs per sample, per layer.
        charged_ops: Operations actually charged per sample, per layer (MACs for a MAC-charged layer 1,
            accumulates otherwise).
        per_layer_j: Joules per sample, per layer.
        total_j: Joules per sample, all layers.
        ann_j: Joules per sample of the ANN with the same ``ops`` and ``cmos``.
        ann_over_this: ``ann_j / total_j``, the energy-efficiency gain over the ANN (1 for the ANN itself).
    """

    label: str
    cmos: CMOSEnergy
    first_layer: FirstLayer
    ops: tuple[float, ...]
    charged_ops: tuple[float, ...]
    per_layer_j: tuple[float, ...]
    total_j: float
    ann_j: float
    ann_over_this: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ann_over_this", self.ann_j / self.total_j if self.total_j > 0 else math.inf)

    @property
    def convention(self) -> str:
        """One sentence stating how layer 1 was charged."""
        unit = "MACs at E_MAC" if self.first_layer == "mac" else "reads at E_AC"
        return f"layer 1 charged as {self.charged_ops[0]:g} {unit} (first_layer={self.first_layer!r})"

    def to_record(self) -> ComputeEnergy:
        """The typed run-record form (:class:`quest_lightning.summary.ComputeEnergy`)."""
        return ComputeEnergy(
            label=self.label,
            cmos=self.cmos.name,
            first_layer=self.first_layer,
            convention=self.convention,
            per_layer_j=self.per_layer_j,
            total_j=self.total_j,
            ann_j=self.ann_j,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary (the record's dict)."""
        return self.to_record().to_dict()


def _floats(name: str, values: Sequence[Any] | torch.Tensor, *, allow_none_first: bool = False) -> list[float | None]:
    seq = values.tolist() if isinstance(values, torch.Tensor) else list(values)
    out: list[float | None] = []
    for k, v in enumerate(seq):
        if v is None and allow_none_first and k == 0:
            out.append(None)
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{name}[{k}]={v!r} is invalid: expected a finite number >= 0")
        out.append(float(v))
    return out


def ann_energy(ops: Sequence[float] | torch.Tensor, cmos: str | CMOSEnergy = "45nm_fp32") -> ComputeEnergyReport:
    r"""ANN energy per sample, :math:`\sum_l \text{ops}_l E_{MAC}`.

    Args:
        ops: ANN MACs per sample of each layer.
        cmos: A preset name or :class:`CMOSEnergy`.
    """
    c = get_cmos(cmos)
    o = [float(x) for x in _floats("ops", ops)]  # type: ignore[arg-type]
    if not o:
        raise ValueError("ops is empty: give at least one layer")
    per = tuple(x * c.e_mac_j for x in o)
    total = sum(per)
    return ComputeEnergyReport("ann", c, "mac", tuple(o), tuple(o), per, total, total)


def snn_energy(
    ops: Sequence[float] | torch.Tensor,
    rates: Sequence[float | None] | torch.Tensor,
    cmos: str | CMOSEnergy = "45nm_fp32",
    *,
    first_layer: FirstLayer = "mac",
    first_layer_reads: float | None = None,
    label: str = "snn",
) -> ComputeEnergyReport:
    r"""SNN energy per sample, :math:`E_1 + \sum_{l \ge 2} \text{rate}_l \, \text{ops}_l \, E_{AC}`.

    Args:
        ops: ANN MACs per sample of each layer.
        rates: One multiplier per layer; ``rates[l] * ops[l]`` accumulates per sample (summed over time steps).
            ``rates[0]`` is used only with ``first_layer="reads"`` and no ``first_layer_reads``; otherwise it may
            be ``None``.
        cmos: A preset name or :class:`CMOSEnergy`.
        first_layer: ``"mac"`` charges layer 1 as ``ops[0]`` MACs at :math:`E_{MAC}`; ``"reads"`` charges its
            actual reads at :math:`E_{AC}`.
        first_layer_reads: With ``"reads"``: layer 1's reads per sample (overrides ``rates[0] * ops[0]``).
        label: Name of the convention in the report.

    Raises:
        ValueError: On mismatched lengths, negative values, an unknown ``first_layer``, ``first_layer_reads`` with
            ``"mac"``, or ``"reads"`` without a read count or ``rates[0]``.
    """
    c = get_cmos(cmos)
    o = [float(x) for x in _floats("ops", ops)]  # type: ignore[arg-type]
    r = _floats("rates", rates, allow_none_first=True)
    if not o:
        raise ValueError("ops is empty: give at least one layer")
    if len(r) != len(o):
        raise ValueError(f"rates has {len(r)} entries but ops has {len(o)}: give one rate per layer")
    if first_layer not in ("mac", "reads"):
        raise ValueError(f"first_layer={first_layer!r} is invalid: expected 'mac' or 'reads'")
    if first_layer == "mac":
        if first_layer_reads is not None:
            raise ValueError("first_layer_reads is only used with first_layer='reads'")
        first_ops, first_j = o[0], o[0] * c.e_mac_j
    else:
        if first_layer_reads is not None:
            reads = _floats("first_layer_reads", [first_layer_reads])[0]
        elif r[0] is not None:
            reads = r[0] * o[0]
        else:
            raise ValueError("first_layer='reads' needs first_layer_reads (reads per sample) or rates[0]")
        assert reads is not None
        first_ops, first_j = reads, reads * c.e_ac_j
    charged = [first_ops] + [rate * n for rate, n in zip(r[1:], o[1:], strict=True)]  # type: ignore[operator]
    per = (first_j,) + tuple(x * c.e_ac_j for x in charged[1:])
    ann = sum(x * c.e_mac_j for x in o)
    return ComputeEnergyReport(label, c, first_layer, tuple(o), tuple(charged), per, sum(per), ann)


def diet_snn_energy(
    ops: Sequence[float] | torch.Tensor,
    spike_rates: Sequence[float | None] | torch.Tensor,
    cmos: str | CMOSEnergy = "45nm_fp32",
    *,
    first_layer: FirstLayer = "mac",
    first_layer_reads: float | None = None,
) -> ComputeEnergyReport:
    """DIET-SNN-style energy: :func:`snn_energy` with ``rates[l]`` = spike rate of layer ``l``'s input (sum over T)."""
    return snn_energy(
        ops, spike_rates, cmos, first_layer=first_layer, first_layer_reads=first_layer_reads, label="diet-snn"
    )


def quest_energy(
    ops: Sequence[float] | torch.Tensor,
    aor: Sequence[float | None] | torch.Tensor,
    cmos: str | CMOSEnergy = "45nm_fp32",
    *,
    timesteps: int,
    first_layer: FirstLayer = "mac",
    first_layer_reads: float | None = None,
) -> ComputeEnergyReport:
    r"""QUEST-style energy: :func:`snn_energy` with :math:`\text{rate}_l = \text{AOR}_l \cdot T`.

    Args:
        ops: ANN MACs per sample of each layer.
        aor: Activation Operation Rate of each layer, :math:`N_{eff} / (\text{ops} \cdot T)` (METHOD.md §6).
            ``aor[0]`` may be ``None`` unless layer 1 is charged by reads without ``first_layer_reads``.
        cmos: A preset name or :class:`CMOSEnergy`.
        timesteps: ``T``. Pass ``1`` if your AOR is already summed over time steps.
        first_layer: See :func:`snn_energy`.
        first_layer_reads: See :func:`snn_energy`.
    """
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps <= 0:
        raise ValueError(f"timesteps={timesteps!r} is invalid: expected a positive integer")
    a = _floats("aor", aor, allow_none_first=True)
    rates = [None if x is None else x * timesteps for x in a]
    return snn_energy(ops, rates, cmos, first_layer=first_layer, first_layer_reads=first_layer_reads, label="quest")


@dataclass(frozen=True)
class EnergyComparison:
    """Several compute-energy reports and the ratio of every pair.

    Attributes:
        reports: Label -> report.
        ratios: ``"a/b"`` -> ``reports[a].total_j / reports[b].total_j`` for every ordered pair ``a != b``
            (``"ann/quest" = 93`` means QUEST uses 93x less energy than the ANN).
    """

    reports: Mapping[str, ComputeEnergyReport]
    ratios: Mapping[str, float]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary."""
        return {"reports": {k: r.to_dict() for k, r in self.reports.items()}, "ratios": dict(self.ratios)}


def compare_energy(*reports: ComputeEnergyReport) -> EnergyComparison:
    """Collect reports (labels must be unique) and compute every pairwise energy ratio.

    Raises:
        ValueError: If two reports share a label or use different ``ops``.
    """
    by_label: dict[str, ComputeEnergyReport] = {}
    for rep in reports:
        if rep.label in by_label:
            raise ValueError(f"two reports are labelled {rep.label!r}; labels must be unique")
        by_label[rep.label] = rep
    ops = {rep.ops for rep in reports}
    if len(ops) > 1:
        raise ValueError("the reports describe different networks (their ops differ)")
    ratios = {
        f"{a}/{b}": (ra.total_j / rb.total_j if rb.total_j > 0 else math.inf)
        for a, ra in by_label.items()
        for b, rb in by_label.items()
        if a != b
    }
    return EnergyComparison(reports=by_label, ratios=ratios)
