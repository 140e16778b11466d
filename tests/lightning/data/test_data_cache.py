"""Extraction, decoding and the decoded cache: reuse, refresh, clean failures, and errors that name the file."""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from tiny_cifar import N_TRAIN, check_tensors, class_value, labels_from_pixels, write_image

from quest_lightning.lightning.data import CIFAR10_CLASSES, CIFAR10DataError, CIFAR10NotFoundError, load_cifar10
from quest_lightning.lightning.data import cache as data_cache


def _fail(*args, **kwargs):
    raise AssertionError("must not run again")


def _leftovers(cache):
    """Everything in the cache that is not a finished extraction or a decoded cache file."""
    extracted = cache / "extracted"
    names = [p.name for p in extracted.iterdir()] if extracted.is_dir() else []
    names += [p.name for p in cache.glob("*.tmp-*")] if cache.is_dir() else []
    return [n for n in names if not (extracted / n / ".complete").exists()]


def test_load_from_folder_maps_labels_by_class_name(folder, env):
    data = load_cifar10(folder, download=False, cache_dir=env / "cache")
    check_tensors(data)
    assert list(CIFAR10_CLASSES) == sorted(CIFAR10_CLASSES)


def test_load_from_tarball_extracts_once(tarball, env, monkeypatch):
    cache = env / "cache"
    first = load_cifar10(tarball, download=False, cache_dir=cache)
    check_tensors(first)
    assert len(list((cache / "extracted").iterdir())) == 1

    monkeypatch.setattr(data_cache.tarfile, "open", _fail)
    monkeypatch.setattr(data_cache, "_decode_split", _fail)
    second = load_cifar10(tarball, download=False, cache_dir=cache)
    assert torch.equal(first.train_images, second.train_images)
    assert torch.equal(first.test_labels, second.test_labels)


def test_decoded_cache_is_reused_and_refreshed(folder, env, monkeypatch):
    cache = env / "cache"
    first = load_cifar10(folder, download=False, cache_dir=cache)
    assert len(list(cache.glob("cifar10-uint8-*.pt"))) == 1

    monkeypatch.setattr(data_cache, "_decode_split", _fail)
    second = load_cifar10(folder, download=False, cache_dir=cache)
    assert torch.equal(first.train_images, second.train_images)
    assert torch.equal(first.train_labels, second.train_labels)

    monkeypatch.undo()
    monkeypatch.chdir(env / "work")
    write_image(folder / "train" / "cat" / "9999.jpg", 3)
    third = load_cifar10(folder, download=False, cache_dir=cache)
    assert third.train_images.shape[0] == 10 * N_TRAIN + 1
    assert torch.bincount(third.train_labels)[3] == N_TRAIN + 1


def test_a_jpeg_edited_in_place_is_decoded_again(folder, env):
    cache = env / "cache"
    before = load_cifar10(folder, download=False, cache_dir=cache)
    target = folder / "train" / "dog" / "0001.jpg"
    class_mtimes = {p: p.stat().st_mtime_ns for p in (folder / "train").iterdir()}
    st = target.stat()
    write_image(target, 5, blue=255 - int(before.train_images[16, 2, 0, 0]))  # same name, new pixels
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert {p: p.stat().st_mtime_ns for p in (folder / "train").iterdir()} == class_mtimes  # folders unchanged
    after = load_cifar10(folder, download=False, cache_dir=cache)
    dog = CIFAR10_CLASSES.index("dog")
    row = dog * N_TRAIN + 1  # files are sorted by class, then name
    assert int(after.train_labels[row]) == dog
    assert not torch.equal(after.train_images[row], before.train_images[row])
    assert torch.equal(torch.cat([after.train_images[:row], after.train_images[row + 1 :]]),
                       torch.cat([before.train_images[:row], before.train_images[row + 1 :]]))  # fmt: skip
    assert len(list(cache.glob("cifar10-uint8-*.pt"))) == 2


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

    (root / "data_batch_3").write_bytes(pickle.dumps(batches["data_batch_3"])[:1000])  # truncated
    with pytest.raises(CIFAR10DataError, match=r"data_batch_3 is not a readable CIFAR-10 batch .*download it again"):
        load_cifar10(env / "data", download=False, cache_dir=env / "cache")


# --------------------------------------------------------------------------------------------------------------------
# Broken data: every error names the file or folder, what is wrong and the fix
# --------------------------------------------------------------------------------------------------------------------


