"""``quest-lightning export CHECKPOINT|RUN_DIR --out DIR``: write the deployment bundle of a trained run.

The command loads a ``QuestVGG`` checkpoint (or the checkpoint of a run folder), takes the device and R-S pattern
from the command line or else from the checkpoint's hyperparameters, and calls
:func:`~quest_lightning.deploy.bundle.export`. It refuses a non-empty output folder unless ``--force``.

Wire it into an argparse CLI with :func:`add_export_arguments` and :func:`export_command`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from quest_lightning.deploy.bundle import check_out_dir, export, file_sha256
from quest_lightning.deploy.graph import NotDeployableError

__all__ = ["add_export_arguments", "export_command", "find_checkpoint", "load_quest_checkpoint"]

PROG = "quest-lightning export"


def add_export_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``export`` arguments to ``parser`` (for a subcommand of a larger CLI)."""
    parser.add_argument("source", metavar="CHECKPOINT|RUN_DIR", help="a .ckpt file, or a run folder holding one")
    parser.add_argument("--out", required=True, metavar="DIR", help="a new or empty folder for the bundle")
    parser.add_argument("--force", action="store_true", help="write into a non-empty --out, replacing bundle files")
    parser.add_argument(
        "--device", default=None, help="device preset name or YAML file (default: the checkpoint's device)"
    )
    parser.add_argument(
        "--pattern",
        default=None,
        metavar="INDEX|S0,S1,...",
        help="R-S pattern: an index, or one device state per level from the most negative code up, e.g. 0,3,6 "
        "(default: the checkpoint's pattern, else pattern 0)",
    )
    return parser


def _parser() -> argparse.ArgumentParser:
    return add_export_arguments(
        argparse.ArgumentParser(prog=PROG, description="Write the deployment bundle of a trained quest-lightning run.")
    )


def find_checkpoint(source: str | Path) -> Path:
    """The checkpoint file ``source`` names: itself, or in a run folder ``last.ckpt`` if present, else the newest
    ``*.ckpt`` under it.

    Raises:
        FileNotFoundError: ``source`` does not exist, or the folder holds no ``*.ckpt``.
    """
    path = Path(source)
    if path.is_file():
        return path
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; give a .ckpt file or a run folder holding one")
    found = sorted(path.rglob("*.ckpt"))
    if not found:
        raise FileNotFoundError(f"no checkpoint (*.ckpt) under {path}; train with checkpointing on or pass the file")
    last = [p for p in found if p.name == "last.ckpt"]
    return max(last or found, key=lambda p: p.stat().st_mtime)


def _plain(value: Any) -> Any:
    """A JSON-safe copy of a hyperparameter value."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def load_quest_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load a ``QuestVGG`` checkpoint on the CPU; returns ``(module, hyperparameters)``.

    Raises:
        ValueError: The checkpoint is not a ``QuestVGG`` one (its hyperparameters do not describe the network).
    """
    from quest_lightning.lightning.vgg_module import QuestVGG

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    hparams = dict(ckpt.get("hyper_parameters") or {})
    if "network" not in hparams or "state_dict" not in ckpt:
        raise ValueError(
            f"{path} is not a QuestVGG checkpoint (its hyperparameters do not describe the network); export a "
            "QuestModule around your own network from Python: quest_lightning.deploy.export(module, out_dir, ...)"
        )
    module = QuestVGG.load_from_checkpoint(path, map_location="cpu")
    info = {"epoch": ckpt.get("epoch"), "global_step": ckpt.get("global_step")}
    return module.eval(), {**hparams, "_checkpoint": info}


def _parse_pattern(text: str) -> int | tuple[int, ...]:
    try:
        parts = [int(p) for p in text.replace(" ", "").split(",") if p != ""]
    except ValueError:
        raise ValueError(f"--pattern {text!r} must be an index or comma-separated device states, e.g. 0,3,6") from None
    if not parts:
        raise ValueError("--pattern is empty")
    return parts[0] if len(parts) == 1 and "," not in text else tuple(parts)


def export_command(argv_or_args: Sequence[str] | argparse.Namespace | None = None) -> int:
    """Run ``quest-lightning export``; returns the exit status (0 done, 1 refused or failed, 2 bad usage).

    Args:
        argv_or_args: The arguments after ``export`` (default ``sys.argv[1:]``), or a namespace parsed with
            :func:`add_export_arguments`.
    """
    if isinstance(argv_or_args, argparse.Namespace):
        ns = argv_or_args
    else:
        try:
            ns = _parser().parse_args(list(sys.argv[1:] if argv_or_args is None else argv_or_args))
        except SystemExit as err:
            return int(err.code) if isinstance(err.code, int) else 2
    out = Path(ns.out)
    try:
        check_out_dir(out, ns.force)
        ckpt_path = find_checkpoint(ns.source)
        pattern = _parse_pattern(ns.pattern) if ns.pattern is not None else None
        module, hparams = load_quest_checkpoint(ckpt_path)
        device = ns.device or hparams.get("device") or hparams.get("device_name")
        if device is None:
            raise ValueError(f"{ckpt_path} records no device; pass --device NAME (e.g. --device skmtj7)")
        source = "--pattern"
        if pattern is None:
            recorded = hparams.get("pattern")
            if (isinstance(recorded, int) and not isinstance(recorded, bool)) or isinstance(recorded, list):
                pattern, source = (tuple(recorded) if isinstance(recorded, list) else recorded), "checkpoint"
            else:
                pattern, source = 0, "default (no --pattern, none recorded in the checkpoint)"
        run_dir = Path(ns.source) if Path(ns.source).is_dir() else None
        summaries = sorted((run_dir or ckpt_path.parent).rglob("quest_summary.json")) if run_dir else []
        run = {
            "checkpoint": str(ckpt_path.resolve()),
            "checkpoint_sha256": file_sha256(ckpt_path),
            "run_dir": str(run_dir.resolve()) if run_dir else None,
            "summary": str(summaries[0].resolve()) if summaries else None,
            "epoch": hparams["_checkpoint"]["epoch"],
            "global_step": hparams["_checkpoint"]["global_step"],
            "hyperparameters": _plain({k: v for k, v in hparams.items() if not k.startswith("_")}),
            "pattern_source": source,
        }
        bundle = export(module, out, device=device, pattern=pattern, run=run, force=ns.force)
    except (FileNotFoundError, FileExistsError, NotDeployableError, ValueError) as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 1
    m = bundle.manifest
    integer = [e["name"] for e in m["graph"] if e["arithmetic"] == "integer" and e["op"] in ("conv2d", "linear")]
    print(f"wrote {out}/ ({', '.join(sorted(m['files']))}, manifest.json)")
    print(f"device {m['device']['name']}, pattern {m['pattern']['label']} ({source})")
    print(f"integer layers: {', '.join(integer) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(export_command())
