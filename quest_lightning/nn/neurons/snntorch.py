"""``QuantLeaky``: a drop-in ``snntorch.Leaky`` over the shared MINT step.

It is an ``snn.Leaky`` as far as snnTorch can tell: an instance of the class, in the instance registry that
``snntorch.utils.reset(net)`` and ``Leaky.reset_hidden()`` walk, with the membrane in ``mem``. Every calling convention
snnTorch documents works unchanged:

* explicit state, round-tripped by the caller: ``mem = lif.init_leaky()`` (or ``reset_mem()``), then
  ``spk, mem = lif(cur, mem)`` each step;
* hidden state: ``init_hidden=True`` returns ``spk`` (``output=True``: ``(spk, mem)``), inside ``nn.Sequential``,
  reset with ``snntorch.utils.reset(net)``;
* ``reset_delay=True`` (the default: ``mem`` is pre-reset and the reset lands on the next step) or ``False``.

With membrane quantization off, one step is :func:`~quest_lightning.functional.neuron.leaky_step` in snnTorch's own
order of float operations, so spikes, membranes and gradients equal ``snn.Leaky``'s bit for bit. With a shared
scale it quantizes the post-reset state on the layer's grid (MINT). A learnable or per-neuron ``beta`` or
``threshold`` is kept as a tensor (``learn_beta``, ``learn_threshold``), clamped to [0, 1] like snnTorch's.

This module registers the ``"snntorch"`` back-end: :func:`build_leaky` gives ``QuantLeaky`` the QUEST parameters
(a soft reset subtracts :math:`\\theta` from :math:`H_t`, not after the decay).
"""

from __future__ import annotations

import snntorch as snn
import torch
from torch import Tensor, nn

from quest_lightning.functional.neuron import NeuronParams, leaky_step, reset_membrane
from quest_lightning.functional.surrogate import SpikeFn, get_surrogate
from quest_lightning.nn.neurons.base import QuantNeuron
from quest_lightning.nn.neurons.registry import register_backend

_RESETS = {"subtract": "soft", "zero": "hard", "none": "none"}
_MECHANISMS = {mode: mechanism for mechanism, mode in _RESETS.items()}


def _as_value(name: str, value: float | Tensor) -> float | Tensor:
    """A scalar stays a float; a tensor of more than one value stays a tensor (per neuron)."""
    if isinstance(value, Tensor):
        return float(value) if value.numel() == 1 and not value.requires_grad else value.detach().clone()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}={value!r} must be a number or a tensor.")
    return float(value)


