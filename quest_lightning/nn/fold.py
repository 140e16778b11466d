"""Folding a BatchNorm into the synaptic layer before it, for integer-only inference.

A BatchNorm between a layer and its neuron rescales the current per channel, so the membrane no longer sits on the
layer's integer grid (MINT). With the running statistics it is an affine map, and folds into the layer:

.. math::

    W' = W \\frac{\\gamma}{\\sqrt{\\sigma^2 + \\epsilon}}, \\qquad
    b' = (b - \\mu) \\frac{\\gamma}{\\sqrt{\\sigma^2 + \\epsilon}} + \\beta,

per output channel (Jacob et al. 2018, §3.2). The arithmetic is PyTorch's own
(``torch.nn.utils.fusion.fuse_conv_bn_weights`` / ``fuse_linear_bn_weights``). The fold equals the BatchNorm in eval
mode; training afterwards trains the folded layer without batch statistics.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_weights, fuse_linear_bn_weights


def fold_problem(layer: nn.Module, norm: nn.Module) -> str | None:
    """Why ``norm`` cannot be folded into ``layer``, or ``None`` when it can."""
    if not isinstance(norm, _BatchNorm):
        return f"{type(norm).__name__} is not a BatchNorm"
    if norm.running_mean is None or norm.running_var is None:
        return "it keeps no running statistics (track_running_stats=False)"
    channels = getattr(layer, "out_channels", getattr(layer, "out_features", None))
    if channels != norm.num_features:
        return f"it normalises {norm.num_features} channels but the layer has {channels} outputs"
    return None


def fold_batch_norm(layer: nn.Conv1d | nn.Conv2d | nn.Linear, norm: _BatchNorm) -> None:
    """Fold ``norm`` (eval-mode statistics) into ``layer``'s weight and bias, giving both new parameters (the old
    ones are left untouched, so an optimizer or another module that holds them is not affected).

    Raises:
        ValueError: the fold is not valid (see :func:`fold_problem`).
    """
    problem = fold_problem(layer, norm)
    if problem is not None:
        raise ValueError(f"cannot fold {type(norm).__name__} into {type(layer).__name__}: {problem}.")
    with torch.no_grad():
        ones, zeros = torch.ones_like(norm.running_mean), torch.zeros_like(norm.running_mean)
        gamma = norm.weight if norm.weight is not None else ones
        beta = norm.bias if norm.bias is not None else zeros
        args = (norm.running_mean, norm.running_var, norm.eps, gamma, beta)
        if isinstance(layer, nn.Linear):
            weight, bias = fuse_linear_bn_weights(layer.weight, layer.bias, *args)
        else:
            weight, bias = fuse_conv_bn_weights(layer.weight, layer.bias, *args)
    layer.weight = nn.Parameter(weight.detach().clone())
    layer.bias = nn.Parameter(bias.detach().clone())
