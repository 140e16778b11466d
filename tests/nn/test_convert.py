"""``quantize(model, ...)``: what it converts, what shares a scale with what, the report, and the errors that leave
the model unchanged."""

import copy
from dataclasses import dataclass

import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from snntorch import utils as snn_utils
from spikingjelly.activation_based import functional as sj_functional
from spikingjelly.activation_based import layer as sj_layer
from spikingjelly.activation_based import neuron as sj_neuron
from torch import nn

import quest_lightning
from quest_lightning.convert import quantize
from quest_lightning.nn import (
    QuantConv2d,
    QuantIFNode,
    QuantLeaky,
    QuantLinear,
    QuantParametricLIFNode,
    spiking_neurons,
)

T, B = 4, 3


@dataclass(frozen=True)
class Device:
    """A stand-in with only the capability protocol."""

    name: str
    can_leak: bool
    num_states: int


class OutOfOrder(nn.Module):
    """snnTorch tutorial style, with the modules declared in another order than they run."""

    def __init__(self, beta=0.9):
        super().__init__()
        self.lif2 = snn.Leaky(beta=beta)
        self.fc2 = nn.Linear(16, 5)
        self.lif1 = snn.Leaky(beta=beta)
        self.conv1 = nn.Conv2d(1, 4, 3)

    def forward(self, x):
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        spikes, mems = [], []
        for _ in range(T):
            cur1 = F.max_pool2d(self.conv1(x), 2)  # a functional pool between the layer and its neuron
            spk1, mem1 = self.lif1(cur1, mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1.flatten(1)), mem2)
            spikes.append(spk2)
            mems.append(mem2)
        return torch.stack(spikes), torch.stack(mems)


def _image():
    return torch.rand(B, 1, 6, 6, generator=torch.Generator().manual_seed(0)) * 2


def _structure(model):
    return [(name, type(m), id(m)) for name, m in model.named_modules()]


def test_execution_order_not_module_order():
    model = OutOfOrder()
    weight, bias = model.conv1.weight, model.fc2.bias
    model, report = quantize(model, _image(), bits=3, quantize_first=True, return_report=True, verbose=False)
    assert isinstance(model.conv1, QuantConv2d) and isinstance(model.fc2, QuantLinear)
    assert model.conv1.weight is weight and model.fc2.bias is bias  # the same parameters, under the same names
    assert model.lif1.scale_source is model.conv1 and model.lif2.scale_source is model.fc2
    assert model.conv1.enabled and not model.fc2.enabled  # fc2 runs last: the readout stays full precision
    assert report.row("lif1").shares_scale_with == "conv1" and report.row("lif1").bits == 3
    assert report.row("lif2").bits is None  # its layer is the full-precision readout
    assert (report.row("conv1").before, report.row("conv1").after) == ("Conv2d", "QuantConv2d")
    assert "readout: full precision" in report.row("fc2").note


def test_without_an_example_a_custom_forward_is_refused_and_left_alone():
    model = OutOfOrder()
    before = _structure(model)
    with pytest.raises(ValueError, match=r"the model \(OutOfOrder\) defines its own forward\(\).*example_input=x"):
        quantize(model)
    assert _structure(model) == before


def test_a_sequential_needs_no_example_and_shares_through_pool_dropout_flatten():
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.MaxPool2d(2),
        nn.Dropout(0.2),
        snn.Leaky(beta=0.5, init_hidden=True),
        nn.Flatten(),
        nn.Linear(16, 8),
        snn.Leaky(beta=0.5, init_hidden=True),
        nn.Linear(8, 3),
        snn.Leaky(beta=0.5, init_hidden=True, output=True),
    )
    quantize(net, verbose=False)
    assert [n.scale_source for _, n in spiking_neurons(net)] == [net[0], net[5], net[7]]
    assert [net[i].enabled for i in (0, 5, 7)] == [False, True, False]
    snn_utils.reset(net)
    spk, mem = net(_image())
    assert spk.shape == mem.shape == (B, 3)


