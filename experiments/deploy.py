"""From a trained run to the device: the figures of docs/deploy.md.

    python experiments/deploy.py --run-dir runs/demo [--images 1000] [--pattern 0,3,6]

On the run's checkpoint it

1. writes the deployment bundle with ``quest-lightning export`` (:func:`quest_lightning.deploy.export_command`);
2. runs the reference integer runner and the fake-quantized model on the first ``--images`` CIFAR-10 test images
   (class-balanced, as the data module picks them) and compares every spike and every prediction;
3. exports the network to NIR, re-imports it with snnTorch's NIR importer and measures the spike agreement;
4. computes the NeuroBench-named metrics (3 and 4 on the first ``--sub-images`` of them);
5. profiles 100 images with SpikingJelly's ``estimate_simple_energy`` and ``estimate_spikesim_energy`` beside our
   CMOS ANN / DIET-SNN energies (Horowitz 2014 FP32 constants).

The numbers go to ``experiments/results/deploy/<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from quest_lightning.deploy import (  # noqa: E402
    IntegerRunner,
    SynapticOperations,
    export_command,
    import_with_snntorch,
    load_bundle,
    model_spikes,
    neurobench_metrics,
    nir_spike_agreement,
    spikesim_periphery,
    spikingjelly_energy,
    to_nir,
)
from quest_lightning.deploy.command import find_checkpoint, load_quest_checkpoint  # noqa: E402
from quest_lightning.energy.cmos import ann_energy, diet_snn_energy  # noqa: E402
from quest_lightning.lightning.data import CIFAR10DataModule, normalize_images  # noqa: E402
from quest_lightning.metrics.functional import ann_ops  # noqa: E402
from quest_lightning.nn import recording, reset_recording, synaptic_layers  # noqa: E402


def _test_images(n: int, batch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    dm = CIFAR10DataModule(test_subset=n, eval_batch_size=batch, batch_size=batch, augment=False)
    dm.prepare_data()
    dm.setup("test")
    return [(normalize_images(x), y) for x, y in dm.test_dataloader()]  # what on_after_batch_transfer does


def _runner_vs_model(module, runner, batches) -> dict:
    same_pred = same_spikes = spikes = n = correct_model = correct_runner = 0
    for x, y in batches:
        x_seq = module.encoder(x)
        out, ours = model_spikes(module, x_seq)
        result = runner.run(x, record_spikes=True)
        for name, s in ours.items():
            same_spikes += int((result.spikes[name].to(s.dtype) == s).sum())
            spikes += s.numel()
        pred = out.mean(0).argmax(-1)
        same_pred += int((pred == result.predictions).sum())
        correct_model += int((pred == y).sum())
        correct_runner += int((result.predictions == y).sum())
        n += len(y)
    return {
        "images": n,
        "identical_predictions": same_pred,
        "identical_spike_entries": same_spikes,
        "spike_entries": spikes,
        "accuracy_fake_quant": correct_model / n,
        "accuracy_integer_runner": correct_runner / n,
    }


def _nir(module, batches, out: Path) -> dict:
    import nir

    graph = to_nir(module, if_node="LIF")
    path = out / "network.nir"
    nir.write(path, graph)
    imported = import_with_snntorch(nir.read(path))
    per_layer: dict[str, list[float]] = {}
    equal = total = agree = n = 0
    for x, _ in batches:
        a = nir_spike_agreement(module, module.encoder(x), imported)
        equal += round(a.agreement * a.spikes)
        total += a.spikes
        agree += round(a.prediction_agreement * a.samples)
        n += a.samples
        for k, v in a.per_layer.items():
            per_layer.setdefault(k, []).append(v)
    return {
        "file_bytes": path.stat().st_size,
        "spike_agreement": equal / total,
        "per_layer": {k: sum(v) / len(v) for k, v in per_layer.items()},
        "prediction_agreement": agree / n,
        "images": n,
    }


def _neurobench(module, batches) -> dict:
    layers, samples, sparsity = [], 0, []
    metrics = None
    for x, _ in batches:
        metrics = neurobench_metrics(module, module.encoder(x))
        layers.extend(metrics.synaptic_operations.layers)
        samples += metrics.synaptic_operations.samples
        sparsity.append(metrics.activation_sparsity)
    assert metrics is not None
    d = metrics.to_dict()
    d["SynapticOperations"] = SynapticOperations(tuple(layers), samples).to_dict()
    d["ActivationSparsity"] = sum(sparsity) / len(sparsity)  # equal batches: the same number of outputs each
    return d


def _energies(module, x: torch.Tensor) -> dict:
    net = module.model
    x_seq = module.encoder(x)
    b = x.shape[0]
    report = spikingjelly_energy(net, x_seq)
    reset_recording(net)
    with recording(net), torch.no_grad():
        net(x_seq)
    layers = [m for _, m in synaptic_layers(net)]
    shapes = [tuple(m.input_counts.shape) for m in layers]
    ops = [ann_ops(m, s) for m, s in zip(layers, shapes, strict=True)]
    rates = [None] + [float(m.input_counts.sum()) / (m.input_counts.numel() * b) for m in layers[1:]]
    reset_recording(net)
    ann = ann_energy(ops, "45nm_fp32")
    diet = diet_snn_energy(ops, rates, "45nm_fp32")
    spikesim = spikesim_periphery(net, x_seq)
    pj = 1e-12 / b
    return {
        "images": b,
        "ours": {"ann_j": ann.total_j, "diet_snn_j": diet.total_j, "diet_snn_per_layer_j": list(diet.per_layer_j)},
        "spikingjelly_simple": {
            "total_j": report.energy_total_pj * pj,
            "mac_j": report.energy_mac_pj * pj,
            "ac_j": report.energy_ac_pj * pj,
            "synop_ac_j": report.counts["synop"] * report.config.cost_config.e_ac_pj * pj,
            "memory_j": report.energy_memory_pj * pj,
            "counts_per_sample": {k: v / b for k, v in report.counts.items()},
        },
        "spikesim": spikesim.to_dict(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, help="a run folder (or .ckpt) of the recipe")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--sub-images", type=int, default=200, help="images for the NIR and NeuroBench figures")
    parser.add_argument("--pattern", default="0,3,6")
    parser.add_argument("--name", default="demo")
    parser.add_argument("--out", default=None, help="bundle folder (default runs/deploy/<name>)")
    ns = parser.parse_args(argv)
    torch.manual_seed(0)
    out = Path(ns.out or REPO / "runs" / "deploy" / ns.name)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    status = export_command([ns.run_dir, "--out", str(out / "bundle"), "--pattern", ns.pattern, "--force"])
    if status != 0:
        return status
    timings["export_s"] = time.perf_counter() - t
    module, hparams = load_quest_checkpoint(find_checkpoint(ns.run_dir))
    bundle = load_bundle(out / "bundle")
    batches = _test_images(ns.images, ns.batch)

    sub = max(1, ns.sub_images // ns.batch)
    results: dict = {
        "run": bundle.manifest["run"],
        "pattern": bundle.manifest["pattern"],
        "bundle_files_bytes": {p.name: p.stat().st_size for p in (out / "bundle").iterdir()},
    }
    for key, fn in (
        ("integer_runner", lambda: _runner_vs_model(module, IntegerRunner(bundle), batches)),
        ("nir", lambda: _nir(module, batches[:sub], out)),
        ("neurobench", lambda: _neurobench(module, batches[:sub])),
        ("energy", lambda: _energies(module, batches[0][0])),
    ):
        t = time.perf_counter()
        results[key] = fn()
        timings[f"{key}_s"] = time.perf_counter() - t
        print(key, json.dumps(results[key], indent=1)[:2000], flush=True)
    results["timings"] = timings
    dest = REPO / "experiments" / "results" / "deploy" / f"{ns.name}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
