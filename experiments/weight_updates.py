"""Experiment 3, weight updates: how the 2-bit codes move in the stages of epoch 1, and what the writes cost.

    .venv/bin/python experiments/weight_updates.py --scale small   # stages 1-5, 14-18, 27-31 of a 32-batch epoch
    .venv/bin/python experiments/weight_updates.py --scale full    # the paper's stages 1-10, 96-105, 180-190
    .venv/bin/python experiments/weight_updates.py --run-dir PATH  # any run with a WeightTransitionMonitor

It reads the main run's record (``quest_summary.json``; experiments/main.py makes the run first if missing): the
``WeightTransitionMonitor`` counted, in every stage, the level -> level transitions ``C[i, j]`` of every quantized
layer between consecutive optimizer steps. From those counts it reports, per layer and stage:

* the transition histogram, the frozen share (weights x steps whose code did not change) and the share of changes
  between non-adjacent levels (-1 <-> +1; the paper reports 0%);
* the write energy per sample, sum_{i != j} C[i, j] E_w^p[i, j] / samples seen, re-priced here with
  quest_lightning.energy.write_energy_report for (a) the 6 patterns of the paper's 3-state subset {R0, R3, R6} of
  the 7-state Sk-MTJ and (b) all 210 two-bit patterns on its 7 states (the best one is named).

Writes experiments/results/<scale>/weight_updates.{json,md} and docs/img/results/<scale>/weight_updates-*.png.
"""

from __future__ import annotations

from typing import Any

import torch
from common import md_image, md_table, pct, pyplot, save_figure, short, si, write_outputs
from main import analysis_inputs

from quest_lightning.devices import device_from_dict, pattern_energies
from quest_lightning.energy import write_energy_report
from quest_lightning.summary import RunSummary

EXP = "weight_updates"
PAPER_STATES = (0, 3, 6)


def _code(v: int) -> str:
    return f"{v:+d}" if v else "0"


def transition_labels(qmax: int) -> list[tuple[int, int, str]]:
    n = 2 * qmax + 1
    return [(i, j, f"{_code(i - qmax)}→{_code(j - qmax)}") for i in range(n) for j in range(n) if i != j]


def analyse(summary: RunSummary) -> dict[str, Any]:
    pricing = summary.primary
    device = device_from_dict(pricing.device)
    bits = summary.bits
    subsets = {
        "paper_3_states": pattern_energies(device, bits, PAPER_STATES),
        "all_states": pattern_energies(device, bits),
    }
    stages: dict[str, Any] = {}
    for stage, result in summary.transitions.items():
        counts = {name: torch.tensor(info.counts, dtype=torch.float64) for name, info in result.layers.items()}
        layers = {}
        for name, info in result.layers.items():
            c = counts[name]
            layers[name] = {
                "steps": info.steps,
                "frozen_fraction": info.frozen_fraction,
                "changed_fraction": info.changed_fraction,
                "non_adjacent_fraction": info.non_adjacent_fraction,
                "transitions": {lab: float(c[i, j]) for i, j, lab in transition_labels(info.qmax)},
                "weight_steps": float(c.sum()),
            }
        energy = {}
        for subset, pe in subsets.items():
            rep = write_energy_report(counts, pe, samples=result.samples, steps=result.steps)
            energy[subset] = {
                "patterns": pe.patterns.labels,
                "per_layer_j": {n: r.per_pattern_j.tolist() for n, r in rep.per_layer.items()},
                "total_j": rep.total.per_pattern_j.tolist(),
                "best": {
                    n: {"index": r.best_index, "pattern": r.best_label, "j": r.best_j}
                    for n, r in [*rep.per_layer.items(), ("total", rep.total)]
                },
                "same_best_in_every_layer": rep.same_best_everywhere,
            }
        stages[stage] = {
            "epoch": result.epoch,
            "steps": result.steps,
            "batch_size": result.batch_size,
            "layers": layers,
            "energy": energy,
        }
    out: dict[str, Any] = {"device": device.name, "bits": bits, "stages": stages}
    for subset in subsets:
        winners = {s["energy"][subset]["best"]["total"]["pattern"] for s in stages.values()}
        winners |= {b["pattern"] for s in stages.values() for b in s["energy"][subset]["best"].values()}
        out[f"{subset}_same_best_everywhere"] = len(winners) == 1
        out[f"{subset}_winners"] = sorted(winners)
    # the callback priced the same counts with the run's own pattern set: check that we agree
    check = {}
    same = [k for k, pe in subsets.items() if tuple(pe.patterns.labels) == pricing.patterns]
    for stage, w in pricing.write.items():
        for subset in same:
            ours = stages[stage]["energy"][subset]["total_j"][w.pattern_index]
            check[stage] = {"subset": subset, "callback_j": w.total_j, "offline_j": ours}
    out["callback_check"] = check
    return out