def test_report_is_printed_and_returned_as_data(capsys):
    _, report = quantize(OutOfOrder(), _image(), return_report=True)
    printed = capsys.readouterr().out
    header = ["module", "before", "→", "after", "bits", "shares", "scale", "with", "note"]
    assert printed.splitlines()[0].split() == header
    assert "Leaky → QuantLeaky" in printed and str(report) in printed
    rows = report.to_dicts()
    assert [r["path"] for r in rows] == ["lif2", "fc2", "lif1", "conv1"]  # module order
    assert rows[2] == dict(
        path="lif1", kind="neuron", before="Leaky", after="QuantLeaky", bits=None, shares_scale_with="conv1", note=""
    )
    with pytest.raises(KeyError, match="no module 'nope'"):
        report.row("nope")


def test_front_door():
    assert quest_lightning.quantize is quantize


def test_spikingjelly_wrappers_keep_step_mode_and_configuration():
    net = nn.Sequential(
        sj_layer.Conv2d(1, 4, 3, step_mode="m"),
        sj_neuron.LIFNode(tau=3.0, decay_input=False, v_threshold=0.75, v_reset=None, detach_reset=True, step_mode="m"),
        sj_layer.Flatten(step_mode="m"),
        sj_layer.Linear(64, 4, step_mode="m"),
        sj_neuron.ParametricLIFNode(init_tau=3.0, step_mode="m"),
        sj_layer.Linear(4, 2, step_mode="m"),
    )
    w = net[4].w
    quantize(net, verbose=False)
    conv, lif, plif = net[0], net[1], net[4]
    assert conv.step_mode == "m" and net[3].step_mode == "m"
    assert (lif.tau, lif.decay_input, lif.threshold, lif.v_reset, lif.detach_reset, lif.step_mode) == (
        3.0,
        False,
        0.75,
        None,
        True,
        "m",
    )
    assert isinstance(plif, QuantParametricLIFNode) and plif.w is w and w in set(net.parameters())
    assert plif.scale_source is net[3] and net[3].enabled


def test_learnable_snntorch_values_stay_the_same_parameters():
    net = nn.Sequential(
        nn.Linear(4, 8),
        snn.Leaky(beta=0.8, learn_beta=True, learn_threshold=True, init_hidden=True),
        nn.Linear(8, 8),
        snn.Leaky(beta=0.8, learn_beta=True, init_hidden=True),
        nn.Linear(8, 2),
    )
    beta, threshold = net[3].beta, net[1].threshold
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    quantize(net, verbose=False)
    assert net[3].beta is beta and net[1].threshold is threshold
    snn_utils.reset(net)
    out = sum(net(torch.rand(B, 4, generator=torch.Generator().manual_seed(t)) * 3) for t in range(T))
    out.pow(2).sum().backward()
    assert beta.grad is not None and beta.grad.abs() > 0  # through the quantized membrane of net[2]
    before = beta.detach().clone()
    optimizer.step()  # the optimizer built on the original model still trains it
    assert not torch.equal(beta.detach(), before)


def test_include_and_exclude_by_name_pattern_and_type():
    def fresh():
        leaky = dict(beta=0.9, init_hidden=True)
        return nn.Sequential(nn.Linear(4, 8), snn.Leaky(**leaky), nn.Linear(8, 8), snn.Leaky(**leaky))

    net = quantize(fresh(), exclude=["2", snn.Leaky], verbose=False)
    assert [type(m) for m in net] == [QuantLinear, snn.Leaky, nn.Linear, snn.Leaky]
    net, report = quantize(fresh(), include=["[01]"], verbose=False, return_report=True)
    assert [type(m) for m in net] == [QuantLinear, QuantLeaky, nn.Linear, snn.Leaky]
    assert report.row("3").note == "excluded: left as it is"


