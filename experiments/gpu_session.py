"""One GPU session: the step benchmark, then the paper's CIFAR-10 run in the time that is left, in one command.

A lent GPU comes for minutes, so everything it has to do is one prepared script (tested on the CPU with
``--smoke``). In order:

1. ``session.json``: the interpreter, torch, Lightning, the GPU (then the plan and the command).
2. The step benchmark (``benchmarks/bench_step.py``) at batch 256, T = 4: plain SpikingJelly FP32, plain snnTorch
   and quest with no callbacks and with all three; it asserts once that the integer products are exact where they
   run. Capped at ``--bench-s`` seconds; ``bench.json`` and ``bench.log``.
3. The reproduction: ``recipes/configs/paper.yaml`` (VGG6, W2/U2, IF with hard reset, T = 4, batch 256, Adam 1e-3,
   lr ÷ 10 at 50 % and 75 % of the epochs, crops and flips on the GPU, the three callbacks with the paper's stages,
   AOR on train and val), logged with a CSVLogger. The paper trains 100 epochs; the number of epochs here is the
   largest that fits before ``--deadline-s``: a probe times 40 training steps and one validation pass with every
   callback attached, and the schedule's milestones, being fractions of the epochs, scale with it. A ``max_time``
   one reserve short of the deadline guards the estimate. The run's ``metrics.csv``, ``quest_summary.json``, the
   report with the run's config (``report.tar.gz``) and the log (``run.log``) come back: seven files in all.

    python experiments/gpu_session.py --out OUT --data data/cifar10-jpeg.tar.gz --deadline-s 560
    python experiments/gpu_session.py --out /tmp/gpu --smoke     # the same steps, tiny, on the CPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "recipes" / "configs" / "paper.yaml"
RUN = Path("runs/experiments/full/main/vgg6-w2u2-if-hard")
START = time.monotonic()


def elapsed() -> float:
    return time.monotonic() - START


def log(msg: str) -> None:
    print(f"[{elapsed():6.1f} s] {msg}", flush=True)


def _record(out: Path, **items) -> None:
    """Adds ``items`` to ``session.json`` (what ran, where and with which plan)."""
    path = out / "session.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    record.update(items, elapsed_s=round(elapsed(), 1))
    path.write_text(json.dumps(record, indent=2))


def environment(out: Path) -> dict:
    import lightning
    import torch

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpus": os.cpu_count(),
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
    }
    _record(out, environment=env)
    log(f"environment: {env}")
    return env


def exactness(out: Path, device: str) -> None:
    """How far the quantized layers' forward product of 0/1 spikes and the codes is, on ``device``, from the exact
    one (the float64 product of the codes and the spikes times the grid step, rounded once to float32), for VGG6's
    second convolution and first hidden FC layer, with the float32 matrix settings as they are (PyTorch lets cuDNN
    take float32 convolutions in TF32 by default) and with TF32 off. Written to ``session.json``."""
    import torch
    import torch.nn.functional as F

    from quest_lightning.nn import QuantConv2d, QuantLinear

    torch.manual_seed(0)
    cases = {
        "conv 64->128 3x3, [4x64, 64, 32, 32]": (
            QuantConv2d(64, 128, 3, padding=1, input_kind="spikes"),
            (4, 64, 64, 32, 32),
        ),
        "linear 8192->4096, [4x64, 8192]": (QuantLinear(8192, 4096, input_kind="spikes"), (4, 64, 8192)),
    }
    found = {}
    for name, (layer, shape) in cases.items():
        layer = layer.to(device)
        x = (torch.rand(shape, device=device) < 0.2).float()
        for tf32 in ("default", "off"):
            saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
            if tf32 == "off":
                torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
            with torch.no_grad():
                y = layer(x).flatten(0, 1).cpu()
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
            step = (layer.alpha.detach() / layer.qmax).double().cpu()
            w = layer.codes.double().cpu() * step
            xd = x.flatten(0, 1).double().cpu()
            ref = (F.conv2d(xd, w, None, 1, 1) if isinstance(layer, QuantConv2d) else xd @ w.t()).float()
            differ = (y != ref).sum().item()
            rel = ((y.double() - ref.double()).norm() / ref.double().norm()).item()
            found[f"{name}, TF32 {tf32}"] = {"elements": y.numel(), "not_bit_equal": differ, "rel_error": rel}
            log(f"exactness {name}, TF32 {tf32}: {differ} of {y.numel()} differ, relative error {rel:.2e}")
    _record(out, exactness={"device": device, "cases": found})


def benchmark(out: Path, *, smoke: bool, limit_s: float) -> None:
    cmd = [sys.executable, "benchmarks/bench_step.py", "--json", str(out / "bench.json")]
    if smoke:
        cmd += ["--quick"]
    else:
        cmd += ["--batch", "256", "--timesteps", "4"]
        cmd += ["--configs", "sj-fp32", "snntorch-fp32", "quest-spikingjelly-none", "quest-spikingjelly-all"]
    log("benchmark: " + " ".join(cmd))
    with open(out / "bench.log", "w") as f:
        try:
            proc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, timeout=limit_s, check=False)
            log(f"benchmark exit {proc.returncode}")
        except subprocess.TimeoutExpired:
            log(f"benchmark stopped after {limit_s:.0f} s")
    print((out / "bench.log").read_text()[-4000:], flush=True)


def run_config(data: str | None, *, epochs: int, max_time_s: float | None, smoke: bool, root: Path) -> Path:
    """paper.yaml with a CSVLogger into ``root``, the epochs and (optionally) the time guard; written beside the run."""
    cfg = yaml.safe_load(PAPER.read_text())
    trainer = cfg["trainer"]
    trainer["max_epochs"] = epochs
    trainer["default_root_dir"] = str(root)
    trainer["logger"] = {
        "class_path": "lightning.pytorch.loggers.CSVLogger",
        "init_args": {"save_dir": str(root), "name": "logs", "version": "0"},
    }
    # a progress bar that prints lines: the log of a remote command is a file, not a terminal
    trainer["callbacks"] = [c for c in trainer["callbacks"] if not c["class_path"].endswith("RichProgressBar")]
    trainer["enable_progress_bar"] = False
    if max_time_s is not None:
        trainer["max_time"] = {"seconds": int(max_time_s)}
    cfg["data"]["data_dir"] = data
    cfg["data"]["download"] = False
    if smoke:  # the paper's stages are batches 1-190 of epoch 1: the smoke run's epoch has 4
        cfg["data"].update(train_subset=256, test_subset=128, batch_size=64)
        for cb in trainer["callbacks"]:
            if cb["class_path"].endswith("WeightTransitionMonitor"):
                cb["init_args"]["stages"] = [["a", 1, 2], ["b", 3, 4]]
    path = root / "gpu_session.yaml"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


class _StepClock:
    """Times training steps after a warm-up (device-synchronised), as a Lightning callback."""

    def __init__(self, warmup: int) -> None:
        import lightning.pytorch as pl
        import torch

        clock = self

        class Cb(pl.Callback):
            def on_train_batch_end(self, trainer, *args) -> None:
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                clock.marks.append(time.perf_counter())

        self.marks: list[float] = []
        self.warmup = warmup
        self.callback = Cb()

    def step_s(self) -> float:
        marks = self.marks[self.warmup :]
        return (marks[-1] - marks[0]) / (len(marks) - 1)


def probe(config: Path, *, smoke: bool) -> tuple[float, float, int]:
    """Seconds per training step and per validation pass with every callback attached, and the steps per epoch."""
    import torch

    from quest_lightning.cli.recipe import QuestLightningCLI

    steps = 12 if smoke else 40
    warmup = 4 if smoke else 10
    args = ["--config", str(config), "--trainer.max_steps", str(steps)]
    args += ["--trainer.default_root_dir", str(config.parent / "probe"), "--trainer.logger", "false"]
    cli = QuestLightningCLI(args=args, run=False)
    from lightning.pytorch.callbacks import LearningRateMonitor

    clock = _StepClock(warmup)  # the probe has no logger, so no learning-rate monitor
    cli.trainer.callbacks[:] = [c for c in cli.trainer.callbacks if not isinstance(c, LearningRateMonitor)]
    cli.trainer.callbacks.append(clock.callback)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    step_s = clock.step_s()
    steps_per_epoch = len(cli.datamodule.train_dataloader())
    start = time.perf_counter()
    cli.trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)
    val_s = time.perf_counter() - start
    del cli
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return step_s, val_s, steps_per_epoch


def reproduction(out: Path, data: str | None, *, smoke: bool, deadline_s: float, reserve_s: float) -> None:
    root = REPO / RUN
    if root.exists():
        shutil.rmtree(root)
    step_s, val_s, steps = probe(run_config(data, epochs=100, max_time_s=None, smoke=smoke, root=root), smoke=smoke)
    epoch_s = steps * step_s + val_s
    left = deadline_s - elapsed() - reserve_s - 25  # 25 s: the run's own start and data load
    epochs = max(1, min(100, int(left / (1.08 * epoch_s))))
    if smoke:
        epochs = 2
    plan = {"step_s": step_s, "val_s": val_s, "steps_per_epoch": steps, "epoch_s": epoch_s, "epochs": epochs}
    log(f"probe: {json.dumps(plan)}")
    _record(out, plan=plan)
    config = run_config(data, epochs=epochs, max_time_s=max(60.0, left), smoke=smoke, root=root)
    cmd = [sys.executable, "recipes/vgg6_cifar10.py", "fit", "--config", str(config.relative_to(REPO))]
    log("run: " + " ".join(cmd))
    _record(out, command=" ".join(cmd))
    with open(out / "run.log", "w") as f:
        proc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, check=False)
    log(f"run exit {proc.returncode}")
    print((out / "run.log").read_text()[-3000:], flush=True)
    logs = root / "logs" / "0"
    for name in ("metrics.csv", "quest_summary.json"):
        if (logs / name).is_file():
            shutil.copy(logs / name, out / name)
    with tarfile.open(out / "report.tar.gz", "w:gz") as tar:  # the report and the run's config, in one file
        for name in ("report", "config.yaml", "hparams.yaml"):
            if (logs / name).exists():
                tar.add(logs / name, arcname=name)
    _record(out, run_exit=proc.returncode)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for everything that comes back")
    p.add_argument("--data", default="data/cifar10-jpeg.tar.gz", help="CIFAR-10 (a folder or tarball)")
    p.add_argument("--deadline-s", type=float, default=560.0, help="the whole session ends by then")
    p.add_argument("--reserve-s", type=float, default=60.0, help="kept for the test, the report and the copies")
    p.add_argument("--bench-s", type=float, default=110.0, help="the benchmark's cap")
    p.add_argument("--skip-bench", action="store_true")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for the CPU")
    args = p.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_MODE", "disabled")
    environment(out)
    import torch

    try:
        exactness(out, "cuda" if torch.cuda.is_available() else "cpu")
    except Exception as err:  # a check that fails must not cost the session its run
        log(f"exactness check failed: {err!r}")
    if not args.skip_bench:
        benchmark(out, smoke=args.smoke, limit_s=args.bench_s)
    reproduction(out, args.data, smoke=args.smoke, deadline_s=args.deadline_s, reserve_s=args.reserve_s)
    log("done")


if __name__ == "__main__":
    main()
