"""The MINT grid, defined once: bit width → :math:`Q_b` → levels, and integer code ↔ level index.

A ``b``-bit MINT grid is symmetric and narrow-range (MINT, Yin et al. 2024; Brevitas' ``narrow_range=True``):

.. math::

    Q_b = 2^{b-1} - 1, \\qquad \\text{codes } \\hat w \\in \\{-Q_b, \\dots, Q_b\\}, \\qquad L_b = 2 Q_b + 1 = 2^b - 1
    \\text{ levels}.

So 2-bit is ternary (:math:`Q = 1`, 3 levels) and 3-bit has 7 levels. Wherever levels are indexed (transition
matrices, per-level operation counts, R-S patterns), the index of code :math:`c` is :math:`c + Q`: the most negative
code first. Every other module takes these quantities from here.

>>> qmax(2), num_levels(2), num_levels(3)
(1, 3, 7)
>>> level_index(-1, 1), level_code(2, 1), list(level_codes(1))
(0, 1, [-1, 0, 1])
>>> max_bits_for_states(7), max_bits_for_states(2)
(3, 1)

A 1-bit grid exists (it is the single level 0) so that level arithmetic stays total, but nothing can be quantized on
it: :func:`check_quant_bits` refuses it wherever a tensor is to be quantized (weights, membranes).
"""

from __future__ import annotations

from typing import TypeVar

MIN_BITS = 1
MAX_BITS = 8

_Index = TypeVar("_Index")


def check_bits(bits: int, *, name: str = "bits") -> int:
    """Validate a bit width and return it.

    Raises:
        ValueError: ``bits`` is not an integer from :data:`MIN_BITS` to :data:`MAX_BITS` (the message names
            ``name``).
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(
            f"{name}={bits!r} is not supported: use an integer from {MIN_BITS} to {MAX_BITS} (MINT uses 2, 3 or 4)."
        )
    return bits


def check_quant_bits(bits: int, *, name: str = "bits", what: str = "a quantized tensor") -> int:
    """Validate the bit width of a grid that something is quantized on, and return it: :func:`check_bits`, and at
    least one non-zero level (:math:`Q_b \\ge 1`, so ``bits >= 2``).

    Args:
        bits: the bit width.
        name: the option's name, for the message (``"bits"``, ``"mem_bits"``).
        what: what is quantized, for the message (for example ``"QuantLinear 'fc1'"``).

    Raises:
        ValueError: ``bits`` is not a supported bit width, or is 1 (only the zero level: every weight or membrane
            would quantize to 0).

    >>> check_quant_bits(2)
    2
    >>> check_quant_bits(1, what="QuantLinear")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: bits=1 gives QuantLinear a grid with only the zero level (Q_b = 2**(b-1) - 1 = 0): ...
    """
    if qmax(check_bits(bits, name=name)) < 1:
        raise ValueError(
            f"{name}={bits} gives {what} a grid with only the zero level (Q_b = 2**(b-1) - 1 = 0): every value would "
            "quantize to 0. Use bits >= 2 (MINT uses 2, 3 or 4), or turn quantization off (enabled=False)."
        )
    return bits


def qmax(bits: int) -> int:
    """Largest integer code :math:`Q_b = 2^{b-1} - 1` of a ``bits``-bit grid (1 bit gives a single level, 0)."""
    return 2 ** (check_bits(bits) - 1) - 1


def num_levels(bits: int) -> int:
    """Number of levels :math:`L_b = 2^b - 1` of a ``bits``-bit grid: 2-bit is ternary, 3-bit has 7 levels."""
    return levels_of_qmax(qmax(bits))


def levels_of_qmax(q: int) -> int:
    """Number of levels :math:`2Q + 1` of a grid whose largest code is ``q``."""
    return 2 * int(q) + 1


def qmax_of_levels(levels: int) -> int:
    """Largest code :math:`Q = (L - 1)/2` of a grid of ``levels`` levels (an odd number).

    Raises:
        ValueError: ``levels`` is not a positive odd number.
    """
    if levels < 1 or levels % 2 != 1:
        raise ValueError(f"levels={levels} is not the size of a symmetric grid: it must be a positive odd number.")
    return (int(levels) - 1) // 2


def level_index(code: _Index, q: int) -> _Index:
    """Level index :math:`c + Q` of integer code(s) ``code`` (an int or a tensor): the most negative code is 0."""
    return code + q


def level_code(index: _Index, q: int) -> _Index:
    """Integer code :math:`i - Q` of level index(es) ``index``; the inverse of :func:`level_index`."""
    return index - q


def level_codes(q: int) -> range:
    """The codes :math:`-Q, \\dots, Q` in level-index order."""
    return range(-int(q), int(q) + 1)


def max_bits_for_states(num_states: int) -> int | None:
    """The largest bit width whose grid fits on ``num_states`` device states, or ``None`` if none does."""
    fitting = [b for b in range(MIN_BITS, MAX_BITS + 1) if num_levels(b) <= num_states]
    return max(fitting) if fitting else None
