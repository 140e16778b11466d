"""Spiking VGG networks built from a config list, with quantized layers and either neuron back-end.

A config is a list of conv widths and ``"P"`` (pool), followed by the hidden fully connected widths. VGG6 (the
DIET-SNN VGG6 that QUEST compares against) is::

    conv3→64 (full precision, direct encoding) → IF → pool
    qconv64→128 → IF
    qconv128→128 → IF → pool
    qfc8192→4096 → IF
    qfc4096→4096 → IF
    fc4096→10 (readout)

Execution is multi-step: every layer takes ``[T, B, ...]`` (time folded into the batch for convolutions and matrix
products) and the neurons scan over ``T``. The output is ``[T, B, classes]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from spikingjelly.activation_based.base import MemoryModule
from torch import Tensor, nn

from quest_lightning.functional.grid import check_bits
from quest_lightning.functional.quantize import check_alpha_init
from quest_lightning.nn.layers import QuantConv2d, QuantLinear
from quest_lightning.nn.neurons import QuantLeaky, QuantNeuron, make_neuron

VGG_CONFIGS: dict[str, tuple[list[int | str], list[int]]] = {
    "vgg6": ([64, "P", 128, 128, "P"], [4096, 4096]),
    "vgg9": ([64, 64, "P", 128, 128, "P", 256, 256, 256, "P"], [1024, 1024]),
    "vgg11": ([64, "P", 128, "P", 256, 256, "P", 512, 512, "P", 512, 512, "P"], [4096, 4096]),
    "vgg16": ([64, 64, "P", 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P", 512, 512, 512, "P"], [4096, 4096]),
}


class TimeSharedDropout(nn.Module):
    """Dropout with one mask per sample shared across the time steps of a ``[T, B, ...]`` input."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout p={p} must lie in [0, 1).")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        mask = torch.empty_like(x[0:1]).bernoulli_(1.0 - self.p) / (1.0 - self.p)
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


