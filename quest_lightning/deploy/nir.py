r"""NIR export of a quantized quest-lightning network, and how often NIR's neurons spike like ours.

:func:`to_nir` writes the network as a :class:`nir.NIRGraph`:

* synapses as ``Conv2d`` / ``Linear`` (``Affine`` with a bias) whose weights are the **quantized values**
  :math:`\hat w\,\alpha/Q` (full-precision layers keep their float weights); each node's metadata holds
  :math:`\alpha`, the bit width and the codes' meaning;
* hard-reset IF neurons as ``IF`` nodes (:math:`R = 1`, :math:`v_{thr} = \theta`, :math:`v_{reset} = 0`), LIF
  neurons as ``LIF`` nodes with :math:`\tau = \Delta t/(1-\lambda)`, :math:`R = \tau/\Delta t` and
  :math:`v_{leak} = 0`, which an Euler step of size :math:`\Delta t` turns back into
  :math:`v \leftarrow \lambda v + I`. ``if_node="LIF"`` writes IF neurons in that LIF form too, with
  :math:`\tau = 2^{26}\Delta t` (:math:`1 - \Delta t/\tau` is 1 in float32), because snnTorch 1.0's importer turns an
  ``IF`` node into ``Leaky(beta=0.9)`` with a subtractive reset and cannot run it;
* max pooling of spikes, which NIR lacks, as ``AvgPool2d`` followed by an ``IF`` node with threshold 0: the average
  of a binary window is above 0 exactly when one of its spikes is 1, and the node's state returns to 0 at every step;
* flattening as ``Flatten`` over the per-sample dimensions (NIR shapes exclude the batch).

**What NIR cannot say.** MINT quantizes the membrane on the layer's grid after every reset, clipping it to
:math:`[-\alpha, \alpha]`. NIR's neurons have no such clipping: the graph integrates without it. The graph's
metadata says so, and :func:`nir_spike_agreement` measures how often it matters: the fraction of spike entries
(time step × sample × neuron) on which the graph, re-imported with snnTorch's NIR importer, agrees with the model.
NIR fires on :math:`v > v_{thr}` while quest-lightning's SpikingJelly-style neurons fire on :math:`H \ge \theta`; the
two differ only when the membrane lands exactly on the threshold. NIR has no soft reset (the graph would
misdescribe the neuron), so soft-reset networks are refused.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from quest_lightning.deploy.graph import (
    NotDeployableError,
    infer_input_shape,
    model_spikes,
    pool_geometry,
    trace,
    unwrap,
)
from quest_lightning.metrics.geometry import LayerGeometry
from quest_lightning.nn.layers import QuantConv2d, QuantLayerMixin
from quest_lightning.nn.neurons.base import QuantNeuron

__all__ = ["NIRAgreement", "import_with_snntorch", "nir_spike_agreement", "to_nir"]

DT = 1e-4
"""The time step :math:`\\Delta t` (seconds) of the LIF parameters: snnTorch's NIR convention."""
CLIPPING_NOTE = (
    "MINT quantizes the membrane on the feeding layer's grid (alpha, bits) after every reset, clipping it to "
    "[-alpha, alpha]; NIR has no equivalent, so this graph's neurons integrate without clipping."
)
_IF_AS_LIF_TAU = DT * 2.0**26


def _node_name(name: str) -> str:
    return name.replace(".", "_")


def _neuron_node(shape: tuple[int, ...], threshold: float, decay: float, if_node: str, meta: dict[str, Any]):
    import nir

    ones = np.ones(shape, dtype=np.float32)
    theta = ones * np.float32(threshold)
    if decay == 1.0 and if_node == "IF":
        return nir.IF(r=ones, v_threshold=theta, v_reset=np.zeros_like(ones), metadata=meta)
    tau = _IF_AS_LIF_TAU if decay == 1.0 else DT / (1.0 - decay)
    return nir.LIF(
        tau=ones * np.float32(tau),
        r=ones * np.float32(tau / DT),
        v_leak=np.zeros_like(ones),
        v_threshold=theta,
        v_reset=np.zeros_like(ones),
        metadata=meta,
    )


