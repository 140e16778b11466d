"""Modules: quantized layers, neuron adapters, encoders, the spiking VGG builder and introspection."""

from quest_lightning.nn.encoders import DirectEncoder, Encoder, LatencyEncoder, RateEncoder, make_encoder
from quest_lightning.nn.inspect import (
    LayerRecording,
    input_kind_of,
    layer_recording,
    layer_recordings,
    quantized_layers,
    recording,
    require_quantized_layers,
    reset_recording,
    set_recording,
    spiking_neurons,
    synaptic_layers,
)
from quest_lightning.nn.layer_input import InputKind
from quest_lightning.nn.layers import QuantConv1d, QuantConv2d, QuantLayerMixin, QuantLinear, QuantOptions
from quest_lightning.nn.neurons import (
    QuantIFNode,
    QuantLeaky,
    QuantLIFNode,
    QuantNeuron,
    QuantParametricLIFNode,
    backend_of,
    list_backends,
    make_neuron,
    register_backend,
)
from quest_lightning.nn.vgg import VGG_CONFIGS, SpikingBlock, SpikingVGG, TimeSharedDropout, spiking_vgg

__all__ = [
    "QuantConv1d",
    "QuantConv2d",
    "QuantLinear",
    "QuantLayerMixin",
    "QuantOptions",
    "InputKind",
    "QuantNeuron",
    "QuantLeaky",
    "QuantIFNode",
    "QuantLIFNode",
    "QuantParametricLIFNode",
    "Encoder",
    "DirectEncoder",
    "RateEncoder",
    "LatencyEncoder",
    "make_encoder",
    "SpikingVGG",
    "SpikingBlock",
    "TimeSharedDropout",
    "VGG_CONFIGS",
    "spiking_vgg",
    "make_neuron",
    "backend_of",
    "list_backends",
    "register_backend",
    "synaptic_layers",
    "quantized_layers",
    "spiking_neurons",
    "require_quantized_layers",
    "set_recording",
    "reset_recording",
    "recording",
    "LayerRecording",
    "layer_recording",
    "layer_recordings",
    "input_kind_of",
]
