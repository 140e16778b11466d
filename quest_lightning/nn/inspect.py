"""Introspection for the analysis layer: find the quantized layers and neurons of any model, and switch the cheap
recording of input spike counts (layers) and output spike counts (neurons) on and off."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from quest_lightning.nn.layers import QuantLayerMixin
from quest_lightning.nn.neurons.base import QuantNeuron


def synaptic_layers(model: nn.Module) -> list[tuple[str, QuantLayerMixin]]:
    """Every ``QuantConv2d``/``QuantLinear`` of ``model`` with its module name, quantized or not, in module order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, QuantLayerMixin)]


def quantized_layers(model: nn.Module) -> list[tuple[str, QuantLayerMixin]]:
    """The layers of ``model`` whose weights are quantized (``enabled=True``), with stable module names."""
    return [(name, m) for name, m in synaptic_layers(model) if m.enabled]


def spiking_neurons(model: nn.Module) -> list[tuple[str, QuantNeuron]]:
    """Every quest-lightning neuron of ``model`` with its module name."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, QuantNeuron)]


def require_quantized_layers(model: nn.Module, who: str) -> list[tuple[str, QuantLayerMixin]]:
    """:func:`quantized_layers`, or a ``ValueError`` telling the user what to change when there are none."""
    layers = quantized_layers(model)
    if not layers:
        found = len(synaptic_layers(model))
        hint = (
            f"it has {found} QuantConv2d/QuantLinear layer(s) but all have enabled=False; enable quantization on them"
            if found
            else "replace nn.Conv2d/nn.Linear with quest_lightning.nn.QuantConv2d/QuantLinear (or build the network "
            "with quest_lightning.nn.spiking_vgg)"
        )
        raise ValueError(f"{who} needs a model with quantized layers, but {type(model).__name__} has none: {hint}.")
    return layers


def set_recording(model: nn.Module, enabled: bool = True) -> None:
    """Turn spike-count recording on or off in every layer and neuron of ``model``."""
    for _, m in synaptic_layers(model):
        m.record = enabled
    for _, n in spiking_neurons(model):
        n.record = enabled


def reset_recording(model: nn.Module) -> None:
    """Zero every recorded count in ``model``."""
    for _, m in synaptic_layers(model):
        m.reset_recording()
    for _, n in spiking_neurons(model):
        n.reset_recording()


@contextmanager
def recording(model: nn.Module) -> Iterator[nn.Module]:
    """Record spike counts inside the ``with`` block, restoring the previous flags afterwards."""
    previous = [(m, m.record) for _, m in synaptic_layers(model)] + [(n, n.record) for _, n in spiking_neurons(model)]
    set_recording(model, True)
    try:
        yield model
    finally:
        for m, flag in previous:
            m.record = flag
