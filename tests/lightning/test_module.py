"""QuestModule: hyperparameters reach the logger, the loss options, the default schedule, and bad arguments;
QuestVGG and its network config."""

import copy
import csv
import inspect

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from quest_lightning.lightning.data import DeviceBatchLoader
from quest_lightning.lightning.module import QuestModule, SampleMean
from quest_lightning.lightning.vgg_module import QuestVGG, VGGConfig
from quest_lightning.nn import SpikingVGG, spiking_vgg


def _net(**kw):
    torch.manual_seed(0)
    return SpikingVGG([4, "P"], [8], in_channels=1, image_size=8, num_classes=10, **kw)


def test_hyperparameters_are_logged(tmp_path):
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    module = QuestModule(_net(neuron="lif", reset="soft", bits=3), timesteps=3, device_name="ideal7", pattern=5)
    logger = CSVLogger(tmp_path)
    trainer = pl.Trainer(
        max_epochs=1, logger=logger, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=8))
    hparams = yaml.safe_load((tmp_path / "lightning_logs" / "version_0" / "hparams.yaml").read_text())
    assert hparams["bits"] == [3] and hparams["neuron"] == "lif" and hparams["reset"] == "soft"
    assert hparams["timesteps"] == 3 and hparams["device_name"] == "ideal7" and hparams["pattern"] == 5


def test_loss_options():
    out = torch.randn(4, 6, 10)
    y = torch.randint(0, 10, (6,))
    mean_module = QuestModule(_net(), timesteps=4)
    step_module = QuestModule(_net(), timesteps=4, loss="per_step")
    loss, logits = mean_module._loss(out, y)
    torch.testing.assert_close(loss, F.cross_entropy(out.mean(0), y))
    torch.testing.assert_close(logits, out.mean(0))
    per_step, _ = step_module._loss(out, y)
    torch.testing.assert_close(per_step, torch.stack([F.cross_entropy(o, y) for o in out]).mean())
    with pytest.raises(ValueError, match="expects \\[T=4, B, classes\\]"):
        mean_module._loss(out[:3], y)


