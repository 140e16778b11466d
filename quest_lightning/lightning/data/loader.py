"""Batches by indexing in-memory tensors: sharded like ``DistributedSampler``, augmented per sample, resumable.

One epoch is a pure function of ``(seed, epoch)``:

* The **global order** is ``randperm(N)`` from a generator seeded by ``(seed, epoch, "order")`` (``arange(N)``
  without shuffling). Position ``p`` of the padded order holds sample ``order[p mod N]``, for
  ``p < S * W`` with ``S = ceil(N / W)`` samples per rank and ``W`` ranks.
* **Sharding**: rank ``r`` takes positions ``r, r + W, r + 2W, ...``, as ``DistributedSampler`` does. The last
  ``S * W - N`` positions (at most ``W - 1``, at most one per rank, always the last sample of that rank) repeat the
  first samples of the order so that every rank yields the same number of batches. They are **padding**:
  :attr:`DeviceBatchLoader.num_padded` and :meth:`DeviceBatchLoader.padded_in_batch` say where, so that counts can
  leave them out.
* **Augmentation** (random crop with 4-pixel zero padding and horizontal flip): the parameters of position ``p`` are
  row ``p mod N`` of :func:`~quest_lightning.lightning.data.augment.draw_crop_flip` ``(N)`` drawn from a generator
  seeded by ``(seed, epoch, "augment")``. A sample's crop and flip therefore depend on its place in the global order,
  not on the rank that serves it: the union of what ``W`` ranks see equals what one rank sees, crop for crop. A
  padded position repeats its sample's crop too.
* **Resume**: the position inside the epoch (batches served) is the whole state; :meth:`DeviceBatchLoader.state_dict`
  and :meth:`~DeviceBatchLoader.load_state_dict` are what Lightning's fit loop saves and restores for a stateful
  training loader, and the loader skips the batches already served itself (Lightning does not).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import Tensor

from quest_lightning.lightning.data.augment import crop_flip, draw_crop_flip

__all__ = ["AUGMENT_PADDING", "DeviceBatchLoader", "ShardLayout", "balanced_subset_indices", "stream_generator"]

AUGMENT_PADDING = 4
"""Zero padding of the random crop, in pixels on each side (the CIFAR-10 convention)."""

_STATE_VERSION = 1


def stream_generator(seed: int, epoch: int, stream: str) -> torch.Generator:
    """A CPU generator seeded by a hash of ``(stream, seed, epoch)``, so that streams and epochs never share seeds.

    Args:
        seed: base seed of the run.
        epoch: epoch number.
        stream: name of the random stream (``"order"`` or ``"augment"``).

    Returns:
        A freshly seeded ``torch.Generator`` on the CPU.
    """
    digest = hashlib.sha256(f"{stream}:{seed}:{epoch}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


@dataclass(frozen=True)
class ShardLayout:
    """What fixes every rank's batches in an epoch; a mid-epoch resume needs the same layout.

    Attributes:
        dataset_size: number of samples ``N``.
        batch_size: samples per batch on each rank.
        world_size: number of ranks ``W``.
        shuffle: draw a new global order every epoch.
        drop_last: drop each rank's last incomplete batch.
        seed: base seed of the order and augmentation streams.
        augment: apply the random crop and flip.
    """

    dataset_size: int
    batch_size: int
    world_size: int = 1
    shuffle: bool = False
    drop_last: bool = False
    seed: int = 0
    augment: bool = False

    def __post_init__(self) -> None:
        if self.dataset_size < 0:
            raise ValueError(f"dataset_size must be >= 0, got {self.dataset_size}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {self.world_size}")

    @property
    def samples_per_rank(self) -> int:
        """``S = ceil(N / W)``: samples each rank is assigned per epoch (before ``drop_last``)."""
        return math.ceil(self.dataset_size / self.world_size)

    @property
    def batches_per_epoch(self) -> int:
        """Batches each rank yields per epoch."""
        if self.drop_last:
            return self.samples_per_rank // self.batch_size
        return math.ceil(self.samples_per_rank / self.batch_size)


class DeviceBatchLoader:
    """Iterates over tensors in memory (on the GPU or the CPU) by indexing with this rank's share of the global order.

    It replaces a DataLoader when the whole dataset is already decoded: no workers, no collation, one gather per batch,
    and on the GPU no host-to-device copies. See the module docstring for the order, sharding, padding, augmentation
    and resume rules. Batches are ``(images[idx], labels[idx])``, images cropped and flipped when ``augment``.

    Args:
        images: tensor ``[N, C, H, W]`` on any device.
        labels: tensor ``[N]`` on the same device.
        batch_size: samples per batch.
        shuffle: draw a new global order every epoch.
        drop_last: drop this rank's last incomplete batch.
        rank: this process's global rank.
        world_size: number of processes.
        seed: base seed of the order and augmentation streams.
        epoch_fn: returns the current epoch when iteration starts (e.g. ``lambda: trainer.current_epoch``), so that
            every rank, and a resumed run, uses the same epoch. Without it the loader counts its own epochs (see
            :meth:`set_epoch`).
        augment: random crop (4-pixel zero padding) and horizontal flip on the images' device.
        pin_memory: pin CPU batches (when CUDA is available) so that their copy to the GPU can overlap.

    Raises:
        ValueError: a size is out of range, ``rank`` is not in ``[0, world_size)``, or images and labels differ in
            length.
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
        augment: bool = False,
        pin_memory: bool = False,
    ) -> None:
        if images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"images and labels must have the same length, got {images.shape[0]} and {labels.shape[0]}"
            )
        self.layout = ShardLayout(labels.shape[0], batch_size, world_size, shuffle, drop_last, seed, augment)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.images, self.labels = images, labels
        self.rank = rank
        self.epoch_fn = epoch_fn
        self.pin_memory = pin_memory and torch.cuda.is_available() and images.device.type == "cpu"
        self.epoch = 0
        self._progress = (0, 0)  # (epoch, batches served) of the epoch being iterated or last iterated
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch that seeds the next iteration (like ``DistributedSampler.set_epoch``)."""
        self.epoch = epoch

    @property
    def num_samples(self) -> int:
        """Samples this rank is assigned per epoch, padding included (before ``drop_last``)."""
        return self.layout.samples_per_rank

    def __len__(self) -> int:
        return self.layout.batches_per_epoch

    def positions(self) -> Tensor:
        """This rank's positions in the padded global order, int64 ``[num_samples]`` on the CPU.

        Positions ``>= N`` are padding and repeat sample ``order[p - N]``.
        """
        total = self.layout.samples_per_rank * self.layout.world_size
        return torch.arange(self.rank, total, self.layout.world_size)

    def order(self, epoch: int | None = None) -> Tensor:
        """The global order of sample indices for ``epoch`` (default: the current one), int64 ``[N]`` on the CPU."""
        epoch = self.epoch if epoch is None else epoch
        n = self.layout.dataset_size
        return (
            torch.randperm(n, generator=stream_generator(self.layout.seed, epoch, "order"))
            if self.layout.shuffle
            else torch.arange(n)
        )

    def indices(self, epoch: int | None = None) -> Tensor:
        """This rank's sample indices for ``epoch`` (default: the current one), int64 ``[num_samples]`` on the CPU."""
        n = self.layout.dataset_size
        return self.order(epoch)[self.positions() % n] if n else self.positions()

    def augment_params(self, epoch: int | None = None) -> tuple[Tensor, Tensor]:
        """Crop offsets ``[num_samples, 2]`` and flips ``[num_samples]`` of this rank's samples for ``epoch``."""
        epoch = self.epoch if epoch is None else epoch
        n = self.layout.dataset_size
        offsets, flips = draw_crop_flip(n, stream_generator(self.layout.seed, epoch, "augment"), AUGMENT_PADDING)
        rows = self.positions() % max(n, 1)
        return offsets[rows], flips[rows]

    def padded_in_batch(self, batch_idx: int) -> int:
        """How many samples of batch ``batch_idx`` are padding; they are the batch's last ones.

        Raises:
            IndexError: ``batch_idx`` is not in ``[0, len(self))``.
        """
        if not 0 <= batch_idx < len(self):
            raise IndexError(f"batch_idx must be in [0, {len(self)}), got {batch_idx}")
        b = self.layout.batch_size
        return int((self.positions()[batch_idx * b : (batch_idx + 1) * b] >= self.layout.dataset_size).sum())

    def real_in_step(self, batch_idx: int) -> int:
        """The real samples of batch ``batch_idx`` on all ranks together: the global batch of that step, padding
        left out (the same on every rank, known without communication).

        The ranks' batches ``batch_idx`` together hold positions ``W·k·B`` up to ``W·min((k + 1)·B, S)`` of the padded
        order (``k`` = ``batch_idx``, ``B`` the batch size, ``S`` the samples per rank), of which those below ``N`` are
        real.

        Raises:
            IndexError: ``batch_idx`` is not in ``[0, len(self))``.
        """
        if not 0 <= batch_idx < len(self):
            raise IndexError(f"batch_idx must be in [0, {len(self)}), got {batch_idx}")
        layout = self.layout
        first = layout.world_size * batch_idx * layout.batch_size
        end = layout.world_size * min((batch_idx + 1) * layout.batch_size, layout.samples_per_rank)
        return max(0, min(end, layout.dataset_size) - first)

    @property
    def num_padded(self) -> int:
        """Padded samples this rank yields per epoch (0 or 1; 0 when ``N`` divides evenly or ``drop_last`` drops it)."""
        served = len(self) * self.layout.batch_size
        return int((self.positions()[:served] >= self.layout.dataset_size).sum())

    def _epoch_now(self) -> int:
        return self.epoch_fn() if self.epoch_fn is not None else self.epoch

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch = self._epoch_now()
        start = 0
        if self._resume is not None:
            saved_epoch, start = self._resume
            self._resume = None
            if saved_epoch != epoch:
                start = 0
        if self.epoch_fn is None:
            self.epoch = epoch + 1  # a fresh epoch next time even if nobody calls set_epoch
        self._progress = (epoch, start)
        device = self.images.device
        idx = self.indices(epoch).to(device)
        if self.layout.augment:
            offsets, flips = (t.to(device) for t in self.augment_params(epoch))
        b = self.layout.batch_size
        for k in range(start, len(self)):
            sel = slice(k * b, (k + 1) * b)
            images = self.images[idx[sel]]
            if self.layout.augment:
                images = crop_flip(images, offsets[sel], flips[sel], AUGMENT_PADDING)
            labels = self.labels[idx[sel]]
            if self.pin_memory:
                images, labels = images.pin_memory(), labels.pin_memory()
            self._progress = (epoch, k + 1)
            yield images, labels

    def state_dict(self) -> dict[str, Any]:
        """Where this loader stands, for a checkpoint.

        Returns:
            ``{"version": 1, "epoch": e, "batches_served": k, "layout": {...}}``: the epoch being iterated (or last
            iterated) and the batches of it served so far on this rank (the same on every rank, so rank 0's state
            restores all ranks), plus the :class:`ShardLayout` fields. The order and augmentation are functions of
            ``layout.seed`` and ``epoch``, so no random generator state is needed.
        """
        epoch, served = self._progress
        return {"version": _STATE_VERSION, "epoch": epoch, "batches_served": served, "layout": asdict(self.layout)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`: the next iteration of the same epoch continues after the batches served.

        A state taken at the end of an epoch (or before its first batch) carries no position, so it loads into any
        layout. A mid-epoch state needs the same layout.

        Raises:
            ValueError: the state is not from this loader, or it is mid-epoch and its layout differs (the message
                names each differing field with both values).
        """
        if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
            raise ValueError(
                f"not a DeviceBatchLoader state (version {_STATE_VERSION}): {state!r:.200}; resume from a checkpoint "
                "written by this version of quest-lightning, or start the run afresh"
            )
        names = {f.name for f in fields(ShardLayout)}
        saved = ShardLayout(**{k: v for k, v in state["layout"].items() if k in names})
        epoch, served = int(state["epoch"]), int(state["batches_served"])
        mid_epoch = 0 < served < saved.batches_per_epoch
        if mid_epoch and saved != self.layout:
            diffs = [
                f"{name}: checkpoint {getattr(saved, name)!r}, now {getattr(self.layout, name)!r}"
                for name in sorted(names)
                if getattr(saved, name) != getattr(self.layout, name)
            ]
            raise ValueError(
                f"the checkpoint stopped mid-epoch ({served} of {saved.batches_per_epoch} batches of epoch {epoch}) "
                f"with other data settings ({'; '.join(diffs)}). Resume with the same data settings and number of "
                "processes, or from a checkpoint saved at the end of an epoch."
            )
        self._progress = (epoch, served)
        if mid_epoch:
            self._resume = (epoch, served)
            self.epoch = epoch
        else:
            self._resume = None
            self.epoch = epoch + 1 if served else epoch


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

    Raises:
        ValueError: ``n`` is negative.
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
