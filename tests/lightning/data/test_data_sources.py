"""Where CIFAR-10 is looked for: data_dir, $QUEST_CIFAR10, the search path ($QUEST_DATA_PATH), a download."""

from __future__ import annotations

import os
import urllib.error

import pytest
from tiny_cifar import check_tensors

from quest_lightning.lightning.data import CIFAR10NotFoundError, find_cifar10, load_cifar10, search_path


def test_env_var_and_well_known_spot(folder, env, monkeypatch):
    monkeypatch.setenv("QUEST_CIFAR10", str(folder))
    check_tensors(load_cifar10(download=False, cache_dir=env / "cache"))
    monkeypatch.delenv("QUEST_CIFAR10")
    (env / "work" / "data").mkdir()
    folder.rename(env / "work" / "data" / "cifar10-jpeg")
    check_tensors(load_cifar10(download=False, cache_dir=env / "cache"))


def test_default_search_path_finds_the_shared_tarball(tarball, env):
    # The main job runs from the repository root with the dataset at ../shared/data/cifar10-jpeg.tar.gz.
    shared = env / "shared" / "data"
    shared.mkdir(parents=True)
    tarball.rename(shared / "cifar10-jpeg.tar.gz")
    hit, _ = find_cifar10(cache_dir=env / "cache")
    assert hit == ("tarball", env / "work" / "../shared/data/cifar10-jpeg.tar.gz")
    check_tensors(load_cifar10(download=False, cache_dir=env / "cache"))


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
        "QUEST_DATA_PATH",
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
