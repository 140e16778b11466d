"""``QuestVGG``: a :class:`QuestModule` whose spiking VGG and device are given by plain values, for LightningCLI
configs and recipes; and :class:`VGGConfig`, the typed description of that network.

A YAML config reads like the paper's setup::

    model:
      network: {arch: vgg6, bits: 2, neuron: if, reset: hard}   # VGGConfig
      device: skmtj7
      timesteps: 4                                             # QuestModule's training arguments
      lr: 0.001

and ``--model.network.bits 3`` or ``--model.lr 0.01`` override single values. Impossible combinations (LIF on a
device that cannot leak, bits the device cannot hold, an unknown device or architecture) fail at construction,
before any data is loaded, with the config key in the message.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from quest_lightning.devices import DeviceSpec, check_bits_fit, check_leak_allowed, check_model, resolve_device
from quest_lightning.lightning.module import QuestModule
from quest_lightning.nn.vgg import VGG_CONFIGS, SpikingVGG, spiking_vgg

__all__ = ["QuestVGG", "VGGConfig"]


@dataclass(frozen=True)
class VGGConfig:
    """A spiking VGG by name and options: the arguments of :func:`~quest_lightning.nn.spiking_vgg`, as one value.

    ``VGGConfig(bits=3).build()`` is ``spiking_vgg("vgg6", bits=3)``; :class:`QuestVGG` takes one as ``network``.
    The options are checked by :class:`~quest_lightning.nn.SpikingVGG` when the network is built.

    Attributes:
        arch: ``"vgg6"`` (the paper's), ``"vgg9"``, ``"vgg11"`` or ``"vgg16"``.
        bits: weight (and membrane) bit width :math:`b`; the grid has :math:`2^b - 1` levels.
        neuron: ``"if"`` (integrate-and-fire) or ``"lif"`` (leaky).
        reset: ``"hard"`` (to zero) or ``"soft"`` (subtract the threshold).
        backend: neuron back-end: ``"spikingjelly"``, ``"snntorch"`` or any name registered with
            :func:`~quest_lightning.nn.neurons.registry.register_backend`.
        threshold: firing threshold :math:`\\theta` (in units of the layer's scale-free membrane).
        decay: LIF leak :math:`\\lambda \\in (0, 1)`; ignored by IF neurons.
        surrogate: surrogate-gradient name, e.g. ``"triangle"``, ``"sj.Sigmoid"``, ``"snntorch.atan"``.
        detach_reset: stop the gradient through the reset.
        transform: MINT pre-transform of the weights, ``"tanh"`` or ``"identity"``.
        alpha_init: initial scale :math:`\\alpha_0`: ``"mint"`` (MINT's :math:`2\\overline{|W|}/\\sqrt{Q_b}`, the
            default) or ``"range"`` (a high percentile of :math:`|T(W)|`; see ``docs/quantization.md``).
        pool: ``"max"`` (keeps spikes binary) or ``"avg"``.
        batch_norm: BatchNorm after each convolution.
        dropout: time-shared dropout probability on the hidden fully connected spikes (0 disables).
        quantize_first: quantize the first (analog-input) convolution.
        quantize_readout: quantize the readout layer.
        quantize: ``False`` gives the full-precision (FP32) network of the same structure, for baselines.
        num_classes: number of classes (readout width).
        image_size: input height and width, in pixels.
        in_channels: input channels.
    """

    arch: str = "vgg6"
    bits: int = 2
    neuron: Literal["if", "lif"] = "if"
    reset: Literal["hard", "soft"] = "hard"
    backend: str = "spikingjelly"
    threshold: float = 0.5
    decay: float = 0.5
    surrogate: str = "triangle"
    detach_reset: bool = False
    transform: Literal["tanh", "identity"] = "tanh"
    alpha_init: Literal["mint", "range"] = "mint"
    pool: Literal["max", "avg"] = "max"
    batch_norm: bool = False
    dropout: float = 0.0
    quantize_first: bool = False
    quantize_readout: bool = False
    quantize: bool = True
    num_classes: int = 10
    image_size: int = 32
    in_channels: int = 3

    def __post_init__(self) -> None:
        if self.arch not in VGG_CONFIGS:
            raise ValueError(f"arch={self.arch!r} is unknown: use one of {sorted(VGG_CONFIGS)}.")

    @classmethod
    def from_value(cls, value: VGGConfig | Mapping[str, Any] | None) -> VGGConfig:
        """``value`` itself, a config from a mapping of its fields (as a checkpoint stores it), or the default.

        Raises:
            ValueError: If the mapping has keys that are not fields, naming them and the fields.
        """
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(f"network must be a VGGConfig or a mapping of its fields, not {type(value).__name__}")
        unknown = sorted(set(value) - set(cls.field_names()))
        if unknown:
            raise ValueError(f"unknown network option(s) {unknown}: the options are {list(cls.field_names())}.")
        return cls(**value)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The names of the options, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def options(self) -> dict[str, Any]:
        """The keyword arguments of :class:`~quest_lightning.nn.SpikingVGG` (every field but ``arch``)."""
        return {name: getattr(self, name) for name in self.field_names() if name != "arch"}

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain values (what a checkpoint's hyperparameters hold)."""
        return dataclasses.asdict(self)

    def build(self) -> SpikingVGG:
        """The network: ``spiking_vgg(arch, **options())``."""
        return spiking_vgg(self.arch, **self.options())


_DEFAULT_NETWORK = VGGConfig()
_NAMED_VALUE = re.compile(r"^(\w+)=")


def _config_key(message: str) -> str:
    """The config key a network error is about: ``model.network.<option>`` when the message starts with a field."""
    match = _NAMED_VALUE.match(message)
    if match and match.group(1) in VGGConfig.field_names():
        return f"model.network.{match.group(1)}"
    return "model.network"


class QuestVGG(QuestModule):
    """A spiking VGG trained with MINT quantization for a given memory device.

    Args:
        network: the network (:class:`VGGConfig`, or a mapping of its fields); default: the paper's VGG6, W2, IF
            with hard reset.
        device: the memory device (preset name such as ``"skmtj7"``, a dict, or a YAML path); ``None`` for none.
            The network is checked against it: enough states for ``bits``, and a leak for LIF neurons.
        **kwargs: the training arguments of :class:`QuestModule` (``timesteps``, ``encoder``, ``loss``,
            ``optimizer``, ``lr``, ``weight_decay``, ``momentum``, ``schedule``, ``milestones``, ``gamma``,
            ``label_smoothing``, ``pattern``). ``num_classes`` comes from the network and ``device_name`` from the
            device.

    Raises:
        ValueError: for an unknown device or architecture, or a network the device cannot hold; the message starts
            with the config key (``model.device``, ``model.network.bits`` ...).
    """

    def __init__(
        self,
        network: VGGConfig = _DEFAULT_NETWORK,
        device: str | dict | None = "skmtj7",
        **kwargs: Any,
    ) -> None:
        try:
            network = VGGConfig.from_value(network)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{_config_key(str(err))}: {err}") from err
        spec: DeviceSpec | None = None
        if device is not None:
            try:
                spec = resolve_device(device)
            except (ValueError, FileNotFoundError, KeyError) as err:
                raise ValueError(f"model.device={device!r}: {err}") from err
        try:
            if spec is not None:  # the config's own keys first, so that the message names the option to change
                if network.quantize:
                    check_bits_fit(spec, network.bits)
                check_leak_allowed(spec, network.neuron == "lif", what=f"neuron={network.neuron!r}")
            net = network.build()
            if spec is not None:
                check_model(net, spec)
        except ValueError as err:
            raise ValueError(f"{_config_key(str(err))}: {err}") from err
        super().__init__(
            net,
            num_classes=network.num_classes,
            device_name=spec.name if spec is not None else None,
            energy_device=spec,
            **kwargs,
        )
        self.network = network
        self.device_spec = spec
        # The saved arguments are QuestVGG's own: QuestModule's num_classes and device_name follow from the network
        # and the device, and the network is stored as plain values, so that checkpoints load back (with
        # weights_only) through load_from_checkpoint and the CLI's --ckpt_path.
        saved = {k: v for k, v in self.hparams.items() if k not in ("num_classes", "device_name")}
        self._replace_hyperparameters({**saved, "network": network.to_dict()})
