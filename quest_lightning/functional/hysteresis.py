r"""Write-aware quantization: MINT rounding with hysteresis, so that a weight's code changes only when its latent
value is clearly past a level boundary.

A plain MINT quantizer rounds the continuous code :math:`u = \operatorname{clip}(T(W)/\alpha, -1, 1)\,Q` to the
nearest level at every forward pass. A latent weight that hovers near a boundary flips its code back and forth from
one optimizer step to the next (the oscillation of quantization-aware training), and on a memory device every flip is
a write. With hysteresis (a Schmitt trigger per weight) the layer keeps the code it held, :math:`i`, unless the
nearest level :math:`j = \operatorname{round}(u)` is nearer than :math:`i` by more than twice a margin:

.. math::

    \hat w = \begin{cases} j & \text{if } |u - i| - |u - j| > 2\,h_{ij} \\ i & \text{otherwise,} \end{cases}
    \qquad j = \operatorname{round}(u).

For a neighbouring level (:math:`j = i \pm 1`) the condition reads: :math:`u` is past the midpoint between
:math:`i` and :math:`j` by more than :math:`h_{ij}` grid steps. The gain :math:`|u - i| - |u - j|` is at most
:math:`|i - j|` (at :math:`u = j`), so a move stays possible only while :math:`h_{ij} < |i - j|/2`:
:func:`check_margin` refuses larger margins, which would freeze weights for good. The margin is a number
:math:`0 \le h < 0.5` (the same for every transition) or an :math:`[L, L]` table :math:`h_{ij}` (write-aware
weighting: expensive transitions get wider margins, see :func:`quest_lightning.energy.aware.write_margins`).
:math:`h = 0` is plain rounding except at an exact tie :math:`|u - i| = |u - j|`, where the held code stays.
Without held codes (the first pass) the codes are MINT's.

The gradient goes straight through the decision, as it goes through ``round`` in MINT: the backward pass is MINT's
(:func:`~quest_lightning.functional.quantize.mint_kernel_vjp`) with the codes actually used.

Sources: weight oscillations in quantization-aware training and their remedies (dampening, freezing): Nagel et al.,
"Overcoming Oscillations in Quantization-Aware Training", ICML 2022, arXiv:2203.11086. Latent weights read as
inertia, with a code flipped only past a threshold: Helwegen et al., "Latent Weights Do Not Exist: Rethinking
Binarized Neural Network Optimization", NeurIPS 2019, arXiv:1906.02107 (the Bop optimizer).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from quest_lightning.functional.grid import levels_of_qmax, qmax
from quest_lightning.functional.quantize import Transform, _MintQuantize, check_transform

__all__ = ["Margin", "check_margin", "hysteresis_codes", "hysteresis_kernel", "hysteresis_quantize"]

Margin = float | Tensor
"""A hysteresis margin in grid steps: one number for every transition, or an ``[L, L]`` table (row: held level
``i + Q``, column: new level ``j + Q``)."""


def check_margin(margin: Margin, levels: int | None = None, *, values: bool = True) -> Margin:
    """Validate a margin and return it (a float, or a float64 ``[L, L]`` tensor with a zero diagonal).

    A number must lie in :math:`[0, 0.5)`; a table entry :math:`h_{ij}` in :math:`[0, |i - j|/2)`. With
    ``values=False`` a table's shape is checked but not its entries (which would need a host synchronisation): the
    quantizer does that on every pass, :func:`check_margin` with ``values=True`` once when a margin is set.

    Raises:
        ValueError: a negative, non-finite or too large margin (the move would be impossible), or a table that is
            not ``[L, L]`` (the message gives the shape expected).
    """
    if isinstance(margin, Tensor):
        shape = tuple(margin.shape)
        if len(shape) != 2 or shape[0] != shape[1] or (levels is not None and shape[0] != levels):
            want = f"[{levels}, {levels}]" if levels is not None else "[L, L]"
            raise ValueError(f"a hysteresis margin table must be {want} (held level x new level), got {shape}.")
        if not values:
            return margin
        table = margin.detach().to(torch.float64)
        i, j = torch.meshgrid(torch.arange(shape[0]), torch.arange(shape[0]), indexing="ij")
        reach = (i - j).abs().to(torch.float64).to(table.device) / 2
        off = i != j
        if not bool(torch.isfinite(table).all()) or bool((table < 0).any()) or bool((table[off] >= reach[off]).any()):
            raise ValueError(
                "a hysteresis margin table must hold finite margins h_ij >= 0 and below |i - j| / 2 grid steps (a "
                "larger one makes the move impossible)."
            )
        return table * (1 - torch.eye(shape[0], dtype=table.dtype, device=table.device))
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin) or margin < 0:
        raise ValueError(
            f"hysteresis margin={margin!r} is invalid: give a number of grid steps in [0, 0.5) (0.25 keeps a code "
            "until the latent weight is a quarter step past the midpoint), or an [L, L] table."
        )
    if margin >= 0.5:
        raise ValueError(
            f"hysteresis margin={margin!r} is too large: at 0.5 grid steps or more no code can move to its neighbour "
            "(the continuous code gets at most half a step past the midpoint). Use a margin below 0.5."
        )
    return float(margin)


def hysteresis_kernel(x: Tensor, alpha: Tensor, q: int, tanh: bool, held: Tensor | None, margin: Margin) -> Tensor:
    """The codes of ``x`` with hysteresis (no autograd), as ``int8`` the shape of ``x``.

    Args:
        x: the latent weights.
        alpha: the scale :math:`\\alpha` (a scalar tensor).
        q: the largest code :math:`Q \\ge 1`.
        tanh: apply :math:`T = \\tanh` first (else the identity).
        held: the codes held before this pass (``int8``, the shape of ``x``), or ``None`` for MINT's codes.
        margin: :math:`h` or the table :math:`h_{ij}` (see :func:`check_margin`).

    Raises:
        ValueError: ``held`` does not have the shape of ``x``.
    """
    t = torch.tanh(x) if tanh else x
    u = torch.clamp(t / alpha, -1.0, 1.0).mul_(q)  # as mint_kernel computes it, so that the rounding agrees
    nearest = torch.round(u)
    if held is None:
        return nearest.to(torch.int8)
    if held.shape != x.shape:
        raise ValueError(f"held codes have shape {tuple(held.shape)} but the weights have {tuple(x.shape)}.")
    kept = held.to(u.dtype)
    gain = (u - kept).abs() - (u - nearest).abs()
    if isinstance(margin, Tensor):
        table = margin.to(device=u.device, dtype=u.dtype)
        index = (held.long() + q) * table.shape[0] + (nearest.long() + q)
        threshold = 2 * table.flatten()[index]
    else:
        threshold = 2 * margin
    return torch.where(gain > threshold, nearest, kept).to(torch.int8)


class _HysteresisQuantize(_MintQuantize):
    """:func:`hysteresis_kernel` forward, MINT's backward with the codes used (straight through the decision)."""

    @staticmethod
    def forward(ctx, x: Tensor, alpha: Tensor, q: int, tanh: bool, grad_scale, held, margin):
        codes = hysteresis_kernel(x, alpha, q, tanh, held, margin)
        _MintQuantize.keep_for_backward(ctx, x, alpha, codes, q, tanh, grad_scale)
        return codes.to(x.dtype) * (alpha / q), codes

    @staticmethod
    def backward(ctx, grad: Tensor, _codes_grad: Tensor | None):
        return (*_MintQuantize.backward(ctx, grad, _codes_grad), None, None)  # no gradient for held, margin


