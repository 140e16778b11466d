"""From trained model to device: the integer deployment bundle with its programming map, the reference integer
runner, NIR export, NeuroBench-named metrics and SpikingJelly's energy profilers on quest-lightning networks."""

from quest_lightning.deploy.bundle import (
    BUNDLE_FORMAT,
    SCHEMA_VERSION,
    Bundle,
    codes_from_states,
    export,
    load_bundle,
    programming_map,
    resolve_pattern,
)
from quest_lightning.deploy.compile import ChannelPrograms, compile_neuron
from quest_lightning.deploy.graph import NotDeployableError, PlannedStage, Stage, plan, trace
from quest_lightning.deploy.runner import IntegerRunner, RunnerOutput

__all__ = [
    "BUNDLE_FORMAT",
    "SCHEMA_VERSION",
    "Bundle",
    "ChannelPrograms",
    "IntegerRunner",
    "NotDeployableError",
    "PlannedStage",
    "RunnerOutput",
    "Stage",
    "codes_from_states",
    "compile_neuron",
    "export",
    "load_bundle",
    "plan",
    "programming_map",
    "resolve_pattern",
    "trace",
]
