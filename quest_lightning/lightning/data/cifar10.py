"""CIFAR-10 as a LightningDataModule that serves uint8 tensors and augments on the device.

The data is found in this order (the first hit wins):

1. ``data_dir``: a folder in ``ImageFolder`` layout (``train/<class>/*.jpg`` and ``test/<class>/*.jpg``),
   a ``.tar.gz`` of one, or a folder holding torchvision's ``cifar-10-batches-py``.
2. The environment variable ``QUEST_CIFAR10`` (same kinds of paths).
3. Well-known local spots relative to the working directory: ``data/cifar10-jpeg``, ``data/cifar10-jpeg.tar.gz``,
   ``data/cifar-10-batches-py``, ``../shared/data/cifar10-jpeg.tar.gz``, and an earlier download in the cache.
4. ``torchvision.datasets.CIFAR10(download=True)`` when ``download`` is true.

Tarballs are extracted once into the cache folder. JPEG folders are decoded once into a uint8 tensor cache
(``.pt``) keyed by the source path and its size/modification time, so later runs load in a fraction of a second.

Batches leave the dataloader as ``(uint8 images [B, 3, 32, 32], int64 labels [B])``. Augmentation (random crop with
4-pixel zero padding and horizontal flip, training only) and normalisation happen in
:meth:`CIFAR10DataModule.on_after_batch_transfer`, i.e. on the device that holds the batch.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import shutil
import tarfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR10DataModule",
    "CIFAR10NotFoundError",
    "CIFAR10Tensors",
    "DeviceBatchLoader",
    "balanced_subset_indices",
    "crop_flip",
    "find_cifar10",
    "gpu_augment",
    "load_cifar10",
    "normalize_images",
]

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
"""Class names in the standard CIFAR-10 index order (also alphabetical)."""

CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
"""Per-channel mean of the CIFAR-10 training images, on the [0, 1] scale."""

CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)
"""Per-channel standard deviation of the CIFAR-10 training images, on the [0, 1] scale."""

ENV_VAR = "QUEST_CIFAR10"
_CACHE_VERSION = 1
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_BATCHES_DIR = "cifar-10-batches-py"
_DECODE_CHUNK = 1024


class CIFAR10NotFoundError(FileNotFoundError):
    """CIFAR-10 was found nowhere and could not be downloaded. The message lists the places searched and remedies."""


@dataclass(frozen=True)
class CIFAR10Tensors:
    """The whole dataset as tensors.

    Attributes:
        train_images: uint8 tensor of shape ``[50000, 3, 32, 32]`` (fewer for small folders).
        train_labels: int64 tensor of shape ``[N_train]`` with indices into :data:`CIFAR10_CLASSES`.
        test_images: uint8 tensor of shape ``[10000, 3, 32, 32]``.
        test_labels: int64 tensor of shape ``[N_test]``.
        source: where the data came from (a path, for messages and logs).
    """

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    source: str


# --------------------------------------------------------------------------------------------------------------------
# Augmentation and normalisation (pure tensor functions, any device)
# --------------------------------------------------------------------------------------------------------------------


def crop_flip(images: Tensor, offsets: Tensor, flips: Tensor, padding: int = 4) -> Tensor:
    """Crops each image from its zero-padded version at the given offsets, mirroring it where ``flips`` is true.

    This is the deterministic core of :func:`gpu_augment`: one padding and one gather for the whole batch.
    Output pixel ``(c, i, j)`` of sample ``b`` is ``padded[b, c, oy + i, ox + j]``, or
    ``padded[b, c, oy + i, ox + W - 1 - j]`` when flipped, where ``padded`` has ``padding`` zeros on every side.

    Args:
        images: tensor of shape ``[B, C, H, W]`` (any dtype; uint8 for CIFAR batches).
        offsets: int64 tensor of shape ``[B, 2]`` holding ``(oy, ox)`` in ``[0, 2 * padding]``.
        flips: bool tensor of shape ``[B]``; true mirrors the sample horizontally.
        padding: zero padding on each side, in pixels.

    Returns:
        Tensor with the shape, dtype and device of ``images``.
    """
    if images.ndim != 4:
        raise ValueError(f"images must have shape [B, C, H, W], got {tuple(images.shape)}")
    b, c, h, w = images.shape
    device = images.device
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding)) if padding else images
    offsets = offsets.to(device=device, dtype=torch.long)
    flips = flips.to(device=device, dtype=torch.bool)
    ar_h = torch.arange(h, device=device)
    ar_w = torch.arange(w, device=device)
    rows = offsets[:, 0:1] + ar_h  # [B, H]
    cols = offsets[:, 1:2] + torch.where(flips[:, None], (w - 1) - ar_w, ar_w)  # [B, W]
    batch_idx = torch.arange(b, device=device)[:, None, None, None]
    chan_idx = torch.arange(c, device=device)[None, :, None, None]
    return padded[batch_idx, chan_idx, rows[:, None, :, None], cols[:, None, None, :]]


def gpu_augment(
    images: Tensor,
    generator: torch.Generator | None = None,
    padding: int = 4,
    flip: bool = True,
) -> Tensor:
    """Random crop with zero padding plus random horizontal flip, vectorised over the batch on its own device.

    Equivalent to torchvision's ``RandomCrop(32, padding=4)`` followed by ``RandomHorizontalFlip()`` per sample,
    but done as one gather so it runs on the GPU without a Python loop. Random numbers are drawn as
    ``offsets = randint(0, 2 * padding + 1, (B, 2))`` and then ``flips = randint(0, 2, (B,))``, both from
    ``generator`` (which must live on ``images.device``) or the device's default generator.

    Args:
        images: tensor of shape ``[B, C, H, W]``, usually uint8.
        generator: optional random generator on the same device as ``images``.
        padding: zero padding on each side before cropping, in pixels (0 disables the crop).
        flip: whether to flip half of the samples horizontally.

    Returns:
        Augmented tensor with the shape, dtype and device of ``images``.
    """
    b = images.shape[0]
    device = images.device
    offsets = torch.randint(0, 2 * padding + 1, (b, 2), generator=generator, device=device)
    if flip:
        flips = torch.randint(0, 2, (b,), generator=generator, device=device).bool()
    else:
        flips = torch.zeros(b, dtype=torch.bool, device=device)
    return crop_flip(images, offsets, flips, padding)


def normalize_images(
    images: Tensor,
    mean: Sequence[float] = CIFAR10_MEAN,
    std: Sequence[float] = CIFAR10_STD,
) -> Tensor:
    """Converts uint8 images to float32 on their device and normalises each channel.

    .. math::
        y_c = (x_c / 255 - \\mu_c) / \\sigma_c

    Args:
        images: uint8 tensor of shape ``[B, C, H, W]``.
        mean: per-channel mean on the [0, 1] scale.
        std: per-channel standard deviation on the [0, 1] scale.

    Returns:
        float32 tensor of the same shape.
    """
    m = torch.tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    return images.to(torch.float32).div_(255.0).sub_(m).div_(s)


def balanced_subset_indices(labels: Tensor, n: int, seed: int = 0) -> Tensor:
    """Picks ``n`` sample indices, as evenly spread over the classes as the data allows, deterministically.

    Samples are shuffled with ``seed``; each then gets its rank within its class, and the ``n`` samples with the
    lowest ranks are kept (class counts differ by at most one while every class has enough samples).

    Args:
        labels: int64 tensor of shape ``[N]``.
        n: number of indices to return; ``n >= N`` returns all indices.
        seed: seed of the shuffle.

    Returns:
        Sorted int64 tensor of ``min(n, N)`` unique indices.
    """
    if n < 0:
        raise ValueError(f"subset size must be >= 0, got {n}")
    total = labels.numel()
    if n >= total:
        return torch.arange(total)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(total, generator=gen)
    shuffled = labels.cpu()[perm]
    rank = torch.empty(total, dtype=torch.long)
    for cls in shuffled.unique():
        where = (shuffled == cls).nonzero(as_tuple=True)[0]
        rank[where] = torch.arange(where.numel())
    order = torch.argsort(rank * (int(shuffled.max()) + 1) + shuffled, stable=True)
    return perm[order[:n]].sort().values


# --------------------------------------------------------------------------------------------------------------------
# Finding, extracting and decoding
# --------------------------------------------------------------------------------------------------------------------


def _default_cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "quest_lightning" / "cifar10"


def _is_tarball(path: Path) -> bool:
    return path.name.endswith((".tar.gz", ".tgz", ".tar"))


def _is_imagefolder_root(path: Path) -> bool:
    return (path / "train").is_dir() and (path / "test").is_dir()


def _is_batches_dir(path: Path) -> bool:
    return (path / "data_batch_1").is_file() and (path / "test_batch").is_file()


def _detect_layout(path: Path) -> tuple[str, Path] | None:
    """Returns ``(kind, root)`` for a recognised CIFAR-10 source, with kind in ``imagefolder|batches|tarball``."""
    if path.is_file():
        return ("tarball", path) if _is_tarball(path) else None
    if not path.is_dir():
        return None
    if _is_imagefolder_root(path):
        return "imagefolder", path
    if _is_batches_dir(path):
        return "batches", path
    for child in (path / _BATCHES_DIR, path / "cifar10-jpeg"):
        if _is_batches_dir(child):
            return "batches", child
        if _is_imagefolder_root(child):
            return "imagefolder", child
    # A folder with a single subfolder in ImageFolder layout (e.g. an extracted tarball).
    subdirs = [p for p in path.iterdir() if p.is_dir()]
    if len(subdirs) == 1 and _is_imagefolder_root(subdirs[0]):
        return "imagefolder", subdirs[0]
    return None


def find_cifar10(
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[tuple[str, Path] | None, list[str]]:
    """Searches the places listed in the module docstring, in order, without downloading anything.

    Args:
        data_dir: explicit folder or tarball; searched first.
        cache_dir: cache root; a torchvision download made earlier into it is found too.

    Returns:
        ``(hit, looked)``: ``hit`` is ``(kind, path)`` with kind ``"imagefolder"``, ``"batches"`` or ``"tarball"``,
        or ``None``; ``looked`` describes every place searched, for error messages.
    """
    candidates: list[tuple[str, Path]] = []
    looked: list[str] = []
    if data_dir is not None:
        candidates.append(("data_dir", Path(data_dir).expanduser()))
    else:
        looked.append("data_dir: not given")
    env = os.environ.get(ENV_VAR)
    if env:
        candidates.append((f"${ENV_VAR}", Path(env).expanduser()))
    else:
        looked.append(f"${ENV_VAR}: not set")
    cwd = Path.cwd()
    for rel in (
        "data/cifar10-jpeg",
        "data/cifar10-jpeg.tar.gz",
        f"data/{_BATCHES_DIR}",
        "../shared/data/cifar10-jpeg.tar.gz",
    ):
        candidates.append(("well-known spot", cwd / rel))
    root = Path(cache_dir).expanduser() if cache_dir is not None else _default_cache_root()
    candidates.append(("earlier download", root / "download" / _BATCHES_DIR))

    for label, path in candidates:
        hit = _detect_layout(path)
        if hit is not None:
            return hit, looked
        if not path.exists():
            why = "does not exist"
        elif path.is_file():
            why = "is not a .tar.gz/.tgz/.tar archive"
        else:
            why = "has neither train/ and test/ class folders nor cifar-10-batches-py"
        looked.append(f"{label}: {path} ({why})")
    return None, looked


def _key(*parts: object) -> str:
    return hashlib.sha1("|".join(str(p) for p in parts).encode()).hexdigest()[:16]


def _stat_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def _folder_key(root: Path) -> str:
    """Fingerprint of an ImageFolder tree: its path and the mtimes of its split and class folders."""
    parts = [str(root.resolve())]
    for split in ("train", "test"):
        split_dir = root / split
        parts.append(f"{split}:{split_dir.stat().st_mtime_ns}")
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            parts.append(f"{class_dir.name}:{class_dir.stat().st_mtime_ns}")
    return _key(*parts)


def _safe_extract(tar_path: Path, dest: Path) -> None:
    with tarfile.open(tar_path, "r:*") as tf:
        if hasattr(tarfile, "data_filter"):
            tf.extractall(dest, filter="data")
            return
        dest_resolved = dest.resolve()
        members = []
        for m in tf.getmembers():  # pragma: no cover - only on Pythons without extraction filters
            target = (dest / m.name).resolve()
            if not (m.isfile() or m.isdir()) or not target.is_relative_to(dest_resolved):
                raise RuntimeError(f"refusing to extract unsafe member {m.name!r} from {tar_path}")
            members.append(m)
        tf.extractall(dest, members=members)  # noqa: S202 - members were checked above


def _extract_tarball(tar_path: Path, cache_root: Path) -> Path:
    """Extracts ``tar_path`` once into ``cache_root/extracted/<name>-<key>`` and returns that folder."""
    stem = tar_path.name.split(".")[0]
    dest = cache_root / "extracted" / f"{stem}-{_key(_stat_key(tar_path))}"
    done = dest / ".complete"
    if done.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"Extracting {tar_path} to {dest} (once) ...", flush=True)
    _safe_extract(tar_path, tmp)
    (tmp / ".complete").touch()
    try:
        os.replace(tmp, dest)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        if not done.exists():
            raise
    return dest


def _list_split(split_dir: Path) -> tuple[list[Path], list[int]]:
    class_dirs = {p.name: p for p in split_dir.iterdir() if p.is_dir()}
    unexpected = sorted(set(class_dirs) - set(CIFAR10_CLASSES))
    missing = [c for c in CIFAR10_CLASSES if c not in class_dirs]
    if unexpected or missing:
        raise ValueError(
            f"{split_dir} must hold one folder per CIFAR-10 class {list(CIFAR10_CLASSES)}; "
            f"unexpected: {unexpected}, missing: {missing}"
        )
    files: list[Path] = []
    labels: list[int] = []
    for idx, name in enumerate(CIFAR10_CLASSES):
        found = sorted(p for p in class_dirs[name].iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        files.extend(found)
        labels.extend([idx] * len(found))
    return files, labels


def _decode_split(files: Sequence[Path], description: str = "Decoding") -> Tensor:
    """Decodes image files into a uint8 tensor ``[N, 3, 32, 32]``, with a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from torchvision.io import ImageReadMode, decode_image

    out = torch.empty((len(files), 3, 32, 32), dtype=torch.uint8)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(description, total=len(files))
        for start in range(0, len(files), _DECODE_CHUNK):
            chunk = files[start : start + _DECODE_CHUNK]
            raw = []
            for path in chunk:
                with open(path, "rb") as fh:
                    raw.append(torch.frombuffer(bytearray(fh.read()), dtype=torch.uint8))
            for i, (path, data) in enumerate(zip(chunk, raw, strict=True)):
                img = decode_image(data, mode=ImageReadMode.RGB)
                if img.shape != (3, 32, 32):
                    raise ValueError(f"{path} decodes to shape {tuple(img.shape)}, expected (3, 32, 32)")
                out[start + i] = img
            progress.update(task, advance=len(chunk))
    return out


