"""Surrogate spike functions, picked by name from SpikingJelly or snnTorch (never re-implemented here).

A surrogate is a callable ``f(h - threshold) -> spikes``: a Heaviside step in the forward pass with a smooth
derivative in the backward pass. Names:

* ``"triangle"`` (the default): MINT's triangle :math:`\\max(0, 1 - |H - \\theta|)`, which is exactly SpikingJelly's
  ``PiecewiseQuadratic(alpha=1)``;
* ``"sj.<Name>"``: any SpikingJelly surrogate class, e.g. ``"sj.Sigmoid"``, ``"sj.ATan"``, ``"sj.PiecewiseQuadratic"``;
* ``"snntorch.<name>"``: any snnTorch surrogate factory, e.g. ``"snntorch.atan"``, ``"snntorch.fast_sigmoid"``.

Keyword arguments go to the wrapped constructor: ``get_surrogate("sj.Sigmoid", alpha=4.0)``.

Note the forward conventions differ at exactly :math:`H = \\theta`: SpikingJelly fires on :math:`H - \\theta \\ge 0`,
snnTorch on :math:`H - \\theta > 0`. :func:`fires_at_threshold` tells which one a surrogate uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

SpikeFn = Callable[[Tensor], Tensor]

DEFAULT_SURROGATE = "triangle"


def _sj_surrogate(name: str, **kwargs: Any) -> SpikeFn:
    from spikingjelly.activation_based import surrogate as sj

    cls = getattr(sj, name, None)
    if not (isinstance(cls, type) and issubclass(cls, sj.SurrogateFunctionBase)):
        options = sorted(
            n for n, v in vars(sj).items() if isinstance(v, type) and issubclass(v, sj.SurrogateFunctionBase)
        )
        raise ValueError(f"surrogate 'sj.{name}' is not a SpikingJelly surrogate; choose one of {options}.")
    return cls(**kwargs)


def _snntorch_surrogate(name: str, **kwargs: Any) -> SpikeFn:
    from snntorch import surrogate as snn_sg

    factory = getattr(snn_sg, name, None)
    if factory is None or isinstance(factory, type) or not callable(factory):
        options = sorted(n for n, v in vars(snn_sg).items() if callable(v) and not isinstance(v, type) and n.islower())
        raise ValueError(f"surrogate 'snntorch.{name}' is not an snnTorch surrogate factory; choose one of {options}.")
    return factory(**kwargs)


def get_surrogate(spec: str | SpikeFn | None = None, **kwargs: Any) -> SpikeFn:
    """Return a spike function for ``spec`` (a name, a callable, or ``None`` for the default triangle)."""
    if spec is None:
        spec = DEFAULT_SURROGATE
    if callable(spec):
        if kwargs:
            raise ValueError("surrogate keyword arguments only apply to a surrogate given by name.")
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"surrogate={spec!r} must be a name such as 'triangle' or 'sj.Sigmoid', or a callable.")
    if spec == "triangle":
        return _sj_surrogate("PiecewiseQuadratic", alpha=1.0, **kwargs)
    prefix, _, name = spec.partition(".")
    if prefix in ("sj", "spikingjelly") and name:
        return _sj_surrogate(name, **kwargs)
    if prefix in ("snntorch", "snn") and name:
        return _snntorch_surrogate(name, **kwargs)
    raise ValueError(
        f"surrogate={spec!r} is unknown: use 'triangle', 'sj.<SpikingJellyClass>' (e.g. 'sj.Sigmoid') or "
        "'snntorch.<factory>' (e.g. 'snntorch.atan'), or pass a callable."
    )


def fires_at_threshold(spike_fn: SpikeFn) -> bool:
    """Whether ``spike_fn`` fires when the membrane equals the threshold exactly (``H - theta == 0``)."""
    with torch.no_grad():
        return bool(spike_fn(torch.zeros(1)).item() > 0)
