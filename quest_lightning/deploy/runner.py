r"""The reference integer runner: a deployment bundle run with integer arithmetic wherever the bundle says so.

It reads nothing but the bundle. Per stage of the manifest's graph:

* an **integer synapse** receives ``int8`` spikes and sums the ``int8`` codes of the weights that meet a spike
  (``torch._int_mm``, an int8 × int8 → int32 product, per kernel offset for a convolution): no weight is ever
  scaled by :math:`\alpha`;
* an **integer neuron** adds that current to its integer state, fires when :math:`m_t \ge \theta_{int}`, resets to 0
  (hard) or requantizes :math:`m_t` against the soft-reset boundaries, and otherwise requantizes against the
  no-spike boundaries: the new state is :math:`-Q + \#\{k : m_t \ge b_k\}`, comparisons only;
* max pooling of spikes is a maximum of integers; flattening moves no number;
* an **integer readout** returns the summed codes per class and step; the prediction is the argmax of their sum over
  :math:`T`, which is the float model's argmax of the mean (a positive scale :math:`\alpha/(QT)` apart);
* **float32** stages (the analog first layer, full-precision layers, a readout with a bias) run the same float32
  operations as the fake-quantized model, from the bundle's tensors.

So the runner's spikes and predictions equal the fake-quantized model's, bit for bit, except where a float32
rounding tie decides a comparison in the float model (see :mod:`quest_lightning.functional.integer`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from quest_lightning.deploy.bundle import Bundle
from quest_lightning.functional.neuron import MembraneQuant, NeuronParams
from quest_lightning.functional.scan import neuron_scan

__all__ = ["IntegerRunner", "RunnerOutput", "int_conv2d", "int_linear", "integer_scan"]


def _int_matmul(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` for ``int8`` operands, exactly, as ``int32``."""
    try:
        return torch._int_mm(a.contiguous(), b.contiguous())
    except (RuntimeError, AttributeError):  # a build without the int8 kernel: exact, slower
        return (a.to(torch.int32) @ b.to(torch.int32)).to(torch.int32)


def int_linear(spikes: Tensor, codes: Tensor) -> Tensor:
    """Integer currents of a dense layer: ``spikes [..., in]`` (``int8`` 0/1) and ``codes [out, in]`` (``int8``)
    give ``int32 [..., out]``, the sum of the codes that meet a spike."""
    flat = spikes.reshape(-1, spikes.shape[-1])
    return _int_matmul(flat, codes.t()).reshape(*spikes.shape[:-1], codes.shape[0])


def int_conv2d(
    spikes: Tensor,
    codes: Tensor,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
) -> Tensor:
    """Integer currents of a convolution: ``spikes [N, C_in, H, W]`` (``int8``) and ``codes
    [C_out, C_in/groups, kh, kw]`` (``int8``) give ``int32 [N, C_out, H_out, W_out]``.

    One int8 product per kernel offset and group: the input window at that offset, ``[N·H_out·W_out, C_in/g]``,
    times the codes at that offset, accumulated in int32 (zero padding, like ``nn.Conv2d``).
    """
    n, _, h, w = spikes.shape
    c_out, c_in_g, kh, kw = codes.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    h_out = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w_out = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    x = F.pad(spikes, (pw, pw, ph, ph))
    c_out_g = c_out // groups
    out = torch.zeros(n * h_out * w_out, c_out, dtype=torch.int32, device=spikes.device)
    for g in range(groups):
        xs = x[:, g * c_in_g : (g + 1) * c_in_g]
        rows = slice(g * c_out_g, (g + 1) * c_out_g)
        for i in range(kh):
            for j in range(kw):
                window = xs[
                    :, :, i * dh : i * dh + sh * (h_out - 1) + 1 : sh, j * dw : j * dw + sw * (w_out - 1) + 1 : sw
                ]
                a = window.permute(0, 2, 3, 1).reshape(-1, c_in_g)
                out[:, rows] += _int_matmul(a, codes[rows, :, i, j].t())
    return out.reshape(n, h_out, w_out, c_out).permute(0, 3, 1, 2)


def _channel_view(t: Tensor, ndim: int) -> Tensor:
    """``t [C, ...]`` shaped to broadcast over ``[B, C, *spatial]`` of ``ndim`` dims (channel first)."""
    return t.reshape(t.shape[0], *([1] * (ndim - 2)), *t.shape[1:])


