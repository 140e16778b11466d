"""Real networks, converted and trained: SpikingJelly's model zoo (a spiking VGG with BatchNorm, a SEW-ResNet) at
small width and resolution, and snnTorch networks written the way its tutorials write them.

Every zoo model is built and converted by :func:`converted`, and trained through a plain Lightning ``Trainer`` by
:func:`fit`; the device-analysis callbacks attach through :data:`CALLBACKS`.
"""

import copy
from collections.abc import Callable
from dataclasses import dataclass

import lightning as L
import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from snntorch import surrogate
from snntorch import utils as snn_utils
from spikingjelly.activation_based import functional as sj_functional
from spikingjelly.activation_based import layer as sj_layer
from spikingjelly.activation_based import neuron as sj_neuron
from spikingjelly.activation_based.model import sew_resnet, spiking_vgg
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from quest_lightning.convert import quantize
from quest_lightning.nn import quantized_layers, spiking_neurons

T, B, CLASSES, STEPS = 2, 4, 10, 3
CALLBACKS: tuple[Callable[[], L.Callback], ...] = ()  # factories of the callbacks attached to every zoo training run


@dataclass
class Zoo:
    """One zoo network: the model, one input batch ``[B, C, H, W]``, the example input its forward takes, and how
    to get ``[B, classes]`` logits from a batch."""

    model: nn.Module
    image_shape: tuple[int, ...]
    example: Callable[[torch.Tensor], torch.Tensor]
    logits: Callable[[nn.Module, torch.Tensor], torch.Tensor]


def _sj_logits(model, x):
    sj_functional.reset_net(model)
    return model(x.unsqueeze(0).repeat(T, *([1] * x.dim()))).mean(0)


def _sj_vgg_bn() -> Zoo:
    """spikingjelly...model.spiking_vgg.SpikingVGG with BatchNorm, at widths 8 and 16; its 25088 x 4096 head is built
    on the meta device and replaced by a small one of the same kind."""
    with torch.device("meta"):
        model = spiking_vgg.SpikingVGG([8, "M", 16, "M"], batch_norm=True, spiking_neuron=sj_neuron.IFNode)
    model.avgpool = sj_layer.AdaptiveAvgPool2d((1, 1))
    model.classifier = nn.Sequential(
        sj_layer.Linear(16, 32), sj_neuron.IFNode(), sj_layer.Dropout(), sj_layer.Linear(32, CLASSES)
    )
    model.to_empty(device="cpu")
    model._initialize_weights()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
    sj_functional.set_step_mode(model, "m")
    return Zoo(model, (3, 16, 16), lambda x: x.unsqueeze(0).repeat(T, 1, 1, 1, 1), _sj_logits)


def _sj_sew_resnet() -> Zoo:
    """spikingjelly...model.sew_resnet.SEWResNet, one BasicBlock per stage, ADD connections, at 16 x 16."""
    model = sew_resnet.SEWResNet(
        sew_resnet.BasicBlock, [1, 1, 1, 1], num_classes=CLASSES, cnf="ADD", spiking_neuron=sj_neuron.IFNode
    )
    sj_functional.set_step_mode(model, "m")
    return Zoo(model, (3, 16, 16), lambda x: x.unsqueeze(0).repeat(T, 1, 1, 1, 1), _sj_logits)


class TutorialConvNet(nn.Module):
    """snnTorch tutorial 6: conv → max-pool → Leaky twice, then a linear readout into a Leaky; a per-step loop with
    explicit membranes from init_leaky()."""

    def __init__(self, beta=0.5):
        super().__init__()
        spike_grad = surrogate.fast_sigmoid(slope=25)
        self.conv1, self.lif1 = nn.Conv2d(1, 8, 3), snn.Leaky(beta=beta, spike_grad=spike_grad)
        self.conv2, self.lif2 = nn.Conv2d(8, 16, 3), snn.Leaky(beta=beta, spike_grad=spike_grad)
        self.fc1, self.lif3 = nn.Linear(16, CLASSES), snn.Leaky(beta=beta, spike_grad=spike_grad)

    def forward(self, x):
        mem1, mem2, mem3 = self.lif1.init_leaky(), self.lif2.init_leaky(), self.lif3.init_leaky()
        spk_rec, mem_rec = [], []
        for _ in range(T):
            spk1, mem1 = self.lif1(F.max_pool2d(self.conv1(x), 2), mem1)
            spk2, mem2 = self.lif2(F.max_pool2d(self.conv2(spk1), 2), mem2)
            spk3, mem3 = self.lif3(self.fc1(spk2.flatten(1)), mem3)
            spk_rec.append(spk3)
            mem_rec.append(mem3)
        return torch.stack(spk_rec), torch.stack(mem_rec)


def _snntorch_loop() -> Zoo:
    return Zoo(TutorialConvNet(), (1, 12, 12), lambda x: x, lambda model, x: model(x)[1].mean(0))


