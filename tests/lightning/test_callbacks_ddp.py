"""Two CPU processes (DDP over gloo) measure what one process measures over the same global data.

One process sees batches of ``2B``; two ranks see ``B`` each, interleaved (rank ``r`` takes samples ``r, r+2, ...``,
what ``DistributedSampler(shuffle=False)`` does), so every optimizer step averages the gradient of the same ``2B``
samples. Lightning 2.6 always shuffles the sampler it injects for training, so the test brings its own
(``use_distributed_sampler=False``). The run is in
float64 so that the reduction order cannot flip a spike or a weight code. The meters sum their states across ranks
in ``compute``, so AOR, spike rates, transition counts and every energy figure must agree to rounding.

``ddp_spawn`` starts fresh interpreters, so everything handed to the Trainer is defined at module level. The main
process never sees the children's callback objects: the comparison reads the JSON summary that rank 0 writes.
"""

import json
import os

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger
from torch.utils.data import DataLoader, Sampler, TensorDataset

from quest_lightning.lightning.callbacks import SUMMARY_FILE, AORMeter, DeviceEnergyCallback, WeightTransitionMonitor
from quest_lightning.lightning.module import QuestModule
from quest_lightning.nn import SpikingVGG

B, STEPS = 4, 4  # per-rank batch, optimizer steps per epoch
OURS = ("aor/", "sparsity/", "spike_rate/", "transitions/", "energy/")


pytestmark = [
    pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available"),
    pytest.mark.skipif(os.environ.get("QUEST_SKIP_DDP") == "1", reason="QUEST_SKIP_DDP=1 (about 10 s of CPU DDP)"),
]


class OneThread(pl.Callback):
    """Each process uses one thread: two ranks on two cores."""

    def setup(self, trainer, pl_module, stage):
        torch.set_num_threads(1)


class RankFileLogger(Logger):
    """Writes the keys every rank is asked to log to ``keys_rank{r}.txt`` (no rank-zero filter of its own)."""

    def __init__(self, root):
        super().__init__()
        self.root = root

    @property
    def name(self):
        return "rankfile"

    @property
    def version(self):
        return 0

    @property
    def log_dir(self):
        return self.root

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        rank = int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", 0)))
        rank = getattr(self, "_rank", rank)
        os.makedirs(self.root, exist_ok=True)
        with open(os.path.join(self.root, f"keys_rank{rank}.txt"), "a") as f:
            for key, value in metrics.items():
                f.write(f"{step}\t{key}\t{float(value)!r}\n")


class RankAwareEnergy(DeviceEnergyCallback):
    def setup(self, trainer, pl_module, stage):
        for logger in trainer.loggers:
            logger._rank = trainer.global_rank
        super().setup(trainer, pl_module, stage)


class Interleaved(Sampler):
    """``DistributedSampler(shuffle=False)`` without padding, reading the rank once the process group exists."""

    def __init__(self, n):
        self.n = n

    def _rank_world(self):
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def __iter__(self):
        rank, world = self._rank_world()
        return iter(range(rank, self.n, world))

    def __len__(self):
        return self.n // self._rank_world()[1]


def make_data(repeated=False):
    g = torch.Generator().manual_seed(0)
    n = 2 * B * STEPS
    x = torch.rand(n, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (n,), generator=g)
    if repeated:  # every global batch is the first one: a resumed run sees what an uninterrupted one sees
        x, y = x[: 2 * B].repeat(STEPS, 1, 1, 1), y[: 2 * B].repeat(STEPS)
    return TensorDataset(x, y), TensorDataset(x[: 4 * B], y[: 4 * B])


