"""Energy-aware training on the 8x8 digits: what each knob buys in device write and read energy, at what accuracy.

    .venv/bin/python experiments/energy_aware.py                  # 13 settings x 5 seeds, 2 worker processes
    .venv/bin/python experiments/energy_aware.py --seeds 0 1 2    # fewer seeds
    .venv/bin/python experiments/energy_aware.py --replot         # tables and figure again from the JSON

Settings: the baseline (knobs off); the write knob alone (hysteresis margin h, weighted by the pattern's write
energy; and once unweighted); the read knob alone (read penalty weight lambda_r, weighted by the pattern's read
energy); both together. Every setting trains the same network from the same seeds.

The network is the one of tests/test_digits_end_to_end.py: a full-precision first conv (direct coding, T = 4),
a 2-bit conv, a 2-bit FC and a full-precision readout; IF neurons, hard reset, theta = 0.5, the triangle surrogate.
Training: Adam (lr 3e-3, weight decay 1e-4), batch 32, 8 epochs, lr / 10 after epoch 6, loss on the mean readout.

Measured as the project measures them, with its functions, on the 7-state Sk-MTJ preset at one R-S pattern fixed
for every run: the one the knobs weigh by when both are on (``choose_pattern(by="both")``: the lowest write energy
between neighbouring levels among the patterns where moving into the zero level is cheaper than moving out of it).
The baseline's write energy at its own best pattern, chosen after the fact among all 210, is reported beside it:

* write energy per sample: the level transitions of the quantized layers between consecutive optimizer steps, over
  every step of training (``metrics.functional.transition_counts``), times the pattern's write matrix, over the
  samples seen (``energy.price.write_energy_per_sample``); also at the best pattern of each run, after the fact;
* read energy per sample and AOR: the exact per-level operation counts of the quantized layers on the 450 test
  images (``metrics.functional.activation_operation_rate``), times the pattern's read energies
  (``energy.price.read_energy_per_sample``); the network AOR is their effective operations over their MACs x T;
* what one training step costs (forward, backward, weight gradient, device reads and writes), for the baseline and
  the combined setting on the last epoch (``metrics.training_recorder.TrainingOpsRecorder``,
  ``metrics.training.price_training_step``).

Writes experiments/results/digits/energy_aware.{json,md} and docs/img/results/digits/energy_aware.png.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from common import digits, md_image, md_table, pyplot, save_figure, write_outputs

from quest_lightning.devices import get_device, pattern_energies
from quest_lightning.energy.aware import EnergyAware, EnergyAwareKnobs, choose_pattern
from quest_lightning.energy.price import read_energy_per_sample, write_energy_per_sample
from quest_lightning.metrics.functional import activation_operation_rate, transition_counts
from quest_lightning.metrics.geometry import LayerGeometry
from quest_lightning.metrics.training import price_training_step
from quest_lightning.metrics.training_recorder import TrainingOpsRecorder
from quest_lightning.nn import DirectEncoder, SpikingVGG, layer_recordings, quantized_layers, recording

EXP, FOLDER = "energy_aware", "digits"
CONFIG, FC = [16, "P", 32, "P"], [64]
T, EPOCHS, BATCH, LR, WEIGHT_DECAY, BITS, DEVICE = 4, 8, 32, 3e-3, 1e-4, 2, "skmtj7"
SETTINGS: list[dict[str, Any]] = [
    {"name": "baseline", "write_margin": 0.0, "read_weight": 0.0},
    *({"name": f"write h={h}", "write_margin": h, "read_weight": 0.0} for h in (0.1, 0.2, 0.3, 0.4)),
    {"name": "write h=0.3 unweighted", "write_margin": 0.3, "read_weight": 0.0, "write_weighted": False},
    *({"name": f"read l={lam}", "write_margin": 0.0, "read_weight": lam} for lam in (0.25, 0.5, 1.0, 2.0)),
    {"name": "both h=0.15 l=0.5", "write_margin": 0.15, "read_weight": 0.5},
    {"name": "both h=0.25 l=0.5", "write_margin": 0.25, "read_weight": 0.5},
    {"name": "both h=0.35 l=1", "write_margin": 0.35, "read_weight": 1.0},
]
COMBINED = "both h=0.15 l=0.5"


def fixed_pattern() -> int:
    """The pattern of every run: the one the knobs pick when both are on (``choose_pattern(by="both")``)."""
    return choose_pattern(pattern_energies(get_device(DEVICE), BITS), "best", by="both")


def run(setting: dict[str, Any], seed: int, cost: bool = False) -> dict[str, Any]:
    """Train one setting from one seed and measure it (``cost``: also count the last epoch's training steps)."""
    torch.set_num_threads(1)  # a network this small is fastest on one thread, and does not stall a shared CPU
    x_train, y_train, x_test, y_test = digits()
    energies = pattern_energies(get_device(DEVICE), BITS)
    pattern = fixed_pattern()
    torch.manual_seed(seed)
    model = SpikingVGG(CONFIG, FC, in_channels=1, image_size=8, num_classes=10, bits=BITS)
    knobs = EnergyAwareKnobs(
        write_margin=setting["write_margin"],
        read_weight=setting["read_weight"],
        write_weighted=setting.get("write_weighted", True),
        pattern=pattern,
    )
    aware = EnergyAware(model, knobs, device=DEVICE).attach()
    layers = quantized_layers(model)
    recorder = TrainingOpsRecorder(model, T).attach() if cost else None
    opt = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(0.75 * EPOCHS)], 0.1)
    gen = torch.Generator().manual_seed(seed)
    encode = DirectEncoder(T)
    moves = {name: torch.zeros(3, 3, dtype=torch.int64) for name, _ in layers}
    last = {name: torch.zeros(3, 3, dtype=torch.int64) for name, _ in layers}
    seen = last_seen = 0
    start = time.perf_counter()
    for epoch in range(EPOCHS):
        model.train()
        order = torch.randperm(len(y_train), generator=gen)
        for i in range(0, len(order), BATCH):
            idx = order[i : i + BATCH]
            before = {name: layer.current_codes() for name, layer in layers}
            counting = recorder is not None and epoch == EPOCHS - 1
            if counting:
                recorder.start_step()
                recorder.active = True
            loss = F.cross_entropy(model(encode(x_train[idx])).mean(0), y_train[idx]) + aware.penalty()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if recorder is not None:
                recorder.active = False
            for name, layer in layers:
                c = transition_counts(before[name], layer.current_codes(), 1)
                moves[name] += c
                if counting:
                    last[name] += c
            seen += len(idx)
            last_seen += len(idx) if counting else 0
        sched.step()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad(), recording(model):
        logits = model(encode(x_test)).mean(0)
    records = layer_recordings(model)
    out: dict[str, Any] = {
        "setting": setting["name"],
        "seed": seed,
        "knobs": aware.record(),
        "accuracy": float((logits.argmax(1) == y_test).float().mean()),
        "train_seconds": seconds,
        "samples_seen": seen,
        "write_j": {},
        "read_j": {},
        "aor": {},
        "sparsity": {},
    }
    write_all = torch.zeros(len(energies.patterns), dtype=torch.float64)
    effective = dense = 0.0
    for name, layer in layers:
        per_pattern = write_energy_per_sample(moves[name], energies.write_j, seen)
        write_all += per_pattern
        out["write_j"][name] = float(per_pattern[pattern])
        r = records[name]
        aor = activation_operation_rate(LayerGeometry.of(layer), r.input_counts, layer.codes, 1, r.rows, len(y_test))
        read = read_energy_per_sample(aor.level_ops, energies.read_j[pattern : pattern + 1], len(y_test))
        out["read_j"][name] = float(read[0])
        out["aor"][name] = float(aor.aor)
        out["sparsity"][name] = float((layer.codes == 0).float().mean())
        effective += float(aor.level_ops.sum() - aor.level_ops[1])
        dense += float(aor.ops * aor.rows)
    out["write_total_j"] = float(write_all[pattern])
    out["write_best_pattern_j"] = float(write_all.min())
    out["read_total_j"] = sum(out["read_j"].values())
    out["aor_network"] = effective / dense
    out["code_changes"] = int(sum(int(m.sum() - m.diagonal().sum()) for m in moves.values()))
    if recorder is not None:
        results = recorder.compute()
        table = energies.write_j[pattern : pattern + 1]
        write_last = sum(float(write_energy_per_sample(last[n], table, last_seen)[0]) for n in last)
        priced = price_training_step(
            results,
            analog=[name for name, r in results.items() if int(r.nonbinary_inputs) > 0],
            energies=energies,
            pattern_index=pattern,
            device_layers=[name for name, _ in layers],
            write_j=write_last,
        )
        out["training_step"] = {
            "delta_rule": recorder.delta_note,
            "delta_points": recorder.delta_points,
            "layers": {
                name: {**r.totals(), "delta_density": float(r.delta_density.mean())} for name, r in results.items()
            },
            "energy": priced,
        }
    return out