def _load_batches(root: Path) -> CIFAR10Tensors:
    """Reads torchvision's ``cifar-10-batches-py`` pickles (the official python version of CIFAR-10)."""

    def read(names: Sequence[str]) -> tuple[Tensor, Tensor]:
        xs, ys = [], []
        for name in names:
            with open(root / name, "rb") as fh:
                entry = pickle.load(fh, encoding="latin1")
            xs.append(torch.as_tensor(entry["data"], dtype=torch.uint8).reshape(-1, 3, 32, 32))
            ys.append(torch.as_tensor(entry.get("labels", entry.get("fine_labels")), dtype=torch.int64))
        return torch.cat(xs), torch.cat(ys)

    train_x, train_y = read([f"data_batch_{i}" for i in range(1, 6)])
    test_x, test_y = read(["test_batch"])
    return CIFAR10Tensors(train_x, train_y, test_x, test_y, str(root))


def _load_imagefolder(root: Path, cache_root: Path, use_cache: bool = True) -> CIFAR10Tensors:
    cache_file = cache_root / f"cifar10-uint8-{_folder_key(root)}.pt"
    if use_cache and cache_file.is_file():
        blob = torch.load(cache_file, map_location="cpu", weights_only=True)
        if blob.get("version") == _CACHE_VERSION:
            return CIFAR10Tensors(
                blob["train_images"], blob["train_labels"], blob["test_images"], blob["test_labels"], str(root)
            )
    splits = {}
    for split in ("train", "test"):
        files, labels = _list_split(root / split)
        images = _decode_split(files, f"Decoding CIFAR-10 {split} ({len(files)} images)")
        splits[split] = (images, torch.tensor(labels, dtype=torch.int64))
    data = CIFAR10Tensors(*splits["train"], *splits["test"], str(root))
    if use_cache:
        blob = {
            "version": _CACHE_VERSION,
            "source": str(root.resolve()),
            "classes": list(CIFAR10_CLASSES),
            "train_images": data.train_images,
            "train_labels": data.train_labels,
            "test_images": data.test_images,
            "test_labels": data.test_labels,
        }
        try:
            cache_root.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(f"{cache_file.name}.tmp-{os.getpid()}")
            torch.save(blob, tmp)
            os.replace(tmp, cache_file)
        except OSError as err:
            warnings.warn(f"could not write the decoded CIFAR-10 cache {cache_file}: {err}", stacklevel=2)
    return data