def to_nir(model: nn.Module, *, input_shape: Sequence[int] | None = None, if_node: Literal["IF", "LIF"] = "IF") -> Any:
    """The network as a NIR graph (see the module docstring for the mapping and what is lost).

    Args:
        model: A quest-lightning network (or a Lightning module holding it in ``.model``).
        input_shape: The per-sample input shape; read off a ``SpikingVGG`` when omitted.
        if_node: ``"IF"`` writes IF neurons as NIR ``IF`` nodes (exact); ``"LIF"`` as LIF nodes with a leak that
            rounds to none in float32, which snnTorch 1.0's NIR importer reads correctly.

    Returns:
        A ``nir.NIRGraph`` whose node names are the modules' names with ``.`` replaced by ``_``.

    Raises:
        NotDeployableError: Unfolded BatchNorm, a soft-reset or reset-free neuron (NIR has neither), or a module
            that cannot be traced.
    """
    import nir

    if if_node not in ("IF", "LIF"):
        raise ValueError(f"if_node={if_node!r} must be 'IF' or 'LIF'")
    net = unwrap(model)
    shape = tuple(int(s) for s in (input_shape or infer_input_shape(net)))
    nodes: list[Any] = [nir.Input(input_type={"input": np.array(shape)})]
    names = ["input"]
    for stage in trace(net):
        m = stage.module
        meta: dict[str, Any] = {"quest_name": stage.name}
        if stage.kind == "norm":
            raise NotDeployableError(
                f"BatchNorm {stage.name!r} is not folded: NIR has no BatchNorm; fold it into the preceding layer "
                "first (quantize(..., fold_bn=True))."
            )
        if stage.kind == "synapse":
            assert isinstance(m, QuantLayerMixin)
            with torch.no_grad():
                w = m.quantized_weight().detach().to(torch.float32).cpu().numpy()
            bias = None if m.bias is None else m.bias.detach().to(torch.float32).cpu().numpy()
            if m.enabled:
                meta.update(alpha=float(m.alpha.detach()), bits=m.bits, weights="quantized values codes * alpha / Q")
            if isinstance(m, QuantConv2d):
                node = nir.Conv2d(
                    input_shape=shape[1:],
                    weight=w,
                    stride=tuple(m.stride),
                    padding=tuple(m.padding),
                    dilation=tuple(m.dilation),
                    groups=m.groups,
                    bias=np.zeros(w.shape[0], dtype=np.float32) if bias is None else bias,
                    metadata=meta,
                )
                shape = (m.out_channels, *LayerGeometry.of(m).output_size(shape[1], shape[2]))
            else:
                node = nir.Linear(weight=w, metadata=meta) if bias is None else nir.Affine(w, bias, metadata=meta)
                shape = (m.out_features,)
            nodes.append(node)
            names.append(_node_name(stage.name))
        elif stage.kind == "neuron":
            assert isinstance(m, QuantNeuron)
            if m.reset_mode != "hard":
                raise NotDeployableError(
                    f"neuron {stage.name!r} has reset={m.reset_mode!r}: NIR's IF and LIF nodes reset to v_reset "
                    "(a hard reset) and have no subtractive reset; export a hard-reset network."
                )
            quant = m.membrane_quantizer()
            if quant is not None:
                meta.update(
                    membrane_clipping=CLIPPING_NOTE, membrane_bits=quant.bits, alpha=float(quant.alpha.detach())
                )
            meta["fire"] = ">=" if m.spike_fn(torch.zeros(1)).item() > 0 else ">"
            nodes.append(_neuron_node(shape, m.threshold, m.decay, if_node, meta))
            names.append(_node_name(stage.name))
        elif stage.kind == "pool":
            geo = pool_geometry(m)
            pool = nir.AvgPool2d(
                kernel_size=np.array(geo["kernel_size"]),
                stride=np.array(geo["stride"]),
                padding=np.array(geo["padding"]),
                metadata=meta,
            )
            (kh, kw), (sh, sw), (ph, pw) = geo["kernel_size"], geo["stride"], geo["padding"]
            shape = (shape[0], (shape[1] + 2 * ph - kh) // sh + 1, (shape[2] + 2 * pw - kw) // sw + 1)
            nodes.append(pool)
            names.append(_node_name(stage.name))
            if geo["op"] == "maxpool2d":
                meta_or = {"quest_name": stage.name, "role": "max pooling of spikes: fires when the average is > 0"}
                nodes.append(_neuron_node(shape, 0.0, 1.0, if_node, meta_or))
                names.append(_node_name(stage.name) + "_or")
        else:
            nodes.append(nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1, metadata=meta))
            names.append(_node_name(stage.name))
            shape = (int(np.prod(shape)),)
    nodes.append(nir.Output(output_type={"output": np.array(shape)}))
    names.append("output")
    graph = nir.NIRGraph(
        nodes=dict(zip(names, nodes, strict=True)),
        edges=list(zip(names[:-1], names[1:], strict=True)),
        metadata={
            "source": "quest-lightning",
            "membrane_clipping": CLIPPING_NOTE,
            "weights": "quantized layers hold their quantized values codes * alpha / Q",
            "firing": "NIR fires on v > v_threshold; quest-lightning's SpikingJelly-style neurons on H >= theta",
            "max_pooling": "AvgPool2d followed by a spiking node with threshold 0 (exact on binary spikes)",
            "dt_s": DT,
        },
    )
    return graph


