"""End to end: a small 2-bit IF-hard spiking convnet built from our layers learns the 8x8 digits with plain PyTorch.

Direct coding with T = 4, ternary weights (the first conv and the readout full precision, as in QUEST), membrane on
the shared grid, Adam with one step decay. Across seeds 0-7 it reached 95.3-97.8% test accuracy in 3-6 s on 2 CPU
cores; the test asks for 85%.
"""

import pytest
import torch
import torch.nn.functional as F

from quest_lightning.nn import DirectEncoder, SpikingVGG, quantized_layers, recording, spiking_neurons

sklearn_datasets = pytest.importorskip("sklearn.datasets")
model_selection = pytest.importorskip("sklearn.model_selection")

SEED, T, EPOCHS, BATCH, LR = 0, 4, 8, 32, 3e-3


@pytest.fixture
def single_thread():
    """A model this small is fastest on one thread, and one thread does not stall when the CPU is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _digits():
    data = sklearn_datasets.load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0  # [N, 1, 8, 8] in [0, 1]
    y = torch.tensor(data.target)
    train, test = model_selection.train_test_split(
        list(range(len(y))), test_size=0.25, random_state=0, stratify=data.target
    )
    return x[train], y[train], x[test], y[test]


def test_two_bit_snn_learns_digits(single_thread):
    x_train, y_train, x_test, y_test = _digits()
    torch.manual_seed(SEED)
    model = SpikingVGG([16, "P", 32, "P"], [64], in_channels=1, image_size=8, num_classes=10, bits=2)
    encode = DirectEncoder(T)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(0.75 * EPOCHS)], 0.1)
    gen = torch.Generator().manual_seed(SEED)
    for _ in range(EPOCHS):
        model.train()
        order = torch.randperm(len(y_train), generator=gen)
        for i in range(0, len(order), BATCH):
            idx = order[i : i + BATCH]
            loss = F.cross_entropy(model(encode(x_train[idx])).mean(0), y_train[idx])  # readout: mean over T
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()

    model.eval()
    with torch.no_grad(), recording(model):
        logits = model(encode(x_test)).mean(0)
    accuracy = (logits.argmax(1) == y_test).float().mean().item()
    assert accuracy >= 0.85, f"test accuracy {accuracy:.3f}"

    # it is a 2-bit spiking network: ternary codes in the quantized layers, and neurons that neither stay silent
    # nor fire at every step
    layers = quantized_layers(model)
    assert len(layers) == 2
    for _, layer in layers:
        assert set(layer.codes.unique().tolist()) <= {-1, 0, 1}
    for name, neuron in spiking_neurons(model):
        rate = neuron.spike_count.item() / (neuron.recorded_rows * neuron.neurons)
        assert 0.0 < rate < 1.0, name
