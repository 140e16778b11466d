"""Keeping a layer's MINT scale :math:`\\alpha` positive: the projection onto its floor, and the hooks that apply it
after every optimizer step and every ``load_state_dict``.

With :math:`\\alpha < 0` the integer codes take the opposite sign to the weights that the forward pass uses, and with
:math:`\\alpha = 0` a zero weight quantizes to NaN. Adam with weight decay can push a small :math:`\\alpha` through
zero in a few dozen steps. So :math:`\\alpha` is kept at or above
:func:`~quest_lightning.functional.quantize.alpha_floor` (a small fraction of the weights' largest magnitude): a
projection, which leaves a healthy :math:`\\alpha` untouched and so changes no forward value and no gradient.
"""

from __future__ import annotations

import math
import warnings
import weakref
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from quest_lightning.functional.quantize import alpha_floor

if TYPE_CHECKING:
    from quest_lightning.nn.layers import QuantLayerMixin

_LAYERS: weakref.WeakSet[QuantLayerMixin] = weakref.WeakSet()
"""The live layers whose scale is kept positive (see :func:`keep_scale_positive`)."""


def project_scale_(alpha: Tensor, weight: Tensor, transform: str) -> Tensor:
    """:math:`\\alpha \\leftarrow \\max(\\alpha, \\alpha_{\\min}(W))` in place, on the device, with no host
    synchronisation; returns ``alpha``.

    The write goes to ``alpha.data``, past autograd's version counter: it is meant to run before each use of
    :math:`\\alpha`, where within one graph it can only write the value already there (the first use has projected
    it, and the weights do not change until the optimizer step), so a layer called ``T`` times in one graph (a
    single-step loop) stays differentiable. A NaN :math:`\\alpha` stays NaN.
    """
    alpha.data.clamp_(min=alpha_floor(weight, transform).to(alpha.dtype))
    return alpha


def _project_after_step(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    """After any ``torch.optim`` step, project the :math:`\\alpha` of every tracked layer that it updated."""
    if not _LAYERS:
        return
    stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for layer in list(_LAYERS):
        if layer.enabled and id(layer.alpha) in stepped:
            layer.project_alpha()


register_optimizer_step_post_hook(_project_after_step)


def _check_loaded_alpha(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """``load_state_dict`` pre-hook: refuse a zero or non-finite :math:`\\alpha` (a message in ``error_msgs``, which
    ``load_state_dict`` raises), and warn about a negative one, which :func:`_repair_loaded_alpha` loads as
    :math:`|\\alpha|`."""
    key, error_msgs = prefix + "alpha", args[-1]
    value = state_dict.get(key)
    if not isinstance(value, Tensor) or value.numel() != 1:
        return
    alpha = float(value.detach().double())
    if not math.isfinite(alpha) or alpha == 0.0:
        error_msgs.append(
            f"{key}={alpha:.6g} is not a usable MINT scale: it must be positive and finite (with alpha = 0 a zero "
            f"weight quantizes to NaN). Fix that entry of the checkpoint, or drop it, load with strict=False and call "
            f"{type(module).__name__}.reset_alpha()."
        )
    elif alpha < 0.0:
        warnings.warn(
            f"{key}={alpha:.6g} is negative (a checkpoint written before alpha was kept positive): it is loaded "
            f"as |alpha| = {-alpha:.6g}, which gives the same quantized weights, and integer codes whose signs now "
            "agree with them.",
            stacklevel=2,
        )


def _repair_loaded_alpha(module: QuantLayerMixin, incompatible_keys: Any) -> None:
    """``load_state_dict`` post-hook: :math:`\\alpha \\leftarrow |\\alpha|`, then the projection.

    The MINT quantizer is even in :math:`\\alpha` (``clip`` and ``round`` are odd functions), so :math:`|\\alpha|`
    gives bit for bit the quantized weights that a negative :math:`\\alpha` gave, with codes of the right sign."""
    module.alpha.data.abs_()
    module.project_alpha()


def keep_scale_positive(layer: QuantLayerMixin) -> None:
    """Project ``layer.alpha`` now (through ``layer.project_alpha()``), after every ``torch.optim`` step that updates
    it, and after every ``load_state_dict`` (which also refuses a zero or non-finite :math:`\\alpha`, and loads a
    negative one, from a checkpoint written before this rule, as :math:`|\\alpha|`)."""
    layer.register_load_state_dict_pre_hook(_check_loaded_alpha)
    layer.register_load_state_dict_post_hook(_repair_loaded_alpha)
    layer.project_alpha()


def track_scale(layer: QuantLayerMixin) -> None:
    """Add ``layer`` to the layers projected after optimizer steps (a weak reference; idempotent, and called by
    ``layer.project_alpha()``, so that a copied or unpickled layer is tracked from its first use)."""
    _LAYERS.add(layer)