class QuantLeaky(QuantNeuron, snn.Leaky):
    """Leaky integrate-and-fire neuron that behaves exactly like ``snntorch.Leaky``; ``beta=1`` is IF.

    Args:
        beta: membrane decay :math:`\\beta = \\lambda` in (0, 1] (a tensor gives one value per neuron); 1 is IF.
        threshold: firing threshold :math:`\\theta` (a number or a tensor).
        spike_grad: surrogate (a callable such as ``snntorch.surrogate.atan()``, or a name for
            :func:`~quest_lightning.functional.surrogate.get_surrogate`); snnTorch's default ``atan`` if ``None``.
        reset_mechanism: ``"subtract"`` (soft: :math:`\\theta` is subtracted after the next decay, as snnTorch
            does), ``"zero"`` (hard) or ``"none"``.
        reset_delay: return the pre-reset membrane and apply the reset on the next step, as snnTorch does by
            default; ``False`` resets at once.
        init_hidden: keep the membrane inside the module; the call then returns ``spk`` only.
        output: with ``init_hidden``, return ``(spk, mem)``.
        learn_beta: make :math:`\\beta` an ``nn.Parameter`` (clamped to [0, 1] in each step, as in snnTorch).
        learn_threshold: make :math:`\\theta` an ``nn.Parameter``.
        detach_reset: stop the gradient through the reset, as snnTorch always does (``False`` is MINT's choice and
            goes beyond ``snn.Leaky``).
        mem_bits: membrane bit width when a scale is shared (default: the layer's weight bits).

    Raises:
        ValueError: an unknown ``reset_mechanism``, a scalar ``beta`` outside (0, 1], a non-positive threshold, or
            bad ``mem_bits``.
    """

    def __init__(
        self,
        beta: float | Tensor = 1.0,
        threshold: float | Tensor = 1.0,
        spike_grad: SpikeFn | str | None = None,
        reset_mechanism: str = "subtract",
        reset_delay: bool = True,
        *,
        init_hidden: bool = False,
        output: bool = False,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        detach_reset: bool = True,
        mem_bits: int | None = None,
    ) -> None:
        nn.Module.__init__(self)  # snn.Leaky's own constructor would register its buffers over ours
        if reset_mechanism not in _RESETS:
            raise ValueError(f"reset_mechanism={reset_mechanism!r} is unknown: use 'subtract', 'zero' or 'none'.")
        beta_value, theta_value = _as_value("beta", beta), _as_value("threshold", threshold)
        if isinstance(beta_value, float) and not 0.0 < beta_value <= 1.0:
            raise ValueError(f"beta={beta_value} must lie in (0, 1]; beta=1 is an IF neuron.")
        self.reset_delay = bool(reset_delay)
        self.init_hidden = bool(init_hidden)
        self.output = bool(output)
        params = NeuronParams(
            decay=beta_value if isinstance(beta_value, float) else 1.0,
            threshold=theta_value if isinstance(theta_value, float) else 1.0,
            reset=_RESETS[reset_mechanism],
            detach_reset=detach_reset,
            subtract_after_decay=True,
        )
        spike_fn = get_surrogate(spike_grad if spike_grad is not None else "snntorch.atan")
        self._init_neuron(spike_fn=spike_fn, params=params, mem_bits=mem_bits)
        # A learnable or per-neuron value is a tensor, registered under snnTorch's name (so it sits in state_dict
        # and moves with the module); a scalar constant stays in params.
        for name, value, learn in (("beta", beta_value, learn_beta), ("threshold", theta_value, learn_threshold)):
            if learn or isinstance(value, Tensor):
                tensor = value if isinstance(value, Tensor) else torch.tensor(value)
                if learn:
                    self._parameters[name] = nn.Parameter(tensor)
                else:
                    self._buffers[name] = tensor
        self.register_buffer("mem", torch.zeros(0), persistent=False)
        snn.SpikingNeuron.instances.append(self)  # the registry snntorch.utils.reset(net) resets; last, once built

    @classmethod
    def from_snntorch(cls, leaky: snn.Leaky, **kwargs) -> QuantLeaky:
        """A ``QuantLeaky`` configured like ``leaky``; a learnable ``beta`` or ``threshold`` is the same
        ``nn.Parameter`` object (so an optimizer built on the original keeps training it).

        Raises:
            ValueError: an option ``QuantLeaky`` does not reproduce (``inhibition``, ``state_quant``, graded spikes).
        """
        unsupported = {
            "inhibition": bool(leaky.inhibition),
            "state_quant": bool(leaky.state_quant),
            "graded_spikes_factor": isinstance(leaky.graded_spikes_factor, nn.Parameter)
            or bool(leaky.graded_spikes_factor.detach().ne(1.0).any()),
        }
        found = [name for name, on in unsupported.items() if on]
        if found:
            raise ValueError(
                f"snn.Leaky with {', '.join(found)} is not supported: QuantLeaky reproduces binary spikes with the "
                "plain reset; use the default inhibition=False, state_quant=False, graded_spikes_factor=1.0."
            )
        neuron = cls(
            leaky.beta,
            leaky.threshold,
            leaky.spike_grad,
            leaky.reset_mechanism,
            getattr(leaky, "reset_delay", True),
            init_hidden=leaky.init_hidden,
            output=leaky.output,
            learn_beta=isinstance(leaky.beta, nn.Parameter),
            learn_threshold=isinstance(leaky.threshold, nn.Parameter),
            **kwargs,
        )
        for name in ("beta", "threshold"):  # keep the very Parameter objects
            original = getattr(leaky, name)
            if isinstance(original, nn.Parameter):
                neuron._parameters[name] = original
        return neuron

    def _tensor_fields(self) -> dict[str, Tensor]:
        fields: dict[str, Tensor] = {}
        beta = self._parameters.get("beta", self._buffers.get("beta"))
        if beta is not None:
            fields["decay"] = beta.clamp(0, 1)
        threshold = self._parameters.get("threshold", self._buffers.get("threshold"))
        if threshold is not None:
            fields["threshold"] = threshold
        return fields

    @property
    def beta(self) -> float | Tensor:
        """:math:`\\beta`: a float, or the (learnable or per-neuron) tensor as given."""
        beta = self._parameters.get("beta", self._buffers.get("beta"))
        return self.decay if beta is None else beta

    @property
    def spike_grad(self) -> SpikeFn:
        """The surrogate, under snnTorch's name."""
        return self.spike_fn

    @property
    def reset_mechanism(self) -> str:
        """``"subtract"``, ``"zero"`` or ``"none"``."""
        return _MECHANISMS[self.reset_mode]

    @reset_mechanism.setter
    def reset_mechanism(self, value: str) -> None:
        if value not in _RESETS:
            raise ValueError(f"reset_mechanism={value!r} is unknown: use 'subtract', 'zero' or 'none'.")
        self.reset_mode = _RESETS[value]

    @property
    def called_per_step(self) -> bool:
        """Always: snnTorch's ``Leaky`` takes one time step per call."""
        return True

    def reset_mem(self) -> Tensor:
        """Zero this neuron's membrane and return it (``snn.Leaky.reset_mem``; ``snntorch.utils.reset(net)`` zeroes
        every ``Leaky`` in the process)."""
        self.mem = torch.zeros_like(self.mem)
        return self.mem

    def init_leaky(self) -> Tensor:
        """The zero membrane to start an explicit-state loop with (``snn.Leaky.init_leaky``)."""
        return self.reset_mem()

    def forward(self, input_: Tensor, mem: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """One time step, like ``snn.Leaky``.

        Args:
            input_: the input current ``[B, ...]``.
            mem: the membrane returned by the previous call (explicit state), or ``None`` to use the hidden one.

        Returns:
            ``(spk, mem)``, or ``spk`` alone with ``init_hidden=True`` and ``output=False``.

        Raises:
            TypeError: ``mem`` is passed while ``init_hidden=True`` (as in snnTorch).
        """
        if mem is not None:
            if self.init_hidden:
                raise TypeError("`mem` should not be passed as an argument while `init_hidden=True`")
            self.mem = mem
        if self.mem.shape != input_.shape:
            self.mem = torch.zeros_like(input_)
        spk, self.mem = leaky_step(
            input_, self.mem, self.spike_fn, self.params, self.membrane_quantizer(), reset_delay=self.reset_delay
        )
        if self.record:
            self._record(spk, spk.shape[0])
        if self.init_hidden and not self.output:
            return spk
        return spk, self.mem

    def post_reset_membrane(self) -> Tensor:
        """The state the next step starts from, :math:`U_t` (on the shared grid when quantized): ``mem`` itself
        with ``reset_delay=False``, else the reset applied to the pre-reset ``mem``."""
        if not self.reset_delay:
            return self.mem
        params, quant = self.params, self.membrane_quantizer()
        u = reset_membrane(self.mem, self.spike_fn(self.mem - params.threshold), params)
        return u if quant is None else quant(u)

    def extra_repr(self) -> str:
        return f"reset_mechanism={self.reset_mechanism!r}, reset_delay={self.reset_delay}, " + self._neuron_repr()


def build_leaky(params: NeuronParams, surrogate: SpikeFn | str) -> QuantLeaky:
    """A multi-step ``QuantLeaky`` whose ``params`` are exactly ``params`` (QUEST semantics: a soft reset subtracts
    ``params.reset_amount`` from :math:`H_t`)."""
    neuron = QuantLeaky(
        params.decay, params.threshold, surrogate, _MECHANISMS[params.reset], detach_reset=params.detach_reset
    )
    neuron.params = params
    return neuron


register_backend("snntorch", build_leaky, (QuantLeaky,))
