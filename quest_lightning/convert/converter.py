"""``quantize(model, ...)``: convert an existing snnTorch or SpikingJelly network to quantized layers and neurons.

One call converts the model in place and returns it:

* synaptic layers, ``nn.Conv1d``/``nn.Conv2d``/``nn.Linear`` and SpikingJelly's ``layer.*`` wrappers of them, become
  :class:`~quest_lightning.nn.layers.QuantConv1d`/``QuantConv2d``/``QuantLinear`` with the same weight and bias
  objects, module names and step mode;
* neurons, ``snn.Leaky`` and SpikingJelly's ``IFNode``/``LIFNode``/``ParametricLIFNode``, become their adapters with
  the same configuration (learnable values stay the same parameters);
* each neuron's membrane shares the scale of the layer that feeds it (MINT), found from the execution order by
  running one example input (:mod:`~quest_lightning.nn.dataflow`), through pooling, dropout and flatten.

Nothing is changed unless everything can be: an unsupported neuron, a neuron with no (or an ambiguous) feeding
layer, or a device that cannot hold the result raises ``ValueError`` naming the module path, and leaves the model
as it was. The result is described by a :class:`~quest_lightning.convert.conversion.ConversionReport`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Literal, overload

import snntorch as snn
from spikingjelly.activation_based.functional import invalidate_reset_cache
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from quest_lightning.convert.conversion import (
    ConversionReport,
    adapter_for,
    is_library_neuron,
    layer_for,
    library_classes,
)
from quest_lightning.devices.capability import check_model
from quest_lightning.devices.io import resolve_device
from quest_lightning.functional.grid import check_bits
from quest_lightning.functional.quantize import Transform, check_transform
from quest_lightning.nn.dataflow import Dataflow, Role, sequential_dataflow, trace_dataflow
from quest_lightning.nn.fold import fold_problem
from quest_lightning.nn.layers import QuantLayerMixin
from quest_lightning.nn.neurons.base import QuantNeuron

if TYPE_CHECKING:
    from quest_lightning.devices.capability import DeviceCapability

Selector = str | type[nn.Module]


@dataclass
class _Plan:
    """What one conversion will do, worked out before anything is changed."""

    roles: dict[str, Role] = field(default_factory=dict)
    layers: dict[str, nn.Module] = field(default_factory=dict)  # layer path -> replacement (or the kept Quant layer)
    neurons: dict[str, nn.Module] = field(default_factory=dict)  # neuron path -> replacement (or the kept neuron)
    sources: dict[str, str | None] = field(default_factory=dict)  # neuron path -> layer path whose scale it shares
    folded: dict[str, str] = field(default_factory=dict)  # BatchNorm path -> layer path it is folded into
    excluded: set[str] = field(default_factory=set)  # paths left as they are (include/exclude)
    notes: dict[str, list[str]] = field(default_factory=dict)

    def note(self, path: str, text: str) -> None:
        self.notes.setdefault(path, []).append(text)


def _matches(path: str, module: nn.Module, selectors: Sequence[Selector]) -> bool:
    for selector in selectors:
        if isinstance(selector, type):
            if isinstance(module, selector):
                return True
        elif path == selector or path.startswith(f"{selector}.") or fnmatchcase(path, selector):
            return True
    return False


def _role(module: nn.Module) -> tuple[Role | None, bool]:
    """The module's role and whether ``quantize`` can convert (or keep) it."""
    layers, neurons, _ = library_classes()
    if isinstance(module, QuantLayerMixin):
        return "layer", True
    if isinstance(module, QuantNeuron):
        return "neuron", True
    if type(module) in layers:
        return "layer", True
    if isinstance(module, nn.modules.conv._ConvNd | nn.Linear | nn.Bilinear):
        return "layer", False
    if type(module) in neurons:
        return "neuron", True
    if is_library_neuron(module):
        return "neuron", False
    if isinstance(module, _BatchNorm):
        return "norm", True
    return None, False


def _check_options(bits: int, mem_bits: int | None, transform: str, share: Mapping[str, str] | None) -> None:
    check_bits(bits)
    if mem_bits is not None:
        check_bits(mem_bits, name="mem_bits")
    check_transform(transform)
    if share is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in share.items()):
        raise ValueError("share must map neuron paths to layer paths, e.g. {'layer1.0.sn2': 'layer1.0.conv2'}.")


