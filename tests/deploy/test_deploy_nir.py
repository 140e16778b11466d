"""NIR export: a round trip through a NIR file and snnTorch's NIR importer reproduces the network where NIR can
describe it exactly, and the spike agreement shows what MINT's membrane clipping (which NIR lacks) changes."""

import numpy as np
import pytest
import torch
from deploy_helpers import T, digits_net, trained

nir = pytest.importorskip("nir")
pytest.importorskip("nirtorch")

from quest_lightning.deploy import NotDeployableError  # noqa: E402
from quest_lightning.deploy.nir import CLIPPING_NOTE, import_with_snntorch, nir_spike_agreement, to_nir  # noqa: E402
from quest_lightning.nn import DirectEncoder  # noqa: E402


def _round_trip(graph, tmp_path):
    path = tmp_path / "net.nir"
    nir.write(path, graph)
    return nir.read(path)


def test_round_trip_is_exact_without_membrane_quantization(digits_data, tmp_path):
    """Full-precision membranes (quantize=False): NIR describes the network exactly, so every spike agrees."""
    x_train, y_train, x_test, _ = digits_data
    model = trained(x_train, y_train, epochs=1, quantize=False)
    graph = _round_trip(to_nir(model, if_node="LIF"), tmp_path)
    agreement = nir_spike_agreement(model, DirectEncoder(T)(x_test[:200]), import_with_snntorch(graph))
    assert agreement.agreement == 1.0 and agreement.prediction_agreement == 1.0
    assert set(agreement.per_layer) == {"features.0.neuron", "features.1.neuron", "classifier.0.neuron"}


def test_quantized_graph_holds_the_quantized_weights_and_says_what_it_lacks(trained_digits, tmp_path):
    model, x, _ = trained_digits
    graph = _round_trip(to_nir(model), tmp_path)
    layer = model.features[1].layer
    with torch.no_grad():
        w_q = layer.quantized_weight()
    node = graph.nodes["features_1_layer"]
    np.testing.assert_array_equal(node.weight, w_q.numpy())
    assert len(np.unique(node.weight)) == 3  # ternary
    assert node.metadata["bits"] == 2 and node.metadata["alpha"] == pytest.approx(layer.alpha.item())
    neuron = graph.nodes["features_1_neuron"]
    assert isinstance(neuron, nir.IF) and np.all(neuron.v_threshold == np.float32(0.5))
    assert np.all(neuron.v_reset == 0) and neuron.v_threshold.shape == (32, 4, 4)
    assert graph.metadata["membrane_clipping"] == CLIPPING_NOTE
    assert "clipping" in neuron.metadata["membrane_clipping"]
    assert isinstance(graph.nodes["features_0_pool"], nir.AvgPool2d)  # max pooling: average, then "> 0"
    assert isinstance(graph.nodes["features_0_pool_or"], nir.IF)
    assert np.all(graph.nodes["features_0_pool_or"].v_threshold == 0)

    imported = import_with_snntorch(_round_trip(to_nir(model, if_node="LIF"), tmp_path))
    agreement = nir_spike_agreement(model, DirectEncoder(T)(x), imported)
    assert agreement.per_layer["features.0.neuron"] == 1.0  # full-precision first layer: no clipping
    assert 0.85 < agreement.agreement < 1.0  # the clipped membranes of the quantized layers make the difference
    assert agreement.to_dict()["spike_entries"] == agreement.spikes


def test_nir_refuses_what_it_cannot_describe():
    with pytest.raises(NotDeployableError, match="features.0.neuron.*reset='soft'.*no subtractive reset"):
        to_nir(digits_net(reset="soft"))
    with pytest.raises(NotDeployableError, match="BatchNorm 'features.0.norm'.*NIR has no BatchNorm"):
        to_nir(digits_net(batch_norm=True))
    with pytest.raises(ValueError, match="if_node"):
        to_nir(digits_net(), if_node="Leaky")
