"""Pure functions behind the meters: spike rate, weight sparsity, exact AOR and transitions, each as a public function
with its ``_update`` (sufficient statistics) and ``_compute`` (finish) twins, the torchmetrics pattern. The
transitions live in :mod:`quest_lightning.metrics.transitions` and the exact histograms in
:mod:`quest_lightning.metrics.histogram`; both are re-exported here.

Counting the Activation Operation Rate exactly
----------------------------------------------
For a layer with integer weight codes :math:`\\hat w` and input spike counts :math:`n(x)` (spikes at input position
:math:`x`, summed over time steps and samples), the number of operations where the input spike is 1 and the weight
has level :math:`v` is

.. math::

    N(v) = \\sum_x n(x)\\, c_v(x) = \\sum_{k:\\ \\hat w_k = v} G_k, \\qquad
    G_k = \\sum_{\\text{output positions } p} n(\\text{input that weight } k \\text{ meets at } p),

where :math:`c_v(x)` counts the weights of level :math:`v` touching :math:`x` (a transposed convolution of the level
mask). We use the right-hand form: :math:`G` is the weight gradient of the layer for the input :math:`n` and an
all-ones output gradient (one correlation, any stride, padding, dilation or groups), and one ``bincount`` of the
codes weighted by :math:`G` gives every level at once. Nothing is unfolded. :math:`N_{eff} = \\sum_{v \\ne 0} N(v)`
and :math:`\\mathrm{AOR} = N_{eff} / (\\mathrm{OPS} \\cdot \\text{rows})`, rows being time steps × samples.

Precision: every count is accumulated in ``int64``, or in ``float64`` where it may be fractional (input counts of a
graded input), whatever the dtype of the tensors given; ``float64`` holds every integer up to :math:`2^{53}` exactly.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from quest_lightning.functional.grid import level_index, levels_of_qmax
from quest_lightning.metrics.column_levels import column_level_counts
from quest_lightning.metrics.geometry import LayerGeometry
from quest_lightning.metrics.histogram import FLOAT32_EXACT, histogram, weighted_histogram
from quest_lightning.metrics.transitions import (
    TransitionChanges,
    TransitionFractions,
    level_counts,
    transition_changes,
    transition_counts,
    transition_summary,
)

__all__ = [
    "AORResult",
    "SpikeRateResult",
    "TransitionChanges",
    "TransitionFractions",
    "activation_operation_rate",
    "histogram",
    "level_counts",
    "level_operation_counts",
    "spike_rate",
    "transition_changes",
    "transition_counts",
    "transition_summary",
    "weight_input_sums",
    "weight_sparsity",
]


class SpikeRateResult(NamedTuple):
    """What :func:`spike_rate` and ``SpikeRate.compute()`` return (float64 rates; NaN only when nothing was recorded,
    which ``neuron_samples == 0`` says)."""

    rate: Tensor  # spikes per neuron per sample, summed over the T steps
    rate_per_step: Tensor  # rate / T
    spikes: Tensor  # the spikes counted
    neuron_samples: Tensor  # neurons x samples, the divisor of ``rate``


class AORResult(NamedTuple):
    """What :func:`activation_operation_rate` and ``ActivationOperationRate.compute()`` return (ratios NaN only when
    nothing was recorded, which ``rows == 0`` says)."""

    aor: Tensor  # N_eff / (ops x rows), per time step
    synaptic_rate: Tensor  # sum_v N(v) / (ops x rows)
    level_ops: Tensor  # N(v), index v + Q, float64 of exact integers
    level_ops_per_sample: Tensor  # N(v) / samples
    ops: Tensor  # ANN MACs per sample and step
    rows: Tensor  # time steps x samples recorded
    samples: Tensor  # samples recorded
    timesteps: Tensor  # rows / samples


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name}={value!r} is invalid: expected a positive integer.")
    return int(value)


def _count(value: Tensor | float | int, dtype: torch.dtype) -> Tensor:
    return torch.as_tensor(value).detach().to(dtype).sum(dtype=dtype)


# --- spike rate -----------------------------------------------------------------------------------------------------
def _spike_rate_update(spikes: Tensor | float, neurons: int, samples: int, rows: int) -> tuple[Tensor, int, int]:
    """Sufficient statistics: total spikes (float64), neuron-samples and neuron-rows (``rows`` = steps × samples)."""
    return _count(spikes, torch.float64), int(neurons) * int(samples), int(neurons) * int(rows)


def _spike_rate_compute(spikes: Tensor, neuron_samples: Tensor, neuron_steps: Tensor) -> SpikeRateResult:
    """``rate`` = spikes / (neurons × samples) and ``rate_per_step`` = spikes / (neurons × rows) (NaN when nothing
    was recorded), with the sums they come from."""
    return SpikeRateResult(spikes / neuron_samples, spikes / neuron_steps, spikes, neuron_samples)


def spike_rate(spikes: Tensor | float, neurons: int, samples: int, rows: int) -> SpikeRateResult:
    """Spike rate of a group of ``neurons`` neurons that fired ``spikes`` spikes over ``samples`` samples.

    .. math::

        r = \\frac{\\#\\text{spikes}}{N \\cdot \\text{samples}}, \\qquad r_{step} = \\frac{\\#\\text{spikes}}{N \\cdot
        \\text{rows}}

    :math:`r` sums over the :math:`T` time steps (``rows`` = :math:`T` × samples), so :math:`r = 1` costs as many
    operations as the ANN (the DIET-SNN convention).

    Args:
        spikes: The spikes (a spike tensor is summed) or their count.
        neurons: Neurons in the group (per sample and step).
        samples: Samples the spikes cover.
        rows: Time steps × samples.

    Returns:
        A :class:`SpikeRateResult`: ``rate`` (:math:`r`), ``rate_per_step``, ``spikes`` and ``neuron_samples``.

    Raises:
        ValueError: ``neurons``, ``samples`` or ``rows`` is not a positive integer.

    Example:
        >>> s = torch.tensor([[[1.0, 0, 1, 1]], [[0.0, 0, 1, 0]]])  # [T=2, B=1, N=4]
        >>> out = spike_rate(s, neurons=4, samples=1, rows=2)
        >>> float(out.rate), float(out.rate_per_step)
        (1.0, 0.5)
    """
    spikes_, ns, nr = _spike_rate_update(
        spikes, _positive("neurons", neurons), _positive("samples", samples), _positive("rows", rows)
    )
    return _spike_rate_compute(spikes_, torch.tensor(ns, dtype=torch.int64), torch.tensor(nr, dtype=torch.int64))


# --- weight sparsity ------------------------------------------------------------------------------------------------
def _weight_sparsity_update(codes: Tensor) -> tuple[Tensor, int]:
    """Number of zero codes (an ``int64`` tensor, no host sync) and the number of codes."""
    return (codes == 0).sum(dtype=torch.int64), codes.numel()


def _weight_sparsity_compute(zeros: Tensor, total: Tensor) -> Tensor:
    """:math:`s = \\#\\{\\hat w = 0\\} / N_W` (float64; NaN when no code was seen)."""
    return zeros.to(torch.float64) / total


def weight_sparsity(codes: Tensor) -> Tensor:
    """Share of integer weight codes equal to zero, :math:`s = \\#\\{\\hat w = 0\\} / N_W` (a float64 scalar).

    Raises:
        ValueError: ``codes`` is empty.

    Example:
        >>> float(weight_sparsity(torch.tensor([[-1, 0, 0], [0, 1, 0]], dtype=torch.int8)))
        0.6666666666666666
    """
    if codes.numel() == 0:
        raise ValueError("weight_sparsity: codes is empty; pass the integer codes of a layer's weights.")
    zeros, total = _weight_sparsity_update(codes)
    return _weight_sparsity_compute(zeros, torch.tensor(total, dtype=torch.int64))


# --- exact AOR ------------------------------------------------------------------------------------------------------
def weight_input_sums(geometry: LayerGeometry, input_counts: Tensor, dtype: torch.dtype = torch.float64) -> Tensor:
    """:math:`G`, shaped like the weight: for every weight, the input count it meets summed over output positions.

    Args:
        geometry: The layer's geometry.
        input_counts: ``[C, H, W]``, ``[C, L]`` or ``[F]`` counts.
        dtype: The dtype of the correlation (``float64``; ``float32`` only where every sum is an integer below
            :math:`2^{24}`, see :func:`level_operation_counts`).
    """
    counts = input_counts.to(dtype)
    if geometry.kind == "linear":
        return counts.unsqueeze(0).expand(geometry.out_channels, -1)
    if geometry.kind == "conv1d":
        counts = counts.unsqueeze(-2)  # [C, 1, L]: a 2-D convolution of height 1
    top, bottom, left, right = geometry.padding
    padded = F.pad(counts.unsqueeze(0), (left, right, top, bottom))
    h_out, w_out = geometry.output_size(counts.shape[-2], counts.shape[-1])
    ones = torch.ones(1, geometry.out_channels, h_out, w_out, dtype=dtype, device=counts.device)
    shape = (geometry.out_channels, geometry.in_channels // geometry.groups, *geometry.kernel_size)
    g = torch.nn.grad.conv2d_weight(
        padded, shape, ones, stride=geometry.stride, dilation=geometry.dilation, groups=geometry.groups
    )
    return g.reshape(geometry.weight_shape)


def level_operation_counts(
    geometry: LayerGeometry,
    input_counts: Tensor,
    codes: Tensor,
    qmax: int,
    *,
    max_count: float | None = None,
    column_levels: Tensor | None = None,
) -> Tensor:
    """:math:`N(v)` for every level :math:`v = -Q \\dots Q` (index :math:`v + Q`), as a float64 tensor of exact
    integers: synaptic operations with an input spike and a weight of that level, summed over what was recorded.

    For a linear layer every weight of column :math:`i` meets input :math:`i`, so
    :math:`N(v) = \\sum_i n(i)\\,\\#\\{o : \\hat w_{oi} = v\\}`: one pass over the ``int8`` codes per level.

    Args:
        geometry, input_counts, codes, qmax: The layer, its recorded counts, its codes and :math:`Q`.
        max_count: When the counts are integers, a bound on every one of them (the recorded rows, for spike input or
            the all-MAC count of an analog input). On the CPU the correlation of a convolution then runs in
            ``float32`` whenever ``max_count`` × the output positions is at most :math:`2^{24}`: every partial sum is
            an integer ``float32`` holds, so the result is the ``float64`` one, at a fraction of the cost.
        column_levels: For a linear layer, :math:`\\#\\{o : \\hat w_{oi} = v\\}` as ``[L, I]`` integers when the
            caller keeps them (:class:`~quest_lightning.metrics.column_levels.ColumnLevels`); they must be those of
            ``codes``.
    """
    levels = levels_of_qmax(qmax)
    if geometry.kind == "linear" and (levels <= 16 or column_levels is not None):
        if column_levels is None:
            column_levels = column_level_counts(codes, qmax)
        return column_levels.to(torch.float64) @ input_counts.to(torch.float64)
    dtype = torch.float64
    positions = geometry.output_positions(tuple(input_counts.shape))
    if max_count is not None and input_counts.device.type == "cpu" and max_count * positions <= FLOAT32_EXACT:
        dtype = torch.float32
    g = weight_input_sums(geometry, input_counts, dtype)
    return weighted_histogram(level_index(codes.to(torch.int64), qmax), g, levels)


def _aor_update(
    geometry: LayerGeometry,
    input_counts: Tensor,
    codes: Tensor,
    qmax: int,
    rows: Tensor | int,
    max_count: float | None = None,
    column_levels: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Sufficient statistics of ``rows`` recorded rows: :math:`N(v)` (float64), rows and dense MACs (``int64``).

    An empty ``input_counts`` (a layer that never ran) contributes zeros. No host synchronisation. ``max_count``: see
    :func:`level_operation_counts`, as is ``column_levels``."""
    rows_ = _count(rows, torch.int64)
    if input_counts.numel() == 0:
        return torch.zeros(levels_of_qmax(qmax), dtype=torch.float64, device=codes.device), rows_ * 0, rows_ * 0
    level_ops = level_operation_counts(
        geometry, input_counts, codes, qmax, max_count=max_count, column_levels=column_levels
    )
    return level_ops, rows_, rows_ * geometry.ops(tuple(input_counts.shape))


