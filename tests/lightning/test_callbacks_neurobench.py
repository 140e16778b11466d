"""NeuroBench's metrics in the run record: a tiny digits network trained one epoch with AORMeter and
DeviceEnergyCallback; the record of its validation epoch against the one-forward-pass hooks
(``deploy.neurobench_metrics``) and NeuroBench's own metric code on the same validation data."""

from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from quest_lightning.deploy.graph import model_spikes
from quest_lightning.deploy.neurobench import neurobench_metrics, neurobench_view
from quest_lightning.lightning.callbacks import AORMeter, DeviceEnergyCallback
from quest_lightning.lightning.module import QuestModule
from quest_lightning.nn import SpikingVGG
from quest_lightning.summary import read_summary

VAL = 50


def _fit(tmp_path, *, binary: bool, aor=None, **trainer_kw):
    """Trains one epoch on 96 digits (binarized to 0/1 pixels when ``binary``), validates on 50 others in batches of
    20; returns the module, the energy callback and the validation images."""
    sklearn = pytest.importorskip("sklearn.datasets")
    d = sklearn.load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = (x > 0.5).float() if binary else x
    y = torch.tensor(d.target)
    torch.manual_seed(0)
    net = SpikingVGG([8, "P", 16, "P"], [16], in_channels=1, image_size=8, num_classes=10, bits=2)
    module = QuestModule(net, timesteps=2, lr=3e-3)
    energy = DeviceEnergyCallback()
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=[aor or AORMeter(), energy],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(tmp_path),
        **trainer_kw,
    )
    val = DataLoader(TensorDataset(x[-VAL:], y[-VAL:]), batch_size=20)
    trainer.fit(module, DataLoader(TensorDataset(x[:96], y[:96]), batch_size=32), val)
    module.eval()
    return module, energy, x[-VAL:]


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory):
    return _fit(tmp_path_factory.mktemp("binary"), binary=True)


def test_the_record_equals_one_forward_pass_with_hooks(binary_run):
    module, energy, x = binary_run
    record = energy.run_summary().neurobench
    assert (record.stage, record.epoch, record.samples) == ("val", 0, VAL)
    hooks = neurobench_metrics(module.model, module.encoder(x))
    ops = hooks.synaptic_operations
    # 0/1 pixels: every layer's input is NeuroBench's spiking input, so every figure is exact
    assert record.effective_acs == ops.effective_acs > 0
    assert record.effective_macs == ops.effective_macs == 0
    assert record.dense == ops.dense
    assert record.activation_sparsity == hooks.activation_sparsity
    assert record.connection_sparsity == hooks.connection_sparsity
    assert record.footprint_bytes == hooks.footprint.neurobench_bytes
    assert record.deployed_bytes == hooks.footprint.deployed_bytes
    # the file DeviceEnergyCallback wrote carries the same record
    assert read_summary(energy.summary_path).neurobench == record


def test_the_record_equals_neurobench_on_the_same_data(binary_run):
    pytest.importorskip("neurobench")
    from neurobench.hooks.layer import LayerHook
    from neurobench.metrics.static import ConnectionSparsity, Footprint
    from neurobench.metrics.workload import ActivationSparsity, SynapticOperations
    from neurobench.models import TorchModel

    module, energy, x = binary_run
    record = energy.run_summary().neurobench
    x_seq = module.encoder(x)
    view = neurobench_view(module)
    nb_model = TorchModel(view)
    nb_model.connection_hooks = [LayerHook(layer) for layer in nb_model.connection_layers()]
    with torch.no_grad():
        preds = view(x_seq)
    data = (x, torch.zeros(len(x), dtype=torch.long))
    synops = SynapticOperations()(nb_model, preds, data)
    assert (synops["Effective_ACs"], synops["Effective_MACs"], synops["Dense"]) == (
        record.effective_acs,
        record.effective_macs,
        record.dense,
    )
    _, spikes = model_spikes(view, x_seq)
    hooks = [SimpleNamespace(activation_outputs=[s]) for s in spikes.values()]
    assert ActivationSparsity()(SimpleNamespace(activation_hooks=hooks), preds, data) == record.activation_sparsity
    assert ConnectionSparsity()(nb_model) == round(record.connection_sparsity, 4)
    assert Footprint()(TorchModel(module.model)) == record.footprint_bytes


@pytest.fixture(scope="module")
def grey_run(tmp_path_factory):
    return _fit(tmp_path_factory.mktemp("grey"), binary=False)


def test_analog_input_gives_exact_effective_macs(grey_run):
    module, energy, x = grey_run
    record = energy.run_summary().neurobench
    hooks = neurobench_metrics(module.model, module.encoder(x))
    # grey pixels, many of them 0: the first layer's products are MACs of its non-zero pixels only
    assert (x == 0).any() and ((x > 0) & (x < 1)).any()
    assert hooks.synaptic_operations.effective_macs > 0
    assert hooks.synaptic_operations.effective_macs < hooks.synaptic_operations.per_layer()[0]["dense_per_sample"]
    assert record.effective_macs == hooks.synaptic_operations.effective_macs
    assert not any("Effective_MACs" in n for n in record.notes)
    first = energy.run_summary().activity["val"][-1].layers[0]
    assert (first.layer, first.input_kind, first.input_kind_source) == ("model.features.0.layer", "analog", "recorded")
    assert first.nonzero_level_ops is not None and sum(first.nonzero_level_ops) < sum(first.level_ops)
    assert record.effective_acs == hooks.synaptic_operations.effective_acs
    assert record.dense == hooks.synaptic_operations.dense
    assert record.activation_sparsity == hooks.activation_sparsity
    # the file DeviceEnergyCallback wrote carries the same record
    assert read_summary(energy.summary_path).neurobench == record


def test_analog_effective_macs_equal_neurobench_on_the_same_data(grey_run):
    pytest.importorskip("neurobench")
    from neurobench.hooks.layer import LayerHook
    from neurobench.metrics.workload import SynapticOperations
    from neurobench.models import TorchModel

    module, energy, x = grey_run
    record = energy.run_summary().neurobench
    view = neurobench_view(module)
    nb_model = TorchModel(view)
    nb_model.connection_hooks = [LayerHook(layer) for layer in nb_model.connection_layers()]
    with torch.no_grad():
        preds = view(module.encoder(x))
    synops = SynapticOperations()(nb_model, preds, (x, torch.zeros(len(x), dtype=torch.long)))
    assert synops["Effective_MACs"] > 0
    assert (synops["Effective_ACs"], synops["Effective_MACs"], synops["Dense"]) == (
        record.effective_acs,
        record.effective_macs,
        record.dense,
    )


def test_a_run_that_measured_no_epoch_has_no_record(tmp_path):
    _, energy, _ = _fit(tmp_path, binary=True, aor=AORMeter(on=("val",)), limit_val_batches=0)
    summary = energy.run_summary()
    assert summary.activity["val"] == () and summary.neurobench is None
