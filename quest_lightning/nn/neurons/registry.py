"""The neuron back-end registry: which library's neuron a network is built from, by name.

A back-end is a builder ``build(params, surrogate) -> QuantNeuron`` and the neuron classes it makes. The built-in
ones, ``"spikingjelly"`` and ``"snntorch"``, register themselves at the end of their own module in this package; a
new one (Norse, say) is one more module that calls :func:`register_backend`, imported from this package's
``__init__``. :func:`make_neuron` dispatches through the registry and :func:`backend_of` answers which back-end a
built neuron belongs to, so no other module tells back-ends apart.

>>> neuron = make_neuron("snntorch", "if", "hard", threshold=0.5)
>>> type(neuron).__name__, backend_of(neuron), neuron.params.threshold
('QuantLeaky', 'snntorch', 0.5)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from quest_lightning.functional.neuron import NeuronParams
from quest_lightning.functional.surrogate import SpikeFn
from quest_lightning.nn.neurons.base import QuantNeuron

NeuronBuilder = Callable[[NeuronParams, SpikeFn | str], QuantNeuron]
NEURON_KINDS: tuple[str, ...] = ("if", "lif")


@dataclass(frozen=True)
class NeuronBackend:
    """One registered back-end.

    Attributes:
        name: the name given to ``backend=`` (``make_neuron``, ``SpikingVGG``, ``QuestVGG``).
        build: ``build(params, surrogate)`` returns a multi-step neuron whose ``params`` are exactly ``params``;
            ``surrogate`` is a name for :func:`~quest_lightning.functional.surrogate.get_surrogate` or a callable.
        neuron_types: the neuron classes the back-end makes; :func:`backend_of` recognises them (and subclasses).
    """

    name: str
    build: NeuronBuilder
    neuron_types: tuple[type[QuantNeuron], ...]


_BACKENDS: dict[str, NeuronBackend] = {}


def register_backend(
    name: str, build: NeuronBuilder, neuron_types: tuple[type[QuantNeuron], ...], *, overwrite: bool = False
) -> NeuronBackend:
    """Register a neuron back-end under ``name`` and return it.

    Raises:
        ValueError: ``name`` is taken (pass ``overwrite=True`` to replace it), or ``neuron_types`` is empty or holds
            a class that is not a :class:`~quest_lightning.nn.neurons.base.QuantNeuron`.
    """
    if name in _BACKENDS and not overwrite:
        raise ValueError(f"backend {name!r} is already registered; pass overwrite=True to replace it.")
    types = tuple(neuron_types)
    if not types or not all(isinstance(t, type) and issubclass(t, QuantNeuron) for t in types):
        raise ValueError(
            f"backend {name!r}: neuron_types={types!r} must name the QuantNeuron subclasses the back-end builds."
        )
    backend = NeuronBackend(name, build, types)
    _BACKENDS[name] = backend
    return backend


def unregister_backend(name: str) -> None:
    """Remove a registered back-end (a no-op for an unknown name)."""
    _BACKENDS.pop(name, None)


def list_backends() -> tuple[str, ...]:
    """The registered back-end names, in registration order."""
    return tuple(_BACKENDS)


def get_backend(name: str) -> NeuronBackend:
    """The back-end registered as ``name``.

    Raises:
        ValueError: no back-end has that name; the message lists those that do.
    """
    if name not in _BACKENDS:
        raise ValueError(
            f"backend={name!r} is unknown: use one of {list_backends()}, or register one with "
            "quest_lightning.nn.neurons.register_backend."
        )
    return _BACKENDS[name]


def backend_of(neuron: nn.Module) -> str:
    """The name of the back-end whose classes ``neuron`` is an instance of (the most specific class wins).

    Raises:
        ValueError: ``neuron`` belongs to no registered back-end.
    """
    owners = {t: b.name for b in _BACKENDS.values() for t in b.neuron_types}
    for cls in type(neuron).__mro__:
        if cls in owners:
            return owners[cls]
    raise ValueError(
        f"{type(neuron).__name__} belongs to no registered neuron back-end ({list_backends()}); register its class "
        "with quest_lightning.nn.neurons.register_backend."
    )


def make_neuron(
    backend: str,
    kind: str,
    reset: str,
    *,
    threshold: float = 0.5,
    decay: float = 0.5,
    surrogate: SpikeFn | str = "triangle",
    detach_reset: bool = False,
) -> QuantNeuron:
    """One multi-step neuron of the chosen back-end with the shared QUEST semantics.

    Both back-ends follow :math:`H_t = \\lambda U_{t-1} + X_t` and a soft reset subtracts :math:`\\theta` from
    :math:`H_t` (QUEST, METHOD.md §2); the one :class:`~quest_lightning.functional.neuron.NeuronParams` built here
    is the neuron's ``params``.

    Args:
        backend: a registered back-end (:func:`list_backends`).
        kind: ``"if"`` (:math:`\\lambda = 1`) or ``"lif"`` (:math:`\\lambda` = ``decay``, MINT uses 0.5).
        reset: ``"hard"`` or ``"soft"``.
        threshold: :math:`\\theta`; decay: the LIF leak; surrogate: a surrogate name or callable;
            detach_reset: stop the gradient through the reset.

    Raises:
        ValueError: an unknown back-end, kind or reset, a LIF ``decay`` outside :math:`(0, 1)`, or invalid
            parameters (see :class:`~quest_lightning.functional.neuron.NeuronParams`).
    """
    builder = get_backend(backend)
    if kind not in NEURON_KINDS:
        raise ValueError(f"neuron={kind!r} is unknown: use 'if' (integrate-and-fire) or 'lif' (leaky).")
    if reset not in ("hard", "soft"):
        raise ValueError(f"reset={reset!r} is unknown: use 'hard' or 'soft'.")
    lam = 1.0 if kind == "if" else float(decay)
    if kind == "lif" and not 0.0 < lam < 1.0:
        raise ValueError(f"decay={decay} must lie in (0, 1) for a LIF neuron.")
    params = NeuronParams(decay=lam, threshold=threshold, reset=reset, detach_reset=detach_reset)
    return builder.build(params, surrogate)