def _run(args: tuple[dict[str, Any], int, bool]) -> dict[str, Any]:
    return run(*args)


# ------------------------------------------------------------------------------------------------------------------
def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    base = [r for r in runs if r["setting"] == "baseline"]
    base_acc = statistics.mean(r["accuracy"] for r in base)
    base_write = statistics.mean(r["write_total_j"] for r in base)
    base_write_best = statistics.mean(r["write_best_pattern_j"] for r in base)
    base_read = statistics.mean(r["read_total_j"] for r in base)
    base_aor = statistics.mean(r["aor_network"] for r in base)
    rows = []
    for setting in SETTINGS:
        group = [r for r in runs if r["setting"] == setting["name"]]
        if not group:
            continue

        def mean(key: str, g=group) -> float:
            return statistics.mean(r[key] for r in g)

        rows.append(
            {
                **setting,
                "seeds": [r["seed"] for r in group],
                "accuracy": mean("accuracy"),
                "accuracy_min": min(r["accuracy"] for r in group),
                "accuracy_max": max(r["accuracy"] for r in group),
                "write_j": mean("write_total_j"),
                "write_best_pattern_j": mean("write_best_pattern_j"),
                "read_j": mean("read_total_j"),
                "aor": mean("aor_network"),
                "accuracy_change_points": 100 * (mean("accuracy") - base_acc),
                "write_cut": base_write / mean("write_total_j"),
                "write_cut_vs_best": base_write_best / mean("write_total_j"),
                "read_cut": base_read / mean("read_total_j"),
                "aor_cut": base_aor / mean("aor_network"),
            }
        )
    return rows


