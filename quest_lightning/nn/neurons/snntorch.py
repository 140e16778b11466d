"""``QuantLeaky``: an ``snntorch.Leaky``-style neuron over the shared MINT step.

snnTorch applies the reset of step :math:`t` at step :math:`t + 1` (``reset_delay=True``) and always detaches it,
returning the pre-reset membrane :math:`H_t`. In the shared step's terms that is
:math:`U_t = H_t(1 - \\operatorname{sg}(S_t))` for ``"zero"`` and
:math:`U_t = H_t - (\\theta/\\beta)\\operatorname{sg}(S_t)` for ``"subtract"`` (snnTorch subtracts :math:`\\theta` after
the decay), so spikes, membranes and gradients equal
``snn.Leaky`` exactly when quantization is off.

This module registers the ``"snntorch"`` back-end: :func:`build_leaky` gives ``QuantLeaky`` the QUEST parameters
(a soft reset subtracts :math:`\\theta` from :math:`H_t`, not :math:`\\theta/\\beta`).
"""

from __future__ import annotations

from torch import Tensor

from quest_lightning.functional.neuron import NeuronParams
from quest_lightning.functional.surrogate import SpikeFn, get_surrogate
from quest_lightning.nn.neurons.base import QuantNeuron
from quest_lightning.nn.neurons.registry import register_backend

_RESETS = {"subtract": "soft", "zero": "hard", "none": "none"}


class QuantLeaky(QuantNeuron):
    """Leaky integrate-and-fire neuron configured like ``snntorch.Leaky``; ``beta=1`` is IF.

    Args:
        beta: membrane decay :math:`\\beta = \\lambda` in (0, 1]; 1 gives an IF neuron.
        threshold: firing threshold :math:`\\theta`.
        spike_grad: surrogate (a callable such as ``snntorch.surrogate.atan()``, or a name for
            :func:`~quest_lightning.functional.surrogate.get_surrogate`); snnTorch's default ``atan`` if ``None``.
        reset_mechanism: ``"subtract"`` (soft), ``"zero"`` (hard) or ``"none"``.
        reset_delay: return the pre-reset membrane, as snnTorch does by default; ``False`` returns the reset one.
        detach_reset: stop the gradient through the reset, as snnTorch always does (``False`` is MINT's choice and
            goes beyond ``snn.Leaky``).
        mem_bits: membrane bit width when a scale is shared (default: the layer's weight bits).

    Raises:
        ValueError: an unknown ``reset_mechanism``, ``beta`` outside (0, 1], a non-positive threshold, or bad
            ``mem_bits``.
    """

    def __init__(
        self,
        beta: float = 1.0,
        threshold: float = 1.0,
        spike_grad: SpikeFn | str | None = None,
        reset_mechanism: str = "subtract",
        reset_delay: bool = True,
        *,
        detach_reset: bool = True,
        mem_bits: int | None = None,
    ) -> None:
        super().__init__()
        if reset_mechanism not in _RESETS:
            raise ValueError(f"reset_mechanism={reset_mechanism!r} is unknown: use 'subtract', 'zero' or 'none'.")
        beta = float(beta)
        if not 0.0 < beta <= 1.0:
            raise ValueError(f"beta={beta} must lie in (0, 1]; beta=1 is an IF neuron.")
        self.reset_mechanism = reset_mechanism
        self.reset_delay = bool(reset_delay)
        params = NeuronParams(
            decay=beta,
            threshold=threshold,
            reset=_RESETS[reset_mechanism],
            detach_reset=detach_reset,
            soft_reset_amount=threshold / beta,
        )
        spike_fn = get_surrogate(spike_grad if spike_grad is not None else "snntorch.atan")
        self._init_neuron(spike_fn=spike_fn, params=params, mem_bits=mem_bits)
        self.mem: Tensor | None = None

    @property
    def beta(self) -> float:
        return self.decay

    def reset_mem(self) -> None:
        """Zero the hidden state (this neuron's only; unlike ``snntorch.utils.reset`` it touches no other)."""
        self.mem = None

    def forward(self, input_: Tensor, mem: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One time step, like ``snn.Leaky``: returns ``(spk, mem)``.

        ``mem`` is this neuron's carried state :math:`U_{t-1}` (as returned with ``reset_delay=False``); if omitted
        the neuron uses its own hidden state, started at zero after :meth:`reset_mem`.
        """
        u = mem if mem is not None else self.mem
        if u is not None and u.shape != input_.shape:
            u = None
        spk, h, self.mem = self.step(input_, u)
        return spk, (h if self.reset_delay else self.mem)

    def extra_repr(self) -> str:
        return f"reset_mechanism={self.reset_mechanism!r}, " + self._neuron_repr()


_MECHANISMS = {mode: mechanism for mechanism, mode in _RESETS.items()}


def build_leaky(params: NeuronParams, surrogate: SpikeFn | str) -> QuantLeaky:
    """A multi-step ``QuantLeaky`` whose ``params`` are exactly ``params`` (QUEST semantics: a soft reset subtracts
    ``params.reset_amount`` from :math:`H_t`)."""
    neuron = QuantLeaky(
        params.decay, params.threshold, surrogate, _MECHANISMS[params.reset], detach_reset=params.detach_reset
    )
    neuron.params = params
    return neuron


register_backend("snntorch", build_leaky, (QuantLeaky,))
