"""Training-step benchmark: quest-lightning against plain SpikingJelly and plain snnTorch, in one run.

Every configuration trains the same VGG6 (METHOD.md §4) on synthetic CIFAR-shaped data resident on the device
(random, never zeros) and reports the median time of a full training step (forward, backward, optimizer; after
warm-up, device-synchronised) with its spread (the fastest and the slowest timed step), throughput and peak memory:

1. ``sj-fp32``: plain SpikingJelly 2.x, ``IFNode(step_mode="m")`` behind ``SeqToANNContainer``, FP32, unquantized.
2. ``snntorch-fp32``: plain snnTorch, ``Leaky(beta=1, reset_mechanism="zero")`` in a time loop.
3. ``quest-<backend>-<callbacks>``: quest-lightning W2/U2, IF with hard reset, through a Lightning ``Trainer``:
   without callbacks, with each callback alone, and with all three monitoring every step. A suffix ``-float`` takes
   every product in float (the exact integer products off), ``-reference`` also swaps the fused quantizer and neuron
   scan for the composed-autograd references (the ablations).

Ratios are against ``sj-fp32`` at the same batch size and T, in the same run. Before timing, the run asserts once
that the integer products are exact: every quantized layer of the benchmarked network, on random spikes, gives the
float64 product rounded to float32, bit for bit, and took the integer path (where the device has one).

Peak memory: on CUDA ``torch.cuda.max_memory_allocated``; on the CPU the peak resident set size of a fresh
subprocess per configuration (so configurations do not share a high-water mark; `--quick` runs in-process, so
its CPU memory column is the shared high-water mark).

    python benchmarks/bench_step.py                 # GPU: B=256, T=4 (+ T=8, 16); CPU: B=32, T=4
    python benchmarks/bench_step.py --batch 32 128 --repeat 2 \\
        --configs sj-fp32 quest-spikingjelly-none quest-spikingjelly-all    # the CPU targets' table
    python benchmarks/bench_step.py --quick         # a tiny CI-safe run of a few configurations
    python benchmarks/bench_step.py --json out.json

It prints one markdown table per repetition and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

QUEST_VARIANTS = ("none", "transitions", "aor", "energy", "all")
ABLATIONS = ("-reference", "-float")


@dataclass
class Result:
    name: str
    timesteps: int
    batch: int
    step_ms: float  # the median over the timed steps
    step_min_ms: float
    step_max_ms: float
    samples_per_s: float
    peak_mb: float
    ratio: float | None = None  # step_ms / sj-fp32's, same batch and T, same run
    memory_ratio: float | None = None  # peak_mb / sj-fp32's


# ------------------------------------------------------------------------------------------------------------------
# The three kinds of network
# ------------------------------------------------------------------------------------------------------------------


def _vgg6_layers(width: int, fc: int, image: int) -> tuple[list[nn.Module], list[nn.Module]]:
    feat = image // 4
    convs = [
        nn.Conv2d(3, width, 3, padding=1, bias=False),
        nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False),
    ]
    fcs = [
        nn.Linear(2 * width * feat * feat, fc, bias=False),
        nn.Linear(fc, fc, bias=False),
        nn.Linear(fc, 10, bias=False),
    ]
    return convs, fcs


def plain_spikingjelly(width: int, fc: int, image: int) -> nn.Module:
    from spikingjelly.activation_based import layer, neuron, surrogate

    convs, fcs = _vgg6_layers(width, fc, image)

    def node():
        return neuron.IFNode(v_threshold=0.5, surrogate_function=surrogate.PiecewiseQuadratic(alpha=1.0), step_mode="m")

    return nn.Sequential(
        layer.SeqToANNContainer(convs[0]),
        node(),
        layer.SeqToANNContainer(nn.MaxPool2d(2)),
        layer.SeqToANNContainer(convs[1]),
        node(),
        layer.SeqToANNContainer(convs[2]),
        node(),
        layer.SeqToANNContainer(nn.MaxPool2d(2)),
        nn.Flatten(2),
        layer.SeqToANNContainer(fcs[0]),
        node(),
        layer.SeqToANNContainer(fcs[1]),
        node(),
        layer.SeqToANNContainer(fcs[2]),
    )


class PlainSnnTorch(nn.Module):
    def __init__(self, width: int, fc: int, image: int) -> None:
        import snntorch as snn
        from snntorch import surrogate

        super().__init__()
        convs, fcs = _vgg6_layers(width, fc, image)
        self.convs, self.fcs = nn.ModuleList(convs), nn.ModuleList(fcs)
        sg = surrogate.fast_sigmoid()
        self.lifs = nn.ModuleList(
            snn.Leaky(beta=1.0, threshold=0.5, reset_mechanism="zero", spike_grad=sg) for _ in range(5)
        )
        self.pool = nn.MaxPool2d(2)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        mems = [lif.init_leaky() for lif in self.lifs]
        outs = []
        for x in x_seq:
            s, mems[0] = self.lifs[0](self.convs[0](x), mems[0])
            s = self.pool(s)
            s, mems[1] = self.lifs[1](self.convs[1](s), mems[1])
            s, mems[2] = self.lifs[2](self.convs[2](s), mems[2])
            s = self.pool(s).flatten(1)
            s, mems[3] = self.lifs[3](self.fcs[0](s), mems[3])
            s, mems[4] = self.lifs[4](self.fcs[1](s), mems[4])
            outs.append(self.fcs[2](s))
        return torch.stack(outs)


def use_reference_kernels() -> None:
    """Swap quest-lightning's fused quantizer and neuron scan for the composed-autograd references (ablation)."""
    import functools

    import quest_lightning.functional.neuron as neuron_fn
    import quest_lightning.nn.layers as layers
    import quest_lightning.nn.neurons.base as neuron_base
    from quest_lightning.functional.quantize import mint_quantize_reference
    from quest_lightning.functional.scan import neuron_scan

    layers.mint_quantize = mint_quantize_reference
    neuron_fn.mint_quantize = mint_quantize_reference
    neuron_base.neuron_scan = functools.partial(neuron_scan, fused=False)


