"""Shared plumbing of the experiment scripts: run the recipe, read what it wrote, write tables and figures.

Every experiment is a sequence of ordinary recipe runs::

    .venv/bin/python recipes/vgg6_cifar10.py fit --config <scale config> <overrides>

made in a subprocess, each in its own folder ``runs/experiments/<scale>/<experiment>/<run>/`` with a CSVLogger whose
log directory is ``.../logs/0`` (``metrics.csv``, ``config.yaml``, ``quest_summary.json``). The exact command line,
the wall time and the exit status of every run are stored next to it in ``run.json`` and copied into the
experiment's result JSON, so every number in docs/results.md can be traced to one command.

Scales:

* ``small``: ``recipes/configs/small.yaml`` on the CPU, a class-balanced slice of CIFAR-10 (smoke-test figures).
* ``full``: ``recipes/configs/paper.yaml``, the paper's schedule (100 epochs, batch 256); needs a GPU.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from quest_lightning.summary import SUMMARY_FILE, RunSummary, read_summary

REPO = Path(__file__).resolve().parents[1]
RECIPE = Path("recipes/vgg6_cifar10.py")
CONFIGS = {"small": Path("recipes/configs/small.yaml"), "full": Path("recipes/configs/paper.yaml")}
RUNS = Path("runs/experiments")
RESULTS = Path("experiments/results")
IMAGES = Path("docs/img/results")
SCALES = tuple(CONFIGS)
CSV_LOGGER = "lightning.pytorch.loggers.CSVLogger"


def python() -> str:
    """The interpreter to run the recipe with: the project's venv if there is one, else this one."""
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv.relative_to(REPO)) if venv.exists() else sys.executable


def callbacks_arg(callbacks: Sequence[dict[str, Any]]) -> str:
    """A ``--trainer.callbacks`` value: the list of ``{"class_path", "init_args"}`` dicts as compact JSON."""
    return json.dumps(list(callbacks), separators=(",", ":"))


def aor_meter(on: Sequence[str] = ("val",)) -> dict[str, Any]:
    return {"class_path": "quest_lightning.lightning.callbacks.AORMeter", "init_args": {"on": list(on)}}


def run_dir_of(exp: str, run: str, scale: str) -> Path:
    return RUNS / scale / exp / run


def log_dir_of(out: Path) -> Path:
    """Where the CSVLogger (and so the run's summary file) of a run folder writes."""
    return out / "logs" / "0"


def recipe_command(out: Path, scale: str, overrides: Sequence[str], config: Path | None = None) -> list[str]:
    """The recipe command of one run (paths relative to the repository root)."""
    return [
        python(),
        str(RECIPE),
        "fit",
        "--config",
        str(config or CONFIGS[scale]),
        "--trainer.default_root_dir",
        str(out),
        "--trainer.logger",
        CSV_LOGGER,
        "--trainer.logger.save_dir",
        str(out),
        "--trainer.logger.name",
        "logs",
        "--trainer.logger.version",
        "0",
        *overrides,
    ]


