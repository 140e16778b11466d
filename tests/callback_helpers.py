"""Helpers of the callback tests, shared by their folders: the weight codes captured around every training batch by
the MINT formula written out (not the library's). The guard that refuses every read of a tensor on the host is in
``host_reads``."""

import lightning.pytorch as pl
import torch

from quest_lightning.nn import QuantLayerMixin


def mint_codes_by_hand(layer):
    """round(clip(tanh(W)/alpha, -1, 1) * Q), written out here rather than taken from the library."""
    with torch.no_grad():
        q = 2 ** (layer.bits - 1) - 1
        return torch.round(torch.clamp(torch.tanh(layer.weight) / layer.alpha, -1, 1) * q).to(torch.int64)


class CodeSnapshots(pl.Callback):
    """The codes of every quantized layer before and after each training batch, by :func:`mint_codes_by_hand`:
    ``before[(epoch, batch)]`` and ``after[(epoch, batch)]``, ``batch`` 1-based."""

    def __init__(self):
        self.before: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
        self.after: dict[tuple[int, int], dict[str, torch.Tensor]] = {}

    def _codes(self, pl_module):
        return {
            name: mint_codes_by_hand(m)
            for name, m in pl_module.named_modules()
            if isinstance(m, QuantLayerMixin) and m.enabled
        }

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.before[(trainer.current_epoch, batch_idx + 1)] = self._codes(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.after[(trainer.current_epoch, batch_idx + 1)] = self._codes(pl_module)
