"""The finiteness guard: a NaN loss or non-finite weights stop the analysis, with no host synchronisation per step.

A non-finite weight's code reads as 0 and its changes as writes, so every count after it would be wrong. At every
counted step the guard looks at the loss and every quantized layer's weights on the device (one ``aminmax`` per layer:
a NaN or an infinity shows in the minimum or the maximum) and keeps, still on the device, the first step at which each
of them was not finite. It reads that record on the host, and raises :class:`DegenerateRunError` naming the first bad
step and what was wrong, only where the run synchronises anyway:

* at the end of every transition stage and every train or val epoch, before anything is logged or written;
* every ``log_every_n_steps`` optimizer steps (when Lightning reads the logged values to the host);
* when a validation run starts, and when the callbacks' state is saved in a checkpoint.

So the error comes at most ``log_every_n_steps`` steps after the step that shows the fault, and no figure of a
degenerate run is ever logged or written.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

__all__ = ["DegenerateRunError", "FiniteGuard"]


class DegenerateRunError(RuntimeError):
    """The run produced numbers the analysis cannot count (a NaN loss, non-finite weights): it stops here."""


class FiniteGuard:
    """The on-device record of the first non-finite loss and weights (see the module docstring).

    Args:
        layers: ``[(name, layer), ...]``, the quantized layers whose weights are watched.
    """

    def __init__(self, layers: list[tuple[str, Any]]) -> None:
        self.layers = layers
        self._first: Tensor | None = None  # [1 + layers] int64: index into _steps of the first bad step, -1: none
        self._loss: Tensor | None = None  # the loss of the first step whose loss was not finite
        self._steps: list[tuple[int, int, int | None]] = []  # (global step, epoch, batch) of the noted steps
        self._noted: tuple[int, int, int] | None = None

    def note(self, trainer: pl.Trainer, outputs: Any = None, batch_idx: int | None = None) -> None:
        """Look at this step's loss (from ``outputs``) and the current weights, on the device; check on the host
        only at a logging step (every ``log_every_n_steps`` optimizer steps). Idempotent per step.

        Raises:
            DegenerateRunError: At a logging step, when a step since the last check was not finite.
        """
        key = (trainer.current_epoch, trainer.global_step, -1 if batch_idx is None else batch_idx)
        if key == self._noted:
            return
        self._noted = key
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        loss = loss.detach() if isinstance(loss, Tensor) else None
        values = [torch.stack(torch.aminmax(layer.weight.detach())).float() for _, layer in self.layers]
        device = values[0].device if values else torch.device("cpu")
        loss_value = loss.to(device=device, dtype=torch.float64).sum() if loss is not None else None
        checks = [torch.isfinite(loss_value) if loss_value is not None else torch.ones((), dtype=torch.bool)]
        checks += [torch.isfinite(v).all() for v in values]
        bad = ~torch.stack([c.to(device) for c in checks])
        k = len(self._steps)
        self._steps.append((trainer.global_step, trainer.current_epoch, batch_idx))
        if self._first is None:
            self._first = torch.full((len(checks),), -1, dtype=torch.int64, device=device)
            self._loss = torch.zeros((), dtype=torch.float64, device=device)
        first_bad = (self._first < 0) & bad
        self._first = torch.where(first_bad, torch.full_like(self._first, k), self._first)
        if loss_value is not None:
            self._loss = torch.where(first_bad[0], loss_value, self._loss)
        every = max(int(getattr(trainer, "log_every_n_steps", 1) or 1), 1)
        if trainer.global_step % every == 0:
            self.check(trainer)

    def check(self, trainer: pl.Trainer) -> None:
        """Read the record (one host synchronisation) and raise on the first bad step; forget the steps seen.

        Raises:
            DegenerateRunError: Naming the first bad step (its epoch and batch), the loss and the layers at fault.
        """
        if self._first is None or not self._steps:
            return
        first = self._first.tolist()
        steps, self._steps = self._steps, []
        if all(k < 0 for k in first):
            self._first = None
            return
        k = min(i for i in first if i >= 0)
        step, epoch, batch = steps[k]
        faults = []
        if first[0] == k:
            faults.append(f"the training loss is {float(self._loss)}")
        for (name, layer), index in zip(self.layers, first[1:], strict=True):
            if index == k:
                w = layer.weight.detach()
                nan, inf = int(torch.isnan(w).sum()), int(torch.isinf(w).sum())
                faults.append(f"layer {name!r} has {nan} NaN and {inf} infinite weights")
        where = f"epoch {epoch}" + ("" if batch is None else f", batch {batch + 1}")
        seen = "" if step == trainer.global_step else f" (seen at step {trainer.global_step})"
        raise DegenerateRunError(
            f"step {step} ({where}): {'; '.join(faults)}{seen}. The analysis stops here: the codes of non-finite "
            "weights read as 0 and their changes as writes, so every count would be wrong. Lower the learning rate, "
            "check the data and the loss, or resume from a checkpoint taken before this step."
        )
