r"""Efficiency metrics in NeuroBench's terms, computed exactly on quest-lightning networks.

The definitions are NeuroBench's (Yik et al., "The NeuroBench framework for benchmarking neuromorphic computing
algorithms and systems", Nature Communications 16, 1545, 2025; the ``neurobench`` 2.3 metric code):

* **SynapticOperations** (per sample). For every call of a synaptic layer NeuroBench binarizes the input
  (:math:`x \ne 0`) and the weights (:math:`w \ne 0`) and counts the products. The input is *spiking* when every
  value is -1, 0 or 1; then the count is ``Effective_ACs``, otherwise ``Effective_MACs``. ``Dense`` counts the same
  products with all-ones inputs and weights, for every layer:

  .. math::

      \text{Effective} = \sum_{\text{rows}} \sum_{k} [x_{in(k)} \ne 0]\,[w_k \ne 0], \qquad
      \text{Dense} = \sum_{\text{rows}} \#\{(k, p) : \text{weight } k \text{ meets an in-bounds input at } p\},

  divided by the number of samples. A row is one time step of one sample, so a direct-coded first layer counts
  :math:`T` times. ``Dense`` leaves out the zero padding, so it is below the ANN count
  :math:`k_h k_w C_{in} C_{out} H_{out} W_{out}` of :func:`~quest_lightning.metrics.geometry.ann_ops` at the borders.
  For spiking layers ``Effective_ACs`` is QUEST's :math:`N_{eff}` (the accumulates on non-zero weights).
* **ActivationSparsity**: the fraction of zero outputs over all neurons, time steps and samples.
* **ConnectionSparsity**: the fraction of zero weights over all synaptic layers; a quantized layer's weight is its
  integer code (NeuroBench would read the latent float weight, which is never zero).
* **Footprint** (bytes): NeuroBench counts every parameter and buffer at its storage size (the float32 training
  model). The deployed footprint stores each quantized layer's codes at :math:`b` bits, packed, plus its
  :math:`\alpha` in float32; full-precision weights and biases in float32.

The model-level functions run one forward pass with hooks; :func:`layer_synaptic_operations` and
:func:`activation_sparsity_from_counts` take recorded counts instead (what the training callbacks hold).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from quest_lightning.deploy.graph import model_spikes, unwrap
from quest_lightning.metrics.functional import weight_input_sums
from quest_lightning.metrics.geometry import LayerGeometry
from quest_lightning.nn.inspect import synaptic_layers
from quest_lightning.nn.layers import QuantLayerMixin

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

CITATION = (
    "Yik et al., 'The NeuroBench framework for benchmarking neuromorphic computing algorithms and systems', "
    "Nature Communications 16, 1545 (2025); definitions as in the neurobench 2.3 metric code"
)


def _nonzero_weights(layer: QuantLayerMixin) -> Tensor:
    """``w != 0``: the codes of a quantized layer, the weights of a full-precision one."""
    w = layer.current_codes() if layer.enabled else layer.weight.detach()
    return w != 0


@dataclass(frozen=True)
class LayerOperations:
    """NeuroBench's synaptic operations of one layer, summed over what was recorded.

    Attributes:
        name: The layer's module name.
        spiking: NeuroBench's test: every input value is -1, 0 or 1 (then ``effective`` counts accumulates).
        effective: :math:`\\sum [x \\ne 0][w \\ne 0]` over the recorded rows.
        dense: The same count with all-ones inputs and weights.
        rows: Rows recorded (time steps × samples).
    """

    name: str
    spiking: bool
    effective: float
    dense: float
    rows: int


def layer_synaptic_operations(
    layer: nn.Module, nonzero_counts: Tensor, rows: int, *, spiking: bool, name: str = ""
) -> LayerOperations:
    """One layer's NeuroBench synaptic operations from the count of non-zero inputs per input position.

    Args:
        layer: A ``QuantConv2d``/``QuantLinear`` (its codes, or weights when full precision, give :math:`w \\ne 0`).
        nonzero_counts: ``[C, H, W]`` or ``[F]``: how many rows had a non-zero input at each position (for spikes,
            the spike counts a recording layer holds in ``input_counts``).
        rows: The number of rows (time steps × samples) the counts cover.
        spiking: Whether the inputs were -1/0/1 (NeuroBench's ``Effective_ACs``) or not (``Effective_MACs``).
        name: The layer's name, for the report.
    """
    assert isinstance(layer, QuantLayerMixin)
    counts = nonzero_counts.to(torch.float64)
    mask = _nonzero_weights(layer).to(counts.device)
    if isinstance(layer, nn.Linear):
        effective = float(counts @ mask.sum(0, dtype=torch.float64))
        dense = float(rows) * layer.in_features * layer.out_features
    else:
        g = weight_input_sums(LayerGeometry.of(layer), counts)
        effective = float((g * mask).sum())
        dense = float(rows) * float(weight_input_sums(LayerGeometry.of(layer), torch.ones_like(counts)).sum())
    return LayerOperations(name, spiking, effective, dense, int(rows))


@dataclass(frozen=True)
class SynapticOperations:
    """NeuroBench's ``SynapticOperations`` per sample.

    Attributes:
        layers: Per layer and per kind of input (a layer seen with spiking and analog inputs appears twice).
        samples: The number of samples the counts cover.
    """

    layers: tuple[LayerOperations, ...]
    samples: int

    def _per_sample(self, values: list[float]) -> float:
        return sum(values) / self.samples if self.samples else 0.0

    @property
    def effective_macs(self) -> float:
        """``Effective_MACs`` per sample: non-zero products with non-spiking inputs."""
        return self._per_sample([op.effective for op in self.layers if not op.spiking])

    @property
    def effective_acs(self) -> float:
        """``Effective_ACs`` per sample: non-zero products with spiking inputs (QUEST's :math:`N_{eff}`)."""
        return self._per_sample([op.effective for op in self.layers if op.spiking])

    @property
    def dense(self) -> float:
        """``Dense`` per sample: all products, with all-ones inputs and weights."""
        return self._per_sample([op.dense for op in self.layers])

    def per_layer(self) -> list[dict[str, Any]]:
        """Per layer and kind of input (calls and batches merged, in first-seen order), per sample."""
        merged: dict[tuple[str, bool], list[float]] = {}
        for op in self.layers:
            acc = merged.setdefault((op.name, op.spiking), [0.0, 0.0])
            acc[0] += op.effective
            acc[1] += op.dense
        n = self.samples or 1
        return [
            {"name": name, "spiking": spiking, "effective_per_sample": eff / n, "dense_per_sample": dense / n}
            for (name, spiking), (eff, dense) in merged.items()
        ]

    def to_dict(self) -> dict[str, Any]:
        """NeuroBench's keys, per sample, with the per-layer counts and the source of the definitions."""
        return {
            "Effective_MACs": self.effective_macs,
            "Effective_ACs": self.effective_acs,
            "Dense": self.dense,
            "samples": self.samples,
            "per_layer": self.per_layer(),
            "definition": CITATION,
        }


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


def activation_sparsity_from_counts(nonzero: float, elements: float) -> float:
    """NeuroBench's ``ActivationSparsity`` from recorded totals: :math:`1 - \\text{nonzero}/\\text{elements}` (for
    spikes, ``nonzero`` is the spike count and ``elements`` is neurons × time steps × samples).

    Raises:
        ValueError: Nothing was recorded (``elements`` is 0): the sparsity is undefined.
    """
    if elements <= 0:
        raise ValueError("no neuron output was recorded: activation sparsity is undefined")
    return (elements - nonzero) / elements


def activation_sparsity(model: nn.Module, x_seq: Tensor) -> float:
    """NeuroBench's ``ActivationSparsity`` of ``model`` on ``x_seq``: zero outputs over all outputs of all neurons."""
    return _sparsity_of(model_spikes(model, x_seq)[1])


def connection_sparsity(model: nn.Module) -> float:
    """NeuroBench's ``ConnectionSparsity``: zero weights over all weights of the synaptic layers (codes for quantized
    layers), unrounded.

    Raises:
        ValueError: The model has no synaptic layer.
    """
    layers = synaptic_layers(unwrap(model))
    if not layers:
        raise ValueError(f"{type(model).__name__} has no QuantConv2d/QuantLinear layer")
    zeros = sum(int((~_nonzero_weights(layer)).sum()) for _, layer in layers)
    return zeros / sum(layer.weight.numel() for _, layer in layers)


@dataclass(frozen=True)
class Footprint:
    """Memory footprint in bytes.

    Attributes:
        deployed_bytes: Codes at ``b`` bits packed per layer, :math:`\\alpha` and biases in float32, full-precision
            weights in float32.
        neurobench_bytes: NeuroBench's ``Footprint``: every parameter and buffer at its storage size.
        per_layer: Deployed bytes per synaptic layer.
    """

    deployed_bytes: int
    neurobench_bytes: int
    per_layer: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployed_bytes": self.deployed_bytes,
            "neurobench_bytes": self.neurobench_bytes,
            "per_layer": dict(self.per_layer),
        }


def footprint(model: nn.Module) -> Footprint:
    """The deployed footprint and NeuroBench's (see :class:`Footprint`)."""
    net = unwrap(model)
    per_layer: dict[str, int] = {}
    for name, layer in synaptic_layers(net):
        n = layer.weight.numel()
        size = math.ceil(n * layer.bits / 8) + 4 if layer.enabled else 4 * n
        if layer.bias is not None:
            size += 4 * layer.bias.numel()
        per_layer[name] = size
    nb = sum(p.numel() * p.element_size() for p in net.parameters())
    nb += sum(b.numel() * b.element_size() for b in net.buffers())
    return Footprint(sum(per_layer.values()), nb, per_layer)


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
