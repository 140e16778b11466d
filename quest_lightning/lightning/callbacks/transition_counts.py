"""The transition part of the run's counts: level → level moves of every quantized layer's codes between optimizer
steps, per stage, with the samples those steps saw, and the weights followed step by step."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from quest_lightning.functional.grid import level_codes
from quest_lightning.lightning.callbacks.base import (
    Part,
    batch_size_of,
    compute_quietly,
    load_metric_state,
    log_scalars,
    log_wandb,
    metric_state,
    world_size,
)
from quest_lightning.lightning.callbacks.stages import (
    Stage,
    TransitionSettings,
    stages_past_max_steps,
    unrunnable_stages,
)
from quest_lightning.metrics import TransitionCounter, transition_summary
from quest_lightning.summary import LayerTransitions, TransitionStage

__all__ = ["TransitionCounts"]


class TransitionCounts(Part):
    """Counts transitions inside the stages of its :class:`~quest_lightning.lightning.callbacks.stages.
    TransitionSettings`. One observed step's transition goes from the codes before its first batch to the codes
    after the optimizer step; its samples are every batch of the step (gradient accumulation), on every rank.

    Attributes:
        results: Finished stages, ``{stage key: TransitionStage}``.
        left_out: Preset stages that cannot run in this run, with the reason.
    """

    what = "transition stages"
    owner = "WeightTransitionMonitor"

    def __init__(self, counts: Any) -> None:
        super().__init__(counts)
        self.results: dict[str, TransitionStage] = {}
        self.left_out: dict[str, str] = {}
        self.runnable: tuple[Stage, ...] | None = None
        self.indices: dict[str, Tensor] = {}
        self._counters: dict[str, dict[str, TransitionCounter]] = {}
        self._epochs: dict[str, int] = {}
        self._samples: dict[str, int] = {}
        self._trajectories: dict[str, dict[str, list[Tensor]]] = {}
        self._previous: dict[str, Tensor] | None = None
        self._seen_step: int | None = None  # the global step after the last training batch
        self._since_step = 0  # samples of the batches since the last optimizer step (gradient accumulation)

    @property
    def layers(self) -> list[tuple[str, Any]]:
        return self.counts.layers

    def bind(self, pl_module: pl.LightningModule) -> None:
        """Draw the followed weights (once per settings; CPU indices)."""
        if self.settings is None:
            return
        gen = torch.Generator().manual_seed(self.settings.seed)
        for name, layer in self.layers:
            if name not in self.indices:
                k = min(self.settings.trajectories, layer.weight.numel())
                self.indices[name] = torch.randperm(layer.weight.numel(), generator=gen)[:k]

    def claim(self, driver: Any, settings: TransitionSettings, priority: int) -> None:
        before = self.settings
        super().claim(driver, settings, priority)
        if self.settings != before:
            self.indices = {}
            self.bind(None)  # type: ignore[arg-type]

    # --- hooks (called by the driver) -------------------------------------------------------------------------------
    def train_start(self, trainer: pl.Trainer) -> None:
        """Refuse (explicit) or leave out (preset) the stages that can never run; finish stale stages."""
        s: TransitionSettings = self.settings
        batches = float(trainer.num_training_batches)
        bad = unrunnable_stages(s.stages, batches=batches, max_epochs=trainer.max_epochs)
        if bad and (s.preset is None or len(bad) == len(s.stages)):
            raise ValueError("; ".join(bad.values()) + ". A stage that can never run would give no result.")
        if bad:
            rank_zero_warn(f"transition stages left out of stages={s.preset!r}: " + "; ".join(bad.values()) + ".")
        late = stages_past_max_steps(
            s.stages, batches=batches, max_steps=trainer.max_steps, accumulate=self._accumulate(trainer)
        )
        if late:
            rank_zero_warn(
                f"transition stages {late} start after max_steps={trainer.max_steps}: they run only if this run is "
                "resumed with more steps."
            )
        self.left_out = bad
        self.runnable = tuple(st for st in s.stages if st.name not in bad)
        self._seen_step = trainer.global_step  # also on a resume mid-epoch, where Lightning skips the epoch start
        self._finish_stale(trainer)

    def epoch_start(self, trainer: pl.Trainer) -> None:
        self._seen_step, self._since_step = trainer.global_step, 0
        self._finish_stale(trainer)

    def _finish_stale(self, trainer: pl.Trainer) -> None:
        """Stages still open from an earlier epoch (a checkpoint taken at its last batch) are finished as they were,
        so that their counts never join this epoch's."""
        stale = [k for k, e in self._epochs.items() if e != trainer.current_epoch]
        for key in stale:
            self.finish(trainer, key)
        if stale:
            self._previous = None

    def batch_start(self, trainer: pl.Trainer, batch_idx: int) -> None:
        if self._seen_step is None:
            self._seen_step = trainer.global_step
        if self._active(trainer, batch_idx) is None:
            self._previous = None
        elif self._previous is None:
            self._previous = self._codes()

    def batch_end(self, trainer: pl.Trainer, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._since_step += batch_size_of(batch) * world_size(trainer)
        if trainer.global_step == self._seen_step:
            return  # no optimizer step on this batch (gradient accumulation): its samples join the next step
        self._seen_step = trainer.global_step
        samples, self._since_step = self._since_step, 0
        stage = self._active(trainer, batch_idx)
        if stage is None or self._previous is None:
            return
        self.counts.check_finite(trainer, outputs, batch_idx)
        key = stage.key(trainer.current_epoch)
        counters = self._counters.setdefault(key, {})
        trajectories = self._trajectories.setdefault(key, {})
        self._epochs[key] = trainer.current_epoch
        current = self._codes()
        for name, layer in self.layers:
            now, before = current[name], self._previous[name].to(current[name].device)
            if name not in counters:
                counters[name] = TransitionCounter(layer.qmax)
                trajectories[name] = [self._followed(name, before)]
            counter = counters[name]
            if counter.device != now.device:
                counter.to(now.device)
            counter.update(before, now)
            trajectories[name].append(self._followed(name, now))
        self._samples[key] = self._samples.get(key, 0) + samples
        batches = trainer.num_training_batches
        last_batch = batch_idx + 1 >= stage.last or batch_idx + 1 >= batches
        self._previous = current if self.settings.every_n_steps == 1 and not last_batch else None
        if last_batch:
            note = None
            if math.isfinite(stage.last) and stage.last > batches:
                note = f"cut short by the end of the epoch after batch {batch_idx + 1} (the stage asked for batches "
                note += f"{stage.first}..{stage.last})"
            self.finish(trainer, key, note)

    def epoch_end(self, trainer: pl.Trainer) -> None:
        for key in list(self._counters):
            self.finish(trainer, key)  # stages cut short by the end of the epoch (e.g. max_steps)
        self._previous = None

    # ----------------------------------------------------------------------------------------------------------------
    def _accumulate(self, trainer: pl.Trainer) -> int:
        return max(int(getattr(trainer, "accumulate_grad_batches", 1) or 1), 1)

    def _active(self, trainer: pl.Trainer, batch_idx: int) -> Stage | None:
        """The stage whose observed optimizer steps include this batch. With gradient accumulation over ``k``
        batches, batches ``k·g+1 .. k·g+k`` (1-based) make up optimizer step ``g``; one step in ``every_n_steps``
        is observed, counting from the stage's first step."""
        batch = batch_idx + 1
        k = self._accumulate(trainer)
        for stage in self.runnable if self.runnable is not None else self.settings.stages:
            first_step = (stage.first - 1) // k
            every = self.settings.every_n_steps
            if stage.contains(trainer.current_epoch, batch) and (batch_idx // k - first_step) % every == 0:
                return stage
        return None

    def _codes(self) -> dict[str, Tensor]:
        return {name: layer.current_codes() for name, layer in self.layers}

    def _followed(self, name: str, codes: Tensor) -> Tensor:
        return codes.flatten()[self.indices[name].to(codes.device)]

    def finish(self, trainer: pl.Trainer, key: str, note: str | None = None) -> TransitionStage | None:
        """Close stage ``key``: its :class:`~quest_lightning.summary.TransitionStage`, logged (once)."""
        counters = self._counters.pop(key, None)
        epoch = self._epochs.pop(key, trainer.current_epoch)
        trajectories = self._trajectories.pop(key, {})
        samples = self._samples.pop(key, 0)
        if not counters:
            return None
        layers = {}
        for name, counter in counters.items():
            counts = compute_quietly(counter)
            traj = torch.stack([t.cpu() for t in trajectories[name]]).T.tolist() if trajectories.get(name) else []
            layers[name] = LayerTransitions(
                qmax=counter.qmax,
                counts=tuple(map(tuple, counts.cpu().tolist())),
                steps=int(counter.steps),
                trajectory=tuple(map(tuple, traj)),
                **transition_summary(counts)._asdict(),
            )
        steps = max(info.steps for info in layers.values())
        result = TransitionStage(stage=key, epoch=epoch, steps=steps, samples=samples, layers=layers, note=note)
        self.results[key] = result
        self._log(trainer, result)
        return result

    def _log(self, trainer: pl.Trainer, result: TransitionStage) -> None:
        scalars = {}
        for name, info in result.layers.items():
            for stat, value in info.fractions().items():
                if value is not None:
                    scalars[f"transitions/{result.stage}/{name}/{stat}"] = value
        log_scalars(trainer, scalars)
        try:
            import wandb
        except ImportError:  # pragma: no cover - wandb is a dependency
            return
        payload: dict[str, Any] = {}
        key = result.stage
        for name, info in result.layers.items():
            codes = list(level_codes(info.qmax))
            pairs = [(i, j) for i in range(len(codes)) for j in range(len(codes)) if i != j]
            data = [[f"{codes[i]:+d}→{codes[j]:+d}", info.counts[i][j]] for i, j in pairs]
            table = wandb.Table(data=data, columns=["transition", "count"])
            payload[f"transitions/{key}/{name}/histogram"] = wandb.plot.bar(
                table, "transition", "count", title=f"{name} transitions ({key})"
            )
            if info.trajectory:
                payload[f"transitions/{key}/{name}/trajectories"] = wandb.plot.line_series(
                    xs=list(range(len(info.trajectory[0]))),
                    ys=[list(t) for t in info.trajectory],
                    keys=[f"w{i}" for i in range(len(info.trajectory))],
                    title=f"{name} weight codes ({key})",
                    xname="step in stage",
                )
        if payload:
            log_wandb(trainer, payload)

    # --- checkpoint -------------------------------------------------------------------------------------------------
    @staticmethod
    def initial_state(settings: TransitionSettings) -> dict[str, Any]:
        """The state of a count that has seen nothing (what a callback saves before ``setup``)."""
        empty: dict[str, Any] = {"results": {}, "counters": {}, "epochs": {}, "samples": {}, "trajectories": {}}
        return {"settings": settings.to_state(), "since_step": 0, "previous": None, **empty}

    @staticmethod
    def check_state(state: dict[str, Any], settings: TransitionSettings) -> None:
        """Refuse a checkpoint written with other stages.

        Raises:
            ValueError: The stages or ``every_n_steps`` differ; the message names both.
        """
        saved = TransitionSettings.from_state(state["settings"])
        if saved.stages != settings.stages or saved.every_n_steps != settings.every_n_steps:
            raise ValueError(
                f"checkpoint was written with stages {[s.name for s in saved.stages]} (every_n_steps="
                f"{saved.every_n_steps}) but this run counts {[s.name for s in settings.stages]} (every_n_steps="
                f"{settings.every_n_steps}); resume with the same stages."
            )

    def state_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings.to_state(),
            "results": {k: r.to_dict() for k, r in self.results.items()},
            "counters": {k: {n: metric_state(c) for n, c in v.items()} for k, v in self._counters.items()},
            "epochs": dict(self._epochs),
            "samples": dict(self._samples),
            "since_step": self._since_step,
            "previous": None if self._previous is None else {n: c.cpu() for n, c in self._previous.items()},
            "trajectories": {k: {n: [t.cpu() for t in v] for n, v in d.items()} for k, d in self._trajectories.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.check_state(state, self.settings)
        qmax = {name: layer.qmax for name, layer in self.layers}
        self.results = {k: TransitionStage.from_dict(r) for k, r in state["results"].items()}
        self._counters = {
            key: {n: load_metric_state(TransitionCounter(qmax[n]), st, self.rank) for n, st in layers.items()}
            for key, layers in state["counters"].items()
        }
        self._epochs = dict(state["epochs"])
        self._samples = dict(state["samples"])
        self._since_step = int(state["since_step"])
        self._previous = state["previous"]
        self._trajectories = {k: {n: list(v) for n, v in d.items()} for k, d in state["trajectories"].items()}
