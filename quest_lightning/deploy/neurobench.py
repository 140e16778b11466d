r"""NeuroBench's metrics of a model on a batch, from one forward pass with hooks, and the view of a network that
NeuroBench's own metric code reads.

The definitions (SynapticOperations ``Effective_ACs``/``Effective_MACs``/``Dense`` per sample, ActivationSparsity,
ConnectionSparsity, Footprint) are NeuroBench's (Yik et al., "The NeuroBench framework for benchmarking neuromorphic
computing algorithms and systems", Nature Communications 16, 1545, 2025; the ``neurobench`` 2.3 metric code); their
formulas and the count-level functions are in :mod:`quest_lightning.metrics.neurobench`, re-exported here:

.. math::

    \text{Effective} = \sum_{\text{rows}} \sum_{k} [x_{in(k)} \ne 0]\,[w_k \ne 0], \qquad
    \text{ActivationSparsity} = 1 - \frac{\text{spikes}}{\text{neurons} \cdot T \cdot \text{samples}}.

:func:`neurobench_metrics` runs the model once on an encoded batch, with a pre-hook on every synaptic layer (its
non-zero inputs per position and NeuroBench's spiking test, per call) and a forward hook on every neuron (its
spikes). The training callbacks record the same counts during a run; the run record carries them
(:class:`~quest_lightning.summary.NeuroBenchRecord`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from quest_lightning.deploy.graph import model_spikes
from quest_lightning.metrics.neurobench import (
    CITATION,
    Footprint,
    LayerOperations,
    SynapticOperations,
    activation_sparsity_from_counts,
    connection_sparsity,
    footprint,
    layer_synaptic_operations,
)
from quest_lightning.nn.inspect import synaptic_layers, unwrap

__all__ = [
    "CITATION",
    "Footprint",
    "LayerOperations",
    "NeuroBenchMetrics",
    "SynapticOperations",
    "activation_sparsity",
    "activation_sparsity_from_counts",
    "connection_sparsity",
    "footprint",
    "layer_synaptic_operations",
    "neurobench_metrics",
    "neurobench_view",
    "synaptic_operations",
]


def _is_spiking(x: Tensor) -> bool:
    return bool(((x == 0) | (x == 1) | (x == -1)).all())


def _forward_counts(model: nn.Module, x_seq: Tensor) -> tuple[SynapticOperations, dict[str, Tensor]]:
    """One forward pass: NeuroBench's synaptic operations (a pre-hook on every synaptic layer records, per call, the
    non-zero inputs per position and NeuroBench's spiking test) and every neuron's spikes."""
    net = unwrap(model)
    calls: dict[str, list[tuple[Tensor, int, bool]]] = {}
    handles = []
    for name, layer in synaptic_layers(net):

        def hook(module: nn.Module, args: tuple[Tensor, ...], _name: str = name) -> None:
            x = args[0].detach()
            rows = x.reshape(-1, *x.shape[x.dim() - module.feature_dims :])
            nonzero = (rows != 0).sum(0, dtype=torch.float64)
            calls.setdefault(_name, []).append((nonzero, rows.shape[0], _is_spiking(x)))

        handles.append(layer.register_forward_pre_hook(hook))
    try:
        _, spikes = model_spikes(net, x_seq)
    finally:
        for h in handles:
            h.remove()
    layers = dict(synaptic_layers(net))
    ops = tuple(
        layer_synaptic_operations(layers[name], counts, rows, spiking=spiking, name=name)
        for name, records in calls.items()
        for counts, rows, spiking in records
    )
    return SynapticOperations(ops, int(x_seq.shape[1])), spikes


def synaptic_operations(model: nn.Module, x_seq: Tensor) -> SynapticOperations:
    """NeuroBench's synaptic operations of ``model`` on the encoded batch ``x_seq`` (``[T, B, ...]``), per sample,
    from one forward pass."""
    return _forward_counts(model, x_seq)[0]


def _sparsity_of(spikes: dict[str, Tensor]) -> float:
    nonzero = sum(int(s.count_nonzero()) for s in spikes.values())
    return activation_sparsity_from_counts(nonzero, sum(s.numel() for s in spikes.values()))


def activation_sparsity(model: nn.Module, x_seq: Tensor) -> float:
    """NeuroBench's ``ActivationSparsity`` of ``model`` on ``x_seq``: zero outputs over all outputs of all neurons."""
    return _sparsity_of(model_spikes(model, x_seq)[1])


@dataclass(frozen=True)
class NeuroBenchMetrics:
    """The four NeuroBench metrics of one model on one batch.

    Attributes:
        synaptic_operations: ``Effective_MACs``, ``Effective_ACs``, ``Dense`` per sample.
        activation_sparsity: Zero neuron outputs over all outputs.
        connection_sparsity: Zero weights (codes) over all weights.
        footprint: Deployed and NeuroBench bytes.
    """

    synaptic_operations: SynapticOperations
    activation_sparsity: float
    connection_sparsity: float
    footprint: Footprint

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary in NeuroBench's vocabulary."""
        return {
            "SynapticOperations": self.synaptic_operations.to_dict(),
            "ActivationSparsity": self.activation_sparsity,
            "ConnectionSparsity": self.connection_sparsity,
            "Footprint": self.footprint.to_dict(),
            "definition": CITATION,
        }


def neurobench_metrics(model: nn.Module, x_seq: Tensor) -> NeuroBenchMetrics:
    """All four metrics of ``model`` on the encoded batch ``x_seq`` (``[T, B, ...]``), from one forward pass."""
    synops, spikes = _forward_counts(model, x_seq)
    return NeuroBenchMetrics(synops, _sparsity_of(spikes), connection_sparsity(model), footprint(model))


def neurobench_view(model: nn.Module) -> nn.Module:
    """A copy of the network for NeuroBench's own metric code: each quantized layer becomes a full-precision layer
    whose ``weight`` is the quantized weight :math:`\\hat w\\,\\alpha/Q`.

    NeuroBench binarizes ``layer.weight``; the latent float weight of a quantized layer is never zero, while the
    quantized weight is zero exactly where the code is. The neurons keep quantizing their membranes with the original
    layer's scale, so the copy spikes exactly like the model.
    """
    view = copy.deepcopy(unwrap(model))
    for name, layer in list(synaptic_layers(view)):
        if not layer.enabled:
            continue
        plain = copy.deepcopy(layer)
        with torch.no_grad():
            plain.weight.copy_(layer.quantized_weight())
        plain.enabled = False
        parent, _, child = name.rpartition(".")
        setattr(view.get_submodule(parent) if parent else view, child, plain)
    return view
