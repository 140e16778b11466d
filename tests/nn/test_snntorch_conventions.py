"""QuantLeaky is a drop-in ``snn.Leaky``: every calling convention snnTorch documents, driven against the real class,
gives bit-identical spikes, membranes and gradients (quantization off).

Inputs are hundreds of sequences at once (the batch axis): random currents, tie-heavy currents on a grid of eighths
and tenths (decimal steps such as 0.6 leave float residues right at the threshold), and constant currents that land
exactly on the threshold.
"""

import pytest
import snntorch as snn
import torch
from snntorch import surrogate, utils
from torch import nn

from quest_lightning.nn import QuantLeaky

T, THETA = 12, 1.0


def _currents() -> torch.Tensor:
    """[T, 700]: random, eighths, tenths and constants (on the threshold, half of it, a tenth of it)."""
    g = torch.Generator().manual_seed(0)
    random = torch.rand(T, 200, generator=g) * 1.5 - 0.2
    eighths = torch.randint(-2, 13, (T, 200), generator=g) / 8.0
    tenths = torch.randint(-2, 13, (T, 200), generator=g) / 10.0
    constants = torch.tensor([THETA, THETA / 2, THETA / 4, 0.1, 0.2, 0.3, 0.6, 0.7]).repeat(T, 1)
    constants = torch.cat([constants, torch.tensor([0.25, 0.5, 0.75, 1.0, 0.4, 0.6]).repeat(T, 13)], dim=1)
    return torch.cat([random, eighths, tenths, constants], dim=1)


X = _currents()


def _explicit(neuron, x, start="init_leaky"):
    mem = neuron.init_leaky() if start == "init_leaky" else neuron.reset_mem()
    spikes, mems = [], []
    for t in range(x.shape[0]):
        spk, mem = neuron(x[t], mem)
        spikes.append(spk)
        mems.append(mem)
    return torch.stack(spikes), torch.stack(mems)


def _hidden_without_init(neuron, x):
    """init_hidden=False, but the caller never passes mem: the module keeps it."""
    neuron.reset_mem()
    out = [neuron(x[t]) for t in range(x.shape[0])]
    return torch.stack([s for s, _ in out]), torch.stack([m for _, m in out])


def _sequential(neuron, x):
    """init_hidden=True inside nn.Sequential, reset with snntorch.utils.reset; the membrane read from ``mem``."""
    net = nn.Sequential(nn.Identity(), neuron)
    utils.reset(net)
    spikes, mems = [], []
    for t in range(x.shape[0]):
        out = net(x[t])
        spk, mem = out if neuron.output else (out, neuron.mem)
        spikes.append(spk)
        mems.append(mem)
    return torch.stack(spikes), torch.stack(mems)


CONVENTIONS = {
    "explicit init_leaky": (dict(), _explicit),
    "explicit reset_mem": (dict(), lambda n, x: _explicit(n, x, "reset_mem")),
    "hidden state, init_hidden=False": (dict(), _hidden_without_init),
    "init_hidden, output=False": (dict(init_hidden=True), _sequential),
    "init_hidden, output=True": (dict(init_hidden=True, output=True), _sequential),
}


def _pair(beta, reset, reset_delay, **kwargs):
    config = dict(beta=beta, threshold=THETA, reset_mechanism=reset, reset_delay=reset_delay, **kwargs)
    ref = snn.Leaky(spike_grad=surrogate.atan(), **config)
    ours = QuantLeaky(spike_grad=surrogate.atan(), **config)
    return ref, ours


def _assert_identical(ref, ours, run, x=X):
    results, w = [], torch.randn(2, *x.shape, generator=torch.Generator().manual_seed(1))
    for neuron in (ref, ours):
        x_in = x.clone().requires_grad_(True)
        spikes, mems = run(neuron, x_in)
        ((spikes * w[0]).sum() + (mems * w[1]).sum()).backward()
        results.append((spikes.detach(), mems.detach(), x_in.grad))
    (s_ref, m_ref, g_ref), (s_ours, m_ours, g_ours) = results
    assert 0 < s_ref.mean() < 1  # firing and silence both occur
    assert g_ref.abs().sum() > 0
    assert torch.equal(s_ours, s_ref)
    assert torch.equal(m_ours, m_ref)
    assert torch.equal(g_ours, g_ref)
    return results


@pytest.mark.parametrize("convention", list(CONVENTIONS))
@pytest.mark.parametrize("reset_delay", [True, False])
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("beta", [1.0, 0.9, 0.5])
def test_every_convention_is_bit_identical(convention, reset_delay, reset, beta):
    kwargs, run = CONVENTIONS[convention]
    ref, ours = _pair(beta, reset, reset_delay, **kwargs)
    _assert_identical(ref, ours, run)


