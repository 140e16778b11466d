"""Hardware-aware evaluation and noise-aware training: a trained model as a real array of device cells runs it.

* :mod:`~quest_lightning.hardware.mapping`: read conductance → weight level, through the R-S pattern (swappable).
* :mod:`~quest_lightning.hardware.array`: the array model, the per-cell draws and what each cell reads back.
* :mod:`~quest_lightning.hardware.inject`: run a model on one drawn array, or train it under fresh draws.
* :mod:`~quest_lightning.hardware.evaluate`: accuracy over repeated draws, patterns and sigmas.
* :mod:`~quest_lightning.hardware.results`, :mod:`~quest_lightning.hardware.plots`: typed results and their plot.

The device statistics live in :class:`quest_lightning.devices.NonIdealities`; endurance is
:mod:`quest_lightning.devices.endurance`.
"""

from quest_lightning.hardware.array import ArrayModel, CellDraw, draw_cells, read_levels
from quest_lightning.hardware.evaluate import SWEEPABLE, accuracy, draw_seeds, evaluate_on_array, variation_sweep
from quest_lightning.hardware.inject import ArrayInstance, ArrayPerturbation, noise_aware_training, on_array
from quest_lightning.hardware.mapping import ConductanceMapping, LinearInterpolation, NearestLevel, level_conductances
from quest_lightning.hardware.plots import plot_variation_sweep
from quest_lightning.hardware.results import SWEEP_FILE, ArrayAccuracy, VariationSweep, mean_std

__all__ = [
    "SWEEPABLE",
    "SWEEP_FILE",
    "ArrayAccuracy",
    "ArrayInstance",
    "ArrayModel",
    "ArrayPerturbation",
    "CellDraw",
    "ConductanceMapping",
    "LinearInterpolation",
    "NearestLevel",
    "VariationSweep",
    "accuracy",
    "draw_cells",
    "draw_seeds",
    "evaluate_on_array",
    "level_conductances",
    "mean_std",
    "noise_aware_training",
    "on_array",
    "plot_variation_sweep",
    "read_levels",
    "variation_sweep",
]
