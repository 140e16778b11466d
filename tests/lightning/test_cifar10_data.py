"""Tests of the CIFAR-10 DataModule on tiny synthetic data (never the real dataset)."""

from __future__ import annotations

import os
import pickle
import tarfile
import urllib.error
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from quest_lightning.lightning.data import (
    CIFAR10_CLASSES,
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR10DataModule,
    CIFAR10NotFoundError,
    DeviceBatchLoader,
    balanced_subset_indices,
    cifar10,
    crop_flip,
    find_cifar10,
    gpu_augment,
    load_cifar10,
    normalize_images,
    search_path,
)
from quest_lightning.lightning.data import cache as data_cache

N_TRAIN, N_TEST = 3, 2


def _class_value(idx: int) -> int:
    return 10 + 24 * idx


def _make_imagefolder(root: Path, n_train: int = N_TRAIN, n_test: int = N_TEST) -> Path:
    """Writes solid-colour JPEGs whose red channel encodes the class, so labels can be checked by name."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for idx in reversed(range(10)):  # creation order must not matter
            folder = root / split / CIFAR10_CLASSES[idx]
            folder.mkdir(parents=True)
            for k in range(n):
                img = np.empty((32, 32, 3), dtype=np.uint8)
                img[..., 0] = _class_value(idx)
                img[..., 1] = 255 - _class_value(idx)
                img[..., 2] = rng.integers(0, 256)
                Image.fromarray(img).save(folder / f"{k:04d}.jpg", quality=95)
    return root


def _labels_from_pixels(images: torch.Tensor) -> torch.Tensor:
    red = images[:, 0].float().mean(dim=(1, 2))
    return torch.round((red - 10) / 24).long()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """An empty working directory without QUEST_CIFAR10, so no real dataset can be found by accident."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("QUEST_CIFAR10", raising=False)
    monkeypatch.delenv("QUEST_DATA_PATH", raising=False)
    return tmp_path


@pytest.fixture
def folder(env) -> Path:
    return _make_imagefolder(env / "cifar10-jpeg")


@pytest.fixture
def tarball(folder, env) -> Path:
    path = env / "cifar10-jpeg.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        tf.add(folder, arcname="cifar10-jpeg")
    return path


def _check(data: data_cache.CIFAR10Tensors, n_train: int = N_TRAIN, n_test: int = N_TEST) -> None:
    assert data.train_images.shape == (10 * n_train, 3, 32, 32)
    assert data.test_images.shape == (10 * n_test, 3, 32, 32)
    assert data.train_images.dtype == torch.uint8 and data.test_images.dtype == torch.uint8
    assert data.train_labels.dtype == torch.int64
    assert torch.equal(data.train_labels, _labels_from_pixels(data.train_images))
    assert torch.equal(data.test_labels, _labels_from_pixels(data.test_images))
    assert torch.bincount(data.train_labels, minlength=10).tolist() == [n_train] * 10


def test_load_from_folder_maps_labels_by_class_name(folder, env):
    data = load_cifar10(folder, download=False, cache_dir=env / "cache")
    _check(data)
    assert list(CIFAR10_CLASSES) == sorted(CIFAR10_CLASSES)


def test_load_from_tarball_extracts_once(tarball, env, monkeypatch):
    cache = env / "cache"
    first = load_cifar10(tarball, download=False, cache_dir=cache)
    _check(first)
    assert len(list((cache / "extracted").iterdir())) == 1

    def boom(*args, **kwargs):
        raise AssertionError("must not run again")

    monkeypatch.setattr(data_cache.tarfile, "open", boom)
    monkeypatch.setattr(data_cache, "_decode_split", boom)
    second = load_cifar10(tarball, download=False, cache_dir=cache)
    assert torch.equal(first.train_images, second.train_images)
    assert torch.equal(first.test_labels, second.test_labels)


