"""The report page's sections, one module per family; each section function takes the typed run record
(:class:`~quest_lightning.summary.RunSummary`), returns an :class:`~quest_lightning.report.html.Section` and writes
its figures through a :class:`FigureWriter`."""

from quest_lightning.report.sections.activity import activity_section
from quest_lightning.report.sections.common import MAX_STAGE_FIGURES, SECTION_TITLES, FigureWriter
from quest_lightning.report.sections.devices import devices_section, endurance_section, sweep_section
from quest_lightning.report.sections.energy import compute_energy_section, read_energy_section, write_energy_section
from quest_lightning.report.sections.neurobench import neurobench_section
from quest_lightning.report.sections.overview import key_numbers_section, run_section, training_section
from quest_lightning.report.sections.training_cost import training_cost_section
from quest_lightning.report.sections.transitions import transitions_section

__all__ = [
    "MAX_STAGE_FIGURES",
    "SECTION_TITLES",
    "FigureWriter",
    "activity_section",
    "compute_energy_section",
    "devices_section",
    "endurance_section",
    "key_numbers_section",
    "neurobench_section",
    "read_energy_section",
    "run_section",
    "sweep_section",
    "training_cost_section",
    "training_section",
    "transitions_section",
    "write_energy_section",
]
