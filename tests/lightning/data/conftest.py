"""Fixtures of the data tests: an empty working directory and a tiny ImageFolder (and tarball) beside it."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_cifar import make_imagefolder, make_tarball


@pytest.fixture
def env(tmp_path, monkeypatch):
    """An empty working directory without QUEST_CIFAR10 or QUEST_DATA_PATH, so no real dataset is found by accident."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("QUEST_CIFAR10", raising=False)
    monkeypatch.delenv("QUEST_DATA_PATH", raising=False)
    return tmp_path


@pytest.fixture
def folder(env) -> Path:
    return make_imagefolder(env / "cifar10-jpeg")


@pytest.fixture
def tarball(folder, env) -> Path:
    return make_tarball(folder, env / "cifar10-jpeg.tar.gz")