def test_batch_norm_is_reported_and_folded_when_asked():
    def fresh():
        torch.manual_seed(0)
        net = nn.Sequential(
            sj_layer.Conv2d(1, 4, 3, step_mode="m"),
            sj_layer.BatchNorm2d(4, step_mode="m"),
            sj_neuron.IFNode(step_mode="m", store_v_seq=True),
            sj_layer.Flatten(step_mode="m"),
            sj_layer.Linear(64, 2, step_mode="m"),
        )
        with torch.no_grad():
            net[1].running_mean.uniform_(-0.5, 0.5)
            net[1].running_var.uniform_(0.5, 2.0)
            net[1].weight.uniform_(0.5, 1.5)
            net[1].bias.uniform_(-0.2, 0.2)
        return net.eval()

    x = torch.rand(T, B, 1, 6, 6, generator=torch.Generator().manual_seed(1)) * 2
    kept, report = quantize(fresh(), x, enabled=False, verbose=False, return_report=True)
    assert isinstance(kept[1], nn.BatchNorm2d)
    assert "BatchNorm 1 between 0 and this neuron breaks integer-only inference; fold it with fold_bn=True" in (
        report.row("2").note
    )
    reference = fresh()
    folded, report = quantize(fresh(), x, enabled=False, fold_bn=True, verbose=False, return_report=True)
    assert isinstance(folded[1], nn.Identity) and report.row("1").after == "Identity"
    assert report.row("2").note == "BatchNorm 1 folded into 0"
    assert folded[0].bias is not None
    with torch.no_grad():
        torch.testing.assert_close(folded[0](x), reference[1](reference[0](x)))
        reference(x)
        folded(x)
    torch.testing.assert_close(folded[2].v_seq, reference[2].v_seq)


# --- parity with quantization disabled: outputs, membranes and input gradients are the original's ---------------


class ExplicitLoop(nn.Module):
    """The snnTorch tutorials' convolutional net: a per-step loop with explicit membranes."""

    def __init__(self, **leaky):
        super().__init__()
        self.conv1, self.lif1 = nn.Conv2d(1, 4, 3), snn.Leaky(**leaky)
        self.fc1, self.lif2 = nn.Linear(16, 5), snn.Leaky(**leaky)

    def forward(self, x):
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        spikes, mems = [], []
        for _ in range(T):
            spk1, mem1 = self.lif1(F.max_pool2d(self.conv1(x), 2), mem1)
            spk2, mem2 = self.lif2(self.fc1(spk1.flatten(1)), mem2)
            spikes.append(spk2)
            mems.append(torch.cat([mem1.flatten(1), mem2], dim=1))
        return torch.stack(spikes), torch.stack(mems)


class HiddenSequential(nn.Module):
    def __init__(self, **leaky):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 4, 3),
            nn.MaxPool2d(2),
            snn.Leaky(init_hidden=True, **leaky),
            nn.Flatten(),
            nn.Linear(16, 5),
            snn.Leaky(init_hidden=True, output=True, **leaky),
        )

    def forward(self, x):
        snn_utils.reset(self.net)
        out = [self.net(x) for _ in range(T)]
        return torch.stack([s for s, _ in out]), torch.stack([m for _, m in out])


class SJNet(nn.Module):
    def __init__(self, node, step_mode, **config):
        super().__init__()
        self.step_mode = step_mode
        self.net = nn.Sequential(
            sj_layer.Conv2d(1, 4, 3, step_mode=step_mode),
            sj_layer.MaxPool2d(2, step_mode=step_mode),
            node(step_mode=step_mode, store_v_seq=True, **config),
            sj_layer.Flatten(step_mode=step_mode),
            sj_layer.Linear(16, 5, step_mode=step_mode),
            node(step_mode=step_mode, store_v_seq=True, **config),
        )

    def forward(self, x):
        sj_functional.reset_net(self.net)
        seq = 4 * x.unsqueeze(0).repeat(T, 1, 1, 1, 1)
        spikes = self.net(seq) if self.step_mode == "m" else torch.stack([self.net(xt) for xt in seq])
        return spikes, torch.cat([self.net[2].v_seq.flatten(2), self.net[5].v_seq], dim=2)


PARITY_CASES = {
    "explicit loop, subtract": lambda: ExplicitLoop(beta=0.9),
    "explicit loop, zero, no reset delay": lambda: ExplicitLoop(beta=0.7, reset_mechanism="zero", reset_delay=False),
    "explicit loop, IF, learnable beta": lambda: ExplicitLoop(beta=1.0, learn_beta=True),
    "init_hidden Sequential": lambda: HiddenSequential(beta=0.8, threshold=0.5),
    "init_hidden Sequential, none": lambda: HiddenSequential(beta=0.95, reset_mechanism="none"),
    "IFNode s": lambda: SJNet(sj_neuron.IFNode, "s", v_threshold=0.5),
    "IFNode m soft": lambda: SJNet(sj_neuron.IFNode, "m", v_threshold=0.5, v_reset=None),
    "LIFNode m": lambda: SJNet(sj_neuron.LIFNode, "m", tau=1.5, v_threshold=0.1),
    "LIFNode s detach": lambda: SJNet(sj_neuron.LIFNode, "s", tau=2.5, v_threshold=0.1, detach_reset=True),
    "ParametricLIFNode m": lambda: SJNet(sj_neuron.ParametricLIFNode, "m", v_threshold=0.1),
}


