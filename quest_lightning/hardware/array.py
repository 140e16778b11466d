r"""A quantized layer on a real array: the per-cell draws and what each cell reads back.

Every weight lives on one cell. An :class:`ArrayModel` says which device, which R-S pattern and which converter
(:mod:`~quest_lightning.hardware.mapping`). :func:`draw_cells` draws what stays fixed for one physical array
(device-to-device offsets, stuck cells, drift exponents, and the programming noise of the one write that programmed
each cell), and :func:`read_levels` reads the cells back, with fresh read noise per read:

.. math::

    s = \begin{cases} s_{stuck} & \text{stuck cell} \\ p(\hat w + Q) & \text{otherwise} \end{cases}, \qquad
    \delta = \sigma_{d2d,s}\,\varepsilon_{d2d} + [\text{not stuck}]\,\sigma_{c2c,s}\,\varepsilon_{c2c}
             + \sigma_{read,s}\,\varepsilon_{read} + (\nu - c\,\mu_\nu) \ln\frac{t}{t_0},

.. math::

    G = \frac{e^{-\delta}}{R_s}, \qquad \hat v = \text{converter}(G;\ g_0, \dots, g_{L-1}),

the physics of :class:`~quest_lightning.devices.nonideal.NonIdealities`. ``c = 1`` with drift compensation (the
read-out is rescaled by the known mean drift, a global compensation as in aihwkit), else 0. A stuck cell is never
programmed, so it has no programming noise. With every :math:`\sigma`, the stuck fraction and the drift zero,
:math:`\delta = 0`, :math:`G` is exactly the nominal :math:`g` and every level reads back exactly.

**Seeding.** :func:`draw_cells` always draws the same random tensors in the same order, whatever the device's
numbers, so one seed gives the same :math:`\varepsilon` for every :math:`\sigma` and every pattern (common random
numbers): curves against :math:`\sigma` are smooth and patterns are compared on the same draws.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from quest_lightning.devices.patterns import RSPattern
from quest_lightning.devices.spec import DeviceSpec
from quest_lightning.functional.grid import qmax_of_levels
from quest_lightning.hardware.mapping import ConductanceMapping, NearestLevel, level_conductances

__all__ = ["ArrayModel", "CellDraw", "draw_cells", "read_levels"]


@dataclass(frozen=True)
class ArrayModel:
    """How a quantized layer sits on an array of ``device`` cells.

    Args:
        device: The device, with its :attr:`~quest_lightning.devices.spec.DeviceSpec.nonideal` statistics.
        pattern: The R-S pattern: ``pattern[v]`` is the state holding level ``v`` (an
            :class:`~quest_lightning.devices.patterns.RSPattern` or a tuple of distinct states, odd length).
        mapping: The converter from read conductance to level (default :class:`NearestLevel`).
        t_inference_s: Seconds after programming at which the array is read (for drift); ``None`` reads at
            :math:`t_0` (no drift).
        drift_compensation: Rescale the read-out by the known mean drift :math:`(t/t_0)^{\\mu_\\nu}`.

    Raises:
        ValueError: If the pattern is not a set of distinct states of the device with an odd length, or
            ``t_inference_s`` is before :math:`t_0`.
    """

    device: DeviceSpec
    pattern: tuple[int, ...]
    mapping: ConductanceMapping = field(default_factory=NearestLevel)
    t_inference_s: float | None = None
    drift_compensation: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.device, DeviceSpec):
            raise ValueError(f"ArrayModel.device must be a DeviceSpec, got {type(self.device).__name__}")
        states = self.pattern.states if isinstance(self.pattern, RSPattern) else self.pattern
        try:
            states = tuple(int(s) for s in states)
        except (TypeError, ValueError):
            raise ValueError(f"ArrayModel.pattern={self.pattern!r} must be a sequence of state indices") from None
        n = self.device.num_states
        if len(states) % 2 != 1 or len(set(states)) != len(states) or any(not 0 <= s < n for s in states):
            raise ValueError(
                f"ArrayModel.pattern={states} is invalid: give an odd number (2**bits - 1) of distinct states of "
                f"device {self.device.name!r} (0..{n - 1}), one per weight level"
            )
        object.__setattr__(self, "pattern", states)
        if not isinstance(self.mapping, ConductanceMapping):
            raise ValueError(f"ArrayModel.mapping={self.mapping!r} is not a converter (see ConductanceMapping)")
        if self.t_inference_s is not None:
            t = float(self.t_inference_s)
            if not math.isfinite(t) or t < self.device.nonideal.drift_t0_s:
                raise ValueError(
                    f"ArrayModel.t_inference_s={self.t_inference_s!r} must be a time in seconds >= t0 = "
                    f"{self.device.nonideal.drift_t0_s} s (the drift reference), or None"
                )
            object.__setattr__(self, "t_inference_s", t)

    @property
    def num_levels(self) -> int:
        """Number of weight levels ``L`` the pattern holds."""
        return len(self.pattern)

    @property
    def qmax(self) -> int:
        """Largest code :math:`Q = (L - 1)/2`."""
        return qmax_of_levels(self.num_levels)

    @property
    def has_read_noise(self) -> bool:
        """True if any state has read noise (a fresh draw is then needed per read)."""
        return any(self.device.nonideal.sigma("read_sigma", self.device.num_states))

    @property
    def drift_log_time(self) -> float:
        """:math:`\\ln(t/t_0)`, 0 when read at :math:`t_0` or when the device does not drift."""
        ni = self.device.nonideal
        if self.t_inference_s is None or not ni.has_drift:
            return 0.0
        return math.log(self.t_inference_s / ni.drift_t0_s)


@dataclass(frozen=True, eq=False)
class CellDraw:
    """What stays fixed for one physical array of one weight tensor (every tensor has the weight's shape).

    Attributes:
        d2d: :math:`\\varepsilon_{d2d}`, standard normal, ``float64``.
        c2c: :math:`\\varepsilon_{c2c}` of the programming write, standard normal, ``float64``.
        stuck: Which cells are stuck, ``bool``.
        stuck_state: The state a stuck cell holds (``int64``; meaningless where not stuck).
        drift_nu: The drift exponent :math:`\\nu` of each cell, ``float64``.
    """

    d2d: Tensor
    c2c: Tensor
    stuck: Tensor
    stuck_state: Tensor
    drift_nu: Tensor

    @property
    def num_stuck(self) -> int:
        """Number of stuck cells."""
        return int(self.stuck.sum())


def draw_cells(
    array: ArrayModel,
    shape: Sequence[int],
    generator: torch.Generator | None = None,
    device: torch.device | None = None,
) -> CellDraw:
    """Draw one physical array for a weight tensor of ``shape`` (always the same draws in the same order).

    Args:
        array: The array model.
        shape: The weight tensor's shape.
        generator: The random generator (on ``device``); ``None`` uses torch's global one.
        device: Where the draws live (the weights' device).
    """
    shape = tuple(int(s) for s in shape)
    ni = array.device.nonideal
    n = array.device.num_states

    def normal() -> Tensor:
        return torch.randn(shape, generator=generator, dtype=torch.float64, device=device)

    d2d, c2c = normal(), normal()
    stuck = torch.rand(shape, generator=generator, dtype=torch.float64, device=device) < ni.stuck_fraction
    random_state = torch.randint(0, n, shape, generator=generator, device=device)
    stuck_state = random_state if ni.stuck_state is None else torch.full_like(random_state, ni.stuck_state)
    nu = ni.drift_nu + ni.drift_nu_sigma * normal()
    return CellDraw(d2d=d2d, c2c=c2c, stuck=stuck, stuck_state=stuck_state, drift_nu=nu)


def _per_state(array: ArrayModel, name: str, device: torch.device) -> Tensor:
    return torch.tensor(array.device.nonideal.sigma(name, array.device.num_states), dtype=torch.float64, device=device)


def read_levels(codes: Tensor, array: ArrayModel, cells: CellDraw, read_eps: Tensor | None = None) -> Tensor:
    """Read every cell back: the level index (``float64``, ``0 .. L-1``) the converter returns (module docstring).

    Args:
        codes: Integer codes :math:`\\hat w \\in [-Q, Q]` of the programmed weights.
        array: The array model (``array.num_levels`` must be the grid's :math:`2Q + 1`).
        cells: The fixed draws of this array, shaped like ``codes``.
        read_eps: :math:`\\varepsilon_{read}` of this read (standard normal, like ``codes``), or ``None`` for no
            read noise.

    Returns:
        The level index read from every cell; the level read back is ``codes + Q`` wherever the cell is ideal.
    """
    dev = codes.device
    q = array.qmax
    pattern = torch.tensor(array.pattern, dtype=torch.int64, device=dev)
    states = torch.where(cells.stuck, cells.stuck_state, pattern[codes.long() + q])
    delta = _per_state(array, "d2d_sigma", dev)[states] * cells.d2d
    delta = delta + torch.where(cells.stuck, 0.0, _per_state(array, "c2c_sigma", dev)[states] * cells.c2c)
    if read_eps is not None:
        delta = delta + _per_state(array, "read_sigma", dev)[states] * read_eps
    log_t = array.drift_log_time
    if log_t:
        compensation = array.device.nonideal.drift_nu if array.drift_compensation else 0.0
        delta = delta + (cells.drift_nu - compensation) * log_t
    g_states = torch.reciprocal(torch.tensor(array.device.resistances_ohm, dtype=torch.float64, device=dev))
    conductance = g_states[states] * torch.exp(-delta)
    return array.mapping(conductance, level_conductances(array.device, array.pattern, dev))
