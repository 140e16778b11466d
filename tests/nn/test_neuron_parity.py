"""With quantization off, each adapter reproduces its wrapped library's neuron exactly; with it on, both agree."""

import pytest
import snntorch as snn
import torch
from snntorch import surrogate as snn_sg
from spikingjelly.activation_based import functional as sj_functional
from spikingjelly.activation_based import neuron as sj_neuron
from spikingjelly.activation_based import surrogate as sj_sg

from quest_lightning.nn import QuantIFNode, QuantLeaky, QuantLIFNode, QuantLinear, QuantParametricLIFNode

T, B, N = 8, 5, 7


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, N, generator=g) * 1.2 - 0.1).requires_grad_(True)


def _run_snntorch(neuron, x, return_mem=True):
    mem = None
    spikes, mems = [], []
    for t in range(x.shape[0]):
        if isinstance(neuron, snn.Leaky):
            spk, mem = neuron(x[t], mem) if mem is not None else neuron(x[t])
        else:
            spk, mem = neuron(x[t])
        spikes.append(spk)
        mems.append(mem)
    return torch.stack(spikes), torch.stack(mems)


@pytest.mark.parametrize("beta", [1.0, 0.7])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_quant_leaky_matches_snntorch_leaky(beta, reset):
    x_ref, x_ours = _inputs(), _inputs()
    ref = snn.Leaky(beta=beta, threshold=0.5, spike_grad=snn_sg.fast_sigmoid(slope=5), reset_mechanism=reset)
    ref.reset_mem()
    ours = QuantLeaky(beta=beta, threshold=0.5, spike_grad=snn_sg.fast_sigmoid(slope=5), reset_mechanism=reset)
    s_ref, m_ref = _run_snntorch(ref, x_ref)
    s_ours, m_ours = _run_snntorch(ours, x_ours)
    assert s_ref.sum() > 0 and (s_ref == 0).any()  # the inputs exercise both firing and silence
    torch.testing.assert_close(s_ours, s_ref, rtol=0, atol=0)
    torch.testing.assert_close(m_ours, m_ref, rtol=1e-6, atol=1e-6)
    w = torch.randn(T, B, N, generator=torch.Generator().manual_seed(1))
    ((s_ref * w).sum() + (m_ref * w).sum()).backward()
    ((s_ours * w).sum() + (m_ours * w).sum()).backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-5, atol=1e-6)


def _sj_pair(kind, v_reset, detach_reset, step_mode):
    sg = sj_sg.ATan(alpha=3.0)
    if kind == "if":
        ref = sj_neuron.IFNode(0.5, v_reset, sg, detach_reset, step_mode=step_mode, store_v_seq=step_mode == "m")
        ours = QuantIFNode(0.5, v_reset, sj_sg.ATan(alpha=3.0), detach_reset, step_mode=step_mode, store_v_seq=True)
    else:
        ref = sj_neuron.LIFNode(
            tau=1.5,
            v_threshold=0.5,
            v_reset=v_reset,
            surrogate_function=sg,
            detach_reset=detach_reset,
            step_mode=step_mode,
            store_v_seq=step_mode == "m",
        )
        ours = QuantLIFNode(1.5, True, 0.5, v_reset, sj_sg.ATan(alpha=3.0), detach_reset, step_mode, True)
    return ref, ours


@pytest.mark.parametrize("kind", ["if", "lif"])
@pytest.mark.parametrize("v_reset", [0.0, None])
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_quant_sj_nodes_match_spikingjelly(kind, v_reset, detach_reset, step_mode):
    x_ref, x_ours = _inputs(2), _inputs(2)
    ref, ours = _sj_pair(kind, v_reset, detach_reset, step_mode)
    outs = []
    for node, x in ((ref, x_ref), (ours, x_ours)):
        sj_functional.reset_net(node)
        if step_mode == "m":
            s = node(x)
            v = node.v_seq
        else:
            s_list, v_list = [], []
            for t in range(T):
                s_list.append(node(x[t]))
                v_list.append(node.v)
            s, v = torch.stack(s_list), torch.stack(v_list)
        outs.append((s, v))
    (s_ref, v_ref), (s_ours, v_ours) = outs
    assert s_ref.sum() > 0 and (s_ref == 0).any()
    torch.testing.assert_close(s_ours, s_ref, rtol=0, atol=0)
    torch.testing.assert_close(v_ours, v_ref, rtol=1e-6, atol=1e-6)
    w = torch.randn(T, B, N, generator=torch.Generator().manual_seed(3))
    ((s_ref * w).sum() + (v_ref * w).sum()).backward()
    ((s_ours * w).sum() + (v_ours * w).sum()).backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_backends_agree_with_quantization_on(reset):
    """IF with MINT membrane quantization: the snnTorch-style and SpikingJelly-style shells give identical spikes and
    gradients (reset detached in both, as snnTorch always does)."""
    torch.manual_seed(0)
    layer = QuantLinear(12, N, bits=2)
    x_in = (torch.rand(T, B, 12) < 0.4).float()
    results = []
    for make in (
        lambda: QuantLeaky(1.0, 0.5, "triangle", "zero" if reset == "hard" else "subtract"),
        lambda: QuantIFNode(0.5, 0.0 if reset == "hard" else None, "triangle", detach_reset=True, step_mode="m"),
    ):
        layer.zero_grad()
        neuron = make().share_scale_with(layer)
        current = layer(x_in)
        if isinstance(neuron, QuantLeaky):
            s = torch.stack([neuron(current[t])[0] for t in range(T)])
        else:
            s = neuron(current)
        (s * torch.arange(N)).sum().backward()
        results.append((s.detach(), layer.weight.grad.clone(), layer.alpha.grad.clone()))
    (s1, gw1, ga1), (s2, gw2, ga2) = results
    torch.testing.assert_close(s1, s2, rtol=0, atol=0)
    assert gw1.abs().sum() > 0 and ga1.abs() > 0
    torch.testing.assert_close(gw1, gw2)
    torch.testing.assert_close(ga1, ga2)


