"""Introspection for the analysis layer: find the quantized layers and neurons of any model, switch the cheap
recording of input counts (layers) and output spike counts (neurons) on and off, and read what a layer recorded
(:func:`layer_recordings`, :class:`LayerRecording`) and what its input was (:func:`input_kind_of`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from quest_lightning.nn.layer_input import InputKind
from quest_lightning.nn.layers import QuantLayerMixin
from quest_lightning.nn.neurons.base import QuantNeuron


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a Lightning module (its ``.model``), or ``model`` itself."""
    inner = getattr(model, "model", None)
    return inner if isinstance(inner, nn.Module) and hasattr(model, "encoder") else model


def synaptic_layers(model: nn.Module) -> list[tuple[str, QuantLayerMixin]]:
    """Every ``QuantConv2d``/``QuantLinear`` of ``model`` with its module name, quantized or not, in module order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, QuantLayerMixin)]


def quantized_layers(model: nn.Module) -> list[tuple[str, QuantLayerMixin]]:
    """The layers of ``model`` whose weights are quantized (``enabled=True``), with stable module names."""
    return [(name, m) for name, m in synaptic_layers(model) if m.enabled]


def spiking_neurons(model: nn.Module) -> list[tuple[str, QuantNeuron]]:
    """Every quest-lightning neuron of ``model`` with its module name."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, QuantNeuron)]


def reset_states(model: nn.Module) -> None:
    """Zero the state every neuron of ``model`` keeps between calls, as its library does, before a new sequence.

    SpikingJelly's neurons (``MemoryModule``: its own and quest-lightning's ``QuantIFNode``/``QuantLIFNode``, which
    are theirs) are reset by ``spikingjelly.activation_based.functional.reset_net``; snnTorch's with
    ``init_hidden=True`` (``QuantLeaky`` included) by ``snntorch.utils.reset``, which forgets the graph of the last
    sequence too. A network of :class:`~quest_lightning.nn.vgg.SpikingBlock` keeps no state, so the reset changes
    nothing there. A converted network needs it between batches, or its neurons start each batch from the last one's
    membranes (and a second ``backward`` walks the first batch's graph).
    """
    import snntorch as snn
    from spikingjelly.activation_based import base, functional

    memory = hidden = False
    for m in model.modules():
        memory = memory or isinstance(m, base.MemoryModule)
        hidden = hidden or (isinstance(m, snn.SpikingNeuron) and getattr(m, "init_hidden", False))
    if memory:
        functional.reset_net(model)
    if hidden:
        from snntorch import utils as snn_utils

        snn_utils.reset(model)


def require_quantized_layers(model: nn.Module, who: str) -> list[tuple[str, QuantLayerMixin]]:
    """:func:`quantized_layers`, or a ``ValueError`` telling the user what to change when there are none."""
    layers = quantized_layers(model)
    if not layers:
        found = len(synaptic_layers(model))
        hint = (
            f"it has {found} QuantConv2d/QuantLinear layer(s) but all have enabled=False; enable quantization on them"
            if found
            else "replace nn.Conv2d/nn.Linear with quest_lightning.nn.QuantConv2d/QuantLinear (or build the network "
            "with quest_lightning.nn.spiking_vgg)"
        )
        raise ValueError(f"{who} needs a model with quantized layers, but {type(model).__name__} has none: {hint}.")
    return layers


def set_recording(model: nn.Module, enabled: bool = True) -> None:
    """Turn spike-count recording on or off in every layer and neuron of ``model``."""
    for _, m in synaptic_layers(model):
        m.record = enabled
    for _, n in spiking_neurons(model):
        n.record = enabled


def reset_recording(model: nn.Module) -> None:
    """Zero every recorded count in ``model``."""
    for _, m in synaptic_layers(model):
        m.reset_recording()
    for _, n in spiking_neurons(model):
        n.reset_recording()


@contextmanager
def recording(model: nn.Module) -> Iterator[nn.Module]:
    """Record spike counts inside the ``with`` block, restoring the previous flags afterwards."""
    previous = [(m, m.record) for _, m in synaptic_layers(model)] + [(n, n.record) for _, n in spiking_neurons(model)]
    set_recording(model, True)
    try:
        yield model
    finally:
        for m, flag in previous:
            m.record = flag