def test_default_optimizer_and_schedule_follow_the_paper():
    module = QuestModule(_net())
    module.trainer = pl.Trainer(max_epochs=100, logger=False)
    config = module.configure_optimizers()
    opt, sched = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert isinstance(opt, torch.optim.Adam)
    assert opt.defaults["lr"] == 1e-3 and opt.defaults["weight_decay"] == 1e-4
    assert sorted(sched.milestones) == [50, 75] and sched.gamma == 0.1
    # full-precision layers' alpha is not optimised
    names = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(module.model.features[0].layer.alpha) not in names


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"timesteps": 0}, "timesteps"),
        ({"loss": "mse"}, "loss='mse'"),
        ({"optimizer": "lamb"}, "optimizer='lamb'"),
        ({"schedule": "poly"}, "schedule='poly'"),
        ({"lr": 0}, "lr=0"),
        ({"milestones": (0.75, 0.5)}, "milestones"),
        ({"encoder": "delta"}, "encoder='delta'"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QuestModule(_net(), **kwargs)


def test_vgg_config_holds_exactly_the_options_of_spiking_vgg():
    """VGGConfig is the one place QuestVGG and spiking_vgg callers name the network's options: same names, same
    defaults as SpikingVGG's keyword arguments (the device is not a network option)."""
    params = inspect.signature(SpikingVGG.__init__).parameters
    options = {n: p.default for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n != "device_spec"}
    assert VGGConfig().options() == options
    assert set(VGGConfig.field_names()) == {"arch", "fc", *options}  # fc: SpikingVGG's positional argument


def test_vgg_config_builds_the_named_network():
    torch.manual_seed(0)
    built = VGGConfig(bits=3, neuron="lif", reset="soft", pool="avg").build()
    torch.manual_seed(0)
    direct = spiking_vgg("vgg6", bits=3, neuron="lif", reset="soft", pool="avg")
    assert repr(built) == repr(direct)
    for (name, a), (_, b) in zip(built.state_dict().items(), direct.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    assert VGGConfig.from_value({"bits": 3, "neuron": "lif"}) == VGGConfig(bits=3, neuron="lif")
    assert VGGConfig.from_value(None) == VGGConfig()


def test_vgg_config_narrows_the_hidden_layers():
    """``fc`` replaces the architecture's hidden widths (VGG6's 4096, 4096) and keeps its convolutions; a checkpoint
    stores it as a plain list, and a bad width is refused."""
    torch.manual_seed(0)
    built = VGGConfig(fc=[64]).build()
    torch.manual_seed(0)
    direct = SpikingVGG([64, "P", 128, 128, "P"], [64])
    assert repr(built) == repr(direct)
    widths = [m.weight.shape for m in built.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [(64, 128 * 8 * 8), (10, 64)]
    config = VGGConfig(fc=[64])
    assert config.to_dict()["fc"] == [64] and VGGConfig().to_dict()["fc"] is None
    assert VGGConfig.from_value(config.to_dict()) == config and hash(config) == hash(VGGConfig(fc=(64,)))
    assert QuestVGG(network={"fc": [64]}).hparams["network"]["fc"] == [64]
    for bad in ([0], [64, -1], [1.5]):
        with pytest.raises(ValueError, match=r"model\.network\.fc: fc=.* must be positive integer widths"):
            QuestVGG(network={"fc": bad})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"network": {"arch": "vgg7"}}, r"^model\.network\.arch: arch='vgg7' is unknown"),
        ({"network": {"bitz": 3}}, r"^model\.network: unknown network option\(s\) \['bitz'\]"),
        ({"network": {"bits": 4}}, r"^model\.network\.bits: bits=4 needs 15 weight levels"),
        ({"network": {"neuron": "lif"}}, r"^model\.network\.neuron: neuron='lif' is leaky .* cannot leak"),
        ({"device": "no_such_device"}, r"^model\.device='no_such_device'"),
    ],
)
def test_quest_vgg_errors_name_the_config_key(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QuestVGG(**kwargs)


def test_checkpoint_keeps_the_arguments_and_loggers_get_the_description(tmp_path):
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    module = QuestModule(_net(bits=3), timesteps=3, lr=1e-12, pattern=5)  # lr ~ 0: the predictions stay put
    trainer = pl.Trainer(
        max_epochs=1, logger=CSVLogger(tmp_path), default_root_dir=tmp_path, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=8))
    (ckpt,) = tmp_path.rglob("*.ckpt")
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]
    assert saved["timesteps"] == 3 and saved["pattern"] == 5
    assert not {"bits", "neuron", "reset", "threshold", "backend"} & set(saved)  # the description is not an argument
    loaded = QuestModule.load_from_checkpoint(ckpt, model=_net(bits=3), map_location="cpu")
    assert dict(loaded.hparams) == dict(module.hparams)
    for (name, a), (_, b) in zip(loaded.state_dict().items(), module.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    # train/acc is logged once per epoch, from the module's own epoch-end hook: the accuracy over all 16 samples
    with torch.no_grad():
        expected = (module(x).mean(0).argmax(1) == y).float().mean()
    torch.testing.assert_close(trainer.callback_metrics["train/acc"], expected)


def _train_accuracy_per_epoch(folder, ckpt_path=None, checkpoints=None, validate=False):
    """Fit 2 epochs of 4 batches from a stateful loader (a resumed run gets the batches the uninterrupted one did),
    validating on them when ``validate``, with, given ``checkpoints``, a checkpoint there after every step; the
    train/acc logged for each epoch."""
    pl.seed_everything(0, verbose=False)
    g = torch.Generator().manual_seed(0)
    loader = DeviceBatchLoader(torch.rand(32, 1, 8, 8, generator=g), torch.randint(0, 10, (32,), generator=g), 8)
    every_step = [ModelCheckpoint(checkpoints, "{step}", every_n_train_steps=1, save_top_k=-1)] if checkpoints else []
    logger = CSVLogger(folder)
    trainer = pl.Trainer(
        max_epochs=2, logger=logger, callbacks=every_step, enable_checkpointing=bool(every_step),
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=1,
    )  # fmt: skip
    trainer.fit(QuestModule(_net(), timesteps=2, lr=0.05), loader, loader if validate else None, ckpt_path=ckpt_path)
    with open(f"{logger.log_dir}/metrics.csv") as f:
        return {int(r["epoch"]): float(r["train/acc"]) for r in csv.DictReader(f) if r.get("train/acc")}


@pytest.mark.filterwarnings("ignore:.*does not have many workers")
@pytest.mark.parametrize(("step", "validate", "epochs"), [(2, False, [0, 1]), (4, False, [1]), (4, True, [0, 1])])
def test_a_resumed_fit_logs_the_training_accuracy_of_whole_epochs(tmp_path, step, validate, epochs):
    """A checkpoint holds the training accuracy's partial sums with their epoch. Resumed mid-epoch (step 2 of 4),
    epoch 0's train/acc still covers its first two batches. Resumed from the last batch of epoch 0 (step 4) with
    validation, the fit validates epoch 0 and ends it first, logging its train/acc over all its batches; without
    validation Lightning goes on with epoch 1 (without epoch 0's end), and epoch 0's sums are not folded into it."""
    full = _train_accuracy_per_epoch(tmp_path / "full", checkpoints=tmp_path / "ckpt", validate=validate)
    assert sorted(full) == [0, 1]
    ckpt = tmp_path / "ckpt" / f"step={step}.ckpt"
    resumed = _train_accuracy_per_epoch(tmp_path / "resumed", ckpt_path=ckpt, validate=validate)
    assert resumed == {e: full[e] for e in epochs}


def test_padded_samples_are_left_out_of_the_loss_and_the_accuracy(tmp_path):
    """Rank 1's shard of 9 samples over 2 ranks (positions 1, 3, 5, 7 and 9, which repeats sample 0), run in one
    process: the training step's loss, its gradient, train/acc, val/loss and val/acc are those of the 4 real samples,
    computed here by hand."""
    g = torch.Generator().manual_seed(0)
    images, labels = torch.rand(9, 1, 8, 8, generator=g), torch.randint(0, 10, (9,), generator=g)
    shard = DeviceBatchLoader(images, labels, batch_size=5, rank=1, world_size=2)
    assert [shard.padded_in_batch(0), len(shard)] == [1, 1]
    module = QuestModule(_net(), timesteps=2, optimizer="sgd", lr=0.5, momentum=0.0, weight_decay=0.0, schedule="none")
    by_hand = copy.deepcopy(module)
    trainer = pl.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(module, shard, shard)
    x, y = images[[1, 3, 5, 7]], labels[[1, 3, 5, 7]]
    before = by_hand(x).mean(0)
    F.cross_entropy(before, y).backward()
    with torch.no_grad():
        for p in by_hand.parameters():
            if p.grad is not None:
                p -= 0.5 * p.grad
        after = by_hand(x).mean(0)
    for (name, a), (_, b) in zip(module.model.state_dict().items(), by_hand.model.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    metrics = trainer.callback_metrics
    assert float(metrics["train/acc"]) == (before.argmax(1) == y).float().mean().item()
    assert float(metrics["val/acc"]) == (after.argmax(1) == y).float().mean().item()
    torch.testing.assert_close(float(metrics["val/loss"]), F.cross_entropy(after, y).item())


def test_sample_mean_weighs_batches_by_their_samples_in_float64():
    """The validation and test loss: batch means weighted by their samples, summed in float64 even from float32
    means (torchmetrics' MeanMetric casts them to float32)."""
    means = torch.tensor([2.2902575, 2.3025851, 1.0e-3], dtype=torch.float32)
    samples = [8, 1, 3]
    metric = SampleMean()
    for mean, n in zip(means, samples, strict=True):
        metric.update(mean, n)
    expected = sum(float(m) * n for m, n in zip(means.tolist(), samples, strict=True)) / sum(samples)
    assert metric.compute().dtype == torch.float64 and metric.compute().item() == expected


def _fit_with_random_draws(folder, ckpt_path=None, checkpoints=None, **knobs):
    """2 epochs of 4 batches of a network with dropout and a rate encoder (both draw from the global generator),
    validating every epoch, seeded like the recipe, with the energy-aware ``knobs``; the final weights."""
    pl.seed_everything(0, verbose=False)
    g = torch.Generator().manual_seed(0)
    loader = DeviceBatchLoader(torch.rand(32, 1, 8, 8, generator=g), torch.randint(0, 10, (32,), generator=g), 8)
    every_step = [ModelCheckpoint(checkpoints, "{step}", every_n_train_steps=1, save_top_k=-1)] if checkpoints else []
    torch.manual_seed(0)
    net = SpikingVGG([4, "P"], [8, 8], in_channels=1, image_size=8, num_classes=10, dropout=0.5)
    module = QuestModule(net, timesteps=2, encoder="rate", lr=0.05, **knobs)
    trainer = pl.Trainer(
        max_epochs=2, logger=False, callbacks=every_step, enable_checkpointing=bool(every_step),
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=1, default_root_dir=folder,
    )  # fmt: skip
    trainer.fit(module, loader, DeviceBatchLoader(loader.images[:8], loader.labels[:8], 4), ckpt_path=ckpt_path)
    return module.state_dict()


@pytest.mark.filterwarnings("ignore:.*does not have many workers")
@pytest.mark.parametrize(("step", "knobs"), [(2, {}), (4, {}), (2, {"write_aware": 0.3, "read_aware": 0.5})])
def test_a_resumed_fit_draws_what_the_uninterrupted_one_drew(tmp_path, step, knobs):
    """The checkpoint holds the global generators' states (the dropout masks, the rate encoder's spikes), set back
    at the first step after the resume (after Lightning's sanity check, which draws too): resumed mid-epoch or after
    the last batch of epoch 0 (whose validation draws before epoch 1), the weights are the uninterrupted run's. With
    the energy-aware knobs on, the held codes come back too and the resumed run ends with the same weights and codes."""
    full = _fit_with_random_draws(tmp_path / "full", checkpoints=tmp_path / "ckpt", **knobs)
    resumed = _fit_with_random_draws(tmp_path / "resumed", ckpt_path=tmp_path / "ckpt" / f"step={step}.ckpt", **knobs)
    assert any("held_codes" in name for name in full) == bool(knobs)
    for name, value in full.items():
        assert torch.equal(resumed[name], value), name


def _tiny_vgg(**kwargs) -> QuestVGG:
    torch.manual_seed(0)
    return QuestVGG(VGGConfig(arch="vgg6", image_size=8, in_channels=1), device="skmtj7", timesteps=2, **kwargs)


def test_energy_aware_knobs_are_off_by_default_and_on_when_asked(tmp_path):
    """Off: no hysteresis, no penalty, the loss is the plain cross-entropy. On: every quantized layer holds its codes
    (a checkpointed buffer), the read penalty joins the loss, and a checkpoint loads back with the held codes."""
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    plain = _tiny_vgg()
    assert not plain.energy_aware.knobs.on
    assert all(getattr(m, "held_codes", None) is None for m in plain.model.modules())
    assert plain.energy_aware.penalty().item() == 0.0
    expected = F.cross_entropy(plain(x).mean(0), y)
    aware = _tiny_vgg(write_aware=0.2, read_aware=0.5)
    assert aware.hparams.write_aware == 0.2 and aware.hparams.read_aware == 0.5
    held = [m for m in aware.model.modules() if getattr(m, "held_codes", None) is not None]
    assert held and all(m.enabled for m in held)
    out = aware(x)
    penalty = aware.energy_aware.penalty()
    assert penalty.item() > 0  # the network reads non-zero weights
    assert torch.allclose(F.cross_entropy(out.mean(0), y), expected)  # same weights: the task loss is unchanged

    data = DataLoader(TensorDataset(torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))), batch_size=4)
    trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(aware, data)
    path = tmp_path / "aware.ckpt"
    trainer.save_checkpoint(path)
    loaded = QuestVGG.load_from_checkpoint(path, map_location="cpu")
    for (name, a), (_, b) in zip(aware.model.named_modules(), loaded.model.named_modules(), strict=True):
        if getattr(a, "held_codes", None) is not None:
            assert torch.equal(a.held_codes, b.held_codes), name


