r"""SpikingJelly's energy profilers on quest-lightning networks, and the network's plain SpikingJelly twin.

SpikingJelly 2.0's ``op_counter`` profilers read a network through SpikingJelly's own modules: synapses are
``nn.Conv2d``/``nn.Linear`` with a ``step_mode`` that says whether they take ``[T, B, ...]``, and neurons are
``BaseNode`` s whose state lives in ``register_memory`` memories. :func:`to_spikingjelly` expresses a quest-lightning
network in those containers:

* synapses become ``layer.Conv2d``/``layer.Linear`` (``step_mode="m"``) holding the quantized weights
  :math:`\hat w\,\alpha/Q` (full-precision weights as they are), pooling ``layer.MaxPool2d``/``layer.AvgPool2d``,
  flattening ``layer.Flatten``, BatchNorm ``layer.BatchNorm2d``/``BatchNorm1d`` with its statistics;
* ``neurons="quest"`` wraps each quest neuron in a :class:`QuestNode`, an ``IFNode`` to SpikingJelly that runs the
  quest neuron's own step (MINT membrane quantization included): the view spikes exactly like the model;
* ``neurons="plain"`` uses SpikingJelly's ``IFNode``/``LIFNode`` with the same threshold, reset and leak: the
  **plain SpikingJelly twin** with the same weights. SpikingJelly has no membrane quantization, so the twin spikes
  like the model only where MINT's membrane clipping does not act (every neuron when the membranes are full
  precision).

:func:`spikingjelly_energy` runs ``estimate_simple_energy`` (Horowitz 2014 MAC/AC costs plus memory traffic) or
``estimate_spikesim_energy`` (the SpikeSim crossbar: ADC, buffers, H-tree interconnect, per convolution stage) on the
view. :func:`spikesim_periphery` reports SpikeSim's figure per sample in joules, to set beside the device read energy
of :mod:`quest_lightning.energy`: the periphery is what an array adds to the cells' reads; it is SpikingJelly's
model, not re-implemented here.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

import torch
from spikingjelly.activation_based import layer as sj_layer
from spikingjelly.activation_based import neuron
from torch import Tensor, nn

from quest_lightning.deploy.graph import NotDeployableError, pool_geometry, trace
from quest_lightning.nn.layers import QuantConv2d, QuantLayerMixin
from quest_lightning.nn.neurons.base import QuantNeuron

__all__ = ["QuestNode", "SpikeSimPeriphery", "spikesim_periphery", "spikingjelly_energy", "to_spikingjelly"]


class QuestNode(neuron.IFNode):
    """A quest-lightning neuron seen by SpikingJelly as an ``IFNode`` (so its counters and SpikeSim's IF/LIF check
    accept it): the dynamics are the wrapped neuron's (IF or LIF, MINT membrane quantization included); the carried
    state is kept in SpikingJelly's memory ``v``.

    Args:
        quest: The quest-lightning neuron to run (shared, not copied).
    """

    def __init__(self, quest: QuantNeuron) -> None:
        super().__init__(v_threshold=quest.threshold, v_reset=None if quest.reset_mode == "soft" else 0.0)
        self.step_mode = "m"
        self._quest = [quest]  # a list keeps it out of the children: SpikingJelly sees one neuron

    @property
    def quest(self) -> QuantNeuron:
        """The wrapped neuron."""
        return self._quest[0]

    def single_step_forward(self, x: Tensor) -> Tensor:
        v = self.v if isinstance(self.v, Tensor) and self.v.shape == x.shape else None
        spikes, _, self.v = self.quest.step(x, v)
        return spikes

    def multi_step_forward(self, x_seq: Tensor) -> Tensor:
        spikes, _, self.v = self.quest.multi_step(x_seq)
        return spikes

    def extra_repr(self) -> str:
        return f"quest={type(self.quest).__name__}({self.quest._neuron_repr()})"


def _plain_node(n: QuantNeuron, name: str) -> nn.Module:
    p = n.params
    if p.reset == "none":
        raise NotDeployableError(f"neuron {name!r} has no reset; SpikingJelly's IF/LIF nodes always reset")
    if p.reset == "soft" and p.reset_amount != p.threshold:
        raise NotDeployableError(
            f"neuron {name!r} subtracts {p.reset_amount} on a soft reset; SpikingJelly subtracts the threshold "
            f"{p.threshold}"
        )
    v_reset = None if p.reset == "soft" else 0.0
    if p.leaky:
        return neuron.LIFNode(1.0 / (1.0 - p.decay), False, p.threshold, v_reset, step_mode="m")
    return neuron.IFNode(p.threshold, v_reset, step_mode="m")


def _synapse(layer: QuantLayerMixin) -> nn.Module:
    bias = layer.bias is not None
    if isinstance(layer, QuantConv2d):
        twin = sj_layer.Conv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            layer.stride,
            layer.padding,
            layer.dilation,
            layer.groups,
            bias,
            layer.padding_mode,
            step_mode="m",
        )
    else:
        twin = sj_layer.Linear(layer.in_features, layer.out_features, bias, step_mode="m")
    with torch.no_grad():
        twin.weight.copy_(layer.quantized_weight())
        if bias:
            twin.bias.copy_(layer.bias)
    return twin


def _norm(bn: nn.Module) -> nn.Module:
    cls = sj_layer.BatchNorm2d if isinstance(bn, nn.BatchNorm2d) else sj_layer.BatchNorm1d
    twin = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats, step_mode="m")
    twin.load_state_dict(bn.state_dict())
    return twin


def to_spikingjelly(model: nn.Module, *, neurons: Literal["quest", "plain"] = "quest") -> nn.Sequential:
    """The network in SpikingJelly's multi-step containers (see the module docstring), in eval mode.

    Args:
        model: A quest-lightning network (or a Lightning module holding it in ``.model``).
        neurons: ``"quest"`` keeps the quest neurons (the view spikes like the model); ``"plain"`` uses SpikingJelly's
            own ``IFNode``/``LIFNode`` (the plain twin).

    Returns:
        An ``nn.Sequential`` taking ``[T, B, ...]``; weights are copies, the ``"quest"`` neurons are shared with
        ``model``.

    Raises:
        NotDeployableError: A module that cannot be traced, or (``"plain"``) a neuron SpikingJelly cannot express.
    """
    if neurons not in ("quest", "plain"):
        raise ValueError(f"neurons={neurons!r} must be 'quest' or 'plain'")
    mods: list[nn.Module] = []
    for stage in trace(model):
        m = stage.module
        if stage.kind == "synapse":
            mods.append(_synapse(m))
        elif stage.kind == "neuron":
            mods.append(QuestNode(m) if neurons == "quest" else _plain_node(m, stage.name))
        elif stage.kind == "norm":
            mods.append(_norm(m))
        elif stage.kind == "pool":
            geo = pool_geometry(m)
            cls = sj_layer.MaxPool2d if geo["op"] == "maxpool2d" else sj_layer.AvgPool2d
            mods.append(cls(tuple(geo["kernel_size"]), tuple(geo["stride"]), tuple(geo["padding"]), step_mode="m"))
        else:
            mods.append(sj_layer.Flatten(start_dim=1, step_mode="m"))
    return nn.Sequential(*mods).eval()


def spikingjelly_energy(
    model: nn.Module,
    x_seq: Tensor,
    *,
    profiler: Literal["simple", "spikesim"] = "simple",
    config: Any = None,
    neurons: Literal["quest", "plain"] = "quest",
) -> Any:
    """Run SpikingJelly's ``estimate_simple_energy`` or ``estimate_spikesim_energy`` on the network.

    Args:
        model: A quest-lightning network.
        x_seq: Encoded input ``[T, B, ...]``. A stride-0 (direct-coded) view is made contiguous: SpikingJelly's
            layers compute every time step.
        profiler: ``"simple"`` or ``"spikesim"``.
        config: ``SimpleEnergyConfig`` or ``SpikeSimEnergyConfig`` (SpikingJelly's defaults when ``None``).
        neurons: As :func:`to_spikingjelly`.

    Returns:
        SpikingJelly's ``SimpleEnergyReport`` or ``SpikeSimEnergyReport``, for the whole batch (divide by ``B`` for
        per-sample figures).
    """
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.op_counter import estimate_simple_energy, estimate_spikesim_energy

    view = to_spikingjelly(model, neurons=neurons)
    functional.reset_net(view)
    x = x_seq.contiguous()
    if profiler == "simple":
        return estimate_simple_energy(view, x, config=config)
    if profiler == "spikesim":
        return estimate_spikesim_energy(view, x, config=config)
    raise ValueError(f"profiler={profiler!r} must be 'simple' or 'spikesim'")


@dataclass(frozen=True)
class SpikeSimPeriphery:
    """SpikeSim's crossbar energy per sample: what an array's periphery adds to the cells' read energy.

    Attributes:
        per_sample_j: Total per sample, in joules.
        by_stage_j: Per convolution stage (SpikeSim prices convolutions only), in joules per sample.
        components_j: Per component (``pe_cycle`` etc.), in joules per sample.
        config: The SpikeSim configuration used (crossbar size, device, activity mode, per-event costs in pJ).
        samples: The batch size the figures were divided by.
    """

    per_sample_j: float
    by_stage_j: dict[str, float]
    components_j: dict[str, float]
    config: dict[str, Any]
    samples: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "per_sample_j": self.per_sample_j,
            "by_stage_j": dict(self.by_stage_j),
            "components_j": dict(self.components_j),
            "config": dict(self.config),
            "samples": self.samples,
            "source": "SpikingJelly 2.0 op_counter.estimate_spikesim_energy (SpikeSim, Moitra et al., TCAD 2023)",
            "scope": "convolution stages only; dense layers are not priced by SpikeSim",
        }


def spikesim_periphery(model: nn.Module, x_seq: Tensor, *, config: Any = None) -> SpikeSimPeriphery:
    """SpikeSim's crossbar energy of the network on ``x_seq``, per sample, in joules (see :class:`SpikeSimPeriphery`).

    Args:
        model: A quest-lightning network; it is profiled through :func:`to_spikingjelly` with its own neurons.
        x_seq: Encoded input ``[T, B, ...]``.
        config: A ``SpikeSimEnergyConfig`` (default: SpikingJelly's, RRAM 64×64 crossbars, dense activity).
    """
    from dataclasses import asdict

    report = spikingjelly_energy(model, x_seq, profiler="spikesim", config=config)
    b = int(x_seq.shape[1])
    pj = 1e-12 / b
    components = dict(report.energy_by_component.get("totals", {}))
    return SpikeSimPeriphery(
        per_sample_j=report.energy_total_pj * pj,
        by_stage_j={k: v * pj for k, v in report.energy_by_stage.items()},
        components_j={k.removesuffix("_pj"): v * pj for k, v in components.items() if k != "total_pj"},
        config=copy.deepcopy(asdict(report.config)),
        samples=b,
    )
