"""Where a recipe run keeps its files, so that no run overwrites another's and a crash is recorded as one.

* **Run folder.** With W&B it is the W&B run's own folder (``.../wandb/offline-run-*``: a new one per run); with a
  ``CSVLogger`` or ``TensorBoardLogger`` it is the logger's ``log_dir`` (``.../version_N``); without a logger it is
  ``default_root_dir/version_N``, a new version per run (:func:`versioned_folder`).
* **Refusal.** A logger folder that already holds files (a fixed ``version`` used twice) is refused before the
  logger starts (:func:`check_run_folder_is_free`), since Lightning would delete that run's ``metrics.csv``.
* **Config.** The LightningCLI config is saved as ``config.yaml`` in the run folder (:class:`RunConfigCallback`),
  never over an existing one.
* **Failure.** A run that raises after its logger started is marked: ``quest_failed.json`` next to the run summary,
  and the W&B run finishes with exit code 1, so that ``wandb sync`` shows it as failed (:func:`mark_failed`); a run
  that completes finishes its W&B run with exit code 0 (:func:`finish_wandb`).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import traceback
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from quest_lightning.lightning.callbacks.base import run_dir
from quest_lightning.report.inputs import FAILED_FILE

__all__ = [
    "CONFIG_FILE",
    "FAILED_FILE",
    "RUN_FOLDER_VAR",
    "RunConfigCallback",
    "RunFolderInUseError",
    "check_run_folder_is_free",
    "finish_wandb",
    "mark_failed",
    "run_folder",
    "versioned_folder",
]

CONFIG_FILE = "config.yaml"
"""The LightningCLI config of a run, in its run folder."""
RUN_FOLDER_VAR = "QUEST_RUN_FOLDER"
"""The versioned folder chosen by rank zero of a run without a logger; processes it starts use the same one."""
_VERSION = re.compile(r"^version_(\d+)$")


class RunFolderInUseError(FileExistsError):
    """A run was pointed at a folder that holds another run's files."""


def run_folder(trainer: pl.Trainer) -> Path:
    """The folder of this run on rank zero: the W&B run's folder, else the logger's ``log_dir`` (or ``save_dir``),
    else ``default_root_dir``. Starts the W&B run if it has not started."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            return Path(logger.experiment.dir).parent  # .../wandb/offline-run-*; W&B's files/ is below it
    return Path(run_dir(trainer))


def versioned_folder(root: str | os.PathLike) -> Path:
    """``root/version_N`` with ``N`` one more than the highest existing ``version_*`` (0 when there is none).

    A ``root`` that is itself a run's ``version_N`` folder (a run started again from the ``config.yaml`` it saved)
    counts from its parent. Rank zero chooses; the processes it starts (``DDP`` with Lightning's launcher) read its
    choice from :data:`RUN_FOLDER_VAR`.
    """
    if rank_zero_only.rank != 0 and os.environ.get(RUN_FOLDER_VAR):
        return Path(os.environ[RUN_FOLDER_VAR])
    root = Path(root)
    if _VERSION.match(root.name) and (root / CONFIG_FILE).is_file():
        root = root.parent
    taken = [int(m.group(1)) for p in (root.iterdir() if root.is_dir() else ()) if (m := _VERSION.match(p.name))]
    folder = root / f"version_{max(taken) + 1 if taken else 0}"
    os.environ[RUN_FOLDER_VAR] = str(folder)
    return folder


def check_run_folder_is_free(trainer: pl.Trainer) -> None:
    """Refuses (on rank zero) a ``CSVLogger``/``TensorBoardLogger`` folder that already holds files.

    Call it before the run starts its loggers: creating a CSV experiment deletes the ``metrics.csv`` it finds.

    Raises:
        RunFolderInUseError: naming the folder, what it holds and how to choose another.
    """
    if rank_zero_only.rank != 0:
        return
    for logger in trainer.loggers:
        if not isinstance(logger, (CSVLogger, TensorBoardLogger)):
            continue
        folder = Path(logger.log_dir)
        held = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        if held:
            shown = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
            raise RunFolderInUseError(
                f"the run folder {folder} already holds a run ({shown}); this run would overwrite its files "
                f"(Lightning deletes its metrics.csv). Leave the logger's version unset so that it takes the next "
                f"one (--trainer.logger.init_args.version null), give another version, name or save_dir, or move "
                f"that run away."
            )


class RunConfigCallback(SaveConfigCallback):
    """Saves the LightningCLI config as ``config.yaml`` in the run folder (:func:`run_folder`), on rank zero.

    Unlike Lightning's callback, which writes into ``trainer.log_dir`` (the shared ``save_dir`` for W&B, where each
    run replaced the last one's file), this one writes into the run's own folder and never overwrites a file.

    Raises:
        RunFolderInUseError: on every rank, if the run folder already has a config.
    """

    path: Path | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        path = run_folder(trainer) / self.config_filename if trainer.is_global_zero else None
        taken = trainer.strategy.broadcast(str(path) if path is not None and path.exists() else None)
        if taken is not None:
            raise RunFolderInUseError(f"{taken} exists: this run folder already holds a run's config; not replaced.")
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, str(path), skip_none=False, overwrite=False, multifile=self.multifile)
            self.path = path
        self.already_saved = trainer.strategy.broadcast(True)


def _logger_started(trainer: pl.Trainer) -> bool:
    return any(getattr(logger, "_experiment", None) is not None for logger in trainer.loggers)


def mark_failed(trainer: pl.Trainer | None, error: BaseException, stage: str) -> Path | None:
    """Records on rank zero that the run raised ``error``, if its logger had started (or, without a logger, its run
    folder exists): writes ``quest_failed.json`` next to the run summary and finishes each W&B run with exit
    code 1. Failures of the marking itself are reported, never raised over ``error``.

    Args:
        trainer: the run's Trainer (None when it was never built: nothing to mark).
        error: what the run raised.
        stage: the subcommand that failed (``fit``, ``validate``, ...).

    Returns:
        The marker file, or None when nothing was marked.
    """
    if trainer is None or rank_zero_only.rank != 0 or isinstance(error, RunFolderInUseError):
        return None
    folder = Path(run_dir(trainer))
    if not (_logger_started(trainer) or (not trainer.loggers and folder.is_dir())):
        return None
    marker = folder / FAILED_FILE
    record: dict[str, Any] = {
        "status": "interrupted" if isinstance(error, (KeyboardInterrupt, SystemExit)) else "failed",
        "stage": stage,
        "error": type(error).__name__,
        "message": str(error),
        "epoch": trainer.current_epoch,
        "global_step": trainer.global_step,
        "time": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "traceback": traceback.format_exception(type(error), error, error.__traceback__),
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(record, indent=2), encoding="utf-8")
    except OSError as err:
        print(f"quest-lightning: could not write {marker}: {err}")
        marker = None
    finish_wandb(trainer, exit_code=1)
    return marker


def finish_wandb(trainer: pl.Trainer | None, exit_code: int = 0) -> None:
    """Finishes (on rank zero) every W&B run of ``trainer`` that has started, with ``exit_code``: 0 when the run
    completed, 1 when it failed. A later W&B logger in the same process then starts a new run instead of reusing
    this one. Errors of W&B are printed, not raised."""
    if trainer is None or rank_zero_only.rank != 0:
        return
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            try:
                logger.experiment.finish(exit_code=exit_code)
            except Exception as err:  # a run's own error matters more than the logger's
                print(f"quest-lightning: could not finish the W&B run: {type(err).__name__}: {err}")