def figures(res: dict[str, Any], scale: str) -> list[str]:
    plt = pyplot()
    imgs = []
    stages = list(res["stages"])
    fig, axes = plt.subplots(
        1, len(stages), figsize=(4.2 * len(stages), 3.6), sharey=True, squeeze=False, layout="constrained"
    )
    for ax, stage in zip(axes[0], stages, strict=True):
        layers = res["stages"][stage]["layers"]
        names = list(layers)
        labels = list(next(iter(layers.values()))["transitions"])
        width = 0.8 / len(names)
        for k, name in enumerate(names):
            info = layers[name]
            ys = [info["transitions"][lab] / info["weight_steps"] for lab in labels]
            ax.bar([i + (k - (len(names) - 1) / 2) * width for i in range(len(labels))], ys, width, label=short(name))
        ax.set_yscale("log")
        ax.set_xticks(range(len(labels)), labels, rotation=45, fontsize=8)
        ax.set_title(f"{stage} (epoch {res['stages'][stage]['epoch'] + 1})", fontsize=9)
    axes[0][0].set_ylabel("share of weight-steps")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"transition histograms, W2 codes ({scale} scale); no bar = 0")
    imgs.append(save_figure(fig, scale, "weight_updates-transitions"))

    fig, axes = plt.subplots(
        1, len(stages), figsize=(4.2 * len(stages), 3.8), sharey=True, squeeze=False, layout="constrained"
    )
    for ax, stage in zip(axes[0], stages, strict=True):
        e = res["stages"][stage]["energy"]
        six = e["paper_3_states"]
        vals = [1e9 * v for v in six["total_j"]]
        ax.bar(range(len(vals)), vals, color="tab:blue", label="6 patterns on {R0,R3,R6}")
        best = e["all_states"]["best"]["total"]
        ax.axhline(1e9 * best["j"], c="tab:red", ls="--", label="best of 210 (7 states)")
        ax.set_xticks(range(len(vals)), six["patterns"], rotation=60, fontsize=7)
        ax.set_title(stage, fontsize=9)
    axes[0][0].set_ylabel("write energy per sample [nJ]")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"weight-update energy, all layers, Sk-MTJ preset ({scale} scale)")
    imgs.append(save_figure(fig, scale, "weight_updates-write-energy"))
    return imgs


def markdown(res: dict[str, Any], scale: str, source: str, imgs: list[str]) -> str:
    parts = [f"### Weight updates ({scale} scale)", f"Source: `{source}`"]
    rows = []
    for stage, s in res["stages"].items():
        for name, info in s["layers"].items():
            t = info["transitions"]
            rows.append(
                [
                    stage,
                    short(name),
                    s["steps"],
                    s["batch_size"],
                    pct(info["frozen_fraction"], 2),
                    pct(info["changed_fraction"], 3),
                    pct(info["non_adjacent_fraction"], 2),
                    *[f"{int(v)}" for v in t.values()],
                ]
            )
    labels = list(next(iter(next(iter(res["stages"].values()))["layers"].values()))["transitions"])
    header = ["stage", "layer", "steps", "batch", "frozen", "changed", "non-adjacent (of changes)", *labels]
    parts += ["Transitions (counts over the stage's steps):", md_table(header, rows), md_image("transitions", imgs[0])]
    for stage, s in res["stages"].items():
        six = s["energy"]["paper_3_states"]
        full = s["energy"]["all_states"]
        rows = []
        for name in [*six["per_layer_j"], "total"]:
            vals = six["total_j"] if name == "total" else six["per_layer_j"][name]
            best6 = six["best"][name]["index"]
            cells = [f"**{si(v)}**" if k == best6 else si(v) for k, v in enumerate(vals)]
            b = full["best"][name]
            rows.append(
                [short(name) if name != "total" else "**all layers**", *cells, f"{si(b['j'])} ({b['pattern']})"]
            )
        parts += [
            f"Write energy per sample, {stage} ({s['steps']} steps × batch {s['batch_size']}); bold = best of the 6:",
            md_table(["layer", *six["patterns"], "best of 210 on 7 states"], rows),
        ]
    parts += [
        md_image("write energy", imgs[1]),
        f"Same best pattern in every layer and stage: 6-pattern subset **{res['paper_3_states_same_best_everywhere']}**"
        f" (winners: {'; '.join(res['paper_3_states_winners'])}); all 210: "
        f"**{res['all_states_same_best_everywhere']}** (winners: {'; '.join(res['all_states_winners'])}).",
    ]
    return "\n\n".join(parts)


def main() -> None:
    args, source, folder, summary = analysis_inputs(__doc__)
    if summary is None:
        return
    if not summary.transitions or summary.primary is None:
        raise SystemExit(f"{folder}: the run has no transition stages or no priced device (DeviceEnergyCallback)")
    res = analyse(summary)
    imgs = figures(res, args.scale)
    md = markdown(res, args.scale, str(source), imgs)
    write_outputs(EXP, args.scale, {"source": str(source), "figures": imgs, **res}, md)


if __name__ == "__main__":
    main()
