"""The neuron back-end registry: make_neuron dispatches by name, backend_of answers which back-end a neuron belongs to,
and a new back-end is one class plus its registration (here, a toy one defined in this file)."""

import pytest
import torch
import torch.nn.functional as F

from quest_lightning.functional.integer import integer_neuron_program
from quest_lightning.functional.neuron import NeuronParams
from quest_lightning.functional.surrogate import get_surrogate
from quest_lightning.lightning.module import QuestModule
from quest_lightning.nn import (
    QuantIFNode,
    QuantLeaky,
    QuantLIFNode,
    QuantLinear,
    SpikingVGG,
    backend_of,
    list_backends,
    make_neuron,
    register_backend,
    spiking_neurons,
)
from quest_lightning.nn.neurons import QuantNeuron, get_backend, unregister_backend


class ToyNeuron(QuantNeuron):
    """A minimal back-end neuron: the shared shell and nothing else (what a Norse adapter would add to)."""

    def __init__(self, params: NeuronParams, surrogate) -> None:
        super().__init__()
        self._init_neuron(spike_fn=get_surrogate(surrogate), params=params)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return self.multi_step(x_seq)[0]


@pytest.fixture
def toy_backend():
    register_backend("toy", ToyNeuron, (ToyNeuron,))
    yield "toy"
    unregister_backend("toy")


@pytest.mark.parametrize(
    ("backend", "kind", "cls"),
    [
        ("spikingjelly", "if", QuantIFNode),
        ("spikingjelly", "lif", QuantLIFNode),
        ("snntorch", "if", QuantLeaky),
        ("snntorch", "lif", QuantLeaky),
    ],
)
@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_make_neuron_builds_the_backend_with_one_params(backend, kind, cls, reset):
    neuron = make_neuron(backend, kind, reset, threshold=0.75, decay=0.25, detach_reset=True)
    assert type(neuron) is cls and backend_of(neuron) == backend
    lam = 1.0 if kind == "if" else 0.25
    # QUEST semantics in every back-end: a soft reset subtracts theta itself (not snnTorch's theta / beta)
    assert neuron.params == NeuronParams(decay=lam, threshold=0.75, reset=reset, detach_reset=True)
    assert neuron.params.reset_amount == 0.75


def test_builtin_backends_are_registered():
    assert {"spikingjelly", "snntorch"} <= set(list_backends())
    assert get_backend("snntorch").neuron_types == (QuantLeaky,)
    assert backend_of(QuantLIFNode()) == "spikingjelly" and backend_of(QuantLeaky()) == "snntorch"


def test_registry_errors():
    with pytest.raises(ValueError, match=r"backend='norse' is unknown: use one of .*register_backend"):
        make_neuron("norse", "if", "hard")
    with pytest.raises(ValueError, match=r"backend 'snntorch' is already registered; pass overwrite=True"):
        register_backend("snntorch", ToyNeuron, (ToyNeuron,))
    with pytest.raises(ValueError, match=r"neuron_types=\(<class 'torch.nn.modules.linear.Linear'>,\) must name"):
        register_backend("bad", ToyNeuron, (torch.nn.Linear,))
    with pytest.raises(ValueError, match=r"ToyNeuron belongs to no registered neuron back-end"):
        backend_of(ToyNeuron(NeuronParams(), "triangle"))
    assert "bad" not in list_backends()


def test_a_new_backend_is_one_class_and_its_registration(toy_backend):
    """SpikingVGG builds, trains a step and describes itself with the toy back-end; nothing else changed."""
    torch.manual_seed(0)
    net = SpikingVGG([4, "P"], [8], in_channels=1, image_size=4, num_classes=3, backend=toy_backend, threshold=0.2)
    neurons = spiking_neurons(net)
    assert len(neurons) == 2 and all(type(n) is ToyNeuron and backend_of(n) == "toy" for _, n in neurons)
    assert all(n.scale_source is not None for _, n in neurons)
    module = QuestModule(net, timesteps=2, num_classes=3)
    assert module.hparams_initial["backend"] == "toy" and module.hparams_initial["neuron"] == "if"  # what loggers get

    x = torch.rand(2, 6, 1, 4, 4)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    loss = F.cross_entropy(net(x).mean(0), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    hidden = net.classifier[0].layer
    assert hidden.alpha.grad.abs() > 0  # through the toy neuron's quantized membrane and spikes
    assert not torch.equal(hidden.weight.detach(), before["classifier.0.layer.weight"])


def test_neuron_compiles_to_the_integer_program_with_its_params():
    """The neuron's one NeuronParams, with the scale it shares, gives the same program as compiling it by hand."""
    layer = QuantLinear(4, 2, bits=3, transform="identity")
    with torch.no_grad():
        layer.alpha.fill_(0.6)
    neuron = QuantLeaky(1.0, 0.45, "triangle", "subtract").share_scale_with(layer)
    by_hand = integer_neuron_program(
        0.6, 3, NeuronParams(threshold=0.45, reset="soft"), transform="identity", fire_at_threshold=True
    )
    assert neuron.integer_program() == by_hand
    assert by_hand.threshold_int == 3  # 0.45 / (0.6 / 3) = 2.25 -> 3
    with pytest.raises(ValueError, match=r"QuantLeaky has no quantized membrane: call share_scale_with"):
        QuantLeaky().integer_program()
    with pytest.raises(ValueError, match=r"decay=0\.5 is not supported by the integer path"):
        QuantLeaky(0.5, 0.45, "triangle").share_scale_with(layer).integer_program()
    with pytest.raises(ValueError, match=r"mem_bits=2 differs from the layer's bits=3"):
        QuantIFNode(mem_bits=2).share_scale_with(layer).integer_program()
