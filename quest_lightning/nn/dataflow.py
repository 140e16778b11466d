"""Which synaptic layer feeds each neuron's input current, found from the execution order.

MINT quantizes a neuron's membrane with the scale of the layer whose current it integrates. That layer is found by
running one example input through the model (:func:`trace_dataflow`): every tensor carries the set of layers its
values come from, through any torch operation (pooling, dropout, flatten, views, sums); a synaptic layer's output
starts a new set, a neuron's output (spikes) carries none, and a BatchNorm on the way is remembered. Without an
example, only an ``nn.Sequential`` tells the execution order by its module order (:func:`sequential_dataflow`).

Modules are given by path with their role: ``"layer"`` (anything with weights that produces a current),
``"neuron"`` or ``"norm"`` (a BatchNorm).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

Role = Literal["layer", "neuron", "norm"]


@dataclass(frozen=True)
class Feed:
    """One source of a neuron's (or a BatchNorm's) input: the synaptic layer, and the BatchNorms passed since.

    Attributes:
        layer: module path of the synaptic layer.
        norms: module paths of the BatchNorms between that layer and the consumer, in order.
    """

    layer: str
    norms: tuple[str, ...] = ()


@dataclass
class Dataflow:
    """What feeds what, in one model.

    Attributes:
        layer_order: the synaptic layers in the order they first ran (module order for a ``Sequential``).
        feeds: for each neuron path, the sources of its input current (empty: none was found).
        norm_feeds: for each BatchNorm path, the sources of its input.
        direct_norms: for each BatchNorm path, the layer whose output it normalises directly and alone (the only
            consumer of that output), or ``None`` when anything else stands between or shares the output.
        ran: the paths of the modules of a role that ran (all of them for a ``Sequential``).
    """

    layer_order: list[str] = field(default_factory=list)
    feeds: dict[str, frozenset[Feed]] = field(default_factory=dict)
    norm_feeds: dict[str, frozenset[Feed]] = field(default_factory=dict)
    direct_norms: dict[str, str | None] = field(default_factory=dict)
    ran: set[str] = field(default_factory=set)


class _Provenance(TorchFunctionMode):
    """Labels every tensor made by a torch operation with the union of its inputs' labels."""

    def __init__(self) -> None:
        super().__init__()
        self.labels: dict[int, frozenset[Feed]] = {}
        self.alive: list[Tensor] = []  # keeps labelled tensors alive, so that their ids are not reused
        self.layer_outputs: dict[int, str] = {}
        self.uses: defaultdict[int, int] = defaultdict(int)

    def label(self, value: Any) -> frozenset[Feed]:
        tensors = [t for t in tree_leaves(value) if isinstance(t, Tensor)]
        return frozenset().union(*(self.labels.get(id(t), frozenset()) for t in tensors))

    def set_label(self, value: Any, label: frozenset[Feed]) -> None:
        for t in tree_leaves(value):
            if isinstance(t, Tensor):
                self.labels[id(t)] = label
                self.alive.append(t)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        outputs = [t for t in tree_leaves(out) if isinstance(t, Tensor)]
        if outputs:
            inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, Tensor)]
            for t in inputs:
                if id(t) in self.layer_outputs:
                    self.uses[id(t)] += 1
            label = frozenset().union(*(self.labels.get(id(t), frozenset()) for t in inputs))
            if label:
                for t in outputs:
                    self.set_label(t, self.labels.get(id(t), frozenset()) | label)
        return out


def _first_tensor(args: tuple, kwargs: Mapping[str, Any]) -> Tensor | None:
    return next((t for t in tree_leaves((args, dict(kwargs))) if isinstance(t, Tensor)), None)


