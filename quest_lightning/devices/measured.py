r"""Measured devices: a table of resistances and write pulses, from CSV or YAML, into a :class:`DeviceSpec`.

A device researcher's table has two kinds of rows:

* **state rows**: a state index and one measured resistance in ohms, optionally with the ``device`` (cell) it was
  measured on. Repeat a state to give repeated measurements;
* **pulse rows**: a write ``src -> dst`` with its energy in joules, or with the pulse's voltage (V), current (A)
  and duration (s), from which :math:`E = |V I|\, t`. Repeated pulses of one edge are averaged.

The RSTD is the set of listed pulses. Each state's nominal resistance is the geometric mean of its measurements
(:math:`R_k = \exp \overline{\ln R}`; a single measurement is kept as is), and its variation is estimated from the
repeats by :func:`estimate_variation`.

**CSV.** Metadata first, as ``# key: value`` lines (YAML; ``##`` starts a plain comment), then a header and the rows:

.. code-block:: text

    # name: lab_mtj4
    # can_leak: false
    # read_voltage_v: 0.1
    # read_time_s: 1.0e-8
    # source: "Wafer 7, die 3, 2026-11-02"
    # nonideal: {read_sigma: 0.01}
    kind,state,resistance_ohm,device,src,dst,energy_j,voltage_v,current_a,duration_s
    state,0,5010,A,,,,,,
    state,0,4990,B,,,,,,
    pulse,,,,0,1,,0.5,1.0e-4,1.0e-8
    pulse,,,,1,0,3.0e-12,,,

**YAML.** The same metadata keys, with ``states`` (``{state, resistance_ohm, device}``; ``resistance_ohm`` may be a
list of repeats) and ``pulses`` (``{src, dst, energy_j}`` or ``{src, dst, voltage_v, current_a, duration_s}``).

Metadata keys: ``name``, ``can_leak``, the read energy (``read_energy_j`` or ``read_voltage_v`` + ``read_time_s``),
``illustrative`` (default ``False``: a measurement), ``source`` (required when not illustrative), ``description``,
``repeats_are`` (``"cycles"`` or ``"devices"``: what repeats without a ``device`` label are; default ``"cycles"``)
and ``nonideal`` (the non-idealities a table cannot give, e.g. read noise or endurance; a sigma given here and
estimated from repeats at once is an error). A worked example ships with the package: :func:`example_measurements`.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from quest_lightning.devices.io import DEVICE_KEYS, device_to_dict
from quest_lightning.devices.nonideal import NonIdealities
from quest_lightning.devices.spec import DeviceSpec

__all__ = [
    "CSV_COLUMNS",
    "estimate_variation",
    "example_measurements",
    "load_measured_device",
    "measured_device_from_dict",
    "save_measurements",
]

CSV_COLUMNS = (
    "kind",
    "state",
    "resistance_ohm",
    "device",
    "src",
    "dst",
    "energy_j",
    "voltage_v",
    "current_a",
    "duration_s",
)
_META = tuple(k for k in DEVICE_KEYS if k not in ("resistances_ohm", "transitions")) + ("repeats_are",)
_STATE_KEYS = ("state", "resistance_ohm", "device")
_PULSE_KEYS = ("src", "dst", "energy_j", "voltage_v", "current_a", "duration_s")

Reading = tuple[int, float, "str | None", str]  # state, resistance (ohm), device label, where
Pulse = tuple[int, int, float, str]  # src, dst, energy (J), where


def _err(where: str, message: str) -> ValueError:
    return ValueError(f"{where}: {message}" if where else message)


def _float(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool):
        raise _err(where, f"{key}={value!r} must be a number")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise _err(where, f"{key}={value!r} is not a number") from None
    if not math.isfinite(x):
        raise _err(where, f"{key}={value!r} must be finite")
    return x


def _index(where: str, key: str, value: Any) -> int:
    x = _float(where, key, value)
    if not x.is_integer() or x < 0:
        raise _err(where, f"{key}={value!r} must be a state index, an integer >= 0")
    return int(x)


def _reading(where: str, state: Any, resistance: Any, device: Any) -> Reading:
    r = _float(where, "resistance_ohm", resistance)
    if r <= 0:
        raise _err(where, f"resistance_ohm={resistance!r} must be positive (ohm); check the sign and the unit")
    return _index(where, "state", state), r, None if device in (None, "") else str(device), where


def _pulse(where: str, row: Mapping[str, Any]) -> Pulse:
    src, dst = _index(where, "src", row.get("src")), _index(where, "dst", row.get("dst"))
    electrical = [k for k in ("voltage_v", "current_a", "duration_s") if row.get(k) not in (None, "")]
    if row.get("energy_j") not in (None, ""):
        if electrical:
            given = ", ".join(electrical)
            raise _err(where, f"give the pulse's energy_j or its voltage_v, current_a, duration_s, not both ({given})")
        energy = _float(where, "energy_j", row["energy_j"])
    elif len(electrical) == 3:
        v, i, t = (_float(where, k, row[k]) for k in ("voltage_v", "current_a", "duration_s"))
        if t <= 0:
            raise _err(where, f"duration_s={t!r} must be positive (seconds)")
        energy = abs(v * i) * t
    else:
        raise _err(where, "a pulse needs energy_j (joules), or voltage_v (V), current_a (A) and duration_s (s)")
    if energy < 0:
        raise _err(where, f"energy_j={energy!r} must be >= 0 joules")
    return src, dst, energy, where


def estimate_variation(
    resistances_ohm: Sequence[float], devices: Sequence[str | None] | None = None, repeats_are: str = "cycles"
) -> tuple[float, float, float]:
    r"""Nominal resistance and device-to-device and cycle-to-cycle :math:`\sigma` of :math:`\ln R` for one state.

    With ``x = ln R``: the nominal resistance is :math:`\exp \bar x` (the measurement itself when there is one).
    Without device labels, the sample standard deviation of ``x`` is cycle-to-cycle (``repeats_are="cycles"``,
    repeats on one cell) or device-to-device (``"devices"``, one reading per cell). With labels, the one-way
    random-effects analysis of variance (method of moments; Searle, Casella and McCulloch, *Variance Components*,
    Wiley 1992, ch. 3) separates them: with :math:`D` devices, :math:`n_d` readings of device :math:`d`, :math:`n`
    readings in all,

    .. math::

        \sigma_{c2c}^2 = \frac{\sum_d \sum_c (x_{dc} - \bar x_d)^2}{n - D}, \qquad
        \sigma_{d2d}^2 = \max\Big(0, \frac{MS_b - \sigma_{c2c}^2}{n_0}\Big), \quad
        MS_b = \frac{\sum_d n_d (\bar x_d - \bar x)^2}{D - 1}, \quad n_0 = \frac{n - \sum_d n_d^2 / n}{D - 1}.

    One device: everything is cycle-to-cycle. One reading per device: the spread cannot be split and is all
    device-to-device.

    Returns:
        ``(nominal_ohm, d2d_sigma, c2c_sigma)``.

    Raises:
        ValueError: If there is no reading, a resistance is not positive, only some readings name a device, or
            ``repeats_are`` is unknown.
    """
    if repeats_are not in ("cycles", "devices"):
        raise ValueError(f"repeats_are={repeats_are!r} is invalid: use 'cycles' or 'devices'")
    rs = [float(r) for r in resistances_ohm]
    if not rs or any(not r > 0 for r in rs):
        raise ValueError(f"estimate_variation needs positive resistances, got {rs}")
    if len(rs) == 1:
        return rs[0], 0.0, 0.0
    x = [math.log(r) for r in rs]
    n = len(x)
    mean = sum(x) / n
    nominal = math.exp(mean)
    labels = list(devices) if devices is not None else [None] * n
    if len(labels) != n:
        raise ValueError(f"estimate_variation: {n} resistances but {len(labels)} device labels")
    named = [d is not None for d in labels]
    if any(named) and not all(named):
        raise ValueError("either every repeated measurement of a state names its device, or none does")
    spread = math.sqrt(sum((v - mean) ** 2 for v in x) / (n - 1))
    if not all(named):
        return (nominal, 0.0, spread) if repeats_are == "cycles" else (nominal, spread, 0.0)
    groups: dict[str, list[float]] = {}
    for v, d in zip(x, labels, strict=True):
        groups.setdefault(str(d), []).append(v)
    n_dev = len(groups)
    if n_dev == 1:
        return nominal, 0.0, spread
    if n == n_dev:
        return nominal, spread, 0.0
    means = {d: sum(g) / len(g) for d, g in groups.items()}
    ms_within = sum((v - means[d]) ** 2 for d, g in groups.items() for v in g) / (n - n_dev)
    ms_between = sum(len(g) * (means[d] - mean) ** 2 for d, g in groups.items()) / (n_dev - 1)
    n0 = (n - sum(len(g) ** 2 for g in groups.values()) / n) / (n_dev - 1)
    return nominal, math.sqrt(max(0.0, (ms_between - ms_within) / n0)), math.sqrt(ms_within)


def _build(meta: Mapping[str, Any], readings: list[Reading], pulses: list[Pulse], where: str) -> DeviceSpec:
    unknown = sorted(set(meta) - set(_META))
    if unknown:
        raise _err(where, f"unknown metadata key(s) {unknown}; valid keys are {list(_META)}")
    absent = [k for k in ("name", "can_leak") if k not in meta]
    if absent:
        raise _err(where, f"metadata {absent} missing: give the device's name and can_leak (true/false)")
    if not isinstance(meta.get("nonideal") or {}, Mapping):
        raise _err(where, f"nonideal={meta['nonideal']!r} must be a mapping of NonIdealities fields")
    if not readings:
        raise _err(where, "no state rows: list each state's measured resistance (state, resistance_ohm)")
    by_state: dict[int, list[Reading]] = {}
    for r in readings:
        by_state.setdefault(r[0], []).append(r)
    n = max(by_state) + 1
    missing = [k for k in range(n) if k not in by_state]
    if missing:
        raise _err(
            where,
            f"state(s) {missing} missing: resistances are listed for states {sorted(by_state)}, but every state "
            f"0..{n - 1} needs at least one resistance row (number the states 0..N-1 with no gap)",
        )
    energies: dict[tuple[int, int], list[float]] = {}
    for src, dst, energy, at in pulses:
        for end in (src, dst):
            if end >= n:
                raise _err(
                    at,
                    f"pulse {src} -> {dst} names state {end}, which has no resistance row; known states are 0..{n - 1}",
                )
        if src == dst:
            raise _err(at, f"pulse {src} -> {dst} does not change the state; list only transitions between states")
        energies.setdefault((src, dst), []).append(energy)
    for k in range(n):
        if not any(dst == k for _, dst in energies):
            raise _err(where, f"state {k} is unreachable: no pulse row ends at it (dst={k}); add the pulse writing it")
        if not any(src == k for src, _ in energies):
            raise _err(where, f"state {k} is a trap: no pulse row starts at it (src={k}); add the pulse that leaves it")
    repeats_are = meta.get("repeats_are", "cycles")
    nominal, d2d, c2c = [], [], []
    for k in range(n):
        rows = by_state[k]
        try:
            r, sd, sc = estimate_variation([r[1] for r in rows], [r[2] for r in rows], repeats_are)
        except ValueError as err:
            raise _err(where, f"state {k}: {err}") from None
        nominal.append(r)
        d2d.append(sd)
        c2c.append(sc)
    extra = dict(meta.get("nonideal") or {})
    for key, values in (("d2d_sigma", d2d), ("c2c_sigma", c2c)):
        if any(values):
            if key in extra:
                raise _err(where, f"{key} is both given in nonideal and estimated from repeated measurements; drop one")
            extra[key] = tuple(values)
    spec_fields = {k: v for k, v in meta.items() if k not in ("repeats_are", "nonideal")}
    spec_fields.setdefault("illustrative", False)
    try:
        return DeviceSpec(
            resistances_ohm=tuple(nominal),
            transitions=[(s, d, sum(e) / len(e)) for (s, d), e in energies.items()],
            nonideal=NonIdealities.from_dict(extra),
            **spec_fields,
        )
    except (TypeError, ValueError) as err:
        raise _err(where, str(err)) from None


def measured_device_from_dict(data: Mapping[str, Any], where: str = "", **overrides: Any) -> DeviceSpec:
    """Build a device from the YAML form of a measurement table (module docstring); ``overrides`` replace
    metadata keys.

    Raises:
        ValueError: On a malformed table (unknown key, missing or negative resistance, a pulse to an unknown state,
            an unreachable state, ...); the message says where (``where``, a row) and how to fix it.
    """
    if not isinstance(data, Mapping):
        raise _err(where, f"a measurement file must hold a mapping, got {type(data).__name__}")
    meta = {**{k: v for k, v in data.items() if k not in ("states", "pulses")}, **overrides}
    readings: list[Reading] = []
    for i, row in enumerate(data.get("states") or []):
        at = f"{where} states[{i}]".strip()
        if not isinstance(row, Mapping) or set(row) - set(_STATE_KEYS) or "state" not in row:
            raise _err(at, f"a state row is a mapping with keys {list(_STATE_KEYS)} (state required), got {row!r}")
        values = row.get("resistance_ohm")
        for r in values if isinstance(values, list) else [values]:
            readings.append(_reading(at, row["state"], r, row.get("device")))
    pulses: list[Pulse] = []
    for i, row in enumerate(data.get("pulses") or []):
        at = f"{where} pulses[{i}]".strip()
        if not isinstance(row, Mapping) or set(row) - set(_PULSE_KEYS):
            raise _err(at, f"a pulse row is a mapping with keys {list(_PULSE_KEYS)}, got {row!r}")
        pulses.append(_pulse(at, row))
    return _build(meta, readings, pulses, where)


def _read_csv(path: Path, overrides: Mapping[str, Any]) -> DeviceSpec:
    lines = path.read_text(encoding="utf-8").splitlines()
    head = 0
    meta_lines = []
    while head < len(lines) and (lines[head].startswith("#") or not lines[head].strip()):
        if lines[head].startswith("#") and not lines[head].startswith("##"):
            meta_lines.append(lines[head][1:].removeprefix(" "))
        head += 1
    try:
        meta = yaml.safe_load("\n".join(meta_lines)) or {}
    except yaml.YAMLError as err:
        raise _err(path.name, f"the '# key: value' metadata lines are not valid YAML: {err}") from None
    if not isinstance(meta, Mapping):
        raise _err(path.name, "the '# key: value' metadata lines must form a mapping")
    reader = csv.DictReader(io.StringIO("\n".join(lines[head:])))
    columns = [c.strip() for c in reader.fieldnames or []]
    bad = sorted(set(columns) - set(CSV_COLUMNS))
    if bad or "kind" not in columns:
        raise _err(
            path.name, f"header {columns} has unknown column(s) {bad} or lacks 'kind'; columns are {list(CSV_COLUMNS)}"
        )
    readings: list[Reading] = []
    pulses: list[Pulse] = []
    for raw in reader:
        at = f"{path.name} line {head + reader.line_num}"
        row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        kind = row.get("kind", "")
        own = ("kind", *(_STATE_KEYS if kind == "state" else _PULSE_KEYS))
        stray = [k for k, v in row.items() if v and k not in own]
        if kind not in ("state", "pulse"):
            raise _err(at, f"kind={kind!r} must be 'state' or 'pulse'")
        if stray:
            raise _err(at, f"a {kind} row takes {list(own[1:])}; these columns should be empty: {stray}")
        if kind == "state":
            readings.append(_reading(at, row.get("state"), row.get("resistance_ohm"), row.get("device")))
        else:
            pulses.append(_pulse(at, row))
    return _build({**meta, **overrides}, readings, pulses, path.name)


def load_measured_device(path: str | os.PathLike[str], **meta: Any) -> DeviceSpec:
    """Load a measurement table (``.csv``, ``.yaml`` or ``.yml``) into a :class:`DeviceSpec`.

    Args:
        path: The file.
        **meta: Metadata that overrides the file's (e.g. ``name="wafer7"``, ``can_leak=False``).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: On a malformed file; the message names the file, the row and what to fix.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"measurement file {str(p)!r} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return _read_csv(p, meta)
    if suffix in (".yaml", ".yml"):
        return measured_device_from_dict(yaml.safe_load(p.read_text(encoding="utf-8")), p.name, **meta)
    raise ValueError(f"measurement file {p.name!r}: expected a .csv, .yaml or .yml file")


