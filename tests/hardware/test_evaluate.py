"""Hardware-aware evaluation of a trained spiking network: exact on an ideal device, faults at the requested rate,
patterns that tolerate variation differently, noise-aware training, and the typed sweep result."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from digits import train_digits

from quest_lightning.devices import get_device
from quest_lightning.hardware import (
    ArrayModel,
    LinearInterpolation,
    VariationSweep,
    accuracy,
    evaluate_on_array,
    noise_aware_training,
    on_array,
    plot_variation_sweep,
    variation_sweep,
)
from quest_lightning.nn import QuantLinear, quantized_layers, recording, spiking_neurons

SKMTJ = get_device("skmtj7")


@pytest.fixture(autouse=True)
def single_thread():
    """A model this small is fastest on one thread, and one thread does not stall when the CPU is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _outputs(d):
    """Logits and every neuron's spike count on the test set."""
    x = torch.cat([b[0] for b in d.batches])
    with torch.no_grad(), recording(d.model):
        for _, n in spiking_neurons(d.model):
            n.reset_recording()
        logits = d.model(d.encoder(x))
        spikes = [n.spike_count.clone() for _, n in spiking_neurons(d.model)]
    return logits, spikes


@pytest.mark.parametrize("mapping", [None, LinearInterpolation()])
def test_ideal_device_equals_the_ideal_model_bit_for_bit(digits, mapping):
    # every non-ideality set explicitly to zero: the array draws its cells but must read every weight back exactly
    dev = SKMTJ.with_nonideal(d2d_sigma=0.0, c2c_sigma=0.0, read_sigma=0.0, stuck_fraction=0.0)
    array = ArrayModel(dev, (6, 3, 0)) if mapping is None else ArrayModel(dev, (6, 3, 0), mapping)
    ideal_logits, ideal_spikes = _outputs(digits)
    for seed in (0, 1):
        with on_array(digits.model, array, seed=seed):
            logits, spikes = _outputs(digits)
        assert torch.equal(logits, ideal_logits)
        assert all(torch.equal(a, b) for a, b in zip(spikes, ideal_spikes, strict=True))
    result = evaluate_on_array(digits.model, digits.batches, array, draws=3, forward=digits.forward)
    assert result.accuracies == (result.ideal_accuracy,) * 3 and result.std == 0.0
    assert result.ideal_accuracy == accuracy(digits.model, digits.batches, digits.forward) > 0.85


def test_faulty_cells_match_the_requested_rate(digits):
    """Cells stuck at R6 (code +1 under -1->R0, 0->R3, +1->R6) change exactly the weights they hold that are not +1,
    and their number is binomial(cells, f)."""
    f = 0.05
    array = ArrayModel(SKMTJ.with_nonideal(stuck_fraction=f, stuck_state=6), (0, 3, 6))
    layers = quantized_layers(digits.model)
    ideal = {name: layer.quantized_weight().detach() for name, layer in layers}
    with on_array(digits.model, array, seed=3) as chip:
        noisy = {name: layer.quantized_weight().detach() for name, layer in layers}
    cells = chip.num_cells
    assert cells == sum(layer.weight.numel() for _, layer in layers) == 4608 + 8192
    assert abs(chip.num_stuck - f * cells) <= 5 * math.sqrt(cells * f * (1 - f))
    for name, layer in layers:
        stuck = chip.cells[name].stuck
        codes = layer.current_codes()
        changed = noisy[name] != ideal[name]
        assert torch.equal(changed, stuck & (codes != 1)), name
        step = layer.alpha.detach() / layer.qmax
        assert torch.allclose(noisy[name][stuck], step.expand(int(stuck.sum())))  # they read +alpha/Q
    for _, layer in layers:  # the hooks are gone after the block
        assert layer.weight_perturbation is None


def test_patterns_tolerate_variation_differently(digits):
    values = (0.0, 0.02, 0.05)
    patterns = [(0, 3, 6), (0, 6, 3)]  # zero between the signs, vs. -1 and +1 on neighbouring conductances
    sweep = variation_sweep(
        digits.model, digits.batches, SKMTJ, values, patterns=patterns, draws=4, seed=0, forward=digits.forward
    )
    assert sweep.ideal_accuracy > 0.85
    mean = sweep.mean
    for i in range(2):
        assert mean[i][0] == sweep.ideal_accuracy  # sigma = 0 is exact
        assert sweep.std[i][0] == 0.0
    at = sweep.at(0.05)
    assert at["-1→R0, 0→R3, +1→R6"][0] > at["-1→R0, 0→R6, +1→R3"][0] + 0.15
    assert mean[1][2] < sweep.ideal_accuracy - 0.2  # variation costs accuracy
    assert sweep.best(0.05) == "-1→R0, 0→R3, +1→R6"
    # typed and JSON-serialisable
    data = json.loads(json.dumps(sweep.to_dict()))
    assert VariationSweep.from_dict(data) == sweep
    assert data["labels"][0] == "-1→R0, 0→R3, +1→R6" and len(data["accuracy"][0][0]) == 4
    assert "d2d_sigma = 0.05" in sweep.to_markdown()
    fig = plot_variation_sweep(sweep)
    assert len(fig.axes[0].get_lines()) == 3  # two patterns and the ideal line
    with pytest.raises(ValueError, match="was not swept"):
        sweep.at(0.03)


