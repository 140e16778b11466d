"""torchmetrics meters for spiking layers (spike rate, weight sparsity, exact AOR, transitions), each with a public
function and its ``_update``/``_compute`` twins, and the layer geometry they count with."""

from quest_lightning.metrics.functional import (
    AORResult,
    SpikeRateResult,
    TransitionChanges,
    TransitionFractions,
    activation_operation_rate,
    histogram,
    level_counts,
    level_operation_counts,
    spike_rate,
    transition_changes,
    transition_counts,
    transition_summary,
    weight_input_sums,
    weight_sparsity,
)
from quest_lightning.metrics.geometry import LayerGeometry, ann_ops
from quest_lightning.metrics.meters import (
    ActivationOperationRate,
    InputKindTally,
    SpikeRate,
    TransitionCounter,
    WeightSparsity,
)

__all__ = [
    "AORResult",
    "ActivationOperationRate",
    "InputKindTally",
    "LayerGeometry",
    "SpikeRate",
    "SpikeRateResult",
    "TransitionChanges",
    "TransitionCounter",
    "TransitionFractions",
    "WeightSparsity",
    "activation_operation_rate",
    "ann_ops",
    "histogram",
    "level_counts",
    "level_operation_counts",
    "spike_rate",
    "transition_changes",
    "transition_counts",
    "transition_summary",
    "weight_input_sums",
    "weight_sparsity",
]