def save_measurements(spec: DeviceSpec, path: str | os.PathLike[str]) -> Path:
    """Write ``spec`` as a measurement table (``.csv`` or ``.yaml``): one state row per state (its nominal
    resistance), one pulse row per RSTD edge (its energy), the non-idealities as metadata. Loading it back with
    :func:`load_measured_device` gives an equal spec."""
    p = Path(path)
    data = device_to_dict(spec)
    meta = {k: v for k, v in data.items() if k not in ("resistances_ohm", "transitions")}
    states = [{"state": k, "resistance_ohm": r} for k, r in enumerate(spec.resistances_ohm)]
    pulses = [{"src": e.src, "dst": e.dst, "energy_j": e.energy_j} for e in spec.transitions]
    if p.suffix.lower() in (".yaml", ".yml"):
        text = yaml.safe_dump({**meta, "states": states, "pulses": pulses}, sort_keys=False, allow_unicode=True)
    elif p.suffix.lower() == ".csv":
        header = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=10_000).splitlines()
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(
            [{"kind": "state", **{k: repr(v) if isinstance(v, float) else v for k, v in s.items()}} for s in states]
        )
        writer.writerows(
            [{"kind": "pulse", **{k: repr(v) if isinstance(v, float) else v for k, v in q.items()}} for q in pulses]
        )
        text = "".join(f"# {line}\n" for line in header) + out.getvalue()
    else:
        raise ValueError(f"save_measurements: {p.name!r} must end in .csv, .yaml or .yml")
    p.write_text(text, encoding="utf-8")
    return p


def example_measurements(fmt: Literal["csv", "yaml"] = "csv") -> Path:
    """Path of the example measurement table that ships with the package (made-up numbers showing the format)."""
    if fmt not in ("csv", "yaml"):
        raise ValueError(f"fmt={fmt!r} is invalid: use 'csv' or 'yaml'")
    return Path(str(resources.files("quest_lightning.devices") / "data" / f"example_measurements.{fmt}"))
