"""``QuantIFNode`` / ``QuantLIFNode`` / ``QuantParametricLIFNode``: SpikingJelly-style neurons over the shared step.

They take SpikingJelly's configuration (``v_threshold``, ``v_reset`` with ``None`` for a soft reset,
``surrogate_function``, ``detach_reset``, ``step_mode``, ``store_v_seq``) and are instances of the SpikingJelly class
they stand for (``QuantIFNode`` is an ``IFNode``, a ``BaseNode`` and a ``MemoryModule``), so ``functional.reset_net``
resets them, ``functional.set_step_mode`` switches them in both step modes, and SpikingJelly's monitors and op
counters treat them as neurons.

With membrane quantization off, a step is SpikingJelly's own state transition
(``spikingjelly.activation_based.functional.if_step``/``lif_step``/``plif_step`` and their multi-step forms), so
spikes, membranes and gradients are those of ``IFNode``/``LIFNode``/``ParametricLIFNode`` exactly, on every device.
With a shared scale the membrane is quantized on the layer's grid by the shared MINT step: SpikingJelly's LIF charge
:math:`H = V + (X - V)/\\tau` is :math:`H_t = \\lambda U_{t-1} + X_t/\\tau` with :math:`\\lambda = 1 - 1/\\tau`
(``decay_input=True``), and the parametric node's :math:`1/\\tau = \\sigma(w)` stays learnable.

This module registers the ``"spikingjelly"`` back-end: :func:`build_node` makes an IF node, or a LIF node with
``decay_input=False`` and :math:`\\tau = 1/(1 - \\lambda)`, so that it charges :math:`H_t = \\lambda U_{t-1} + X_t`.
"""

from __future__ import annotations

import math

import torch
from spikingjelly.activation_based import functional as sj_functional
from spikingjelly.activation_based import neuron as sj_neuron
from spikingjelly.activation_based.base import MemoryModule
from torch import Tensor, nn

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


