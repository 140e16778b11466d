"""MINT's initial scale against a range-based one: per-layer spike rates and accuracy at 2, 3 and 4 bits.

    .venv/bin/python experiments/alpha_init.py                 # 2 seeds x 3 bit widths x 2 inits, 12 runs
    .venv/bin/python experiments/alpha_init.py --seeds 0 1 2  # more seeds
    .venv/bin/python experiments/alpha_init.py --replot        # tables and figure again from the JSON, no training

MINT starts every quantized layer at :math:`\\alpha_0 = 2\\overline{|W|}/\\sqrt{Q_b}`, LSQ's initial *step* applied to
MINT's clip *range*: at 3 and 4 bits it clips about 42% and 62% of the weights, and the membrane, quantized on the
same grid, is clipped at the same :math:`\\alpha`. The range-based option (``alpha_init="range"``) starts at the
99.9th percentile of :math:`|\\tanh W|` instead.

The network is a five-spiking-layer VGG on the 8x8 digits of scikit-learn (1,347 train / 450 test images, the split
of tests/test_digits_end_to_end.py), shaped like the paper's VGG6: a full-precision first conv (direct coding, T = 4),
three quantized convs, one quantized FC, a full-precision readout; IF neurons, hard reset, theta = 0.5, the membrane
on its layer's grid. Training: Adam (lr 3e-3, weight decay 1e-4), batch 32, 8 epochs, lr / 10 after epoch 6, loss on
the mean readout over T. Per run it records, on the test images, the spike rate of each spiking layer (spikes per
neuron per time step) before and after training, the test accuracy, and per quantized layer the initial and final
alpha and the share of weights clipped at initialisation.

Writes experiments/results/digits/alpha_init.{json,md} and docs/img/results/digits/alpha_init.png.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from common import digits, md_image, md_table, pct, pyplot, save_figure, write_outputs

from quest_lightning.nn import DirectEncoder, SpikingVGG, quantized_layers, recording, spiking_neurons

EXP, FOLDER = "alpha_init", "digits"
CONFIG, FC = [16, 32, "P", 32, 64, "P"], [128]
T, EPOCHS, BATCH, LR, WEIGHT_DECAY = 4, 8, 32, 3e-3, 1e-4
BITS, INITS = (2, 3, 4), ("mint", "range")


def short(name: str) -> str:
    return name.removesuffix(".neuron").removesuffix(".layer")


def evaluate(model: SpikingVGG, x: torch.Tensor, y: torch.Tensor) -> tuple[float, dict[str, float]]:
    """Test accuracy and the spike rate of every spiking layer (spikes per neuron per time step)."""
    model.eval()
    for _, neuron in spiking_neurons(model):
        neuron.reset_recording()
    with torch.no_grad(), recording(model):
        logits = model(DirectEncoder(T)(x)).mean(0)
    rates = {short(name): float(n.spike_count) / (n.recorded_rows * n.neurons) for name, n in spiking_neurons(model)}
    return float((logits.argmax(1) == y).float().mean()), rates


def clipped_share(layer) -> float:
    """Share of the weights beyond the clip range, :math:`|\\tanh W| > \\alpha`."""
    t = torch.tanh(layer.weight.detach()) if layer.transform == "tanh" else layer.weight.detach()
    return float((t.abs() > layer.alpha.detach()).float().mean())


def run(bits: int, init: str, seed: int, data) -> dict[str, Any]:
    x_train, y_train, x_test, y_test = data
    torch.manual_seed(seed)
    model = SpikingVGG(CONFIG, FC, in_channels=1, image_size=8, num_classes=10, bits=bits, alpha_init=init)
    layers = quantized_layers(model)
    alpha0 = {short(n): float(m.alpha.detach()) for n, m in layers}
    clipped0 = {short(n): clipped_share(m) for n, m in layers}
    _, rates0 = evaluate(model, x_test, y_test)
    opt = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(0.75 * EPOCHS)], 0.1)
    gen = torch.Generator().manual_seed(seed)
    encode = DirectEncoder(T)
    start = time.perf_counter()
    for _ in range(EPOCHS):
        model.train()
        order = torch.randperm(len(y_train), generator=gen)
        for i in range(0, len(order), BATCH):
            idx = order[i : i + BATCH]
            loss = F.cross_entropy(model(encode(x_train[idx])).mean(0), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    accuracy, rates = evaluate(model, x_test, y_test)
    return {
        "bits": bits,
        "alpha_init": init,
        "seed": seed,
        "accuracy": accuracy,
        "spike_rate_init": rates0,
        "spike_rate": rates,
        "alpha_init_value": alpha0,
        "alpha_final": {short(n): float(m.alpha.detach()) for n, m in layers},
        "clipped_at_init": clipped0,
        "train_seconds": time.perf_counter() - start,
    }


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for bits in BITS:
        for init in INITS:
            group = [r for r in runs if r["bits"] == bits and r["alpha_init"] == init]
            acc = [r["accuracy"] for r in group]
            layers = list(group[0]["spike_rate"])
            qlayers = list(group[0]["clipped_at_init"])
            rows.append(
                {
                    "bits": bits,
                    "alpha_init": init,
                    "seeds": [r["seed"] for r in group],
                    "accuracy_mean": statistics.mean(acc),
                    "accuracy_min": min(acc),
                    "accuracy_max": max(acc),
                    "spike_rate_init": {k: statistics.mean(r["spike_rate_init"][k] for r in group) for k in layers},
                    "spike_rate": {k: statistics.mean(r["spike_rate"][k] for r in group) for k in layers},
                    "clipped_at_init": {k: statistics.mean(r["clipped_at_init"][k] for r in group) for k in qlayers},
                }
            )
    return rows


def markdown(rows: list[dict[str, Any]], image: str | None, seconds: float) -> str:
    layers = list(rows[0]["spike_rate"])
    header = ["bits", "alpha_init", "test accuracy (mean, min-max)"] + [f"{k}" for k in layers]
    before = [[r["bits"], r["alpha_init"], ""] + [f"{r['spike_rate_init'][k]:.3f}" for k in layers] for r in rows]
    after = [
        [r["bits"], r["alpha_init"], f"{pct(r['accuracy_mean'])} ({pct(r['accuracy_min'])}-{pct(r['accuracy_max'])})"]
        + [f"{r['spike_rate'][k]:.3f}" for k in layers]
        for r in rows
    ]
    qlayers = list(rows[0]["clipped_at_init"])
    clipped = [[r["bits"], r["alpha_init"]] + [pct(r["clipped_at_init"][k], 0) for k in qlayers] for r in rows]
    seeds = rows[0]["seeds"]
    text = [
        f"Digits, five spiking layers, T = {T}, {EPOCHS} epochs, seeds {seeds}, means over seeds; "
        f"total wall time {seconds:.0f} s.",
        "",
        "**After training**: test accuracy and spike rate per spiking layer (spikes per neuron per time step, "
        "on the test images):",
        "",
        md_table(header, after),
        "",
        "**Before training** (the same networks at initialisation):",
        "",
        md_table(["bits", "alpha_init", ""] + layers, before),
        "",
        "**Weights clipped at initialisation** (share with |tanh W| > alpha), per quantized layer:",
        "",
        md_table(["bits", "alpha_init"] + qlayers, clipped),
    ]
    if image:
        text += ["", md_image("spike rates per layer", image)]
    return "\n".join(text)


def figure(rows: list[dict[str, Any]]) -> str | None:
    try:
        plt = pyplot()
    except ImportError:
        return None
    layers = list(rows[0]["spike_rate"])
    fig, axes = plt.subplots(1, len(BITS), figsize=(4.2 * len(BITS), 3.2), sharey=True)
    for ax, bits in zip(axes, BITS, strict=True):
        for r in (r for r in rows if r["bits"] == bits):
            style = "-o" if r["alpha_init"] == "mint" else "-s"
            ax.plot(range(1, len(layers) + 1), [r["spike_rate"][k] for k in layers], style, label=r["alpha_init"])
        ax.set_title(f"{bits}-bit")
        ax.set_xlabel("spiking layer")
        ax.set_xticks(range(1, len(layers) + 1))
    axes[0].set_ylabel("spikes / neuron / step")
    axes[0].legend(title="alpha_init")
    fig.suptitle("Spike rate per layer after training (digits, T = 4)", y=1.03)
    return save_figure(fig, FOLDER, EXP)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--replot", action="store_true", help="rewrite the tables and figure from the JSON only")
    args = parser.parse_args()
    if args.replot:
        path = Path(__file__).resolve().parent / "results" / FOLDER / f"{EXP}.json"
        payload = {k: v for k, v in json.loads(path.read_text()).items() if k not in ("experiment", "scale")}
        rows = payload["summary"]
        write_outputs(EXP, FOLDER, payload, markdown(rows, figure(rows), payload["wall_seconds"]))
        return
    torch.set_num_threads(1)  # a network this small is fastest on one thread, and does not stall a shared CPU
    data = digits()
    start = time.perf_counter()
    runs = []
    for seed in args.seeds:
        for bits in BITS:
            for init in INITS:
                r = run(bits, init, seed, data)
                runs.append(r)
                rates = " ".join(f"{v:.3f}" for v in r["spike_rate"].values())
                print(f"seed {seed} W{bits} {init:5s}: acc {r['accuracy']:.3f}, rates {rates}")
    seconds = time.perf_counter() - start
    rows = summarise(runs)
    image = figure(rows)
    command = "python experiments/alpha_init.py --seeds " + " ".join(map(str, args.seeds))
    payload = {"command": command, "wall_seconds": seconds, "summary": rows, "runs": runs}
    payload["setup"] = {"config": CONFIG, "fc": FC, "T": T, "epochs": EPOCHS, "batch": BATCH, "lr": LR}
    write_outputs(EXP, FOLDER, payload, markdown(rows, image, seconds))


if __name__ == "__main__":
    main()