@dataclass(frozen=True)
class LayerRecording:
    """What one synaptic layer recorded since its last :meth:`~QuantLayerMixin.reset_recording` (see
    :meth:`~quest_lightning.nn.layer_input.LayerInputMixin.record_input` for how each record is made).

    The tensors are copies on the layer's device (taking a snapshot does not synchronise with the host); the rest
    are Python ints taken from input shapes.

    Attributes:
        name: the layer's module name.
        input_counts: float64 ``[features...]`` (``[C, H, W]`` for a conv, ``[F]`` for a linear layer): the input
            summed per position over every recorded row; for spike input, the spike count per position (integral,
            exact up to :math:`2^{53}`).
        nonbinary_inputs: int64 scalar: how many recorded input elements were neither 0 nor 1.
        rows: vectors the weight met, time steps × samples.
        calls: forward calls recorded.
        steps: time steps recorded: the time axis length of each multi-step call plus 1 per single-step call.
        input_kind: the layer's ``input_kind`` override (``"auto"``, ``"spikes"`` or ``"analog"``).
    """

    name: str
    input_counts: Tensor
    nonbinary_inputs: Tensor
    rows: int
    calls: int
    steps: int
    input_kind: InputKind

    @property
    def samples(self) -> int | None:
        """Samples recorded, :math:`\\text{rows}/\\text{steps}`, when the records cover one batch (or batches of
        one size); ``None`` when nothing was recorded or ``steps`` does not divide ``rows`` (the layer saw inputs
        of different batch sizes: take a snapshot per batch and use :meth:`since`).

        >>> import torch
        >>> LayerRecording("fc", torch.zeros(3), torch.zeros((), dtype=torch.int64), 32, 1, 4, "auto").samples
        8
        """
        if self.steps == 0 or self.rows % self.steps:
            return None
        return self.rows // self.steps

    @property
    def timesteps(self) -> int:
        """Time steps :math:`T` recorded (``steps``): per batch, the time axis of a multi-step call, or the number
        of calls of a single-step loop."""
        return self.steps

    def since(self, earlier: LayerRecording) -> LayerRecording:
        """What was recorded between ``earlier`` (a snapshot of the same layer, with no reset in between) and this
        snapshot: every record's difference.

        Raises:
            ValueError: ``earlier`` is from another layer or is newer than this snapshot.
        """
        if earlier.name != self.name or earlier.calls > self.calls:
            raise ValueError(
                f"since() needs an earlier snapshot of layer {self.name!r}, got one of {earlier.name!r} with "
                f"{earlier.calls} calls (this one has {self.calls})."
            )
        counts = self.input_counts - earlier.input_counts if earlier.input_counts.numel() else self.input_counts
        return LayerRecording(
            self.name,
            counts,
            self.nonbinary_inputs - earlier.nonbinary_inputs,
            self.rows - earlier.rows,
            self.calls - earlier.calls,
            self.steps - earlier.steps,
            self.input_kind,
        )


def layer_recording(name: str, layer: QuantLayerMixin) -> LayerRecording:
    """A :class:`LayerRecording` snapshot of ``layer`` (its tensors copied on the device; no host synchronisation)."""
    return LayerRecording(
        name,
        layer.input_counts.clone(),
        layer.nonbinary_inputs.clone(),
        layer.recorded_rows,
        layer.recorded_calls,
        layer.recorded_steps,
        layer.input_kind,
    )


def layer_recordings(model: nn.Module) -> dict[str, LayerRecording]:
    """A :class:`LayerRecording` of every synaptic layer of ``model`` that recorded at least one call, by module
    name in module order (no host synchronisation)."""
    return {name: layer_recording(name, m) for name, m in synaptic_layers(model) if m.recorded_calls}


def input_kind_of(layer: QuantLayerMixin | LayerRecording) -> Literal["spikes", "analog"] | None:
    """What a layer's input is, for the operation counts: its ``input_kind`` override when set, otherwise what it
    recorded: ``"analog"`` when any recorded input element was neither 0 nor 1 (pixels under direct coding, or
    graded values after average pooling), ``"spikes"`` when every one was 0 or 1, and ``None`` when it has recorded
    nothing. The position of the layer in the network plays no part.

    This reads one on-device count (a host synchronisation): call it at the end of an epoch, not per batch.

    >>> import torch
    >>> from quest_lightning.nn import QuantLinear
    >>> layer = QuantLinear(3, 2, bits=2)
    >>> layer.record = True
    >>> _ = layer(torch.tensor([[0.0, 1.0, 1.0]]))
    >>> input_kind_of(layer)
    'spikes'
    >>> _ = layer(torch.tensor([[0.0, 0.5, 1.0]]))
    >>> input_kind_of(layer), input_kind_of(layer_recording("fc", layer))
    ('analog', 'analog')
    >>> layer.input_kind = "spikes"  # the user's override wins
    >>> input_kind_of(layer)
    'spikes'
    """
    if isinstance(layer, LayerRecording):
        kind, calls, nonbinary = layer.input_kind, layer.calls, layer.nonbinary_inputs
    else:
        kind, calls, nonbinary = layer.input_kind, layer.recorded_calls, layer.nonbinary_inputs
    if kind != "auto":
        return kind
    if not calls:
        return None
    return "analog" if bool(nonbinary > 0) else "spikes"


def without_padding(x: Tensor, lead: int, multi: bool, padded: int, name: str) -> tuple[Tensor, int]:
    """A layer's input ``x`` without the last ``padded`` samples of its batch (the repeats a DDP loader adds), and
    the batch it had. The batch axis is 1 for a multi-step call with two or more leading dimensions
    (``[T, B, ...]``), else 0 (``[B, ...]``, one step); an input without leading dimensions is a batch of 1.

    Args:
        x: the input, ``lead`` leading dimensions before the layer's feature dimensions.
        lead: ``x.dim()`` less the layer's ``feature_dims``.
        multi: whether the call is multi-step (``layer.is_multi_step(x)``).
        padded: the padded samples at the end of the batch.
        name: the layer's name, for the error.

    Raises:
        ValueError: ``padded`` is larger than the batch the layer met.
    """
    axis = 1 if multi and lead >= 2 else 0
    batch = x.shape[axis] if lead > axis else 1
    if padded > batch:
        raise ValueError(
            f"the loader reports {padded} padded samples at the end of this batch, but layer {name!r} met a batch of "
            f"{batch}; padded samples must be the last ones of the batch they are in."
        )
    return x.narrow(axis, 0, batch - padded), batch