def test_wrong_class_folders_are_rejected(folder, env):
    (folder / "train" / "cat").rename(folder / "train" / "kitten")
    with pytest.raises(ValueError, match="kitten") as info:
        load_cifar10(folder, download=False, cache_dir=env / "cache")
    assert isinstance(info.value, CIFAR10DataError)
    assert str(folder / "train") in str(info.value) and "missing: ['cat']" in str(info.value)


def test_empty_class_folder_is_named(folder, env):
    for path in (folder / "test" / "ship").iterdir():
        path.unlink()
    (folder / "test" / "ship" / "notes.txt").write_text("not an image")
    with pytest.raises(CIFAR10DataError) as info:
        load_cifar10(folder, download=False, cache_dir=env / "cache")
    msg = str(info.value)
    assert f"{folder / 'test' / 'ship'} holds no image" in msg and "notes.txt" in msg and "put them there" in msg


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"", "is empty (0 bytes)"),
        ("half", "cannot be decoded as an image (Image is incomplete or truncated)"),
        (b"GIF? no, plain text", "cannot be decoded as an image (Unsupported image file"),
        ("big", "decodes to shape (3, 40, 32), expected (3, 32, 32)"),
    ],
    ids=["empty", "truncated", "not-an-image", "wrong-size"],
)
def test_bad_image_file_is_named(folder, env, content, what):
    bad = folder / "train" / "frog" / "0002.jpg"
    if content == "half":
        content = bad.read_bytes()[: bad.stat().st_size // 2]
    elif content == "big":
        from PIL import Image

        Image.fromarray(np.zeros((40, 32, 3), dtype=np.uint8)).save(bad, format="JPEG")
        content = bad.read_bytes()
    bad.write_bytes(content)
    with pytest.raises(CIFAR10DataError) as info:
        load_cifar10(folder, download=False, cache_dir=env / "cache")
    msg = str(info.value)
    assert msg.startswith(f"{bad} {what}")
    assert "Replace it" in msg and ".cpp" not in msg
    assert not list((env / "cache").glob("*.pt"))  # nothing half-decoded was cached


@pytest.mark.parametrize("damage", ["truncated", "not-an-archive"])
def test_broken_tarball_is_named_and_leaves_nothing_behind(tarball, env, damage):
    data = tarball.read_bytes()
    tarball.write_bytes(data[: len(data) * 2 // 3] if damage == "truncated" else b"\x00" * 4096)
    cache = env / "cache"
    with pytest.raises(CIFAR10DataError) as info:
        load_cifar10(tarball, download=False, cache_dir=cache)
    msg = str(info.value)
    assert msg.startswith(f"{tarball} could not be extracted (")
    assert f"tar -tzf {tarball}" in msg and "copy or download it again" in msg
    assert _leftovers(cache) == []
    assert list((cache / "extracted").iterdir()) == []


def test_leftovers_of_a_killed_extraction_are_removed(tarball, env):
    cache = env / "cache"
    load_cifar10(tarball, download=False, cache_dir=cache)
    (dest,) = (cache / "extracted").iterdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    partial = dest.with_name(f"{dest.name}.tmp-{socket.gethostname()}-{int(dead.stdout)}")
    dest.rename(partial)  # what a SIGKILL during extraction leaves (without the final rename)
    (partial / ".complete").unlink()
    check_tensors(load_cifar10(tarball, download=False, cache_dir=cache))
    assert [p.name for p in (cache / "extracted").iterdir()] == [dest.name]


def test_tarball_without_the_layout_says_how_to_pack_it(env):
    import tarfile

    stray = env / "stray"
    stray.mkdir()
    (stray / "readme.txt").write_text("no images here")
    path = env / "cifar10-jpeg.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        tf.add(stray, arcname="stray")
    with pytest.raises(CIFAR10NotFoundError, match=r"holds neither train/ and test/ .* Pack the dataset"):
        load_cifar10(path, download=False, cache_dir=env / "cache")


def test_unreadable_decoded_cache_is_rebuilt(folder, env):
    cache = env / "cache"
    first = load_cifar10(folder, download=False, cache_dir=cache)
    (cache_file,) = cache.glob("cifar10-uint8-*.pt")
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    with pytest.warns(UserWarning, match="ignoring the unreadable decoded cache"):
        second = load_cifar10(folder, download=False, cache_dir=cache)
    assert torch.equal(first.train_images, second.train_images)
    assert torch.equal(second.train_labels, labels_from_pixels(second.train_images))
    assert torch.load(cache_file, weights_only=True)["train_images"].shape == first.train_images.shape
    assert class_value(0) == 10  # the helper's encoding that labels_from_pixels inverts
