"""Multi-state memory devices: specs, presets, R-S mapping patterns.

The three pieces stay separate: a :class:`DeviceSpec` is the physics (states, RSTD, read energy, non-idealities),
:mod:`~quest_lightning.devices.patterns` maps weight levels onto states, and
:mod:`quest_lightning.energy` turns counts into joules.
"""

from quest_lightning.devices.capability import (
    DeviceCapability,
    check_bits_fit,
    check_leak_allowed,
    check_model,
)
from quest_lightning.devices.endurance import (
    EnduranceProjection,
    WriteStats,
    count_writes,
    endurance_report,
    project_endurance,
    sample_endurance,
    write_stats,
)
from quest_lightning.devices.io import (
    device_from_dict,
    device_to_dict,
    load_device_yaml,
    resolve_device,
    save_device_yaml,
)
from quest_lightning.devices.measured import (
    estimate_variation,
    example_measurements,
    load_measured_device,
    measured_device_from_dict,
    save_measurements,
)
from quest_lightning.devices.nonideal import NonIdealities
from quest_lightning.devices.patterns import (
    PatternEnergies,
    PatternSet,
    RSPattern,
    enumerate_patterns,
    format_mapping,
    pattern_energies,
)
from quest_lightning.devices.presets import PRESETS, ideal_device
from quest_lightning.devices.registry import get_device, list_devices, register_device, unregister_device
from quest_lightning.devices.spec import DeviceSpec, Transition
from quest_lightning.devices.transitions import ShortestPaths, UnreachableTransitionError, shortest_paths

__all__ = [
    "PRESETS",
    "DeviceCapability",
    "DeviceSpec",
    "EnduranceProjection",
    "NonIdealities",
    "PatternEnergies",
    "PatternSet",
    "RSPattern",
    "ShortestPaths",
    "Transition",
    "UnreachableTransitionError",
    "WriteStats",
    "check_bits_fit",
    "check_leak_allowed",
    "check_model",
    "count_writes",
    "device_from_dict",
    "device_to_dict",
    "endurance_report",
    "enumerate_patterns",
    "estimate_variation",
    "example_measurements",
    "format_mapping",
    "get_device",
    "ideal_device",
    "list_devices",
    "load_device_yaml",
    "load_measured_device",
    "measured_device_from_dict",
    "pattern_energies",
    "project_endurance",
    "register_device",
    "resolve_device",
    "sample_endurance",
    "save_measurements",
    "save_device_yaml",
    "shortest_paths",
    "unregister_device",
    "write_stats",
]
