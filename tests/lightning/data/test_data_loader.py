"""The batch loader: DistributedSampler's sharding, rank-independent per-sample augmentation, padding, resume state."""

from __future__ import annotations

import itertools

import pytest
import torch
from tiny_cifar import crop_flip_reference
from torch.utils.data import DistributedSampler

from quest_lightning.lightning.data import DeviceBatchLoader, ShardLayout, balanced_subset_indices

N = 10


def _data(n=N):
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen), torch.arange(n)


def _epoch(loader, epoch):
    loader.set_epoch(epoch)
    batches = list(loader)
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


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


@pytest.mark.parametrize(("n", "world_size"), [(10, 1), (10, 3), (11, 4), (3, 4)])
def test_unshuffled_shards_equal_torch_distributed_sampler(n, world_size):
    images, labels = _data(n)
    for rank in range(world_size):
        loader = DeviceBatchLoader(images, labels, 2, rank=rank, world_size=world_size)
        expected = list(DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=False))
        assert loader.indices().tolist() == expected
        assert torch.cat([y for _, y in loader]).tolist() == expected


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_together_see_what_one_rank_sees_crop_for_crop(world_size):
    """Sample at global position p: same image, same label, same crop and flip, whichever rank serves it."""
    images, labels = _data()
    kwargs = dict(shuffle=True, seed=7, augment=True)
    one_x, one_y = _epoch(DeviceBatchLoader(images, labels, 4, **kwargs), epoch=2)
    total = -(-N // world_size) * world_size
    glob_x = torch.empty((total, *images.shape[1:]), dtype=images.dtype)
    glob_y = torch.empty(total, dtype=labels.dtype)
    padded = 0
    for rank in range(world_size):
        loader = DeviceBatchLoader(images, labels, 3, rank=rank, world_size=world_size, **kwargs)
        x, y = _epoch(loader, epoch=2)
        pos = loader.positions()
        glob_x[pos], glob_y[pos] = x, y
        padded += loader.num_padded
    assert torch.equal(glob_x[:N], one_x) and torch.equal(glob_y[:N], one_y)
    assert padded == total - N
    assert torch.equal(glob_x[N:], one_x[: total - N]) and torch.equal(glob_y[N:], one_y[: total - N])
    # Every served image is a 4-pixel-padded crop of its source, possibly mirrored, and most are moved.
    moved = 0
    for img, src in zip(one_x, images[one_y], strict=True):
        options = [
            crop_flip_reference(src[None], torch.tensor([[oy, ox]]), torch.tensor([flip]), 4)[0]
            for oy, ox, flip in itertools.product(range(9), range(9), (False, True))
        ]
        assert any(torch.equal(img, o) for o in options)
        moved += not torch.equal(img, src)
    assert moved >= N - 2


def test_order_and_crops_are_a_function_of_seed_and_epoch():
    images, labels = _data()

    def run(seed, epoch):
        return _epoch(DeviceBatchLoader(images, labels, 4, shuffle=True, seed=seed, augment=True), epoch)

    x, y = run(1, 3)
    x2, y2 = run(1, 3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    for other in (run(1, 4), run(2, 3)):
        assert not torch.equal(other[1], y)
        # the same sample gets other crops too
        assert not torch.equal(other[0][torch.argsort(other[1])], x[torch.argsort(y)])


def test_padding_api():
    images, labels = _data()
    # N=10 on 3 ranks: 4 positions each (0,3,6,9 / 1,4,7,10 / 2,5,8,11); 10 and 11 repeat positions 0 and 1.
    loaders = [DeviceBatchLoader(images, labels, 3, rank=r, world_size=3) for r in range(3)]
    assert [loader.num_padded for loader in loaders] == [0, 1, 1]
    assert [[loader.padded_in_batch(b) for b in range(len(loader))] for loader in loaders] == [[0, 0], [0, 1], [0, 1]]
    real = 0
    for loader in loaders:
        for b, (_, y) in enumerate(loader):
            keep = y.numel() - loader.padded_in_batch(b)  # padding is always at the end of the batch
            real += keep
            assert torch.equal(y[keep:], torch.arange(y.numel() - keep) + loader.rank - 1)
    assert real == N
    dropped = DeviceBatchLoader(images, labels, 3, drop_last=True, rank=1, world_size=3)
    assert len(dropped) == 1 and dropped.num_padded == 0
    with pytest.raises(IndexError, match=r"batch_idx must be in \[0, 1\)"):
        dropped.padded_in_batch(1)
    assert DeviceBatchLoader(images, labels, 3, rank=1, world_size=2).num_padded == 0


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize(("n", "world_size", "batch_size"), [(10, 1, 4), (10, 3, 3), (9, 2, 4), (19, 2, 4), (7, 4, 1)])
def test_real_in_step_counts_the_real_samples_of_every_ranks_batch(n, world_size, batch_size, drop_last):
    """The real samples of a step, known on each rank alone, are those the ranks' batches of that step hold together
    (their lengths, less the padding each rank reports), and over the epoch they add up to what the ranks serve."""
    images, labels = torch.zeros(n, 1, 2, 2, dtype=torch.uint8), torch.arange(n)
    loaders = [DeviceBatchLoader(images, labels, batch_size, drop_last=drop_last, rank=r, world_size=world_size)
               for r in range(world_size)]  # fmt: skip
    batches = [list(loader) for loader in loaders]
    for k in range(len(loaders[0])):
        held = sum(batches[r][k][1].numel() - loaders[r].padded_in_batch(k) for r in range(world_size))
        assert [loader.real_in_step(k) for loader in loaders] == [held] * world_size, k
    served = sum(y.numel() for rank in batches for _, y in rank) - sum(loader.num_padded for loader in loaders)
    assert sum(loaders[0].real_in_step(k) for k in range(len(loaders[0]))) == served
    assert served == n or drop_last
    with pytest.raises(IndexError, match="batch_idx must be in"):
        loaders[0].real_in_step(len(loaders[0]))


def test_state_dict_resumes_mid_epoch_on_every_rank():
    images, labels = _data()
    kwargs = dict(shuffle=True, seed=3, augment=True, world_size=2)
    full = [list(DeviceBatchLoader(images, labels, 2, rank=r, **kwargs)) for r in range(2)]
    first = DeviceBatchLoader(images, labels, 2, rank=0, **kwargs)
    it = iter(first)
    next(it), next(it)
    state = first.state_dict()
    assert state == {
        "version": 1,
        "epoch": 0,
        "batches_served": 2,
        "layout": {
            "dataset_size": N,
            "batch_size": 2,
            "world_size": 2,
            "shuffle": True,
            "drop_last": False,
            "seed": 3,
            "augment": True,
        },
    }
    for rank in range(2):  # Lightning saves rank 0's state and every rank loads it
        fresh = DeviceBatchLoader(images, labels, 2, rank=rank, **kwargs)
        fresh.load_state_dict(state)
        rest = list(fresh)
        assert len(rest) == len(full[rank]) - 2
        for (x, y), (ex, ey) in zip(rest, full[rank][2:], strict=True):
            assert torch.equal(x, ex) and torch.equal(y, ey)
        assert fresh.state_dict()["batches_served"] == len(fresh)
        assert fresh.epoch == 1  # then the next epoch, from its start
        assert len(list(fresh)) == len(fresh)


def test_state_at_an_epoch_end_starts_the_next_epoch_in_any_layout():
    images, labels = _data()
    done = DeviceBatchLoader(images, labels, 2, shuffle=True, augment=True)
    done.set_epoch(4)
    list(done)
    state = done.state_dict()
    assert (state["epoch"], state["batches_served"]) == (4, 5)
    other = DeviceBatchLoader(images, labels, 3, shuffle=True, augment=True, world_size=2)  # another layout is fine
    other.load_state_dict(state)
    assert other.epoch == 5 and len(list(other)) == len(other)
    same = DeviceBatchLoader(images, labels, 2, shuffle=True, augment=True)
    same.load_state_dict(state)
    x, y = _epoch(DeviceBatchLoader(images, labels, 2, shuffle=True, augment=True), epoch=5)
    got = list(same)
    assert torch.equal(torch.cat([b[0] for b in got]), x) and torch.equal(torch.cat([b[1] for b in got]), y)


def test_mid_epoch_state_into_another_layout_is_refused():
    images, labels = _data()
    saved = DeviceBatchLoader(images, labels, 2, shuffle=True, world_size=2)
    it = iter(saved)
    next(it)
    other = DeviceBatchLoader(images, labels, 2, shuffle=True, world_size=1, seed=5)
    with pytest.raises(ValueError) as info:
        other.load_state_dict(saved.state_dict())
    msg = str(info.value)
    assert "mid-epoch (1 of 3 batches of epoch 0)" in msg
    assert "world_size: checkpoint 2, now 1" in msg and "seed: checkpoint 0, now 5" in msg
    assert "end of an epoch" in msg
    with pytest.raises(ValueError, match="not a DeviceBatchLoader state"):
        other.load_state_dict({"epoch": 0})


def test_bad_arguments():
    images, labels = _data()
    with pytest.raises(ValueError, match=r"rank must be in \[0, world_size=2\), got 2"):
        DeviceBatchLoader(images, labels, 2, rank=2, world_size=2)
    with pytest.raises(ValueError, match="same length, got 10 and 9"):
        DeviceBatchLoader(images, labels[:9], 2)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        DeviceBatchLoader(images, labels, 0)
    assert ShardLayout(10, 3, 4).samples_per_rank == 3 and ShardLayout(10, 3, 4, drop_last=True).batches_per_epoch == 1
