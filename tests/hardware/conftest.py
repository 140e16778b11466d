"""One small 2-bit spiking network trained on the 8x8 digits, shared by the hardware-aware tests (about 3 s)."""

from __future__ import annotations

import pytest
import torch
from digits import Digits, digits_data, train_digits

from quest_lightning.nn import DirectEncoder, SpikingVGG


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
