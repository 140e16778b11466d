"""Experiment 4, activation analysis: per-layer spike rate, weight sparsity and AOR per epoch, and read energy.

    .venv/bin/python experiments/activity.py --scale small   # the CPU main run (2 epochs)
    .venv/bin/python experiments/activity.py --scale full    # the paper-schedule main run (100 epochs)
    .venv/bin/python experiments/activity.py --run-dir PATH  # any run with an AORMeter and a DeviceEnergyCallback

It reads the main run's record (``quest_summary.json``; experiments/main.py makes the run first if missing). The
``AORMeter`` recorded, every epoch (train and val), per layer:

* spike rate of each spiking layer 1-5: spikes per neuron per sample summed over T (METHOD.md §6; r = 1 is the
  ANN's operation count), and per step (r / T);
* weight sparsity of each quantized layer 2-5: share of zero integer codes;
* AOR = N_eff / (ops * T), with N_eff counted exactly (input spike AND non-zero weight), a per-step rate; and the
  synaptic rate (input spikes per op per step, zero weights included), the DIET-SNN-style rate.

Paper (VGG6, W2, epoch 100): mean spike rate 0.13; sparsity > 60% in every layer, max 85%; AOR about 4.7x below the
spike rate. The 4.7x is compared here like-for-like: synaptic rate / AOR of each layer (both per step), which is
1 / (1 - sparsity) when spikes and non-zero weights are independent; and the mean spike rate over T divided by the
mean AOR times T. Read energy per sample (sum_v N(v) E_r^p[v], zero-weight operations not charged) is re-priced from
the recorded per-level operation counts for the paper's 6 patterns on {R0, R3, R6} and for all 210 patterns.

Writes experiments/results/<scale>/activity.{json,md} and docs/img/results/<scale>/activity-*.png.
"""

from __future__ import annotations

from typing import Any

from common import (
    fmt,
    md_image,
    md_table,
    pct,
    pyplot,
    save_figure,
    short,
    si,
    write_outputs,
)
from main import analysis_inputs

from quest_lightning.devices import device_from_dict, pattern_energies
from quest_lightning.energy import read_energy_report
from quest_lightning.summary import ActivityRecord, RunSummary

EXP = "activity"
PAPER_STATES = (0, 3, 6)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def epoch_row(record: ActivityRecord) -> dict[str, Any]:
    inner = record.inner_layers
    ratios = [_ratio(r.synaptic_rate, r.aor) for r in inner]
    ratios = [x for x in ratios if x is not None]
    t = record.timesteps or 1
    rate = record.spike_rate_mean
    return {
        "epoch": record.epoch,
        "spike_rate_mean": rate,
        "spike_rate_per_step_mean": None if rate is None else rate / t,
        "sparsity_mean": record.sparsity_mean,
        "sparsity_max": max((r.sparsity for r in inner), default=None),
        "sparsity_min": min((r.sparsity for r in inner), default=None),
        "aor_mean": record.aor_mean,
        "synaptic_over_aor_mean": sum(ratios) / len(ratios) if ratios else None,
        "spike_over_aor_t": _ratio(rate, (record.aor_mean or 0) * t),
        "neurons": {short(n.neuron): {"rate": n.rate, "rate_per_step": n.rate_per_step} for n in record.neurons},
        "layers": {
            short(r.layer): {
                "aor": r.aor,
                "synaptic_rate": r.synaptic_rate,
                "sparsity": r.sparsity,
                "ops": r.ops,
                "quantized": r.quantized,
                "input_layer": r.input_layer,
            }
            for r in record.layers
        },
    }


def read_energy(summary: RunSummary, record: ActivityRecord) -> dict[str, Any]:
    device = device_from_dict(summary.primary.device)
    counts = {r.layer: r.level_ops for r in record.inner_layers}
    out = {}
    for subset, states in (("paper_3_states", PAPER_STATES), ("all_states", None)):
        pe = pattern_energies(device, summary.bits, states)
        rep = read_energy_report(counts, pe, samples=record.layers[0].samples, count_zero_level_reads=False)
        best = rep.total.best_index
        out[subset] = {
            "patterns": pe.patterns.labels,
            "best_total": {"index": best, "pattern": rep.total.best_label, "j": rep.total.best_j},
            "worst_total_j": rep.total.worst_j,
            "per_layer_at_best_total_j": {short(n): float(r.per_pattern_j[best]) for n, r in rep.per_layer.items()},
            "per_layer_best": {short(n): {"pattern": r.best_label, "j": r.best_j} for n, r in rep.per_layer.items()},
            "total_j": rep.total.per_pattern_j.tolist(),
        }
    return out