def test_ties_land_on_the_threshold():
    """The tie-heavy currents do hit the threshold exactly, where an other order of float operations flips spikes."""
    ref, _ = _pair(1.0, "subtract", True)
    _, mems = _explicit(ref, X)
    assert (mems == THETA).sum() > 100
    # the same soft reset written in the carried-state form (subtract theta before the next charge) disagrees
    u, flips = torch.zeros_like(X[0]), 0
    for t in range(T):
        h = u + X[t]
        s = (h - THETA > 0).float()
        u = h - THETA * s
        flips += int((s != (mems[t] - THETA > 0).float()).sum())
    assert flips > 0


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_the_issue_example(reset):
    """IF, theta = 1, input 0.6 for 6 steps: snn.Leaky's spikes and membranes, in the explicit-state loop."""
    expected = {"subtract": [0.6, 1.2, 0.8, 1.4, 1.0, 1.6], "zero": [0.6, 1.2, 0.6, 1.2, 0.6, 1.2]}[reset]
    x = torch.full((6, 1), 0.6)
    ref, ours = _pair(1.0, reset, True)
    (s_ref, m_ref, _), (s_ours, m_ours, _) = _assert_identical(ref, ours, _explicit, x=x)
    assert s_ours.flatten().tolist() == [0, 1, 0, 1, 0, 1]
    assert m_ours.flatten().tolist() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("learn", ["beta", "threshold", "both"])
def test_learnable_beta_and_threshold_get_the_same_gradients(learn):
    kwargs = dict(learn_beta=learn in ("beta", "both"), learn_threshold=learn in ("threshold", "both"))
    ref, ours = _pair(0.8, "subtract", True, **kwargs)
    _assert_identical(ref, ours, _explicit)
    for name in ("beta", "threshold"):
        if kwargs[f"learn_{name}"]:
            p_ref, p_ours = getattr(ref, name), getattr(ours, name)
            assert isinstance(p_ours, nn.Parameter) and p_ours in set(ours.parameters())
            assert p_ref.grad is not None and p_ref.grad.abs().sum() > 0
            assert torch.equal(p_ours.grad, p_ref.grad)


def test_per_neuron_beta():
    beta = torch.linspace(0.3, 1.0, X.shape[1])
    ref, ours = _pair(beta, "subtract", True)
    _assert_identical(ref, ours, _explicit)
    assert "beta" in dict(ours.named_buffers())


def test_snntorch_utils_reset_reaches_quant_leaky():
    """snntorch.utils.reset(net) finds QuantLeaky through snnTorch's instance registry: a second sequence after the
    reset equals the first, as it does for snn.Leaky."""
    for cls in (snn.Leaky, QuantLeaky):
        neuron = cls(beta=0.9, threshold=THETA, init_hidden=True, output=True)
        net = nn.Sequential(nn.Identity(), neuron)
        runs = []
        for _ in range(2):
            utils.reset(net)
            runs.append(torch.stack([net(X[t])[1] for t in range(T)]))
        assert torch.equal(runs[0], runs[1]), cls.__name__
        assert isinstance(neuron, snn.Leaky)
        net(X[0])
        snn.Leaky.reset_hidden()  # the class-level reset utils.reset calls
        assert not neuron.mem.any()


def test_hidden_state_refuses_an_explicit_membrane():
    neuron = QuantLeaky(init_hidden=True)
    with pytest.raises(TypeError, match="`mem` should not be passed as an argument while `init_hidden=True`"):
        neuron(X[0], torch.zeros_like(X[0]))


def test_the_membrane_round_trips_through_the_caller():
    """What the neuron returns is what it accepts: feeding a returned membrane to a fresh neuron continues exactly."""
    _, ours = _pair(0.9, "subtract", True)
    s_all, m_all = _explicit(ours, X)
    fresh = QuantLeaky(beta=0.9, threshold=THETA, spike_grad=surrogate.atan(), reset_mechanism="subtract")
    mem = m_all[5]
    for t in range(6, T):
        spk, mem = fresh(X[t], mem)
        assert torch.equal(spk, s_all[t]) and torch.equal(mem, m_all[t])


def test_a_failed_construction_leaves_snntorch_registry_clean():
    """Only a fully built QuantLeaky joins the registry that snntorch.utils.reset walks."""
    count = len(snn.SpikingNeuron.instances)
    with pytest.raises(ValueError, match=r"beta=1\.5 must lie in \(0, 1\]"):
        QuantLeaky(beta=1.5)
    assert len(snn.SpikingNeuron.instances) == count
    utils.reset(nn.Sequential(QuantLeaky(init_hidden=True)))


@pytest.mark.parametrize("learn_beta", [False, True])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_quantized_steps_follow_the_shared_mint_scan(reset, learn_beta):
    """With a shared scale, stepping QuantLeaky in the snnTorch loop (pre-reset membranes kept, the reset and the
    MINT quantizer applied at the next step) gives the spikes of the shared scan over the quantized post-reset
    state, and a learnable beta receives a gradient."""
    from quest_lightning.nn import QuantLinear

    torch.manual_seed(0)
    layer = QuantLinear(16, 32, bits=3)
    x_in = (torch.rand(T, 64, 16, generator=torch.Generator().manual_seed(2)) < 0.4).float()
    neuron = QuantLeaky(0.75, 0.5, "triangle", reset, learn_beta=learn_beta).share_scale_with(layer)
    current = layer(x_in)
    stepped, mem = [], neuron.init_leaky()
    for t in range(T):
        spk, mem = neuron(current[t], mem)
        stepped.append(spk)
    stepped = torch.stack(stepped)
    scanned, _, _ = neuron.multi_step(current)
    assert 0 < scanned.mean() < 1
    assert torch.equal(stepped, scanned)
    stepped.sum().backward()
    assert layer.alpha.grad.abs() > 0
    if learn_beta:
        assert neuron.beta.grad is not None and neuron.beta.grad.abs() > 0
