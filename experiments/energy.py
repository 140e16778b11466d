"""Experiment 5, energy: QUEST against the 45 nm CMOS ANN and a DIET-SNN-style SNN, with both first-layer conventions.

    .venv/bin/python experiments/energy.py --scale small   # the CPU main run (2 epochs)
    .venv/bin/python experiments/energy.py --scale full    # the paper-schedule main run (100 epochs)
    .venv/bin/python experiments/energy.py --run-dir PATH  # any run with an AORMeter (and DeviceEnergyCallback)

Re-prices, offline, the per-layer activity records of the main run's record (``quest_summary.json``: ops, aor,
synaptic_rate, timesteps of every synaptic layer, every epoch) with quest_lightning.energy (Horowitz 45 nm FP32:
E_MAC 4.6 pJ, E_AC 0.9 pJ):

* ANN: sum_l ops_l E_MAC                                                          (``ann_energy``)
* DIET-SNN style: E_1 + sum_{l>=2} (synaptic rate_l * T) ops_l E_AC              (``diet_snn_energy``)
* QUEST style: E_1 + sum_{l>=2} (AOR_l * T) ops_l E_AC                           (``quest_energy``)

under both first-layer conventions: ``first_layer="mac"`` charges the analog-input conv as ops_1 MACs at E_MAC (the
DIET-SNN convention; it caps ANN/QUEST at sum(ops)/ops_1, about 61x for VGG6, METHOD.md §7), and
``first_layer="reads"`` charges it as its reads of non-zero weights at E_AC, once per sample (AOR_1 * ops_1: with
direct coding its input is the same at every step and is computed once), as the DeviceEnergyCallback does. The
callback priced only the convention it was configured with ("mac" in the recipes);
the "mac" numbers recomputed here are checked against it. Paper: ANN/QUEST 93x, VGG6-DIET/QUEST 2.47x,
VGG16-DIET/QUEST 7.1x (not reproduced: that needs a VGG16 DIET-SNN's spike rates, which no run here measures).

A sensitivity variant is also shown: "reads" with the first layer read at every one of the T steps (a design that
recomputes the first conv at each step).

Writes experiments/results/<scale>/energy.{json,md} and docs/img/results/<scale>/energy-*.png.
"""

from __future__ import annotations

from typing import Any

from common import fmt, md_image, md_table, pyplot, save_figure, short, si, write_outputs
from main import analysis_inputs

from quest_lightning.energy import compare_compute
from quest_lightning.summary import ActivityRecord, RunSummary

EXP = "energy"
CONVENTIONS = ("mac", "reads")
PAPER = {"ann_over_quest": 93.0, "diet_over_quest": 2.47, "vgg16_diet_over_quest": 7.1}


def price(record: ActivityRecord, cmos: str, first_layer: str, every_step: bool = False) -> dict[str, Any]:
    """ANN, DIET-SNN-style and QUEST-style energy per sample of one activity record (the library's
    ``compare_compute``, the callback's own pricing). ``every_step`` (with "reads") charges the first layer's reads
    at all T steps (a sensitivity variant, not one of the two conventions)."""
    c = compare_compute(record, cmos, first_layer=first_layer, first_layer_every_step=every_step)
    ops = [r.ops for r in record.layers]
    return {
        "first_layer": first_layer,
        "convention": c.convention,
        "timesteps": c.timesteps,
        "layers": [short(name) for name in c.layers],
        "ops": ops,
        "ann": c.ann.to_dict(),
        "diet_snn": c.diet_snn.to_dict(),
        "quest": c.quest.to_dict(),
        "ann_over_quest": c.ann_over_quest,
        "diet_over_quest": c.diet_over_quest,
        "ann_over_diet": c.ann.total_j / c.diet_snn.total_j,
        "mac_cap_ann_over_snn": sum(ops) / ops[0],
        "silent_network": c.silent_network,
    }


