"""Quantized neurons: one shared shell (:mod:`~quest_lightning.nn.neurons.base`), one module per back-end, and the
registry that names them. Importing this package registers the built-in back-ends; a new back-end is one more module
here, imported below."""

from quest_lightning.nn.neurons.base import QuantNeuron
from quest_lightning.nn.neurons.registry import (
    NEURON_KINDS,
    NeuronBackend,
    backend_of,
    get_backend,
    list_backends,
    make_neuron,
    register_backend,
    unregister_backend,
)
from quest_lightning.nn.neurons.snntorch import QuantLeaky
from quest_lightning.nn.neurons.spikingjelly import QuantIFNode, QuantLIFNode, QuantParametricLIFNode

__all__ = [
    "QuantNeuron",
    "QuantLeaky",
    "QuantIFNode",
    "QuantLIFNode",
    "QuantParametricLIFNode",
    "NEURON_KINDS",
    "NeuronBackend",
    "backend_of",
    "get_backend",
    "list_backends",
    "make_neuron",
    "register_backend",
    "unregister_backend",
]
