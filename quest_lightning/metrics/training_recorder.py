"""``TrainingOpsRecorder``: the training-step counts of every synaptic layer of a model, from the tensors autograd
already holds (:mod:`quest_lightning.metrics.training` has the math).

A forward hook on each layer keeps a reference to the layer's input (the tensor autograd saves for the weight
gradient anyway) and the codes of that pass, and puts a gradient hook on the layer's output, or on the output of the
normalisation between the layer and its neuron (``delta_at="neuron"``, see below). When the backward pass reaches
that point, the hook counts the call's three passes on the device and returns nothing: the model's outputs and
gradients are untouched, and nothing waits for the host.

Where :math:`\\delta` is taken, per layer: the output of a BatchNorm/GroupNorm/LayerNorm that follows the layer in
its block (a :class:`~quest_lightning.nn.vgg.SpikingBlock`'s ``norm``, or the next module of an ``nn.Sequential``),
else the layer's output; ``norms`` names it by hand. :attr:`TrainingOpsRecorder.delta_points` says which was used.

Not supported: activation checkpointing (a recomputed forward pass would be counted twice).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import torch
from torch import Tensor, nn

from quest_lightning.metrics.geometry import LayerGeometry
from quest_lightning.metrics.training import TrainingOpsMeter, TrainingOpsResult, delta_rule, training_step_counts
from quest_lightning.nn.inspect import spiking_neurons, synaptic_layers
from quest_lightning.nn.layers import QuantLayerMixin

__all__ = ["NORM_TYPES", "TrainingOpsRecorder", "layer_codes_for_counts"]

NORM_TYPES: tuple[type[nn.Module], ...] = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
"""Normalisations between a layer and its neuron at whose output :math:`\\delta` is taken with
``delta_at="neuron"``."""


def layer_codes_for_counts(layer: QuantLayerMixin) -> tuple[Tensor, int]:
    """The codes and :math:`Q` of a layer's last forward pass: its integer codes, or for a full-precision layer the
    signs of its weights on a ternary grid (so that every non-zero weight counts)."""
    if layer.enabled:
        return layer.codes, layer.qmax
    return torch.sign(layer.weight.detach()).to(torch.int8), 1


@dataclass
class _Call:
    name: str
    inputs: Tensor  # [T, B, ...]
    codes: Tensor
    qmax: int
    first_step: int
    input_grad: bool
    out_shape: tuple[int, ...]  # [T, B, ...]
    macs: int


def _norm_after(model: nn.Module, name: str, layer: nn.Module) -> tuple[str, nn.Module] | None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    prefix = f"{parent_name}." if parent_name else ""
    norm = getattr(parent, "norm", None)
    if getattr(parent, "layer", None) is layer and isinstance(norm, NORM_TYPES):
        return f"{prefix}norm", norm
    if isinstance(parent, nn.Sequential):
        children = list(parent.named_children())
        names = [n for n, _ in children]
        k = names.index(attr)
        if k + 1 < len(children) and isinstance(children[k + 1][1], NORM_TYPES):
            return f"{prefix}{children[k + 1][0]}", children[k + 1][1]
    return None


class TrainingOpsRecorder:
    """Count the forward, backward and weight-gradient operations of every synaptic layer of ``model``.

    >>> from quest_lightning.nn import DirectEncoder, SpikingVGG
    >>> model = SpikingVGG([4, "P"], [8], in_channels=1, image_size=4, bits=2)
    >>> recorder = TrainingOpsRecorder(model, timesteps=2).attach()
    >>> with recorder.step():
    ...     model(DirectEncoder(2)(torch.rand(3, 1, 4, 4))).sum().backward()
    >>> sorted(recorder.compute())
    ['classifier.0.layer', 'features.0.layer', 'readout']

    Args:
        model: the network (any ``nn.Module`` with quest-lightning layers).
        timesteps: :math:`T`, the most time steps of one batch.
        delta_at: ``"neuron"`` (after a normalisation that follows the layer, if any) or ``"layer"`` (the layer's
            output).
        delta_threshold: :math:`\\tau` for the non-zero count of :math:`\\delta`; ``None`` decides from the
            surrogates (see :func:`~quest_lightning.metrics.training.delta_rule`).
        norms: ``{layer name: module name}`` where to take :math:`\\delta` instead (``delta_at="neuron"``).

    Raises:
        ValueError: a model without synaptic layers, an unknown ``delta_at``, a bad threshold or ``norms`` entry.
    """

    def __init__(
        self,
        model: nn.Module,
        timesteps: int,
        *,
        delta_at: Literal["neuron", "layer"] = "neuron",
        delta_threshold: float | None = None,
        norms: Mapping[str, str] | None = None,
    ) -> None:
        if delta_at not in ("neuron", "layer"):
            raise ValueError(f"delta_at={delta_at!r} is unknown: use 'neuron' or 'layer'.")
        self.model, self.timesteps, self.delta_at = model, timesteps, delta_at
        self.layers = synaptic_layers(model)
        if not self.layers:
            raise ValueError(
                f"{type(model).__name__} has no QuantConv2d/QuantLinear layer to count; build it from quest-lightning "
                "layers."
            )
        self.threshold, self.delta_note = delta_rule((n.spike_fn for _, n in spiking_neurons(model)), delta_threshold)
        self.points: dict[str, tuple[str, nn.Module] | None] = {}
        modules = dict(model.named_modules())
        for name, layer in self.layers:
            point = _norm_after(model, name, layer) if delta_at == "neuron" else None
            if norms and name in norms:
                if norms[name] not in modules:
                    raise ValueError(f"norms[{name!r}]={norms[name]!r} is not a module of the model.")
                point = (norms[name], modules[norms[name]])
            self.points[name] = point
        self.meters = {
            name: TrainingOpsMeter(LayerGeometry.of(layer), layer_codes_for_counts(layer)[1], timesteps)
            for name, layer in self.layers
        }
        self.active = False
        self._handles: list[Any] = []
        self._calls: dict[str, int] = {}
        self._waiting: dict[int, list[_Call]] = {}

    @property
    def delta_points(self) -> dict[str, str]:
        """Per layer, where :math:`\\delta` is taken: ``"layer output"`` or ``"output of <module>"``."""
        return {n: "layer output" if p is None else f"output of {p[0]}" for n, p in self.points.items()}

    def attach(self) -> TrainingOpsRecorder:
        """Install the hooks (idempotent) and return ``self``; counting happens while :attr:`active`."""
        self.detach()
        for name, layer in self.layers:
            self._handles.append(layer.register_forward_hook(partial(self._on_layer, name)))
        for point in {id(p[1]): p[1] for p in self.points.values() if p is not None}.values():
            self._handles.append(point.register_forward_hook(self._on_point))
        for meter in self.meters.values():
            meter.to(self.layers[0][1].weight.device)
        return self

    def detach(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def start_step(self) -> None:
        """Begin a training step: time steps of single-step calls count from 0 again."""
        self._calls = {}
        self._waiting = {}

    class _Step:
        def __init__(self, recorder: TrainingOpsRecorder) -> None:
            self.recorder = recorder

        def __enter__(self) -> TrainingOpsRecorder:
            self.recorder.start_step()
            self.recorder.active = True
            return self.recorder

        def __exit__(self, *exc: Any) -> None:
            self.recorder.active = False

    def step(self) -> TrainingOpsRecorder._Step:
        """A context for one counted training step (forward and backward inside it)."""
        return TrainingOpsRecorder._Step(self)

    # --- hooks ------------------------------------------------------------------------------------------------------
    def _on_layer(self, name: str, layer: QuantLayerMixin, args: tuple[Any, ...], output: Tensor) -> None:
        if not self.active or not torch.is_grad_enabled() or not output.requires_grad:
            return
        x = args[0]
        multi = layer.is_multi_step(x)
        inputs = x.detach() if multi else x.detach().unsqueeze(0)
        first = self._calls.get(name, 0)
        self._calls[name] = first + inputs.shape[0]
        codes, qmax = layer_codes_for_counts(layer)
        out_shape = tuple(output.shape) if multi else (1, *output.shape)
        linear = self.meters[name].geometry.kind == "linear"
        features = inputs.shape[-1:] if linear else inputs.shape[2:]
        rows = inputs[..., 0].numel() if linear else math.prod(inputs.shape[:2])
        call = _Call(
            name=name,
            inputs=inputs,
            codes=codes,
            qmax=qmax,
            first_step=first,
            input_grad=x.requires_grad,
            out_shape=out_shape,
            macs=self.meters[name].geometry.ops(tuple(features)) * rows,
        )
        point = self.points[name]
        if point is None:
            output.register_hook(partial(self._count, call))
        else:
            self._waiting.setdefault(id(point[1]), []).append(call)

    def _on_point(self, module: nn.Module, args: tuple[Any, ...], output: Tensor) -> None:
        waiting = self._waiting.get(id(module))
        if not waiting:
            return
        call = waiting.pop(0)
        if output.requires_grad:
            output.register_hook(partial(self._count, call))

    def _count(self, call: _Call, grad: Tensor) -> None:
        if grad.numel() != math.prod(call.out_shape):
            raise ValueError(
                f"layer {call.name!r}: the gradient at its delta point has {grad.numel()} elements but the layer's "
                f"output has {math.prod(call.out_shape)}; take delta at the layer (delta_at='layer') or name the "
                "module between the layer and its neuron in norms=."
            )
        ops = training_step_counts(
            self.meters[call.name].geometry,
            call.inputs,
            grad.reshape(call.out_shape),
            call.codes,
            call.qmax,
            input_grad=call.input_grad,
            threshold=self.threshold,
        )
        self.meters[call.name].update(ops, call.first_step, call.macs)

    # --- results ----------------------------------------------------------------------------------------------------
    def compute(self) -> dict[str, TrainingOpsResult]:
        """Per layer that counted something, its :class:`~quest_lightning.metrics.training.TrainingOpsResult` (one
        host synchronisation per layer: call it at the end of an epoch)."""
        with warnings.catch_warnings():  # a meter restored from a checkpoint has sums but no update in this process
            warnings.filterwarnings("ignore", message=r".*was called before the ``update`` method.*")
            results = {name: m.compute() for name, m in self.meters.items()}
        return {name: r for name, r in results.items() if int(r.samples) > 0}

    def reset(self) -> None:
        """Zero every meter."""
        for meter in self.meters.values():
            meter.reset()