def analyse(summary: RunSummary) -> dict[str, Any]:
    pricing = summary.primary
    cmos = pricing.cmos.name if pricing is not None else "45nm_fp32"
    out: dict[str, Any] = {"cmos": pricing.cmos.to_dict() if pricing else None, "per_epoch": {}, "final": {}}
    measured = {s: [r for r in recs if r.empty is None] for s, recs in summary.activity.items()}
    for stage, records in measured.items():
        out["per_epoch"][stage] = [
            {"epoch": rec.epoch, **{c: price(rec, cmos, c) for c in CONVENTIONS}} for rec in records
        ]
    stage = "val" if measured.get("val") else "train"
    out["stage"] = stage
    out["final"] = out["per_epoch"][stage][-1]
    out["sensitivity_reads_every_step"] = price(measured[stage][-1], cmos, "reads", every_step=True)
    logged = pricing.compute.get(stage) if pricing is not None else None
    if logged:
        mine = out["final"][logged.first_layer]
        out["callback_check"] = {
            "first_layer": logged.first_layer,
            "callback_ann_over_quest": logged.ann_over_quest,
            "offline_ann_over_quest": mine["ann_over_quest"],
            "callback_diet_over_quest": logged.diet_over_quest,
            "offline_diet_over_quest": mine["diet_over_quest"],
        }
    return out


def figures(res: dict[str, Any], scale: str) -> list[str]:
    plt = pyplot()
    final = res["final"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True, layout="constrained")
    for ax, conv in zip(axes, CONVENTIONS, strict=True):
        p = final[conv]
        layers = p["layers"]
        bottoms = [0.0, 0.0, 0.0]
        for k, name in enumerate(layers):
            vals = [1e6 * p[m]["per_layer_j"][k] for m in ("ann", "diet_snn", "quest")]
            ax.bar(["ANN (CMOS)", "DIET-SNN style", "QUEST (AOR)"], vals, bottom=bottoms, label=name, color=f"C{k}")
            bottoms = [b + v for b, v in zip(bottoms, vals, strict=True)]
        ax.set_title(
            f"first_layer={conv!r}: ANN/QUEST {p['ann_over_quest']:.1f}×, DIET/QUEST {p['diet_over_quest']:.2f}×",
            fontsize=9,
        )
    axes[0].set_ylabel("compute energy per sample [µJ] (stacked by layer)")
    axes[1].legend(fontsize=7)
    fig.suptitle(
        f"45 nm CMOS compute energy, VGG6 W2/U2 IF hard ({scale} scale, {res['stage']} epoch {final['epoch'] + 1})"
    )
    imgs = [save_figure(fig, scale, "energy-breakdown")]

    fig, ax = plt.subplots(figsize=(7, 3.6), layout="constrained")
    for stage, ls in (("val", "-"), ("train", "--")):
        rows = res["per_epoch"].get(stage) or []
        x = [r["epoch"] + 1 for r in rows]
        for conv, c in zip(CONVENTIONS, ("C0", "C1"), strict=True):
            if rows:
                ax.plot(
                    x,
                    [r[conv]["ann_over_quest"] for r in rows],
                    ls,
                    marker="o",
                    c=c,
                    label=f"ANN/QUEST, {conv} ({stage})",
                )
                ax.plot(
                    x,
                    [r[conv]["diet_over_quest"] for r in rows],
                    ls,
                    marker="s",
                    c=c,
                    alpha=0.5,
                    label=f"DIET/QUEST, {conv} ({stage})",
                )
    ax.axhline(PAPER["ann_over_quest"], c="gray", ls=":", label="paper 93×")
    ax.axhline(final["mac"]["mac_cap_ann_over_snn"], c="k", ls="-.", lw=0.8, label="cap with a MAC first layer")
    ax.set_yscale("log")
    ax.set(xlabel="epoch", ylabel="energy ratio", title=f"energy ratios per epoch ({scale} scale)")
    ax.legend(fontsize=6)
    ax.xaxis.get_major_locator().set_params(integer=True)
    imgs.append(save_figure(fig, scale, "energy-ratios"))
    return imgs