class SpikingBlock(nn.Module):
    """Synaptic layer → optional BatchNorm → neuron → optional pool → optional dropout, on ``[T, B, ...]``.

    The neuron is called as a module, so that forward hooks, SpikingJelly's monitors and its op counters see it, in
    its library's convention: a multi-step neuron (SpikingJelly's with ``step_mode="m"``, or a registered back-end's)
    once on the whole ``[T, B, ...]`` sequence; a single-step one once per time step (snnTorch's ``Leaky`` with its
    membrane passed explicitly, a SpikingJelly neuron with ``step_mode="s"`` with its own). Either way the scan starts
    from a zero state and the neuron holds no state afterwards (a block is a function of its input, as before; no
    ``reset_net`` between batches is needed).
    """

    def __init__(
        self,
        layer: QuantConv2d | QuantLinear,
        neuron: QuantNeuron,
        norm: nn.Module | None = None,
        pool: nn.Module | None = None,
        dropout: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.layer, self.norm, self.neuron, self.pool, self.dropout = layer, norm, neuron, pool, dropout
        neuron.share_scale_with(layer)

    def forward(self, x: Tensor) -> Tensor:
        y = self.layer(x)
        if self.norm is not None:
            y = self.norm(y.flatten(0, 1)).unflatten(0, y.shape[:2])
        s = self._fire(y)
        if self.pool is not None:
            s = self.pool(s.flatten(0, 1)).unflatten(0, s.shape[:2])
        if self.dropout is not None:
            s = self.dropout(s)
        return s

    def _fire(self, y: Tensor) -> Tensor:
        """The neuron module on the currents ``y`` (``[T, B, ...]``), from a zero state: the spikes ``[T, B, ...]``."""
        neuron = self.neuron
        memory = isinstance(neuron, MemoryModule)  # SpikingJelly's: the state lives in the module (``v``)
        if isinstance(neuron, QuantLeaky):  # snnTorch's Leaky: one call per step, the membrane passed explicitly
            mem, spikes = torch.zeros_like(y[0]), []
            for y_t in y.unbind(0):
                s_t, mem = neuron(y_t, mem)
                spikes.append(s_t)
            neuron.reset_mem()
            return torch.stack(spikes)
        if memory:
            neuron.reset()
        if neuron.called_per_step:  # a single-step SpikingJelly neuron: one call per step
            out = torch.stack([neuron(y_t) for y_t in y.unbind(0)])
        else:  # multi-step: one call on the sequence (SpikingJelly's step_mode="m", a registered back-end's neuron)
            out = neuron(y)
        if memory:
            neuron.reset()
        return out


class SpikingVGG(nn.Module):
    """A spiking VGG: ``forward([T, B, C, H, W]) -> [T, B, num_classes]`` (readout currents per step).

    Args:
        config: conv widths and ``"P"`` for pooling, e.g. ``[64, "P", 128, 128, "P"]``.
        fc: hidden fully connected widths, e.g. ``[4096, 4096]``.
        in_channels, image_size, num_classes: input and output geometry.
        bits: weight bit width :math:`b_w` of the quantized layers.
        neuron: ``"if"`` or ``"lif"``; reset: ``"hard"`` or ``"soft"``.
        backend: a registered neuron back-end (``"spikingjelly"``, ``"snntorch"``; see
            :func:`~quest_lightning.nn.neurons.registry.list_backends`).
        threshold: firing threshold :math:`\\theta`; decay: LIF :math:`\\lambda`; surrogate: surrogate name.
        detach_reset: stop the gradient through the reset.
        transform: MINT pre-transform, ``"tanh"`` or ``"identity"``.
        alpha_init: initial scale of the quantized layers, ``"mint"`` (MINT's :math:`2\\overline{|W|}/\\sqrt{Q_b}`)
            or ``"range"`` (a high percentile of :math:`|T(W)|`); see
            :func:`~quest_lightning.functional.quantize.initial_alpha`.
        pool: ``"max"`` (keeps spikes binary) or ``"avg"``.
        batch_norm: BatchNorm after each conv (off by default: it breaks integer-only deployment unless folded).
        dropout: time-shared dropout on the hidden FC spikes (0 disables).
        quantize_first: quantize the first (analog-input) conv; quantize_readout: quantize the readout.
        quantize: ``False`` gives the full-precision (FP32) network with the same structure, for baselines.

    Raises:
        ValueError: a bad option (bits, including ``bits=1`` for a quantized network, neuron, reset, back-end,
            surrogate, alpha_init, pool, dropout, config). Whether a memory device can hold the network is checked on
            the built model by :func:`quest_lightning.devices.capability.check_model`.
    """

    def __init__(
        self,
        config: Sequence[int | str],
        fc: Sequence[int],
        *,
        in_channels: int = 3,
        image_size: int = 32,
        num_classes: int = 10,
        bits: int = 2,
        neuron: Literal["if", "lif"] = "if",
        reset: Literal["hard", "soft"] = "hard",
        backend: str = "spikingjelly",
        threshold: float = 0.5,
        decay: float = 0.5,
        surrogate: str = "triangle",
        detach_reset: bool = False,
        transform: Literal["tanh", "identity"] = "tanh",
        alpha_init: Literal["mint", "range"] = "mint",
        pool: Literal["max", "avg"] = "max",
        batch_norm: bool = False,
        dropout: float = 0.0,
        quantize_first: bool = False,
        quantize_readout: bool = False,
        quantize: bool = True,
    ) -> None:
        super().__init__()
        check_bits(bits)
        check_alpha_init(alpha_init)
        if pool not in ("max", "avg"):
            raise ValueError(f"pool={pool!r} is unknown: use 'max' or 'avg'.")
        if not any(isinstance(c, int) for c in config):
            raise ValueError(f"config={list(config)!r} has no conv layer; give conv widths and 'P' for pooling.")
        self.bits, self.neuron_kind, self.reset, self.backend = bits, neuron, reset, backend

        def neuron_() -> QuantNeuron:
            return make_neuron(
                backend,
                neuron,
                reset,
                threshold=threshold,
                decay=decay,
                surrogate=surrogate,
                detach_reset=detach_reset,
            )

        quant = dict(bits=bits, transform=transform, alpha_init=alpha_init)
        blocks: list[SpikingBlock] = []
        channels, size, first = in_channels, image_size, True
        # what the next layer sees: the encoder's output for the first ("auto", counted from what it records), then
        # spikes, unless average pooling or dropout made them graded
        kind = "auto"
        for i, item in enumerate(config):
            if item == "P":
                continue
            if not isinstance(item, int) or item < 1:
                raise ValueError(f"config[{i}]={item!r} must be a positive conv width or 'P'.")
            pooled = i + 1 < len(config) and config[i + 1] == "P"
            enabled = quantize and (quantize_first or not first)
            layer = QuantConv2d(channels, item, 3, padding=1, enabled=enabled, input_kind=kind, **quant)
            pool_mod = (nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2)) if pooled else None
            blocks.append(SpikingBlock(layer, neuron_(), nn.BatchNorm2d(item) if batch_norm else None, pool_mod))
            channels, size, first = item, size // 2 if pooled else size, False
            kind = "auto" if pooled and pool == "avg" else "spikes"
        features = channels * size * size
        for width in fc:
            drop = TimeSharedDropout(dropout) if dropout > 0 else None
            fc_layer = QuantLinear(features, width, enabled=quantize, input_kind=kind, **quant)
            blocks.append(SpikingBlock(fc_layer, neuron_(), dropout=drop))
            features, kind = width, "auto" if drop is not None else "spikes"
        self.features = nn.ModuleList(b for b in blocks if isinstance(b.layer, QuantConv2d))
        self.classifier = nn.ModuleList(b for b in blocks if isinstance(b.layer, QuantLinear))
        self.readout = QuantLinear(
            features, num_classes, enabled=quantize and quantize_readout, input_kind=kind, **quant
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5:
            raise ValueError(
                f"SpikingVGG expects [T, B, C, H, W] input (encode the batch first), got shape {tuple(x.shape)}."
            )
        for block in self.features:
            x = block(x)
        x = x.flatten(2)
        for block in self.classifier:
            x = block(x)
        return self.readout(x)


def spiking_vgg(name: str = "vgg6", **kwargs) -> SpikingVGG:
    """Build a named spiking VGG (``"vgg6"``, ``"vgg9"``, ``"vgg11"``, ``"vgg16"``); keywords as :class:`SpikingVGG`."""
    if name not in VGG_CONFIGS:
        raise ValueError(f"model {name!r} is unknown: use one of {sorted(VGG_CONFIGS)} or SpikingVGG(config, fc).")
    config, fc = VGG_CONFIGS[name]
    kwargs.setdefault("fc", fc)
    return SpikingVGG(config, **kwargs)
