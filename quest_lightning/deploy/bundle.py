"""The deployment bundle: a trained network as integers, with the map that programs it into a device array.

:func:`export` writes a folder::

    manifest.json                  schema version, run, input, grid, device, R-S pattern, the layer graph
    weights.safetensors            per quantized layer: int8 codes and alpha; per float layer: float32 weights;
                                   biases; per integer neuron: thresholds and requantization boundaries (int64)
    programming_map.safetensors    per quantized layer: the device state of every weight (uint8, shaped like it)

The programming map is what a device engineer loads: weight :math:`k` with code :math:`\\hat w_k` is programmed to
state :math:`p(\\hat w_k + Q)` of the chosen pattern :math:`p` (level index :math:`v = c + Q`, most negative code
first, as everywhere in quest-lightning). :meth:`Bundle.codes_from_states` maps it back.

:func:`load_bundle` reads a bundle back and checks its schema and file hashes;
:class:`~quest_lightning.deploy.runner.IntegerRunner` runs it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from quest_lightning.deploy.compile import compile_neuron
from quest_lightning.deploy.graph import (
    PlannedStage,
    infer_input_shape,
    plan,
    pool_geometry,
    synapse_geometry,
    unwrap,
)
from quest_lightning.deploy.programming import codes_from_states, programming_map, resolve_pattern
from quest_lightning.devices.io import device_to_dict, resolve_device
from quest_lightning.devices.patterns import format_mapping
from quest_lightning.devices.spec import DeviceSpec
from quest_lightning.functional.grid import num_levels, qmax
from quest_lightning.functional.surrogate import fires_at_threshold
from quest_lightning.metrics.geometry import LayerGeometry
from quest_lightning.nn.layers import QuantLayerMixin
from quest_lightning.nn.neurons.base import QuantNeuron

__all__ = ["BUNDLE_FORMAT", "SCHEMA_VERSION", "Bundle", "export", "file_sha256", "load_bundle"]

BUNDLE_FORMAT = "quest-lightning/deploy-bundle"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
PROGRAMMING_MAP = "programming_map.safetensors"
_FILES = (MANIFEST, WEIGHTS, PROGRAMMING_MAP)


@dataclass(frozen=True)
class Bundle:
    """A deployment bundle in memory.

    Attributes:
        manifest: The parsed ``manifest.json``.
        tensors: The contents of ``weights.safetensors`` by key (see the manifest's ``tensors`` entries).
        state_maps: The programming map: per quantized layer, the ``uint8`` device state of every weight.
        path: The folder it was written to or read from.
    """

    manifest: dict[str, Any]
    tensors: dict[str, Tensor] = field(repr=False)
    state_maps: dict[str, Tensor] = field(repr=False)
    path: Path | None = None

    @property
    def graph(self) -> list[dict[str, Any]]:
        """The stages in execution order (the manifest's ``graph``)."""
        return self.manifest["graph"]

    @property
    def pattern_states(self) -> tuple[int, ...]:
        """The R-S pattern: the device state of each level, most negative code first."""
        return tuple(self.manifest["pattern"]["states"])

    def stage(self, name: str) -> dict[str, Any]:
        """The graph entry called ``name``.

        Raises:
            KeyError: No stage has that name; the message lists the names.
        """
        for entry in self.graph:
            if entry["name"] == name:
                return entry
        raise KeyError(f"no stage {name!r} in the bundle; stages: {[e['name'] for e in self.graph]}")

    def codes(self, layer: str) -> Tensor:
        """The ``int8`` weight codes of quantized layer ``layer``."""
        return self.tensors[self.stage(layer)["tensors"]["codes"]]

    def codes_from_states(self, layer: str) -> Tensor:
        """The codes that the programming map of ``layer`` stands for, mapped back through the pattern."""
        return codes_from_states(self.state_maps[layer], self.pattern_states)

    def quantized_layers(self) -> list[str]:
        """Names of the layers with integer codes, in order."""
        return [e["name"] for e in self.graph if e.get("quantized")]


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, hex."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _out_shape(entry: dict[str, Any], shape: tuple[int, ...]) -> tuple[int, ...]:
    op = entry["op"]
    if op == "conv2d":
        layer = entry["_module"]
        return (layer.out_channels, *LayerGeometry.of(layer).output_size(shape[-2], shape[-1]))
    if op == "linear":
        return (entry["out_features"],)
    if op in ("maxpool2d", "avgpool2d"):
        (kh, kw), (sh, sw), (ph, pw) = entry["kernel_size"], entry["stride"], entry["padding"]
        return (shape[0], (shape[1] + 2 * ph - kh) // sh + 1, (shape[2] + 2 * pw - kw) // sw + 1)
    if op == "flatten":
        return (math.prod(shape),)
    return shape


def _f32(value: Tensor | float) -> float:
    """A float32 value as the Python float that represents it exactly (JSON round-trips it bit for bit)."""
    return float(torch.as_tensor(value, dtype=torch.float32))


def _synapse_entry(p: PlannedStage, tensors: dict[str, Tensor], maps: dict[str, Tensor], states) -> dict[str, Any]:
    layer = p.module
    assert isinstance(layer, QuantLayerMixin)
    entry: dict[str, Any] = {"name": p.name, **synapse_geometry(layer), "_module": layer}
    entry.update(arithmetic=p.arithmetic, spiking_input=p.spiking_input, readout=p.readout, quantized=layer.enabled)
    keys: dict[str, str] = {}
    if layer.enabled:
        codes = layer.current_codes().detach().cpu().contiguous()
        keys["codes"], keys["alpha"] = f"{p.name}.codes", f"{p.name}.alpha"
        tensors[keys["codes"]] = codes
        tensors[keys["alpha"]] = layer.alpha.detach().to(torch.float32).cpu().reshape(()).clone()
        maps[p.name] = programming_map(codes, states).contiguous()
        entry.update(
            bits=layer.bits,
            qmax=layer.qmax,
            transform=layer.transform,
            alpha=_f32(layer.alpha.detach()),
            step=_f32(layer.alpha.detach().to(torch.float32) / layer.qmax),
        )
    else:
        keys["weight"] = f"{p.name}.weight"
        tensors[keys["weight"]] = layer.weight.detach().to(torch.float32).cpu().clone()
    if layer.bias is not None:
        keys["bias"] = f"{p.name}.bias"
        tensors[keys["bias"]] = layer.bias.detach().to(torch.float32).cpu().clone()
        entry["bias"] = (
            "float32, folded into the next neuron's per-channel integer thresholds and boundaries"
            if p.arithmetic == "integer"
            else "float32, added to the float32 currents"
        )
    else:
        entry["bias"] = None
    entry["tensors"] = keys
    return entry


def _neuron_entry(p: PlannedStage, tensors: dict[str, Tensor]) -> dict[str, Any]:
    n = p.module
    assert isinstance(n, QuantNeuron) and p.source is not None
    params = n.params
    entry: dict[str, Any] = {
        "name": p.name,
        "op": "neuron",
        "model": "LIF" if params.leaky else "IF",
        "arithmetic": p.arithmetic,
        "decay": params.decay,
        "threshold": _f32(params.threshold),
        "reset": params.reset,
        "reset_amount": _f32(params.reset_amount),
        "fire": ">=" if fires_at_threshold(n.spike_fn) else ">",
        "membrane_bits": n.membrane_bits,
        "source": p.source.name,
    }
    keys: dict[str, str] = {}
    quant = n.membrane_quantizer()
    if quant is None:
        entry["membrane"] = None
    else:
        keys["membrane_alpha"] = f"{p.name}.membrane_alpha"
        tensors[keys["membrane_alpha"]] = quant.alpha.detach().to(torch.float32).cpu().reshape(()).clone()
        entry["membrane"] = {"alpha": _f32(quant.alpha.detach()), "bits": quant.bits, "transform": quant.transform}
    if p.arithmetic == "integer":
        layer = p.source.module
        assert isinstance(layer, QuantLayerMixin)
        prog = compile_neuron(n, layer)
        for key in ("threshold_int", "bounds_no_spike", "bounds_spike"):
            keys[key] = f"{p.name}.{key}"
            tensors[keys[key]] = getattr(prog, key).contiguous()
        entry["per_channel"] = prog.per_channel
        if not prog.per_channel:
            entry["threshold_int"] = int(prog.threshold_int[0])
            entry["bounds_no_spike"] = prog.bounds_no_spike[0].tolist()
            entry["bounds_spike"] = prog.bounds_spike[0].tolist()
    entry["tensors"] = keys
    return entry


def check_out_dir(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory; give a new or empty directory for the bundle.")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise FileExistsError(
            f"{out} exists and is not empty; give a new or empty directory, or pass force=True (--force) to write "
            f"the bundle files ({', '.join(_FILES)}) into it, replacing those of the same name."
        )


def export(
    model: nn.Module,
    out_dir: str | os.PathLike[str],
    *,
    device: DeviceSpec | str | Mapping[str, Any],
    pattern: int | Sequence[int],
    run: Mapping[str, Any] | None = None,
    force: bool = False,
    input_shape: Sequence[int] | None = None,
    timesteps: int | None = None,
) -> Bundle:
    """Write the deployment bundle of a trained quest-lightning network to ``out_dir``.

    Args:
        model: The network, or a ``QuestModule`` holding it (its ``timesteps`` and encoder are then recorded).
        out_dir: A new or empty folder.
        device: The memory device (a :class:`~quest_lightning.devices.spec.DeviceSpec`, a registered name, a dict
            or a YAML path).
        pattern: The R-S pattern, by index (in :func:`~quest_lightning.devices.patterns.enumerate_patterns` order
            over all the device's states) or by its states, one per level from the most negative code up.
        run: What the network came from (checkpoint, run folder, hyperparameters); stored in the manifest as given
            (JSON-safe values).
        force: Write into a non-empty ``out_dir``, replacing the bundle's own files there.
        input_shape: The per-sample input shape; read off a ``SpikingVGG`` when omitted.
        timesteps: The number of time steps :math:`T` (default: the module's ``timesteps``).

    Returns:
        The written :class:`Bundle`.

    Raises:
        NotDeployableError: The network cannot be represented (see :func:`~quest_lightning.deploy.graph.plan`).
        FileExistsError: ``out_dir`` is not empty and ``force`` is false.
        ValueError: A bad device or pattern.
    """
    from safetensors.torch import save_file

    from quest_lightning import __version__

    out = Path(out_dir)
    check_out_dir(out, force)
    net = unwrap(model)
    encoder = getattr(model, "encoder", None)
    encoder_name = type(encoder).__name__.removesuffix("Encoder").lower() if encoder is not None else "direct"
    steps = timesteps if timesteps is not None else getattr(model, "timesteps", None)
    planned = plan(net, input_spikes=encoder_name in ("rate", "latency"))
    shape = tuple(int(s) for s in (input_shape or infer_input_shape(net)))
    bits = next(p.module.bits for p in planned if p.kind == "synapse" and p.module.enabled)
    spec = resolve_device(device)
    index, states = resolve_pattern(spec, bits, pattern)

    tensors: dict[str, Tensor] = {}
    maps: dict[str, Tensor] = {}
    graph: list[dict[str, Any]] = []
    for p in planned:
        if p.kind == "synapse":
            entry = _synapse_entry(p, tensors, maps, states)
        elif p.kind == "neuron":
            entry = _neuron_entry(p, tensors)
        elif p.kind == "pool":
            entry = {"name": p.name, **pool_geometry(p.module), "arithmetic": p.arithmetic}
        else:
            entry = {"name": p.name, "op": "flatten", "arithmetic": p.arithmetic}
        graph.append(entry)
    current = shape
    for entry in graph:
        entry["in_shape"] = list(current)
        current = _out_shape(entry, current)
        entry["out_shape"] = list(current)
        entry.pop("_module", None)

    out.mkdir(parents=True, exist_ok=True)
    meta = {"format": BUNDLE_FORMAT, "schema_version": str(SCHEMA_VERSION)}
    save_file(tensors, str(out / WEIGHTS), metadata=meta)
    save_file(maps, str(out / PROGRAMMING_MAP), metadata=meta)
    q = qmax(bits)
    manifest: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "created_by": f"quest-lightning {__version__}",
        "run": dict(run) if run is not None else None,
        "input": {"shape": list(shape), "timesteps": steps, "encoder": encoder_name},
        "grid": {
            "bits": bits,
            "qmax": q,
            "levels": num_levels(bits),
            "codes": "w_hat in -Q..Q; the weight is w_hat * alpha / Q",
            "level_index": "v = code + Q (most negative code first)",
        },
        "device": {"name": spec.name, "num_states": spec.num_states, "spec": device_to_dict(spec)},
        "pattern": {"index": index, "states": list(states), "label": format_mapping(states)},
        "programming_map": (
            "per quantized layer, the device state (uint8) of every weight, shaped like the weight: states[code + Q]"
        ),
        "integer_path": (
            "integer synapses sum the int8 codes of the weights that meet an input spike; integer neurons fire "
            "when the accumulator m = u + current reaches threshold_int and carry -Q + #{k: m >= bounds[k]} "
            "(bounds_spike after a soft reset; 0 after a hard reset)"
        ),
        "output": {
            "stage": graph[-1]["name"],
            "decision": "argmax over classes of the readout summed (integer) or averaged (float32) over T",
        },
        "graph": graph,
        "files": {WEIGHTS: file_sha256(out / WEIGHTS), PROGRAMMING_MAP: file_sha256(out / PROGRAMMING_MAP)},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return Bundle(manifest=manifest, tensors=tensors, state_maps=maps, path=out)


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Read a bundle written by :func:`export`, checking its format, schema version and file hashes.

    Raises:
        FileNotFoundError: The folder or one of its files is missing (the message names it).
        ValueError: Not a quest-lightning bundle, an unsupported schema version, or a file whose hash differs
            from the manifest's.
    """
    from safetensors.torch import load_file

    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"no bundle folder at {root}")
    for name in _FILES:
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root / name} is missing: a bundle holds {', '.join(_FILES)}")
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{root / MANIFEST} is not valid JSON: {err}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"{root / MANIFEST} is not a quest-lightning deployment bundle (format {BUNDLE_FORMAT!r})")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"{root} has schema version {manifest.get('schema_version')!r}; this quest-lightning reads version "
            f"{SCHEMA_VERSION}. Export the bundle again with this version."
        )
    for name, digest in manifest["files"].items():
        if file_sha256(root / name) != digest:
            raise ValueError(f"{root / name} does not match the hash in the manifest: the file was changed")
    return Bundle(manifest, load_file(str(root / WEIGHTS)), load_file(str(root / PROGRAMMING_MAP)), root)
