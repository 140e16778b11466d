"""Where CIFAR-10 comes from: an explicit path, an environment variable, a search path, or a torchvision download.

The first hit wins:

1. ``data_dir`` (``--data.data_dir``), else the environment variable ``QUEST_CIFAR10``: a folder in ``ImageFolder``
   layout (``train/<class>/*.jpg`` and ``test/<class>/*.jpg``), a ``.tar.gz`` of one, or a folder holding torchvision's
   ``cifar-10-batches-py``. An explicit path is authoritative: when it holds no CIFAR-10, nothing else is searched
   (torchvision downloads into it when ``download`` is true), so a typo never silently trains on other data.
2. The search path: every folder of ``QUEST_DATA_PATH`` (separated by ``os.pathsep``), or by default ``data`` and
   ``../shared/data`` relative to the working directory. Each folder is checked for ``cifar10-jpeg``,
   ``cifar10-jpeg.tar.gz`` and ``cifar-10-batches-py``, in that order.
3. An earlier torchvision download in the cache folder (``<cache>/download/cifar-10-batches-py``).
4. ``torchvision.datasets.CIFAR10(download=True)`` into ``<cache>/download`` when ``download`` is true.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

__all__ = [
    "BATCHES_DIR",
    "DATASET_NAMES",
    "DATA_PATH_ENV",
    "DEFAULT_SEARCH_PATH",
    "ENV_VAR",
    "CIFAR10NotFoundError",
    "default_cache_root",
    "detect_layout",
    "download_cifar10",
    "explicit_source",
    "find_cifar10",
    "is_tarball",
    "not_found_message",
    "search_path",
]

ENV_VAR = "QUEST_CIFAR10"
"""Environment variable naming the dataset itself (a folder or a tarball), used when ``data_dir`` is not given."""

DATA_PATH_ENV = "QUEST_DATA_PATH"
"""Environment variable holding the search path (folders separated by ``os.pathsep``); it replaces the default."""

DEFAULT_SEARCH_PATH: tuple[str, ...] = ("data", "../shared/data")
"""Folders searched when ``QUEST_DATA_PATH`` is unset, relative to the working directory."""

BATCHES_DIR = "cifar-10-batches-py"
"""Folder name of torchvision's (the official) python version of CIFAR-10."""

DATASET_NAMES: tuple[str, ...] = ("cifar10-jpeg", "cifar10-jpeg.tar.gz", BATCHES_DIR)
"""Names looked for in each folder of the search path, in order."""

Layout = Literal["imagefolder", "batches", "tarball"]


class CIFAR10NotFoundError(FileNotFoundError):
    """CIFAR-10 was found nowhere and could not be downloaded. The message lists the places searched and remedies."""