def _snntorch_sequential() -> Zoo:
    """snnTorch tutorial 7: the same network as an nn.Sequential with init_hidden=True."""
    spike_grad = surrogate.fast_sigmoid(slope=25)
    leaky = dict(beta=0.5, spike_grad=spike_grad, init_hidden=True)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3),
        nn.MaxPool2d(2),
        snn.Leaky(**leaky),
        nn.Conv2d(8, 16, 3),
        nn.MaxPool2d(2),
        snn.Leaky(**leaky),
        nn.Flatten(),
        nn.Linear(16, CLASSES),
        snn.Leaky(**leaky, output=True),
    )

    def logits(model, x):
        snn_utils.reset(model)
        return torch.stack([model(x)[1] for _ in range(T)]).mean(0)

    return Zoo(model, (1, 12, 12), lambda x: x, logits)


ZOO = {
    "spikingjelly spiking_vgg (BatchNorm)": _sj_vgg_bn,
    "spikingjelly sew_resnet": _sj_sew_resnet,
    "snntorch conv net, per-step loop": _snntorch_loop,
    "snntorch nn.Sequential, init_hidden": _snntorch_sequential,
}


def _batch(zoo: Zoo, seed: int = 0) -> torch.Tensor:
    return torch.rand(B, *zoo.image_shape, generator=torch.Generator().manual_seed(seed)) * 2


def converted(name: str, **options) -> tuple[Zoo, nn.Module]:
    """A fresh zoo network, and a deep copy of it converted by ``quantize`` with ``options``."""
    torch.manual_seed(0)
    zoo = ZOO[name]()
    model = copy.deepcopy(zoo.model)
    quantize(model, zoo.example(_batch(zoo)), verbose=False, **options)
    return zoo, model


class _Classifier(L.LightningModule):
    def __init__(self, model: nn.Module, logits: Callable[[nn.Module, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.model, self.logits, self.losses = model, logits, []

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.logits(self.model, x), y)
        self.losses.append(loss.item())
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def fit(zoo: Zoo, model: nn.Module) -> _Classifier:
    """Train ``model`` for a few steps on random images with a Lightning Trainer and :data:`CALLBACKS`."""
    g = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.rand(B * STEPS, *zoo.image_shape, generator=g) * 2, torch.randint(CLASSES, (B * STEPS,)))
    module = _Classifier(model, zoo.logits)
    trainer = L.Trainer(
        max_steps=STEPS,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[make() for make in CALLBACKS],
    )
    trainer.fit(module, DataLoader(data, batch_size=B))
    return module


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_model_equals_the_original_with_quantization_off(name):
    """Converted with quantization disabled, the network computes exactly what the original does: the logits and
    the input gradients are equal bit for bit."""
    zoo, model = converted(name, enabled=False)
    results = []
    for net in (zoo.model, model):
        spikes: list[torch.Tensor] = []

        def keep(module, args, out, spikes=spikes):
            spikes.append(out[0] if isinstance(out, tuple) else out)

        ours = {id(n) for _, n in spiking_neurons(net)}
        hooks = [
            m.register_forward_hook(keep)
            for m in net.modules()
            if isinstance(m, snn.SpikingNeuron | sj_neuron.BaseNode) or id(m) in ours
        ]
        x = _batch(zoo, seed=2).requires_grad_(True)
        torch.manual_seed(3)  # the same dropout masks
        logits = zoo.logits(net, x)
        (logits * torch.linspace(-1, 1, CLASSES)).sum().backward()
        for hook in hooks:
            hook.remove()
        results.append((logits.detach(), x.grad, torch.cat([s.detach().flatten() for s in spikes])))
    (l_ref, g_ref, s_ref), (l_ours, g_ours, s_ours) = results
    assert g_ref.abs().sum() > 0 and 0 < s_ref.mean() < 1  # the hidden neurons fire, and not always
    assert torch.equal(s_ours, s_ref)
    assert torch.equal(l_ours, l_ref)
    assert torch.equal(g_ours, g_ref)


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_model_converts_and_trains(name):
    zoo, model = converted(name, bits=2)
    layers = quantized_layers(model)
    neurons = spiking_neurons(model)
    assert layers and len(neurons) == sum(1 for m in zoo.model.modules() if isinstance(m, snn.Leaky | sj_neuron.IFNode))
    shared = {n.scale_source for _, n in neurons} - {None}
    assert {layer for _, layer in layers} <= shared  # every quantized layer feeds a neuron that shares its scale
    before = {path: (layer.weight.detach().clone(), layer.alpha.detach().clone()) for path, layer in layers}
    module = fit(zoo, model)
    assert len(module.losses) == STEPS and all(torch.isfinite(torch.tensor(module.losses)))
    for path, layer in layers:
        weight, alpha = before[path]
        assert not torch.equal(layer.weight.detach(), weight), path
        assert not torch.equal(layer.alpha.detach(), alpha), path  # alpha learns, through weights and membranes
        assert set(layer.current_codes().unique().tolist()) <= {-1, 0, 1}