def run_recipe(
    exp: str,
    run: str,
    scale: str,
    overrides: Sequence[str] = (),
    *,
    config: Path | None = None,
    force: bool = False,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Run the recipe once (or reuse a finished run made with the same command) and return what it produced.

    Returns a dict with ``command`` (a shell-quoted string), ``wall_s``, ``returncode``, ``run_dir``, ``log_dir``,
    ``metrics`` (parsed ``metrics.csv``: ``test_acc``, per-epoch ``val_acc``, last ``train_loss``...) and
    ``summary`` (the run record, a :class:`~quest_lightning.summary.RunSummary`, or ``None`` when the run had no
    ``DeviceEnergyCallback``).
    """
    out = run_dir_of(exp, run, scale)
    cmd = recipe_command(out, scale, overrides, config)
    text = shlex.join(cmd)
    record_path = REPO / out / "run.json"
    if dry_run:
        print(text)
        return {"command": text, "run_dir": str(out), "dry_run": True}
    record = _load_json(record_path)
    if force or record is None or record.get("command") != text or record.get("returncode") != 0:
        if (REPO / out).exists():
            shutil.rmtree(REPO / out)
        (REPO / out).mkdir(parents=True)
        print(f"[{exp}/{run}] {text}", flush=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1", WANDB_MODE="offline")
        start = time.time()
        with open(REPO / out / "stdout.log", "w") as log:
            proc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
        record = {
            "command": text,
            "returncode": proc.returncode,
            "wall_s": round(time.time() - start, 1),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        }
        (REPO / record_path).write_text(json.dumps(record, indent=2))
        if proc.returncode != 0:
            tail = (REPO / out / "stdout.log").read_text().splitlines()[-30:]
            raise RuntimeError(f"run {exp}/{run} failed (exit {proc.returncode}):\n" + "\n".join(tail))
        print(f"[{exp}/{run}] done in {record['wall_s']} s", flush=True)
    else:
        print(f"[{exp}/{run}] reusing the finished run in {out} (pass --force to rerun)", flush=True)
    return {**record, "run_dir": str(out), "log_dir": str(log_dir_of(out)), **load_run(log_dir_of(out))}


def digits() -> tuple[Any, Any, Any, Any]:
    """The 8×8 digits shipped with scikit-learn as ``[N, 1, 8, 8]`` images in [0, 1] and labels, split 75/25,
    stratified, with ``random_state=0``: ``(x_train, y_train, x_test, y_test)`` (torch tensors)."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target)
    train, test = train_test_split(list(range(len(y))), test_size=0.25, random_state=0, stratify=data.target)
    return x[train], y[train], x[test], y[test]


def _load_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def load_run(log_dir: Path | str) -> dict[str, Any]:
    """``metrics`` (from ``metrics.csv``) and ``summary`` (the typed run record) of a run's log directory."""
    log_dir = REPO / Path(log_dir)
    path = log_dir / SUMMARY_FILE
    return {"metrics": read_metrics(log_dir / "metrics.csv"), "summary": read_summary(path) if path.is_file() else None}


def _num(value: str | None) -> float | None:
    if value in (None, ""):
        return None
    try:
        x = float(value)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def read_metrics(path: Path) -> dict[str, Any]:
    """Test accuracy, per-epoch validation accuracy/loss, the train-loss curve and the last value of every column
    (``last``) from a CSVLogger file."""
    out: dict[str, Any] = {"test_acc": None, "test_loss": None, "val": [], "train_loss": [], "last": {}}
    if not path.exists():
        return out
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        if _num(row.get("test/acc")) is not None:
            out["test_acc"] = _num(row["test/acc"])
            out["test_loss"] = _num(row.get("test/loss"))
        if _num(row.get("val/acc")) is not None:
            out["val"].append(
                {
                    "epoch": int(_num(row.get("epoch")) or 0),
                    "acc": _num(row["val/acc"]),
                    "loss": _num(row.get("val/loss")),
                }
            )
        if _num(row.get("train/loss")) is not None:
            out["train_loss"].append([int(_num(row.get("step")) or 0), _num(row["train/loss"])])
        out["last"].update({k: _num(v) for k, v in row.items() if _num(v) is not None})
    return out


def resolve_summary(run_dir: str | Path) -> tuple[Path, RunSummary]:
    """The run record of a run: ``run_dir`` may be the run folder, its log folder or the summary file itself."""
    p = REPO / Path(run_dir)
    for cand in (p, p / SUMMARY_FILE, log_dir_of(p) / SUMMARY_FILE):
        if cand.is_file():
            return cand.parent, read_summary(cand)
    raise FileNotFoundError(f"no {SUMMARY_FILE} in {run_dir} (nor in {log_dir_of(Path(run_dir))})")


# ------------------------------------------------------------------------------------------------------------------
def write_outputs(name: str, scale: str, payload: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write ``experiments/results/<scale>/<name>.json`` and ``.md``."""
    folder = REPO / RESULTS / scale
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"experiment": name, "scale": scale, "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"), **payload}
    (folder / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str))
    (folder / f"{name}.md").write_text(markdown.rstrip() + "\n")
    print(f"wrote {RESULTS / scale / name}.json and .md")
    return folder / f"{name}.json", folder / f"{name}.md"


def figure_path(scale: str, name: str) -> Path:
    """``docs/img/results/<scale>/<name>.png`` (the folder is created)."""
    folder = REPO / IMAGES / scale
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.png"


def save_figure(fig: Any, scale: str, name: str) -> str:
    path = figure_path(scale, name)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    rel = path.relative_to(REPO)
    print(f"wrote {rel}")
    return str(rel)


def md_image(alt: str, img: str) -> str:
    """A markdown image link from ``experiments/results/<scale>/`` to a repository-relative PNG path."""
    return f"![{alt}](../../../{img})"


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}"


def si(joules: float | None) -> str:
    """Joules with an SI prefix (``4.68e-05`` -> ``46.8 µJ``)."""
    if joules is None:
        return "n/a"
    for unit, scale in (("J", 1.0), ("mJ", 1e-3), ("µJ", 1e-6), ("nJ", 1e-9), ("pJ", 1e-12), ("fJ", 1e-15)):
        if abs(joules) >= scale:
            return f"{joules / scale:.3g} {unit}"
    return f"{joules:.3g} J"


def short(layer: str) -> str:
    """``model.features.1.layer`` -> ``features.1``; ``model.classifier.0.neuron`` -> ``classifier.0``."""
    parts = layer.split(".")
    if parts and parts[0] == "model":
        parts = parts[1:]
    if parts and parts[-1] in ("layer", "neuron"):
        parts = parts[:-1]
    return ".".join(parts)


def scale_parser(description: str):
    """An argparse parser with the options every experiment script shares."""
    import argparse

    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=SCALES, default="small", help="small: CPU slice (default); full: GPU schedule")
    p.add_argument("--force", action="store_true", help="rerun runs that already finished with the same command")
    p.add_argument("--dry-run", action="store_true", help="print the recipe commands and stop")
    return p
