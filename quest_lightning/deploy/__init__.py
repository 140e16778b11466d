"""From trained model to device: the integer deployment bundle with its programming map
(:mod:`~quest_lightning.deploy.bundle`), the reference integer runner (:mod:`~quest_lightning.deploy.runner`), NIR
export (:mod:`~quest_lightning.deploy.nir`), NeuroBench-named metrics (:mod:`~quest_lightning.deploy.neurobench`)
and SpikingJelly's energy profilers on quest-lightning networks (:mod:`~quest_lightning.deploy.spikingjelly`).

What a bundle can represent is decided by :func:`~quest_lightning.deploy.graph.plan`; the command line is
:func:`~quest_lightning.deploy.command.export_command`.
"""

from quest_lightning.deploy.bundle import BUNDLE_FORMAT, SCHEMA_VERSION, Bundle, export, load_bundle
from quest_lightning.deploy.command import add_export_arguments, export_command
from quest_lightning.deploy.compile import ChannelPrograms, compile_neuron
from quest_lightning.deploy.graph import NotDeployableError, PlannedStage, Stage, model_spikes, plan, trace
from quest_lightning.deploy.neurobench import (
    Footprint,
    NeuroBenchMetrics,
    SynapticOperations,
    activation_sparsity,
    connection_sparsity,
    footprint,
    layer_synaptic_operations,
    neurobench_metrics,
    neurobench_view,
    synaptic_operations,
)
from quest_lightning.deploy.nir import NIRAgreement, import_with_snntorch, nir_spike_agreement, to_nir
from quest_lightning.deploy.programming import codes_from_states, programming_map, resolve_pattern
from quest_lightning.deploy.runner import IntegerRunner, RunnerOutput
from quest_lightning.deploy.spikingjelly import (
    QuestNode,
    SpikeSimPeriphery,
    spikesim_periphery,
    spikingjelly_energy,
    to_spikingjelly,
)

__all__ = [
    "BUNDLE_FORMAT",
    "SCHEMA_VERSION",
    "Bundle",
    "ChannelPrograms",
    "Footprint",
    "IntegerRunner",
    "NIRAgreement",
    "NeuroBenchMetrics",
    "NotDeployableError",
    "PlannedStage",
    "QuestNode",
    "RunnerOutput",
    "SpikeSimPeriphery",
    "Stage",
    "SynapticOperations",
    "activation_sparsity",
    "add_export_arguments",
    "codes_from_states",
    "compile_neuron",
    "connection_sparsity",
    "export",
    "export_command",
    "footprint",
    "import_with_snntorch",
    "layer_synaptic_operations",
    "load_bundle",
    "model_spikes",
    "neurobench_metrics",
    "neurobench_view",
    "nir_spike_agreement",
    "plan",
    "programming_map",
    "resolve_pattern",
    "spikesim_periphery",
    "spikingjelly_energy",
    "synaptic_operations",
    "to_nir",
    "to_spikingjelly",
    "trace",
]
