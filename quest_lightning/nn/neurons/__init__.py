"""Quantized neuron adapters: snnTorch-style and SpikingJelly-style shells over one shared step."""

from quest_lightning.nn.neurons.base import QuantNeuron
from quest_lightning.nn.neurons.snntorch_adapter import QuantLeaky
from quest_lightning.nn.neurons.spikingjelly_adapter import QuantIFNode, QuantLIFNode

__all__ = ["QuantNeuron", "QuantLeaky", "QuantIFNode", "QuantLIFNode"]
