"""A fit resumed from a checkpoint written after an epoch's last training batch validates that epoch, as the
uninterrupted run did.

A checkpoint written in ``on_train_batch_end`` of an epoch's last batch (``ModelCheckpoint(every_n_train_steps=...)``,
a job killed right after it) comes before the epoch's validation and its epoch-end hooks. Lightning 2.6 resumes from it
in the next epoch and never runs them: the epoch's validation figures (its ``val/*`` metrics, its validation AOR and
read energies) and everything logged at its end (``QuestModule``'s ``train/acc``) are missing from the resumed run.

:func:`validate_after_resume` changes the loop progress that such a checkpoint restores into the state Lightning
writes when a run stops just before the first batch of that validation, from which Lightning resumes by running the
epoch's validation and then its epoch-end hooks (the LightningModule's, every callback's, the epoch-interval
schedulers'). It is called from ``on_load_checkpoint`` of ``QuestModule`` and of the quest-lightning callbacks, before
Lightning restores the loops; it changes nothing when the validation was not due at the end of that epoch (no
validation data or steps, ``check_val_every_n_epoch`` skipping it, ``val_check_interval`` other than ``1.0``), nor for
any other checkpoint. A plateau scheduler is not stepped at the end of that epoch (Lightning does not step one in an
epoch it resumes into).

:func:`global_rng_states` and :func:`set_global_rng_states` keep the global random generators of every rank in a
checkpoint and set them back, for what draws from them (dropout masks, a rate encoder).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["global_rng_states", "set_global_rng_states", "validate_after_resume"]


def _validation_due(trainer: Any, epoch: int) -> bool:
    """Whether ``trainer`` validates at the end of ``epoch`` (0-based), as far as its settings tell before the data
    is loaded; ``False`` when it cannot tell."""
    every = getattr(trainer, "check_val_every_n_epoch", None)
    interval = getattr(trainer, "val_check_interval", None)
    try:
        enabled = bool(trainer.enable_validation)
    except (AttributeError, TypeError):
        return False
    return (
        enabled
        and isinstance(every, int)
        and every > 0
        and (epoch + 1) % every == 0
        and isinstance(interval, float)
        and interval == 1.0
        and getattr(trainer, "_val_check_time_interval", None) is None
    )


def validate_after_resume(trainer: Any, checkpoint: dict[str, Any]) -> bool:
    """Make a fit resumed from ``checkpoint`` run the validation and the epoch-end hooks of the epoch whose last
    training batch the checkpoint was written after (see the module docstring). Idempotent.

    Args:
        trainer: The Trainer that resumes (a fit: its ``state.fn`` is ``"fit"``); ``None`` changes nothing.
        checkpoint: The checkpoint dict being restored (changed in place: its ``loops["fit_loop"]`` progress).

    Returns:
        Whether the checkpoint was changed.
    """
    if trainer is None or getattr(getattr(trainer, "state", None), "fn", None) != "fit":
        return False
    try:
        fit = checkpoint["loops"]["fit_loop"]
        batches = fit["epoch_loop.batch_progress"]
        val = fit["epoch_loop.val_loop.batch_progress"]
        epochs = fit["epoch_progress"]["current"]
        done, served = batches["total"], val["total"]
        after_train_batch = done["ready"] == done["started"] == done["processed"] == done["completed"] + 1
        epoch_open = epochs["started"] == epochs["processed"] + 1
        val_idle = served["ready"] == served["started"] == served["processed"] == served["completed"]
        last = bool(batches["is_last_batch"])
        epoch = int(epochs["completed"])
    except (KeyError, TypeError):
        return False
    if not (after_train_batch and last and epoch_open and val_idle and _validation_due(trainer, epoch)):
        return False
    for progress in (batches["total"], batches["current"]):  # the batch is complete (its end hooks ran)
        progress["completed"] = progress["processed"]
    n = served["completed"]  # the validation has its first batch ready, none started
    served.update(ready=n + 1, started=n + 1, processed=n, completed=n)
    val["current"].update(ready=1, started=1, processed=0, completed=0)
    val["is_last_batch"] = False
    return True


def global_rng_states(trainer: Any, device: torch.device) -> dict[str, Any]:
    """The global random generators' states of every rank: the CPU generator's and, on a CUDA ``device``, that
    device's (what dropout masks and random encoders draw from). A collective under DDP (every rank calls it, as
    when Lightning builds a checkpoint on every rank).

    Returns:
        ``{"world_size": W, "cpu": uint8 [W, n], "cuda": uint8 [W, m]}`` on the CPU (``"cuda"`` only on CUDA).
    """
    states = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    world = int(getattr(trainer, "world_size", 1) or 1) if trainer is not None else 1
    if world > 1:
        gathered = {k: trainer.strategy.all_gather(v.to(device)).cpu() for k, v in states.items()}
    else:
        gathered = {k: v.unsqueeze(0) for k, v in states.items()}
    return {"world_size": world, **gathered}


def set_global_rng_states(saved: dict[str, Any], trainer: Any, device: torch.device) -> bool:
    """Set this rank's global generators to ``saved`` (:func:`global_rng_states`) when the run has as many ranks as
    the one that saved them. Returns whether they were set."""
    world = int(getattr(trainer, "world_size", 1) or 1) if trainer is not None else 1
    if int(saved.get("world_size", 0)) != world:
        return False
    rank = int(getattr(trainer, "global_rank", 0) or 0)
    torch.set_rng_state(saved["cpu"][rank].clone())
    if "cuda" in saved and device.type == "cuda":
        torch.cuda.set_rng_state(saved["cuda"][rank].clone(), device)
    return True