def integer_scan(
    currents: Tensor, threshold_int: Tensor, bounds_no_spike: Tensor, bounds_spike: Tensor, reset: str, q: int
) -> Tensor:
    """The integer IF neuron over ``currents [T, B, C, ...]`` (integers), with per-channel programs.

    Args:
        currents: Integer input currents.
        threshold_int: ``[C]`` or ``[1]``.
        bounds_no_spike, bounds_spike: ``[C or 1, 2Q]`` (``bounds_spike`` is ``[C or 1, 0]`` for a hard reset).
        reset: ``"hard"`` or ``"soft"``.
        q: The largest code :math:`Q`.

    Returns:
        ``int8`` spikes, the shape of ``currents``.
    """
    ndim = currents.dim() - 1  # per-step dims [B, C, ...]
    theta = _channel_view(threshold_int, ndim)
    b0 = _channel_view(bounds_no_spike, ndim).unbind(-1)
    b1 = _channel_view(bounds_spike, ndim).unbind(-1)

    def requantize(m: Tensor, bounds: tuple[Tensor, ...]) -> Tensor:
        level = torch.full_like(m, -q)
        for b in bounds:
            level += m >= b
        return level

    u = torch.zeros_like(currents[0], dtype=torch.int64)
    spikes = []
    for current in currents.unbind(0):
        m = u + current
        s = m >= theta
        kept = requantize(m, b0)
        u = torch.where(s, torch.zeros_like(m) if reset == "hard" else requantize(m, b1), kept)
        spikes.append(s.to(torch.int8))
    return torch.stack(spikes)


def _heaviside(at_threshold: bool):
    def spike(z: Tensor) -> Tensor:
        return (z >= 0 if at_threshold else z > 0).to(z.dtype)

    return spike


def _fold(fn, x: Tensor) -> Tensor:
    """Apply a per-sample op to ``[T, B, ...]`` by folding time into the batch."""
    y = fn(x.flatten(0, 1))
    return y.unflatten(0, x.shape[:2])


@dataclass
class RunnerOutput:
    """What :meth:`IntegerRunner.run` returns.

    Attributes:
        output: The last stage's output ``[T, B, ...]``: ``int32`` summed codes for an integer readout, ``float32``
            currents for a float readout, ``int8`` spikes if the network ends with a neuron.
        predictions: ``[B]`` class indices.
        spikes: Per neuron (by name), its ``int8`` spikes ``[T, B, ...]``, when asked for.
    """

    output: Tensor
    predictions: Tensor
    spikes: dict[str, Tensor] = field(default_factory=dict)


