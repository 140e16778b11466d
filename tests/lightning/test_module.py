"""QuestModule: hyperparameters reach the logger, the loss options, the default schedule, and bad arguments;
QuestVGG and its network config."""

import inspect

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
import yaml
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from quest_lightning.lightning.module import QuestModule
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
    assert set(VGGConfig.field_names()) == {"arch", *options}


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
