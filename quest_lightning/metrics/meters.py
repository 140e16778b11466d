"""torchmetrics ``Metric`` s for spiking layers. They hold sums only (``int64`` counts, ``float64`` where a count may
be fractional), so they survive checkpoints (``persistent=True``) and are exact under DDP: the summed states of the
ranks are added in ``compute``. A transition count is the exception: every rank holds the same weights, so
:class:`TransitionCounter` does not sync (``sync_on_compute=False``). The math, with a public function per meter, is
in :mod:`quest_lightning.metrics.functional` (and :mod:`quest_lightning.metrics.transitions`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from quest_lightning.functional.grid import levels_of_qmax
from quest_lightning.metrics.functional import (
    AORResult,
    SpikeRateResult,
    _aor_compute,
    _aor_update,
    _spike_rate_compute,
    _spike_rate_update,
    _weight_sparsity_compute,
    _weight_sparsity_update,
)
from quest_lightning.metrics.geometry import LayerGeometry
from quest_lightning.metrics.transitions import _transition_compute, _transition_update

__all__ = ["ActivationOperationRate", "InputKindTally", "SpikeRate", "TransitionCounter", "WeightSparsity"]


def _zeros(dtype: torch.dtype, shape: tuple[int, ...] = ()) -> Tensor:
    return torch.zeros(shape, dtype=dtype)


def _check_qmax(qmax: int) -> int:
    if isinstance(qmax, bool) or not isinstance(qmax, int) or qmax < 0:
        raise ValueError(f"qmax={qmax!r} is invalid: expected the largest integer code Q >= 0 (Q = 2**(bits-1) - 1).")
    return qmax


class SpikeRate(Metric):
    """Spike rate of a group of neurons (functional twin: :func:`~quest_lightning.metrics.functional.spike_rate`).

    ``compute()`` returns a :class:`~quest_lightning.metrics.functional.SpikeRateResult`: ``rate`` :math:`r`, the
    number of spikes per neuron per sample summed over the :math:`T` steps (:math:`r = 1` costs as many operations
    as the ANN, the DIET-SNN convention), ``rate_per_step`` :math:`r / T`, ``spikes`` and ``neuron_samples``.

    Example:
        >>> meter = SpikeRate()
        >>> meter.update(torch.tensor(6.0), neurons=4, samples=1, rows=2)  # 6 spikes of 4 neurons over T = 2
        >>> meter.update(torch.tensor(2.0), neurons=4, samples=1, rows=2)
        >>> out = meter.compute()
        >>> float(out.rate), float(out.rate_per_step)
        (1.0, 0.5)
    """

    is_differentiable = False
    higher_is_better: bool | None = None
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("spikes", _zeros(torch.float64), dist_reduce_fx="sum", persistent=True)
        self.add_state("neuron_samples", _zeros(torch.int64), dist_reduce_fx="sum", persistent=True)
        self.add_state("neuron_steps", _zeros(torch.int64), dist_reduce_fx="sum", persistent=True)

    def update(self, spikes: Tensor | float, neurons: int, samples: int, rows: int) -> None:
        """Add ``spikes`` fired by ``neurons`` neurons over ``samples`` samples and ``rows`` = steps × samples."""
        spikes_, neuron_samples, neuron_steps = _spike_rate_update(spikes, neurons, samples, rows)
        self.spikes += spikes_
        self.neuron_samples += neuron_samples
        self.neuron_steps += neuron_steps

    def compute(self) -> SpikeRateResult:
        """``rate`` and ``rate_per_step`` (NaN when nothing was recorded: check ``neuron_samples`` first)."""
        return _spike_rate_compute(self.spikes, self.neuron_samples, self.neuron_steps)


class WeightSparsity(Metric):
    """Share of integer weight codes equal to zero, :math:`s = \\#\\{\\hat w = 0\\} / N_W`, over every code seen
    (functional twin: :func:`~quest_lightning.metrics.functional.weight_sparsity`).

    Example:
        >>> meter = WeightSparsity()
        >>> meter.update(torch.tensor([[-1, 0], [0, 0]], dtype=torch.int8))
        >>> meter.update(torch.tensor([1, 1], dtype=torch.int8))
        >>> float(meter.compute())
        0.5
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("zeros", _zeros(torch.int64), dist_reduce_fx="sum", persistent=True)
        self.add_state("total", _zeros(torch.int64), dist_reduce_fx="sum", persistent=True)

    def update(self, codes: Tensor) -> None:
        """Add the codes of one weight tensor."""
        zeros, total = _weight_sparsity_update(codes)
        self.zeros += zeros
        self.total += total

    def compute(self) -> Tensor:
        """The zero share (NaN when no code was seen)."""
        return _weight_sparsity_compute(self.zeros, self.total)