def test_decoded_cache_is_reused_and_refreshed(folder, env, monkeypatch):
    cache = env / "cache"
    first = load_cifar10(folder, download=False, cache_dir=cache)
    assert len(list(cache.glob("cifar10-uint8-*.pt"))) == 1

    def boom(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(data_cache, "_decode_split", boom)
    second = load_cifar10(folder, download=False, cache_dir=cache)
    assert torch.equal(first.train_images, second.train_images)
    assert torch.equal(first.train_labels, second.train_labels)

    monkeypatch.undo()
    monkeypatch.chdir(env / "work")
    extra = np.full((32, 32, 3), _class_value(3), dtype=np.uint8)
    extra[..., 1] = 255 - _class_value(3)
    Image.fromarray(extra).save(folder / "train" / "cat" / "9999.jpg", quality=95)
    third = load_cifar10(folder, download=False, cache_dir=cache)
    assert third.train_images.shape[0] == 10 * N_TRAIN + 1
    assert torch.bincount(third.train_labels)[3] == N_TRAIN + 1


def test_env_var_and_well_known_spot(folder, env, monkeypatch):
    monkeypatch.setenv("QUEST_CIFAR10", str(folder))
    _check(load_cifar10(download=False, cache_dir=env / "cache"))
    monkeypatch.delenv("QUEST_CIFAR10")
    (env / "work" / "data").mkdir()
    folder.rename(env / "work" / "data" / "cifar10-jpeg")
    _check(load_cifar10(download=False, cache_dir=env / "cache"))


def test_default_search_path_finds_the_shared_tarball(tarball, env):
    # The main job runs from the repository root with the dataset at ../shared/data/cifar10-jpeg.tar.gz.
    shared = env / "shared" / "data"
    shared.mkdir(parents=True)
    tarball.rename(shared / "cifar10-jpeg.tar.gz")
    hit, _ = find_cifar10(cache_dir=env / "cache")
    assert hit == ("tarball", env / "work" / "../shared/data/cifar10-jpeg.tar.gz")
    _check(load_cifar10(download=False, cache_dir=env / "cache"))


def test_quest_data_path_replaces_the_default_search_path(folder, tarball, env, monkeypatch):
    first, second = env / "first", env / "second"
    second.mkdir()
    folder.rename(second / "cifar10-jpeg")
    (env / "work" / "data").mkdir()
    tarball.rename(env / "work" / "data" / "cifar10-jpeg.tar.gz")  # on the default path, which must be ignored
    monkeypatch.setenv("QUEST_DATA_PATH", os.pathsep.join([str(first), "", str(second)]))
    assert search_path() == [first, second]
    hit, looked = find_cifar10(cache_dir=env / "cache")
    assert hit == ("imagefolder", second / "cifar10-jpeg")
    assert f"$QUEST_DATA_PATH: {first / 'cifar10-jpeg'} (does not exist)" in looked
    monkeypatch.setenv("QUEST_DATA_PATH", str(first))
    with pytest.raises(CIFAR10NotFoundError, match="QUEST_DATA_PATH"):
        load_cifar10(download=False, cache_dir=env / "cache")


def test_an_explicit_path_is_never_silently_replaced(folder, env, monkeypatch):
    # Data on the search path must not stand in for a mistyped data_dir or $QUEST_CIFAR10.
    (env / "work" / "data").mkdir()
    folder.rename(env / "work" / "data" / "cifar10-jpeg")
    typo = env / "cifar10-jepg"
    with pytest.raises(CIFAR10NotFoundError) as info:
        load_cifar10(typo, download=False, cache_dir=env / "cache")
    assert f"data_dir: {typo} (does not exist)" in str(info.value)
    assert "search path" not in str(info.value).split("Download:")[0]
    monkeypatch.setenv("QUEST_CIFAR10", str(typo))
    with pytest.raises(CIFAR10NotFoundError, match=r"\$QUEST_CIFAR10: .*cifar10-jepg \(does not exist\)"):
        load_cifar10(download=False, cache_dir=env / "cache")


def test_wrong_class_folders_are_rejected(folder, env):
    (folder / "train" / "cat").rename(folder / "train" / "kitten")
    with pytest.raises(ValueError, match="kitten"):
        load_cifar10(folder, download=False, cache_dir=env / "cache")


def test_missing_dataset_lists_places_and_remedies(env):
    with pytest.raises(CIFAR10NotFoundError) as info:
        load_cifar10(download=False, cache_dir=env / "cache")
    assert isinstance(info.value, FileNotFoundError)
    msg = str(info.value)
    work = env / "work"
    for expected in (
        "$QUEST_CIFAR10: not set",
        str(work / "data/cifar10-jpeg"),
        str(work / "data/cifar10-jpeg.tar.gz"),
        str(work / "data/cifar-10-batches-py"),
        str(work / "../shared/data/cifar10-jpeg.tar.gz"),
        "download=False",
        "data_dir=PATH",
        "QUEST_CIFAR10=PATH",
        "download=True",
    ):
        assert expected in msg


def test_failed_download_is_reported_not_raised_raw(env, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    missing = env / "nowhere"
    with pytest.raises(CIFAR10NotFoundError) as info:
        load_cifar10(missing, download=True, cache_dir=env / "cache")
    msg = str(info.value)
    assert f"data_dir: {missing} (does not exist)" in msg
    assert "failed" in msg and "URLError" in msg and "no network" in msg


def test_torchvision_batches_layout(env):
    root = env / "data" / "cifar-10-batches-py"
    root.mkdir(parents=True)
    rng = np.random.default_rng(1)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": rng.integers(0, 10, 4).tolist()}
        batches[name] = entry
        with open(root / name, "wb") as fh:
            pickle.dump(entry, fh)
    data = load_cifar10(env / "data", download=False, cache_dir=env / "cache")
    assert data.train_images.shape == (20, 3, 32, 32) and data.test_images.shape == (4, 3, 32, 32)
    first = batches["data_batch_1"]
    assert torch.equal(data.train_images[0], torch.from_numpy(first["data"][0].reshape(3, 32, 32)))
    assert data.train_labels[:4].tolist() == first["labels"]
    assert data.test_labels.tolist() == batches["test_batch"]["labels"]


# --------------------------------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------------------------------


def _crop_flip_loop(images, offsets, flips, padding):
    b, c, h, w = images.shape
    padded = torch.zeros(b, c, h + 2 * padding, w + 2 * padding, dtype=images.dtype)
    padded[:, :, padding : padding + h, padding : padding + w] = images
    out = torch.empty_like(images)
    for n in range(b):
        oy, ox = int(offsets[n, 0]), int(offsets[n, 1])
        crop = padded[n, :, oy : oy + h, ox : ox + w]
        out[n] = crop.flip(-1) if flips[n] else crop
    return out


@pytest.mark.parametrize("padding", [0, 1, 4])
def test_crop_flip_matches_loop(padding):
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8, generator=gen)
    offsets = torch.randint(0, 2 * padding + 1, (16, 2), generator=gen)
    flips = torch.randint(0, 2, (16,), generator=gen).bool()
    assert torch.equal(crop_flip(images, offsets, flips, padding), _crop_flip_loop(images, offsets, flips, padding))


def test_gpu_augment_uses_generator_in_documented_order():
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    out = gpu_augment(images, generator=torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)
    offsets = torch.randint(0, 9, (32, 2), generator=gen)
    flips = torch.randint(0, 2, (32,), generator=gen).bool()
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert torch.equal(out, _crop_flip_loop(images, offsets, flips, 4))
    assert not torch.equal(out, images)
    assert torch.equal(out, gpu_augment(images, generator=torch.Generator().manual_seed(7)))


def test_augmented_pixels_come_from_padded_source():
    # Each pixel value is unique, so every output value must be 0 (padding) or its original value in a nearby spot.
    images = torch.arange(1, 2 * 3 * 32 * 32 + 1, dtype=torch.int64).reshape(2, 3, 32, 32)
    out = gpu_augment(images, generator=torch.Generator().manual_seed(3))
    for n in range(2):
        values = out[n][out[n] > 0]
        assert set(values.tolist()) <= set(images[n].flatten().tolist())
        for c in range(3):  # channels are never mixed
            nz = out[n, c][out[n, c] > 0]
            assert ((nz - 1) // 1024 == n * 3 + c).all()
        assert (out[n] == 0).sum() <= 3 * (32 * 32 - 28 * 28)  # at most 4 pixels of padding per side


def test_flip_only_and_identity():
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    centre = torch.full((4, 2), 4)
    assert torch.equal(crop_flip(images, centre, torch.ones(4, dtype=torch.bool), 4), images.flip(-1))
    assert torch.equal(crop_flip(images, centre, torch.zeros(4, dtype=torch.bool), 4), images)
    assert torch.equal(gpu_augment(images, padding=0, flip=False), images)


def test_normalize_images():
    images = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 3, 2, 2)
    out = normalize_images(images)
    assert out.dtype == torch.float32
    mean, std = torch.tensor(CIFAR10_MEAN), torch.tensor(CIFAR10_STD)
    torch.testing.assert_close(out[0, :, 0, 0], -mean / std)
    torch.testing.assert_close(out[1, :, 0, 0], (1 - mean) / std)


# --------------------------------------------------------------------------------------------------------------------
# Subsets, loaders and the DataModule
# --------------------------------------------------------------------------------------------------------------------


def test_balanced_subset_indices():
    labels = torch.arange(10).repeat_interleave(torch.tensor([50, 40, 30, 20, 10, 60, 70, 80, 90, 100]))
    idx = balanced_subset_indices(labels, 95, seed=3)
    assert idx.numel() == 95 and idx.unique().numel() == 95 and torch.equal(idx, idx.sort().values)
    counts = torch.bincount(labels[idx], minlength=10)
    assert counts.max() - counts.min() <= 1
    assert torch.equal(idx, balanced_subset_indices(labels, 95, seed=3))
    assert not torch.equal(idx, balanced_subset_indices(labels, 95, seed=4))
    assert torch.equal(balanced_subset_indices(labels, 10_000), torch.arange(labels.numel()))


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_device_batch_loader_shards_like_distributed_sampler(world_size):
    n = 10
    images, labels = torch.arange(n).view(n, 1).float(), torch.arange(n)
    loaders = [DeviceBatchLoader(images, labels, 3, True, rank=r, world_size=world_size) for r in range(world_size)]
    seen = []
    for loader in loaders:
        loader.set_epoch(5)
        batches = list(loader)
        assert len(batches) == len(loader)
        got = torch.cat([y for _, y in batches])
        assert got.numel() == -(-n // world_size)
        assert torch.equal(torch.cat([x for x, _ in batches]).view(-1).long(), got)
        seen.append(got)
    assert set(torch.cat(seen).tolist()) == set(range(n))
    again = loaders[0]
    again.set_epoch(5)
    assert torch.equal(torch.cat([y for _, y in again]), seen[0])
    again.set_epoch(6)
    assert not torch.equal(torch.cat([y for _, y in again]), seen[0])


def test_datamodule_subsets_and_batches(folder, env):
    dm = CIFAR10DataModule(
        data_dir=str(folder), download=False, cache_dir=str(env / "cache"), batch_size=4, train_subset=10, test_subset=5
    )
    dm.prepare_data()
    dm.setup("fit")
    assert dm.train_data[0].shape == (10, 3, 32, 32)
    assert torch.bincount(dm.train_data[1], minlength=10).tolist() == [1] * 10
    assert dm.test_data[1].unique().numel() == 5
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (4, 3, 32, 32) and y.dtype == torch.int64
    assert isinstance(dm.train_dataloader(), torch.utils.data.DataLoader)
    # Without a trainer (or outside training) batches are only normalised.
    xf, yf = dm.on_after_batch_transfer((x, y), 0)
    assert xf.dtype == torch.float32 and torch.equal(yf, y)
    torch.testing.assert_close(xf, normalize_images(x))
    assert len(dm.val_dataloader()) == 2 and len(dm.test_dataloader()) == 2


class _Probe(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(3 * 32 * 32, 10)
        self.seen: list[tuple[str, torch.dtype, tuple[int, ...]]] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.seen.append(("train", x.dtype, tuple(x.shape)))
        return torch.nn.functional.cross_entropy(self.layer(x.flatten(1)), y)

    def validation_step(self, batch, batch_idx):
        x, _ = batch
        self.seen.append(("val", x.dtype, tuple(x.shape)))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("device_resident", [False, True])
def test_trainer_fit_augments_only_training_batches(folder, env, monkeypatch, device_resident):
    calls = []

    def counting_augment(images, generator=None):
        calls.append(images.shape[0])
        return gpu_augment(images, generator)

    monkeypatch.setattr(cifar10, "gpu_augment", counting_augment)
    dm = CIFAR10DataModule(
        data_dir=str(folder),
        download=False,
        cache_dir=str(env / "cache"),
        batch_size=8,
        device_resident=device_resident,
    )
    model = _Probe()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(env),
    )
    trainer.fit(model, datamodule=dm)
    loader = trainer.train_dataloader
    assert isinstance(loader, DeviceBatchLoader if device_resident else torch.utils.data.DataLoader)
    train = [s for s in model.seen if s[0] == "train"]
    val = [s for s in model.seen if s[0] == "val"]
    assert len(train) == 2 * 4 and len(val) == 2 * 3  # 30 train / 8 -> 4 batches, 20 test / 8 -> 3 batches
    assert all(dtype == torch.float32 and shape[1:] == (3, 32, 32) for _, dtype, shape in model.seen)
    assert sum(calls) == 2 * 30  # every training sample augmented once per epoch, no validation sample
