"""The transition part of the run's counts: level → level moves of every quantized layer's codes between optimizer
steps, per stage, with the samples those steps saw, the weights followed step by step, and the writes per cell.

**Without an extra quantizer pass.** The forward pass computes the codes anyway (``layer.codes``), so a step's
transition is counted against the codes the next forward pass made, read just before the next optimizer step: the
codes before step :math:`s+1` are the codes after step :math:`s`. A layer that did not run since the last step has no
fresh codes and gets them from its weights (:meth:`~quest_lightning.nn.layers.QuantLayerMixin.current_codes`), as
does the step no forward pass follows inside the stage: the last observed step of a stage and of an epoch, and a step
in flight when a checkpoint is written. Per step, one comparison finds the changed weights, the histogram covers only
those, and frozen = total − changed (:func:`~quest_lightning.metrics.transition_changes`). ``TransitionCounts.fast =
False`` selects the reference path (codes recomputed from the weights before and after every observed step, a
histogram over every weight), which the tests compare with.

**Writes per cell** (``writes_per_cell``): an ``int32`` counter per weight, on the weights' device, adds the changed
mask of every observed step, in the same pass. Every DDP rank holds the same weights, so it is never summed across
ranks.
"""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from quest_lightning.devices.endurance import count_writes, write_stats
from quest_lightning.lightning.callbacks.base import (
    Part,
    compute_quietly,
    load_metric_state,
    metric_state,
    sum_over_ranks,
)
from quest_lightning.lightning.callbacks.stages import (
    Stage,
    TransitionSettings,
    stages_past_max_steps,
    unrunnable_stages,
)
from quest_lightning.lightning.callbacks.transition_log import log_stage
from quest_lightning.metrics import TransitionCounter, transition_changes, transition_summary
from quest_lightning.summary import LayerTransitions, LayerWrites, TransitionStage, WritesPerCell

__all__ = ["TransitionCounts"]


_PERMUTE_UP_TO = 1 << 20  # below this many weights a permutation is cheap; above, draws rejecting repeats are


def draw_without_replacement(n: int, k: int, generator: torch.Generator) -> Tensor:
    """``k`` distinct indices drawn uniformly from ``0 .. n - 1`` (an ordered sample without replacement, ``int64``).

    A permutation's first ``k`` for small ``n`` or a large sample; otherwise uniform draws with the repeats rejected,
    which give the same distribution (every ordered sample of ``k`` distinct indices equally likely) in ``O(k)``
    rather than the ``O(n)`` of a permutation of every weight (a third of a second for 33 M weights).
    """
    if n <= _PERMUTE_UP_TO or 2 * k >= n:
        return torch.randperm(n, generator=generator)[:k]
    chosen: dict[int, None] = {}
    while len(chosen) < k:
        for i in torch.randint(n, (2 * (k - len(chosen)),), generator=generator).tolist():
            chosen.setdefault(i)
            if len(chosen) == k:
                break
    return torch.tensor(list(chosen), dtype=torch.int64)