def _classify(model: nn.Module, include, exclude) -> tuple[_Plan, dict[str, nn.Module], list[str]]:
    plan, modules, unsupported = _Plan(), dict(model.named_modules()), []
    skip_below: tuple[str, ...] = ()
    for path, module in modules.items():
        if skip_below and any(path.startswith(f"{p}.") for p in skip_below):
            continue  # the inside of a layer or neuron (a surrogate module, say) is not converted on its own
        role, supported = _role(module)
        if role is None:
            continue
        skip_below += (path,)
        plan.roles[path] = role
        wanted = (include is None or _matches(path, module, include)) and not _matches(path, module, exclude)
        if role == "neuron" and not supported and wanted:
            unsupported.append(f"{path or 'model'} ({type(module).__module__}.{type(module).__qualname__})")
        if not wanted:
            plan.excluded.add(path)
            plan.note(path, "excluded: left as it is")
        elif role == "layer" and supported:
            plan.layers[path] = module
        elif role == "neuron" and supported:
            plan.neurons[path] = module
    return plan, modules, unsupported


def _feeding_layer(path: str, flow: Dataflow, plan: _Plan, modules, share: Mapping[str, str]) -> tuple[str, str]:
    """The layer feeding neuron ``path``, or ``("", reason)`` when there is none to share a scale with."""
    if path in share:
        layer = share[path]
        if plan.roles.get(layer) != "layer":
            return "", f"share={{{path!r}: {layer!r}}} names no synaptic layer of the model"
        return layer, ""
    if path not in flow.ran:
        return "", "it did not run on the example input"
    layers = sorted({f.layer for f in flow.feeds.get(path, ())})
    if not layers:
        return "", "no synaptic layer feeds its input current (it integrates something else)"
    if len(layers) > 1:
        return "", (
            f"it integrates the currents of several layers ({', '.join(layers)}), and a membrane can share only one "
            f"scale; choose one with share={{{path!r}: {layers[0]!r}}}"
        )
    return layers[0], ""


def _plan_sources(plan: _Plan, flow: Dataflow, modules, share: Mapping[str, str], fold_bn: bool) -> list[str]:
    problems = []
    for path, neuron in plan.neurons.items():
        if isinstance(neuron, QuantNeuron) and neuron.scale_source is not None:
            continue  # already wired
        layer, reason = _feeding_layer(path, flow, plan, modules, share)
        if reason:
            problems.append(f"{path or 'model'} ({type(neuron).__name__}): {reason}")
        elif layer not in plan.layers:
            kind = type(modules[layer]).__name__
            if layer in plan.excluded:  # the membrane stays full precision
                plan.sources[path] = None
                plan.note(path, f"fed by excluded {layer} ({kind}): full-precision membrane")
            else:
                problems.append(
                    f"{path or 'model'} ({type(neuron).__name__}) is fed by {layer} ({kind}), which quantize cannot "
                    "convert (it converts exactly nn.Conv1d, nn.Conv2d, nn.Linear and SpikingJelly's layer.Conv1d/"
                    "Conv2d/Linear); exclude the neuron, or replace that layer"
                )
        else:
            plan.sources[path] = layer
            norms = [f.norms for f in flow.feeds.get(path, ()) if f.layer == layer]
            for norm in dict.fromkeys(n for chain in norms for n in chain):
                _plan_norm(plan, flow, modules, norm, layer, path, fold_bn)
    return problems


def _plan_norm(plan: _Plan, flow: Dataflow, modules, norm: str, layer: str, neuron: str, fold_bn: bool) -> None:
    problem = None if flow.direct_norms.get(norm) == layer else "it does not directly and alone follow the layer"
    problem = problem or fold_problem(modules[layer], modules[norm])
    if fold_bn and problem is None:
        plan.folded[norm] = layer
        plan.note(neuron, f"BatchNorm {norm} folded into {layer}")
        return
    hint = "fold it with fold_bn=True" if problem is None else f"it cannot be folded: {problem}"
    plan.note(neuron, f"BatchNorm {norm} between {layer} and this neuron breaks integer-only inference; {hint}")