# --- SpikingJelly nodes, bit for bit, in both step modes, reached by functional.reset_net -----------------------


def _sj_currents():
    """[T, 600]: random currents, eighths and tenths (ties), and constants on and below the threshold."""
    g = torch.Generator().manual_seed(5)
    random = torch.rand(T, 200, generator=g) * 1.5 - 0.2
    eighths = torch.randint(-2, 13, (T, 200), generator=g) / 8.0
    tenths = torch.randint(-2, 13, (T, 190), generator=g) / 10.0
    constants = torch.tensor([1.0, 0.5, 0.25, 0.1, 0.2, 0.3, 0.6, 0.7, 0.75, 1.5]).repeat(T, 1)
    return torch.cat([random, eighths, tenths, constants], dim=1)


SJ_CLASSES = {
    "IFNode": (sj_neuron.IFNode, QuantIFNode, {}),
    "LIFNode": (sj_neuron.LIFNode, QuantLIFNode, dict(tau=1.5)),
    "LIFNode no input decay": (sj_neuron.LIFNode, QuantLIFNode, dict(tau=3.0, decay_input=False)),
    "ParametricLIFNode": (sj_neuron.ParametricLIFNode, QuantParametricLIFNode, dict(init_tau=1.8)),
}


def _sj_run(node, x, step_mode):
    sj_functional.reset_net(node)
    if step_mode == "m":
        return node(x), node.v_seq
    spikes = torch.stack([node(x[t]) for t in range(x.shape[0])])
    return spikes, node.v_seq


@pytest.mark.parametrize("name", list(SJ_CLASSES))
@pytest.mark.parametrize("v_reset", [0.0, None])
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_sj_nodes_are_bit_identical(name, v_reset, detach_reset, step_mode):
    """Spikes, stored membranes (``v_seq``, in both step modes), the parameter and input gradients, exactly; the
    nodes are reset by ``functional.reset_net`` between two passes, which then agree."""
    ref_cls, our_cls, extra = SJ_CLASSES[name]
    config = dict(
        v_threshold=1.0,
        v_reset=v_reset,
        detach_reset=detach_reset,
        step_mode=step_mode,
        store_v_seq=True,
        **extra,
    )
    x = _sj_currents()
    w = torch.randn(2, *x.shape, generator=torch.Generator().manual_seed(6))
    results = []
    for cls in (ref_cls, our_cls):
        node = cls(surrogate_function=sj_sg.ATan(alpha=3.0), **config)
        x_in = x.clone().requires_grad_(True)
        s, v = _sj_run(node, x_in, step_mode)
        ((s * w[0]).sum() + (v * w[1]).sum()).backward()
        again, _ = _sj_run(node, x, step_mode)  # reset_net reached it: the second pass starts from zero
        assert torch.equal(again, s.detach())
        grads = [x_in.grad] + ([node.w.grad] if hasattr(node, "w") else [])
        results.append((s.detach(), v.detach(), grads))
    (s_ref, v_ref, g_ref), (s_ours, v_ours, g_ours) = results
    assert 0 < s_ref.mean() < 1
    assert torch.equal(s_ours, s_ref)
    assert torch.equal(v_ours, v_ref)
    for ours, ref in zip(g_ours, g_ref, strict=True):
        assert ref.abs().sum() > 0
        assert torch.equal(ours, ref)


def test_parametric_lif_tau_is_learnable_with_quantization_on():
    """With a shared scale the decay 1 - sigmoid(w) still trains: w gets a gradient through the MINT scan."""
    layer = QuantLinear(12, N, bits=3)
    node = QuantParametricLIFNode(2.0, v_threshold=0.5, step_mode="m").share_scale_with(layer)
    x = (torch.rand(T, B, 12, generator=torch.Generator().manual_seed(7)) < 0.5).float()
    spikes = node(layer(x))
    assert 0 < spikes.mean() < 1
    spikes.sum().backward()
    assert node.w.grad is not None and node.w.grad.abs() > 0
    assert layer.alpha.grad.abs() > 0