@pytest.mark.parametrize("case", list(PARITY_CASES))
def test_converted_model_equals_the_original_with_quantization_off(case):
    torch.manual_seed(0)
    original = PARITY_CASES[case]()
    converted = copy.deepcopy(original)
    quantize(converted, _image(), enabled=False, verbose=False)
    assert all(
        isinstance(n, QuantLeaky | QuantIFNode) or n.__class__.__name__.startswith("Quant")
        for _, n in (spiking_neurons(converted))
    )
    assert len(spiking_neurons(converted)) == 2
    results = []
    for model in (original, converted):
        x = _image().requires_grad_(True)
        spikes, mems = model(x)
        (spikes.sum() + (mems * torch.linspace(-1, 1, mems.shape[-1])).sum()).backward()
        results.append((spikes.detach(), mems.detach(), x.grad))
    (s_ref, m_ref, g_ref), (s_ours, m_ours, g_ours) = results
    assert 0 < s_ref.mean() < 1 and g_ref.abs().sum() > 0
    assert torch.equal(s_ours, s_ref)
    assert torch.equal(m_ours, m_ref)
    assert torch.equal(g_ours, g_ref)


def test_reset_helpers_reach_the_new_neurons():
    """SpikingJelly's reset_net caches the modules to reset per network: the cache is invalidated, so the new nodes
    are reset; snnTorch's registry forgets the replaced neurons."""
    net = SJNet(sj_neuron.IFNode, "m", v_threshold=0.5)
    sj_functional.reset_net(net)  # fills the cache with the old nodes
    old = net.net[2]
    quantize(net, _image(), verbose=False)
    first, _ = net(_image())
    second, _ = net(_image())  # forward() calls reset_net: it must reach the new nodes
    assert torch.equal(first, second) and isinstance(net.net[2], QuantIFNode) and net.net[2] is not old
    leaky_net = HiddenSequential(beta=0.9)
    replaced = leaky_net.net[2]
    quantize(leaky_net, _image(), verbose=False)
    assert replaced not in snn.SpikingNeuron.instances and leaky_net.net[2] in snn.SpikingNeuron.instances


# --- errors: named, explained, and nothing changed ------------------------------------------------------------


def _refused(model, match, *args, **kwargs):
    before, registered = _structure(model), list(snn.SpikingNeuron.instances)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        quantize(model, *args, verbose=False, **kwargs)
    assert _structure(model) == before
    assert snn.SpikingNeuron.instances == registered  # no half-made adapter is left for snntorch.utils.reset
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("unsupported", [snn.Synaptic(alpha=0.9, beta=0.8), snn.RLeaky(beta=0.9, linear_features=8)])
def test_unsupported_neuron_names_the_path_and_the_supported_classes(unsupported):
    net = nn.Sequential(nn.Linear(4, 8), snn.Leaky(beta=0.9, init_hidden=True), nn.Linear(8, 8), unsupported)
    name = type(unsupported).__qualname__
    _refused(
        net,
        rf"cannot convert this neuron: 3 \(snntorch\._neurons\.\w+\.{name}\)\. Supported neurons: "
        r"snntorch\._neurons\.leaky\.Leaky, spikingjelly\.activation_based\.neuron\.integrate_and_fire\.IFNode",
    )
    quantize(net, exclude=["3"], verbose=False)  # left alone when excluded
    assert type(net[3]) is type(unsupported) and isinstance(net[1], QuantLeaky)


def test_no_synaptic_layer():
    net = nn.Sequential(nn.Flatten(), snn.Leaky(beta=1.0, init_hidden=True))
    _refused(net, r"Sequential has no synaptic layer to quantize")


