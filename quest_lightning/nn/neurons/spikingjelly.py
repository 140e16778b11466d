"""``QuantIFNode`` / ``QuantLIFNode``: SpikingJelly-style neurons over the shared MINT step.

They take SpikingJelly's configuration (``v_threshold``, ``v_reset`` with ``None`` for a soft reset,
``surrogate_function``, ``detach_reset``, ``step_mode``) and are SpikingJelly ``MemoryModule`` s, so
``functional.reset_net`` resets them. With quantization off they equal ``IFNode`` / ``LIFNode`` exactly:
SpikingJelly's LIF charge :math:`H = V + (X - V)/\\tau` is the shared step with :math:`\\lambda = 1 - 1/\\tau` and the
input scaled by :math:`1/\\tau` (``decay_input=True``).

This module registers the ``"spikingjelly"`` back-end: :func:`build_node` makes an IF node, or a LIF node with
``decay_input=False`` and :math:`\\tau = 1/(1 - \\lambda)`, so that it charges :math:`H_t = \\lambda U_{t-1} + X_t`.
"""

from __future__ import annotations

from spikingjelly.activation_based.base import MemoryModule
from torch import Tensor

from quest_lightning.functional.neuron import NeuronParams
from quest_lightning.functional.surrogate import SpikeFn, get_surrogate
from quest_lightning.nn.neurons.base import QuantNeuron
from quest_lightning.nn.neurons.registry import register_backend


def _reset_from_v_reset(v_reset: float | None) -> str:
    if v_reset is None:
        return "soft"
    if v_reset != 0.0:
        raise ValueError(
            f"v_reset={v_reset} is not supported: the MINT grid is symmetric around 0, so use v_reset=0.0 "
            "(hard reset) or v_reset=None (soft reset)."
        )
    return "hard"


class _QuantSJNode(QuantNeuron, MemoryModule):
    """The SpikingJelly-style shell shared by :class:`QuantIFNode` and :class:`QuantLIFNode` (an IF node until a
    subclass sets a decay)."""

    def __init__(
        self,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: SpikeFn | str | None = None,
        detach_reset: bool = False,
        step_mode: str = "s",
        store_v_seq: bool = False,
        *,
        mem_bits: int | None = None,
    ) -> None:
        super().__init__()
        if step_mode not in ("s", "m"):
            raise ValueError(
                f"step_mode={step_mode!r} is unknown: use 's' (single step) or 'm' (multi-step [T, B, ...])."
            )
        self.v_reset = v_reset
        self.step_mode = step_mode
        self.store_v_seq = store_v_seq
        params = NeuronParams(threshold=v_threshold, reset=_reset_from_v_reset(v_reset), detach_reset=detach_reset)
        spike_fn = get_surrogate(surrogate_function if surrogate_function is not None else "sj.Sigmoid")
        self._init_neuron(spike_fn=spike_fn, params=params, mem_bits=mem_bits)
        self.register_memory("v", 0.0)

    @property
    def v_threshold(self) -> float:
        return self.threshold

    def _charge_input(self, x: Tensor) -> Tensor:
        return x

    def _state(self, like: Tensor) -> Tensor | None:
        v = self.v
        return v if isinstance(v, Tensor) and v.shape == like.shape else None

    def single_step_forward(self, x: Tensor) -> Tensor:
        spikes, _, self.v = self.step(self._charge_input(x), self._state(x))
        return spikes

    def multi_step_forward(self, x_seq: Tensor) -> Tensor:
        if x_seq.dim() < 2:
            raise ValueError(f"step_mode='m' expects [T, B, ...] input, got shape {tuple(x_seq.shape)}.")
        membrane = "post" if self.store_v_seq else "none"
        spikes, v_seq, self.v = self._scan(self._charge_input(x_seq), self._state(x_seq[0]), membrane)
        if self.store_v_seq:
            self.v_seq = v_seq
        return spikes

    def forward(self, x: Tensor) -> Tensor:
        return self.single_step_forward(x) if self.step_mode == "s" else self.multi_step_forward(x)

    def extra_repr(self) -> str:
        return f"v_reset={self.v_reset}, step_mode={self.step_mode!r}, " + self._neuron_repr()


class QuantIFNode(_QuantSJNode):
    """Integrate-and-fire neuron configured like ``spikingjelly...neuron.IFNode``.

    Args:
        v_threshold: firing threshold :math:`\\theta`.
        v_reset: ``0.0`` for a hard reset, ``None`` for a soft reset.
        surrogate_function: a SpikingJelly surrogate module, a callable, or a name; SpikingJelly's ``Sigmoid()`` if
            ``None``.
        detach_reset: stop the gradient through the reset.
        step_mode: ``"s"`` (input ``[B, ...]``, state kept in ``v``) or ``"m"`` (input ``[T, B, ...]``).
        store_v_seq: in multi-step mode keep the post-reset membranes in ``v_seq``.
        mem_bits: membrane bit width when a scale is shared (default: the layer's weight bits).

    Raises:
        ValueError: an unsupported ``v_reset``, an unknown ``step_mode``, a non-positive threshold or bad
            ``mem_bits``.
    """


class QuantLIFNode(_QuantSJNode):
    """Leaky integrate-and-fire neuron configured like ``spikingjelly...neuron.LIFNode``.

    Args:
        tau: membrane time constant :math:`\\tau > 1` (in steps); the decay is :math:`\\lambda = 1 - 1/\\tau`.
        decay_input: scale the input by :math:`1/\\tau`, as SpikingJelly does by default.
        v_threshold, v_reset, surrogate_function, detach_reset, step_mode, store_v_seq, mem_bits: as
            :class:`QuantIFNode`.

    Raises:
        ValueError: ``tau <= 1``, or as :class:`QuantIFNode`.
    """

    def __init__(
        self,
        tau: float = 2.0,
        decay_input: bool = True,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: SpikeFn | str | None = None,
        detach_reset: bool = False,
        step_mode: str = "s",
        store_v_seq: bool = False,
        *,
        mem_bits: int | None = None,
    ) -> None:
        if tau <= 1.0:
            raise ValueError(f"tau={tau} must be greater than 1 (the decay is 1 - 1/tau).")
        super().__init__(
            v_threshold, v_reset, surrogate_function, detach_reset, step_mode, store_v_seq, mem_bits=mem_bits
        )
        self.tau = float(tau)
        self.decay_input = bool(decay_input)
        self.decay = 1.0 - 1.0 / self.tau

    def _charge_input(self, x: Tensor) -> Tensor:
        return x / self.tau if self.decay_input else x


def build_node(params: NeuronParams, surrogate: SpikeFn | str) -> QuantIFNode | QuantLIFNode:
    """A multi-step ``QuantIFNode`` (or ``QuantLIFNode`` without input decay) whose ``params`` are exactly
    ``params``."""
    v_reset = None if params.reset == "soft" else 0.0
    if params.leaky:
        node = QuantLIFNode(1.0 / (1.0 - params.decay), False, params.threshold, v_reset, surrogate, step_mode="m")
    else:
        node = QuantIFNode(params.threshold, v_reset, surrogate, step_mode="m")
    node.params = params
    return node


register_backend("spikingjelly", build_node, (QuantIFNode, QuantLIFNode))
