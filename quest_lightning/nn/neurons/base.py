"""What every quantized neuron adapter shares: the step parameters, MINT membrane quantization, device checks and
optional spike-count recording. The adapters only translate their library's configuration into these."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from quest_lightning.devices.capability import DeviceCapability, check_bits_fit, check_leak_allowed
from quest_lightning.functional.grid import check_bits
from quest_lightning.functional.neuron import MembraneQuant, check_reset, neuron_scan, neuron_step
from quest_lightning.functional.quantize import alpha_grad_scale
from quest_lightning.functional.surrogate import SpikeFn
from quest_lightning.nn.layers import QuantLayerMixin


class QuantNeuron(nn.Module):
    """Base class of the neuron adapters: a thin shell over :func:`~quest_lightning.functional.neuron.neuron_step`.

    The membrane is quantized on the grid of the layer given to :meth:`share_scale_with` (same :math:`\\alpha`, and
    ``mem_bits`` or the layer's bits). Without such a layer, or when that layer's quantization is disabled, the
    neuron is full precision.

    Recording (``record=True``) accumulates ``spike_count`` (all spikes), ``recorded_rows`` (time steps × samples)
    and ``neurons`` (neurons per sample), for the spike-rate meter.
    """

    def _init_neuron(
        self,
        *,
        spike_fn: SpikeFn,
        decay: float,
        threshold: float,
        reset: str,
        detach_reset: bool,
        soft_reset_amount: float | None = None,
        mem_bits: int | None = None,
        device_spec: DeviceCapability | None = None,
    ) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay={decay} (the leak factor lambda) must lie in [0, 1]; 1 is an IF neuron.")
        if threshold <= 0:
            raise ValueError(f"threshold={threshold} must be positive.")
        self.spike_fn = spike_fn
        self.decay = float(decay)
        self.threshold = float(threshold)
        self.reset_mode = check_reset(reset)
        self.detach_reset = bool(detach_reset)
        self.soft_reset_amount = soft_reset_amount
        self.mem_bits = None if mem_bits is None else check_bits(mem_bits, name="mem_bits")
        self.device_spec = device_spec
        if device_spec is not None:
            check_leak_allowed(device_spec, self.leaky, what=type(self).__name__)
            if mem_bits is not None:
                check_bits_fit(device_spec, mem_bits, what="mem_bits")
        self._scale_source: list[QuantLayerMixin] = []  # a list keeps the layer out of this module's children
        self.record = False
        self.spike_count: Tensor | None = None
        self.recorded_rows = 0
        self.neurons = 0

    @property
    def leaky(self) -> bool:
        """Whether the membrane decays between steps (:math:`\\lambda < 1`)."""
        return self.decay < 1.0

    def share_scale_with(self, layer: QuantLayerMixin) -> QuantNeuron:
        """Quantize the membrane with ``layer``'s :math:`\\alpha` and grid (MINT's shared scale). Returns ``self``."""
        if not isinstance(layer, QuantLayerMixin):
            raise TypeError(f"share_scale_with expects a QuantConv2d or QuantLinear, got {type(layer).__name__}.")
        self._scale_source = [layer]
        return self

    @property
    def scale_source(self) -> QuantLayerMixin | None:
        """The layer whose scale the membrane shares, if any."""
        return self._scale_source[0] if self._scale_source else None

    def membrane_quantizer(self) -> MembraneQuant | None:
        """The membrane quantizer for the current forward pass, or ``None`` when the neuron is full precision."""
        layer = self.scale_source
        if layer is None or not layer.enabled:
            return None
        bits = self.mem_bits or layer.bits
        scale = alpha_grad_scale(layer.weight.numel(), bits) if layer.use_alpha_grad_scale else None
        return MembraneQuant(layer.alpha, bits, layer.transform, scale)

    def _step_kwargs(self) -> dict:
        return dict(
            decay=self.decay,
            threshold=self.threshold,
            reset=self.reset_mode,
            detach_reset=self.detach_reset,
            soft_reset_amount=self.soft_reset_amount,
            quant=self.membrane_quantizer(),
        )

    def step(self, x: Tensor, u: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """One functional step: ``(spikes, pre-reset membrane, carried state)``."""
        s, h, u = neuron_step(x, u, self.spike_fn, **self._step_kwargs())
        if self.record:
            self._record(s, s.shape[0])
        return s, h, u

    def multi_step(self, x_seq: Tensor, return_membrane: str = "none") -> tuple[Tensor, Tensor | None, Tensor]:
        """Scan ``x_seq`` (``[T, B, ...]``) from a zero state: ``(spikes, membranes or None, final state)``."""
        if x_seq.dim() < 2:
            raise ValueError(f"multi-step input must be [T, B, ...], got shape {tuple(x_seq.shape)}.")
        s, m, u = neuron_scan(x_seq, self.spike_fn, return_membrane=return_membrane, **self._step_kwargs())
        if self.record:
            self._record(s, x_seq.shape[0] * x_seq.shape[1])
        return s, m, u

    def _record(self, spikes: Tensor, rows: int) -> None:
        total = spikes.detach().sum(dtype=torch.float64)
        self.spike_count = total if self.spike_count is None else self.spike_count + total
        self.recorded_rows += rows
        self.neurons = spikes.numel() // rows

    def reset_recording(self) -> None:
        """Forget the recorded spike counts."""
        self.spike_count = None
        self.recorded_rows = 0

    def _neuron_repr(self) -> str:
        quant = "shared-scale" if self.scale_source is not None else "off"
        return (
            f"decay={self.decay}, threshold={self.threshold}, reset={self.reset_mode!r}, "
            f"detach_reset={self.detach_reset}, membrane_quant={quant}"
        )
