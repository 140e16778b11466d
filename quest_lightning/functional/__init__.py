"""Pure tensor math, no state: the MINT grid and quantizer, the neuron step and scan, the integer-only path and the
surrogate spike functions. Every module of :mod:`quest_lightning.nn` is a thin shell over these."""

from quest_lightning.functional.grid import (
    MAX_BITS,
    MIN_BITS,
    check_bits,
    level_code,
    level_codes,
    level_index,
    levels_of_qmax,
    max_bits_for_states,
    num_levels,
    qmax,
    qmax_of_levels,
)
from quest_lightning.functional.integer import IntegerNeuronProgram, integer_neuron_program, integer_neuron_scan
from quest_lightning.functional.neuron import (
    IF_HARD,
    RESETS,
    MembraneQuant,
    NeuronParams,
    Reset,
    charge,
    check_reset,
    neuron_step,
    reset_membrane,
    reset_membrane_vjp,
)
from quest_lightning.functional.quantize import (
    TRANSFORMS,
    Transform,
    alpha_grad_scale,
    check_transform,
    init_alpha,
    lsq_alpha_grad,
    mint_codes,
    mint_kernel,
    mint_kernel_vjp,
    mint_quantize,
    mint_quantize_reference,
    round_ste,
    scale_grad,
)
from quest_lightning.functional.scan import FusedNeuronScan, fused_neuron_scan, neuron_scan
from quest_lightning.functional.surrogate import DEFAULT_SURROGATE, SpikeFn, fires_at_threshold, get_surrogate

__all__ = [
    # grid
    "MIN_BITS",
    "MAX_BITS",
    "check_bits",
    "qmax",
    "num_levels",
    "levels_of_qmax",
    "qmax_of_levels",
    "level_index",
    "level_code",
    "level_codes",
    "max_bits_for_states",
    # quantize
    "Transform",
    "TRANSFORMS",
    "check_transform",
    "round_ste",
    "scale_grad",
    "init_alpha",
    "alpha_grad_scale",
    "mint_quantize",
    "mint_quantize_reference",
    "mint_codes",
    "mint_kernel",
    "mint_kernel_vjp",
    "lsq_alpha_grad",
    # neuron
    "NeuronParams",
    "IF_HARD",
    "Reset",
    "RESETS",
    "check_reset",
    "MembraneQuant",
    "charge",
    "reset_membrane",
    "reset_membrane_vjp",
    "neuron_step",
    # scan
    "neuron_scan",
    "fused_neuron_scan",
    "FusedNeuronScan",
    # integer
    "IntegerNeuronProgram",
    "integer_neuron_program",
    "integer_neuron_scan",
    # surrogate
    "SpikeFn",
    "DEFAULT_SURROGATE",
    "get_surrogate",
    "fires_at_threshold",
]