def trace_dataflow(model: nn.Module, example_input: Any, roles: Mapping[str, Role]) -> Dataflow:
    """Run ``example_input`` through ``model`` once and record what feeds each neuron and BatchNorm.

    The run is made in eval mode without gradients, and every module's state (buffers, SpikingJelly memories, other
    attributes) is restored afterwards, so the model is left as it was.

    Args:
        model: the network.
        example_input: a tensor (``model(x)``), a tuple or list (``model(*x)``) or a dict (``model(**x)``).
        roles: module path → ``"layer"``, ``"neuron"`` or ``"norm"``.

    Any exception the model raises on ``example_input`` propagates, with a note that the example input was being
    traced.
    """
    modules = dict(model.named_modules())
    flow = Dataflow()
    tracer = _Provenance()
    feeds: defaultdict[str, set[Feed]] = defaultdict(set)
    norm_feeds: defaultdict[str, set[Feed]] = defaultdict(set)
    direct: defaultdict[str, set[str | None]] = defaultdict(set)
    handles = []

    def on_layer(path: str):
        def hook(module, args, kwargs, output):
            flow.ran.add(path)
            if path not in flow.layer_order:
                flow.layer_order.append(path)
            tracer.set_label(output, frozenset({Feed(path)}))
            for t in tree_leaves(output):
                if isinstance(t, Tensor):
                    tracer.layer_outputs[id(t)] = path

        return hook

    def on_neuron_input(path: str):
        def hook(module, args, kwargs):
            flow.ran.add(path)
            feeds[path] |= tracer.label(_first_tensor(args, kwargs))

        return hook

    def on_neuron_output(module, args, kwargs, output):
        tracer.set_label(output, frozenset())  # spikes carry no scale

    def on_norm_input(path: str):
        def hook(module, args, kwargs):
            flow.ran.add(path)
            x = _first_tensor(args, kwargs)
            norm_feeds[path] |= tracer.label(x)
            direct[path].add(tracer.layer_outputs.get(id(x)))

        return hook

    def on_norm_output(path: str):
        def hook(module, args, kwargs, output):
            label = tracer.label(_first_tensor(args, kwargs))
            tracer.set_label(output, frozenset(Feed(f.layer, (*f.norms, path)) for f in label))

        return hook

    for path, role in roles.items():
        module = modules[path]
        if role == "layer":
            handles.append(module.register_forward_hook(on_layer(path), with_kwargs=True))
        elif role == "neuron":
            handles.append(module.register_forward_pre_hook(on_neuron_input(path), with_kwargs=True))
            handles.append(module.register_forward_hook(on_neuron_output, with_kwargs=True))
        else:
            handles.append(module.register_forward_pre_hook(on_norm_input(path), with_kwargs=True))
            handles.append(module.register_forward_hook(on_norm_output(path), with_kwargs=True))
    try:
        with _restored(model), torch.no_grad(), tracer:
            model.eval()
            _call(model, example_input)
    except Exception as err:
        err.add_note("(raised while running example_input through the model to find the layer feeding each neuron)")
        raise
    finally:
        for handle in handles:
            handle.remove()
    flow.feeds = {path: frozenset(feeds[path]) for path, role in roles.items() if role == "neuron"}
    flow.norm_feeds = {path: frozenset(v) for path, v in norm_feeds.items()}
    for path, layers in direct.items():
        (layer,) = layers if len(layers) == 1 else (None,)
        exclusive = all(
            tracer.uses[i] <= 1 for i, owner in tracer.layer_outputs.items() if owner == layer and layer is not None
        )
        flow.direct_norms[path] = layer if exclusive else None
    return flow


def _call(model: nn.Module, example_input: Any) -> Any:
    if isinstance(example_input, Mapping):
        return model(**example_input)
    if isinstance(example_input, tuple | list):
        return model(*example_input)
    return model(example_input)


@contextmanager
def _restored(model: nn.Module) -> Iterator[None]:
    """Put back every module's training flag, attributes, buffers and SpikingJelly memories after the block."""
    saved = []
    for module in model.modules():
        memories = module.__dict__.get("_memories")
        memories = None if memories is None else dict(memories)
        saved.append((module, dict(module.__dict__), dict(module._buffers), memories))
    try:
        yield
    finally:
        for module, attributes, buffers, memories in saved:
            for name in set(module.__dict__) - set(attributes):
                del module.__dict__[name]
            module.__dict__.update(attributes)
            module._buffers.clear()
            module._buffers.update(buffers)
            if memories is not None:
                module.__dict__["_memories"].clear()
                module.__dict__["_memories"].update(memories)


def _is_container(module: nn.Module) -> bool:
    return len(module._modules) > 0


def sequential_dataflow(model: nn.Module, roles: Mapping[str, Role]) -> Dataflow:
    """The dataflow of a model whose module order is its execution order: nested ``nn.Sequential`` s of layers,
    neurons and stateless modules.

    Raises:
        ValueError: a module holding layers or neurons is not an ``nn.Sequential`` (its ``forward`` decides the
            order, so an example input is needed); the message names it.
    """
    flow = Dataflow()
    leaves: list[str] = []

    def walk(prefix: str, module: nn.Module) -> None:
        holds_roles = any(not prefix or p.startswith(f"{prefix}.") for p in roles)
        if prefix in roles or not _is_container(module) or not holds_roles:
            leaves.append(prefix)
            return
        if not isinstance(module, nn.Sequential):
            raise ValueError(
                f"{prefix or 'the model'} ({type(module).__name__}) defines its own forward(), so its module order "
                "need not be its execution order and the layer feeding each neuron cannot be told from it. Pass one "
                "example input: quantize(model, example_input=x)."
            )
        for name, child in module.named_children():
            walk(f"{prefix}.{name}" if prefix else name, child)

    walk("", model)
    feeds: dict[str, set[Feed]] = {}
    current: Feed | None = None
    previous: str | None = None
    for path in leaves:
        role = roles.get(path)
        if role == "layer":
            flow.layer_order.append(path)
            current = Feed(path)
        elif role == "norm":
            flow.norm_feeds[path] = frozenset({current}) if current else frozenset()
            flow.direct_norms[path] = current.layer if current and previous == current.layer else None
            current = Feed(current.layer, (*current.norms, path)) if current else None
        elif role == "neuron":
            feeds[path] = {current} if current else set()
            current = None
        if role:
            flow.ran.add(path)
        previous = path
    flow.feeds = {path: frozenset(feeds.get(path, set())) for path, role in roles.items() if role == "neuron"}
    return flow