def figures(history: dict[str, list[dict[str, Any]]], reads: dict[str, Any], scale: str) -> list[str]:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), layout="constrained")
    for stage, ls in (("val", "-"), ("train", "--")):
        rows = history.get(stage) or []
        if not rows:
            continue
        x = [r["epoch"] + 1 for r in rows]
        for k, name in enumerate(rows[-1]["neurons"]):
            axes[0].plot(
                x, [r["neurons"][name]["rate"] for r in rows], ls, marker="o", c=f"C{k}", label=f"{name} ({stage})"
            )
        inner = [n for n, v in rows[-1]["layers"].items() if v["quantized"] and not v["input_layer"]]
        for k, name in enumerate(inner):
            if stage == "val":
                axes[1].plot(
                    x, [100 * r["layers"][name]["sparsity"] for r in rows], ls, marker="o", c=f"C{k + 1}", label=name
                )
            axes[2].plot(
                x, [r["layers"][name]["aor"] for r in rows], ls, marker="o", c=f"C{k + 1}", label=f"{name} ({stage})"
            )
    axes[0].axhline(0.13, c="gray", ls=":", label="paper mean, epoch 100")
    axes[0].set(xlabel="epoch", ylabel="spikes / neuron / sample (sum over T)", title="spike rate, layers 1-5")
    axes[1].axhline(60, c="gray", ls=":", label="paper: > 60%")
    axes[1].set(xlabel="epoch", ylabel="zero codes [%]", title="weight sparsity, layers 2-5")
    axes[2].set(xlabel="epoch", ylabel="AOR (per step)", title="AOR, layers 2-5")
    for ax in axes:
        ax.legend(fontsize=6)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(f"activity per epoch, VGG6 W2/U2 IF hard ({scale} scale; solid: val, dashed: train)")
    imgs = [save_figure(fig, scale, "activity-per-epoch")]

    fig, ax = plt.subplots(figsize=(7, 3.6), layout="constrained")
    layers = list(reads["all_states"]["per_layer_at_best_total_j"])
    width = 0.38
    for k, (subset, label) in enumerate((("paper_3_states", "best of 6 on {R0,R3,R6}"), ("all_states", "best of 210"))):
        vals = [1e9 * reads[subset]["per_layer_at_best_total_j"][n] for n in layers]
        ax.bar(
            [i + (k - 0.5) * width for i in range(len(layers))],
            vals,
            width,
            label=f"{label}: {reads[subset]['best_total']['pattern']}",
        )
    ax.set_xticks(range(len(layers)), layers)
    ax.set(ylabel="read energy per sample [nJ]", title=f"device read energy per layer, final val epoch ({scale} scale)")
    ax.legend(fontsize=7)
    imgs.append(save_figure(fig, scale, "activity-read-energy"))
    return imgs


def markdown(history, reads, scale, source, imgs) -> str:
    stage = "val" if history.get("val") else "train"
    rows = [
        [
            f"{stage} {r['epoch'] + 1}",
            fmt(r["spike_rate_mean"]),
            fmt(r["spike_rate_per_step_mean"]),
            pct(r["sparsity_mean"]),
            f"{pct(r['sparsity_min'])} – {pct(r['sparsity_max'])}",
            fmt(r["aor_mean"]),
            fmt(r["synaptic_over_aor_mean"]),
            fmt(r["spike_over_aor_t"]),
        ]
        for s in ("train", "val")
        for r in history.get(s, [])
        if s == stage or not history.get("val")
    ]
    rows.append(["paper, epoch 100", "0.13", "", "", "> 60%, max 85%", "", "≈ 4.7", "≈ 4.7"])
    last = history[stage][-1]
    neuron_rows = [[n, fmt(v["rate"]), fmt(v["rate_per_step"])] for n, v in last["neurons"].items()]
    layer_rows = [
        [
            n,
            f"{v['ops']:.4g}",
            "analog input" if v["input_layer"] else fmt(v["synaptic_rate"]),
            fmt(v["aor"]),
            pct(v["sparsity"]) if v["sparsity"] is not None else "FP (not quantized)",
            fmt(_ratio(v["synaptic_rate"], v["aor"])) if v["quantized"] and not v["input_layer"] else "—",
            si(reads["paper_3_states"]["per_layer_at_best_total_j"].get(n))
            if n in reads["all_states"]["per_layer_at_best_total_j"]
            else "—",  # noqa: E501
            si(reads["all_states"]["per_layer_at_best_total_j"].get(n))
            if n in reads["all_states"]["per_layer_at_best_total_j"]
            else "—",
        ]  # noqa: E501
        for n, v in last["layers"].items()
    ]
    b6, b210 = reads["paper_3_states"]["best_total"], reads["all_states"]["best_total"]
    return "\n\n".join(
        [
            f"### Activity ({scale} scale)",
            f"Source: `{source}`",
            "Means over layers (spike rate: layers 1–5; sparsity and AOR: quantized layers 2–5):",
            md_table(
                [
                    "epoch",
                    "spike rate (sum over T)",
                    "per step",
                    "sparsity mean",
                    "sparsity range",
                    "AOR (per step)",
                    "synaptic rate / AOR",
                    "spike rate / (AOR·T)",
                ],
                rows,
            ),
            f"Per spiking layer, {stage} epoch {last['epoch'] + 1}:",
            md_table(["neuron", "spike rate (sum over T)", "per step"], neuron_rows),
            f"Per synaptic layer, {stage} epoch {last['epoch'] + 1} (ops = ANN MACs per sample per step):",
            md_table(
                [
                    "layer",
                    "ops",
                    "synaptic rate (input spikes, per step)",
                    "AOR",
                    "sparsity",
                    "synaptic rate / AOR",
                    f"read energy, best of 6 ({b6['pattern']})",
                    f"read energy, best of 210 ({b210['pattern']})",
                ],
                layer_rows,
            ),
            f"Read energy per sample, all quantized layers: best of 6 {si(b6['j'])}, best of 210 {si(b210['j'])} "
            f"(worst of 210: {si(reads['all_states']['worst_total_j'])}). Sk-MTJ preset values are illustrative.",
            md_image("activity per epoch", imgs[0]),
            md_image("read energy", imgs[1]),
        ]
    )


def main() -> None:
    args, source, _, summary = analysis_inputs(__doc__)
    if summary is None:
        return
    measured = {s: [r for r in recs if r.empty is None] for s, recs in summary.activity.items()}
    history = {s: [epoch_row(r) for r in recs] for s, recs in measured.items() if recs}
    stage = "val" if history.get("val") else "train"
    reads = read_energy(summary, measured[stage][-1])
    imgs = figures(history, reads, args.scale)
    md = markdown(history, reads, args.scale, str(source), imgs)
    write_outputs(
        EXP, args.scale, {"source": str(source), "history": history, "read_energy": reads, "figures": imgs}, md
    )


if __name__ == "__main__":
    main()
