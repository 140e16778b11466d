"""NeuroBench's metrics of one measured epoch, in the run record (definitions:
:mod:`quest_lightning.metrics.neurobench`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quest_lightning.summary.record import Record

__all__ = ["CITATION", "NEUROBENCH_STAGES", "NeuroBenchRecord"]

CITATION = (
    "Yik et al., 'The NeuroBench framework for benchmarking neuromorphic computing algorithms and systems', "
    "Nature Communications 16, 1545 (2025); definitions as in the neurobench 2.3 metric code"
)
NEUROBENCH_STAGES = ("train", "val")


@dataclass(frozen=True)
class NeuroBenchRecord(Record):
    """NeuroBench's metrics of the network over one measured epoch of ``stage``, from the run's exact counts.

    The synaptic operations and the activation sparsity are those of the epoch's counted batches, per sample
    (``samples`` of them); the connection sparsity and the footprints are those of the weights when the record was
    written (at the end of a fit, the weights its last validation epoch ran with). Every figure is exact from the run,
    ``Effective_MACs`` of a direct-coded first layer included; a figure the counts cannot give exactly (a layer that
    saw spikes in some updates of the epoch and analog input in others) is ``None``, and ``notes`` says why (never a
    guess).

    Attributes:
        stage: ``"val"`` (the weights fixed, as deployed) or ``"train"``.
        epoch: The epoch the counts belong to.
        samples: The samples the counts cover (NeuroBench's per-sample divisor).
        effective_acs: ``SynapticOperations`` ``Effective_ACs`` per sample: non-zero weights meeting a spike.
        effective_macs: ``Effective_MACs`` per sample: non-zero weights meeting a non-zero analog input, at every
            time step; exact from the run's count of the non-zero inputs of every layer counted as analog input
            (``LayerActivity.nonzero_level_ops``).
        dense: ``Dense`` per sample: every product with all-ones inputs and weights.
        activation_sparsity: ``ActivationSparsity``: zero neuron outputs over all outputs.
        connection_sparsity: ``ConnectionSparsity``: zero weights (integer codes) over all synaptic weights.
        footprint_bytes: NeuroBench's ``Footprint``: every parameter and buffer at its storage size (float32).
        deployed_bytes: The deployed footprint: codes packed at ``b`` bits, :math:`\\alpha`, biases and
            full-precision weights in float32.
        notes: Why each ``None`` figure could not be computed, and what a reader must know beside the figures.
        definition: The source of the definitions.
    """

    stage: str
    epoch: int
    samples: int
    effective_acs: float | None = None
    effective_macs: float | None = None
    dense: float | None = None
    activation_sparsity: float | None = None
    connection_sparsity: float | None = None
    footprint_bytes: int | None = None
    deployed_bytes: int | None = None
    notes: tuple[str, ...] = ()
    definition: str = CITATION

    def __post_init__(self) -> None:
        super().__post_init__()
        who = f"NeuroBenchRecord({self.stage} epoch {self.epoch})"
        if self.stage not in NEUROBENCH_STAGES:
            raise ValueError(f"{who}: stage must be one of {NEUROBENCH_STAGES}")
        if self.samples < 1:
            raise ValueError(f"{who}: samples={self.samples}; an epoch that counted no sample has no metrics")
        for name in ("effective_acs", "effective_macs", "dense", "footprint_bytes", "deployed_bytes"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{who}: {name}={value} is negative; expected a count >= 0")
        for name in ("activation_sparsity", "connection_sparsity"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{who}: {name}={value} is not a fraction in [0, 1]")
        if None in self._values() and not self.notes:
            raise ValueError(f"{who}: a figure is None without a note saying why it could not be computed")

    def _values(self) -> tuple[float | int | None, ...]:
        return (
            self.effective_acs,
            self.effective_macs,
            self.dense,
            self.activation_sparsity,
            self.connection_sparsity,
            self.footprint_bytes,
            self.deployed_bytes,
        )

    def metrics(self) -> dict[str, Any]:
        """The figures under NeuroBench's names (``SynapticOperations``, ``ActivationSparsity``,
        ``ConnectionSparsity``, ``Footprint``), plus the deployed footprint."""
        return {
            "SynapticOperations": {
                "Effective_ACs": self.effective_acs,
                "Effective_MACs": self.effective_macs,
                "Dense": self.dense,
            },
            "ActivationSparsity": self.activation_sparsity,
            "ConnectionSparsity": self.connection_sparsity,
            "Footprint": self.footprint_bytes,
            "Footprint_deployed": self.deployed_bytes,
        }

    def _derived(self) -> dict[str, Any]:
        return {"metrics": self.metrics()}
