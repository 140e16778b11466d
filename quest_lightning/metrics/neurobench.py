r"""Efficiency metrics in NeuroBench's terms, computed exactly from counts on quest-lightning networks.

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
  For spiking layers ``Effective_ACs`` is QUEST's :math:`N_{eff} = \sum_{v \ne 0} N(v)` (the accumulates on non-zero
  weights).
* **ActivationSparsity**: the fraction of zero outputs over all neurons, time steps and samples,
  :math:`1 - \text{spikes} / (\text{neurons} \cdot T \cdot \text{samples})`.
* **ConnectionSparsity**: the fraction of zero weights over all synaptic layers; a quantized layer's weight is its
  integer code (NeuroBench would read the latent float weight, which is never zero).
* **Footprint** (bytes): NeuroBench counts every parameter and buffer at its storage size (the float32 training
  model). The deployed footprint stores each quantized layer's codes at :math:`b` bits, packed, plus its
  :math:`\alpha` in float32; full-precision weights and biases in float32.

This module takes counts, not forward passes: :func:`layer_synaptic_operations` and
:func:`activation_sparsity_from_counts` take what a recording layer holds, and :func:`neurobench_record` turns an
epoch of the activity counts (:class:`~quest_lightning.summary.ActivityRecord`) into the run record's
:class:`~quest_lightning.summary.NeuroBenchRecord`. The one-forward-pass functions are in
:mod:`quest_lightning.deploy.neurobench`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from quest_lightning.metrics.functional import weight_input_sums
from quest_lightning.metrics.geometry import LayerGeometry
from quest_lightning.nn.inspect import synaptic_layers, unwrap
from quest_lightning.nn.layers import QuantLayerMixin
from quest_lightning.summary import ActivityRecord, NeuroBenchRecord
from quest_lightning.summary.neurobench import CITATION

__all__ = [
    "CITATION",
    "Footprint",
    "LayerOperations",
    "SynapticOperations",
    "activation_sparsity_from_counts",
    "connection_sparsity",
    "dense_per_row",
    "footprint",
    "layer_synaptic_operations",
    "neurobench_record",
]


def _nonzero_weights(layer: nn.Module) -> Tensor:
    """``w != 0``: the codes of a quantized layer, the weights of a full-precision one."""
    quantized = isinstance(layer, QuantLayerMixin) and layer.enabled
    w = layer.current_codes() if quantized else layer.weight.detach()
    return w != 0


def dense_per_row(layer: nn.Module, input_shape: Sequence[int]) -> float:
    """NeuroBench's ``Dense`` count of one row (one time step of one sample) of ``layer``: the products of all-ones
    inputs of shape ``input_shape`` (``[C, H, W]``, ``[C, L]`` or ``[F]``) and all-ones weights, padding left out."""
    geometry = LayerGeometry.of(layer)
    if geometry.kind == "linear":
        return float(geometry.in_channels * geometry.out_channels)
    ones = torch.ones(tuple(input_shape), dtype=torch.float64, device=layer.weight.device)
    return float(weight_input_sums(geometry, ones).sum())


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
        layer: A ``QuantConv2d``/``QuantLinear`` (its codes, or weights when full precision, give :math:`w \\ne 0`),
            or a plain ``nn.Conv2d``/``nn.Linear``.
        nonzero_counts: ``[C, H, W]`` or ``[F]``: how many rows had a non-zero input at each position (what a
            recording layer's :meth:`~quest_lightning.nn.layer_input.LayerInputMixin.nonzero_input_counts` gives;
            for spikes, its ``input_counts``).
        rows: The number of rows (time steps × samples) the counts cover.
        spiking: Whether the inputs were -1/0/1 (NeuroBench's ``Effective_ACs``) or not (``Effective_MACs``).
        name: The layer's name, for the report.
    """
    counts = nonzero_counts.to(torch.float64)
    mask = _nonzero_weights(layer).to(counts.device)
    if isinstance(layer, nn.Linear):
        effective = float(counts @ mask.sum(0, dtype=torch.float64))
    else:
        effective = float((weight_input_sums(LayerGeometry.of(layer), counts) * mask).sum())
    dense = float(rows) * dense_per_row(layer, tuple(counts.shape))
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


def activation_sparsity_from_counts(nonzero: float, elements: float) -> float:
    """NeuroBench's ``ActivationSparsity`` from recorded totals: :math:`1 - \\text{nonzero}/\\text{elements}` (for
    spikes, ``nonzero`` is the spike count and ``elements`` is neurons × time steps × samples).

    Raises:
        ValueError: Nothing was recorded (``elements`` is 0): the sparsity is undefined.
    """
    if elements <= 0:
        raise ValueError("no neuron output was recorded: activation sparsity is undefined")
    return (elements - nonzero) / elements


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
    """The deployed footprint and NeuroBench's (see :class:`Footprint`) of the network (a Lightning module's
    ``.model``)."""
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


