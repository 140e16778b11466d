"""The 8x8 digits (shipped with scikit-learn) and a small training loop, shared by tests that need a trained network."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from quest_lightning.nn import DirectEncoder
from quest_lightning.nn.inspect import reset_states


@dataclass
class Digits:
    model: nn.Module
    batches: list[tuple[Tensor, Tensor]]
    train: tuple[Tensor, Tensor]
    encoder: DirectEncoder

    def forward(self, model: nn.Module, x: Tensor) -> Tensor:
        return model(self.encoder(x)).mean(0)


def digits_data() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    datasets = pytest.importorskip("sklearn.datasets")
    model_selection = pytest.importorskip("sklearn.model_selection")
    data = datasets.load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target)
    train, test = model_selection.train_test_split(
        list(range(len(y))), test_size=0.25, random_state=0, stratify=data.target
    )
    return x[train], y[train], x[test], y[test]


def train_digits(model: nn.Module, encoder: DirectEncoder, x: Tensor, y: Tensor, epochs: int, lr: float) -> None:
    """Adam on batches of 32 in a seeded order, each batch a new sequence (neurons that keep state are zeroed)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(order), 32):
            idx = order[i : i + 32]
            reset_states(model)
            loss = F.cross_entropy(model(encoder(x[idx])).mean(0), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    reset_states(model)
    model.eval()
