"""The DataModule in a Trainer: subsets, what is augmented, and a resume that replays nothing and skips nothing."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from quest_lightning.lightning.data import CIFAR10DataModule, DeviceBatchLoader, normalize_images
from quest_lightning.lightning.data import loader as loader_mod


def _dm(folder, env, **kwargs):
    return CIFAR10DataModule(data_dir=str(folder), download=False, cache_dir=str(env / "cache"), **kwargs)


def _trainer(root, **kwargs):
    kwargs.setdefault("enable_checkpointing", False)
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(root),
        **kwargs,
    )


def test_datamodule_subsets_and_batches(folder, env):
    dm = _dm(folder, env, batch_size=4, train_subset=10, test_subset=5)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.train_data[0].shape == (10, 3, 32, 32)
    assert torch.bincount(dm.train_data[1], minlength=10).tolist() == [1] * 10
    assert dm.test_data[1].unique().numel() == 5
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (4, 3, 32, 32) and y.dtype == torch.int64
    assert isinstance(dm.train_dataloader(), DeviceBatchLoader)
    assert x.device.type == "cpu" and dm.train_data[0].device.type == "cpu"  # no trainer: CPU tensors
    # Without a trainer (or outside training) batches are only normalised.
    xf, yf = dm.on_after_batch_transfer((x, y), 0)
    assert xf.dtype == torch.float32 and torch.equal(yf, y)
    torch.testing.assert_close(xf, normalize_images(x))
    assert len(dm.val_dataloader()) == 2 and len(dm.test_dataloader()) == 2


def test_bad_settings_are_refused_and_num_workers_is_only_accepted(folder, env):
    for bad, match in (
        ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
        ({"train_subset": 0}, "train_subset must be >= 1 or None, got 0"),
        ({"device_resident": "gpu"}, "device_resident must be True, False or 'auto', got 'gpu'"),
    ):
        with pytest.raises(ValueError, match=match):
            _dm(folder, env, **bad)
    _dm(folder, env, num_workers=0)  # what configs saved by earlier versions hold
    with pytest.warns(UserWarning, match="ignores num_workers=4"):
        dm = _dm(folder, env, num_workers=4)
    assert "num_workers" not in dm.hparams


class _Probe(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(3 * 32 * 32, 10)
        self.seen: list[tuple[str, torch.dtype, tuple[int, ...]]] = []
        self.batches: list[tuple[int, int, torch.Tensor, torch.Tensor]] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.seen.append(("train", x.dtype, tuple(x.shape)))
        self.batches.append((self.current_epoch, batch_idx, x.clone(), y.clone()))
        return torch.nn.functional.cross_entropy(self.layer(x.flatten(1)), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.seen.append(("val", x.dtype, tuple(x.shape)))
        self.batches.append((-1, batch_idx, x.clone(), y.clone()))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("device_resident", [False, True])
def test_trainer_fit_augments_only_training_batches(folder, env, monkeypatch, device_resident):
    calls = []
    crop_flip = loader_mod.crop_flip

    def counting_crop_flip(images, offsets, flips, padding=4):
        calls.append(images.shape[0])
        return crop_flip(images, offsets, flips, padding)

    monkeypatch.setattr(loader_mod, "crop_flip", counting_crop_flip)
    dm = _dm(folder, env, batch_size=8, device_resident=device_resident)
    model = _Probe()
    trainer = _trainer(env, max_epochs=2)
    trainer.fit(model, datamodule=dm)
    loader = trainer.train_dataloader
    assert isinstance(loader, DeviceBatchLoader) and loader.layout.augment
    assert not trainer.val_dataloaders.layout.augment and not trainer.val_dataloaders.layout.shuffle
    train = [s for s in model.seen if s[0] == "train"]
    val = [s for s in model.seen if s[0] == "val"]
    assert len(train) == 2 * 4 and len(val) == 2 * 3  # 30 train / 8 -> 4 batches, 20 test / 8 -> 3 batches
    assert all(dtype == torch.float32 and shape[1:] == (3, 32, 32) for _, dtype, shape in model.seen)
    assert sum(calls) == 2 * 30  # every training sample augmented once per epoch, no validation sample
    val_x = torch.cat([x for e, _, x, _ in model.batches if e == -1][:3])
    torch.testing.assert_close(val_x, normalize_images(dm.test_data[0]), rtol=0, atol=0)  # in order, untouched


def _same(a, b):
    return len(a) == len(b) and all(
        ea == eb and ia == ib and torch.equal(xa, xb) and torch.equal(ya, yb)
        for (ea, ia, xa, ya), (eb, ib, xb, yb) in zip(a, b, strict=True)
    )


@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")
@pytest.mark.parametrize("device_resident", [False, True])
def test_resume_from_a_checkpoint_serves_exactly_the_remaining_batches(folder, env, device_resident):
    """An uninterrupted run saves a checkpoint after every step; each resumes into a fresh Trainer and must see the
    uninterrupted run's remaining batches, identical tensors (order, crops and flips), in the same epochs."""
    root = env / "run"
    every_step = ModelCheckpoint(dirpath=root, filename="{epoch}-{step}", every_n_train_steps=1, save_top_k=-1)
    epoch_end = ModelCheckpoint(dirpath=root, filename="end-{epoch}", save_on_train_epoch_end=True, save_top_k=-1)
    kwargs = dict(max_epochs=3, limit_val_batches=0)
    full = _Probe()
    _trainer(root, callbacks=[every_step, epoch_end], enable_checkpointing=True, **kwargs).fit(
        full, datamodule=_dm(folder, env, batch_size=8, device_resident=device_resident)
    )
    per_epoch = 4  # 30 images / 8
    assert len(full.batches) == 3 * per_epoch
    epochs = [torch.cat([y for e, _, _, y in full.batches if e == k]) for k in range(3)]
    assert not torch.equal(epochs[0], epochs[1]) and not torch.equal(epochs[1], epochs[2])  # a new order each epoch

    cases = {"epoch=0-step=2.ckpt": 2, "epoch=0-step=4.ckpt": 4, "end-epoch=0.ckpt": 4, "epoch=1-step=7.ckpt": 7}
    for name, done in cases.items():
        resumed = _Probe()
        dm = _dm(folder, env, batch_size=8, device_resident=device_resident)
        _trainer(env / "resumed", **kwargs).fit(resumed, datamodule=dm, ckpt_path=str(Path(root) / name))
        assert _same(resumed.batches, full.batches[done:]), name


@pytest.mark.parametrize("precision", ["64-true", "bf16-true"])
def test_batches_come_in_the_dtype_of_the_trainer_precision(folder, env, precision):
    """Normalised images follow the Trainer's precision (a float64 or bfloat16 model gets float64 or bfloat16
    batches); Lightning converts inputs before the transfer, while the images are still uint8."""
    dtype = {"64-true": torch.float64, "bf16-true": torch.bfloat16}[precision]
    model = _Probe()
    _trainer(env, max_epochs=1, limit_train_batches=1, limit_val_batches=1, precision=precision).fit(
        model, datamodule=_dm(folder, env, batch_size=4)
    )
    assert {(stage, dt) for stage, dt, _ in model.seen} == {("train", dtype), ("val", dtype)}
