"""What :func:`~quest_lightning.convert.converter.quantize` converts into what, and the report it gives.

* :func:`library_classes` and :func:`is_library_neuron`: the snnTorch and SpikingJelly classes it knows;
* :func:`layer_for` and :func:`adapter_for`: one module's replacement, configured like the original;
* :class:`ConversionReport`: one :class:`ConversionRow` per layer, neuron and BatchNorm, printed as a table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import snntorch as snn
from spikingjelly.activation_based import layer as sj_layer
from spikingjelly.activation_based import neuron as sj_neuron
from spikingjelly.activation_based.base import StepModule
from torch import nn

from quest_lightning.nn.fold import fold_batch_norm
from quest_lightning.nn.layers import QuantConv1d, QuantConv2d, QuantLayerMixin, QuantLinear
from quest_lightning.nn.neurons import QuantIFNode, QuantLeaky, QuantLIFNode, QuantNeuron, QuantParametricLIFNode

if TYPE_CHECKING:
    from quest_lightning.convert.converter import _Plan


@cache
def library_classes() -> tuple[tuple[type[nn.Module], ...], tuple[type[nn.Module], ...], tuple[type, ...]]:
    """``(synaptic layer classes, neuron classes, neuron base classes)``: the exact classes ``quantize`` converts,
    and the bases by which it recognises a neuron it cannot convert."""
    layers = (nn.Conv1d, nn.Conv2d, nn.Linear, sj_layer.Conv1d, sj_layer.Conv2d, sj_layer.Linear)
    neurons = (snn.Leaky, sj_neuron.IFNode, sj_neuron.LIFNode, sj_neuron.ParametricLIFNode)
    bases = (snn.SpikingNeuron, sj_neuron.BaseNode, sj_neuron.SimpleBaseNode)
    return layers, neurons, bases


def is_library_neuron(module: nn.Module) -> bool:
    """Whether ``module`` is a spiking neuron of snnTorch or SpikingJelly (of any class)."""
    _, _, bases = library_classes()
    return isinstance(module, bases) or type(module).__module__.startswith("spikingjelly.activation_based.neuron")


def layer_for(
    layer: nn.Conv1d | nn.Conv2d | nn.Linear, bits: int, transform: str, enabled: bool, folded: Sequence[nn.Module]
) -> QuantLayerMixin:
    """A quantized layer configured like ``layer`` that holds the same weight and bias parameters (new ones when
    BatchNorms are folded in), with :math:`\\alpha` initialised from those weights. SpikingJelly's step mode is
    kept; a plain layer follows its input."""
    step_mode = layer.step_mode if isinstance(layer, StepModule) else None
    w = layer.weight
    quant: dict[str, Any] = dict(bits=bits, transform=transform, enabled=enabled, step_mode=step_mode)
    if isinstance(layer, nn.Linear):
        new = QuantLinear(layer.in_features, layer.out_features, layer.bias is not None, w.device, w.dtype, **quant)
    else:
        cls = QuantConv1d if isinstance(layer, nn.Conv1d) else QuantConv2d
        new = cls(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            layer.stride,
            layer.padding,
            layer.dilation,
            layer.groups,
            layer.bias is not None,
            layer.padding_mode,
            w.device,
            w.dtype,
            **quant,
        )
    new.weight = layer.weight
    new.bias = layer.bias
    for norm in folded:
        fold_batch_norm(new, norm)
    new.reset_alpha()
    return new


def adapter_for(neuron: nn.Module, mem_bits: int | None) -> QuantNeuron:
    """The adapter of ``neuron`` (``snn.Leaky``, ``IFNode``, ``LIFNode`` or ``ParametricLIFNode``) with the same
    configuration; a learnable value is the same ``nn.Parameter``.

    Raises:
        ValueError: a configuration the adapter does not reproduce (for example ``v_reset`` other than 0 or
            ``None``), with the fix.
    """
    if isinstance(neuron, snn.Leaky):
        return QuantLeaky.from_snntorch(neuron, mem_bits=mem_bits)
    common = (neuron.v_threshold, neuron.v_reset, neuron.surrogate_function, neuron.detach_reset, neuron.step_mode)
    common += (neuron.store_v_seq,)
    if isinstance(neuron, sj_neuron.ParametricLIFNode):
        new = QuantParametricLIFNode(2.0, neuron.decay_input, *common, mem_bits=mem_bits)
        new.w = neuron.w
        return new
    if isinstance(neuron, sj_neuron.LIFNode):
        return QuantLIFNode(neuron.tau, neuron.decay_input, *common, mem_bits=mem_bits)
    return QuantIFNode(*common, mem_bits=mem_bits)


@dataclass(frozen=True)
class ConversionRow:
    """One module of a conversion.

    Attributes:
        path: module path in the model.
        kind: ``"layer"``, ``"neuron"`` or ``"norm"`` (a BatchNorm).
        before: class name before the conversion.
        after: class name after it (the same when the module was kept).
        bits: weight bits of a quantized layer, membrane bits of a quantized neuron; ``None`` for full precision.
        shares_scale_with: for a neuron, the path of the layer whose scale :math:`\\alpha` its membrane shares.
        note: what else to know (first layer, readout, BatchNorm, excluded, ...).
    """

    path: str
    kind: str
    before: str
    after: str
    bits: int | None = None
    shares_scale_with: str | None = None
    note: str = ""


@dataclass(frozen=True)
class ConversionReport:
    """The result of :func:`~quest_lightning.convert.converter.quantize`: one row per layer, neuron and BatchNorm,
    in module order. ``str(report)`` is the table ``quantize`` prints."""

    rows: tuple[ConversionRow, ...]

    HEADER = ("module", "before → after", "bits", "shares scale with", "note")

    def to_dicts(self) -> list[dict[str, Any]]:
        """The rows as plain dicts (for JSON, a DataFrame or a logger table)."""
        return [asdict(row) for row in self.rows]

    def row(self, path: str) -> ConversionRow:
        """The row of module ``path``.

        Raises:
            KeyError: no row has that path.
        """
        for row in self.rows:
            if row.path == path:
                return row
        raise KeyError(f"no module {path!r} in the conversion report")

    def __str__(self) -> str:
        cells = [self.HEADER] + [
            (
                r.path,
                r.before if r.after == r.before else f"{r.before} → {r.after}",
                str(r.bits) if r.bits is not None else ("fp" if r.kind != "norm" else "-"),
                r.shares_scale_with or "-",
                r.note,
            )
            for r in self.rows
        ]
        widths = [max(len(c[i]) for c in cells) for i in range(len(self.HEADER) - 1)]
        lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(widths))) + "  " + c[-1] for c in cells]
        lines.insert(1, "-" * max(len(line) for line in lines))
        return "\n".join(line.rstrip() for line in lines)

    @classmethod
    def from_plan(
        cls, model: nn.Module, originals: dict[str, nn.Module], plan: _Plan, replacements: dict[str, nn.Module]
    ) -> ConversionReport:
        rows, path_of = [], {id(m): p for p, m in model.named_modules()}
        for path, role in plan.roles.items():
            old = originals[path]
            new = model.get_submodule(path)
            note = "; ".join(plan.notes.get(path, []))
            if path in plan.folded:
                note = note or f"folded into {plan.folded[path]}"
            elif old is new and not note and path not in plan.layers and path not in plan.neurons:
                note = "kept" if role == "norm" else "not supported: kept"
            bits, source = None, None
            if isinstance(new, QuantLayerMixin) and new.enabled:
                bits = new.bits
            elif isinstance(new, QuantNeuron):
                bits = new.membrane_bits if new.scale_source is not None and new.scale_source.enabled else None
                source = None if new.scale_source is None else path_of.get(id(new.scale_source))
            rows.append(ConversionRow(path, role, type(old).__name__, type(new).__name__, bits, source, note))
        return cls(tuple(rows))