def _effective(level_ops: Sequence[float]) -> float:
    """:math:`N_{eff} = \\sum_{v \\ne 0} N(v)` from :math:`N(v)` indexed :math:`v + Q`."""
    return float(sum(level_ops) - level_ops[(len(level_ops) - 1) // 2])


def _synaptic_operations(
    record: ActivityRecord,
    modules: Mapping[str, nn.Module],
    input_shapes: Mapping[str, Sequence[int]],
    mixed: Sequence[str],
    notes: list[str],
) -> tuple[float | None, float | None, float | None]:
    """``(Effective_ACs, Effective_MACs, Dense)`` summed over the epoch (``None`` where not exact, with a note)."""
    left_out = [s for s in record.skipped if not s.reason.startswith("did not run")]
    if left_out:
        names = ", ".join(f"{s.layer!r} ({s.module})" for s in left_out)
        notes.append(f"SynapticOperations: layers {names} are not in the activity counts")
        return None, None, None
    acs: float | None = 0.0
    macs: float | None = 0.0
    dense: float | None = 0.0
    declared: list[str] = []
    for layer in record.layers:
        module, shape = modules.get(layer.layer), input_shapes.get(layer.layer)
        if dense is not None and (module is None or not shape):
            notes.append(f"Dense: the input shape of layer {layer.layer!r} is not known at record time")
            dense = None
        elif dense is not None:
            dense += layer.rows * dense_per_row(module, shape)
        if layer.input_kind_source != "recorded":
            declared.append(layer.layer)
        if layer.input_kind == "spikes":
            acs = None if acs is None else acs + _effective(layer.level_ops)
        elif layer.nonzero_level_ops is not None:
            macs = None if macs is None else macs + _effective(layer.nonzero_level_ops)
        elif macs is not None:
            notes.append(
                f"Effective_MACs: the non-zero inputs of layer {layer.layer!r} (analog input) are not in this record "
                "(written by an earlier version, or resumed from its checkpoint within the epoch); "
                "quest_lightning.deploy.neurobench_metrics(model, x_seq) counts them in one forward pass"
            )
            macs = None
    if declared:
        analog = any(r.input_kind == "analog" for r in record.layers if r.layer in declared)
        which = "Effective_ACs and Effective_MACs" if analog else "Effective_ACs"
        notes.append(
            f"{which} count the input of {', '.join(map(repr, declared))} as declared (input_kind or "
            "first_layer_analog), as the AOR does, not by what was seen"
        )
    if mixed:
        notes.extend(f"Effective_ACs and Effective_MACs: {msg}" for msg in mixed)
        acs = macs = None
    return acs, macs, dense


def _activation_sparsity(
    record: ActivityRecord, samples: int, neurons: Mapping[str, int], notes: list[str]
) -> float | None:
    """1 - spikes / (neurons × T × samples) over every neuron group of the record (``None`` with a note if not
    exact)."""
    steps = record.timesteps
    if not record.neurons or steps is None:
        notes.append("ActivationSparsity: no neuron output was recorded")
        return None
    spikes = elements = 0.0
    for group in record.neurons:
        count = neurons.get(group.neuron, 0)
        if group.spikes is None or count < 1:
            notes.append(f"ActivationSparsity: the size of neuron group {group.neuron!r} is not known")
            return None
        outputs = count * steps * samples
        if group.spikes > 0 and not math.isclose(group.spikes / group.rate_per_step, outputs, rel_tol=1e-9):
            notes.append(
                f"ActivationSparsity: neuron group {group.neuron!r} did not run the network's {steps} time steps for "
                f"each of the {samples} samples"
            )
            return None
        spikes += group.spikes
        elements += outputs
    return activation_sparsity_from_counts(spikes, elements)


def neurobench_record(
    record: ActivityRecord,
    model: nn.Module,
    *,
    input_shapes: Mapping[str, Sequence[int]],
    neurons: Mapping[str, int],
    mixed: Sequence[str] = (),
) -> NeuroBenchRecord | None:
    """NeuroBench's metrics of one epoch of the activity counts; ``None`` for an empty epoch.

    The synaptic operations come from the epoch's exact per-level counts :math:`N(v)`: a layer counted as spikes
    (every input 0 or 1, NeuroBench's spiking input; or declared so by its ``input_kind``, as the AOR counts it)
    adds :math:`\\sum_{v \\ne 0} N(v)` to ``Effective_ACs``; a layer counted as analog input adds
    :math:`\\sum_{v \\ne 0} N_{\\ne 0}(v)` to ``Effective_MACs``, the per-level counts of its binarized input (its
    non-zero input elements meeting the weights of level :math:`v`, ``LayerActivity.nonzero_level_ops``), exactly
    NeuroBench's count; every layer adds its rows times :func:`dense_per_row` to ``Dense``. The activation sparsity
    comes from the neurons' spike counts. The connection sparsity and the footprints are those of ``model``'s weights
    now (at the end of a fit, the weights its last validation epoch ran with).

    Args:
        record: One epoch of the activity counts.
        model: The network (or the LightningModule holding it) the names in ``record`` refer to.
        input_shapes: Each synaptic layer's input shape per row (``[C, H, W]`` or ``[F]``), by the record's names.
        neurons: Each neuron group's neurons per sample and time step, by the record's names.
        mixed: The messages of the layers that saw spikes in some updates and analog input in others this epoch.

    Returns:
        A :class:`~quest_lightning.summary.NeuroBenchRecord` whose ``None`` figures each have a note saying why.
    """
    if record.empty is not None or not record.layers:
        return None
    notes: list[str] = []
    samples = max(layer.samples for layer in record.layers)
    modules = dict(model.named_modules())
    acs, macs, dense = _synaptic_operations(record, modules, input_shapes, mixed, notes)
    sparsity = _activation_sparsity(record, samples, neurons, notes)
    try:
        connections: float | None = connection_sparsity(model)
    except ValueError as err:
        notes.append(f"ConnectionSparsity: {err}")
        connections = None
    size = footprint(model)
    return NeuroBenchRecord(
        stage=record.stage,
        epoch=record.epoch,
        samples=samples,
        effective_acs=None if acs is None else acs / samples,
        effective_macs=None if macs is None else macs / samples,
        dense=None if dense is None else dense / samples,
        activation_sparsity=sparsity,
        connection_sparsity=connections,
        footprint_bytes=size.neurobench_bytes,
        deployed_bytes=size.deployed_bytes,
        notes=tuple(notes),
    )