def _enabled_layers(
    plan: _Plan, flow: Dataflow, quantize_first: bool, quantize_readout: bool, enabled: bool
) -> dict[str, bool]:
    """Whether each layer to convert is quantized: the first and the last to run stay full precision unless asked."""
    converted = {p: m for p, m in plan.layers.items() if not isinstance(m, QuantLayerMixin)}
    ran = [p for p in flow.layer_order if p in plan.layers]
    layer_on = dict.fromkeys(converted, enabled)
    ends = []
    if ran and not quantize_first:
        ends.append((ran[0], "first layer: full precision (quantize_first=False)"))
    if ran and not quantize_readout:
        ends.append((ran[-1], "readout: full precision (quantize_readout=False)"))
    for path, note in ends:
        if path in converted and enabled:
            layer_on[path] = False
            plan.note(path, note)
    for path, layer in plan.layers.items():
        if path not in converted:
            plan.note(path, f"already quantized ({'enabled' if layer.enabled else 'full precision'}): kept")
        elif path not in flow.ran:
            plan.note(path, "did not run on the example input")
    return layer_on


@overload
def quantize(
    model: nn.Module, example_input: Any = ..., *, return_report: Literal[False] = ..., **options: Any
) -> nn.Module: ...


@overload
def quantize(
    model: nn.Module, example_input: Any = ..., *, return_report: Literal[True], **options: Any
) -> tuple[nn.Module, ConversionReport]: ...


