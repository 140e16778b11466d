"""The CIFAR-10 files on disk turned into uint8 tensors: tarball extraction and the decoded tensor cache.

Tarballs are extracted once into ``<cache>/extracted/``. JPEG folders are decoded once into a uint8 tensor cache
(``<cache>/cifar10-uint8-<key>.pt``), so later runs load in a fraction of a second. The cache folder is ``cache_dir``,
by default :func:`~quest_lightning.lightning.data.sources.default_cache_root`.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pickle
import re
import shutil
import socket
import tarfile
import warnings
import zlib
from collections.abc import Callable, Sequence
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

__all__ = ["CIFAR10_CLASSES", "CIFAR10DataError", "CIFAR10Tensors", "load_cifar10"]

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
_PROGRESS_EVERY = 1024


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


class CIFAR10DataError(ValueError):
    """CIFAR-10 was found but cannot be used. The message names the file or folder, what is wrong, and the fix."""


def _key(*parts: object) -> str:
    return hashlib.sha1("|".join(str(p) for p in parts).encode()).hexdigest()[:16]


def _tmp_name(path: Path) -> Path:
    """A sibling of ``path`` private to this process (host and pid), for writing before an atomic rename."""
    return path.with_name(f"{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")


def _remove_stale_tmp(path: Path) -> None:
    """Removes temporary siblings of ``path`` left by killed processes of this host (those whose pid is gone)."""
    if os.name != "posix" or not path.parent.is_dir():
        return
    prefix = f"{path.name}.tmp-{socket.gethostname()}-"
    for tmp in path.parent.glob(f"{glob.escape(prefix)}*"):
        pid = tmp.name[len(prefix) :]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
        except OSError:  # alive, run by another user
            continue


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
                raise tarfile.TarError(f"refusing to extract unsafe member {m.name!r}")
            members.append(m)
        tf.extractall(dest, members=members)  # noqa: S202 - members were checked above


def _extract_tarball(tar_path: Path, cache_root: Path) -> Path:
    """Extracts ``tar_path`` once into ``cache_root/extracted/<name>-<key>`` and returns that folder.

    The key covers the tarball's path, size and modification time. Extraction goes to a temporary sibling that is
    renamed only when complete; a failure removes it, and leftovers of killed processes are removed on the next run.

    Raises:
        CIFAR10DataError: the tarball is corrupt, truncated, not an archive, or could not be written out.
    """
    st = tar_path.stat()
    stem = tar_path.name.split(".")[0]
    dest = cache_root / "extracted" / f"{stem}-{_key(f'{tar_path.resolve()}:{st.st_size}:{st.st_mtime_ns}')}"
    done = dest / ".complete"
    if done.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(dest)
    tmp = _tmp_name(dest)
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"Extracting {tar_path} to {dest} (once) ...", flush=True)
    try:
        _safe_extract(tar_path, tmp)
        (tmp / ".complete").touch()
        if dest.exists() and not done.exists():  # an incomplete folder from an older version
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if done.exists():  # another process finished first
            return dest
        raise CIFAR10DataError(
            f"{tar_path} could not be extracted ({type(err).__name__}: {err}): it is corrupt, truncated or not a tar "
            f"archive, or {dest.parent} is not writable or full. Check it with `tar -tzf {tar_path}` and copy or "
            "download it again; nothing was left in the cache."
        ) from err
    return dest


def _list_split(split_dir: Path) -> tuple[list[Path], list[int], list[str]]:
    """The image files of one split in class order, with their labels and ``"class/name:size:mtime_ns"`` stamps.

    One ``os.scandir`` pass per class folder (one ``stat`` per file), which keeps the 60,000-file listing fast.

    Raises:
        CIFAR10DataError: the class folders are not exactly the ten CIFAR-10 classes, or one holds no image.
    """
    class_dirs = {p.name: p for p in split_dir.iterdir() if p.is_dir()}
    unexpected = sorted(set(class_dirs) - set(CIFAR10_CLASSES))
    missing = [c for c in CIFAR10_CLASSES if c not in class_dirs]
    if unexpected or missing:
        raise CIFAR10DataError(
            f"{split_dir} must hold one folder per CIFAR-10 class {list(CIFAR10_CLASSES)}; "
            f"unexpected: {unexpected}, missing: {missing}. Rename or add the class folders "
            f"({split_dir}/<class>/*.jpg)."
        )
    files: list[Path] = []
    labels: list[int] = []
    stamps: list[str] = []
    for idx, name in enumerate(CIFAR10_CLASSES):
        with os.scandir(class_dirs[name]) as it:
            entries = sorted(it, key=lambda e: e.name)
        images = [e for e in entries if e.name.lower().endswith(_IMAGE_SUFFIXES) and e.is_file()]
        if not images:
            others = f"; it holds {len(entries)} other entries, e.g. {entries[0].name}" if entries else ""
            raise CIFAR10DataError(
                f"{class_dirs[name]} holds no image ({', '.join(_IMAGE_SUFFIXES)}){others}. Every class needs "
                "images: put them there, or copy or extract the dataset again."
            )
        for entry in images:
            st = entry.stat()
            stamps.append(f"{name}/{entry.name}:{st.st_size}:{st.st_mtime_ns}")
        files.extend(Path(e.path) for e in images)
        labels.extend([idx] * len(images))
    return files, labels, stamps


def _decode_error(path: Path, what: str) -> CIFAR10DataError:
    return CIFAR10DataError(
        f"{path} {what}. Replace it with a 32x32 RGB image (or delete it) and run again; the decoded cache is "
        "rebuilt by itself. If it came from a tarball, the tarball is damaged: copy or download it again."
    )


def _decode_one(path: Path, decode: Callable[[Tensor], Tensor]) -> Tensor:
    data = path.read_bytes()
    if not data:
        raise _decode_error(path, "is empty (0 bytes)")
    try:
        img = decode(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    except RuntimeError as err:  # torchvision's message starts with its C++ source location
        reason = re.sub(r"^\w+, \S+:\d+, ", "", str(err))
        raise _decode_error(path, f"cannot be decoded as an image ({reason})") from err
    if img.shape != (3, 32, 32):
        raise _decode_error(path, f"decodes to shape {tuple(img.shape)}, expected (3, 32, 32)")
    return img


def _decode_split(files: Sequence[Path], description: str = "Decoding") -> Tensor:
    """Decodes image files into a uint8 tensor ``[N, 3, 32, 32]``, with a progress bar.

    Raises:
        CIFAR10DataError: a file is empty, truncated, not an image, or not 32x32 (the message names it).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from torchvision.io import ImageReadMode, decode_image

    def decode(data: Tensor) -> Tensor:
        return decode_image(data, mode=ImageReadMode.RGB)

    out = torch.empty((len(files), 3, 32, 32), dtype=torch.uint8)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(description, total=len(files))
        for i, path in enumerate(files):
            out[i] = _decode_one(path, decode)
            if i % _PROGRESS_EVERY == 0:
                progress.update(task, completed=i + 1)
        progress.update(task, completed=len(files))
    return out