def markdown(res: dict[str, Any], scale: str, source: str, imgs: list[str]) -> str:
    f = res["final"]
    rows = []
    for conv in CONVENTIONS:
        p = f[conv]
        rows.append(
            [
                f'`first_layer="{conv}"`',
                si(p["ann"]["total_j"]),
                si(p["diet_snn"]["total_j"]),
                si(p["quest"]["total_j"]),
                f"{p['ann_over_quest']:.1f}×",
                f"{p['diet_over_quest']:.2f}×",
                f"{p['ann_over_diet']:.1f}×",
            ]
        )
    p = res["sensitivity_reads_every_step"]
    rows.append(
        [
            "sensitivity: `reads`, layer 1 read at all T steps",
            si(p["ann"]["total_j"]),
            si(p["diet_snn"]["total_j"]),
            si(p["quest"]["total_j"]),
            f"{p['ann_over_quest']:.1f}×",
            f"{p['diet_over_quest']:.2f}×",
            f"{p['ann_over_diet']:.1f}×",
        ]
    )
    rows.append(["paper (convention not stated)", "", "", "", "93×", "2.47× (VGG6), 7.1× (VGG16)", ""])
    layer_rows = []
    for k, name in enumerate(f["mac"]["layers"]):
        layer_rows.append(
            [
                name,
                f"{f['mac']['ops'][k]:.4g}",
                si(f["mac"]["ann"]["per_layer_j"][k]),
                si(f["mac"]["diet_snn"]["per_layer_j"][k]),
                si(f["mac"]["quest"]["per_layer_j"][k]),
                si(f["reads"]["diet_snn"]["per_layer_j"][k]),
                si(f["reads"]["quest"]["per_layer_j"][k]),
            ]
        )
    check = res.get("callback_check")
    check_line = (
        f"Check against the DeviceEnergyCallback ({check['first_layer']!r}): ANN/QUEST callback "
        f"{fmt(check['callback_ann_over_quest'], 6)} vs offline {fmt(check['offline_ann_over_quest'], 6)}; DIET/QUEST "
        f"{fmt(check['callback_diet_over_quest'], 6)} vs {fmt(check['offline_diet_over_quest'], 6)}."
        if check
        else "No callback figures in this run to check against."
    )
    flag = (
        ["**Flag:** the network never fired in this epoch: these ratios are the cost of a dead network, not a saving."]
        if f["mac"]["silent_network"]
        else []
    )
    return "\n\n".join(
        [
            f"### Energy against CMOS ({scale} scale)",
            *flag,
            f"Source: `{source}`, {res['stage']} epoch {f['epoch'] + 1}, T = {f['mac']['timesteps']}, "
            f"CMOS {res['cmos']['name']} (E_MAC {res['cmos']['e_mac_j'] * 1e12:.1f} pJ, "
            f"E_AC {res['cmos']['e_ac_j'] * 1e12:.1f} pJ).",
            md_table(["convention", "ANN", "DIET-SNN style", "QUEST", "ANN/QUEST", "DIET/QUEST", "ANN/DIET"], rows),
            f"With a MAC-charged first layer, ANN/SNN can never exceed sum(ops)/ops_1 = "
            f"**{f['mac']['mac_cap_ann_over_snn']:.1f}×** for VGG6, so the paper's 93× needs a cheaper first layer.",
            "Per layer (J per sample):",
            md_table(["layer", "ops", "ANN", "DIET (mac)", "QUEST (mac)", "DIET (reads)", "QUEST (reads)"], layer_rows),
            check_line,
            md_image("energy breakdown", imgs[0]),
            md_image("energy ratios", imgs[1]),
        ]
    )


def main() -> None:
    args, source, _, summary = analysis_inputs(__doc__)
    if summary is None:
        return
    res = analyse(summary)
    imgs = figures(res, args.scale)
    write_outputs(
        EXP, args.scale, {"source": str(source), "figures": imgs, **res}, markdown(res, args.scale, source, imgs)
    )


if __name__ == "__main__":
    main()
