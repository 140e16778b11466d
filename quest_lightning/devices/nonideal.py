r"""Non-idealities of a multi-state device: resistance variation, read noise, stuck cells, endurance and drift.

A :class:`NonIdealities` is one frozen, validated field of a :class:`~quest_lightning.devices.spec.DeviceSpec`
(``spec.nonideal``). Its default is the ideal device: every number zero, no fault, unlimited endurance. It describes
statistics only; :mod:`quest_lightning.hardware` draws the cells of an array from it.

**Resistance of a cell** programmed to state :math:`k` and read at time :math:`t` (lognormal, as multiplicative
variation on :math:`R`):

.. math::

    \ln R = \ln R_k + \sigma_{d2d,k}\,\varepsilon_{d2d} + \sigma_{c2c,k}\,\varepsilon_{c2c}
            + \sigma_{read,k}\,\varepsilon_{read} + \nu \ln\frac{t}{t_0},
    \qquad \varepsilon \sim \mathcal N(0, 1),\ \nu \sim \mathcal N(\mu_\nu, \sigma_\nu),

where :math:`\varepsilon_{d2d}` is drawn once per cell (device-to-device), :math:`\varepsilon_{c2c}` once per write
(cycle-to-cycle, i.e. programming noise), :math:`\varepsilon_{read}` once per read. A :math:`\sigma` is the standard
deviation of :math:`\ln R` (natural log), which for small values is the relative standard deviation of :math:`R`
(:math:`\sigma_R / R \approx \sigma`). The lognormal form keeps every resistance positive; the PCM model of
Joshi et al. (Nat. Commun. 11:2473, 2020), used by IBM's aihwkit, draws Gaussian noise on the conductance instead,
which agrees to first order in :math:`\sigma`.

**Drift** is the power law of aihwkit's PCM model (Joshi et al. 2020; Le Gallo et al., Adv. Electron. Mater.
4:1700627, 2018), :math:`G(t) = G(t_0)\,(t/t_0)^{-\nu}`, i.e. :math:`R(t) = R(t_0)\,(t/t_0)^{\nu}` for
:math:`t \ge t_0`, with the drift exponent :math:`\nu` drawn per cell.

**Stuck-at faults**: a fraction :math:`f` of cells, drawn once per array, hold ``stuck_state`` (or a state drawn
uniformly from all :math:`N` states when it is ``None``) whatever is written to them.

**Endurance**: a cell fails after :math:`N_{fail}` writes, the same for every cell (``endurance_sigma = 0``) or
lognormal, :math:`\ln N_{fail} \sim \mathcal N(\ln N_{50}, \sigma_{end})` with median
:math:`N_{50}` = ``endurance_cycles`` (see :mod:`quest_lightning.devices.endurance`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

__all__ = ["SIGMA_FIELDS", "NonIdealities", "SigmaField"]

SigmaField = Literal["d2d_sigma", "c2c_sigma", "read_sigma"]
SIGMA_FIELDS: tuple[str, ...] = ("d2d_sigma", "c2c_sigma", "read_sigma")


def _bad(field_name: str, value: Any, valid: str) -> ValueError:
    return ValueError(f"NonIdealities.{field_name}={value!r} is invalid: {valid}")


def _number(field_name: str, value: Any, *, low: float = 0.0, high: float = math.inf, what: str = "") -> float:
    if isinstance(value, bool):
        raise _bad(field_name, value, "expected a number, not a bool")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise _bad(field_name, value, "expected a number") from None
    if not math.isfinite(x) or not low <= x <= high:
        bounds = f">= {low}" if high == math.inf else f"in [{low}, {high}]"
        raise _bad(field_name, value, f"expected a finite number {bounds}{what}")
    return x


def _sigma(field_name: str, value: Any) -> float | tuple[float, ...]:
    unit = " (the standard deviation of ln R, dimensionless)"
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        return _number(field_name, value, what=unit)
    values = tuple(_number(field_name, v, what=unit) for v in value)
    if not values:
        raise _bad(field_name, value, "give one sigma for all states or one per state, not an empty list")
    return values


@dataclass(frozen=True)
class NonIdealities:
    r"""The statistics of a device's non-idealities; the default is the ideal device.

    Every :math:`\sigma` below is the standard deviation of :math:`\ln R` (dimensionless; about the relative
    standard deviation of :math:`R` when small), given once for all states or as one value per state.

    Args:
        d2d_sigma: Device-to-device variation: each cell's resistance is off its state's nominal value by a factor
            :math:`e^{\sigma_{d2d}\varepsilon}` fixed for that cell (drawn once per array).
        c2c_sigma: Cycle-to-cycle (programming) variation: a fresh factor :math:`e^{\sigma_{c2c}\varepsilon}`
            each time the cell is written.
        read_sigma: Read noise: a fresh factor :math:`e^{\sigma_{read}\varepsilon}` each time the cell is read.
        stuck_fraction: Fraction of cells (0 to 1) stuck at one state whatever is written to them.
        stuck_state: The state a stuck cell holds; ``None`` for a state drawn uniformly per stuck cell.
        endurance_cycles: Writes (level changes) a cell survives, the median when ``endurance_sigma > 0``;
            ``None`` for unlimited.
        endurance_sigma: Standard deviation of :math:`\ln N_{fail}` across cells (lognormal spread); 0 gives
            every cell the same limit. Needs ``endurance_cycles``.
        drift_nu: Mean drift exponent :math:`\mu_\nu` (dimensionless): :math:`R(t) = R(t_0)(t/t_0)^{\nu}`.
        drift_nu_sigma: Standard deviation :math:`\sigma_\nu` of the drift exponent across cells.
        drift_t0_s: Reference time :math:`t_0` in seconds after programming at which the programmed resistance is
            defined (20 s, as in aihwkit's PCM model).
        source: Where these numbers come from (a measurement, a paper, or "illustrative").

    Raises:
        ValueError: If a field is out of range; the message names the field, the value and what is valid.
            Per-state lengths and ``stuck_state`` are checked against the device by :meth:`check_states`.
    """

    d2d_sigma: float | tuple[float, ...] = 0.0
    c2c_sigma: float | tuple[float, ...] = 0.0
    read_sigma: float | tuple[float, ...] = 0.0
    stuck_fraction: float = 0.0
    stuck_state: int | None = None
    endurance_cycles: float | None = None
    endurance_sigma: float = 0.0
    drift_nu: float = 0.0
    drift_nu_sigma: float = 0.0
    drift_t0_s: float = 20.0
    source: str = ""

    def __post_init__(self) -> None:
        for name in SIGMA_FIELDS:
            object.__setattr__(self, name, _sigma(name, getattr(self, name)))
        object.__setattr__(self, "stuck_fraction", _number("stuck_fraction", self.stuck_fraction, high=1.0))
        if self.stuck_state is not None:
            s = self.stuck_state
            if isinstance(s, bool) or not isinstance(s, int) or s < 0:
                raise _bad("stuck_state", s, "expected a state index (an integer >= 0) or None for a random state")
        if self.endurance_cycles is not None:
            n = _number("endurance_cycles", self.endurance_cycles, what=" writes per cell")
            if n < 1:
                raise _bad("endurance_cycles", n, "a cell survives at least 1 write; use None for unlimited")
            object.__setattr__(self, "endurance_cycles", n)
        object.__setattr__(self, "endurance_sigma", _number("endurance_sigma", self.endurance_sigma))
        if self.endurance_sigma > 0 and self.endurance_cycles is None:
            raise _bad("endurance_sigma", self.endurance_sigma, "a spread needs endurance_cycles (the median) too")
        object.__setattr__(self, "drift_nu", _number("drift_nu", self.drift_nu, low=-math.inf))
        object.__setattr__(self, "drift_nu_sigma", _number("drift_nu_sigma", self.drift_nu_sigma))
        t0 = _number("drift_t0_s", self.drift_t0_s, what=" seconds")
        if t0 <= 0:
            raise _bad("drift_t0_s", t0, "expected a positive time in seconds")
        object.__setattr__(self, "drift_t0_s", t0)
        if not isinstance(self.source, str):
            raise _bad("source", self.source, "expected a string")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NonIdealities:
        """Build from a mapping of field names (as :meth:`to_dict` writes it).

        Raises:
            ValueError: On an unknown key (typos are not ignored) or an invalid value.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"nonideal must be a mapping of NonIdealities fields, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"unknown non-ideality key(s) {unknown}; valid keys are {names}")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        """The fields that differ from the ideal default, as YAML/JSON-safe values (tuples become lists)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @property
    def is_ideal(self) -> bool:
        """True if nothing is non-ideal: no variation, no noise, no fault, no drift, unlimited endurance."""
        return not self.to_dict().keys() - {"source", "drift_t0_s"}

    @property
    def has_drift(self) -> bool:
        """True if the drift exponent is not identically zero."""
        return self.drift_nu != 0.0 or self.drift_nu_sigma > 0.0

    def sigma(self, name: SigmaField | str, num_states: int) -> tuple[float, ...]:
        """One of the :math:`\\sigma` fields as one value per state.

        Raises:
            ValueError: If ``name`` is not a sigma field or its per-state length is not ``num_states``.
        """
        if name not in SIGMA_FIELDS:
            raise ValueError(f"{name!r} is not a variation field; use one of {SIGMA_FIELDS}")
        value = getattr(self, name)
        if isinstance(value, tuple):
            if len(value) != num_states:
                raise _bad(name, value, f"give one sigma for all states or exactly {num_states} (one per state)")
            return value
        return (value,) * num_states

    def check_states(self, num_states: int) -> None:
        """Check the per-state lengths and ``stuck_state`` against a device with ``num_states`` states.

        Raises:
            ValueError: If a per-state sigma has the wrong length or ``stuck_state`` is not ``0..num_states-1``.
        """
        for name in SIGMA_FIELDS:
            self.sigma(name, num_states)
        if self.stuck_state is not None and self.stuck_state >= num_states:
            raise _bad("stuck_state", self.stuck_state, f"the device has states 0..{num_states - 1}")
