r"""What a training step costs: exact non-zero operation counts of its forward, backward and weight-gradient passes.

A sparse on-device trainer (forward, backward and weight-gradient engines that skip zeros, as in the multi-core
neuromorphic trainer of arXiv:2412.05302) pays for each pass what its non-zero operands cost (METHOD.md §10). For a
synaptic layer at time step :math:`t`, with input :math:`s_t`, integer weight codes :math:`\hat w` and the gradient
:math:`\delta_t` at the layer's output taken at its neuron, summed over the connections (input position :math:`x`,
weight :math:`k`, output position :math:`p`) and the samples:

.. math::

    F_t = \sum \mathbb 1[s_t(x) \ne 0]\,\mathbb 1[\hat w_k \ne 0], \qquad
    B_t = \sum \mathbb 1[\delta_t(p) \ne 0]\,\mathbb 1[\hat w_k \ne 0], \qquad
    G_t = \sum \mathbb 1[\delta_t(p) \ne 0]\,\mathbb 1[s_t(x) \ne 0],

the forward accumulates (:math:`F`, the AOR meter's :math:`N_{eff}`), the backward multiplies for the input gradient
:math:`\varepsilon = W^\top \delta` (:math:`B`; zero when the layer's input needs no gradient, as for the first
layer, since autograd does not compute it) and the weight-gradient accumulates (:math:`G`, for
:math:`\partial L/\partial W = \sum_t \delta_t s_t^\top`). A padded position is no connection.

**Counting.** Per weight :math:`k` and step :math:`t`: :math:`F_{k,t} = \sum_p n_t(x(p, k))` is the correlation of
the input counts :math:`n_t` (non-zero inputs per position, summed over the samples) with an all-ones output map;
:math:`B_{k,t}` the correlation of the real-input mask with the counts :math:`d_t` of non-zero :math:`\delta`;
:math:`G_{k,t}` the correlation of the 0/1 inputs with the 0/1 :math:`\delta` (the layer's own weight gradient, on
indicators). Each pass is one grouped correlation over all :math:`T` steps (a matrix product for a linear layer),
in float64 (every integer below :math:`2^{53}` exact), and one scatter-add over the codes gives every level:
:math:`F(v) = \sum_{k: \hat w_k = v} F_k`. Nothing is unfolded and nothing waits for the host.

**Where** :math:`\delta` **is taken.** At the neuron: the gradient of the neuron's input current, which is the layer's
output gradient when nothing sits between them. With BatchNorm in between, the layer's output gradient is dense (BN
mixes the batch), so the recorder takes :math:`\delta` at the BatchNorm's output (``delta_at="neuron"``, what a
trainer with BN folded into the weights sees) or, on request, at the layer's output (``delta_at="layer"``); each
layer's record says which point was used.

**Exact zeros.** :math:`\delta` has exact zeros only where the surrogate gradient has bounded support (the default
triangle does). For a surrogate without (ATan, sigmoid...) the count is threshold-based,
:math:`|\delta| > \tau \max|\delta|` per layer and call, and says so (:func:`delta_rule`).

The SATA simulator (Yin et al., "SATA: Sparsity-Aware Training Accelerator for Spiking Neural Networks", IEEE TCAD
2023, arXiv:2204.05422) prices the same three passes from sparsity ratios; these are the exact counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from quest_lightning.devices.patterns import PatternEnergies
from quest_lightning.energy.cmos import CMOSEnergy, get_cmos
from quest_lightning.energy.price import read_energy_per_sample
from quest_lightning.functional.grid import levels_of_qmax
from quest_lightning.metrics.geometry import LayerGeometry

__all__ = [
    "DEFAULT_DELTA_THRESHOLD",
    "TrainingOps",
    "TrainingOpsMeter",
    "TrainingOpsResult",
    "bounded_support",
    "delta_rule",
    "price_training_step",
    "training_step_counts",
]

DEFAULT_DELTA_THRESHOLD = 1e-3
"""The relative threshold :math:`\\tau` of the count of non-zero :math:`\\delta` when a surrogate has no bounded
support: :math:`|\\delta| > \\tau \\max|\\delta|` per layer and call."""


class TrainingOps(NamedTuple):
    """The counts of one layer call over its ``T`` time steps (float64 exact integers unless said)."""

    forward: Tensor  # [T] F_t: non-zero input x non-zero weight
    backward: Tensor  # [T] B_t: non-zero delta x non-zero weight (0 when the input needs no gradient)
    weight_grad: Tensor  # [T] G_t: non-zero input x non-zero delta
    forward_levels: Tensor  # [L] F(v) summed over the T steps, index v + Q (the zero level included)
    backward_levels: Tensor  # [L] B(v) summed over the T steps
    delta_nonzero: Tensor  # [T] int64: non-zero (or above-threshold) delta elements
    delta_elements: int  # delta elements per time step
    nonbinary_inputs: Tensor  # int64: input elements neither 0 nor 1 (analog input)
    samples: int  # samples of the call (the batch)


def bounded_support(spike_fn: Any, probe: float = 3.0) -> bool:
    """Whether a surrogate's gradient is exactly zero away from the threshold (at :math:`\\pm 3` and
    :math:`\\pm 30` from it): the triangle's is, ATan's and the sigmoid's are not."""
    x = torch.tensor([-10 * probe, -probe, probe, 10 * probe], requires_grad=True)
    spike_fn(x).sum().backward()
    return bool((x.grad == 0).all())


