"""Experiment 2, precision x neuron: 2/3/4-bit MINT and FP32, each with IF/LIF and hard/soft reset (16 runs).

    .venv/bin/python experiments/precision_neuron.py --scale small              # CPU: 1 epoch, 1,024 / 500 images
    .venv/bin/python experiments/precision_neuron.py --scale full               # GPU: the paper schedule, 100 epochs
    .venv/bin/python experiments/precision_neuron.py --scale full --epochs 30   # GPU: a shorter, documented schedule

Every run is the recipe (small.yaml / paper.yaml) with these overrides:

* ``--model.bits B`` (2, 3, 4) or ``--model.quantize false`` (FP32: no quantizer, same spiking VGG6);
* ``--model.neuron if|lif --model.reset hard|soft``;
* ``--model.device null`` for the LIF rows (the Sk-MTJ cannot leak: the recipe refuses LIF on it), for 4-bit (15
  levels do not fit the 7-state Sk-MTJ) and for FP32. The device only prices energy, which this table does not;
  no row here is device-priced (energy is priced in weight_updates.py / activity.py / energy.py for W2/U2 IF hard);
* callbacks: only ``AORMeter(on=[val])`` (spike rate, sparsity, AOR of the final model); none for FP32, whose
  layers are not quantized (the callbacks refuse such a model);
* no checkpoints, no progress bar.

Writes experiments/results/<scale>/precision_neuron.{json,md} and docs/img/results/<scale>/precision_neuron.png.
"""

from __future__ import annotations

from typing import Any

from common import (
    aor_meter,
    callbacks_arg,
    fmt,
    md_image,
    md_table,
    pct,
    pyplot,
    run_recipe,
    save_figure,
    scale_parser,
    write_outputs,
)

EXP = "precision_neuron"
PRECISIONS = (2, 3, 4, None)  # None = FP32
NEURONS = (("if", "hard"), ("if", "soft"), ("lif", "hard"), ("lif", "soft"))
SMALL = ["--trainer.max_epochs", "1", "--data.train_subset", "1024", "--data.test_subset", "500"]


def run_name(bits: int | None, neuron: str, reset: str) -> str:
    return f"{'fp32' if bits is None else f'w{bits}u{bits}'}-{neuron}-{reset}"


def device_of(bits: int | None, neuron: str) -> tuple[str | None, str]:
    """The ``model.device`` of a row and why."""
    if bits is None:
        return None, "FP32: no device levels"
    if neuron == "lif":
        return None, "LIF: the Sk-MTJ cannot leak, refused"
    if bits > 3:
        return None, f"{2**bits - 1} levels > 7 Sk-MTJ states"
    return "skmtj7", "skmtj7 (not priced here)"


def overrides(bits: int | None, neuron: str, reset: str, scale: str, epochs: int | None) -> list[str]:
    args = ["--model.quantize", "false"] if bits is None else ["--model.bits", str(bits)]
    args += ["--model.neuron", neuron, "--model.reset", reset]
    if device_of(bits, neuron)[0] is None:
        args += ["--model.device", "null"]
    args += ["--trainer.callbacks", callbacks_arg([] if bits is None else [aor_meter(["val"])])]
    args += ["--trainer.enable_checkpointing", "false", "--trainer.enable_progress_bar", "false"]
    if scale == "small":
        args += SMALL
    if epochs is not None:
        args += ["--trainer.max_epochs", str(epochs)]
    return args


