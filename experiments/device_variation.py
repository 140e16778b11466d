"""Device variation on a CPU-sized network: accuracy against sigma for the six 2-bit Sk-MTJ patterns, stuck cells,
noise-aware fine-tuning, and write endurance.

    .venv/bin/python experiments/device_variation.py            # 3-5 minutes on 2 CPU cores
    .venv/bin/python experiments/device_variation.py --draws 5  # quicker, noisier

The network is the digits network of tests/test_digits_end_to_end.py: ``SpikingVGG([16, "P", 32, "P"], [64])`` on
the 8x8 digits of scikit-learn (1,347 train / 450 test images, stratified split, random_state 0), 2-bit weights in
the two hidden layers (the first conv and the readout full precision), IF neurons, direct coding with T = 4, Adam
3e-3 for 8 epochs, /10 after epoch 6, batch 32, seed 0, one CPU thread.

The device is the ``skmtj7`` preset, whose non-idealities are ideal; the script sets them (they are swept, not
measured). The patterns are the 6 maps of the levels -1, 0, +1 onto the states (0, 3, 6), i.e. 5.0, 5.6, 6.2 kOhm.

1. Training, counting the writes of every cell (``count_writes`` after every optimizer step); endurance projection
   for example limits of 1e6, 1e9 and 1e12 cycles.
2. Accuracy against device-to-device sigma (sigma of ln R, all states), nearest-level read (a sense amplifier), and
   the same with a linear (analog) read.
3. Accuracy against the fraction of cells stuck at a random state.
4. Noise-aware fine-tuning: 4 more epochs at lr 1e-3 under the device's noise at sigma = 0.05 (a fresh array at
   every forward pass), against the same fine-tuning without noise, evaluated on fresh arrays.

Every evaluation is ``--draws`` arrays (default 20) with the same draw seeds for every pattern and sigma. Writes
experiments/results/digits/device_variation.{json,md} and docs/img/device-variation/*.png.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from common import REPO, digits, md_table, pyplot, write_outputs

from quest_lightning.devices import count_writes, endurance_report, enumerate_patterns, get_device
from quest_lightning.hardware import (
    ArrayModel,
    LinearInterpolation,
    NearestLevel,
    noise_aware_training,
    plot_variation_sweep,
    variation_sweep,
)
from quest_lightning.nn import DirectEncoder, SpikingVGG, quantized_layers

EXP, SCALE = "device_variation", "digits"
IMAGES = Path("docs/img/device-variation")
STATES = (0, 3, 6)
SIGMAS = (0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08)
STUCK = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1)
NAT_SIGMA, NAT_EVAL = 0.05, (0.0, 0.03, 0.05, 0.08)
LIMITS = (1e6, 1e9, 1e12)
SEED, T, EPOCHS, BATCH, LR = 0, 4, 8, 32, 3e-3
FT_EPOCHS, FT_LR = 4, 1e-3
SECTIONS = {  # sweep key: (markdown title, what the plot shows, image name)
    "d2d_nearest": (
        "Accuracy against device-to-device sigma, nearest-level read",
        "nearest-level read",
        "accuracy-vs-d2d-nearest",
    ),
    "d2d_linear": ("The same with a linear (analog) read", "linear (analog) read", "accuracy-vs-d2d-linear"),
    "stuck_random": ("Cells stuck at a random state", "cells stuck at a random state", "accuracy-vs-stuck"),
}


def fit(model, encode, x, y, epochs: int, lr: float, seed: int, writes: dict | None = None) -> int:
    """Adam with one /10 step at 75 %; counts writes per cell into ``writes`` if given. Returns the steps taken."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(0.75 * epochs)], 0.1)
    gen = torch.Generator().manual_seed(seed)
    layers = quantized_layers(model)
    previous = {name: layer.current_codes() for name, layer in layers}
    steps = 0
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(order), BATCH):
            idx = order[i : i + BATCH]
            loss = F.cross_entropy(model(encode(x[idx])).mean(0), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            if writes is not None:
                for name, layer in layers:
                    codes = layer.current_codes()
                    writes[name] = count_writes(previous[name], codes, writes.get(name))
                    previous[name] = codes
        sched.step()
    model.eval()
    return steps


def save(fig, name: str) -> str:
    folder = REPO / IMAGES
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / f"{name}.png", dpi=110, bbox_inches="tight")
    return str(IMAGES / f"{name}.png")


