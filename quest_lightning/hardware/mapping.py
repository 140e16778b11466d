r"""How a cell's read conductance becomes a weight level: the swappable converter between physics and weights.

An R-S pattern ``p`` puts level :math:`v` on state :math:`p(v)`, so level :math:`v` *stands for* the nominal
conductance :math:`g_v = 1 / R_{p(v)}`. A converter maps a read conductance :math:`G` back to a (possibly
fractional) level index through these nominal points, and so turns resistance variation into weight noise whose
size depends on the pattern: which levels sit on neighbouring conductances, and how far apart those levels are.
As in aihwkit, where a conductance converter is separate from the noise model, the converter is its own piece;
write another one by following :class:`ConductanceMapping`.

* :class:`NearestLevel`: a multi-level sense amplifier. Thresholds sit halfway between neighbouring nominal
  conductances; the read gives the level whose nominal conductance is nearest. Variation causes whole-level errors.
* :class:`LinearInterpolation`: an analog read. The level varies linearly with :math:`G` between neighbouring
  nominal points and is clamped at the outermost ones. Variation causes fractional errors.

At a nominal conductance both return that level exactly, so an ideal device reads every weight back bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from quest_lightning.devices.spec import DeviceSpec

__all__ = ["ConductanceMapping", "LinearInterpolation", "NearestLevel", "level_conductances"]


def level_conductances(device: DeviceSpec, pattern: Sequence[int], device_t: torch.device | None = None) -> Tensor:
    """Nominal conductance :math:`g_v = 1/R_{p(v)}` of every level ``v`` of ``pattern``, in siemens (``float64 [L]``).

    Raises:
        ValueError: If the pattern names a state the device lacks.
    """
    n = device.num_states
    bad = [s for s in pattern if not 0 <= int(s) < n]
    if bad:
        raise ValueError(
            f"pattern {tuple(pattern)} names state(s) {bad} that device {device.name!r} lacks (states 0..{n - 1})"
        )
    g = torch.reciprocal(torch.tensor(device.resistances_ohm, dtype=torch.float64, device=device_t))
    return g[torch.tensor([int(s) for s in pattern], dtype=torch.int64, device=device_t)]


@runtime_checkable
class ConductanceMapping(Protocol):
    """A converter from read conductance to level index.

    Attributes:
        name: A short name for tables and plots.
    """

    name: str

    def __call__(self, conductance_s: Tensor, level_conductance_s: Tensor) -> Tensor:
        """Level index (``float64``, ``0 .. L-1``, may be fractional) of every read conductance.

        Args:
            conductance_s: Read conductances in siemens, ``float64``, any shape.
            level_conductance_s: ``[L]`` nominal conductance of each level (:func:`level_conductances`), distinct.
        """
        ...


def _sorted_levels(level_conductance_s: Tensor) -> tuple[Tensor, Tensor]:
    order = torch.argsort(level_conductance_s)
    return level_conductance_s[order], order


@dataclass(frozen=True)
class NearestLevel:
    """A sense amplifier with thresholds halfway between neighbouring nominal conductances.

    .. math::

        \\hat v(G) = \\arg\\min_v |G - g_v| \\quad (\\text{a read exactly on a threshold goes to the lower } g).
    """

    name: str = "nearest level"

    def __call__(self, conductance_s: Tensor, level_conductance_s: Tensor) -> Tensor:
        g, order = _sorted_levels(level_conductance_s)
        thresholds = (g[1:] + g[:-1]) / 2
        return order[torch.bucketize(conductance_s, thresholds)].to(torch.float64)


@dataclass(frozen=True)
class LinearInterpolation:
    """An analog read: piecewise-linear in conductance between neighbouring nominal points, clamped at the ends.

    With the nominal points sorted by conductance, :math:`g_{(0)} < \\dots < g_{(L-1)}` holding levels
    :math:`v_{(i)}`, for :math:`g_{(i-1)} \\le G \\le g_{(i)}`

    .. math::

        \\hat v(G) = v_{(i-1)} + \\frac{G - g_{(i-1)}}{g_{(i)} - g_{(i-1)}}\\,\\big(v_{(i)} - v_{(i-1)}\\big),

    and :math:`\\hat v = v_{(0)}` below :math:`g_{(0)}`, :math:`v_{(L-1)}` above :math:`g_{(L-1)}`.
    """

    name: str = "linear interpolation"

    def __call__(self, conductance_s: Tensor, level_conductance_s: Tensor) -> Tensor:
        g, order = _sorted_levels(level_conductance_s)
        levels = order.to(torch.float64)
        if g.numel() == 1:
            return torch.zeros_like(conductance_s) + levels[0]
        pos = torch.bucketize(conductance_s, g).clamp(1, g.numel() - 1)
        g0, g1 = g[pos - 1], g[pos]
        frac = ((conductance_s - g0) / (g1 - g0)).clamp(0.0, 1.0)
        v0 = levels[pos - 1]
        return v0 + frac * (levels[pos] - v0)