@pytest.mark.filterwarnings("ignore:.*does not have many workers")
def test_the_read_penalty_leaves_padding_out_and_is_weighted_by_real_samples_under_ddp(monkeypatch):
    """9 samples over 2 ranks, 5 per rank: rank 0 holds 5 real samples, rank 1 four and a repeat of sample 0. Each
    rank's step runs in its own Trainer that reports 2 ranks (as DDP's does); the mean of the two ranks' updates
    (what DDP applies, plain SGD) is that of one process's loss over the 9 real samples: their cross-entropy plus
    the read penalty of their forward pass, computed here by hand. Each rank logs its penalty over its real
    samples."""
    monkeypatch.setattr(pl.Trainer, "world_size", property(lambda self: 2))
    g = torch.Generator().manual_seed(0)
    images, labels = torch.rand(9, 1, 8, 8, generator=g), torch.randint(0, 10, (9,), generator=g)
    kwargs = dict(timesteps=2, optimizer="sgd", lr=1.0, momentum=0.0, weight_decay=0.0, schedule="none", read_aware=2.0)
    updates, logged = [], []
    for rank in (0, 1):
        shard = DeviceBatchLoader(images, labels, batch_size=5, rank=rank, world_size=2)
        assert shard.padded_in_batch(0) == rank and shard.real_in_step(0) == 9
        module = QuestModule(_net(), **kwargs)
        before = copy.deepcopy(module.model.state_dict())
        trainer = pl.Trainer(
            max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, num_sanity_val_steps=0,
        )  # fmt: skip
        trainer.fit(module, shard)
        updates.append({k: v - before[k] for k, v in module.model.state_dict().items()})
        logged.append(float(trainer.callback_metrics["train/read_penalty"]))
    by_hand = QuestModule(_net(), **kwargs)
    penalties = []
    for real in ([0, 2, 4, 6, 8], [1, 3, 5, 7]):
        by_hand(images[real])
        penalties.append(by_hand.energy_aware.penalty().item())
    assert min(penalties) > 0 and logged == pytest.approx(penalties, rel=1e-6)
    out = by_hand(images).mean(0)
    (F.cross_entropy(out, labels) + by_hand.energy_aware.penalty()).backward()
    for name, p in by_hand.model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close((updates[0][name] + updates[1][name]) / 2, -p.grad, msg=name)