def _load_batches(root: Path) -> CIFAR10Tensors:
    """Reads torchvision's ``cifar-10-batches-py`` pickles (the official python version of CIFAR-10).

    Raises:
        CIFAR10DataError: a batch file is missing, truncated or not a CIFAR-10 batch (the message names it).
    """

    def read(names: Sequence[str]) -> tuple[Tensor, Tensor]:
        xs, ys = [], []
        for name in names:
            try:
                with open(root / name, "rb") as fh:
                    entry = pickle.load(fh, encoding="latin1")
                xs.append(torch.as_tensor(entry["data"], dtype=torch.uint8).reshape(-1, 3, 32, 32))
                ys.append(torch.as_tensor(entry.get("labels", entry.get("fine_labels")), dtype=torch.int64))
            except (
                OSError,
                EOFError,
                MemoryError,
                pickle.UnpicklingError,
                KeyError,
                TypeError,
                ValueError,
                RuntimeError,
            ) as err:
                raise CIFAR10DataError(
                    f"{root / name} is not a readable CIFAR-10 batch ({type(err).__name__}: {err}). Delete {root} "
                    "and download it again (download=True), or point data_dir at another copy."
                ) from err
        return torch.cat(xs), torch.cat(ys)

    train_x, train_y = read([f"data_batch_{i}" for i in range(1, 6)])
    test_x, test_y = read(["test_batch"])
    return CIFAR10Tensors(train_x, train_y, test_x, test_y, str(root))


def _read_cache(cache_file: Path, source: str) -> CIFAR10Tensors | None:
    try:
        blob = torch.load(cache_file, map_location="cpu", weights_only=True)
        keys = ("train_images", "train_labels", "test_images", "test_labels")
        if blob.get("version") == _CACHE_VERSION:
            return CIFAR10Tensors(*(blob[k] for k in keys), source)
    except Exception as err:  # a truncated or foreign file: decode again and overwrite it
        warnings.warn(f"ignoring the unreadable decoded cache {cache_file} ({type(err).__name__}: {err})", stacklevel=3)
    return None


def _write_cache(cache_file: Path, data: CIFAR10Tensors) -> None:
    blob = {
        "version": _CACHE_VERSION,
        "source": data.source,
        "classes": list(CIFAR10_CLASSES),
        "train_images": data.train_images,
        "train_labels": data.train_labels,
        "test_images": data.test_images,
        "test_labels": data.test_labels,
    }
    tmp = _tmp_name(cache_file)
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_tmp(cache_file)
        torch.save(blob, tmp)
        os.replace(tmp, cache_file)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        warnings.warn(f"could not write the decoded CIFAR-10 cache {cache_file}: {err}", stacklevel=3)


def _load_imagefolder(root: Path, cache_root: Path, use_cache: bool = True) -> CIFAR10Tensors:
    listed = {split: _list_split(root / split) for split in ("train", "test")}
    # The key covers every image's path, size and modification time: an image edited in place is decoded again.
    key = _key(root.resolve(), _CACHE_VERSION, *(f"{split}/{s}" for split, (_, _, st) in listed.items() for s in st))
    cache_file = cache_root / f"cifar10-uint8-{key}.pt"
    if use_cache and cache_file.is_file() and (data := _read_cache(cache_file, str(root))) is not None:
        return data
    splits = {}
    for split, (files, labels, _) in listed.items():
        images = _decode_split(files, f"Decoding CIFAR-10 {split} ({len(files)} images)")
        splits[split] = (images, torch.tensor(labels, dtype=torch.int64))
    data = CIFAR10Tensors(*splits["train"], *splits["test"], str(root))
    if use_cache:
        _write_cache(cache_file, data)
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
        CIFAR10DataError: the data was found but cannot be used: a tarball is corrupt or truncated, a split does not
            have exactly the ten class folders, a class folder holds no image, or an image is empty, truncated, not an
            image or not 32x32. The message names the file or folder and the fix. It is a ``ValueError``.
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
                f"nor {BATCHES_DIR}. Pack the dataset so that the archive holds <name>/train/<class>/*.jpg and "
                "<name>/test/<class>/*.jpg (or the folders directly), or point data_dir at an extracted copy."
            )
        kind, path = layout
    if kind == "batches":
        return _load_batches(path)
    return _load_imagefolder(path, cache_root, use_cache=use_cache)
