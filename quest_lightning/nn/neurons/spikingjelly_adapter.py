"""``QuantIFNode`` / ``QuantLIFNode``: SpikingJelly-style neurons over the shared MINT step.

They take SpikingJelly's configuration (``v_threshold``, ``v_reset`` with ``None`` for a soft reset,
``surrogate_function``, ``detach_reset``, ``step_mode``) and are SpikingJelly ``MemoryModule`` s, so
``functional.reset_net`` resets them. With quantization off they equal ``IFNode`` / ``LIFNode`` exactly:
SpikingJelly's LIF charge :math:`H = V + (X - V)/\\tau` is the shared step with :math:`\\lambda = 1 - 1/\\tau` and the
input scaled by :math:`1/\\tau` (``decay_input=True``).
"""

from __future__ import annotations

from spikingjelly.activation_based.base import MemoryModule
from torch import Tensor

from quest_lightning.devices.capability import DeviceCapability
from quest_lightning.functional.surrogate import SpikeFn, get_surrogate
from quest_lightning.nn.neurons.base import QuantNeuron


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
    def _init_sj(
        self,
        *,
        decay: float,
        v_threshold: float,
        v_reset: float | None,
        surrogate_function: SpikeFn | str | None,
        detach_reset: bool,
        step_mode: str,
        store_v_seq: bool,
        mem_bits: int | None,
        device_spec: DeviceCapability | None,
    ) -> None:
        if step_mode not in ("s", "m"):
            raise ValueError(
                f"step_mode={step_mode!r} is unknown: use 's' (single step) or 'm' (multi-step [T, B, ...])."
            )
        self.v_reset = v_reset
        self.step_mode = step_mode
        self.store_v_seq = store_v_seq
        self._init_neuron(
            spike_fn=get_surrogate(surrogate_function if surrogate_function is not None else "sj.Sigmoid"),
            decay=decay,
            threshold=v_threshold,
            reset=_reset_from_v_reset(v_reset),
            detach_reset=detach_reset,
            mem_bits=mem_bits,
            device_spec=device_spec,
        )
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
        u0 = self._state(x_seq[0])
        from quest_lightning.functional.neuron import neuron_scan

        spikes, v_seq, self.v = neuron_scan(
            self._charge_input(x_seq),
            self.spike_fn,
            u0,
            return_membrane="post" if self.store_v_seq else "none",
            **self._step_kwargs(),
        )
        if self.record:
            self._record(spikes, x_seq.shape[0] * x_seq.shape[1])
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
        device_spec: device that will hold the neuron state.
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
        device_spec: DeviceCapability | None = None,
    ) -> None:
        super().__init__()
        self._init_sj(
            decay=1.0,
            v_threshold=v_threshold,
            v_reset=v_reset,
            surrogate_function=surrogate_function,
            detach_reset=detach_reset,
            step_mode=step_mode,
            store_v_seq=store_v_seq,
            mem_bits=mem_bits,
            device_spec=device_spec,
        )


class QuantLIFNode(_QuantSJNode):
    """Leaky integrate-and-fire neuron configured like ``spikingjelly...neuron.LIFNode``.

    Args:
        tau: membrane time constant :math:`\\tau > 1` (in steps); the decay is :math:`\\lambda = 1 - 1/\\tau`.
        decay_input: scale the input by :math:`1/\\tau`, as SpikingJelly does by default.
        v_threshold, v_reset, surrogate_function, detach_reset, step_mode, store_v_seq, mem_bits, device_spec: as
            :class:`QuantIFNode`.
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
        device_spec: DeviceCapability | None = None,
    ) -> None:
        super().__init__()
        if tau <= 1.0:
            raise ValueError(f"tau={tau} must be greater than 1 (the decay is 1 - 1/tau).")
        self.tau = float(tau)
        self.decay_input = bool(decay_input)
        self._init_sj(
            decay=1.0 - 1.0 / self.tau,
            v_threshold=v_threshold,
            v_reset=v_reset,
            surrogate_function=surrogate_function,
            detach_reset=detach_reset,
            step_mode=step_mode,
            store_v_seq=store_v_seq,
            mem_bits=mem_bits,
            device_spec=device_spec,
        )

    def _charge_input(self, x: Tensor) -> Tensor:
        return x / self.tau if self.decay_input else x