def fit(root, devices, repeated=False, max_steps=-1, ckpt_path=None):
    pl.seed_everything(0, verbose=False)
    torch.set_num_threads(1)
    net = SpikingVGG([4, "P", 8, "P"], [16], in_channels=1, image_size=8, num_classes=10)
    # full-precision layers keep alpha out of the gradient, so plain DDP finds no unused parameter
    assert not net.features[0].layer.alpha.requires_grad and not net.readout.alpha.requires_grad
    module = QuestModule(net, timesteps=2, lr=0.05, optimizer="sgd")
    callbacks = [
        OneThread(),
        WeightTransitionMonitor(stages=[("s", 1, 3)], track_writes_per_cell=True),
        AORMeter(),
        RankAwareEnergy("skmtj7", states=(0, 3, 6), first_layer="reads"),
    ]
    if repeated:  # checkpoints every 2 steps: the first is mid-stage and mid-epoch
        callbacks.append(ModelCheckpoint(dirpath=str(root / "ckpt"), every_n_train_steps=2, save_top_k=-1))
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn" if devices > 1 else "auto",
        precision="64-true",
        max_epochs=2,
        callbacks=callbacks,
        logger=RankFileLogger(str(root)),
        default_root_dir=str(root),
        enable_checkpointing=repeated,
        max_steps=max_steps,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
    )
    train, val = make_data(repeated)
    per_rank = 2 * B // devices
    trainer.fit(
        module,
        DataLoader(train, batch_size=per_rank, sampler=Interleaved(len(train))),
        DataLoader(val, batch_size=per_rank, sampler=Interleaved(len(val))),
        ckpt_path=ckpt_path,
    )
    with open(os.path.join(str(root), SUMMARY_FILE)) as f:
        return json.load(f)


def _flatten(tree, prefix=""):
    """Every number in a JSON tree, keyed by its path."""
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}/{k}"))
        return out
    if isinstance(tree, list):
        out = {}
        for i, v in enumerate(tree):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: tree} if isinstance(tree, (int, float)) and not isinstance(tree, bool) else {}


def test_two_ddp_ranks_measure_what_one_process_measures(tmp_path):
    single = fit(tmp_path / "one", devices=1)
    double = fit(tmp_path / "two", devices=2)

    # the exact integer counts; every rank holds the same weights, so the writes per cell are not summed over ranks
    assert double["transitions"]["s"]["samples"] == single["transitions"]["s"]["samples"] == 3 * 2 * B
    assert double["writes"] == single["writes"] and single["writes"]["max_writes"] > 0
    for name, info in single["transitions"]["s"]["layers"].items():
        assert double["transitions"]["s"]["layers"][name]["counts"] == info["counts"], name
    for stage in ("train", "val"):
        for one, two in zip(single["activity"][stage], double["activity"][stage], strict=True):
            assert [r["samples"] for r in two["layers"]] == [r["samples"] for r in one["layers"]]
            assert two["layers"][0]["samples"] == (2 * B * STEPS if stage == "train" else 4 * B)

    # every number of the summary (AOR, rates, sparsity, every pattern's write/read energy, CMOS ratios)
    a, b = _flatten(single), _flatten(double)
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert b[key] == pytest.approx(value, rel=1e-9, abs=1e-30), key
    assert single["energy"]["write"]["s"]["report"]["total"]["best_j"] > 0

    # only rank 0 logged the callbacks' figures
    ranks = {f: (tmp_path / "two" / f).read_text() for f in os.listdir(tmp_path / "two") if f.startswith("keys_rank")}
    assert "keys_rank0.txt" in ranks
    for name, text in ranks.items():
        ours = [line for line in text.splitlines() if line.split("\t")[1].startswith(OURS)]
        assert bool(ours) == (name == "keys_rank0.txt"), name


def test_two_ddp_ranks_resumed_mid_epoch_measure_what_an_uninterrupted_run_measures(tmp_path):
    """The ranks see different halves of each batch, so their partial sums differ: a checkpoint must hold their
    global sums, restored once (on rank 0), or the resumed epoch would count rank 0's half twice."""
    full = fit(tmp_path / "full", devices=2, repeated=True)
    [ckpt] = [p for p in (tmp_path / "full" / "ckpt").iterdir() if "step=2" in p.name]  # taken mid-stage, mid-epoch
    resumed = fit(tmp_path / "resumed", devices=2, repeated=True, ckpt_path=str(ckpt))
    assert resumed["transitions"]["s"]["samples"] == full["transitions"]["s"]["samples"] == 3 * 2 * B
    assert [r["layers"][0]["samples"] for r in resumed["activity"]["train"]] == [2 * B * STEPS] * 2
    a, b = (
        _flatten({k: full[k] for k in ("activity", "transitions", "energy")}),
        _flatten({k: resumed[k] for k in ("activity", "transitions", "energy")}),
    )
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert b[key] == pytest.approx(value, rel=1e-9, abs=1e-30), key