def nat_figure(rows: list[dict[str, Any]]) -> Any:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(NAT_EVAL), figsize=(15, 4), sharey=True)
    for j, (ax, sigma) in enumerate(zip(axes, NAT_EVAL, strict=True)):
        labels = [r["label"].replace(", ", "\n") for r in rows]
        xs = range(len(rows))
        ax.bar([i - 0.2 for i in xs], [100 * r["fine_tuned"]["mean"][j] for r in rows], 0.4, label="fine-tuned")
        ax.bar([i + 0.2 for i in xs], [100 * r["noise_aware"]["mean"][j] for r in rows], 0.4, label="noise-aware")
        ax.set_xticks(list(xs), labels, fontsize=7)
        ax.set_title(f"evaluated at d2d_sigma = {sigma:g}")
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend(loc="lower left")
    fig.suptitle(f"noise-aware fine-tuning at d2d_sigma = {NAT_SIGMA:g} vs. plain fine-tuning (skmtj7, 2-bit)")
    fig.tight_layout()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=20, help="arrays drawn per evaluation (default 20)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.time()
    x_train, y_train, x_test, y_test = digits()
    encode = DirectEncoder(T)
    batches = [(x_test, y_test)]

    def forward(m, x):
        return m(encode(x)).mean(0)

    torch.manual_seed(SEED)
    model = SpikingVGG([16, "P", 32, "P"], [64], in_channels=1, image_size=8, num_classes=10, bits=2)
    writes: dict[str, torch.Tensor] = {}
    steps = fit(model, encode, x_train, y_train, EPOCHS, LR, SEED, writes)
    endurance = {f"{limit:.0e}": endurance_report(writes, EPOCHS, limit) for limit in LIMITS}
    print(f"trained in {time.time() - start:.1f} s, {steps} steps")

    device = get_device("skmtj7")
    patterns = enumerate_patterns(device, 2, STATES)
    common = dict(patterns=patterns, draws=args.draws, seed=1, forward=forward)
    sweeps = {
        "d2d_nearest": variation_sweep(model, batches, device, SIGMAS, mapping=NearestLevel(), **common),
        "d2d_linear": variation_sweep(model, batches, device, SIGMAS, mapping=LinearInterpolation(), **common),
        "stuck_random": variation_sweep(model, batches, device, STUCK, vary="stuck_fraction", **common),
    }
    print(f"sweeps done at {time.time() - start:.1f} s")

    nat_rows = []
    for pattern in patterns:
        array = ArrayModel(device.with_nonideal(d2d_sigma=NAT_SIGMA), pattern)
        row: dict[str, Any] = {"pattern": list(pattern.states), "label": pattern.label}
        for key, noisy in (("fine_tuned", False), ("noise_aware", True)):
            tuned = copy.deepcopy(model)
            ctx = noise_aware_training(tuned, array, seed=2) if noisy else contextlib.nullcontext()
            with ctx:
                fit(tuned, encode, x_train, y_train, FT_EPOCHS, FT_LR, seed=1)
            sweep = variation_sweep(
                tuned, batches, device, NAT_EVAL, patterns=[pattern.states], draws=args.draws, seed=3, forward=forward
            )
            row[key] = {"ideal": sweep.ideal_accuracy, "mean": sweep.mean[0], "std": sweep.std[0]}
        nat_rows.append(row)
    print(f"noise-aware fine-tuning done at {time.time() - start:.1f} s")

    images = {
        key: save(
            plot_variation_sweep(sweeps[key], title=f"skmtj7, 2-bit on (R0, R3, R6): {what}, {args.draws} arrays"),
            image,
        )
        for key, (_, what, image) in SECTIONS.items()
    }
    images["noise_aware"] = save(nat_figure(nat_rows), "noise-aware")
    payload = {
        "command": "python experiments/device_variation.py" + (f" --draws {args.draws}" if args.draws != 20 else ""),
        "setup": {
            "device": device.name,
            "states": list(STATES),
            "epochs": EPOCHS,
            "steps": steps,
            "draws": args.draws,
            "nat_sigma": NAT_SIGMA,
            "fine_tune_epochs": FT_EPOCHS,
            "fine_tune_lr": FT_LR,
        },
        "sweeps": {k: s.to_dict() for k, s in sweeps.items()},
        "noise_aware": nat_rows,
        "endurance": endurance,
        "images": images,
        "wall_s": round(time.time() - start, 1),
    }
    write_outputs(EXP, SCALE, payload, markdown(payload, sweeps, nat_rows, endurance))


def markdown(payload, sweeps, nat_rows, endurance) -> str:
    def img(alt: str, path: str) -> str:
        return f"![{alt}](../../../{path})"

    s = payload["setup"]
    out = [
        "# Device variation on the digits network (skmtj7, 2-bit)",
        "",
        f"`{payload['command']}` ({payload['wall_s']} s). {s['draws']} arrays per cell, mean ± std in %; "
        f"ideal accuracy {100 * sweeps['d2d_nearest'].ideal_accuracy:.1f} %.",
        "",
    ]
    for key, (title, what, _) in SECTIONS.items():
        out += [f"## {title}", "", sweeps[key].to_markdown(), "", img(what, payload["images"][key]), ""]
    out += [f"## Noise-aware fine-tuning at d2d_sigma = {s['nat_sigma']}", ""]
    head = ["pattern", "training"] + [f"σ = {v:g}" for v in NAT_EVAL]
    rows = []
    for r in nat_rows:
        for key in ("fine_tuned", "noise_aware"):
            cells = [f"{100 * m:.1f} ± {100 * d:.1f}" for m, d in zip(r[key]["mean"], r[key]["std"], strict=True)]
            rows.append([r["label"], key.replace("_", "-"), *cells])
    out += [md_table(head, rows), "", img("noise-aware fine-tuning", payload["images"]["noise_aware"]), ""]
    out += ["## Writes per cell and endurance", ""]
    first = next(iter(endurance.values()))
    head = ["layer", "cells", "max", "p50", "p90", "p99", "p99.9", "mean"]
    rows = []
    for name, layer in first["layers"].items():
        w = layer["writes"]
        p = w["percentiles"]
        rows.append([name, w["cells"], w["max"], p["p50"], p["p90"], p["p99"], p["p99.9"], f"{w['mean']:.2f}"])
    out += [f"Over {s['epochs']} epochs ({s['steps']} optimizer steps):", "", md_table(head, rows), ""]
    rows = [[limit, f"{rep['epochs_to_first_failure']:.3g}", rep["first_layer"]] for limit, rep in endurance.items()]
    out += [md_table(["endurance limit (cycles)", "epochs to the first worn-out cell", "layer"], rows)]
    return "\n".join(out)


if __name__ == "__main__":
    main()