def delta_rule(spike_fns: Iterable[Any], threshold: float | None = None) -> tuple[float, str]:
    """The threshold :math:`\\tau` to count :math:`\\delta` with, and a sentence saying how it was counted.

    ``threshold=None``: exact zeros when every surrogate has bounded support (:func:`bounded_support`), else
    :data:`DEFAULT_DELTA_THRESHOLD`. A number is used as given (0 counts exact zeros).

    Raises:
        ValueError: a negative or non-finite threshold.
    """
    unbounded = sorted({type(fn).__name__ for fn in spike_fns if not bounded_support(fn)})
    if threshold is None:
        threshold = DEFAULT_DELTA_THRESHOLD if unbounded else 0.0
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold < math.inf:
        raise ValueError(f"delta_threshold={threshold!r} must be a number >= 0 (0: exact zeros).")
    if threshold == 0:
        note = "exact zeros of delta" + (f" (but {', '.join(unbounded)} has no bounded support)" if unbounded else "")
        return 0.0, note
    why = f" ({', '.join(unbounded)} has no bounded support)" if unbounded else ""
    return float(threshold), f"threshold: |delta| > {threshold:g} x max|delta| per layer and call{why}"


def _indicator(t: Tensor, threshold: float) -> Tensor:
    if threshold == 0:
        return t != 0
    a = t.abs()
    return a > threshold * a.amax()


def _grouped_weight_sums(geometry: LayerGeometry, x: Tensor, g: Tensor) -> Tensor:
    """:math:`\\sum_{n,p} x\\,g` per weight and step: ``x`` ``[T, N, C_in, H, W]``, ``g`` ``[T, N, C_out, H_o,
    W_o]`` (float64) -> ``[T, *weight_shape]``, as one correlation with the steps as groups."""
    steps, n = g.shape[:2]
    top, bottom, left, right = geometry.padding
    xin = F.pad(x.transpose(0, 1).reshape(n, -1, *x.shape[-2:]), (left, right, top, bottom))
    gout = g.transpose(0, 1).reshape(n, -1, *g.shape[-2:])
    shape = (steps * geometry.out_channels, *geometry.weight_shape[1:])
    sums = torch.nn.grad.conv2d_weight(
        xin, shape, gout, stride=geometry.stride, dilation=geometry.dilation, groups=steps * geometry.groups
    )
    return sums.unflatten(0, (steps, geometry.out_channels))


def _per_level(sums: Tensor, codes: Tensor, qmax: int) -> Tensor:
    """``[T, *weight_shape]`` sums -> ``[T, L]`` summed per code level (one scatter-add, no host sync)."""
    steps = sums.shape[0]
    index = (codes.to(torch.int64) + qmax).flatten().expand(steps, -1)
    out = torch.zeros(steps, levels_of_qmax(qmax), dtype=torch.float64, device=sums.device)
    return out.scatter_add_(1, index, sums.flatten(1))


