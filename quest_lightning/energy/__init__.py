"""Turns counts into joules: device write/read energy for every R-S pattern (one pricing path, :mod:`.price`), and
CMOS references."""

from quest_lightning.energy.cmos import (
    CMOS_PRESETS,
    CMOSEnergy,
    ComputeEnergyReport,
    EnergyComparison,
    FirstLayer,
    ann_energy,
    compare_energy,
    diet_snn_energy,
    get_cmos,
    list_cmos,
    quest_energy,
    snn_energy,
)
from quest_lightning.energy.device import LayerwiseEnergyReport, PatternEnergyReport, read_energy_j, write_energy_j
from quest_lightning.energy.price import (
    compare_compute,
    joules_per_sample,
    per_sample,
    read_energy_per_sample,
    read_energy_report,
    write_energy_per_sample,
    write_energy_report,
)

__all__ = [
    "CMOS_PRESETS",
    "CMOSEnergy",
    "ComputeEnergyReport",
    "EnergyComparison",
    "FirstLayer",
    "LayerwiseEnergyReport",
    "PatternEnergyReport",
    "ann_energy",
    "compare_compute",
    "compare_energy",
    "diet_snn_energy",
    "get_cmos",
    "list_cmos",
    "per_sample",
    "joules_per_sample",
    "quest_energy",
    "read_energy_j",
    "read_energy_per_sample",
    "read_energy_report",
    "snn_energy",
    "write_energy_j",
    "write_energy_per_sample",
    "write_energy_report",
]
