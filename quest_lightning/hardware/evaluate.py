"""Hardware-aware evaluation: the test accuracy a real array would give, over repeated draws, patterns and sigmas.

:func:`evaluate_on_array` runs the test set on ``draws`` independently drawn arrays of one array model
(:func:`~quest_lightning.hardware.inject.on_array`) and returns every accuracy. :func:`variation_sweep` repeats that
for several values of one non-ideality (``d2d_sigma`` by default) and several R-S patterns, with the same draw
seeds for every pattern and value, so differences between patterns come from the patterns, not from the dice.

The model is any ``nn.Module`` with quantized layers; ``forward(model, x)`` turns one batch into ``[B, C]`` logits
(e.g. ``lambda m, x: m(encoder(x)).mean(0)`` for a spiking network with a ``[T, B, C]`` output). Batches are
``(x, y)`` pairs, moved to the model's device; they are iterated once per draw, so pass a list or a ``DataLoader``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from quest_lightning.devices.patterns import PatternSet, RSPattern, enumerate_patterns
from quest_lightning.devices.spec import DeviceSpec
from quest_lightning.hardware.array import ArrayModel
from quest_lightning.hardware.inject import on_array
from quest_lightning.hardware.mapping import ConductanceMapping, NearestLevel
from quest_lightning.hardware.results import ArrayAccuracy, VariationSweep
from quest_lightning.nn.inspect import require_quantized_layers

__all__ = ["SWEEPABLE", "Forward", "accuracy", "draw_seeds", "evaluate_on_array", "variation_sweep"]

Forward = Callable[[nn.Module, Tensor], Tensor]
Batches = Iterable[tuple[Tensor, Tensor]]
SWEEPABLE: tuple[str, ...] = ("d2d_sigma", "c2c_sigma", "read_sigma", "stuck_fraction", "drift_nu", "drift_nu_sigma")


def _check_batches(batches: Batches) -> None:
    if iter(batches) is batches:
        raise ValueError(
            "batches is a one-shot iterator, but it is iterated once per draw; pass a list of (x, y) or a DataLoader"
        )


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def accuracy(model: nn.Module, batches: Batches, forward: Forward | None = None) -> float:
    """Fraction of correct top-1 predictions of ``model`` on ``batches`` (exact: integer counts), without grad.

    Raises:
        ValueError: If ``forward`` (or ``model``) does not return ``[B, C]`` logits, or there is no sample.
    """
    device = next(model.parameters()).device
    correct = total = 0
    with torch.no_grad():
        for x, y in batches:
            logits = forward(model, x.to(device)) if forward is not None else model(x.to(device))
            if logits.dim() != 2 or logits.shape[0] != y.shape[0]:
                raise ValueError(
                    f"the forward pass returned shape {tuple(logits.shape)} for {y.shape[0]} samples, expected "
                    "[B, C] logits; pass forward=, e.g. lambda model, x: model(encoder(x)).mean(0) for a spiking "
                    "network with a [T, B, C] output"
                )
            correct += int((logits.argmax(1) == y.to(device)).sum())
            total += int(y.shape[0])
    if total == 0:
        raise ValueError("accuracy: the batches hold no sample")
    return correct / total


def draw_seeds(seed: int, draws: int) -> list[int]:
    """The seeds of draws ``0 .. draws-1``, derived from ``seed`` (distinct streams, the same for every pattern)."""
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws={draws!r} must be an integer >= 1")
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randint(0, 2**62, (draws,), generator=gen).tolist()


def evaluate_on_array(
    model: nn.Module,
    batches: Batches,
    array: ArrayModel,
    *,
    draws: int = 10,
    seed: int = 0,
    forward: Forward | None = None,
    ideal_accuracy: float | None = None,
) -> ArrayAccuracy:
    """Accuracy of ``model`` on ``draws`` independently drawn arrays of ``array``, and its ideal accuracy.

    With an ideal device (every sigma, the stuck fraction and the drift zero) every draw equals the ideal
    accuracy exactly: the array reads every weight back bit for bit.

    Args:
        model: The trained model (put in eval mode for the evaluation, then restored).
        batches: ``(x, y)`` test batches, re-iterable.
        array: Device, pattern and converter.
        draws: Number of arrays drawn.
        seed: Seed of the draws (:func:`draw_seeds`).
        forward: ``forward(model, x) -> [B, C]`` logits; default ``model(x)``.
        ideal_accuracy: The model's accuracy without an array, if already known (skips one pass).
    """
    _check_batches(batches)
    seeds = draw_seeds(seed, draws)
    with _eval_mode(model):
        ideal = accuracy(model, batches, forward) if ideal_accuracy is None else float(ideal_accuracy)
        accs = []
        for s in seeds:
            with on_array(model, array, s):
                accs.append(accuracy(model, batches, forward))
    return ArrayAccuracy(
        device=array.device.name,
        pattern=array.pattern,
        mapping=array.mapping.name,
        accuracies=tuple(accs),
        ideal_accuracy=ideal,
        seed=int(seed),
    )


def _pattern_states(
    model: nn.Module,
    device: DeviceSpec,
    patterns: PatternSet | Sequence[Sequence[int] | RSPattern] | None,
    states: Sequence[int] | None,
) -> list[tuple[int, ...]]:
    if patterns is None:
        bits = {layer.bits for _, layer in require_quantized_layers(model, "variation_sweep")}
        if len(bits) != 1:
            raise ValueError(f"variation_sweep: the quantized layers have bit widths {sorted(bits)}; pass patterns=")
        patterns = enumerate_patterns(device, bits.pop(), states)
    elif states is not None:
        raise ValueError("variation_sweep: give patterns= or states=, not both")
    rows = [p.states if isinstance(p, RSPattern) else tuple(int(s) for s in p) for p in patterns]
    if not rows:
        raise ValueError("variation_sweep: no pattern to evaluate")
    return rows


def variation_sweep(
    model: nn.Module,
    batches: Batches,
    device: DeviceSpec,
    values: Sequence[float],
    *,
    vary: str = "d2d_sigma",
    patterns: PatternSet | Sequence[Sequence[int] | RSPattern] | None = None,
    states: Sequence[int] | None = None,
    mapping: ConductanceMapping | None = None,
    draws: int = 10,
    seed: int = 0,
    forward: Forward | None = None,
    t_inference_s: float | None = None,
) -> VariationSweep:
    """Accuracy mean ± std against one non-ideality, for each R-S pattern.

    For every pattern and every value ``v`` of ``vary``, the device's other non-idealities are kept and ``vary``
    is set to ``v`` (one sigma for all states), and :func:`evaluate_on_array` runs ``draws`` arrays.

    Args:
        model: The trained model.
        batches: ``(x, y)`` test batches, re-iterable.
        device: The device; its ``nonideal`` gives the non-idealities held fixed.
        values: The values of ``vary`` to sweep, e.g. ``(0.0, 0.02, 0.05, 0.1)``.
        vary: The field swept, one of :data:`SWEEPABLE`.
        patterns: The patterns (a :class:`PatternSet`, patterns, or state tuples). Default: every pattern of the
            model's bit width on ``states`` (all device states when ``None``).
        states: The allowed states when ``patterns`` is not given, e.g. ``(0, 3, 6)``.
        mapping: The converter (default :class:`NearestLevel`).
        draws: Arrays per (pattern, value).
        seed: Seed of the draws; draw ``d`` has the same seed for every pattern and value.
        forward: ``forward(model, x) -> [B, C]`` logits.
        t_inference_s: Read time after programming, for drift.

    Raises:
        ValueError: On an unknown ``vary``, an invalid value (a negative sigma, a fraction above 1), or a pattern
            that does not fit the model.
    """
    if vary not in SWEEPABLE:
        raise ValueError(f"vary={vary!r} cannot be swept; use one of {SWEEPABLE}")
    if not values:
        raise ValueError("variation_sweep: values is empty; give the values of the swept non-ideality")
    _check_batches(batches)
    mapping = mapping if mapping is not None else NearestLevel()
    rows = _pattern_states(model, device, patterns, states)
    specs = [device.with_nonideal(**{vary: float(v)}) for v in values]
    with _eval_mode(model):
        ideal = accuracy(model, batches, forward)
    table = []
    for pattern in rows:
        table.append(
            tuple(
                evaluate_on_array(
                    model,
                    batches,
                    ArrayModel(spec, pattern, mapping, t_inference_s),
                    draws=draws,
                    seed=seed,
                    forward=forward,
                    ideal_accuracy=ideal,
                ).accuracies
                for spec in specs
            )
        )
    fixed = {k: v for k, v in device.nonideal.to_dict().items() if k != vary}
    return VariationSweep(
        device=device.name,
        vary=vary,
        values=tuple(float(v) for v in values),
        patterns=tuple(rows),
        accuracy=tuple(table),
        ideal_accuracy=ideal,
        draws=draws,
        seed=int(seed),
        mapping=mapping.name,
        nonideal=fixed,
        t_inference_s=t_inference_s,
    )