class TransitionCounts(Part):
    """Counts transitions inside the stages of its :class:`~quest_lightning.lightning.callbacks.stages.
    TransitionSettings`. One observed step's transition goes from the codes before its first batch to the codes
    after the optimizer step; its samples are every batch of the step (gradient accumulation), on every rank.

    Attributes:
        results: Finished stages, ``{stage key: TransitionStage}``.
        left_out: Preset stages that cannot run in this run, with the reason.
        writes: ``{layer: int32 writes per cell}`` when the settings count them, else ``None``.
        writes_record: The writes per cell as a record, updated at every stage and epoch end.
        fast: class attribute; ``False`` selects the reference path (see the module docstring).
    """

    what = "transition stages"
    owner = "WeightTransitionMonitor"
    fast = True

    def __init__(self, counts: Any) -> None:
        super().__init__(counts)
        self.results: dict[str, TransitionStage] = {}
        self.left_out: dict[str, str] = {}
        self.runnable: tuple[Stage, ...] | None = None
        self.indices: dict[str, Tensor] = {}
        self.writes: dict[str, Tensor] | None = None
        self.writes_record: WritesPerCell | None = None
        self._write_steps = 0
        self._steps_per_epoch = math.inf
        self._counters: dict[str, dict[str, TransitionCounter]] = {}
        self._epochs: dict[str, int] = {}
        self._samples: dict[str, int] = {}
        self._trajectories: dict[str, dict[str, list[Tensor]]] = {}
        self._masks: dict[str, Tensor] = {}  # fast path: each layer's changed mask, its memory reused every step
        self._previous: dict[str, Tensor] | None = None  # reference path: the codes before the step in flight
        self._window: Stage | None = None  # fast path: the stage of the batch in flight
        self._before: tuple[dict[str, Tensor], dict[str, Tensor] | None] | None = None  # codes (and levels) before
        self._awaiting: tuple[str, dict[str, Tensor], dict[str, Tensor] | None] | None = None  # a step's key, before
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
                self.indices[name] = draw_without_replacement(layer.weight.numel(), k, gen)

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
        self._steps_per_epoch = math.ceil(batches / self._accumulate(trainer)) if math.isfinite(batches) else math.inf
        self.counts.note_padding(trainer, "train")
        self._seen_step = trainer.global_step  # also on a resume mid-epoch, where Lightning skips the epoch start
        self.counts.taps.mark("step")
        self._finish_stale(trainer)

    def epoch_start(self, trainer: pl.Trainer) -> None:
        self._seen_step, self._since_step = trainer.global_step, 0
        self.counts.taps.mark("step")
        self._finish_stale(trainer)

    def _finish_stale(self, trainer: pl.Trainer) -> None:
        """Stages still open from an earlier epoch (a checkpoint taken at its last batch) are finished as they were,
        so that their counts never join this epoch's."""
        stale = [k for k, e in self._epochs.items() if e != trainer.current_epoch]
        for key in stale:
            self.finish(trainer, key)
        if stale:
            self._previous = self._before = None

    def batch_start(self, trainer: pl.Trainer, batch_idx: int) -> None:
        self.counts.open_batch(trainer, "train", batch_idx)
        if self._seen_step is None:
            self._seen_step = trainer.global_step
        self._window = self._active(trainer, batch_idx)
        if self.fast:
            return
        if self._window is None:
            self._previous = None
        elif self._previous is None:
            self._previous = self._current_codes()

    def before_optimizer_step(self, trainer: pl.Trainer) -> None:
        """Fast path: the codes of this window's forward passes are the codes after the previous step (which may be
        awaiting them) and before this one (which may be observed)."""
        if not self.fast:
            return
        if self._awaiting is not None or self._window is not None:
            now = self._forward_codes()
            levels = self._resolve(trainer, now) if self._awaiting is not None else None
            self._before = (now, levels) if self._window is not None else None
        self.counts.taps.mark("step")

    def batch_end(self, trainer: pl.Trainer, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._since_step += self.counts.batch_samples()
        if trainer.global_step == self._seen_step:
            return  # no optimizer step on this batch (gradient accumulation): its samples join the next step
        self._seen_step = trainer.global_step
        samples, self._since_step = self._since_step, 0
        stage = self._active(trainer, batch_idx)
        before = self._previous if not self.fast else (self._before[0] if self._before else None)
        if stage is None or before is None:
            self._before = None
            return
        self.counts.check_finite(trainer, outputs, batch_idx)
        key = stage.key(trainer.current_epoch)
        self._epochs[key] = trainer.current_epoch
        self._samples[key] = self._samples.get(key, 0) + samples
        batches = trainer.num_training_batches
        last_batch = batch_idx + 1 >= stage.last or batch_idx + 1 >= batches
        if self.fast:
            self._awaiting, self._before = (key, before, self._before[1]), None  # type: ignore[index]
            if last_batch:  # no forward pass follows inside the stage: codes from the weights
                self._resolve(trainer, self._current_codes())
        else:
            current = self._current_codes()
            self._count(key, before, current, None)
            self._previous = current if self.settings.every_n_steps == 1 and not last_batch else None
        if last_batch:
            note = None
            if math.isfinite(stage.last) and stage.last > batches:
                note = f"cut short by the end of the epoch after batch {batch_idx + 1} (the stage asked for batches "
                note += f"{stage.first}..{stage.last})"
            self.finish(trainer, key, note)

    def epoch_end(self, trainer: pl.Trainer) -> None:
        if self._awaiting is not None:
            self._resolve(trainer, self._current_codes())
        for key in list(self._counters):
            self.finish(trainer, key)  # stages cut short by the end of the epoch (e.g. max_steps)
        self._previous = self._before = None
        self._update_writes_record(trainer)

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

    def _current_codes(self) -> dict[str, Tensor]:
        """The codes of the weights as they are now (a quantizer pass)."""
        return {name: layer.current_codes() for name, layer in self.layers}

    def _forward_codes(self) -> dict[str, Tensor]:
        """The codes of the last forward pass of every layer that ran since the last step; the others' from their
        weights (unchanged since the last step)."""
        taps = self.counts.taps
        return {name: layer.codes if taps.ran(name, "step") else layer.current_codes() for name, layer in self.layers}

    def _followed(self, name: str, codes: Tensor) -> Tensor:
        return codes.flatten()[self.indices[name].to(codes.device)]

    def _resolve(self, trainer: pl.Trainer, after: dict[str, Tensor]) -> dict[str, Tensor]:
        """Count the awaiting step's transition into ``after``; the levels after it (for the next step's)."""
        key, before, levels = self._awaiting  # type: ignore[misc]
        self._awaiting = None
        return self._count(key, before, after, levels)

    def _count(
        self, key: str, before: dict[str, Tensor], after: dict[str, Tensor], levels: dict[str, Tensor] | None
    ) -> dict[str, Tensor]:
        counters = self._counters.setdefault(key, {})
        trajectories = self._trajectories.setdefault(key, {})
        out = {}
        if self.settings.writes_per_cell and self.writes is None:
            self.writes = {n: torch.zeros(c.shape, dtype=torch.int32, device=c.device) for n, c in after.items()}
        for name, layer in self.layers:
            now, was = after[name], before[name].to(after[name].device)
            if name not in counters:
                counters[name] = TransitionCounter(layer.qmax)
                trajectories[name] = [self._followed(name, was)]
            counter = counters[name]
            if counter.device != now.device:
                counter.to(now.device)
            if self.fast:
                mask = self._masks.get(name)
                step = transition_changes(was, now, layer.qmax, None if levels is None else levels.get(name), out=mask)
                self._masks[name] = step.changed  # the mask's memory serves the next step
                self.counts.activity.offer_changes(name, was, now, step)
                counter.add(step.counts)
                out[name] = step.levels
                if self.writes is not None:
                    step.add_writes(self.writes[name])
            else:
                counter.update(was, now)
                if self.writes is not None:
                    count_writes(was, now, self.writes[name])
            trajectories[name].append(self._followed(name, now))
        self._write_steps += 1
        return out

    def _update_writes_record(self, trainer: pl.Trainer) -> None:
        if self.writes is None:
            return
        per_epoch = self._steps_per_epoch
        self.writes_record = WritesPerCell(
            step=trainer.global_step,
            steps=self._write_steps,
            epochs=self._write_steps / per_epoch if math.isfinite(per_epoch) else None,
            layers={n: LayerWrites(**write_stats(w).to_dict()) for n, w in self.writes.items()},
        )

    def finish(self, trainer: pl.Trainer, key: str, note: str | None = None) -> TransitionStage | None:
        """Close stage ``key``: its :class:`~quest_lightning.summary.TransitionStage`, logged (once). A collective
        under DDP (the samples are summed over the ranks).

        Raises:
            DegenerateRunError: A counted step was not finite (see :mod:`~quest_lightning.lightning.callbacks.guard`).
        """
        self.counts.guard.check(trainer)
        counters = self._counters.pop(key, None)
        epoch = self._epochs.pop(key, trainer.current_epoch)
        trajectories = self._trajectories.pop(key, {})
        (samples,) = sum_over_ranks(trainer, [self._samples.pop(key, 0)])
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
        self._update_writes_record(trainer)
        log_stage(trainer, result)
        return result

    # --- checkpoint -------------------------------------------------------------------------------------------------
    @staticmethod
    def initial_state(settings: TransitionSettings) -> dict[str, Any]:
        """The state of a count that has seen nothing (what a callback saves before ``setup``)."""
        empty: dict[str, Any] = {"results": {}, "counters": {}, "epochs": {}, "samples": {}, "trajectories": {}}
        return {"settings": settings.to_state(), "since_step": 0, "previous": None, "writes": None, **empty}

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
        """The counts in flight (a collective under DDP: the samples are summed over the ranks). A step awaiting the
        next forward pass's codes is counted now, from the weights."""
        if self._awaiting is not None:
            key = self._awaiting[0]
            after = self._current_codes()
            self._resolve(self.counts.trainer, after)  # type: ignore[arg-type]
            stage = next((s for s in self.runnable or self.settings.stages if s.key(self._epochs[key]) == key), None)
            chained = stage is not None and self.settings.every_n_steps == 1
            self._previous = after if chained else None
        keys = list(self._samples)
        samples = dict(zip(keys, sum_over_ranks(self.counts.trainer, [self._samples[k] for k in keys]), strict=True))
        return {
            "settings": self.settings.to_state(),
            "results": {k: r.to_dict() for k, r in self.results.items()},
            "counters": {k: {n: metric_state(c) for n, c in v.items()} for k, v in self._counters.items()},
            "epochs": dict(self._epochs),
            "samples": samples,
            "since_step": self._since_step,
            "previous": None if self._previous is None else {n: c.cpu() for n, c in self._previous.items()},
            "trajectories": {k: {n: [t.cpu() for t in v] for n, v in d.items()} for k, d in self._trajectories.items()},
            "writes": None if self.writes is None else {n: w.cpu() for n, w in self.writes.items()},
            "write_steps": self._write_steps,
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
        self._samples = {k: v if self.rank == 0 else 0 for k, v in state["samples"].items()}  # counted once
        self._since_step = int(state["since_step"]) if self.rank == 0 else 0
        self._previous = state["previous"]
        self._trajectories = {k: {n: list(v) for n, v in d.items()} for k, d in state["trajectories"].items()}
        writes = state.get("writes")
        if self.settings.writes_per_cell and writes is not None:
            device = self.layers[0][1].weight.device if self.layers else None
            self.writes = {n: w.to(device=device, dtype=torch.int32) for n, w in writes.items()}
            self._write_steps = int(state.get("write_steps", 0))