class _QuantSJNode(QuantNeuron, sj_neuron.BaseNode):
    """The SpikingJelly-style shell shared by the nodes (an IF node until a subclass sets a decay). It is a
    ``BaseNode`` for SpikingJelly's tools, but ``BaseNode.__init__`` is not run: the configuration lives in
    ``params``.

    A subclass gives SpikingJelly's transition for full precision (:meth:`_library_step`,
    :meth:`_library_multi_step`) and the input the shared step charges with (:meth:`_charge_input`).
    """

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
        MemoryModule.__init__(self)
        if step_mode not in ("s", "m"):
            raise ValueError(
                f"step_mode={step_mode!r} is unknown: use 's' (single step) or 'm' (multi-step [T, B, ...])."
            )
        self.v_reset = v_reset
        self.step_mode = step_mode
        self.store_v_seq = store_v_seq
        self.v_seq: Tensor | None = None
        params = NeuronParams(threshold=v_threshold, reset=_reset_from_v_reset(v_reset), detach_reset=detach_reset)
        spike_fn = get_surrogate(surrogate_function if surrogate_function is not None else "sj.Sigmoid")
        self._init_neuron(spike_fn=spike_fn, params=params, mem_bits=mem_bits)
        self.register_memory("v", 0.0)

    @property
    def v_threshold(self) -> float:
        return self.threshold

    @property
    def surrogate_function(self) -> SpikeFn:
        """The surrogate, under SpikingJelly's name."""
        return self.spike_fn

    def reset(self) -> None:
        """Zero the membrane (``functional.reset_net`` calls this) and forget ``v_seq``."""
        super().reset()
        self.v_seq = None

    def _charge_input(self, x: Tensor) -> Tensor:
        return x

    _library = (sj_functional.if_step, sj_functional.if_multi_step)

    def _library_args(self) -> tuple:
        """The arguments SpikingJelly's transition takes between the state and the threshold (none for IF)."""
        return ()

    def _library_step(self, x: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """SpikingJelly's single step ``(spike, v_next)`` (full precision)."""
        step = self._library[0]
        return step(x, v, *self._library_args(), self.threshold, self.v_reset, self.spike_fn, self.detach_reset)

    def _library_multi_step(self, x_seq: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """SpikingJelly's multi-step ``(spikes, v_last, v_seq or None)`` (full precision)."""
        scan, args = self._library[1], self._library_args()
        return scan(x_seq, v, *args, self.threshold, self.v_reset, self.spike_fn, self.detach_reset, self.store_v_seq)

    def _state(self, like: Tensor) -> Tensor | None:
        v = self.v
        return v if isinstance(v, Tensor) and v.shape == like.shape else None

    def single_step_forward(self, x: Tensor) -> Tensor:
        if self.membrane_quantizer() is None:
            v = self._state(x)
            spikes, self.v = self._library_step(x, torch.zeros_like(x) if v is None else v)
            if self.record:
                self._record(spikes, spikes.shape[0])
        else:
            spikes, _, self.v = self.step(self._charge_input(x), self._state(x))
        if self.store_v_seq:  # SpikingJelly 2.0 appends each single step's membrane
            v_step = self.v.unsqueeze(0)
            seq = self.v_seq
            fresh = seq is None or seq.shape[1:] != v_step.shape[1:] or seq.device != v_step.device
            self.v_seq = v_step.clone() if fresh else torch.cat((seq, v_step))
        return spikes

    def multi_step_forward(self, x_seq: Tensor) -> Tensor:
        if x_seq.dim() < 2:
            raise ValueError(f"step_mode='m' expects [T, B, ...] input, got shape {tuple(x_seq.shape)}.")
        if self.membrane_quantizer() is None:
            v = self._state(x_seq[0])
            spikes, self.v, v_seq = self._library_multi_step(x_seq, torch.zeros_like(x_seq[0]) if v is None else v)
            if self.record:
                self._record(spikes, x_seq.shape[0] * x_seq.shape[1])
        else:
            membrane = "post" if self.store_v_seq else "none"
            spikes, v_seq, self.v = self._scan(self._charge_input(x_seq), self._state(x_seq[0]), membrane)
        self.v_seq = v_seq if self.store_v_seq else None
        return spikes

    def forward(self, x: Tensor) -> Tensor:
        return self.single_step_forward(x) if self.step_mode == "s" else self.multi_step_forward(x)

    def extra_repr(self) -> str:
        return f"v_reset={self.v_reset}, step_mode={self.step_mode!r}, " + self._neuron_repr()


class QuantIFNode(_QuantSJNode, sj_neuron.IFNode):
    """Integrate-and-fire neuron configured like ``spikingjelly...neuron.IFNode``.

    Args:
        v_threshold: firing threshold :math:`\\theta`.
        v_reset: ``0.0`` for a hard reset, ``None`` for a soft reset.
        surrogate_function: a SpikingJelly surrogate module, a callable, or a name; SpikingJelly's ``Sigmoid()`` if
            ``None``.
        detach_reset: stop the gradient through the reset.
        step_mode: ``"s"`` (input ``[B, ...]``, state kept in ``v``) or ``"m"`` (input ``[T, B, ...]``).
        store_v_seq: keep the post-reset membranes in ``v_seq`` (``[T, B, ...]``; in single-step mode appended at each
            step until ``reset()``).
        mem_bits: membrane bit width when a scale is shared (default: the layer's weight bits).

    Raises:
        ValueError: an unsupported ``v_reset``, an unknown ``step_mode``, a non-positive threshold or bad
            ``mem_bits``.
    """


class QuantLIFNode(_QuantSJNode, sj_neuron.LIFNode):
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

    _library = (sj_functional.lif_step, sj_functional.lif_multi_step)

    def _library_args(self) -> tuple:
        return self.tau, self.decay_input

    def extra_repr(self) -> str:
        return f"tau={self.tau}, decay_input={self.decay_input}, " + super().extra_repr()


class QuantParametricLIFNode(_QuantSJNode, sj_neuron.ParametricLIFNode):
    """Parametric LIF neuron configured like ``spikingjelly...neuron.ParametricLIFNode``: a learnable
    :math:`1/\\tau = \\sigma(w)`, so the decay :math:`\\lambda = 1 - \\sigma(w)` is learned (Fang et al. 2021).

    Args:
        init_tau: the initial :math:`\\tau > 1`; ``w`` starts at :math:`-\\ln(\\tau - 1)`, as in SpikingJelly.
        decay_input: scale the input by :math:`\\sigma(w)`.
        v_threshold, v_reset, surrogate_function, detach_reset, step_mode, store_v_seq, mem_bits: as
            :class:`QuantIFNode`.

    Raises:
        ValueError: ``init_tau <= 1``, or as :class:`QuantIFNode`.
    """

    def __init__(
        self,
        init_tau: float = 2.0,
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
        if init_tau <= 1.0:
            raise ValueError(f"init_tau={init_tau} must be greater than 1 (w = -ln(tau - 1)).")
        super().__init__(
            v_threshold, v_reset, surrogate_function, detach_reset, step_mode, store_v_seq, mem_bits=mem_bits
        )
        self.decay_input = bool(decay_input)
        self.w = nn.Parameter(torch.as_tensor(-math.log(init_tau - 1.0)))

    def _tensor_fields(self) -> dict[str, Tensor]:
        return {"decay": 1.0 - self.w.sigmoid()}

    @property
    def tau(self) -> float:
        """The current :math:`\\tau = 1/\\sigma(w)`."""
        return float(1.0 / self.w.detach().sigmoid())

    def _charge_input(self, x: Tensor) -> Tensor:
        return x * self.w.sigmoid() if self.decay_input else x

    _library = (sj_functional.plif_step, sj_functional.plif_multi_step)

    def _library_args(self) -> tuple:
        return self.w, self.decay_input

    def extra_repr(self) -> str:
        return f"tau={self.tau:.4g} (learnable), decay_input={self.decay_input}, " + super().extra_repr()


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


register_backend("spikingjelly", build_node, (QuantIFNode, QuantLIFNode, QuantParametricLIFNode))