def _download(root: Path) -> None:
    import torchvision

    torchvision.datasets.CIFAR10(str(root), train=True, download=True)
    torchvision.datasets.CIFAR10(str(root), train=False, download=True)


def load_cifar10(
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> CIFAR10Tensors:
    """Finds, extracts, decodes (once) and loads CIFAR-10 as uint8 tensors on the CPU.

    Args:
        data_dir: a folder in ImageFolder layout, a ``.tar.gz`` of one, or a folder with ``cifar-10-batches-py``.
            When nothing is found anywhere and ``download`` is true, torchvision downloads into this folder
            (or into ``<cache_dir>/download`` when it is not given or is a tarball).
        download: whether torchvision may download CIFAR-10 when it is found nowhere.
        cache_dir: folder for extracted tarballs and decoded ``.pt`` caches; defaults to
            ``$XDG_CACHE_HOME/quest_lightning/cifar10`` (``~/.cache/quest_lightning/cifar10``).
        use_cache: read and write the decoded ``.pt`` cache.

    Returns:
        The train and test splits as tensors.

    Raises:
        CIFAR10NotFoundError: nothing was found and download was disabled or failed. The message lists every place
            searched and how to provide the data.
        ValueError: an ImageFolder tree does not have exactly the ten CIFAR-10 class folders.
    """
    cache_root = Path(cache_dir).expanduser() if cache_dir is not None else _default_cache_root()
    hit, looked = find_cifar10(data_dir, cache_root)
    if hit is None:
        explicit = Path(data_dir).expanduser() if data_dir is not None else None
        root = explicit if explicit is not None and not _is_tarball(explicit) else cache_root / "download"
        if download:
            try:
                _download(root)
            except Exception as err:  # no network, DNS failure, HTTP error, checksum error ...
                status = f"download into {root} failed: {type(err).__name__}: {err}"
            else:
                hit = _detect_layout(root)
                status = f"downloaded into {root}, but no {_BATCHES_DIR} appeared there"
        else:
            status = "download=False, so torchvision was not asked to download it"
        if hit is None:
            raise CIFAR10NotFoundError(_not_found_message(looked, status))
    kind, path = hit
    if kind == "tarball":
        extracted = _extract_tarball(path, cache_root)
        layout = _detect_layout(extracted)
        if layout is None:
            raise CIFAR10NotFoundError(
                f"{path} was extracted to {extracted}, but it holds neither train/ and test/ class folders "
                f"nor {_BATCHES_DIR}"
            )
        kind, path = layout
    if kind == "batches":
        return _load_batches(path)
    return _load_imagefolder(path, cache_root, use_cache=use_cache)


def _not_found_message(looked: Sequence[str], status: str) -> str:
    lines = ["CIFAR-10 was not found. Looked in:"]
    lines += [f"  - {entry}" for entry in looked]
    lines.append(f"Download: {status}.")
    lines.append("Provide it in one of these ways:")
    lines.append(
        "  - pass data_dir=PATH (--data.data_dir PATH): a folder with train/ and test/ class folders "
        f"(ImageFolder layout), a .tar.gz of one, or a folder holding {_BATCHES_DIR}"
    )
    lines.append(f"  - set the environment variable {ENV_VAR}=PATH")
    lines.append("  - put it at ./data/cifar10-jpeg, ./data/cifar10-jpeg.tar.gz or ./data/cifar-10-batches-py")
    lines.append("  - allow the download (download=True) on a machine with internet access")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------------
# Device-resident batches and the DataModule
# --------------------------------------------------------------------------------------------------------------------


class DeviceBatchLoader:
    """Iterates over tensors that already live on the device, by indexing with a (sharded) permutation.

    It replaces a DataLoader when the whole dataset fits on the GPU: no workers, no collation, no host-to-device
    copies. Under DDP each rank takes every ``world_size``-th index of a permutation shared by all ranks (the same
    seed and epoch), padded by wrapping around so that every rank yields the same number of batches, like
    :class:`~torch.utils.data.DistributedSampler`.

    Args:
        images: tensor ``[N, ...]`` on any device.
        labels: tensor ``[N]`` on the same device.
        batch_size: samples per batch.
        shuffle: draw a new permutation every epoch (seeded by ``seed + epoch``).
        drop_last: drop this rank's last incomplete batch.
        rank: this process's global rank.
        world_size: number of processes.
        seed: base seed of the permutations.
        epoch_fn: returns the current epoch when iteration starts (e.g. ``lambda: trainer.current_epoch``), so that
            every rank, and a resumed run, draws the same permutation for the same epoch. Without it the loader
            counts its own epochs (see :meth:`set_epoch`).
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        epoch_fn: Callable[[], int] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.epoch_fn = epoch_fn
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch that seeds the next permutation (like ``DistributedSampler.set_epoch``)."""
        self.epoch = epoch

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch."""
        return math.ceil(self.labels.numel() / self.world_size)

    def indices(self) -> Tensor:
        """This rank's sample indices for the current epoch, on the CPU."""
        n = self.labels.numel()
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(n)
        total = self.num_samples * self.world_size
        if total > n:
            order = torch.cat([order, order[: total - n]]) if n else order
        return order[self.rank : total : self.world_size]

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if self.epoch_fn is not None:
            self.epoch = self.epoch_fn()
        idx = self.indices().to(self.images.device)
        if self.shuffle and self.epoch_fn is None:
            self.epoch += 1  # a fresh order next time even if nobody calls set_epoch
        for b in range(len(self)):
            sel = idx[b * self.batch_size : (b + 1) * self.batch_size]
            yield self.images[sel], self.labels[sel]


class CIFAR10DataModule(L.LightningDataModule):
    """CIFAR-10 with uint8 batches, augmented and normalised on the device after transfer.

    Validation uses the test split (the convention of the papers this library reproduces); ``test`` is the test split
    too. See the module docstring for where the data is searched and how it is cached.

    Args:
        data_dir: folder (ImageFolder layout or with ``cifar-10-batches-py``) or ``.tar.gz``; ``None`` searches
            ``$QUEST_CIFAR10`` and the well-known spots, then downloads.
        download: allow torchvision to download CIFAR-10 when it is found nowhere.
        batch_size: training batch size (per process).
        eval_batch_size: validation/test batch size; defaults to ``batch_size``.
        num_workers: DataLoader workers on the host path (the device-resident path never uses workers).
        train_subset: keep only this many training samples (class-balanced, deterministic in ``seed``).
        test_subset: keep only this many test samples (used for validation and test).
        augment: random crop (4-pixel zero padding) and horizontal flip for training batches.
        seed: seed of the subsets and of the shuffling.
        cache_dir: folder for extracted tarballs and decoded caches (default ``~/.cache/quest_lightning/cifar10``).
        device_resident: keep the uint8 dataset on the training device and batch by indexing; ``"auto"`` does it
            when the trainer runs on CUDA.
        drop_last: drop the last incomplete training batch.
        pin_memory: pin host batches when training on CUDA through a DataLoader.
    """

    classes: tuple[str, ...] = CIFAR10_CLASSES
    num_classes: int = 10
    dims: tuple[int, int, int] = (3, 32, 32)

    def __init__(
        self,
        data_dir: str | None = None,
        download: bool = True,
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        train_subset: int | None = None,
        test_subset: int | None = None,
        augment: bool = True,
        seed: int = 0,
        cache_dir: str | None = None,
        device_resident: bool | Literal["auto"] = "auto",
        drop_last: bool = False,
        pin_memory: bool = True,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if eval_batch_size is not None and eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be >= 1 or None, got {eval_batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        for name, value in (("train_subset", train_subset), ("test_subset", test_subset)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        if device_resident not in (True, False, "auto"):
            raise ValueError(f"device_resident must be True, False or 'auto', got {device_resident!r}")
        self.save_hyperparameters()
        self.data_dir = data_dir
        self.download = download
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.train_subset = train_subset
        self.test_subset = test_subset
        self.augment = augment
        self.seed = seed
        self.cache_dir = cache_dir
        self.device_resident = device_resident
        self.drop_last = drop_last
        self.pin_memory = pin_memory
        self.source: str | None = None
        self.train_data: tuple[Tensor, Tensor] | None = None
        self.test_data: tuple[Tensor, Tensor] | None = None
        self._prepared: CIFAR10Tensors | None = None
        self._resident = False

    def _load(self) -> CIFAR10Tensors:
        return load_cifar10(self.data_dir, download=self.download, cache_dir=self.cache_dir)

    def prepare_data(self) -> None:
        """Finds, downloads, extracts and decodes once (called on one process per node)."""
        self._prepared = self._load()

    def _device(self) -> torch.device:
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def setup(self, stage: str | None = None) -> None:
        """Loads the tensors (from the cache), applies the subsets and, if resident, moves them to the device."""
        if self.train_data is not None:
            return
        data = self._prepared if self._prepared is not None else self._load()
        self._prepared = None
        train = (data.train_images, data.train_labels)
        test = (data.test_images, data.test_labels)
        if self.train_subset is not None:
            keep = balanced_subset_indices(train[1], self.train_subset, self.seed)
            train = (train[0][keep], train[1][keep])
        if self.test_subset is not None:
            keep = balanced_subset_indices(test[1], self.test_subset, self.seed)
            test = (test[0][keep], test[1][keep])
        device = self._device()
        self._resident = self.device_resident is True or (self.device_resident == "auto" and device.type == "cuda")
        if self._resident:
            train = (train[0].to(device), train[1].to(device))
            test = (test[0].to(device), test[1].to(device))
        self.source = data.source
        self.train_data, self.test_data = train, test

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def _loader(self, data: tuple[Tensor, Tensor] | None, train: bool) -> DataLoader | DeviceBatchLoader:
        if data is None:
            raise RuntimeError("call setup() before asking for dataloaders")
        batch_size = self.batch_size if train else self.eval_batch_size
        drop_last = self.drop_last and train
        if self._resident:
            rank, world = self._rank_world()
            trainer = self.trainer
            epoch_fn = (lambda: trainer.current_epoch) if trainer is not None else None
            return DeviceBatchLoader(*data, batch_size, train, drop_last, rank, world, self.seed, epoch_fn)
        pin = self.pin_memory and self._device().type == "cuda"
        return DataLoader(
            TensorDataset(*data),
            batch_size=batch_size,
            shuffle=train,
            drop_last=drop_last,
            num_workers=self.num_workers,
            pin_memory=pin,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed) if train else None,
        )

    def train_dataloader(self) -> DataLoader | DeviceBatchLoader:
        """Shuffled training batches of ``(uint8 images, int64 labels)``."""
        return self._loader(self.train_data, train=True)

    def val_dataloader(self) -> DataLoader | DeviceBatchLoader:
        """Test-split batches, used for validation."""
        return self._loader(self.test_data, train=False)

    def test_dataloader(self) -> DataLoader | DeviceBatchLoader:
        """Test-split batches."""
        return self._loader(self.test_data, train=False)

    def on_after_batch_transfer(self, batch: tuple[Tensor, Tensor], dataloader_idx: int) -> tuple[Tensor, Tensor]:
        """Augments (training only) and normalises a batch on the device it was moved to.

        Args:
            batch: ``(uint8 images [B, 3, 32, 32], labels [B])``.
            dataloader_idx: index of the dataloader (unused).

        Returns:
            ``(float32 normalised images, labels)``.
        """
        images, labels = batch
        if images.dtype != torch.uint8:
            return images, labels
        trainer = self.trainer
        if self.augment and trainer is not None and trainer.training:
            images = gpu_augment(images)
        return normalize_images(images), labels
