"""Experiment 5, energy: QUEST against the 45 nm CMOS ANN and a DIET-SNN-style SNN, with both first-layer conventions.

    .venv/bin/python experiments/energy.py --scale small   # the CPU main run (2 epochs)
    .venv/bin/python experiments/energy.py --scale full    # the paper-schedule main run (100 epochs)
    .venv/bin/python experiments/energy.py --run-dir PATH  # any run with an AORMeter (and DeviceEnergyCallback)

Re-prices, offline, the per-layer activity records of the main run's ``quest_summary.json`` (ops, aor,
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

from quest_lightning.energy import ann_energy, diet_snn_energy, quest_energy

EXP = "energy"
CONVENTIONS = ("mac", "reads")
PAPER = {"ann_over_quest": 93.0, "diet_over_quest": 2.47, "vgg16_diet_over_quest": 7.1}


def price(record: dict[str, Any], cmos: str, first_layer: str, every_step: bool = False) -> dict[str, Any]:
    """ANN, DIET-SNN-style and QUEST-style energy per sample of one activity record. ``every_step`` (with "reads")
    charges the first layer's reads at all T steps (a sensitivity variant, not one of the two conventions)."""
    layers = record["layers"]
    ops = [r["ops"] for r in layers]
    t = int(record.get("timesteps") or round(layers[0]["timesteps"]))
    reads = layers[0]["aor"] * layers[0]["ops"] * (t if every_step else 1) if first_layer == "reads" else None
    ann = ann_energy(ops, cmos)
    diet = diet_snn_energy(
        ops,
        [None] + [r["synaptic_rate"] * t for r in layers[1:]],
        cmos,
        first_layer=first_layer,
        first_layer_reads=reads,
    )
    quest = quest_energy(
        ops,
        [None] + [r["aor"] for r in layers[1:]],
        cmos,
        timesteps=t,
        first_layer=first_layer,
        first_layer_reads=reads,
    )
    return {
        "first_layer": first_layer,
        "convention": quest.convention,
        "timesteps": t,
        "layers": [short(r["layer"]) for r in layers],
        "ops": ops,
        "ann": ann.to_dict(),
        "diet_snn": diet.to_dict(),
        "quest": quest.to_dict(),
        "ann_over_quest": ann.total_j / quest.total_j,
        "diet_over_quest": diet.total_j / quest.total_j,
        "ann_over_diet": ann.total_j / diet.total_j,
        "mac_cap_ann_over_snn": sum(ops) / ops[0],
    }


def analyse(summary: dict[str, Any]) -> dict[str, Any]:
    cmos = summary.get("cmos", {}).get("name", "45nm_fp32")
    out: dict[str, Any] = {"cmos": summary.get("cmos"), "per_epoch": {}, "final": {}}
    for stage, records in summary["activity"].items():
        out["per_epoch"][stage] = [
            {"epoch": rec["epoch"], **{c: price(rec, cmos, c) for c in CONVENTIONS}} for rec in records
        ]
    stage = "val" if summary["activity"].get("val") else "train"
    out["stage"] = stage
    out["final"] = out["per_epoch"][stage][-1]
    out["sensitivity_reads_every_step"] = price(summary["activity"][stage][-1], cmos, "reads", every_step=True)
    logged = summary.get("energy", {}).get("compute", {}).get(stage)
    if logged:
        conv = logged["first_layer"]
        mine = out["final"][conv]
        out["callback_check"] = {
            "first_layer": conv,
            "callback_ann_over_quest": logged["ann_over_quest"],
            "offline_ann_over_quest": mine["ann_over_quest"],
            "callback_diet_over_quest": logged["diet_over_quest"],
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
    return "\n\n".join(
        [
            f"### Energy against CMOS ({scale} scale)",
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