class ActivationOperationRate(Metric):
    """Exact per-level synaptic operation counts :math:`N(v)` of one layer and its AOR (functional twin:
    :func:`~quest_lightning.metrics.functional.activation_operation_rate`).

    ``compute()`` returns an :class:`~quest_lightning.metrics.functional.AORResult`:

    * ``aor``: :math:`N_{eff} / (\\mathrm{OPS} \\cdot T \\cdot \\text{samples})`, operations where the input spike is
      1 and the weight code is non-zero, over the ANN-equivalent operations times :math:`T`;
    * ``synaptic_rate``: the same with zero weights included (the DIET-SNN-style operation rate);
    * ``level_ops``: :math:`N(v)` per level (index :math:`v + Q`), summed over everything recorded;
    * ``level_ops_per_sample``: :math:`N(v)` / samples;
    * ``ops``: the layer's ANN MACs per sample and step; ``rows``: recorded rows (steps × samples);
      ``samples``; ``timesteps``: recorded rows per sample.

    The ratios are NaN when nothing was recorded (``rows == 0``): check ``rows`` before reporting one.

    Args:
        geometry: The layer's shape as numbers (:meth:`LayerGeometry.of(layer) <LayerGeometry.of>`); the meter never
            holds the module.
        qmax: The largest code :math:`Q` (0 for a full-precision layer counted as one level).

    Example:
        >>> meter = ActivationOperationRate(LayerGeometry("linear", 3, 2), qmax=1)
        >>> codes = torch.tensor([[1, 0, -1], [0, 0, 1]], dtype=torch.int8)
        >>> meter.update(torch.tensor([2.0, 1.0, 0.0]), codes, rows=2, samples=1)
        >>> out = meter.compute()
        >>> out.level_ops.tolist(), float(out.aor), int(out.ops)
        ([0.0, 4.0, 2.0], 0.16666666666666666, 6)
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, geometry: LayerGeometry, qmax: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(geometry, LayerGeometry):
            raise TypeError(
                f"ActivationOperationRate takes a LayerGeometry, got {type(geometry).__name__}; pass "
                "LayerGeometry.of(layer)."
            )
        self.geometry = geometry
        self.qmax = _check_qmax(qmax)
        levels = levels_of_qmax(qmax)
        self.add_state("level_ops", _zeros(torch.float64, (levels,)), dist_reduce_fx="sum", persistent=True)
        self.add_state("rows", _zeros(torch.int64), dist_reduce_fx="sum", persistent=True)
        self.add_state("dense_ops", _zeros(torch.int64), dist_reduce_fx="sum", persistent=True)
        self.add_state("samples", _zeros(torch.int64), dist_reduce_fx="sum", persistent=True)

    def update(
        self,
        input_counts: Tensor,
        codes: Tensor,
        rows: Tensor | int,
        samples: int,
        max_count: float | None = None,
        column_levels: Tensor | None = None,
    ) -> None:
        """Add the operations of ``rows`` recorded rows (steps × samples) with per-position ``input_counts``;
        ``max_count`` bounds integer counts and ``column_levels`` is the linear layer's per-column level counts of
        ``codes`` when the caller keeps them (see
        :func:`~quest_lightning.metrics.functional.level_operation_counts`)."""
        level_ops, rows_, dense_ops = _aor_update(
            self.geometry, input_counts, codes, self.qmax, rows, max_count, column_levels
        )
        self.level_ops += level_ops
        self.rows += rows_
        self.dense_ops += dense_ops
        self.samples += int(samples)

    def compute(self) -> AORResult:
        """See the class docstring."""
        return _aor_compute(self.level_ops, self.rows, self.dense_ops, self.samples, self.qmax)


class InputKindTally(Metric):
    """What a layer's input was over an epoch: how many recorded input elements were neither 0 nor 1
    (``nonbinary``), and in how many of the ``updates`` the operations were counted as analog (``analog_updates``).

    ``compute()`` returns ``(nonbinary, analog_updates, updates)`` as ``int64`` tensors; the layer saw analog input
    when ``analog_updates > 0``, and a mix when ``0 < analog_updates < updates``.

    Example:
        >>> tally = InputKindTally()
        >>> tally.update(torch.tensor(0), torch.tensor(False))
        >>> tally.update(torch.tensor(5), torch.tensor(True))
        >>> tuple(int(v) for v in tally.compute())
        (5, 1, 2)
    """

    is_differentiable = False
    higher_is_better: bool | None = None
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("nonbinary", _zeros(torch.int64), dist_reduce_fx="sum", persistent=True)
        self.add_state("analog_updates", _zeros(torch.int64), dist_reduce_fx="sum", persistent=True)
        self.add_state("updates", _zeros(torch.int64), dist_reduce_fx="sum", persistent=True)

    def update(self, nonbinary: Tensor, analog: Tensor | bool) -> None:
        """Add one update's count of non-binary input elements and whether it was counted as analog."""
        self.nonbinary += torch.as_tensor(nonbinary, device=self.nonbinary.device).to(torch.int64)
        self.analog_updates += torch.as_tensor(analog, device=self.nonbinary.device).to(torch.int64)
        self.updates += 1

    def compute(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(nonbinary, analog_updates, updates)``."""
        return self.nonbinary, self.analog_updates, self.updates


class TransitionCounter(Metric):
    """Level → level transition counts :math:`C[i, j]` of one layer's codes, summed over optimizer steps
    (functional twin: :func:`~quest_lightning.metrics.functional.transition_counts`).

    ``compute()`` returns the ``int64`` ``[L, L]`` matrix (rows: previous level :math:`i - Q`, columns: new level).
    Every DDP rank holds the same weights, so the states are not summed across ranks (``sync_on_compute=False`` by
    default): each weight is counted once.

    Example:
        >>> meter = TransitionCounter(qmax=1)
        >>> meter.update(torch.tensor([-1, 0, 1], dtype=torch.int8), torch.tensor([0, 0, 1], dtype=torch.int8))
        >>> meter.compute().tolist(), int(meter.steps)
        ([[0, 1, 0], [0, 1, 0], [0, 0, 1]], 1)
    """

    is_differentiable = False
    higher_is_better: bool | None = None
    full_state_update = False

    def __init__(self, qmax: int, **kwargs: Any) -> None:
        kwargs.setdefault("sync_on_compute", False)
        super().__init__(**kwargs)
        self.qmax = _check_qmax(qmax)
        levels = levels_of_qmax(qmax)
        self.add_state("counts", _zeros(torch.int64, (levels, levels)), dist_reduce_fx="sum", persistent=True)
        self.add_state("steps", _zeros(torch.int64), dist_reduce_fx="sum", persistent=True)

    def update(self, previous: Tensor, current: Tensor) -> None:
        """Add the transitions of one optimizer step, from ``previous`` to ``current`` codes."""
        self.add(_transition_update(previous, current, self.qmax))

    def add(self, counts: Tensor) -> None:
        """Add one optimizer step's transition matrix counted elsewhere (by
        :func:`~quest_lightning.metrics.functional.transition_changes`, from the changed weights only)."""
        self.counts += counts
        self.steps += 1

    def compute(self) -> Tensor:
        """The summed transition matrix."""
        return _transition_compute(self.counts)