def import_with_snntorch(graph: Any) -> nn.Module:
    """The graph as an snnTorch network, through snnTorch's NIR importer (``snntorch.import_nir.import_from_nir``).

    NIR flattens per sample (``start_dim=0``) while the importer makes a ``torch.nn.Flatten`` with those dimensions,
    which would also flatten the batch; such flattens are shifted by one so that the module runs batched.
    """
    from snntorch.import_nir import import_from_nir

    with contextlib.redirect_stdout(io.StringIO()):  # the importer prints the generated code
        module = import_from_nir(graph)
    for sub in module.modules():
        if isinstance(sub, nn.Flatten) and sub.start_dim == 0:
            sub.start_dim = 1
    return module


@dataclass(frozen=True)
class NIRAgreement:
    """How often the NIR graph, re-imported, spikes like the model.

    Attributes:
        per_layer: Neuron name → fraction of spike entries (steps × samples × neurons) on which both agree.
        spikes: Total spike entries compared.
        agreement: Fraction over all layers.
        prediction_agreement: Fraction of samples whose predicted class agrees.
        samples: Number of samples.
    """

    per_layer: dict[str, float]
    spikes: int
    agreement: float
    prediction_agreement: float
    samples: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary."""
        return {
            "per_layer": dict(self.per_layer),
            "spike_entries": self.spikes,
            "spike_agreement": self.agreement,
            "prediction_agreement": self.prediction_agreement,
            "samples": self.samples,
        }


def _leaky_modules(module: nn.Module) -> dict[str, nn.Module]:
    import snntorch as snn

    return {name: m for name, m in module.named_modules() if isinstance(m, snn.Leaky)}


def nir_spike_agreement(model: nn.Module, x_seq: Tensor, imported: nn.Module) -> NIRAgreement:
    """Run ``model`` and the re-imported NIR graph on the same input and compare their spikes and predictions.

    Args:
        model: The quest-lightning network (``[T, B, ...] -> [T, B, classes]``).
        x_seq: Encoded input ``[T, B, ...]``.
        imported: The graph imported as an snnTorch network (:func:`import_with_snntorch` of :func:`to_nir` with
            ``if_node="LIF"``); it runs one step per call.

    Raises:
        ValueError: The imported network's spiking layers do not match the model's neurons one to one.
    """
    out, ours = model_spikes(model, x_seq)
    leaky = {k: m for k, m in _leaky_modules(imported).items() if not k.endswith("_or")}
    theirs: dict[str, list[Tensor]] = {k: [] for k in leaky}
    hooks = [
        m.register_forward_hook(lambda mod, inp, o, _k=k: theirs[_k].append(o[0] if isinstance(o, tuple) else o))
        for k, m in leaky.items()
    ]
    try:
        for m in _leaky_modules(imported).values():
            m.reset_mem()
        outs = []
        with torch.no_grad():
            for t in range(x_seq.shape[0]):
                y = imported(x_seq[t])
                outs.append(y[0] if isinstance(y, tuple) else y)
    finally:
        for h in hooks:
            h.remove()
    if len(leaky) != len(ours):
        raise ValueError(f"the imported graph has {len(leaky)} spiking layers but the model {len(ours)} neurons")
    per_layer, equal, total = {}, 0, 0
    for (name, a), s_theirs in zip(ours.items(), theirs.values(), strict=True):
        b = torch.stack(s_theirs).to(a.dtype).reshape(a.shape)
        same = int((a == b).sum())
        per_layer[name] = same / a.numel()
        equal, total = equal + same, total + a.numel()
    pred_ours = out.mean(0).argmax(-1)
    pred_theirs = torch.stack(outs).to(out.dtype).mean(0).argmax(-1)
    return NIRAgreement(
        per_layer,
        total,
        equal / total,
        float((pred_ours == pred_theirs).float().mean()),
        int(x_seq.shape[1]),
    )
