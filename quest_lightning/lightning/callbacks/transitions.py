"""``WeightTransitionMonitor``: how the integer weight codes move between optimizer steps (the device writes)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from quest_lightning.lightning.callbacks.base import (
    batch_size_of,
    compute_quietly,
    log_scalars,
    log_wandb,
    world_size,
)
from quest_lightning.metrics.functional import transition_summary
from quest_lightning.metrics.meters import TransitionCounter
from quest_lightning.nn.inspect import require_quantized_layers


@dataclass(frozen=True)
class Stage:
    """A window of training batches to monitor: batches ``first``..``last`` (1-based, inclusive) of ``epoch``
    (0-based), or of every epoch when ``epoch`` is ``None``."""

    name: str
    first: int
    last: float
    epoch: int | None = 0

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("Stage.name must be a non-empty string.")
        if self.first < 1 or self.last < self.first:
            raise ValueError(f"stage {self.name!r}: batches {self.first}..{self.last} must satisfy 1 <= first <= last.")

    def contains(self, epoch: int, batch: int) -> bool:
        return (self.epoch is None or self.epoch == epoch) and self.first <= batch <= self.last

    def key(self, epoch: int) -> str:
        return self.name if self.epoch is not None else f"{self.name}@epoch{epoch}"


PAPER_STAGES: tuple[Stage, ...] = (
    Stage("batches_1-10", 1, 10),
    Stage("batches_96-105", 96, 105),
    Stage("batches_180-190", 180, 190),
)
EVERY_STEP: tuple[Stage, ...] = (Stage("all", 1, math.inf, None),)


def resolve_stages(stages: str | Sequence[Stage | Sequence | dict]) -> tuple[Stage, ...]:
    """``"paper"`` (QUEST's batches 1–10, 96–105, 180–190 of epoch 0), ``"all"`` (every step of every epoch), or a
    sequence of :class:`Stage`, ``(name, first, last[, epoch])`` tuples or dicts. Stages must be in order and
    must not overlap."""
    if isinstance(stages, str):
        if stages not in ("paper", "all"):
            raise ValueError(f"stages={stages!r} is unknown: use 'paper', 'all' or a list of (name, first, last).")
        return PAPER_STAGES if stages == "paper" else EVERY_STEP
    out = tuple(s if isinstance(s, Stage) else Stage(**s) if isinstance(s, dict) else Stage(*s) for s in stages)
    if not out:
        raise ValueError("stages is empty: give at least one (name, first, last) window, 'paper' or 'all'.")
    for k, a in enumerate(out):
        for b in out[k + 1 :]:
            same_epoch = a.epoch is None or b.epoch is None or a.epoch == b.epoch
            earlier_epoch = a.epoch is not None and b.epoch is not None and b.epoch < a.epoch
            if (same_epoch and b.first <= a.last) or earlier_epoch:
                raise ValueError(
                    f"stages out of order or overlapping: {a.name!r} (batches {a.first}..{a.last}, epoch {a.epoch}) "
                    f"and {b.name!r} (batches {b.first}..{b.last}, epoch {b.epoch}); list them in increasing, "
                    "disjoint batch ranges (epoch None means every epoch)."
                )
    if len({s.name for s in out}) != len(out):
        raise ValueError(f"stage names must be unique, got {[s.name for s in out]}.")
    return out


class WeightTransitionMonitor(Callback):
    """Count level → level transitions of every quantized layer's codes across optimizer steps.

    After each optimizer step inside a stage, the layer's codes are recomputed from the updated weights and compared
    with the codes before the step: one ``bincount`` per layer, on the device. At the end of each stage it logs, per
    layer, ``transitions/{stage}/{layer}/frozen_fraction`` (share of weights that kept their level per step),
    ``.../non_adjacent_fraction`` (share of changes that skip a level, e.g. −1 ↔ +1 at 2 bits) and
    ``.../changed_fraction``; with W&B also the transition histogram and sampled weight trajectories.

    Args:
        stages: ``"paper"``, ``"all"`` or a list of stages (see :func:`resolve_stages`).
        every_n_steps: observe one optimizer step in ``n`` inside the stages (the transition of that step).
        trajectories: how many weights per layer to follow step by step (QUEST Fig. 7a); 0 disables.
        seed: seed for choosing the followed weights.
    """

    def __init__(
        self,
        stages: str | Sequence[Stage | Sequence | dict] = "paper",
        every_n_steps: int = 1,
        trajectories: int = 16,
        seed: int = 0,
    ) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps={every_n_steps} must be >= 1.")
        if trajectories < 0:
            raise ValueError(f"trajectories={trajectories} must be >= 0.")
        self.stages = resolve_stages(stages)
        self.every_n_steps = every_n_steps
        self.num_trajectories = trajectories
        self.seed = seed
        self.results: dict[str, dict[str, Any]] = {}
        self._layers: list[tuple[str, Any]] = []
        self._counters: dict[str, dict[str, TransitionCounter]] = {}
        self._samples: dict[str, int] = {}
        self._previous: dict[str, Tensor] | None = None
        self._seen_step: int | None = None  # the global step after the last training batch
        self._since_step = 0  # samples of the batches since the last optimizer step (gradient accumulation)
        self._indices: dict[str, Tensor] = {}
        self._trajectories: dict[str, dict[str, list[Tensor]]] = {}
        self._pending: dict[str, Any] | None = None

    # ----------------------------------------------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._layers = require_quantized_layers(pl_module, "WeightTransitionMonitor")
        gen = torch.Generator().manual_seed(self.seed)
        for name, layer in self._layers:
            k = min(self.num_trajectories, layer.weight.numel())
            self._indices[name] = torch.randperm(layer.weight.numel(), generator=gen)[:k].to(pl_module.device)
        if self._pending is not None:
            self._restore(self._pending, pl_module.device)
            self._pending = None

    @property
    def layer_names(self) -> list[str]:
        return [n for n, _ in self._layers]

    def _active(self, trainer: pl.Trainer, batch_idx: int) -> Stage | None:
        """The stage whose observed optimizer steps include this batch. With gradient accumulation over ``k``
        batches, batches ``k·g+1 .. k·g+k`` (1-based) make up optimizer step ``g``; one step in ``every_n_steps``
        is observed, counting from the stage's first step."""
        batch = batch_idx + 1
        k = max(int(getattr(trainer, "accumulate_grad_batches", 1) or 1), 1)
        for stage in self.stages:
            first_step = (stage.first - 1) // k
            if stage.contains(trainer.current_epoch, batch) and (batch_idx // k - first_step) % self.every_n_steps == 0:
                return stage
        return None

    def _codes(self) -> dict[str, Tensor]:
        return {name: layer.current_codes() for name, layer in self._layers}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # also runs when resuming mid-epoch, where Lightning skips ``on_train_epoch_start``
        self._seen_step, self._since_step = trainer.global_step, 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._seen_step, self._since_step = trainer.global_step, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._seen_step is None:
            self._seen_step = trainer.global_step
        stage = self._active(trainer, batch_idx)
        if stage is None:
            self._previous = None
            return
        if self._previous is None:
            self._previous = self._codes()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._since_step += batch_size_of(batch) * world_size(trainer)
        if trainer.global_step == self._seen_step:
            return  # no optimizer step on this batch (gradient accumulation): its samples join the next step
        self._seen_step = trainer.global_step
        samples, self._since_step = self._since_step, 0
        stage = self._active(trainer, batch_idx)
        if stage is None or self._previous is None:
            return
        key = stage.key(trainer.current_epoch)
        counters = self._counters.setdefault(key, {})
        trajectories = self._trajectories.setdefault(key, {})
        current = self._codes()
        for name, layer in self._layers:
            if name not in counters:
                counters[name] = TransitionCounter(layer.qmax).to(pl_module.device)
                trajectories[name] = [self._previous[name].flatten()[self._indices[name]]]
            counters[name].update(self._previous[name], current[name])
            trajectories[name].append(current[name].flatten()[self._indices[name]])
        self._samples[key] = self._samples.get(key, 0) + samples
        last_batch = batch_idx + 1 >= stage.last or batch_idx + 1 >= trainer.num_training_batches
        consecutive = self.every_n_steps == 1 and not last_batch
        self._previous = current if consecutive else None
        if last_batch:
            self._finish(trainer, key)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for key in list(self._counters):
            self._finish(trainer, key)  # stages cut short by the end of the epoch
        self._previous = None

    # ----------------------------------------------------------------------------------------------------------------
    def _finish(self, trainer: pl.Trainer, key: str) -> None:
        counters = self._counters.pop(key, None)
        if not counters:
            return
        trajectories = self._trajectories.pop(key, {})
        samples = self._samples.pop(key, 0)
        layers: dict[str, Any] = {}
        scalars: dict[str, float] = {}
        for name, counter in counters.items():
            steps = int(counter.steps.item())
            counts = compute_quietly(counter)
            summary = transition_summary(counts)
            layers[name] = {
                "qmax": counter.qmax,
                "counts": counts.cpu().tolist(),
                "steps": steps,
                "trajectory": torch.stack(trajectories.get(name, [])).T.cpu().tolist() if name in trajectories else [],
                **summary,
            }
            scalars.update({f"transitions/{key}/{name}/{k}": v for k, v in summary.items()})
        self.results[key] = {
            "epoch": trainer.current_epoch,
            "steps": max((v["steps"] for v in layers.values()), default=0),
            "samples": samples,
            "layers": layers,
        }
        log_scalars(trainer, scalars)
        self._log_wandb(trainer, key, layers)

    def _log_wandb(self, trainer: pl.Trainer, key: str, layers: dict[str, Any]) -> None:
        try:
            import wandb
        except ImportError:  # pragma: no cover - wandb is a dependency
            return
        payload: dict[str, Any] = {}
        for name, info in layers.items():
            q = info["qmax"]
            labels = [f"{i - q:+d}→{j - q:+d}" for i in range(2 * q + 1) for j in range(2 * q + 1) if i != j]
            values = [info["counts"][i][j] for i in range(2 * q + 1) for j in range(2 * q + 1) if i != j]
            table = wandb.Table(
                data=[[lab, v] for lab, v in zip(labels, values, strict=True)], columns=["transition", "count"]
            )
            payload[f"transitions/{key}/{name}/histogram"] = wandb.plot.bar(
                table, "transition", "count", title=f"{name} transitions ({key})"
            )
            if info["trajectory"]:
                steps = list(range(len(info["trajectory"][0])))
                payload[f"transitions/{key}/{name}/trajectories"] = wandb.plot.line_series(
                    xs=steps,
                    ys=info["trajectory"],
                    keys=[f"w{i}" for i in range(len(info["trajectory"]))],
                    title=f"{name} weight codes ({key})",
                    xname="step in stage",
                )
        if payload:
            log_wandb(trainer, payload)

    def transition_counts(self) -> dict[str, dict[str, Tensor]]:
        """Finished stages' counts: ``{stage: {layer: C [L, L]}}`` (int64 tensors)."""
        return {
            key: {name: torch.tensor(info["counts"], dtype=torch.int64) for name, info in res["layers"].items()}
            for key, res in self.results.items()
        }

    # ----------------------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "stages": [asdict(s) for s in self.stages],
            "every_n_steps": self.every_n_steps,
            "results": self.results,
            "counters": {k: {n: c.state_dict() for n, c in v.items()} for k, v in self._counters.items()},
            "samples": dict(self._samples),
            "previous": None if self._previous is None else {n: c.cpu() for n, c in self._previous.items()},
            "trajectories": {k: {n: [t.cpu() for t in v] for n, v in d.items()} for k, d in self._trajectories.items()},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = resolve_stages(state_dict.get("stages", []) or "paper")
        if saved != self.stages:
            raise ValueError(
                f"checkpoint was written with stages {[s.name for s in saved]} but this monitor has "
                f"{[s.name for s in self.stages]}; resume with the same stages."
            )
        if self._layers:
            self._restore(state_dict, self._indices[self._layers[0][0]].device)
        else:
            self._pending = state_dict

    def _restore(self, state: dict[str, Any], device: torch.device) -> None:
        qmax = {name: layer.qmax for name, layer in self._layers}
        self.results = dict(state.get("results", {}))
        self._counters = {}
        for key, layers in state.get("counters", {}).items():
            self._counters[key] = {}
            for name, st in layers.items():
                counter = TransitionCounter(qmax[name]).to(device)
                counter.load_state_dict(st)
                self._counters[key][name] = counter
        self._samples = dict(state.get("samples", {}))
        prev = state.get("previous")
        self._previous = None if prev is None else {n: c.to(device) for n, c in prev.items()}
        self._trajectories = {
            k: {n: [t.to(device) for t in v] for n, v in d.items()} for k, d in state.get("trajectories", {}).items()
        }