def quest_net(backend: str, width: int, fc: int, image: int, integer_products: bool = True) -> nn.Module:
    from quest_lightning.nn import SpikingVGG
    from quest_lightning.nn.layers import QuantLayerMixin

    net = SpikingVGG([width, "P", 2 * width, 2 * width, "P"], [fc, fc], image_size=image, bits=2, backend=backend)
    for m in net.modules():
        if isinstance(m, QuantLayerMixin):
            m.integer_products = integer_products
    return net


# ------------------------------------------------------------------------------------------------------------------
# Exactness, asserted once per run
# ------------------------------------------------------------------------------------------------------------------


def assert_exact_products(args, device: torch.device) -> str:
    """Every quantized layer of the benchmarked network, on random 0/1 spikes of its input's shape, must give the
    float64 product rounded to float32, bit for bit, through the integer path where the device has one. Returns the
    line the table is printed under."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    net = quest_net("spikingjelly", args.width, args.fc, args.image).to(device)
    g = torch.Generator().manual_seed(1)
    checked, integer = [], 0
    size = args.image
    for block in net.features:
        layer = block.layer
        if layer.enabled and layer.input_kind == "spikes":
            x = (torch.rand(2, 2, layer.in_channels, size, size, generator=g) < 0.3).float().to(device)
            y = layer(x)
            step = (layer.alpha.detach() / layer.qmax).double()
            ref = F.conv2d(x.flatten(0, 1).double(), layer.codes.double() * step, None, 1, 1).unflatten(0, (2, 2))
            checked.append((type(layer).__name__, y, ref))
        size = size // 2 if block.pool is not None else size
    for block in net.classifier:
        layer = block.layer
        x = (torch.rand(2, 2, layer.in_features, generator=g) < 0.3).float().to(device)
        y = layer(x)
        ref = F.linear(x.double(), layer.codes.double() * (layer.alpha.detach() / layer.qmax).double())
        checked.append((type(layer).__name__, y, ref))
    for name, y, ref in checked:
        if _took_integer_path(y) and not torch.equal(y, ref.float()):
            raise AssertionError(f"{name}: the layer's output differs from the float64 product rounded to float32")
        integer += _took_integer_path(y)
    if integer == len(checked):
        return f"Exact: {len(checked)} quantized layers, integer products equal to the float64 product (asserted)."
    if integer == 0 and device.type != "cpu":  # the integer path runs on the CPU only: nothing to assert elsewhere
        return f"Exact: no integer path on {device.type}; its {len(checked)} quantized layers take float products."
    raise AssertionError(f"only {integer} of {len(checked)} quantized layers took the integer path on {device}")


def _took_integer_path(y: torch.Tensor) -> bool:
    """Whether ``y`` came out of an integer product (its autograd node, under the time-unfolding views)."""
    fn = y.grad_fn
    while fn is not None and type(fn).__name__ in ("ViewBackward0", "UnsafeViewBackward0"):
        fn = fn.next_functions[0][0]
    return fn is not None and type(fn).__name__.startswith("_Spike")


# ------------------------------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _clock(args):
    return time.process_time if args.clock == "process" else time.perf_counter


def time_plain(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, timesteps: int, warmup: int, steps: int, clock=time.perf_counter
) -> list[float]:
    from spikingjelly.activation_based import functional

    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    times = []
    for i in range(warmup + steps):
        _sync(x.device)
        t0 = clock()
        functional.reset_net(net)
        out = net(x.unsqueeze(0).repeat(timesteps, 1, 1, 1, 1)).mean(0)
        loss = nn.functional.cross_entropy(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(x.device)
        if i >= warmup:
            times.append(clock() - t0)
    return times


def time_quest(
    backend: str, variant: str, args, timesteps: int, device: torch.device, integer_products: bool = True
) -> list[float]:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import Callback
    from torch.utils.data import DataLoader, Dataset

    from quest_lightning.lightning.callbacks import AORMeter, DeviceEnergyCallback, WeightTransitionMonitor
    from quest_lightning.lightning.module import QuestModule

    class Resident(Dataset):
        """One random batch on the device, served ``n`` times (no loader cost)."""

        def __init__(self, x, y, n):
            self.x, self.y, self.n = x, y, n

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            return self.x, self.y

    times: list[float] = []
    clock = _clock(args)

    class StartTimer(Callback):  # first in the list: its batch-start hook runs before every other callback's
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            _sync(device)
            self.t0 = clock()

    class EndTimer(Callback):  # last in the list: its batch-end hook runs after every measured callback's
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            _sync(device)
            times.append(clock() - start.t0)

    start = StartTimer()
    x, y = _data(args.batch, args.image, device)
    total = args.warmup + args.steps
    loader = DataLoader(Resident(x, y, total), batch_size=None)
    callbacks = {
        "none": [],
        "transitions": [WeightTransitionMonitor(stages="all")],
        "aor": [AORMeter(on=("train",))],
        "energy": [DeviceEnergyCallback("skmtj7")],
        "all": [WeightTransitionMonitor(stages="all"), AORMeter(on=("train",)), DeviceEnergyCallback("skmtj7")],
    }[variant]
    torch.manual_seed(0)
    net = quest_net(backend, args.width, args.fc, args.image, integer_products)
    module = QuestModule(net, timesteps=timesteps, schedule="none")
    trainer = pl.Trainer(
        accelerator=device.type,
        devices=1,
        max_steps=total,
        callbacks=[start, *callbacks, EndTimer()],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(module, loader)
    return times[args.warmup :]


def _data(batch: int, image: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(batch, 3, image, image, generator=g) * 2 - 1).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    return x, y


def run_one(name: str, args, timesteps: int) -> Result:
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    if name == "sj-fp32":
        net = plain_spikingjelly(args.width, args.fc, args.image).to(device)
        data = _data(args.batch, args.image, device)
        times = time_plain(net, *data, timesteps, args.warmup, args.steps, _clock(args))
    elif name == "snntorch-fp32":
        net = PlainSnnTorch(args.width, args.fc, args.image).to(device)
        data = _data(args.batch, args.image, device)
        times = time_plain(net, *data, timesteps, args.warmup, args.steps, _clock(args))
    else:
        _, backend, variant = name.split("-", 2)
        integer = True
        if variant.endswith("-reference"):
            use_reference_kernels()
            variant, integer = variant.removesuffix("-reference"), False
        elif variant.endswith("-float"):
            variant, integer = variant.removesuffix("-float"), False
        times = time_quest(backend, variant, args, timesteps, device, integer)
    step = statistics.median(times)
    return Result(
        name, timesteps, args.batch, step * 1e3, min(times) * 1e3, max(times) * 1e3, args.batch / step, _peak_mb(device)
    )


def run_isolated(name: str, args, timesteps: int) -> Result:
    """Run one configuration in a fresh interpreter (clean peak-RSS on the CPU)."""
    cmd = [sys.executable, __file__, "--_one", name, "--_t", str(timesteps), *args._forward]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return Result(**json.loads(out.strip().splitlines()[-1]))


# ------------------------------------------------------------------------------------------------------------------


def configurations(quick: bool) -> list[str]:
    plain = ["sj-fp32", "snntorch-fp32"]
    if quick:
        return plain + ["quest-spikingjelly-none", "quest-spikingjelly-all"]
    quest = [f"quest-{b}-{v}" for b in ("spikingjelly", "snntorch") for v in QUEST_VARIANTS]
    return plain + quest


def markdown(results: list[Result]) -> str:
    lines = [
        "| config | T | batch | step (ms) median [min, max] | samples/s | peak memory (MiB) | step / sj-fp32 "
        "| memory / sj-fp32 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = f"{r.ratio:.2f}×" if r.ratio is not None else "–"
        memory = f"{r.memory_ratio:.2f}×" if r.memory_ratio is not None else "–"
        step = f"{r.step_ms:.1f} [{r.step_min_ms:.1f}, {r.step_max_ms:.1f}]"
        cells = [r.name, r.timesteps, r.batch, step, f"{r.samples_per_s:.1f}", f"{r.peak_mb:.0f}", ratio, memory]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def callback_overheads(results: list[Result]) -> list[str]:
    """``quest-<backend>-all`` over ``quest-<backend>-none`` (medians, same batch and T), one line each."""
    by_key = {(r.name, r.batch, r.timesteps): r for r in results}
    lines = []
    for r in results:
        none = by_key.get((r.name.removesuffix("-all") + "-none", r.batch, r.timesteps))
        if r.name.startswith("quest-") and r.name.endswith("-all") and none is not None:
            extra = r.step_ms / none.step_ms - 1
            lines.append(f"{r.name} over {none.name}, B={r.batch}, T={r.timesteps}: {extra:+.1%} (medians)")
    return lines


def _set_ratios(results: list[Result]) -> None:
    for r in results:
        base = next(
            (b for b in results if b.name == "sj-fp32" and (b.batch, b.timesteps) == (r.batch, r.timesteps)), None
        )
        if base is not None:
            r.ratio = r.step_ms / base.step_ms
            r.memory_ratio = r.peak_mb / base.peak_mb


def main(argv: list[str] | None = None) -> list[Result]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes and a few configurations (CI-safe)")
    p.add_argument("--batch", type=int, nargs="+", help="batch sizes, each a table section (CPU: 32, GPU: 256)")
    p.add_argument("--timesteps", type=int, nargs="+")
    p.add_argument("--width", type=int, default=64, help="first conv width (VGG6: 64)")
    p.add_argument("--fc", type=int, default=4096, help="hidden FC width (VGG6: 4096)")
    p.add_argument("--image", type=int, default=32)
    p.add_argument("--warmup", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument("--repeat", type=int, default=1, help="run the whole table this many times (stability)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads in every configuration (default: torch's)")
    p.add_argument(
        "--clock",
        choices=("wall", "process"),
        default="wall",
        help="wall time (default) or the process's CPU time (with --threads 1, steadier on a shared machine)",
    )
    p.add_argument(
        "--configs",
        nargs="+",
        help="subset of configurations; append -float to a quest one for float products, -reference for the "
        "unfused kernels as well",
    )
    p.add_argument("--json", help="write the results here")
    p.add_argument("--_one", help=argparse.SUPPRESS)
    p.add_argument("--_t", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    gpu = args.device.startswith("cuda")
    if args.quick:
        args.width, args.fc, args.image = 8, 64, 16
    batches = args.batch or [256 if gpu else 8 if args.quick else 32]
    args.timesteps = args.timesteps or ([4, 8, 16] if gpu else [4])
    args.warmup = args.warmup if args.warmup is not None else (10 if gpu else 2)
    args.steps = args.steps or (30 if gpu else 3 if args.quick else 8)
    if args._one:
        args.batch = batches[0]
        print(json.dumps(asdict(run_one(args._one, args, args._t))))
        return []
    if args.threads:
        torch.set_num_threads(args.threads)
    exact = assert_exact_products(args, torch.device(args.device))
    names = args.configs or configurations(args.quick)
    hardware = (
        torch.cuda.get_device_name(0)
        if gpu
        else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
    )
    runs: list[list[Result]] = []
    for rep in range(args.repeat):
        results: list[Result] = []
        for batch in batches:
            args.batch = batch
            args._forward = _forward_args(args)
            for t in args.timesteps:
                for name in names:
                    r = run_one(name, args, t) if gpu or args.quick else run_isolated(name, args, t)
                    results.append(r)
                    print(f"  [{rep + 1}] {name:36s} B={batch:<4d} T={t:<3d} {r.step_ms:9.1f} ms", file=sys.stderr)
        _set_ratios(results)
        runs.append(results)
        setting = f"{args.warmup} warm-up and {args.steps} timed steps; {args.clock} clock"
        print(
            f"\nRun {rep + 1} of {args.repeat}. Device: {hardware}; torch {torch.__version__}; VGG6 widths "
            f"{args.width}/{args.fc}; {setting}.\n{exact}\n"
        )
        print(markdown(results))
        for line in callback_overheads(results):
            print(f"\n{line}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "hardware": hardware,
                    "torch": torch.__version__,
                    "exact": exact,
                    "args": vars(args) | {"_forward": None, "batch": batches},
                    "results": [asdict(r) for r in runs[-1]],
                    "runs": [[asdict(r) for r in results] for results in runs],
                },
                f,
                indent=2,
            )
    return runs[-1]


def _forward_args(args) -> list[str]:
    """The options a configuration's subprocess needs."""
    forward = ["--device", args.device, "--batch", str(args.batch), "--width", str(args.width), "--fc", str(args.fc)]
    forward += ["--image", str(args.image), "--warmup", str(args.warmup), "--steps", str(args.steps)]
    forward += ["--clock", args.clock] + (["--threads", str(args.threads)] if args.threads else [])
    return forward


if __name__ == "__main__":
    main()
