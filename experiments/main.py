"""Experiment 1, the main run: VGG6, W2/U2, IF with hard reset, T = 4, on CIFAR-10, priced on the 7-state Sk-MTJ.

    .venv/bin/python experiments/main.py --scale small   # CPU: recipes/configs/small.yaml (2 epochs, 2,048 images)
    .venv/bin/python experiments/main.py --scale full    # GPU: recipes/configs/paper.yaml (100 epochs, batch 256)

The run carries all three callbacks (transitions, AOR, device energy over all 210 R-S patterns), so the weight-update,
activity and energy analyses (weight_updates.py, activity.py, energy.py) read its ``quest_summary.json`` instead of
training again. Writes experiments/results/<scale>/main.{json,md} and docs/img/results/<scale>/main-training.png;
the library's own HTML report of the run is in ``<run>/logs/0/report/`` (``quest-lightning report``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from common import (
    IMAGES,
    REPO,
    fmt,
    md_image,
    md_table,
    pct,
    pyplot,
    resolve_summary,
    run_recipe,
    save_figure,
    scale_parser,
    si,
    write_outputs,
)

from quest_lightning.summary import RunSummary

EXP = "main"
RUN = "vgg6-w2u2-if-hard"
PAPER_ACC = 0.896


def main_run(scale: str, *, force: bool = False, dry_run: bool = False) -> dict[str, Any]:
    """The main run of ``scale`` (made once; later calls reuse it)."""
    return run_recipe(EXP, RUN, scale, [], force=force, dry_run=dry_run)


def key_numbers(result: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of a finished run (from metrics.csv and the run record)."""
    summary: RunSummary | None = result.get("summary")
    metrics = result["metrics"]
    activity = summary.activity if summary is not None else {}
    stage = "val" if activity.get("val") else "train"
    last = (activity.get(stage) or (None,))[-1]
    device = summary.primary if summary is not None else None
    compute = device.compute.get(stage) if device is not None else None
    reads = (device.read.get(stage) or (None,))[-1] if device is not None else None
    report = reads.report if reads is not None else None
    return {
        "test_acc": metrics["test_acc"],
        "val_acc_per_epoch": [v["acc"] for v in metrics["val"]],
        "activity_stage": stage,
        "epoch": last.epoch if last else None,
        "spike_rate_mean": last.spike_rate_mean if last else None,
        "sparsity_mean": last.sparsity_mean if last else None,
        "aor_mean": last.aor_mean if last else None,
        "ann_over_quest": compute.ann_over_quest if compute else None,
        "diet_over_quest": compute.diet_over_quest if compute else None,
        "first_layer": compute.first_layer if compute else None,
        "quest_j": compute.quest.total_j if compute else None,
        "ann_j": compute.ann.total_j if compute else None,
        "read_best_pattern": reads.pattern if reads else None,
        "read_j": report.total.best_j if report else None,
        "write": {
            k: {"best_pattern": w.pattern, "j_per_sample": w.report.total.best_j}
            for k, w in (device.write.items() if device is not None else ())
        },
        "flags": [f.message for f in summary.flags] if summary is not None else [],
    }


def analysis_inputs(doc: str) -> tuple[Any, str | None, Path | None, RunSummary | None]:
    """Parse an analysis script's arguments and load the summary it analyses: ``--run-dir`` if given, else the main
    run of ``--scale`` (made first if missing). Returns ``(args, source, folder, summary)``; the last three are
    ``None`` after ``--dry-run``."""
    p = scale_parser(doc)
    p.add_argument("--run-dir", default=None, help="analyse this run (folder or quest_summary.json) instead")
    args = p.parse_args()
    if args.run_dir is None:
        run = main_run(args.scale, force=args.force, dry_run=args.dry_run)
        if args.dry_run:
            return args, None, None, None
        source = run["log_dir"]
    else:
        source = args.run_dir
    folder, summary = resolve_summary(source)
    return args, str(source), folder, summary


def main() -> None:
    args = scale_parser(__doc__).parse_args()
    result = main_run(args.scale, force=args.force, dry_run=args.dry_run)
    if args.dry_run:
        return
    k = key_numbers(result)
    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    steps = [s for s, _ in result["metrics"]["train_loss"]]
    a1.plot(steps, [v for _, v in result["metrics"]["train_loss"]], lw=1)
    a1.set(xlabel="optimizer step", ylabel="train loss", title="training loss")
    val = result["metrics"]["val"]
    a2.plot([v["epoch"] + 1 for v in val], [100 * v["acc"] for v in val], "o-")
    a2.axhline(100 * PAPER_ACC, ls="--", c="gray", label="paper 89.6%")
    a2.set(xlabel="epoch", ylabel="val (= test split) accuracy [%]", title="accuracy")
    a2.legend()
    a2.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(f"VGG6 W2/U2 IF hard, T=4 ({args.scale} scale)")
    img = save_figure(fig, args.scale, "main-training")

    rows = [
        ["test accuracy", pct(k["test_acc"], 2), "89.6%"],
        [
            f"mean spike rate, layers 1–5 ({k['activity_stage']}, epoch {k['epoch'] + 1})",
            fmt(k["spike_rate_mean"]),
            "0.13",
        ],
        ["mean weight sparsity, layers 2–5", pct(k["sparsity_mean"]), "> 60% each"],
        ["mean AOR, layers 2–5 (per step)", fmt(k["aor_mean"]), "≈ 4.7× below the spike rate"],
        ["ANN / QUEST (first_layer=mac)", f"{fmt(k['ann_over_quest'])}×", "93×"],
        ["DIET-SNN / QUEST (first_layer=mac)", f"{fmt(k['diet_over_quest'])}×", "2.47× (VGG6)"],
        ["device read energy per sample (best of 210 patterns)", si(k["read_j"]), "not given"],
    ]
    rows += [
        [f"device write energy per sample, {stage} (best: {w['best_pattern']})", si(w["j_per_sample"]), "not given"]
        for stage, w in k["write"].items()
    ]
    flags = [f"**Flag:** {m}" for m in k["flags"]]  # e.g. a silent network: its ratios are no saving
    md = "\n\n".join(
        [
            f"### Main run ({args.scale} scale)",
            f"Command: `{result['command']}`  \nWall time: {result['wall_s']} s",
            md_table(["quantity", "ours", "paper"], rows),
            *flags,
            md_image("training", img),
        ]
    )
    report = REPO / result["log_dir"] / "report"
    copied = []
    if report.is_dir():  # the library's own report (built by the recipe at the end of fit): keep its figures
        dest = REPO / IMAGES / args.scale / "report"
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for png in sorted(report.glob("*.png")):
            shutil.copy2(png, dest / png.name)
            copied.append(str((dest / png.name).relative_to(REPO)))
        md += (
            f"\n\nThe recipe's own report (`quest-lightning report {result['log_dir']}`): {len(copied)} figures "
            f"copied to `{IMAGES / args.scale / 'report'}/`."
        )
    payload = {"command": result["command"], "wall_s": result["wall_s"], "run_dir": result["run_dir"], **k}
    payload["figures"] = [img, *copied]
    write_outputs(EXP, args.scale, payload, md)


if __name__ == "__main__":
    main()
