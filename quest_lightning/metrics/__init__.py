"""torchmetrics meters for spiking layers (spike rate, weight sparsity, exact AOR, transitions) and their math."""

from quest_lightning.metrics.functional import (
    ann_ops,
    level_operation_counts,
    transition_counts,
    transition_summary,
    weight_input_sums,
)
from quest_lightning.metrics.meters import ActivationOperationRate, SpikeRate, TransitionCounter, WeightSparsity

__all__ = [
    "ActivationOperationRate",
    "SpikeRate",
    "TransitionCounter",
    "WeightSparsity",
    "ann_ops",
    "level_operation_counts",
    "transition_counts",
    "transition_summary",
    "weight_input_sums",
]