def quantize(
    model: nn.Module,
    example_input: Any = None,
    *,
    bits: int = 2,
    mem_bits: int | None = None,
    transform: Transform = "tanh",
    enabled: bool = True,
    device: DeviceCapability | str | None = None,
    quantize_first: bool = False,
    quantize_readout: bool = False,
    include: Sequence[Selector] | None = None,
    exclude: Sequence[Selector] = (),
    fold_bn: bool = False,
    share: Mapping[str, str] | None = None,
    verbose: bool = True,
    return_report: bool = False,
) -> nn.Module | tuple[nn.Module, ConversionReport]:
    """Convert ``model``'s synaptic layers and neurons in place to quantized layers and adapters, and return it.

    Args:
        model: an ``nn.Module`` built with snnTorch or SpikingJelly (or plain ``torch.nn`` layers and such neurons).
        example_input: one input for ``model`` (a tensor, a tuple of positional arguments or a dict of keyword
            arguments). It is run once, in eval mode and without gradients, to find which layer feeds each neuron
            and which layers come first and last; the model's state is restored afterwards. Without it the model
            must be an ``nn.Sequential`` (whose module order is its execution order).
        bits: weight bit width :math:`b_w` of the quantized layers (a :math:`2^b - 1`-level MINT grid).
        mem_bits: membrane bit width; ``None`` uses the feeding layer's bits (needed for integer-only inference).
        transform: MINT pre-transform of the weights, ``"tanh"`` or ``"identity"``.
        enabled: ``False`` converts every module but keeps all layers (and so all membranes) full precision: the
            converted model then computes exactly what the original does (outputs, membranes, gradients); switch a
            layer on later with ``layer.enabled = True``.
        device: a memory device (any object with ``name``, ``can_leak`` and ``num_states``, or a registered device
            name). The converted model is checked once against it by
            :func:`quest_lightning.devices.capability.check_model`: bits that do not fit and leaky neurons on a
            device that cannot leak are refused, naming the module.
        quantize_first, quantize_readout: quantize the first layer (analog input) and the last one (readout);
            by default both stay full precision (still counted in the energy accounting).
        include: convert only modules matching one of these (module paths, ``fnmatch`` patterns or module types;
            a path also selects everything below it). ``None`` converts every supported module.
        exclude: leave modules matching one of these as they are (same forms as ``include``).
        fold_bn: fold each BatchNorm that directly follows a layer into it (running statistics), so that the
            membrane stays on the layer's grid; otherwise such a BatchNorm is kept and reported.
        share: explicit ``{neuron path: layer path}`` for neurons fed by several layers (a residual sum).
        verbose: print the conversion report as a table.
        return_report: return ``(model, report)`` instead of ``model``.

    Returns:
        ``model``, converted; with ``return_report=True`` also the :class:`ConversionReport`.

    Raises:
        ValueError: bad options; no synaptic layer; an unsupported neuron class (the message names its path and the
            supported classes); a neuron whose feeding layer cannot be found or is ambiguous; an option of a neuron
            the adapters do not reproduce; no ``example_input`` for a model that is not an ``nn.Sequential``; or a
            device that cannot hold the result. The model is left unchanged.
    """
    _check_options(bits, mem_bits, transform, share)
    plan, modules, unsupported = _classify(model, include, exclude)
    if unsupported:
        supported = ", ".join(f"{c.__module__}.{c.__qualname__}" for c in library_classes()[1])
        raise ValueError(
            f"quantize cannot convert {'this neuron' if len(unsupported) == 1 else 'these neurons'}: "
            f"{'; '.join(unsupported)}. Supported neurons: {supported}. Exclude the module (exclude=[path]) to leave "
            "it as it is. Nothing was changed."
        )
    if not plan.layers:
        raise ValueError(
            f"{type(model).__name__} has no synaptic layer to quantize: quantize converts nn.Conv1d, nn.Conv2d, "
            "nn.Linear and SpikingJelly's layer.Conv1d/Conv2d/Linear (none was found, or all were excluded)."
        )
    if "" in plan.layers or "" in plan.neurons:
        raise ValueError("the model is itself one layer or neuron; wrap it in an nn.Sequential to convert it in place.")
    roles = plan.roles
    flow = sequential_dataflow(model, roles) if example_input is None else trace_dataflow(model, example_input, roles)
    problems = _plan_sources(plan, flow, modules, share or {}, fold_bn)
    layer_on = _enabled_layers(plan, flow, quantize_first, quantize_readout, enabled)
    replacements: dict[str, nn.Module] = {}
    for path, layer in plan.layers.items():
        if not isinstance(layer, QuantLayerMixin):
            folded = [norm for norm, target in plan.folded.items() if target == path]
            replacements[path] = layer_for(layer, bits, transform, layer_on[path], [modules[n] for n in folded])
    for path, neuron in plan.neurons.items():
        if not isinstance(neuron, QuantNeuron):
            try:
                replacements[path] = adapter_for(neuron, mem_bits)
            except ValueError as err:
                problems.append(f"{path} ({type(neuron).__name__}): {err}")
    if problems:
        _unregister(replacements.values())
        raise ValueError("quantize cannot convert the model:\n  " + "\n  ".join(problems) + "\nNothing was changed.")
    replacements.update({norm: nn.Identity() for norm in plan.folded})
    undo = _swap(model, {modules[p]: new for p, new in replacements.items()})
    try:
        for path, source in plan.sources.items():
            if source is not None:
                model.get_submodule(path).share_scale_with(model.get_submodule(source))
        if device is not None:
            _check_device(model, device)
    except Exception:
        for parent, name, old in reversed(undo):
            setattr(parent, name, old)
        _unregister(replacements.values())
        raise
    _unregister(modules[p] for p in replacements)
    _invalidate_reset_caches(model)
    report = ConversionReport.from_plan(model, modules, plan, replacements)
    if verbose:
        print(report)
    return (model, report) if return_report else model


def _swap(model: nn.Module, new_for: dict[nn.Module, nn.Module]) -> list[tuple[nn.Module, str, nn.Module]]:
    """Put each replacement wherever its original is registered (also twice); returns what to put back."""
    undo = []
    for parent in list(model.modules()):
        for name, child in list(parent._modules.items()):
            if child in new_for:
                new = new_for[child]
                new.train(child.training)
                setattr(parent, name, new)
                undo.append((parent, name, child))
    return undo


def _check_device(model: nn.Module, device: DeviceCapability | str) -> None:
    check_model(model, resolve_device(device) if isinstance(device, str) else device)


def _unregister(neurons: Iterable[nn.Module]) -> None:
    """Drop neurons from snnTorch's instance registry (the replaced originals, or the adapters of a failed call),
    so that ``snntorch.utils.reset`` no longer walks them."""
    gone = {id(m) for m in neurons}
    snn.SpikingNeuron.instances[:] = [n for n in snn.SpikingNeuron.instances if id(n) not in gone]


def _invalidate_reset_caches(model: nn.Module) -> None:
    """SpikingJelly's ``reset_net`` caches the modules to reset per network: forget them for every sub-network."""
    for module in model.modules():
        invalidate_reset_cache(module)