def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/quest_lightning/cifar10`` (``~/.cache/quest_lightning/cifar10`` when it is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "quest_lightning" / "cifar10"


def search_path() -> list[Path]:
    """The folders searched for CIFAR-10, in order: ``$QUEST_DATA_PATH`` if set, else :data:`DEFAULT_SEARCH_PATH`.

    Relative entries are taken relative to the working directory (not resolved, so messages show them as given).
    """
    env = os.environ.get(DATA_PATH_ENV)
    entries = [e for e in env.split(os.pathsep) if e] if env else list(DEFAULT_SEARCH_PATH)
    cwd = Path.cwd()
    return [cwd / Path(e).expanduser() for e in entries]


def is_tarball(path: Path) -> bool:
    """Whether ``path`` is named like a tar archive (``.tar.gz``, ``.tgz`` or ``.tar``)."""
    return path.name.endswith((".tar.gz", ".tgz", ".tar"))


def _is_imagefolder_root(path: Path) -> bool:
    return (path / "train").is_dir() and (path / "test").is_dir()


def _is_batches_dir(path: Path) -> bool:
    return (path / "data_batch_1").is_file() and (path / "test_batch").is_file()


def detect_layout(path: Path) -> tuple[Layout, Path] | None:
    """Returns ``(kind, root)`` for a recognised CIFAR-10 source at ``path``, or ``None``.

    ``kind`` is ``"tarball"`` (a file named like a tar archive), ``"imagefolder"`` (a folder with ``train/`` and
    ``test/``, possibly one level down, as after extracting a tarball) or ``"batches"`` (``cifar-10-batches-py``).
    """
    if path.is_file():
        return ("tarball", path) if is_tarball(path) else None
    if not path.is_dir():
        return None
    if _is_imagefolder_root(path):
        return "imagefolder", path
    if _is_batches_dir(path):
        return "batches", path
    for child in (path / BATCHES_DIR, path / "cifar10-jpeg"):
        if _is_batches_dir(child):
            return "batches", child
        if _is_imagefolder_root(child):
            return "imagefolder", child
    subdirs = [p for p in path.iterdir() if p.is_dir()]
    if len(subdirs) == 1 and _is_imagefolder_root(subdirs[0]):
        return "imagefolder", subdirs[0]
    return None


def _why_not(path: Path) -> str:
    if not path.exists():
        return "does not exist"
    if path.is_file():
        return "is not a .tar.gz/.tgz/.tar archive"
    return f"has neither train/ and test/ class folders nor {BATCHES_DIR}"


def explicit_source(data_dir: str | os.PathLike[str] | None) -> tuple[str, Path] | None:
    """The explicitly named dataset as ``(label, path)``: ``data_dir`` if given, else ``$QUEST_CIFAR10`` if set."""
    if data_dir is not None:
        return "data_dir", Path(data_dir).expanduser()
    env = os.environ.get(ENV_VAR)
    return (f"${ENV_VAR}", Path(env).expanduser()) if env else None


def find_cifar10(
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[tuple[Layout, Path] | None, list[str]]:
    """Searches the places listed in the module docstring, in order, without downloading anything.

    Args:
        data_dir: explicit folder or tarball; when given (or when ``$QUEST_CIFAR10`` is set) it is the only place
            searched.
        cache_dir: cache root; a torchvision download made earlier into it is found too.

    Returns:
        ``(hit, looked)``: ``hit`` is ``(kind, path)`` with kind ``"imagefolder"``, ``"batches"`` or ``"tarball"``,
        or ``None``; ``looked`` describes every place searched and why it did not qualify, for error messages.
    """
    explicit = explicit_source(data_dir)
    looked: list[str] = []
    if explicit is not None:
        candidates = [explicit]
    else:
        looked += ["data_dir: not given", f"${ENV_VAR}: not set"]
        origin = f"${DATA_PATH_ENV}" if os.environ.get(DATA_PATH_ENV) else "search path"
        candidates = [(origin, folder / name) for folder in search_path() for name in DATASET_NAMES]
        root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
        candidates.append(("earlier download", root / "download" / BATCHES_DIR))
    for label, path in candidates:
        hit = detect_layout(path)
        if hit is not None:
            return hit, looked
        looked.append(f"{label}: {path} ({_why_not(path)})")
    return None, looked


def download_cifar10(root: Path) -> None:
    """Downloads the official CIFAR-10 (python version) into ``root`` with torchvision (both splits)."""
    import torchvision

    torchvision.datasets.CIFAR10(str(root), train=True, download=True)
    torchvision.datasets.CIFAR10(str(root), train=False, download=True)


def not_found_message(looked: Sequence[str], status: str) -> str:
    """The :class:`CIFAR10NotFoundError` text: every place searched, the download status, and the remedies."""
    folders = ", ".join(f"./{p}" for p in DEFAULT_SEARCH_PATH)
    names = ", ".join(DATASET_NAMES)
    return "\n".join(
        [
            "CIFAR-10 was not found. Looked in:",
            *(f"  - {entry}" for entry in looked),
            f"Download: {status}.",
            "Provide it in one of these ways:",
            "  - pass data_dir=PATH (--data.data_dir PATH): a folder with train/ and test/ class folders "
            f"(ImageFolder layout), a .tar.gz of one, or a folder holding {BATCHES_DIR}",
            f"  - set the environment variable {ENV_VAR}=PATH",
            f"  - put {names} in a folder of the search path ({folders} by default), or list your folders in "
            f"{DATA_PATH_ENV} (separated by '{os.pathsep}')",
            "  - allow the download (download=True) on a machine with internet access",
        ]
    )
