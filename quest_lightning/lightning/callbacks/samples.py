"""Where the callbacks' samples and time steps come from: the inputs the synaptic layers meet.

Lightning's batch-size guess (the first dimension of the batch's first tensor) is wrong for a time-major batch
``[T, B, ...]``, and for any batch the model reshapes. The callbacks read instead what every synaptic layer is
called with, through a forward pre-hook that keeps three Python ints per layer (no tensor operation, no host
synchronisation): the rows it met (time steps × samples), the time steps (the time axis of a multi-step call, or 1
per call of a single-step loop) and the calls. Per batch, a layer's samples are its rows over its time steps, and the
batch's samples are the fewest any layer met (a layer applied to ``N`` vectors per sample meets ``N`` times as many).
The layout rule is the layers' own (:meth:`~quest_lightning.nn.layer_input.LayerInputMixin.is_multi_step`).

The same hooks give what the layers' recording cannot: the recording of a synaptic layer that is not
quest-lightning's (a plain ``nn.Conv2d``, ``nn.Conv1d`` or ``nn.Linear``, counted as a full-precision layer with the
layers' own :meth:`~quest_lightning.nn.layer_input.LayerInputMixin.record_input`), the order in which the network calls
its layers, and, on a batch that ends with padded samples (DDP), the recording of the real samples only (the
neurons' too).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DistributedSampler

from quest_lightning.metrics import LayerGeometry
from quest_lightning.nn.inspect import spiking_neurons, synaptic_layers, without_padding
from quest_lightning.nn.layer_input import INPUT_KINDS
from quest_lightning.nn.layers import QuantLayerMixin
from quest_lightning.summary import SkippedLayer

__all__ = ["ForeignRecording", "LayerTaps", "loader_of", "loader_padding", "loaders_of", "padding_note"]

_SYNAPTIC = (nn.modules.conv._ConvNd, nn.Linear, nn.Bilinear)


class ForeignRecording(QuantLayerMixin):
    """The recording of a synaptic layer that is not quest-lightning's: a plain ``nn.Conv2d``, ``nn.Conv1d`` or
    ``nn.Linear`` (SpikingJelly's ``layer.Conv2d`` too), recorded by the layers' own
    :meth:`~quest_lightning.nn.layer_input.LayerInputMixin.record_input` (same counts, same layout rule: the wrapped
    layer's ``step_mode`` when it has one). Its ``input_kind`` is the layer's ``input_kind`` attribute, when the user
    sets one (``"auto"``, ``"spikes"`` or ``"analog"``)."""

    enabled = False  # a full-precision layer (the property of the mixin is not used)
    _input_step_mode = "s"

    def __init__(self, layer: nn.Module) -> None:
        self._layer = weakref.ref(layer)
        self.feature_dims = LayerGeometry.of(layer).feature_dims  # type: ignore[misc]
        self.record = False
        self.input_counts = torch.zeros(0, dtype=torch.float64)
        self.nonbinary_inputs = torch.zeros((), dtype=torch.int64)
        self.nonzero_counts = torch.zeros(0, dtype=torch.float64)
        self.recorded_rows = self.recorded_calls = self.recorded_steps = 0

    @property
    def _step_mode(self) -> str | None:  # type: ignore[override]
        """The wrapped layer's declared ``step_mode`` (SpikingJelly's ``layer.*``), else ``None`` (by the rank)."""
        mode = getattr(self._layer(), "step_mode", None)
        return mode if mode in ("s", "m") else None

    @property
    def input_kind(self) -> str:  # type: ignore[override]
        kind = getattr(self._layer(), "input_kind", "auto")
        if kind not in INPUT_KINDS:
            raise ValueError(f"input_kind={kind!r} of a {type(self._layer()).__name__} is unknown: use {INPUT_KINDS}.")
        return kind


@dataclass
class Tap:
    """The hooks' record of one module: Python ints since the taps were made."""

    name: str
    module: nn.Module
    recording: Any  # the layer itself, or a ForeignRecording
    feature_dims: int
    rows: int = 0
    steps: int = 0
    calls: int = 0
    order: int | None = None  # the rank of its first call
    restore: bool = False  # recording was switched off for this call (padded samples), to switch on after it
    marks: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def multi_step(self, x: Tensor) -> bool:
        return self.recording.is_multi_step(x)

    def since(self, mark: str) -> tuple[int, int, int]:
        """Rows, steps and calls since :meth:`LayerTaps.mark` ``mark``."""
        rows, steps, calls = self.marks.get(mark, (0, 0, 0))
        return self.rows - rows, self.steps - steps, self.calls - calls


class LayerTaps:
    """Forward hooks on every synaptic layer and neuron of a model (see the module docstring).

    Attributes:
        layers: ``{name: Tap}`` of the synaptic layers the operation counts cover (quest-lightning's and plain ones).
        skipped: Synaptic layers the operation count does not model, with the reason.
        exclude: Padded samples at the end of the batch in flight, left out of every recording (0: none): the layers
            record the real samples only, and so do the neurons (whose recording of a call is narrowed to them).
    """

    def __init__(self, model: nn.Module) -> None:
        ours = dict(synaptic_layers(model))
        self.layers: dict[str, Tap] = {}
        self.neurons = [n for _, n in spiking_neurons(model)]
        self.skipped: list[SkippedLayer] = []
        for name, m in model.named_modules():
            if name in ours:
                self.layers[name] = Tap(name, m, m, m.feature_dims)
            elif isinstance(m, _SYNAPTIC):
                try:
                    recording = ForeignRecording(m)
                except (TypeError, ValueError) as err:
                    reason = f"not counted: {err}"
                    self.skipped.append(SkippedLayer(name, type(m).__name__, reason))
                    continue
                self.layers[name] = Tap(name, m, recording, recording.feature_dims)
        self._exclude, self.batch = 0, None
        self._calls = 0
        self._handles = []
        for tap in self.layers.values():
            self._handles.append(tap.module.register_forward_pre_hook(_Hook(self, tap, "_layer_pre")))
            self._handles.append(tap.module.register_forward_hook(_Hook(self, tap, "_layer_post")))

    def remove(self) -> None:
        """Take the hooks off the model."""
        self.exclude = 0
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @property
    def exclude(self) -> int:
        return self._exclude

    @exclude.setter
    def exclude(self, padded: int) -> None:
        """Leave the last ``padded`` samples of every call out of the recordings (0: record everything). A neuron
        may be called outside its ``forward`` (``neuron.multi_step``), where no hook sees it, so its recording of a
        call is narrowed to the real samples instead, for the batch in flight."""
        self._exclude, self.batch = int(padded), None
        for neuron in self.neurons:
            if padded:
                neuron._record = _RealSamples(self, neuron, padded)
            else:
                neuron.__dict__.pop("_record", None)

    @property
    def foreign(self) -> list[ForeignRecording]:
        """The recordings the taps keep for layers that are not quest-lightning's."""
        return [t.recording for t in self.layers.values() if isinstance(t.recording, ForeignRecording)]

    def order(self, names: list[str]) -> list[str]:
        """``names`` in the order the network first called them (never-called ones last, in module order)."""
        rank = {n: self.layers[n].order if n in self.layers and self.layers[n].order is not None else math.inf
                for n in names}  # fmt: skip
        return sorted(names, key=lambda n: rank[n])

    # --- marks and samples ------------------------------------------------------------------------------------------
    def mark(self, key: str) -> None:
        """Remember every layer's rows, steps and calls as ``key`` (e.g. at a batch's start)."""
        for tap in self.layers.values():
            tap.marks[key] = (tap.rows, tap.steps, tap.calls)

    def ran(self, name: str, mark: str) -> bool:
        """Whether layer ``name`` was called since mark ``mark``."""
        return self.layers[name].since(mark)[2] > 0

    def samples(self, mark: str) -> int:
        """The samples the network met since mark ``mark`` (one batch): the fewest any layer met, each layer's being
        its rows over its time steps. 0 when no layer ran.

        Raises:
            ValueError: A layer's rows are not a whole number of samples per time step (its input's batch size
                changed within the batch); the message names the layer.
        """
        found = []
        for tap in self.layers.values():
            rows, steps, _ = tap.since(mark)
            if steps == 0:
                continue
            if rows % steps:
                raise ValueError(
                    f"layer {tap.name!r} met {rows} rows over {steps} time steps in one batch: not a whole number of "
                    "samples per step. Its input's batch size changed within the batch; give every call of a layer "
                    "the same samples (time-major [T, B, ...] or [B, ...] per step)."
                )
            found.append(rows // steps)
        return min(found, default=0)

    # --- hooks ------------------------------------------------------------------------------------------------------
    def _layer_pre(self, tap: Tap, x: Tensor) -> None:
        lead = x.dim() - tap.feature_dims
        multi = tap.multi_step(x)
        rows, steps = math.prod(x.shape[:lead]), (x.shape[0] if lead >= 1 else 1) if multi else 1
        pad = self.exclude
        if pad:
            x, batch = without_padding(x, lead, multi, pad, tap.name)
            rows, steps = rows // batch * (batch - pad), steps if batch > pad else 0
            self.batch = batch
        tap.rows += rows
        tap.steps += steps
        tap.calls += 1
        if tap.order is None:
            tap.order, self._calls = self._calls, self._calls + 1
        rec = tap.recording
        if isinstance(rec, ForeignRecording):
            if rec.record and rows:
                rec.record_input(x)
        elif pad and rec.record:  # record the real samples here, and not the whole input in the forward
            if rows:
                rec.record_input(x)
            rec.record, tap.restore = False, True

    def _layer_post(self, tap: Tap, output: Any) -> None:
        if tap.restore:
            tap.recording.record, tap.restore = True, False


class _RealSamples:
    """A neuron's recording of one call, narrowed to the real samples: its spikes are ``[B, ...]`` (one step,
    ``rows == B``) or ``[T, B, ...]`` (``rows == T·B``), and the last ``padded`` samples of ``B`` are left out. ``B``
    is the batch the layers met in this batch (a ``[T, 1, ...]`` scan also has ``rows == spikes.shape[0]``)."""

    def __init__(self, taps: LayerTaps, neuron: nn.Module, padded: int) -> None:
        self.taps, self.neuron, self.padded = weakref.ref(taps), weakref.ref(neuron), padded

    def __call__(self, spikes: Tensor, rows: int) -> None:
        neuron, taps = self.neuron(), self.taps()
        batch = taps.batch if taps is not None and taps.batch is not None else rows
        axis = 0 if rows == spikes.shape[0] == batch else 1
        batch = spikes.shape[axis]
        if batch > self.padded:
            real = spikes.narrow(axis, 0, batch - self.padded)
            type(neuron)._record(neuron, real, rows // batch * (batch - self.padded))


class _Hook:
    """A forward (pre-)hook that calls ``LayerTaps.{method}(tap, input or output)``. It holds the taps and the module
    weakly, and ignores a copy of the module (``copy.deepcopy`` of a model copies its hooks)."""

    def __init__(self, taps: LayerTaps, tap: Tap, method: str) -> None:
        self.taps, self.module, self.tap, self.method = weakref.ref(taps), weakref.ref(tap.module), tap, method

    def __call__(self, module: nn.Module, args: Any, output: Any = None) -> None:
        taps = self.taps()
        if taps is None or module is not self.module():
            return None
        if self.method == "_layer_post":
            taps._layer_post(self.tap, output)
        elif args and isinstance(args[0], Tensor):
            taps._layer_pre(self.tap, args[0])
        return None

    def __deepcopy__(self, memo: dict) -> _Hook:
        return self  # the copy's calls are ignored (the module check above)

    def __getstate__(self) -> dict[str, Any]:
        return {"method": self.method}  # a pickled model keeps a hook that does nothing

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.method, self.tap = state["method"], None
        self.taps = self.module = lambda: None


# --- padded samples -------------------------------------------------------------------------------------------------
def loaders_of(trainer: Any, stage: str) -> list[Any]:
    """The train, val or test dataloaders in use, in order (empty when there are none)."""
    loaders = {"train": "train_dataloader", "val": "val_dataloaders", "test": "test_dataloaders"}[stage]
    loaders = getattr(trainer, loaders)
    if loaders is None:
        return []
    if isinstance(loaders, dict):
        return list(loaders.values())
    return list(loaders) if isinstance(loaders, (list, tuple)) else [loaders]


def loader_of(trainer: Any, stage: str, dataloader_idx: int = 0) -> Any:
    """The train, val or test dataloader ``dataloader_idx`` in use (``None`` when there is none)."""
    loaders = loaders_of(trainer, stage)
    return loaders[dataloader_idx] if dataloader_idx < len(loaders) else None


def loader_padding(loader: Any, batch_idx: int) -> int:
    """The padded samples at the end of batch ``batch_idx``: ``loader.padded_in_batch(batch_idx)`` when the loader
    has it (as :class:`~quest_lightning.lightning.data.loader.DeviceBatchLoader` does), else the loader's ``padding``
    (samples padded on this rank in this epoch, appended at the end of the epoch's last batch) on its last batch,
    else 0."""
    per_batch = getattr(loader, "padded_in_batch", None)
    if callable(per_batch):
        try:
            return int(per_batch(batch_idx))
        except IndexError:
            return 0
    padding = int(getattr(loader, "padding", 0) or 0)
    if not padding:
        return 0
    try:
        last = len(loader) - 1
    except TypeError:
        return 0  # no length: the last batch cannot be told (padding_note says so)
    return padding if batch_idx == last else 0


def padding_note(loader: Any, world_size: int, stage: str) -> str | None:
    """Why the counts include padded samples, or ``None``: a loader without ``padding`` whose DDP sampler pads
    (``len(dataset) % world_size != 0`` and no ``drop_last``), or one with ``padding`` but no length."""
    if loader is None or callable(getattr(loader, "padded_in_batch", None)):
        return None
    if getattr(loader, "padding", None) is not None:
        try:
            len(loader)
        except TypeError:
            return f"the {stage} loader reports padding but has no length: its last batch cannot be told"
        return None
    dataset = getattr(loader, "dataset", None)
    try:
        n = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        return None
    sampler = getattr(loader, "sampler", None)
    if world_size <= 1 or n % world_size == 0 or getattr(sampler, "drop_last", False):
        return None
    padded = math.ceil(n / world_size) * world_size - n
    what = "DistributedSampler" if isinstance(sampler, DistributedSampler) else "sampler"
    return (
        f"the {stage} {what} pads the {n} samples to {n + padded} over {world_size} ranks by repeating {padded}; the "
        f"{stage} counts include them. Give the loader a `padding` attribute (the padded samples on this rank) or use "
        "drop_last to count only real samples"
    )