def _level_counts(codes: Tensor, qmax: int, dim: int) -> Tensor:
    """``[L, size]`` float64: how many weights of each level lie along ``dim`` of the ``[out, in]`` codes."""
    levels = levels_of_qmax(qmax)
    c = codes.to(torch.int64) + qmax
    size = c.shape[1 - dim]
    position = torch.arange(size, device=c.device).unsqueeze(dim)
    out = torch.zeros(levels * size, dtype=torch.float64, device=c.device)
    ones = torch.ones((), dtype=torch.float64, device=c.device).expand(c.numel())
    return out.index_add_(0, (c * size + position).flatten(), ones).view(levels, size)


def training_step_counts(
    geometry: LayerGeometry,
    inputs: Tensor,
    delta: Tensor,
    codes: Tensor,
    qmax: int,
    *,
    input_grad: bool = True,
    threshold: float = 0.0,
) -> TrainingOps:
    """Exact :math:`F_t`, :math:`B_t`, :math:`G_t` (and :math:`F(v)`, :math:`B(v)`) of one layer call.

    Args:
        geometry: the layer's geometry (:meth:`LayerGeometry.of`).
        inputs: the layer's input, ``[T, B, C, H, W]``, ``[T, B, C, L]`` or ``[T, B, ..., F]`` (``T = 1`` for a
            single-step call; a stride-0 repeat over ``T`` is fine).
        delta: the gradient at the layer's output (at its neuron), ``[T, B, ...]`` like the output.
        codes: the integer weight codes of the forward pass, shaped like the weight.
        qmax: the largest code :math:`Q`.
        input_grad: whether the input gradient was computed (else :math:`B_t = 0`).
        threshold: :math:`\\tau` (0: exact zeros of ``delta``; see :func:`delta_rule`).

    Returns:
        A :class:`TrainingOps`.

    Raises:
        ValueError: ``inputs`` and ``delta`` do not match the geometry or each other.

    Example:
        >>> g = LayerGeometry("linear", 3, 2)
        >>> s = torch.tensor([[[1.0, 0.0, 1.0]]])  # [T=1, B=1, 3]
        >>> d = torch.tensor([[[0.5, 0.0]]])  # delta at the 2 outputs
        >>> ops = training_step_counts(g, s, d, torch.tensor([[1, 0, -1], [0, 1, 1]], dtype=torch.int8), 1)
        >>> ops.forward.tolist(), ops.backward.tolist(), ops.weight_grad.tolist()
        ([3.0], [2.0], [2.0])
    """
    if inputs.shape[:2] != delta.shape[:2]:
        raise ValueError(f"inputs {tuple(inputs.shape)} and delta {tuple(delta.shape)} differ in [T, B].")
    if geometry.kind == "conv1d":  # a 2-D convolution of height 1
        geometry = replace(geometry, kind="conv2d")
        inputs, delta, codes = inputs.unsqueeze(-2), delta.unsqueeze(-2), codes.unsqueeze(-2)
    steps, samples = delta.shape[:2]
    s = inputs.detach() != 0
    d = _indicator(delta.detach(), threshold)
    nonbinary = torch.logical_and(s, inputs.detach() != 1).sum()
    if geometry.kind == "linear":
        if inputs.shape[-1] != geometry.in_channels or delta.shape[-1] != geometry.out_channels:
            raise ValueError(
                f"linear counts need [..., {geometry.in_channels}] inputs and [..., {geometry.out_channels}] delta, "
                f"got {tuple(inputs.shape)} and {tuple(delta.shape)}."
            )
        s, d = s.reshape(steps, -1, geometry.in_channels), d.reshape(steps, -1, geometry.out_channels)
        fwd = s.sum(1, dtype=torch.float64) @ _level_counts(codes, qmax, 0).T  # [T, L]
        bwd = d.sum(1, dtype=torch.float64) @ _level_counts(codes, qmax, 1).T
        weight_grad = (s.sum(-1, dtype=torch.float64) * d.sum(-1, dtype=torch.float64)).sum(1)
    else:
        h_out, w_out = geometry.output_size(inputs.shape[-2], inputs.shape[-1])
        if tuple(delta.shape[2:]) != (geometry.out_channels, h_out, w_out):
            raise ValueError(
                f"conv delta must be [T, B, {geometry.out_channels}, {h_out}, {w_out}] for inputs "
                f"{tuple(inputs.shape)}, got {tuple(delta.shape)}."
            )
        f64 = dict(dtype=torch.float64, device=delta.device)
        ones_out = torch.ones(steps, 1, geometry.out_channels, h_out, w_out, **f64)
        ones_in = torch.ones(steps, 1, *inputs.shape[2:], **f64)
        fwd = _per_level(
            _grouped_weight_sums(geometry, s.sum(1, dtype=torch.float64).unsqueeze(1), ones_out), codes, qmax
        )
        bwd = _per_level(
            _grouped_weight_sums(geometry, ones_in, d.sum(1, dtype=torch.float64).unsqueeze(1)), codes, qmax
        )
        weight_grad = _grouped_weight_sums(geometry, s.to(torch.float64), d.to(torch.float64)).flatten(1).sum(1)
    if not input_grad:
        bwd = torch.zeros_like(bwd)
    return TrainingOps(
        forward=fwd.sum(1) - fwd[:, qmax],
        backward=bwd.sum(1) - bwd[:, qmax],
        weight_grad=weight_grad,
        forward_levels=fwd.sum(0),
        backward_levels=bwd.sum(0),
        delta_nonzero=d.reshape(steps, -1).sum(1),
        delta_elements=math.prod(delta.shape[2:]) * samples,
        nonbinary_inputs=nonbinary,
        samples=samples,
    )