class IntegerRunner:
    """Run a deployment bundle (see the module docstring).

    Args:
        bundle: A :class:`~quest_lightning.deploy.bundle.Bundle` (from ``export`` or ``load_bundle``).

    Example:
        >>> runner = IntegerRunner(load_bundle("bundle/"))  # doctest: +SKIP
        >>> runner.predict(images)  # [B] class indices  # doctest: +SKIP
    """

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.manifest = bundle.manifest
        self.q = int(self.manifest["grid"]["qmax"])
        self.timesteps = self.manifest["input"]["timesteps"]
        self.input_shape = tuple(self.manifest["input"]["shape"])

    def _t(self, entry: dict[str, Any], key: str) -> Tensor:
        return self.bundle.tensors[entry["tensors"][key]]

    @property
    def integer_stages(self) -> list[str]:
        """The stages that run on integers only."""
        return [e["name"] for e in self.manifest["graph"] if e["arithmetic"] == "integer"]

    def _encode(self, x: Tensor) -> Tensor:
        n = len(self.input_shape)
        if x.dim() == n + 2:
            return x
        if x.dim() != n + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"the bundle takes [B, {', '.join(map(str, self.input_shape))}] (direct coding) or [T, B, ...] "
                f"input, got shape {tuple(x.shape)}"
            )
        if self.timesteps is None:
            raise ValueError("the bundle does not record the number of time steps; pass [T, B, ...] input")
        encoder = self.manifest["input"].get("encoder", "direct")
        if encoder != "direct":
            raise ValueError(
                f"the bundle's network was trained with {encoder} coding; pass the encoded [T, B, ...] input"
            )
        return x.unsqueeze(0).expand(self.timesteps, *x.shape)  # direct coding, a stride-0 view

    def _float_synapse(self, entry: dict[str, Any], x: Tensor) -> Tensor:
        if entry["quantized"]:
            alpha = self._t(entry, "alpha")
            w = self._t(entry, "codes").to(torch.float32) * (alpha / entry["qmax"])  # as the quantizer makes W_q
        else:
            w = self._t(entry, "weight")
        bias = self.bundle.tensors.get(entry["tensors"].get("bias", ""))
        x = x.to(torch.float32) if x.dtype != torch.float32 else x
        repeated = x.shape[0] > 1 and x.stride(0) == 0

        def apply(v: Tensor) -> Tensor:
            if entry["op"] == "linear":
                return F.linear(v, w, bias)
            return F.conv2d(v, w, bias, entry["stride"], entry["padding"], entry["dilation"], entry["groups"])

        if repeated:  # computed once and expanded, as the quantized layers do for direct coding
            y = apply(x[0])
            return y.unsqueeze(0).expand(x.shape[0], *y.shape)
        return apply(x) if entry["op"] == "linear" else _fold(apply, x)

    def _int_synapse(self, entry: dict[str, Any], x: Tensor) -> Tensor:
        codes = self._t(entry, "codes")
        s = x.to(torch.int8)
        if entry["op"] == "linear":
            return int_linear(s, codes)
        geometry = (tuple(entry["stride"]), tuple(entry["padding"]), tuple(entry["dilation"]), entry["groups"])
        return _fold(lambda v: int_conv2d(v, codes, *geometry), s)

    def _neuron(self, entry: dict[str, Any], x: Tensor) -> Tensor:
        if entry["arithmetic"] == "integer":
            return integer_scan(
                x,
                self._t(entry, "threshold_int"),
                self._t(entry, "bounds_no_spike"),
                self._t(entry, "bounds_spike"),
                entry["reset"],
                self.q,
            )
        params = NeuronParams(
            decay=entry["decay"],
            threshold=entry["threshold"],
            reset=entry["reset"],
            soft_reset_amount=entry["reset_amount"],
        )
        membrane = entry["membrane"]
        quant = None
        if membrane is not None:
            quant = MembraneQuant(self._t(entry, "membrane_alpha"), membrane["bits"], membrane["transform"])
        spikes, _, _ = neuron_scan(x.contiguous(), _heaviside(entry["fire"] == ">="), params, quant)
        return spikes.to(torch.int8)

    def _pool(self, entry: dict[str, Any], x: Tensor) -> Tensor:
        k, s, p = tuple(entry["kernel_size"]), tuple(entry["stride"]), tuple(entry["padding"])
        if entry["op"] == "maxpool2d":  # contiguous: torch's channels-last int8 max pooling fails on any size
            return _fold(lambda v: F.max_pool2d(v.contiguous(), k, s, p), x)
        return _fold(lambda v: F.avg_pool2d(v, k, s, p), x.to(torch.float32))

    def stages(self, x: Tensor) -> Iterator[tuple[dict[str, Any], Tensor]]:
        """Run ``x`` and yield ``(graph entry, its output)`` for every stage, in order."""
        with torch.no_grad():
            h = self._encode(x)
            for entry in self.manifest["graph"]:
                op = entry["op"]
                if op in ("conv2d", "linear"):
                    integer = entry["arithmetic"] == "integer"
                    h = self._int_synapse(entry, h) if integer else self._float_synapse(entry, h)
                elif op == "neuron":
                    h = self._neuron(entry, h)
                elif op in ("maxpool2d", "avgpool2d"):
                    h = self._pool(entry, h)
                elif op == "flatten":
                    h = h.flatten(2)
                else:
                    raise ValueError(f"stage {entry['name']!r} has an unknown op {op!r}")
                yield entry, h

    def run(self, x: Tensor, *, record_spikes: bool = False) -> RunnerOutput:
        """Run the bundle on ``x`` (``[B, ...]`` with direct coding over the recorded ``T``, or ``[T, B, ...]``).

        Args:
            x: The input batch.
            record_spikes: Keep every neuron's spikes in the result.
        """
        spikes: dict[str, Tensor] = {}
        out = x
        for entry, out in self.stages(x):
            if record_spikes and entry["op"] == "neuron":
                spikes[entry["name"]] = out
        if out.is_floating_point():
            predictions = out.mean(0).argmax(-1)
        else:
            predictions = out.to(torch.int64).sum(0).argmax(-1)
        return RunnerOutput(out, predictions, spikes)

    def predict(self, x: Tensor) -> Tensor:
        """``[B]`` predicted classes."""
        return self.run(x).predictions
