"""A table of user mistakes. Each one raises a clear error that names the argument, the value and the fix, before
training starts or at the first step that reveals it, and nothing is half-written to the run folder."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger
from spikingjelly.activation_based import functional as sj_functional
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from quest_lightning.devices import ideal_device
from quest_lightning.energy import joules_per_sample, quest_energy
from quest_lightning.lightning.callbacks import (
    SUMMARY_FILE,
    AORMeter,
    DegenerateRunError,
    DeviceEnergyCallback,
    Stage,
    WeightTransitionMonitor,
)
from quest_lightning.metrics import LayerGeometry, spike_rate
from quest_lightning.nn import QuantConv2d, QuantIFNode, QuantLIFNode, QuantLinear

N, BATCH = 16, 4  # 4 training batches per epoch


class Net(nn.Module):
    def __init__(self, bits=(2, 2), leaky=False, enabled=True):
        super().__init__()

        def node():
            if leaky:
                return QuantLIFNode(2.0, v_threshold=0.5, surrogate_function="triangle", step_mode="m")
            return QuantIFNode(0.5, 0.0, "triangle", step_mode="m")

        self.conv1 = QuantConv2d(1, 4, 3, padding=1, enabled=False)
        self.sn1 = node()
        self.conv2 = QuantConv2d(4, 4, 3, stride=2, padding=1, bits=bits[0], enabled=enabled)
        self.sn2 = node()
        self.fc = QuantLinear(4 * 4 * 4, 10, bits=bits[1], enabled=enabled)

    def forward(self, x):
        sj_functional.reset_net(self)
        return self.fc(self.sn2(self.conv2(self.sn1(self.conv1(x)))).flatten(2))


class Module(pl.LightningModule):
    def __init__(self, net=None, nan_at_batch=None):
        super().__init__()
        self.net = net or Net()
        self.nan_at_batch = nan_at_batch

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x.unsqueeze(0).repeat(2, 1, 1, 1, 1)).mean(0), y)
        return loss * math.nan if batch_idx + 1 == self.nan_at_batch else loss

    def validation_step(self, batch, batch_idx):
        self.net(batch[0].unsqueeze(0).repeat(2, 1, 1, 1, 1))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


class Plain(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self.net(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Batches(pl.Callback):
    def __init__(self):
        self.seen = 0

    def on_train_batch_start(self, *args):
        self.seen += 1


class NaNWeightAfterStep(pl.Callback):
    """Puts one NaN into conv2's weights just before optimizer step ``step`` (1-based): the loss stays finite."""

    def __init__(self, step):
        self.step = step

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.global_step + 1 == self.step:
            with torch.no_grad():
                pl_module.net.conv2.weight[0, 0, 0, 0] = math.nan


@dataclass
class Run:
    root: Any
    counter: Batches


RUN: Run | None = None


def fit(*callbacks, module=None, val=False, **trainer_kw):
    kwargs = dict(max_epochs=1, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    kwargs.update(num_sanity_val_steps=0, log_every_n_steps=1, **trainer_kw)
    trainer = pl.Trainer(callbacks=[*callbacks, RUN.counter], logger=CSVLogger(str(RUN.root)), **kwargs)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(N, 1, 8, 8, generator=g), torch.randint(0, 10, (N,), generator=g))
    loader = DataLoader(data, batch_size=BATCH)
    trainer.fit(module or Module(), loader, loader if val else None)


def energy(**kw):
    return DeviceEnergyCallback("skmtj7", **kw)


def monitor(**kw):
    return WeightTransitionMonitor(**kw)


def mixed_bits():
    return Module(Net(bits=(2, 3)))


def resume_other_stages():
    WeightTransitionMonitor(stages="paper").load_state_dict(WeightTransitionMonitor(stages=[("a", 1, 3)]).state_dict())


def resume_old_checkpoint():
    energy().load_state_dict({"summary": {"write": {}, "read": {}, "compute": {}}, "owned": []})