class TrainingOpsResult(NamedTuple):
    """What :class:`TrainingOpsMeter` computes: per sample, per time step and summed (float64)."""

    forward: Tensor  # [T] F_t per sample
    backward: Tensor  # [T] B_t per sample
    weight_grad: Tensor  # [T] G_t per sample
    forward_levels: Tensor  # [L] F(v) per sample, summed over T
    backward_levels: Tensor  # [L] B(v) per sample, summed over T
    delta_density: Tensor  # [T] share of non-zero delta elements
    nonbinary_inputs: Tensor  # int64 input elements neither 0 nor 1
    macs: Tensor  # ANN-equivalent MACs per sample and step
    samples: Tensor  # int64 samples counted

    def totals(self) -> dict[str, float]:
        """The three passes summed over the time steps, per sample (host floats)."""
        return {k: float(getattr(self, k).sum()) for k in ("forward", "backward", "weight_grad")}


class TrainingOpsMeter(Metric):
    """The training-step counts of one layer, summed over the counted calls (sums only: exact under DDP, where
    ``compute`` adds the ranks, and checkpointed).

    Args:
        geometry: the layer's geometry.
        qmax: the largest code :math:`Q` (1 for a full-precision layer counted on its signs).
        timesteps: :math:`T`, the most time steps one batch may have.
    """

    full_state_update = False

    def __init__(self, geometry: LayerGeometry, qmax: int, timesteps: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
            raise ValueError(f"timesteps={timesteps!r} must be a positive integer.")
        self.geometry, self.qmax, self.timesteps = geometry, qmax, timesteps
        levels = levels_of_qmax(qmax)
        for name, shape, dtype in (
            ("forward", (timesteps,), torch.float64),
            ("backward", (timesteps,), torch.float64),
            ("weight_grad", (timesteps,), torch.float64),
            ("forward_levels", (levels,), torch.float64),
            ("backward_levels", (levels,), torch.float64),
            ("delta_nonzero", (timesteps,), torch.int64),
            ("delta_elements", (timesteps,), torch.int64),
            ("nonbinary_inputs", (), torch.int64),
            ("samples", (), torch.int64),
            ("dense", (), torch.int64),
        ):
            self.add_state(name, torch.zeros(shape, dtype=dtype), dist_reduce_fx="sum", persistent=True)

    def update(self, ops: TrainingOps, first_step: int = 0, macs: int = 0) -> None:
        """Add one call's counts at time steps ``first_step ..`` (a single-step loop's call ``t`` gives ``t``); its
        samples are counted once, at step 0. ``macs``: the call's ANN-equivalent MACs (for :attr:`macs`)."""
        steps = ops.forward.shape[0]
        if first_step + steps > self.timesteps:
            raise ValueError(
                f"a call reached time step {first_step + steps} but the meter holds timesteps={self.timesteps}: give "
                "the meter the model's number of time steps."
            )
        window = slice(first_step, first_step + steps)
        self.forward[window] += ops.forward
        self.backward[window] += ops.backward
        self.weight_grad[window] += ops.weight_grad
        self.forward_levels += ops.forward_levels
        self.backward_levels += ops.backward_levels
        self.delta_nonzero[window] += ops.delta_nonzero
        self.delta_elements[window] += ops.delta_elements
        self.nonbinary_inputs += ops.nonbinary_inputs
        if first_step == 0:
            self.samples += ops.samples
        self.dense += macs

    def compute(self) -> TrainingOpsResult:
        samples = self.samples.to(torch.float64)
        rows = self.samples * self.timesteps
        return TrainingOpsResult(
            forward=self.forward / samples,
            backward=self.backward / samples,
            weight_grad=self.weight_grad / samples,
            forward_levels=self.forward_levels / samples,
            backward_levels=self.backward_levels / samples,
            delta_density=self.delta_nonzero.to(torch.float64) / self.delta_elements.clamp_min(1),
            nonbinary_inputs=self.nonbinary_inputs,
            macs=self.dense.to(torch.float64) / rows,
            samples=self.samples,
        )


def price_training_step(
    results: Mapping[str, TrainingOpsResult],
    cmos: str | CMOSEnergy = "45nm_fp32",
    *,
    analog: Iterable[str] = (),
    energies: PatternEnergies | None = None,
    pattern_index: int | None = None,
    device_layers: Iterable[str] = (),
    write_j: float | None = None,
    count_zero_level_reads: bool = False,
) -> dict[str, Any]:
    """Joules per sample of a training step, per layer and pass, JSON-ready.

    * CMOS arithmetic (:mod:`quest_lightning.energy.cmos`): forward :math:`F \\cdot E_{AC}` (:math:`E_{MAC}` for an
      analog-input layer), backward :math:`B \\cdot E_{MAC}` (:math:`\\delta` times a weight), weight gradient
      :math:`G \\cdot E_{AC}` (:math:`E_{MAC}` for analog input);
    * device reads of the ``device_layers`` (the quantized layers held on the device) at pattern ``pattern_index``:
      :math:`\\sum_v F(v) E_r^p[v]` in the forward pass and :math:`\\sum_v B(v) E_r^p[v]` in the backward pass
      (:func:`~quest_lightning.energy.price.read_energy_per_sample`, the one pricing path);
    * device writes: ``write_j``, the write energy per sample of the same steps, when given (the transition
      monitor's figure, priced by ``DeviceEnergyCallback``).

    Raises:
        ValueError: device layers without ``energies`` and ``pattern_index``, or an unknown CMOS preset.
    """
    c = get_cmos(cmos)
    analog, device = set(analog), set(device_layers)
    if device and (energies is None or pattern_index is None):
        raise ValueError("device_layers are priced with energies=pattern_energies(...) and a pattern_index.")
    layers: dict[str, dict[str, float]] = {}
    for name, r in results.items():
        t = r.totals()
        ac = c.e_mac_j if name in analog else c.e_ac_j
        entry = {"forward_j": t["forward"] * ac, "backward_j": t["backward"] * c.e_mac_j, "weight_grad_j": 0.0}
        entry["weight_grad_j"] = t["weight_grad"] * ac
        if name in device:
            read = energies.read_j[pattern_index : pattern_index + 1]
            for key, counts in (("read_forward_j", r.forward_levels), ("read_backward_j", r.backward_levels)):
                joules = read_energy_per_sample(counts, read, 1, count_zero_level_reads=count_zero_level_reads)
                entry[key] = float(joules[0])
        layers[name] = entry
    compute = sum(v for e in layers.values() for k, v in e.items() if not k.startswith("read"))
    reads = sum(v for e in layers.values() for k, v in e.items() if k.startswith("read"))
    return {
        "unit": "J/sample",
        "cmos": c.name,
        "pattern_index": pattern_index,
        "layers": layers,
        "compute_j": compute,
        "device_read_j": reads,
        "device_write_j": write_j,
        "total_j": compute + reads + (write_j or 0.0),
    }