def test_lif_on_a_device_that_cannot_leak_names_the_module():
    net = nn.Sequential(nn.Linear(4, 8), snn.Leaky(beta=0.9, init_hidden=True), nn.Linear(8, 2))
    _refused(
        net,
        r"^1 \(neuron='lif', decay=0\.89.*\): QuantLeaky is leaky .* device 'mtj' cannot leak",
        device=Device("mtj", can_leak=False, num_states=7),
    )
    _refused(net, r"^1 .*QuantLeaky is leaky .* device 'skmtj7' cannot leak", device="skmtj7")
    if_net = nn.Sequential(nn.Linear(4, 8), snn.Leaky(beta=1.0, init_hidden=True), nn.Linear(8, 2))
    quantize(if_net, device="skmtj7", verbose=False)  # IF fits


def test_bits_that_do_not_fit_the_device():
    net = nn.Sequential(nn.Linear(4, 8), snn.Leaky(beta=1.0, init_hidden=True), nn.Linear(8, 8), nn.Linear(8, 2))
    _refused(
        net,
        r"^2 \(QuantLinear\): bits=4 needs 15 weight levels .* device 'seven' has only 7 states",
        bits=4,
        device=Device("seven", can_leak=True, num_states=7),
    )
    _refused(
        net,
        r"mem_bits=4 needs 15 weight levels",
        bits=3,
        mem_bits=4,
        quantize_first=True,
        device=Device("seven", can_leak=True, num_states=7),
    )


def test_a_neuron_whose_feeding_layer_cannot_be_found():
    net = nn.Sequential(snn.Leaky(beta=1.0, init_hidden=True), nn.Linear(4, 2))
    _refused(net, r"0 \(Leaky\): no synaptic layer feeds its input current")

    class TwoPaths(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.lif = nn.Linear(4, 4), nn.Linear(4, 4), snn.Leaky(beta=1.0, init_hidden=True)

        def forward(self, x):
            return self.lif(self.a(x) + self.b(x))

    x = torch.rand(B, 4)
    several = r"lif \(Leaky\): it integrates the currents of several layers \(a, b\).*share=\{'lif': 'a'\}"
    _refused(TwoPaths(), several, x)
    model = quantize(TwoPaths(), x, share={"lif": "b"}, verbose=False)
    assert model.lif.scale_source is model.b

    class Skipped(TwoPaths):
        def forward(self, x):
            return self.a(x)

    _refused(Skipped(), r"lif \(Leaky\): it did not run on the example input", x)


@pytest.mark.filterwarnings("ignore:Inhibition is an unstable feature")
def test_configurations_the_adapters_do_not_reproduce():
    net = nn.Sequential(nn.Linear(4, 8), sj_neuron.IFNode(v_reset=-0.5), nn.Linear(8, 2))
    _refused(net, r"1 \(IFNode\): v_reset=-0\.5 is not supported: the MINT grid is symmetric")
    net = nn.Sequential(nn.Linear(4, 8), snn.Leaky(beta=0.9, inhibition=True, init_hidden=True), nn.Linear(8, 2))
    _refused(net, r"1 \(Leaky\): snn\.Leaky with inhibition is not supported")


def test_bad_options():
    net = nn.Sequential(nn.Linear(4, 8), snn.Leaky(beta=1.0, init_hidden=True), nn.Linear(8, 2))
    _refused(net, r"bits=9 is not supported", bits=9)
    _refused(net, r"mem_bits=0 is not supported", mem_bits=0)
    _refused(net, r"share must map neuron paths to layer paths", share={"1": 0})


def test_a_network_of_our_own_modules_is_kept_as_it_is():
    """Converting twice, or converting a SpikingVGG, changes nothing: quantized layers and wired neurons are kept."""
    from quest_lightning.nn import SpikingVGG

    model = SpikingVGG([4, "P"], [8], in_channels=1, image_size=8, num_classes=3)
    before = _structure(model)
    _, report = quantize(model, torch.rand(2, 1, 1, 8, 8), return_report=True, verbose=False)
    assert _structure(model) == before
    assert report.row("features.0.layer").note == "already quantized (full precision): kept"
    assert report.row("classifier.0.layer").note == "already quantized (enabled): kept"
    assert report.row("classifier.0.neuron").shares_scale_with == "classifier.0.layer"