def _aor_compute(level_ops: Tensor, rows: Tensor, dense_ops: Tensor, samples: Tensor, qmax: int) -> dict[str, Tensor]:
    """AOR, synaptic rate, :math:`N(v)` (total and per sample), ops per step, samples and time steps.

    A ratio whose denominator is zero (nothing recorded) is NaN here: check ``rows`` before reporting one."""
    total = level_ops.sum()
    effective = total - level_ops[qmax]
    dense = dense_ops.to(torch.float64)
    return AORResult(
        aor=effective / dense,
        synaptic_rate=total / dense,
        level_ops=level_ops,
        level_ops_per_sample=level_ops / samples,
        ops=torch.div(dense_ops, rows, rounding_mode="floor") if int(rows) else rows * 0,
        rows=rows,
        samples=samples,
        timesteps=rows.to(torch.float64) / samples,
    )


def activation_operation_rate(
    geometry: LayerGeometry, input_counts: Tensor, codes: Tensor, qmax: int, rows: int, samples: int
) -> AORResult:
    """Exact per-level operation counts :math:`N(v)` of one layer and its Activation Operation Rate.

    .. math::

        \\mathrm{AOR} = \\frac{\\sum_{v \\ne 0} N(v)}{\\mathrm{OPS} \\cdot \\text{rows}}, \\qquad
        \\text{synaptic rate} = \\frac{\\sum_v N(v)}{\\mathrm{OPS} \\cdot \\text{rows}}

    (QUEST, arXiv 2504.00679, Eq. 9, normalised per time step as in METHOD.md §6).

    Args:
        geometry: The layer's geometry (:meth:`LayerGeometry.of`).
        input_counts: Spikes per input position summed over the ``rows`` rows, shape ``[C, H, W]`` or ``[F]``.
        codes: Integer weight codes, shaped like the weight.
        qmax: Largest code :math:`Q` (levels :math:`-Q \\dots Q`).
        rows: Time steps × samples recorded.
        samples: Samples recorded.

    Returns:
        An :class:`AORResult`: ``aor``, ``synaptic_rate``, ``level_ops`` (:math:`N(v)`, index :math:`v + Q`),
        ``level_ops_per_sample``, ``ops`` (MACs per sample and step), ``rows``, ``samples`` and ``timesteps``.

    Raises:
        ValueError: ``rows`` or ``samples`` is not a positive integer.

    Example:
        >>> g = LayerGeometry("linear", 3, 2)
        >>> codes = torch.tensor([[1, 0, -1], [0, 0, 1]], dtype=torch.int8)
        >>> out = activation_operation_rate(g, torch.tensor([2.0, 1.0, 0.0]), codes, qmax=1, rows=2, samples=1)
        >>> out.level_ops.tolist(), float(out.aor)  # 2 ops at +1, 4 at 0: AOR = 2 / (6 MACs x 2 rows)
        ([0.0, 4.0, 2.0], 0.16666666666666666)
    """
    level_ops, rows_, dense = _aor_update(geometry, input_counts, codes, qmax, _positive("rows", rows))
    samples_ = torch.tensor(_positive("samples", samples), dtype=torch.int64)
    return _aor_compute(level_ops, rows_, dense, samples_, qmax)
