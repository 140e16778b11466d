"""Per-column level counts of a linear layer's codes, kept current from the codes that change between weight updates:
the table behind the per-level operation counts of a linear layer.

For a linear layer with codes :math:`\\hat w \\in \\mathbb{Z}^{O \\times I}` and input counts :math:`n(i)`,

.. math::

    N(v) = \\sum_i n(i)\\, C[v, i], \\qquad C[v, i] = \\#\\{o : \\hat w_{oi} = v\\},

so :math:`N` is one small product once :math:`C` (``L × I``) is known. Counting :math:`C` reads every code once per
level; an optimizer step changes a few per cent of the codes, and moving each changed code from its old level's
column count to its new one keeps :math:`C` exact for a fraction of that. :class:`ColumnLevels` recounts in full when
it has nothing to start from (the first update, other codes than the ones it holds, off the CPU), and otherwise
applies the changes: those another count found between the codes it holds and the new ones (:meth:`ColumnLevels.offer`,
as the transition count does), else its own comparison.
"""

from __future__ import annotations

import torch
from torch import Tensor

from quest_lightning.functional.grid import level_index, levels_of_qmax
from quest_lightning.metrics.transitions import changed_index

__all__ = ["ColumnLevels", "column_level_counts"]


def column_level_counts(codes: Tensor, qmax: int) -> Tensor:
    """:math:`C[v, i] = \\#\\{o : \\hat w_{oi} = v\\}` of ``[O, I]`` codes (index :math:`v + Q`), ``int64 [L, I]``: one
    pass over the codes per level.

    Example:
        >>> column_level_counts(torch.tensor([[1, 0, -1], [0, 0, 1]], dtype=torch.int8), qmax=1).tolist()
        [[0, 0, 1], [1, 2, 0], [1, 0, 1]]
    """
    return torch.stack([(codes == v - qmax).sum(0, dtype=torch.int64) for v in range(levels_of_qmax(qmax))])


class ColumnLevels:
    """:math:`C` (see the module docstring) of the codes of one linear layer, updated from the codes that changed.

    The codes given are held (not copied) as the codes the table counts, with their version counter: codes changed
    in place since are never mistaken for the ones counted. Codes made under inference mode have no version counter
    and are counted in full, never held.

    Args:
        qmax: Largest code :math:`Q` (levels :math:`-Q \\dots Q`).
    """

    def __init__(self, qmax: int) -> None:
        self.qmax = int(qmax)
        self.table: Tensor | None = None  # int64 [L, I]
        self._codes: Tensor | None = None
        self._version = -1
        self._offers: list[tuple[Tensor, int, Tensor, int, Tensor, Tensor, Tensor]] = []

    def _holds(self, codes: Tensor | None, version: int) -> bool:
        return codes is not None and self._codes is codes and self._version == version

    def reset(self) -> None:
        """Forget the table (the next :meth:`counts` recounts)."""
        self.table, self._codes, self._version, self._offers = None, None, -1, []

    def offer(self, previous: Tensor, current: Tensor, index: Tensor, before: Tensor, after: Tensor) -> None:
        """Changes another count found from ``previous`` to ``current`` codes: the flat ``index`` of the codes that
        differ, ascending, and their codes ``before`` and ``after``. Used by :meth:`counts` if the table is then at
        ``previous`` (the two most recent offers are kept)."""
        if previous.is_inference() or current.is_inference():
            return  # no version counter: nothing tells whether they changed in place since
        offer = (previous, previous._version, current, current._version, index, before, after)
        self._offers = [*self._offers[-1:], offer]

    def counts(self, codes: Tensor) -> Tensor:
        """:math:`C` of ``codes`` (``[O, I]``, integer), ``int64 [L, I]``; the table is then of ``codes``."""
        if codes.dim() != 2:
            raise ValueError(f"ColumnLevels counts the codes of a linear layer, [O, I]; got {tuple(codes.shape)}.")
        offers, self._offers = self._offers, []
        if codes.is_inference():  # no version counter (codes made under inference mode): counted, not held
            return column_level_counts(codes, self.qmax)
        if self._holds(codes, codes._version):
            return self.table  # type: ignore[return-value]
        for previous, p_version, current, c_version, index, before, after in offers:
            if self._holds(codes, codes._version):
                break  # an offer past the codes asked for (the step after them, already counted elsewhere)
            if self._holds(previous, p_version) and current._version == c_version:
                self._move(index, before, after)
                self._codes, self._version = current, c_version
        if not self._holds(codes, codes._version):
            same = self._codes is not None and self._codes.shape == codes.shape and self._codes.device == codes.device
            if same and codes.device.type == "cpu" and self._codes._version == self._version:
                _, index = changed_index(self._codes, codes)
                self._move(index, self._codes.reshape(-1)[index], codes.reshape(-1)[index])
            else:
                self.table = column_level_counts(codes, self.qmax)
            self._codes, self._version = codes, codes._version
        return self.table  # type: ignore[return-value]

    def _move(self, index: Tensor, before: Tensor, after: Tensor) -> None:
        """Move every changed code from its old level's column count to its new one."""
        columns = self.table.shape[1]  # type: ignore[union-attr]
        column = index % columns
        flat = self.table.view(-1)  # type: ignore[union-attr]
        ones = torch.ones(index.numel(), dtype=flat.dtype, device=flat.device)
        flat.index_add_(0, level_index(before.to(torch.int64), self.qmax) * columns + column, ones, alpha=-1)
        flat.index_add_(0, level_index(after.to(torch.int64), self.qmax) * columns + column, ones)
