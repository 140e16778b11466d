"""``quest-lightning sweep``: the test accuracy of a trained recipe model against device variation, per R-S pattern,
saved into its run folder so that the report draws it.

::

    quest-lightning sweep RUN_DIR|CHECKPOINT --sigma 0.01 0.03 0.05 [--vary d2d_sigma] [--draws N]
                          [--patterns all|best|INDEX ...] [--data.KEY VALUE ...] [--limit-test N] [--force]

The model is :class:`~quest_lightning.lightning.vgg_module.QuestVGG` loaded from the checkpoint (a run folder means
its last checkpoint: ``last.ckpt``, else the newest), the test split comes from the recipe's
:class:`~quest_lightning.lightning.data.CIFAR10DataModule` with the ``data`` options of the run's saved
``config.yaml`` (each ``--data.KEY VALUE`` replaces one), and the patterns are those the run priced on the device
(its ``quest_summary.json``). :func:`~quest_lightning.hardware.variation_sweep` runs the model on drawn arrays; the
result goes to ``variation_sweep.json`` next to the run summary (:data:`~quest_lightning.hardware.SWEEP_FILE`;
an existing one is kept unless ``--force``) and the report is built again.

Where the files of a run are (:func:`locate_run`): with a ``CSVLogger`` or no logger, the summary, ``config.yaml``
and ``checkpoints/`` share the run folder (``version_N``); with W&B, the summary is in
``SAVE_DIR/wandb/offline-run-*-ID/files``, the config one level up, and the checkpoints in
``SAVE_DIR/PROJECT/ID/checkpoints``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["RunFiles", "locate_run", "parse_data_options", "priced_states", "sweep_main"]

_WANDB_RUN = re.compile(r"^(?:offline-)?run-\d{8}_\d{6}-(?P<id>[A-Za-z0-9]+)$")
_DATA_OPTION = re.compile(r"^--data\.(?P<key>\w+)(?:=(?P<value>.*))?$", flags=re.S)
CHECKPOINT_SUFFIX = ".ckpt"
LAST_CHECKPOINT = "last.ckpt"


class SweepError(Exception):
    """Something the command cannot do, with a message that says why and what to do instead."""


@dataclass(frozen=True)
class RunFiles:
    """The files of one run that the sweep reads and writes.

    Attributes:
        checkpoint: The checkpoint the model is loaded from.
        folder: Where the sweep is saved: the folder of the run summary when there is one.
        summary: The run summary (``None``: the run has none; the patterns must then be ``all``).
        config: The LightningCLI config saved with the run (``None``: none found; the data options come from the
            command line).
    """

    checkpoint: Path
    folder: Path
    summary: Path | None
    config: Path | None


def _newest_checkpoint(found: Sequence[Path]) -> Path | None:
    last = [p for p in found if p.name == LAST_CHECKPOINT]
    pool = last or list(found)
    return max(pool, key=lambda p: (p.stat().st_mtime, str(p))) if pool else None


def _wandb_checkpoints(summary_folder: Path) -> list[Path]:
    """The checkpoints of a W&B run whose summary lies in ``SAVE_DIR/wandb/offline-run-*-ID/files``."""
    for folder in (summary_folder, *summary_folder.parents[:2]):
        match = _WANDB_RUN.match(folder.name)
        if match and folder.parent.name == "wandb":
            save_dir = folder.parent.parent
            return sorted(save_dir.glob(f"*/{match['id']}/checkpoints/*{CHECKPOINT_SUFFIX}"))
    return []


def _summary_near(checkpoint: Path) -> Path | None:
    """The run summary of a checkpoint: in its run folder (``version_N/checkpoints/x.ckpt``), or for W&B
    (``SAVE_DIR/PROJECT/ID/checkpoints/x.ckpt``) in ``SAVE_DIR/wandb/*-ID/files``."""
    from quest_lightning.summary import SUMMARY_FILE

    for folder in checkpoint.parents[:2]:
        if (folder / SUMMARY_FILE).is_file():
            return folder / SUMMARY_FILE
    if checkpoint.parent.name == "checkpoints" and len(checkpoint.parents) > 3:
        run_id, save_dir = checkpoint.parents[1].name, checkpoint.parents[3]
        found = sorted(save_dir.glob(f"wandb/*-{run_id}/files/{SUMMARY_FILE}"))
        return found[-1] if found else None
    return None


def locate_run(target: str | Path, run_dir: str | Path | None = None) -> RunFiles:
    """The checkpoint, summary, config and output folder of a run, from its folder or its checkpoint.

    Args:
        target: A run folder (searched recursively for the newest ``quest_summary.json``; the run's last checkpoint
            is looked for next to it, then below ``target``) or a checkpoint file.
        run_dir: For a checkpoint ``target``: the run folder whose summary it belongs to, when it is not found next
            to the checkpoint (the sweep is saved next to that summary, else into ``run_dir``).

    Raises:
        SweepError: ``target`` does not exist, or no checkpoint belongs to it.
    """
    from quest_lightning.report.inputs import find_summary

    target = Path(target)
    if target.is_file():
        checkpoint = target
        summary = find_summary(run_dir) if run_dir is not None and _has_summary(run_dir) else _summary_near(target)
    elif target.is_dir():
        summary = find_summary(target) if _has_summary(target) else None
        found: list[Path] = []
        if summary is not None:
            found = sorted(summary.parent.rglob(f"*{CHECKPOINT_SUFFIX}")) or _wandb_checkpoints(summary.parent)
        found = found or sorted(target.rglob(f"*{CHECKPOINT_SUFFIX}"))
        checkpoint = _newest_checkpoint(found)
        if checkpoint is None:
            raise SweepError(
                f"no checkpoint ({CHECKPOINT_SUFFIX}) belongs to {target}: looked below it"
                + (f" and in the W&B run's checkpoint folder of {summary}" if summary is not None else "")
                + ". Pass the checkpoint's path instead of the run folder."
            )
    else:
        raise SweepError(f"{target} does not exist: give a run folder or a checkpoint ({CHECKPOINT_SUFFIX}) file")
    if summary is not None:
        folder = summary.parent
    elif run_dir is not None:
        folder = Path(run_dir)
    else:
        folder = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    configs = [p / "config.yaml" for p in (folder, folder.parent)]
    config = next((p for p in configs if p.is_file()), None)
    return RunFiles(checkpoint, folder, summary, config)


def _has_summary(folder: str | Path) -> bool:
    from quest_lightning.report.inputs import find_summary

    try:
        find_summary(folder)
    except FileNotFoundError:
        return False
    return True


def parse_data_options(tokens: Sequence[str]) -> dict[str, Any]:
    """``--data.KEY VALUE`` and ``--data.KEY=VALUE`` tokens as ``{KEY: value}``, each value read as YAML (``null``,
    ``64``, ``true``, a path).

    Raises:
        SweepError: A token that is not a ``--data.KEY`` option, or an option without a value.
    """
    import yaml

    out: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        match = _DATA_OPTION.match(tokens[i])
        if match is None:
            raise SweepError(f"unrecognized argument {tokens[i]!r} (data options are spelt --data.KEY VALUE)")
        value = match["value"]
        if value is None:
            if i + 1 >= len(tokens):
                raise SweepError(f"{tokens[i]} needs a value")
            i += 1
            value = tokens[i]
        out[match["key"]] = yaml.safe_load(value)
        i += 1
    return out


def priced_states(labels: Sequence[str]) -> list[tuple[int, ...]]:
    """The state tuples of R-S pattern labels (``"-1→R0, 0→R3, +1→R6"`` → ``(0, 3, 6)``), checked by writing each
    back with :func:`~quest_lightning.devices.patterns.format_mapping`.

    Raises:
        SweepError: A label that is not a pattern's.
    """
    from quest_lightning.devices.patterns import format_mapping

    out = []
    for label in labels:
        states = tuple(int(s) for s in re.findall(r"→R(\d+)", label))
        if not states or format_mapping(states) != label:
            raise SweepError(f"{label!r} is not an R-S pattern label such as '-1→R0, 0→R3, +1→R6'")
        out.append(states)
    return out


def _choose_patterns(choice: Sequence[str], files: RunFiles, device_name: str) -> list[tuple[int, ...]] | None:
    """The patterns to sweep: ``all`` priced, the ``best`` (the one the run reported its write energy at) or the
    priced patterns at the given indices; ``None`` (every pattern of the model's width) for ``all`` without a
    summary."""
    from quest_lightning.summary import read_summary

    pricing = None
    if files.summary is not None:
        summary = read_summary(files.summary)
        pricing = next((d for d in summary.devices if d.name == device_name), None)
    if pricing is None:
        if list(choice) == ["all"]:
            return None
        where = f"{files.summary} prices no device {device_name!r}" if files.summary else "the run has no summary"
        raise SweepError(f"--patterns {' '.join(choice)} needs the patterns the run priced, but {where}; use all")
    priced = priced_states(pricing.patterns)
    if list(choice) == ["all"]:
        return priced
    if list(choice) == ["best"]:
        if not pricing.write:
            raise SweepError(f"the run reported no write energy on {device_name}, so it has no best pattern")
        return [priced[list(pricing.write.values())[-1].pattern_index]]
    try:
        indices = [int(c) for c in choice]
    except ValueError:
        raise SweepError(f"--patterns takes all, best or pattern indices, got {' '.join(choice)}") from None
    bad = [i for i in indices if not 0 <= i < len(priced)]
    if bad:
        raise SweepError(f"pattern indices {bad} are out of range: the run priced {len(priced)} patterns (0 to "
                         f"{len(priced) - 1}) on {device_name}")  # fmt: skip
    return [priced[i] for i in indices]


def _data_options(files: RunFiles, overrides: dict[str, Any]) -> dict[str, Any]:
    import yaml

    options: dict[str, Any] = {}
    if files.config is not None:
        saved = yaml.safe_load(files.config.read_text(encoding="utf-8")) or {}
        data = saved.get("data") if isinstance(saved, dict) else None
        if isinstance(data, dict):
            options = dict(data.get("init_args", data)) if "class_path" in data else dict(data)
    options.update(overrides)
    return options


def _test_batches(options: dict[str, Any], limit: int | None, device: Any) -> list[tuple[Any, Any]]:
    """The test split as normalised ``(images, labels)`` batches on ``device`` (the first ``limit`` batches)."""
    from quest_lightning.lightning.data import CIFAR10DataModule

    try:
        dm = CIFAR10DataModule(**options)
    except TypeError as err:
        raise SweepError(f"the data options {sorted(options)} do not fit CIFAR10DataModule: {err}") from None
    dm.prepare_data()
    dm.setup("test")
    batches = []
    for i, (x, y) in enumerate(dm.test_dataloader()):
        if limit is not None and i >= limit:
            break
        batches.append(dm.on_after_batch_transfer((x.to(device), y.to(device)), 0))
    if not batches:
        raise SweepError("the test split holds no batch")
    return batches


def _parser() -> argparse.ArgumentParser:
    from quest_lightning.hardware import SWEEPABLE

    parser = argparse.ArgumentParser(
        prog="quest-lightning sweep",
        description="Run a trained recipe model on drawn arrays of its device, for several values of one "
        "non-ideality and several R-S patterns; save the accuracies into the run folder (variation_sweep.json) and "
        "rebuild the report. Data options of CIFAR10DataModule are given as --data.KEY VALUE (they replace those of "
        "the run's config.yaml).",
    )
    parser.add_argument("target", metavar="RUN_DIR|CHECKPOINT", help="a run folder (its last checkpoint) or a .ckpt")
    parser.add_argument("--sigma", "--values", dest="values", type=float, nargs="+", required=True, metavar="V",
                        help="the values of the swept non-ideality, e.g. --sigma 0 0.01 0.03 0.05")  # fmt: skip
    parser.add_argument("--vary", choices=SWEEPABLE, default="d2d_sigma", help="the non-ideality swept")
    parser.add_argument("--draws", type=int, default=10, help="arrays drawn per pattern and value (default 10)")
    parser.add_argument("--patterns", nargs="+", default=["all"], metavar="all|best|INDEX",
                        help="the run's priced patterns: all (default), best (the reported one), indices")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    parser.add_argument("--mapping", choices=("nearest", "linear"), default="nearest",
                        help="how a read conductance becomes a level (default nearest)")  # fmt: skip
    parser.add_argument("--limit-test", "--limit_test", dest="limit_test", type=int, default=None, metavar="N",
                        help="use only the first N test batches")  # fmt: skip
    parser.add_argument("--device", default=None, help="the device (preset name or YAML); default the checkpoint's")
    parser.add_argument("--accelerator", choices=("auto", "cpu", "cuda"), default="auto", help="where the model runs")
    parser.add_argument("--run-dir", "--run_dir", dest="run_dir", default=None,
                        help="for a CHECKPOINT: its run folder, when the summary is not next to it")  # fmt: skip
    parser.add_argument("--force", action="store_true", help="replace the sweep the run folder already holds")
    return parser


def sweep_main(argv: Sequence[str]) -> int:
    """Entry point of ``quest-lightning sweep``; returns the exit status (0 done, 1 refused or failed, 2 bad usage)."""
    parser = _parser()
    try:
        ns, rest = parser.parse_known_args(list(argv))
    except SystemExit as err:
        return err.code if isinstance(err.code, int) else 1
    try:
        path = _run(ns, parse_data_options(rest))
    except SweepError as err:
        print(f"quest-lightning sweep: {err}", file=sys.stderr)
        return 1
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"quest-lightning sweep: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(path)
    return 0


def _run(ns: argparse.Namespace, data_overrides: dict[str, Any]) -> Path:
    """Locate, load, sweep, save and rebuild the report; returns the report page (or the sweep file)."""
    from quest_lightning.hardware import SWEEP_FILE

    files = locate_run(ns.target, ns.run_dir)
    out = files.folder / SWEEP_FILE
    if out.exists() and not ns.force:
        raise SweepError(f"{out} exists: this run folder already holds a variation sweep; pass --force to replace it")
    if ns.draws < 1 or (ns.limit_test is not None and ns.limit_test < 1):
        raise SweepError("--draws and --limit-test take a number of at least 1")

    import torch

    from quest_lightning.devices import resolve_device
    from quest_lightning.hardware import LinearInterpolation, NearestLevel, variation_sweep
    from quest_lightning.lightning.vgg_module import QuestVGG

    where = "cuda" if ns.accelerator == "cuda" or (ns.accelerator == "auto" and torch.cuda.is_available()) else "cpu"
    try:
        module = QuestVGG.load_from_checkpoint(files.checkpoint, map_location=where)
    except Exception as err:  # torch and Lightning raise many kinds for a file that is not a QuestVGG checkpoint
        raise SweepError(f"cannot load a QuestVGG from {files.checkpoint}: {type(err).__name__}: {err}") from None
    device = resolve_device(ns.device) if ns.device is not None else module.device_spec
    if device is None:
        raise SweepError(f"the model of {files.checkpoint} has no device; name one with --device")
    for value in ns.values:  # a bad value fails here, before the data is loaded
        device.with_nonideal(**{ns.vary: value})
    patterns = _choose_patterns(ns.patterns, files, device.name)
    batches = _test_batches(_data_options(files, data_overrides), ns.limit_test, module.device)
    count = "every" if patterns is None else len(patterns)
    print(
        f"sweeping {ns.vary} over {ns.values} for {count} pattern(s) of {device.name}, {ns.draws} arrays each, on "
        f"{sum(int(y.shape[0]) for _, y in batches)} test images of {files.checkpoint}",
        file=sys.stderr,
    )
    sweep = variation_sweep(
        module,
        batches,
        device,
        ns.values,
        vary=ns.vary,
        patterns=patterns,
        mapping=LinearInterpolation() if ns.mapping == "linear" else NearestLevel(),
        draws=ns.draws,
        seed=ns.seed,
        forward=lambda model, x: model(x).mean(0),
    )
    saved = sweep.save(files.folder, overwrite=ns.force)
    print(sweep.to_markdown(), file=sys.stderr)
    print(f"saved {saved}", file=sys.stderr)
    if files.summary is None:
        print("no run summary next to it: no report to rebuild", file=sys.stderr)
        return saved
    from quest_lightning.report import build_report

    return build_report(files.summary.parent)
