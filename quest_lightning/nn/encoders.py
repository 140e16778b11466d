"""Input encoders: turn a batch ``[B, ...]`` into a spike or current sequence ``[T, B, ...]``.

* :class:`DirectEncoder` (the default): the analog input repeated ``T`` times; the first layer's neurons make the
  spikes. It returns a zero-copy view, and the quantized layers compute such a repeated input once.
* :class:`RateEncoder`: Poisson/Bernoulli rate coding with snnTorch's ``spikegen.rate``.
* :class:`LatencyEncoder`: time-to-first-spike coding with snnTorch's ``spikegen.latency``.

Rate and latency coding expect intensities in ``[0, 1]``; inputs outside are clamped.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def check_timesteps(timesteps: int) -> int:
    """Validate the number of time steps ``T``."""
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
        raise ValueError(f"timesteps (T) = {timesteps!r} must be an integer >= 1.")
    return timesteps


class Encoder(nn.Module):
    """Base class: ``forward(x [B, ...]) -> [T, B, ...]``."""

    def __init__(self, timesteps: int) -> None:
        super().__init__()
        self.timesteps = check_timesteps(timesteps)

    def _check(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"{type(self).__name__} expects a batch [B, ...], got shape {tuple(x.shape)}.")

    def extra_repr(self) -> str:
        return f"timesteps={self.timesteps}"


class DirectEncoder(Encoder):
    """Direct coding: :math:`x_t = x` for every step (a stride-0 view, no copy)."""

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        return x.unsqueeze(0).expand(self.timesteps, *x.shape)


class RateEncoder(Encoder):
    """Rate coding: each step fires with probability equal to the intensity (``snntorch.spikegen.rate``)."""

    def __init__(self, timesteps: int, gain: float = 1.0) -> None:
        super().__init__(timesteps)
        self.gain = float(gain)

    def forward(self, x: Tensor) -> Tensor:
        from snntorch import spikegen

        self._check(x)
        return spikegen.rate(x.clamp(0, 1), num_steps=self.timesteps, gain=self.gain)


class LatencyEncoder(Encoder):
    """Latency coding: one spike per input, earlier for brighter inputs (``snntorch.spikegen.latency``)."""

    def __init__(self, timesteps: int, tau: float = 5.0, threshold: float = 0.01, linear: bool = True) -> None:
        super().__init__(timesteps)
        self.tau, self.threshold, self.linear = float(tau), float(threshold), bool(linear)

    def forward(self, x: Tensor) -> Tensor:
        from snntorch import spikegen

        self._check(x)
        out = spikegen.latency(
            x.clamp(0, 1),
            num_steps=self.timesteps,
            tau=self.tau,
            threshold=self.threshold,
            linear=self.linear,
            normalize=True,
            clip=True,
        )
        return out.to(torch.get_default_dtype()) if not out.is_floating_point() else out


ENCODERS: dict[str, type[Encoder]] = {"direct": DirectEncoder, "rate": RateEncoder, "latency": LatencyEncoder}


def make_encoder(kind: str, timesteps: int) -> Encoder:
    """Build an encoder by name: ``"direct"``, ``"rate"`` or ``"latency"``."""
    if kind not in ENCODERS:
        raise ValueError(f"encoder={kind!r} is unknown: use one of {sorted(ENCODERS)}.")
    return ENCODERS[kind](timesteps)
