"""The fused neuron scan (one autograd node, hand-written BPTT) equals the unfused reference scan."""

import itertools

import pytest
import torch

from quest_lightning.functional.neuron import MembraneQuant, NeuronParams
from quest_lightning.functional.scan import neuron_scan
from quest_lightning.functional.surrogate import get_surrogate

CASES = list(
    itertools.product(
        [1.0, 0.5],  # decay (IF, LIF)
        ["hard", "soft", "none"],
        [False, True],  # detach_reset
        [None, ("tanh", 2), ("identity", 3)],  # membrane quantization
        ["triangle", "sj.Sigmoid", "snntorch.fast_sigmoid"],
    )
)


@pytest.mark.parametrize(("decay", "reset", "detach", "quant", "surrogate"), CASES)
def test_fused_scan_matches_reference(decay, reset, detach, quant, surrogate):
    g = torch.Generator().manual_seed(hash((decay, reset, detach, str(quant), surrogate)) % 2**31)
    x0 = torch.rand(6, 4, 9, generator=g) * 1.4 - 0.3
    w_s = torch.randn(6, 4, 9, generator=g)
    w_u = torch.randn(4, 9, generator=g)
    spike_fn = get_surrogate(surrogate)
    outs = []
    for fused in (False, True):
        x = x0.clone().requires_grad_(True)
        alpha = torch.tensor(0.45, requires_grad=True)
        mq = None if quant is None else MembraneQuant(alpha, quant[1], quant[0], grad_scale=0.3)
        params = NeuronParams(decay=decay, threshold=0.5, reset=reset, detach_reset=detach)
        s, _, u = neuron_scan(x, spike_fn, params, mq, fused=fused)
        ((s * w_s).sum() + (u * w_u).sum()).backward()
        outs.append((s.detach(), u.detach(), x.grad, alpha.grad))
    (s_ref, u_ref, gx_ref, ga_ref), (s_f, u_f, gx_f, ga_f) = outs
    assert s_ref.sum() > 0 and (s_ref == 0).any()
    assert torch.equal(s_f, s_ref)
    assert torch.equal(u_f, u_ref)
    assert gx_ref.abs().sum() > 0
    torch.testing.assert_close(gx_f, gx_ref, rtol=1e-5, atol=1e-6)
    if quant is None:
        assert ga_f is None and ga_ref is None
    else:
        assert ga_ref != 0
        torch.testing.assert_close(ga_f, ga_ref, rtol=1e-5, atol=1e-6)


def test_fused_scan_without_grad_and_without_using_final_state():
    x = torch.rand(4, 3, 5).requires_grad_(True)
    spike_fn = get_surrogate()
    s_ref, _, _ = neuron_scan(x, spike_fn, fused=False)
    s_f, _, _ = neuron_scan(x, spike_fn, fused=True)
    s_ref.sum().backward()
    g_ref = x.grad.clone()
    x.grad = None
    s_f.sum().backward()
    torch.testing.assert_close(x.grad, g_ref)
    with torch.no_grad():
        assert torch.equal(neuron_scan(x, spike_fn)[0], s_ref)
