"""The CIFAR-10 files on disk turned into uint8 tensors: tarball extraction and the decoded tensor cache.

Tarballs are extracted once into ``<cache>/extracted/``. JPEG folders are decoded once into a uint8 tensor cache
(``<cache>/cifar10-uint8-<key>.pt``), so later runs load in a fraction of a second. The cache folder is ``cache_dir``,
by default :func:`~quest_lightning.lightning.data.sources.default_cache_root`.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tarfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from quest_lightning.lightning.data.sources import (
    BATCHES_DIR,
    CIFAR10NotFoundError,
    default_cache_root,
    detect_layout,
    download_cifar10,
    explicit_source,
    find_cifar10,
    is_tarball,
    not_found_message,
)

__all__ = ["CIFAR10_CLASSES", "CIFAR10Tensors", "load_cifar10"]

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

_CACHE_VERSION = 1
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_DECODE_CHUNK = 1024


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


def load_cifar10(
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> CIFAR10Tensors:
    """Finds, extracts, decodes (once) and loads CIFAR-10 as uint8 tensors on the CPU.

    Where the data is looked for is described in :mod:`quest_lightning.lightning.data.sources`.

    Args:
        data_dir: a folder in ImageFolder layout, a ``.tar.gz`` of one, or a folder with ``cifar-10-batches-py``.
            When it (or ``$QUEST_CIFAR10``) holds nothing and ``download`` is true, torchvision downloads into it
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
    cache_root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    hit, looked = find_cifar10(data_dir, cache_root)
    if hit is None:
        explicit = explicit_source(data_dir)
        root = explicit[1] if explicit is not None and not is_tarball(explicit[1]) else cache_root / "download"
        if download:
            try:
                download_cifar10(root)
            except Exception as err:  # no network, DNS failure, HTTP error, checksum error ...
                status = f"download into {root} failed: {type(err).__name__}: {err}"
            else:
                hit = detect_layout(root)
                status = f"downloaded into {root}, but no {BATCHES_DIR} appeared there"
        else:
            status = "download=False, so torchvision was not asked to download it"
        if hit is None:
            raise CIFAR10NotFoundError(not_found_message(looked, status))
    kind, path = hit
    if kind == "tarball":
        extracted = _extract_tarball(path, cache_root)
        layout = detect_layout(extracted)
        if layout is None:
            raise CIFAR10NotFoundError(
                f"{path} was extracted to {extracted}, but it holds neither train/ and test/ class folders "
                f"nor {BATCHES_DIR}"
            )
        kind, path = layout
    if kind == "batches":
        return _load_batches(path)
    return _load_imagefolder(path, cache_root, use_cache=use_cache)