def test_a_converted_spikingjelly_network_trains_in_questmodule_from_a_zero_state_each_batch():
    """A converted SpikingJelly network keeps its membranes between calls; QuestModule zeroes them before each
    batch, so the same batch gives the same logits twice and a second training step does not walk the first's
    graph (without the reset it raises "Trying to backward through the graph a second time")."""
    from spikingjelly.activation_based import layer, neuron
    from torch import nn

    from quest_lightning import quantize

    torch.manual_seed(0)
    net = nn.Sequential(
        layer.Conv2d(1, 8, 3, padding=1, step_mode="m"),
        neuron.IFNode(step_mode="m"),
        layer.Flatten(step_mode="m"),
        layer.Linear(8 * 8 * 8, 32, step_mode="m"),
        neuron.IFNode(step_mode="m"),
        layer.Linear(32, 10, step_mode="m"),
    )
    quantize(net, example_input=torch.zeros(4, 1, 1, 8, 8), bits=2)
    module = QuestModule(net, timesteps=4, schedule="none")
    x = torch.rand(6, 1, 8, 8) * 3
    with torch.no_grad():
        first, second = module(x), module(x)
    assert torch.equal(first, second)
    assert any(n.v.abs().sum() > 0 for n in net.modules() if isinstance(n, neuron.IFNode) and torch.is_tensor(n.v))
    data = DataLoader(TensorDataset(torch.rand(24, 1, 8, 8), torch.randint(0, 10, (24,))), batch_size=6)
    trainer = pl.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(module, data)
    assert trainer.global_step == 4
