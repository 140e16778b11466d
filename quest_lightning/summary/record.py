"""The machinery every record of the run summary shares: the schema constants, validation (no NaN), the JSON
encoding and decoding driven by the dataclass fields, and the dict-style view of the 0.1.0 layout."""

from __future__ import annotations

import math
import types
from dataclasses import fields
from typing import Any, Union, get_args, get_origin, get_type_hints

SUMMARY_FILE = "quest_summary.json"
SCHEMA = "quest-lightning/summary-v2"
SCHEMA_V1 = "quest-lightning/summary-v1"
UNIT = "J/sample"
UNITS = {
    "energy": "joule per sample",
    "rates": "per neuron per sample, summed over T unless per_step",
    "aor": "operations over the ANN MACs x T (per time step)",
}
CONVENTIONS = {
    "levels": "index v + Q, most negative code first",
    "samples": "samples seen: those the layers met in the counted batches, padding left out, summed over DDP ranks",
    "write_energy": "sum_{i!=j} C[i,j] E_w^p[i,j] / samples",
    "read_energy": "sum_v N(v) E_r^p[v] / samples",
}
REGENERATE = f"regenerate it by training again with DeviceEnergyCallback (this version writes {SCHEMA})"


class SummaryFormatError(ValueError):
    """A summary file or dict that this version cannot read; the message says why and how to regenerate it."""


def check_finite(owner: str, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{owner}={value!r} is not a finite number: a figure that cannot be computed is None")
    if isinstance(value, (tuple, list)):
        for k, v in enumerate(value):
            check_finite(f"{owner}[{k}]", v)
    elif isinstance(value, dict):
        for k, v in value.items():
            check_finite(f"{owner}[{k!r}]", v)


def encode(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [encode(v) for v in value]
    return value


def _fits(tp: Any, value: Any) -> bool:
    origin = get_origin(tp) or tp
    if origin is tuple:
        return isinstance(value, (list, tuple))
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, origin) if isinstance(origin, type) else True


def decode(tp: Any, value: Any) -> Any:
    if value is None or tp is Any:
        return value
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        choice = next((a for a in options if _fits(a, value)), options[0])
        return decode(choice, value)
    if origin is tuple:
        return tuple(decode(get_args(tp)[0], v) for v in value)
    if origin is dict:
        return {str(k): decode(get_args(tp)[1], v) for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, Record):
        return tp.from_dict(value)
    if tp in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SummaryFormatError(f"expected a number, got {value!r}")
        return tp(value)
    return value


class Record:
    """Shared behaviour of the records: validation, ``to_dict``/``from_dict`` and the dict-style legacy view."""

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            check_finite(f"{type(self).__name__}.{f.name}", getattr(self, f.name))

    def _derived(self) -> dict[str, Any]:
        return {}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the fields, then the derived figures (``unit``, rates, means...)."""
        out = {f.name: encode(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]
        out.update(encode(self._derived()))
        return out

    @classmethod
    def _upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Fill fields that an older layout lacks from the keys it has (overridden where needed)."""
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Any:
        """Rebuild the record from :meth:`to_dict` output (derived and unknown keys are ignored).

        Raises:
            SummaryFormatError: ``data`` is not a mapping, misses a field, or holds a value of the wrong kind.
        """
        if not isinstance(data, dict):
            raise SummaryFormatError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        data = cls._upgrade(dict(data))
        hints = get_type_hints(cls)
        kwargs = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name in data:
                try:
                    kwargs[f.name] = decode(hints[f.name], data[f.name])
                except (TypeError, ValueError, AttributeError) as err:
                    raise SummaryFormatError(f"{cls.__name__}.{f.name}: {err}") from None
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as err:
            raise SummaryFormatError(f"{cls.__name__}: {err}") from None

    def __getitem__(self, key: str) -> Any:
        """The value of ``key`` in :meth:`to_dict` (the summary-v1 dict layout, for code written against 0.1.0)."""
        return self.to_dict()[key]


def mean_or_none(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def ratio_or_none(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def mean_batch(samples: int, steps: int) -> float | int:
    """Samples per optimizer step: an int when every step saw as many samples (it is not a divisor)."""
    mean = samples / steps if steps else 0
    return int(mean) if mean == int(mean) else mean
