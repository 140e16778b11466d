"""The layer graph of a quest-lightning network, and what the integer-only path can represent.

:func:`trace` flattens a network into its stages in execution order: synapses (``QuantConv2d``/``QuantLinear``),
BatchNorm, neurons, pooling and flattening. It knows :class:`~quest_lightning.nn.vgg.SpikingVGG`,
:class:`~quest_lightning.nn.vgg.SpikingBlock`, ``nn.Sequential`` and a Lightning module holding the network in
``.model``; dropout and identities are inference no-ops and are left out.

:func:`plan` decides, stage by stage, which arithmetic a deployment uses, and refuses what it cannot represent:

* a synapse is **integer** when its weights are quantized and its input is spikes: its current is the sum of the
  integer codes of the weights that meet a spike. The first layer sees the analog input (direct coding), so it is a
  **float32** front end, like a full-precision layer;
* a neuron after an integer synapse must be IF (a leak needs a multiplier) with a hard or soft reset, and its
  membrane must be quantized on that layer's grid: the same :math:`\\alpha` (``share_scale_with``) and the same bit
  width. Then its threshold and its requantization are integer comparisons
  (:func:`~quest_lightning.functional.integer.integer_neuron_program`);
* BatchNorm must be folded into the preceding layer first (its affine transform needs a multiplier);
* average pooling of spikes gives fractional inputs, so an integer synapse may not follow it (max pooling keeps
  spikes binary);
* every quantized layer uses one bit width: one R-S pattern maps one grid onto the device states.

Every refusal is a :class:`NotDeployableError` naming the module, what was found and what to do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from quest_lightning.nn.inspect import require_quantized_layers, unwrap
from quest_lightning.nn.layers import QuantConv2d, QuantLayerMixin, QuantLinear
from quest_lightning.nn.neurons.base import QuantNeuron
from quest_lightning.nn.vgg import SpikingBlock, SpikingVGG, TimeSharedDropout

__all__ = [
    "NotDeployableError",
    "PlannedStage",
    "Stage",
    "infer_input_shape",
    "model_spikes",
    "plan",
    "pool_geometry",
    "synapse_geometry",
    "trace",
    "unwrap",
]

StageKind = Literal["synapse", "norm", "neuron", "pool", "flatten"]
Arithmetic = Literal["integer", "float32"]
_SKIPPED = (nn.Dropout, TimeSharedDropout, nn.Identity)
_FOLD_HINT = (
    "fold BatchNorm into the preceding layer first (quantize(..., fold_bn=True)), or build the network "
    "without BatchNorm"
)


class NotDeployableError(ValueError):
    """The network holds something a deployment bundle cannot represent; the message names the module and the fix."""


@dataclass(frozen=True)
class Stage:
    """One stage of a traced network.

    Attributes:
        kind: ``"synapse"``, ``"norm"``, ``"neuron"``, ``"pool"`` or ``"flatten"``.
        name: The module's name in the network (``"flatten"`` stages are named after their position).
        module: The module (``None`` for the flatten between the convolutional and the dense part of a VGG).
    """

    kind: StageKind
    name: str
    module: nn.Module | None


@dataclass(frozen=True)
class PlannedStage:
    """A stage with the arithmetic a deployment uses for it.

    Attributes:
        stage: The traced stage.
        arithmetic: ``"integer"`` (codes, accumulators and comparisons) or ``"float32"``.
        spiking_input: Whether the stage's input is binary spikes.
        readout: True for the last synapse, which has no neuron: its currents are the network's output.
        source: For a neuron, the synapse feeding it.
    """

    stage: Stage
    arithmetic: Arithmetic
    spiking_input: bool
    readout: bool = False
    source: Stage | None = None

    @property
    def name(self) -> str:
        return self.stage.name

    @property
    def kind(self) -> StageKind:
        return self.stage.kind

    @property
    def module(self) -> nn.Module | None:
        return self.stage.module


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _trace(module: nn.Module, prefix: str, out: list[Stage]) -> None:
    if isinstance(module, SpikingVGG):
        for i, block in enumerate(module.features):
            _trace(block, _join(prefix, f"features.{i}"), out)
        out.append(Stage("flatten", _join(prefix, "flatten"), None))
        for i, block in enumerate(module.classifier):
            _trace(block, _join(prefix, f"classifier.{i}"), out)
        _trace(module.readout, _join(prefix, "readout"), out)
    elif isinstance(module, SpikingBlock):
        for part in ("layer", "norm", "neuron", "pool", "dropout"):
            child = getattr(module, part)
            if child is not None:
                _trace(child, _join(prefix, part), out)
    elif isinstance(module, nn.Sequential):
        for name, child in module.named_children():
            _trace(child, _join(prefix, name), out)
    elif isinstance(module, QuantLayerMixin):
        out.append(Stage("synapse", prefix, module))
    elif isinstance(module, QuantNeuron):
        out.append(Stage("neuron", prefix, module))
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        out.append(Stage("norm", prefix, module))
    elif isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        out.append(Stage("pool", prefix, module))
    elif isinstance(module, nn.Flatten):
        # on [T, B, ...]: nn.Flatten(2), or a multi-step module (SpikingJelly's layer.Flatten) flattening from 1
        start = module.start_dim + (1 if getattr(module, "step_mode", "s") == "m" else 0)
        if start != 2 or module.end_dim != -1:
            raise NotDeployableError(
                f"{prefix!r} is {type(module).__name__}(start_dim={module.start_dim}, end_dim={module.end_dim}); on "
                "[T, B, ...] input a network flattens each sample: nn.Flatten(start_dim=2) or SpikingJelly's "
                "layer.Flatten(start_dim=1, step_mode='m')."
            )
        out.append(Stage("flatten", prefix, module))
    elif isinstance(module, _SKIPPED):
        return
    else:
        raise NotDeployableError(
            f"module {prefix or '<root>'!r} of type {type(module).__name__} cannot be exported: a bundle holds "
            "QuantConv2d/QuantLinear, quest-lightning neurons, BatchNorm (folded), MaxPool2d/AvgPool2d, Flatten and "
            "Dropout, in a SpikingVGG, SpikingBlock or nn.Sequential."
        )


def trace(model: nn.Module) -> list[Stage]:
    """The stages of ``model`` in execution order (see the module docstring for what is understood).

    Raises:
        NotDeployableError: A module that is none of the known kinds, named with its path and type.
    """
    out: list[Stage] = []
    _trace(unwrap(model), "", out)
    if not any(s.kind == "synapse" for s in out):
        raise NotDeployableError(f"{type(model).__name__} has no QuantConv2d/QuantLinear layer to export.")
    return out


def infer_input_shape(model: nn.Module) -> tuple[int, ...]:
    """The per-sample input shape ``(C, H, W)`` of a :class:`SpikingVGG` (from its first conv, its first dense
    layer and its pooling), or ``(F,)`` of a network whose first synapse is a ``QuantLinear``.

    Raises:
        NotDeployableError: The shape cannot be read off the network; pass ``input_shape`` explicitly.
    """
    net = unwrap(model)
    stages = trace(net)
    first = next(s.module for s in stages if s.kind == "synapse")
    if isinstance(first, QuantLinear):
        return (first.in_features,)
    if isinstance(net, SpikingVGG):
        dense = net.classifier[0].layer if len(net.classifier) else net.readout
        channels = net.features[-1].layer.out_channels
        pools = sum(1 for b in net.features if b.pool is not None)
        side = math.isqrt(dense.in_features // channels)
        if side * side * channels == dense.in_features:
            return (first.in_channels, side * 2**pools, side * 2**pools)
    raise NotDeployableError(
        f"the input shape of {type(net).__name__} cannot be read off the network; pass input_shape=(C, H, W)."
    )


def _check_neuron(neuron: Stage, synapse: Stage) -> None:
    n, layer = neuron.module, synapse.module
    assert isinstance(n, QuantNeuron) and isinstance(layer, QuantLayerMixin)
    where = f"neuron {neuron.name!r} after {synapse.name!r}"
    if n.leaky:
        raise NotDeployableError(
            f"{where} is leaky (decay={n.decay}): LIF cannot run on the integer path (its leak needs a multiplier); "
            "train an IF neuron (neuron='if', decay=1)."
        )
    if n.reset_mode == "none":
        raise NotDeployableError(f"{where} has reset='none'; the integer path needs a hard or soft reset.")
    if n.scale_source is not layer:
        found = "no layer" if n.scale_source is None else "another layer"
        raise NotDeployableError(
            f"{where} does not share its layer's scale (its membrane is quantized with {found}'s alpha): the "
            f"integer path needs the membrane on the weights' grid; call neuron.share_scale_with(layer)."
        )
    if n.mem_bits not in (None, layer.bits):
        raise NotDeployableError(
            f"{where} has mem_bits={n.mem_bits} but the layer has bits={layer.bits}: mixed bit widths cannot share "
            "one integer grid; leave mem_bits=None (the layer's bits)."
        )


def plan(model: nn.Module, *, input_spikes: bool = False) -> list[PlannedStage]:
    """Trace ``model`` and assign each stage its arithmetic, refusing what a bundle cannot represent.

    Args:
        model: The network (or a Lightning module holding it in ``.model``).
        input_spikes: Whether the network's input is binary spikes (rate or latency coding); with direct coding
            (the default) the first synapse sees analog values and is a float32 front end.

    Returns:
        The planned stages in execution order.

    Raises:
        NotDeployableError: No quantized layer; mixed weight bit widths; unfolded BatchNorm; a LIF neuron, a neuron
            without reset, a membrane not on its layer's grid, or mixed membrane bits after an integer synapse; an
            integer synapse after average pooling; a neuron or pool in an unexpected place. Each message names the
            module.
    """
    net = unwrap(model)
    try:
        layers = require_quantized_layers(net, "export")
    except ValueError as err:
        raise NotDeployableError(str(err)) from None
    bits = sorted({layer.bits for _, layer in layers})
    if len(bits) > 1:
        per = ", ".join(f"{name}: {layer.bits}" for name, layer in layers)
        raise NotDeployableError(
            f"the quantized layers use different bit widths ({per}): one R-S pattern maps one grid onto the device "
            "states; train every quantized layer with the same bits."
        )
    stages = trace(net)
    planned: list[PlannedStage] = []
    spiking = input_spikes
    last_synapse: PlannedStage | None = None
    synapse_indices = [i for i, s in enumerate(stages) if s.kind == "synapse"]
    for i, stage in enumerate(stages):
        if stage.kind == "norm":
            raise NotDeployableError(f"BatchNorm {stage.name!r} is not folded: {_FOLD_HINT}.")
        if stage.kind == "synapse":
            layer = stage.module
            assert isinstance(layer, QuantLayerMixin)
            readout = i == synapse_indices[-1] and not any(s.kind == "neuron" for s in stages[i + 1 :])
            # a readout bias is added to a scaled sum, which is no integer comparison: that readout stays float32
            integer = layer.enabled and spiking and not (readout and layer.bias is not None)
            if layer.enabled and not spiking and last_synapse is not None:
                raise NotDeployableError(
                    f"{stage.name!r} is quantized but its input is not binary spikes (average pooling or a layer "
                    "without a neuron before it): the integer path needs spikes; use max pooling."
                )
            last_synapse = PlannedStage(stage, "integer" if integer else "float32", spiking, readout)
            planned.append(last_synapse)
            spiking = False
        elif stage.kind == "neuron":
            if last_synapse is None or planned[-1].kind != "synapse":
                raise NotDeployableError(
                    f"neuron {stage.name!r} does not follow a synapse directly; a bundle holds layer → neuron blocks."
                )
            if last_synapse.arithmetic == "integer":
                _check_neuron(stage, last_synapse.stage)
            planned.append(PlannedStage(stage, last_synapse.arithmetic, False, source=last_synapse.stage))
            spiking = True
        elif stage.kind == "pool":
            pool = stage.module
            if isinstance(pool, nn.AvgPool2d):
                spiking = False
            planned.append(PlannedStage(stage, "integer" if spiking else "float32", spiking))
        else:
            planned.append(PlannedStage(stage, "integer" if spiking else "float32", spiking))
    return planned


def model_spikes(model: nn.Module, x_seq: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """``(output, spikes per neuron)`` of ``model`` on ``x_seq`` (``[T, B, ...]``), in inference mode.

    The spikes are what its neurons return in its own forward pass, read by a forward hook on each neuron module:
    ``[T, B, ...]`` from a multi-step neuron's one call, or a single-step neuron's calls
    (:attr:`~quest_lightning.nn.neurons.base.QuantNeuron.called_per_step`) stacked over time.

    Raises:
        ValueError: A neuron was not called as a module exactly once on the sequence (or once per time step), so its
            spikes cannot be read from its calls (a network that calls ``neuron.multi_step`` itself bypasses the
            hooks: call the module, ``neuron(x)``).
    """
    from quest_lightning.nn.inspect import spiking_neurons

    net = unwrap(model)
    neurons = spiking_neurons(net)
    calls: dict[str, list[Tensor]] = {name: [] for name, _ in neurons}

    def keep(name: str):  # a forward hook appending the spikes (snnTorch's Leaky returns (spk, mem))
        return lambda module, args, out: calls[name].append((out[0] if isinstance(out, tuple) else out).detach())

    handles = [neuron.register_forward_hook(keep(name)) for name, neuron in neurons]
    try:
        with torch.no_grad():
            out = net(x_seq)
    finally:
        for h in handles:
            h.remove()
    steps = int(x_seq.shape[0])
    store: dict[str, Tensor] = {}
    for name, neuron in neurons:
        got, per_step = calls[name], neuron.called_per_step
        if len(got) != (steps if per_step else 1):
            want = f"once per time step ({steps} times)" if per_step else "once on the [T, B, ...] sequence"
            raise ValueError(
                f"neuron {name!r} was called {len(got)} time(s) as a module in one forward pass, expected {want}: "
                "its spikes cannot be read from its calls. Call the neuron module (neuron(x)), not neuron.multi_step, "
                "and each neuron once per pass."
            )
        store[name] = torch.stack(got) if per_step else got[0]
    return out, store


def synapse_geometry(layer: QuantLayerMixin) -> dict[str, object]:
    """The shape parameters of a synapse, JSON-safe (what the graph in a bundle's manifest records)."""
    if isinstance(layer, QuantConv2d):
        if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            raise NotDeployableError(
                f"{type(layer).__name__} with padding={layer.padding!r}, padding_mode={layer.padding_mode!r} is not "
                "supported; use integer padding with padding_mode='zeros'."
            )
        return {
            "op": "conv2d",
            "in_channels": layer.in_channels,
            "out_channels": layer.out_channels,
            "kernel_size": list(layer.kernel_size),
            "stride": list(layer.stride),
            "padding": list(layer.padding),
            "dilation": list(layer.dilation),
            "groups": layer.groups,
        }
    assert isinstance(layer, QuantLinear)
    return {"op": "linear", "in_features": layer.in_features, "out_features": layer.out_features}


def pool_geometry(pool: nn.Module) -> dict[str, object]:
    """The parameters of a pooling stage, JSON-safe."""

    def pair(v: int | Sequence[int] | None, default: int) -> list[int]:
        v = default if v is None else v
        return [int(v), int(v)] if isinstance(v, int) else [int(x) for x in v]

    assert isinstance(pool, nn.MaxPool2d | nn.AvgPool2d)
    kernel = pair(pool.kernel_size, 1)
    out: dict[str, object] = {
        "op": "maxpool2d" if isinstance(pool, nn.MaxPool2d) else "avgpool2d",
        "kernel_size": kernel,
        "stride": pair(pool.stride, kernel[0]),
        "padding": pair(pool.padding, 0),
    }
    if isinstance(pool, nn.MaxPool2d) and (pool.dilation not in (1, (1, 1)) or pool.ceil_mode):
        raise NotDeployableError(
            f"MaxPool2d with dilation={pool.dilation}, ceil_mode={pool.ceil_mode} is not supported."
        )
    if isinstance(pool, nn.AvgPool2d) and (pool.ceil_mode or not pool.count_include_pad or pool.divisor_override):
        raise NotDeployableError(
            "AvgPool2d with ceil_mode, count_include_pad=False or divisor_override is not supported."
        )
    return out