def main() -> None:
    p = scale_parser(__doc__)
    p.add_argument("--epochs", type=int, default=None, help="override max_epochs (default: 1 small, 100 full)")
    p.add_argument("--only", nargs="*", default=None, help="run only these run names, e.g. w2u2-if-hard fp32-if-hard")
    args = p.parse_args()

    rows: list[dict[str, Any]] = []
    for bits in PRECISIONS:
        for neuron, reset in NEURONS:
            name = run_name(bits, neuron, reset)
            if args.only is not None and name not in args.only:
                continue
            res = run_recipe(
                EXP,
                name,
                args.scale,
                overrides(bits, neuron, reset, args.scale, args.epochs),
                force=args.force,
                dry_run=args.dry_run,
            )
            if args.dry_run:
                continue
            row = {
                "run": name,
                "bits": bits,
                "neuron": neuron,
                "reset": reset,
                "device": device_of(bits, neuron)[0],
                "device_note": device_of(bits, neuron)[1],
                "test_acc": res["metrics"]["test_acc"],
                "val_acc": [v["acc"] for v in res["metrics"]["val"]],
                "last_train_loss": (res["metrics"]["train_loss"] or [[None, None]])[-1][1],
                "command": res["command"],
                "wall_s": res["wall_s"],
            }
            row.update(_activity(res["metrics"]["last"]))
            rows.append(row)
    if args.dry_run or not rows:
        return
    fp32 = {(r["neuron"], r["reset"]): r["test_acc"] for r in rows if r["bits"] is None}
    for r in rows:
        base = fp32.get((r["neuron"], r["reset"]))
        r["drop_vs_fp32"] = None if base is None or r["test_acc"] is None else base - r["test_acc"]

    # -- table: accuracy grid, then the long form ------------------------------------------------------------------
    variants = [f"{n.upper()} {r}" for n, r in NEURONS]
    grid = []
    for bits in PRECISIONS:
        cells = []
        for neuron, reset in NEURONS:
            r = next((x for x in rows if x["bits"] == bits and x["neuron"] == neuron and x["reset"] == reset), None)
            cells.append("not run" if r is None else pct(r["test_acc"]))
        grid.append(["FP32" if bits is None else f"W{bits}/U{bits}", *cells])
    long_rows = [
        [
            r["run"],
            pct(r["test_acc"]),
            "—"
            if r["bits"] is None
            else ("n/a" if r["drop_vs_fp32"] is None else f"{100 * r['drop_vs_fp32']:+.1f} pt"),
            fmt(r["last_train_loss"], 4),
            fmt(r.get("spike_rate_mean")),
            pct(r.get("sparsity_mean")),
            fmt(r.get("aor_mean")),
            r["device_note"],
            r["wall_s"],
        ]
        for r in rows
    ]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.6), layout="constrained")
    width = 0.2
    for k, (neuron, reset) in enumerate(NEURONS):
        ys = []
        for bits in PRECISIONS:
            r = next((x for x in rows if x["bits"] == bits and x["neuron"] == neuron and x["reset"] == reset), None)
            ys.append(100 * r["test_acc"] if r and r["test_acc"] is not None else 0.0)
        ax.bar([i + (k - 1.5) * width for i in range(len(PRECISIONS))], ys, width, label=variants[k])
    ax.set_xticks(range(len(PRECISIONS)), ["W2/U2", "W3/U3", "W4/U4", "FP32"])
    ax.set(ylabel="test accuracy [%]", title=f"VGG6 T=4, precision × neuron ({args.scale} scale)")
    ax.legend(ncol=4, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, -0.32))
    img = save_figure(fig, args.scale, "precision_neuron")
    total = sum(r["wall_s"] for r in rows)
    md = "\n\n".join(
        [
            f"### Precision × neuron ({args.scale} scale)",
            md_table(["weights/membrane", *variants], grid),
            md_table(
                [
                    "run",
                    "test acc",
                    "drop vs FP32 (FP32 − this, same neuron/reset)",
                    "last logged train loss",
                    "mean spike rate",
                    "mean sparsity",
                    "mean AOR",
                    "device",
                    "wall s",
                ],
                long_rows,
            ),
            md_image("precision x neuron", img),
            f"Total wall time: {total:.0f} s. Per-run commands: `experiments/results/{args.scale}/{EXP}.json`.",
        ]
    )
    write_outputs(EXP, args.scale, {"rows": rows, "figures": [img], "wall_s_total": total}, md)


def _activity(last: dict[str, float]) -> dict[str, Any]:
    """Mean spike rate, sparsity and AOR of the last validation epoch (the AORMeter's logged means)."""
    cols = {"spike_rate_mean": "spike_rate/val/mean", "sparsity_mean": "sparsity/mean", "aor_mean": "aor/val/mean"}
    return {key: last.get(col) for key, col in cols.items()}


if __name__ == "__main__":
    main()
