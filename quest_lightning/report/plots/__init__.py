"""Figures of a run record, drawn on matplotlib's Agg canvas, one module per family.

Every figure function takes typed records of the run summary (:mod:`quest_lightning.summary`) and returns a
:class:`matplotlib.figure.Figure`, or ``None`` when the records hold nothing to draw. No pyplot state is touched, so
building a report neither needs a display nor changes the backend of the calling program. Energies are in joules per
sample and are labelled with SI prefixes (fJ, pJ, nJ, µJ).

* :mod:`~quest_lightning.report.plots.activity`: spike rate, weight sparsity and AOR (``AORMeter``);
* :mod:`~quest_lightning.report.plots.transitions`: weight transitions and trajectories (``WeightTransitionMonitor``);
* :mod:`~quest_lightning.report.plots.energy`: write/read energy per R-S pattern and compute energy against CMOS;
* :mod:`~quest_lightning.report.plots.devices`: devices side by side, writes per cell, endurance, and the accuracy
  against device variation;
* :mod:`~quest_lightning.report.plots.training`: the summary's per-epoch curves, or Lightning's ``metrics.csv``;
* :mod:`~quest_lightning.report.plots.training_cost`: what a training step costs (``TrainingCostMeter``);
* :mod:`~quest_lightning.report.plots.common`: units, names, layout and PNG output.
"""

from quest_lightning.report.plots.activity import ACTIVITY_METRICS, ActivityMetric, activity_figure
from quest_lightning.report.plots.common import (
    code_label,
    counted,
    format_joules,
    joule_prefix,
    save_png,
    short_name,
    stage_order,
)
from quest_lightning.report.plots.devices import (
    device_energy_figure,
    endurance_figure,
    sweep_figure,
    writes_per_cell_figure,
)
from quest_lightning.report.plots.energy import (
    MANY_PATTERNS,
    SILENT_NOTE,
    compute_figure,
    pattern_energy_figure,
    read_epochs_figure,
    write_overview_figure,
)
from quest_lightning.report.plots.training import (
    CURVE_STAGES,
    curve_columns,
    curves_figure,
    training_columns,
    training_figure,
)
from quest_lightning.report.plots.training_cost import (
    PASS_LABELS,
    training_cost_epochs_figure,
    training_cost_layers_figure,
)
from quest_lightning.report.plots.transitions import (
    trajectory_figure,
    transition_figure,
    transition_overview_figure,
)

__all__ = [
    "ACTIVITY_METRICS",
    "CURVE_STAGES",
    "MANY_PATTERNS",
    "PASS_LABELS",
    "SILENT_NOTE",
    "ActivityMetric",
    "activity_figure",
    "code_label",
    "compute_figure",
    "counted",
    "curve_columns",
    "curves_figure",
    "device_energy_figure",
    "endurance_figure",
    "format_joules",
    "joule_prefix",
    "pattern_energy_figure",
    "read_epochs_figure",
    "save_png",
    "short_name",
    "stage_order",
    "sweep_figure",
    "trajectory_figure",
    "training_columns",
    "training_cost_epochs_figure",
    "training_cost_layers_figure",
    "training_figure",
    "transition_figure",
    "transition_overview_figure",
    "write_overview_figure",
    "writes_per_cell_figure",
]