def hysteresis_quantize(
    x: Tensor,
    alpha: Tensor,
    bits: int,
    transform: Transform = "tanh",
    grad_scale: float | None = None,
    held: Tensor | None = None,
    margin: Margin = 0.5,
) -> tuple[Tensor, Tensor]:
    """Fake-quantize ``x`` on the MINT grid with hysteresis and return ``(x_q, codes)``.

    ``x_q = codes * alpha / Q`` with MINT's gradients (straight through the decision, ``clip`` and ``tanh`` exact,
    the LSQ gradient for ``alpha`` scaled by ``grad_scale``); ``codes`` are ``int8`` and hold what the next pass must
    receive as ``held``.

    >>> x, alpha = torch.tensor([0.055, 0.045, -0.3]), torch.tensor(0.1)
    >>> held = torch.tensor([0, 1, 0], dtype=torch.int8)
    >>> _, plain = hysteresis_quantize(x, alpha, 2, "identity", margin=0.2)
    >>> _, kept = hysteresis_quantize(x, alpha, 2, "identity", held=held, margin=0.2)
    >>> plain.tolist(), kept.tolist()  # u = 0.55 and 0.45 are within 0.2 of the midpoint: the held codes stay
    ([1, 0, -1], [0, 1, -1])
    """
    q = qmax(bits)
    tanh = check_transform(transform) == "tanh"
    if q == 0:
        return torch.zeros_like(x), torch.zeros_like(x, dtype=torch.int8)
    margin = check_margin(margin, levels_of_qmax(q), values=False)
    return _HysteresisQuantize.apply(x, alpha, q, tanh, grad_scale, held, margin)


def hysteresis_codes(
    x: Tensor, alpha: Tensor, bits: int, transform: Transform = "tanh", held: Tensor | None = None, margin: Margin = 0.5
) -> Tensor:
    """The codes :func:`hysteresis_quantize` would use for ``x`` now, as ``int8``, without building a graph."""
    with torch.no_grad():
        q = qmax(bits)
        if q == 0:
            return torch.zeros_like(x, dtype=torch.int8)
        tanh = check_transform(transform) == "tanh"
        margin = check_margin(margin, levels_of_qmax(q), values=False)
        return hysteresis_kernel(x.detach(), alpha.detach(), q, tanh, held, margin)
