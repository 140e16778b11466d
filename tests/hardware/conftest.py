"""One small 2-bit spiking network trained on the 8x8 digits, shared by the hardware-aware tests (about 3 s)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from quest_lightning.nn import DirectEncoder, SpikingVGG


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
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(order), 32):
            idx = order[i : i + 32]
            loss = F.cross_entropy(model(encoder(x[idx])).mean(0), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()


@pytest.fixture(scope="session")
def digits() -> Digits:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # fastest for a model this small, and no stall when the CPU is shared
    try:
        x_train, y_train, x_test, y_test = digits_data()
        torch.manual_seed(0)
        model = SpikingVGG([16, "P", 32, "P"], [64], in_channels=1, image_size=8, num_classes=10, bits=2)
        encoder = DirectEncoder(4)
        train_digits(model, encoder, x_train, y_train, epochs=6, lr=3e-3)
    finally:
        torch.set_num_threads(threads)
    return Digits(model, [(x_test[:225], y_test[:225]), (x_test[225:], y_test[225:])], (x_train, y_train), encoder)