def markdown(rows: list[dict[str, Any]], runs: list[dict[str, Any]], image: str | None, payload: dict) -> str:
    header = [
        "setting",
        "test accuracy (mean, min-max)",
        "Δ acc (points)",
        "write J/sample",
        "write cut",
        "write cut vs best pattern",
    ]
    header += ["read J/sample", "read cut", "AOR", "AOR cut"]
    table = [
        [
            r["name"],
            f"{100 * r['accuracy']:.1f}% ({100 * r['accuracy_min']:.1f}-{100 * r['accuracy_max']:.1f})",
            f"{r['accuracy_change_points']:+.1f}",
            f"{r['write_j']:.3g}",
            f"{r['write_cut']:.2f}x",
            f"{r['write_cut_vs_best']:.2f}x",
            f"{r['read_j']:.3g}",
            f"{r['read_cut']:.2f}x",
            f"{r['aor']:.4f}",
            f"{r['aor_cut']:.2f}x",
        ]
        for r in rows
    ]
    kept = [r for r in rows if r["accuracy_change_points"] >= -1.0]
    writes = [r["name"] for r in kept if r["write_cut"] >= 2.0]
    reads = [r["name"] for r in kept if max(r["read_cut"], r["aor_cut"]) >= 1.5]
    both = [n for n in writes if n in reads]
    setup = payload["setup"]
    text = [
        f"Digits, {setup['network']}, T = {T}, {EPOCHS} epochs, seeds {rows[0]['seeds']} (means over seeds); device "
        f"{DEVICE}, {BITS}-bit, pattern {setup['pattern_index']} ({setup['pattern']}) for every run; total wall time "
        f"{payload['wall_seconds']:.0f} s with {payload['workers']} worker processes.",
        "",
        f"Command: `{payload['command']}`",
        "",
        md_table(header, table),
        "",
        "Write energy: every level transition between consecutive optimizer steps over the whole training, over the "
        "samples seen. Read energy and AOR: the quantized layers on the 450 test images. Cuts are baseline / setting; "
        "'write cut vs best pattern' divides the baseline's write energy at its own best pattern (chosen after the "
        "fact among all 210) by the setting's at the fixed pattern.",
        "",
        "Targets, at most 1 point of accuracy lost (mean over seeds): write energy cut >= 2x: "
        f"{', '.join(writes) or 'none'}; AOR or read energy cut >= 1.5x: {', '.join(reads) or 'none'}; both at "
        f"once: {', '.join(both) or 'none'}.",
    ]
    costs = [r for r in runs if "training_step" in r]
    if costs:
        text += ["", f"**What a training step costs** (last epoch, seed {costs[0]['seed']}, per sample):", ""]
        cost_header = ["setting", "layer", "forward ops", "backward ops", "weight-grad ops", "δ density"]
        cost_rows = []
        for r in costs:
            for name, c in r["training_step"]["layers"].items():
                cost_rows.append(
                    [r["setting"], name, f"{c['forward']:.0f}", f"{c['backward']:.0f}", f"{c['weight_grad']:.0f}"]
                    + [f"{c['delta_density']:.3f}"]
                )
        text += [md_table(cost_header, cost_rows), ""]
        energy_header = ["setting", "CMOS arithmetic J", "device reads J", "device writes J", "total J"]
        energy_rows = [
            [r["setting"]]
            + [f"{r['training_step']['energy'][k]:.3g}" for k in ("compute_j", "device_read_j", "device_write_j")]
            + [f"{r['training_step']['energy']['total_j']:.3g}"]
            for r in costs
        ]
        text += [
            md_table(energy_header, energy_rows),
            "",
            f"δ counted with: {costs[0]['training_step']['delta_rule']}.",
        ]
    if image:
        text += ["", md_image("accuracy against device energy", image)]
    return "\n".join(text)


def pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both energy (lower) and accuracy (higher), by energy."""
    front = [p for p in points if not any(q[0] <= p[0] and q[1] >= p[1] and q != p for q in points)]
    return sorted(front)


def _short(name: str) -> str:
    return name.replace("write ", "").replace("read l=", "λ=").replace("both ", "").replace(" l=", " λ=")


def figure(rows: list[dict[str, Any]]) -> str | None:
    try:
        plt = pyplot()
    except ImportError:
        return None
    families = {
        "baseline": ("k", "*", "knobs off"),
        "write": ("C0", "o", "write knob (h)"),
        "read": ("C1", "s", "read knob (λ)"),
        "both": ("C2", "D", "both"),
    }
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    panels = (("write_j", "device write energy per sample (J)"), ("read_j", "device read energy per sample (J)"))
    base = next(r for r in rows if r["name"] == "baseline")
    for ax, (key, label) in zip(axes, panels, strict=True):
        seen = set()
        for r in rows:
            family = "baseline" if r["name"] == "baseline" else r["name"].split()[0]
            color, marker, legend = families[family]
            err = [[100 * (r["accuracy"] - r["accuracy_min"])], [100 * (r["accuracy_max"] - r["accuracy"])]]
            ax.errorbar(
                r[key],
                100 * r["accuracy"],
                yerr=err,
                color=color,
                marker=marker,
                capsize=2,
                linestyle="none",
                alpha=0.85,
                label=None if family in seen else legend,
            )
            seen.add(family)
            if family != "baseline":
                ax.annotate(
                    _short(r["name"]),
                    (r[key], 100 * r["accuracy"]),
                    fontsize=6,
                    color=color,
                    textcoords="offset points",
                    xytext=(4, -8),
                )
        front = pareto([(r[key], 100 * r["accuracy"]) for r in rows])
        ax.plot(*zip(*front, strict=True), color="grey", linewidth=0.8, linestyle="--", label="Pareto frontier")
        ax.axhline(100 * base["accuracy"] - 1, color="k", linewidth=0.6, linestyle=":", label="baseline − 1 point")
        ax.axvline(
            base[key] / (2.0 if key == "write_j" else 1.5),
            color="r",
            linewidth=0.6,
            linestyle=":",
            label="target: baseline / 2" if key == "write_j" else "target: baseline / 1.5",
        )
        ax.set_xscale("log")
        ax.set_xlabel(label)
    axes[0].set_ylabel("test accuracy (%, mean and min-max over seeds)")
    for ax in axes:
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Energy-aware training on the digits: accuracy against device energy ({DEVICE}, 2-bit)", y=1.0)
    return save_figure(fig, FOLDER, EXP)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--replot", action="store_true", help="rewrite the tables and figure from the JSON only")
    args = parser.parse_args()
    path = Path(__file__).resolve().parent / "results" / FOLDER / f"{EXP}.json"
    if args.replot:
        payload = {k: v for k, v in json.loads(path.read_text()).items() if k not in ("experiment", "scale")}
        write_outputs(
            EXP, FOLDER, payload, markdown(payload["summary"], payload["runs"], figure(payload["summary"]), payload)
        )
        return
    start = time.perf_counter()
    jobs = [
        (s, seed, seed == args.seeds[0] and s["name"] in ("baseline", COMBINED))
        for s in SETTINGS
        for seed in args.seeds
    ]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        runs = []
        for r in pool.map(_run, jobs):
            runs.append(r)
            print(
                f"{r['setting']:24s} seed {r['seed']}: acc {r['accuracy']:.3f}, write {r['write_total_j']:.3g} J, "
                f"read {r['read_total_j']:.3g} J, AOR {r['aor_network']:.4f} ({r['train_seconds']:.0f} s)",
                flush=True,
            )
    seconds = time.perf_counter() - start
    rows = summarise(runs)
    energies = pattern_energies(get_device(DEVICE), BITS)
    pattern = fixed_pattern()
    command = "python experiments/energy_aware.py --seeds " + " ".join(map(str, args.seeds))
    payload = {
        "command": command,
        "wall_seconds": seconds,
        "workers": args.workers,
        "setup": {
            "network": "conv16 (FP) - pool - qconv32 - pool - qfc64 - readout (FP)",
            "config": CONFIG,
            "fc": FC,
            "T": T,
            "epochs": EPOCHS,
            "batch": BATCH,
            "lr": LR,
            "device": DEVICE,
            "bits": BITS,
            "pattern_index": pattern,
            "pattern": energies.patterns[pattern].label,
        },
        "summary": rows,
        "runs": runs,
    }
    write_outputs(EXP, FOLDER, payload, markdown(rows, runs, figure(rows), payload))


if __name__ == "__main__":
    main()