# (id, what the user does, the error, a regex naming the argument, the value and the fix, batches run before it)
CASES: list[tuple[str, Any, type, str, int]] = [
    # --- DeviceEnergyCallback arguments (at construction)
    ("pattern-name", lambda: energy(pattern="worst"), ValueError,
     r"pattern='worst' is unknown: use 'best', an index, or a mapping of device states", 0),
    ("pattern-float", lambda: energy(pattern=2.5), ValueError,
     r"pattern=2\.5 is invalid: use 'best', an index \(an int\), or a mapping of device states", 0),
    ("pattern-bool", lambda: energy(pattern=True), ValueError, r"pattern=True is invalid: use 'best', an index", 0),
    ("pattern-empty", lambda: energy(pattern=()), ValueError, r"pattern=\(\) is invalid: .*e\.g\. \(6, 0, 3\)", 0),
    ("states-string", lambda: energy(states="036"), ValueError,
     r"states='036' is invalid: give device state indices, e.g\. states=\(0, 3, 6\)", 0),
    ("states-empty", lambda: energy(states=()), ValueError,
     r"states=\(\) allows no device state: give at least 2\*\*bits - 1 of them", 0),
    ("states-repeated", lambda: energy(states=(0, 3, 3)), ValueError,
     r"states=\(0, 3, 3\) repeats a state: give each allowed state once", 0),
    ("device-name", lambda: DeviceEnergyCallback("nope"), ValueError,
     r"device='nope' is neither a registered device \(.*skmtj7.*\) nor a \.yaml/\.yml path", 0),
    ("device-type", lambda: DeviceEnergyCallback(3), ValueError,
     r"device=3 \(int\) is not a DeviceSpec, a preset name, a dict or a YAML path", 0),
    ("device-file", lambda: DeviceEnergyCallback("missing.yaml"), ValueError,
     r"device file 'missing\.yaml' does not exist", 0),
    ("cmos", lambda: energy(cmos="7nm"), ValueError,
     r"unknown CMOS preset '7nm'; available: 45nm_fp16, 45nm_fp32, 45nm_int8", 0),
    ("first-layer", lambda: energy(first_layer="analog"), ValueError,
     r"first_layer='analog' is unknown: use 'mac' or 'reads'", 0),
    ("zero-reads", lambda: energy(count_zero_level_reads="yes"), ValueError,
     r"count_zero_level_reads='yes' must be True or False", 0),
    ("energy-stages", lambda: energy(stages="bogus"), ValueError,
     r"stages='bogus' is unknown: use 'paper', 'all' or a list of \(name, first, last\)", 0),
    # --- DeviceEnergyCallback against the model and the device (at setup)
    ("pattern-index", lambda: fit(energy(pattern=6, states=(0, 3, 6))), ValueError,
     r"pattern=6 is out of range: 'skmtj7' with bits=2 has 6 patterns \(0\.\.5\)", 0),
    ("pattern-mapping", lambda: fit(energy(pattern=(0, 1, 2), states=(0, 3, 6))), ValueError,
     r"mapping=\(0, 1, 2\) is not a pattern of this set: it must use 3 distinct states from \(0, 3, 6\)", 0),
    ("pattern-length", lambda: fit(energy(pattern=(0, 3))), ValueError,
     r"mapping=\(0, 3\) has 2 states but a 2-bit grid has 3 levels", 0),
    ("states-too-few", lambda: fit(energy(states=(0, 6))), ValueError,
     r"bits=2 needs 3 weight levels but only 2 states are allowed \(\(0, 6\)\); allow at least 3 states", 0),
    ("states-missing", lambda: fit(energy(states=(0, 3, 9))), ValueError,
     r"states=\(0, 3, 9\) names state\(s\) \[9\] that device 'skmtj7' lacks \(0\.\.6\)", 0),
    ("device-too-small", lambda: fit(DeviceEnergyCallback(ideal_device(3, name="tri")), module=Module(Net((3, 3)))),
     ValueError, r"bits=3 needs 7 weight levels .* device 'tri' has only 3 states; use bits <= 2", 0),
    ("mixed-bits", lambda: fit(energy(), module=mixed_bits()), ValueError,
     r"quantized layers use bits=\[2, 3\]; use the same bits in every quantized layer", 0),
    ("leaky-on-skmtj", lambda: fit(energy(), module=Module(Net(leaky=True))), ValueError,
     r"neuron 'net.sn1' is leaky .* device 'skmtj7' cannot leak .* Use an IF neuron .* or a device with can_leak", 0),
    ("stages-twice", lambda: fit(energy(stages="all"), monitor()), ValueError,
     r"DeviceEnergyCallback\(stages=\.\.\.\) and a WeightTransitionMonitor both set the transition stages", 0),
    ("stages-differ", lambda: fit(energy(stages="all"), DeviceEnergyCallback("rram8", stages="paper")), ValueError,
     r"two DeviceEnergyCallbacks set different transition stages; give the stages to one of them", 0),
    # --- WeightTransitionMonitor arguments (at construction)
    ("stages-order", lambda: monitor(stages=[("late", 5, 8), ("early", 1, 3)]), ValueError,
     r"stages out of order or overlapping: 'late' \(batches 5\.\.8.*list them in increasing, disjoint", 0),
    ("stages-overlap", lambda: monitor(stages=[("a", 1, 5), ("b", 3, 8)]), ValueError,
     r"'a' \(batches 1\.\.5, epoch 0\) and 'b' \(batches 3\.\.8, epoch 0\); list them in increasing", 0),
    ("stages-names", lambda: monitor(stages=[("a", 1, 3), ("a", 5, 8)]), ValueError,
     r"stage names must be unique, got \['a', 'a'\]", 0),
    ("stages-empty", lambda: monitor(stages=[]), ValueError,
     r"stages is empty: give at least one \(name, first, last\) window, 'paper' or 'all'", 0),
    ("stages-preset", lambda: monitor(stages="bogus"), ValueError,
     r"stages='bogus' is unknown: use 'paper', 'all' or a list", 0),
    ("stages-type", lambda: monitor(stages=5), ValueError, r"stages=5 is invalid: use 'paper', 'all' or a list", 0),
    ("stage-first", lambda: monitor(stages=[("a", 0, 3)]), ValueError,
     r"stage 'a': batches 0\.\.3 must satisfy 1 <= first <= last \(integers, 1-based", 0),
    ("stage-last", lambda: monitor(stages=[("a", 5, 3)]), ValueError, r"stage 'a': batches 5\.\.3 must satisfy", 0),
    ("stage-float", lambda: monitor(stages=[("a", 1.5, 3)]), ValueError, r"stage 'a': batches 1\.5\.\.3 must", 0),
    ("stage-name", lambda: monitor(stages=[("", 1, 3)]), ValueError,
     r"Stage\.name must be a non-empty string, got '': name every stage", 0),
    ("stage-arity", lambda: monitor(stages=[("a", 1)]), ValueError,
     r"stage \('a', 1\) is invalid: write a stage as \(name, first, last\)", 0),
    ("stage-dict", lambda: monitor(stages=[{"name": "a", "start": 1, "last": 3}]), ValueError,
     r"stage \{.*'start'.*\} is invalid: a stage dict has the keys name, first, last and optionally epoch", 0),
    ("stage-epoch", lambda: monitor(stages=[Stage("a", 1, 3, -1)]), ValueError,
     r"stage 'a': epoch=-1 is invalid: use a 0-based epoch index, or None for every epoch", 0),
    ("every-n-steps", lambda: monitor(every_n_steps=0), ValueError, r"every_n_steps=0 must be >= 1 \(an integer", 0),
    ("every-n-float", lambda: monitor(every_n_steps=1.5), ValueError, r"every_n_steps=1\.5 must be >= 1", 0),
    ("trajectories", lambda: monitor(trajectories=-1), ValueError,
     r"trajectories=-1 must be >= 0 \(an integer; 0 follows no weight\)", 0),
    ("seed", lambda: monitor(seed="x"), ValueError, r"seed='x' is invalid: expected an integer", 0),
    # --- stages that can never run in this run (when training starts)
    ("stage-past-epoch-end", lambda: fit(monitor(stages=[("late", 9, 12)])), ValueError,
     r"stage 'late' starts at batch 9 but an epoch has 4 training batches \(after limit_train_batches\); start it", 0),
    ("stage-past-limit", lambda: fit(monitor(stages=[("b", 3, 4)]), limit_train_batches=2), ValueError,
     r"stage 'b' starts at batch 3 but an epoch has 2 training batches", 0),
    ("stage-past-max-epochs", lambda: fit(monitor(stages=[("e3", 1, 2, 3)])), ValueError,
     r"stage 'e3' is in epoch 3 but the run has max_epochs=1 \(epochs 0\.\.0\); use an earlier epoch or raise", 0),
    ("stage-energy-past-end", lambda: fit(energy(stages=[("late", 5, 6)])), ValueError,
     r"stage 'late' starts at batch 5 but an epoch has 4 training batches", 0),
    # --- AORMeter arguments
    ("aor-on", lambda: AORMeter(on=("bogus",)), ValueError,
     r"AORMeter\(on=\('bogus',\)\): stages must be a non-empty subset of \('train', 'val'\)", 0),
    ("aor-on-empty", lambda: AORMeter(on=()), ValueError, r"AORMeter\(on=\(\)\): stages must be a non-empty", 0),
    ("aor-every", lambda: AORMeter(train_every_n_batches=0), ValueError,
     r"train_every_n_batches=0 must be >= 1 \(an integer; 1 counts every batch\)", 0),
    ("aor-analog", lambda: AORMeter(first_layer_analog="yes"), ValueError,
     r"first_layer_analog='yes' must be True \(direct coding.*\) or False", 0),
    # --- the model
    ("unquantized", lambda: fit(AORMeter(), module=Plain()), ValueError,
     r"AORMeter needs a model with quantized layers, but Plain has none: replace nn\.Conv2d/nn\.Linear", 0),
    ("quantization-off", lambda: fit(energy(), module=Module(Net(enabled=False))), ValueError,
     r"DeviceEnergyCallback needs .* 3 QuantConv2d/QuantLinear layer\(s\) but all have enabled=False; enable", 0),
    # --- degenerate training, seen in flight (the step and the layer are named)
    ("nan-loss", lambda: fit(energy(stages="all"), module=Module(nan_at_batch=2)), DegenerateRunError,
     r"step 2 \(epoch 0, batch 2\): the training loss is nan; layer 'net\.conv2' has \d+ NaN .*Lower the learning", 2),
    ("nan-weights", lambda: fit(energy(stages="all"), NaNWeightAfterStep(2)), DegenerateRunError,
     r"step 2 \(epoch 0, batch 2\): layer 'net\.conv2' has 1 NaN and 0 infinite weights\. The analysis stops", 2),
    ("nan-weights-at-val", lambda: fit(AORMeter(on="val"), NaNWeightAfterStep(4), val=True), DegenerateRunError,
     r"step 4 \(epoch 0\): layer 'net\.conv2' has 1 NaN and 0 infinite weights", 4),
    # --- checkpoints
    ("resume-stages", resume_other_stages, ValueError,
     r"checkpoint was written with stages \['a'\] .* but this run counts \['batches_1-10', .*resume with the same", 0),
    ("resume-0.1.0", resume_old_checkpoint, ValueError,
     r"written by quest-lightning 0\.1\.0, whose counts cannot be resumed exactly; start the run again", 0),
    # --- the functions under the callbacks
    ("timesteps", lambda: quest_energy([1.0, 2.0], [None, 0.1], timesteps=0), ValueError,
     r"timesteps=0 is invalid: expected a positive integer", 0),
    ("samples", lambda: joules_per_sample("read", {"a": torch.ones(3)}, energy_table(), samples=0), ValueError,
     r"samples=0 is invalid: expected a positive integer", 0),
    ("spike-rate-rows", lambda: spike_rate(torch.ones(3), neurons=3, samples=1, rows=0), ValueError,
     r"rows=0 is invalid: expected a positive integer", 0),
    ("geometry-groups", lambda: LayerGeometry("conv2d", 4, 6, groups=4), ValueError,
     r"LayerGeometry\.groups=4 must divide in_channels=4 and out_channels=6", 0),
]  # fmt: skip


def energy_table():
    from quest_lightning.devices import get_device, pattern_energies

    return pattern_energies(get_device("skmtj7"), 2, (0, 3, 6))


@pytest.fixture
def run(tmp_path):
    global RUN
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    RUN = Run(tmp_path, Batches())
    yield RUN
    RUN = None
    torch.set_num_threads(threads)


def test_the_table_is_long_enough():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_clearly_and_early(case, run):
    _, act, error, match, batches = case
    with pytest.raises(error, match=match):
        act()
    assert run.counter.seen == batches, "raised before training starts, or at the step that reveals it"
    leftovers = [p for p in run.root.rglob("*") if p.name == SUMMARY_FILE or p.suffix == ".tmp"]
    assert not leftovers, leftovers
