"""Helpers of the deployment tests: the 8x8 digits, a small spiking convnet, and a short training loop."""

import torch
from digits import train_digits

from quest_lightning.nn import DirectEncoder, SpikingVGG

T = 4


def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn import datasets

    data = datasets.load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    cut = int(0.75 * len(y))
    return x[perm[:cut]], y[perm[:cut]], x[perm[cut:]], y[perm[cut:]]


def train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 2, lr: float = 3e-3) -> None:
    train_digits(model, DirectEncoder(T), x, y, epochs, lr)


def digits_net(**kwargs) -> SpikingVGG:
    kwargs.setdefault("bits", 2)
    return SpikingVGG([16, "P", 32, "P"], [64], in_channels=1, image_size=8, num_classes=10, **kwargs)


def trained(x: torch.Tensor, y: torch.Tensor, epochs: int = 2, **kwargs) -> SpikingVGG:
    """A digits network trained for ``epochs`` on one thread (seeded)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = digits_net(**kwargs)
        train(model, x, y, epochs)
    finally:
        torch.set_num_threads(threads)
    return model
