"""torchmetrics ``Metric`` s for spiking layers. They hold sums only, so they are exact under DDP (summed across
ranks in ``compute``) and survive checkpoints (``persistent=True``). The math is in
:mod:`quest_lightning.metrics.functional`."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from quest_lightning.metrics.functional import ann_ops, level_operation_counts, transition_counts, zero_code_count


def _zero(dtype=torch.float64, shape=()) -> Tensor:
    return torch.zeros(shape, dtype=dtype)


class SpikeRate(Metric):
    """Spike rate of a group of neurons.

    ``compute()`` returns ``{"rate": r, "rate_per_step": r / T}`` where :math:`r` is the number of spikes per neuron
    per sample summed over the :math:`T` steps (:math:`r = 1` costs as many operations as the ANN, the DIET-SNN
    convention).
    """

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("spikes", _zero(), dist_reduce_fx="sum", persistent=True)
        self.add_state("neuron_samples", _zero(), dist_reduce_fx="sum", persistent=True)
        self.add_state("neuron_steps", _zero(), dist_reduce_fx="sum", persistent=True)

    def update(self, spikes: Tensor | float, neurons: int, samples: int, rows: int) -> None:
        """Add ``spikes`` fired by ``neurons`` neurons over ``samples`` samples and ``rows`` = steps × samples."""
        self.spikes += spikes
        self.neuron_samples += neurons * samples
        self.neuron_steps += neurons * rows

    def compute(self) -> dict[str, Tensor]:
        return {"rate": self.spikes / self.neuron_samples, "rate_per_step": self.spikes / self.neuron_steps}


class WeightSparsity(Metric):
    """Share of integer weight codes equal to zero, :math:`s = \\#\\{\\hat w = 0\\} / N_W`."""

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("zeros", _zero(), dist_reduce_fx="sum", persistent=True)
        self.add_state("total", _zero(), dist_reduce_fx="sum", persistent=True)

    def update(self, codes: Tensor) -> None:
        zeros, total = zero_code_count(codes)
        self.zeros += zeros
        self.total += total

    def compute(self) -> Tensor:
        return self.zeros / self.total


class ActivationOperationRate(Metric):
    """Exact per-level synaptic operation counts :math:`N(v)` of one layer and its AOR.

    ``compute()`` returns

    * ``"aor"``: :math:`N_{eff} / (\\mathrm{OPS} \\cdot T \\cdot \\text{samples})`, operations where the input spike is
      1 and the weight code is non-zero, over the ANN-equivalent operations times :math:`T`;
    * ``"synaptic_rate"``: the same with zero weights included (the DIET-SNN-style operation rate);
    * ``"level_ops"``: :math:`N(v)` per level (index :math:`v + Q`), summed over everything recorded;
    * ``"level_ops_per_sample"``: :math:`N(v)` / samples (what the read energy needs);
    * ``"ops"``: the layer's ANN MACs per sample and step; ``"samples"``; ``"timesteps"``: recorded rows per sample.

    Args:
        layer: the ``QuantConv2d``/``QuantLinear`` (or any ``nn.Conv2d``/``nn.Linear``) whose operations are counted.
        qmax: the largest code :math:`Q` (0 for a full-precision layer counted as one level).
    """

    full_state_update = False

    def __init__(self, layer: nn.Module, qmax: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self._layer = [layer]  # not a child module: the metric must not own the model's parameters
        self.qmax = qmax
        self.add_state("level_ops", _zero(shape=(2 * qmax + 1,)), dist_reduce_fx="sum", persistent=True)
        self.add_state("dense_ops", _zero(), dist_reduce_fx="sum", persistent=True)
        self.add_state("samples", _zero(), dist_reduce_fx="sum", persistent=True)
        self.ops_per_step = 0

    def update(self, input_counts: Tensor, codes: Tensor, rows: Tensor | int, samples: int) -> None:
        """Add the operations of ``rows`` recorded rows (steps × samples) with per-position ``input_counts``."""
        layer = self._layer[0]
        self.ops_per_step = ann_ops(layer, tuple(input_counts.shape))
        self.level_ops += level_operation_counts(layer, input_counts, codes, self.qmax)
        self.dense_ops += rows * self.ops_per_step
        self.samples += samples

    def compute(self) -> dict[str, Tensor]:
        zero = self.qmax
        effective = self.level_ops.sum() - self.level_ops[zero]
        return {
            "aor": effective / self.dense_ops,
            "synaptic_rate": self.level_ops.sum() / self.dense_ops,
            "level_ops": self.level_ops,
            "level_ops_per_sample": self.level_ops / self.samples,
            "ops": torch.tensor(float(self.ops_per_step), dtype=torch.float64),
            "samples": self.samples,
            "timesteps": self.dense_ops / (self.ops_per_step * self.samples),
        }


class TransitionCounter(Metric):
    """Level → level transition counts :math:`C[i, j]` of one layer's codes, summed over optimizer steps.

    ``compute()`` returns the ``int64`` ``[L, L]`` matrix (rows: previous level :math:`i - Q`, columns: new level).
    Every rank holds the same weights, so under DDP the sum over ranks is divided by the world size in
    :meth:`compute` to count each weight once.
    """

    full_state_update = False

    def __init__(self, qmax: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.qmax = qmax
        levels = 2 * qmax + 1
        self.add_state("counts", _zero(torch.int64, (levels, levels)), dist_reduce_fx="sum", persistent=True)
        self.add_state("steps", _zero(torch.int64), dist_reduce_fx="sum", persistent=True)
        self.add_state("replicas", _zero(torch.int64) + 1, dist_reduce_fx="sum", persistent=True)

    def update(self, previous: Tensor, current: Tensor) -> None:
        self.counts += transition_counts(previous, current, self.qmax)
        self.steps += 1

    def compute(self) -> Tensor:
        return self.counts // self.replicas
