"""Modules: quantized layers, neuron adapters, encoders and the spiking VGG builder."""

from quest_lightning.nn.layers import QuantConv2d, QuantLayerMixin, QuantLinear
from quest_lightning.nn.neurons import QuantIFNode, QuantLeaky, QuantLIFNode, QuantNeuron

__all__ = ["QuantConv2d", "QuantLinear", "QuantLayerMixin", "QuantNeuron", "QuantLeaky", "QuantIFNode", "QuantLIFNode"]
