"""Pure functions behind the meters: synaptic operation counts per weight level, transitions, sparsity, ANN ops.

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
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _padded_counts(layer: nn.Conv2d, counts: Tensor) -> Tensor:
    if layer.padding_mode != "zeros":
        raise ValueError(
            f"padding_mode={layer.padding_mode!r} is not supported by the AOR count (padded positions would be real "
            "inputs); use padding_mode='zeros'."
        )
    return F.pad(counts, layer._reversed_padding_repeated_twice)


def conv_output_size(layer: nn.Conv2d, height: int, width: int) -> tuple[int, int]:
    """Output height and width of ``layer`` for an ``height × width`` input."""
    pad = layer._reversed_padding_repeated_twice  # (left, right, top, bottom)
    sizes = []
    for size, (lo, hi), k, s, d in zip(
        (height, width),
        ((pad[2], pad[3]), (pad[0], pad[1])),
        layer.kernel_size,
        layer.stride,
        layer.dilation,
        strict=True,
    ):
        sizes.append((size + lo + hi - d * (k - 1) - 1) // s + 1)
    return sizes[0], sizes[1]


def ann_ops(layer: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of ``layer`` for one sample and one time step (the ANN-equivalent operation count).

    A conv: :math:`k_h k_w \\cdot (C_{in}/g) \\cdot C_{out} \\cdot H_{out} W_{out}`; a linear: :math:`f_{in} f_{out}`.
    ``input_shape`` is the per-sample input shape (``[C, H, W]`` or ``[F]``).
    """
    if isinstance(layer, nn.Conv2d):
        h_out, w_out = conv_output_size(layer, input_shape[-2], input_shape[-1])
        k = math.prod(layer.kernel_size)
        return k * (layer.in_channels // layer.groups) * layer.out_channels * h_out * w_out
    if isinstance(layer, nn.Linear):
        return layer.in_features * layer.out_features
    raise TypeError(f"ann_ops supports nn.Conv2d and nn.Linear, got {type(layer).__name__}.")


def weight_input_sums(layer: nn.Module, input_counts: Tensor) -> Tensor:
    """:math:`G`, shaped like the weight: for every weight, the input count it meets summed over output positions."""
    counts = input_counts.to(torch.float64)
    if isinstance(layer, nn.Conv2d):
        padded = _padded_counts(layer, counts.unsqueeze(0))
        h_out, w_out = conv_output_size(layer, input_counts.shape[-2], input_counts.shape[-1])
        ones = torch.ones(1, layer.out_channels, h_out, w_out, dtype=torch.float64, device=counts.device)
        return torch.nn.grad.conv2d_weight(
            padded, layer.weight.shape, ones, stride=layer.stride, dilation=layer.dilation, groups=layer.groups
        )
    if isinstance(layer, nn.Linear):
        return counts.unsqueeze(0).expand(layer.out_features, -1)
    raise TypeError(f"weight_input_sums supports nn.Conv2d and nn.Linear, got {type(layer).__name__}.")


def level_operation_counts(layer: nn.Module, input_counts: Tensor, codes: Tensor, qmax: int) -> Tensor:
    """:math:`N(v)` for every level :math:`v = -Q \\dots Q` (index :math:`v + Q`), as a float64 tensor of exact
    integers: synaptic operations with an input spike and a weight of that level, summed over what was recorded.

    For a linear layer every weight of column :math:`i` meets input :math:`i`, so
    :math:`N(v) = \\sum_i n(i)\\,\\#\\{o : \\hat w_{oi} = v\\}`: one pass over the ``int8`` codes per level."""
    levels = 2 * qmax + 1
    if isinstance(layer, nn.Linear) and levels <= 16:
        counts = input_counts.to(torch.float64)
        per_level = torch.stack([(codes == v - qmax).sum(0, dtype=torch.int32) for v in range(levels)])
        return per_level.to(torch.float64) @ counts
    g = weight_input_sums(layer, input_counts)
    return torch.bincount((codes.to(torch.int64) + qmax).flatten(), weights=g.flatten(), minlength=2 * qmax + 1)


def transition_counts(previous: Tensor, current: Tensor, qmax: int) -> Tensor:
    """Level → level transition matrix :math:`C[i, j]` between two code tensors, as ``int64`` ``[L, L]``.

    Row ``i`` is the previous level :math:`i - Q`, column ``j`` the new level :math:`j - Q`; one ``bincount``.
    """
    if previous.shape != current.shape:
        raise ValueError(f"code shapes differ: {tuple(previous.shape)} vs {tuple(current.shape)}.")
    levels = 2 * qmax + 1
    # int16 holds every index up to 8 bits (255 * 255 + 254) at a quarter of int64's memory traffic
    index = (previous.to(torch.int16) + qmax) * levels + (current.to(torch.int16) + qmax)
    return torch.bincount(index.flatten(), minlength=levels * levels).view(levels, levels)


def zero_code_count(codes: Tensor) -> tuple[Tensor, int]:
    """Number of zero codes (a tensor, no host sync) and the number of codes."""
    return (codes == 0).sum(), codes.numel()


def transition_summary(counts: Tensor) -> dict[str, float]:
    """Frozen fraction, changed fraction and the share of changes between non-adjacent levels (:math:`|i-j| \\ge 2`)."""
    counts = counts.to(torch.float64)
    total = counts.sum()
    levels = counts.shape[0]
    i, j = torch.meshgrid(torch.arange(levels), torch.arange(levels), indexing="ij")
    distance = (i - j).abs().to(counts.device)
    changed = counts[distance > 0].sum()
    non_adjacent = counts[distance > 1].sum()
    return {
        "frozen_fraction": float(counts.diagonal().sum() / total) if total > 0 else float("nan"),
        "changed_fraction": float(changed / total) if total > 0 else float("nan"),
        "non_adjacent_fraction": float(non_adjacent / changed) if changed > 0 else 0.0,
    }