def test_same_seed_same_result_and_fault_sweep(digits):
    dev = SKMTJ.with_nonideal(read_sigma=0.01)
    kwargs = dict(patterns=[(6, 3, 0)], draws=2, seed=5, forward=digits.forward, vary="stuck_fraction")
    a = variation_sweep(digits.model, digits.batches, dev, (0.0, 0.2), **kwargs)
    b = variation_sweep(digits.model, digits.batches, dev, (0.0, 0.2), **kwargs)
    assert a == b
    assert a.nonideal == {"read_sigma": 0.01} and a.mean[0][1] < a.ideal_accuracy


def test_noise_aware_training_perturbs_training_passes_only(digits):
    model = copy.deepcopy(digits.model)
    layer = quantized_layers(model)[1][1]
    array = ArrayModel(SKMTJ.with_nonideal(d2d_sigma=0.05), (0, 3, 6))
    ideal = layer.quantized_weight().detach().clone()
    with noise_aware_training(model, array, seed=0):
        model.eval()
        assert torch.equal(layer.quantized_weight(), ideal)
        model.train()
        w1, w2 = layer.quantized_weight(), layer.quantized_weight()
        assert not torch.equal(w1, ideal) and not torch.equal(w1.detach(), w2.detach())  # a fresh array each pass
        # the gradient flows through w_q: d(sum w)/d(weight) is the same as without noise
        w1.sum().backward()
        grad_noisy = layer.weight.grad.clone()
    layer.weight.grad = None
    layer.quantized_weight().sum().backward()
    assert torch.equal(grad_noisy, layer.weight.grad)
    assert layer.weight_perturbation is None


def test_noise_aware_fine_tuning_recovers_accuracy_on_an_intolerant_pattern(digits):
    """Fine-tuning under the device's noise beats fine-tuning without it, on fresh arrays of the same device."""
    pattern, sigma = (0, 6, 3), 0.05
    array = ArrayModel(SKMTJ.with_nonideal(d2d_sigma=sigma), pattern)
    results = {}
    for noisy in (False, True):
        model = copy.deepcopy(digits.model)
        if noisy:
            with noise_aware_training(model, array, seed=1):
                train_digits(model, digits.encoder, *digits.train, epochs=3, lr=1e-3)
        else:
            train_digits(model, digits.encoder, *digits.train, epochs=3, lr=1e-3)
        results[noisy] = evaluate_on_array(model, digits.batches, array, draws=6, seed=11, forward=digits.forward).mean
    assert results[True] > results[False] + 0.1, results


def test_errors(digits):
    array = ArrayModel(SKMTJ, (0, 3, 6))
    with pytest.raises(ValueError, match="one-shot iterator"):
        evaluate_on_array(digits.model, iter(digits.batches), array, forward=digits.forward)
    with pytest.raises(ValueError, match=r"expected\s+\[B, C\] logits"):
        evaluate_on_array(digits.model, digits.batches, array, forward=lambda m, x: m(digits.encoder(x)))
    three_bit = QuantLinear(4, 2, bits=3)
    with pytest.raises(ValueError, match=r"3-bit weights \(7 levels\).*holds 3"), on_array(three_bit, array):
        pass
    with pytest.raises(ValueError, match="quantized layers"), on_array(torch.nn.Linear(2, 2), array):
        pass
    with (
        on_array(digits.model, array),
        pytest.raises(ValueError, match="already has a weight_perturbation"),
        on_array(digits.model, array),
    ):
        pass
    with pytest.raises(ValueError, match="cannot be swept"):
        variation_sweep(digits.model, digits.batches, SKMTJ, (0.1,), vary="drift_t0_s", states=(0, 3, 6))
    with pytest.raises(ValueError, match="negative|>= 0"):
        variation_sweep(digits.model, digits.batches, SKMTJ, (-0.1,), patterns=[(0, 3, 6)], forward=digits.forward)
    with pytest.raises(ValueError, match="draws"):
        evaluate_on_array(digits.model, digits.batches, array, draws=0, forward=digits.forward)
    assert all(layer.weight_perturbation is None for _, layer in quantized_layers(digits.model))
