"""``QuestVGG``: a :class:`QuestModule` configured by plain values, for LightningCLI configs and recipes.

Everything that describes the network and its device is one flat argument, so a YAML config reads like the paper's
setup, and impossible combinations (LIF on a device that cannot leak, bits the device cannot hold, an unknown
device) fail at construction, before any data is loaded, with the config key in the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from quest_lightning.devices import DeviceSpec, check_model, resolve_device
from quest_lightning.lightning.module import QuestModule
from quest_lightning.nn.vgg import spiking_vgg


class QuestVGG(QuestModule):
    """A spiking VGG trained with MINT quantization for a given memory device.

    The training arguments (``timesteps``, ``encoder``, ``loss``, ``optimizer``, ``lr``, ``weight_decay``,
    ``momentum``, ``schedule``, ``milestones``, ``gamma``, ``label_smoothing``, ``pattern``) are those of
    :class:`QuestModule`.

    Args:
        arch: ``"vgg6"`` (the paper's), ``"vgg9"``, ``"vgg11"`` or ``"vgg16"``.
        bits: weight (and membrane) bit width :math:`b`.
        neuron: ``"if"`` or ``"lif"``; reset: ``"hard"`` or ``"soft"``; backend: ``"spikingjelly"`` or ``"snntorch"``.
        threshold: firing threshold :math:`\\theta`; decay: LIF leak :math:`\\lambda`; surrogate: surrogate name.
        detach_reset, transform, pool, batch_norm, dropout, quantize_first, quantize_readout, quantize: see
            ``SpikingVGG`` (``quantize=False`` is the FP32 baseline).
        device: the memory device (preset name such as ``"skmtj7"``, a dict, or a YAML path); ``None`` for none.
        num_classes, image_size, in_channels: data geometry.
    """

    def __init__(
        self,
        arch: str = "vgg6",
        bits: int = 2,
        neuron: Literal["if", "lif"] = "if",
        reset: Literal["hard", "soft"] = "hard",
        backend: Literal["spikingjelly", "snntorch"] = "spikingjelly",
        threshold: float = 0.5,
        decay: float = 0.5,
        surrogate: str = "triangle",
        detach_reset: bool = False,
        transform: Literal["tanh", "identity"] = "tanh",
        pool: Literal["max", "avg"] = "max",
        batch_norm: bool = False,
        dropout: float = 0.0,
        quantize_first: bool = False,
        quantize_readout: bool = False,
        quantize: bool = True,
        device: str | dict | None = "skmtj7",
        num_classes: int = 10,
        image_size: int = 32,
        in_channels: int = 3,
        timesteps: int = 4,
        encoder: Literal["direct", "rate", "latency"] = "direct",
        loss: Literal["mean_output", "per_step"] = "mean_output",
        optimizer: Literal["adam", "adamw", "sgd"] = "adam",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        momentum: float = 0.9,
        schedule: Literal["step", "cosine", "none"] = "step",
        milestones: Sequence[float] = (0.5, 0.75),
        gamma: float = 0.1,
        label_smoothing: float = 0.0,
        pattern: str | int | None = None,
    ) -> None:
        spec: DeviceSpec | None = None
        if device is not None:
            try:
                spec = resolve_device(device)
            except (ValueError, FileNotFoundError, KeyError) as err:
                raise ValueError(f"model.device={device!r}: {err}") from err
        try:
            net = spiking_vgg(
                arch,
                in_channels=in_channels,
                image_size=image_size,
                num_classes=num_classes,
                bits=bits,
                neuron=neuron,
                reset=reset,
                backend=backend,
                threshold=threshold,
                decay=decay,
                surrogate=surrogate,
                detach_reset=detach_reset,
                transform=transform,
                pool=pool,
                batch_norm=batch_norm,
                dropout=dropout,
                quantize_first=quantize_first,
                quantize_readout=quantize_readout,
                quantize=quantize,
            )
            if spec is not None:
                check_model(net, spec)
        except ValueError as err:
            raise ValueError(f"model config (model.arch/bits/neuron/reset/backend/device): {err}") from err
        super().__init__(
            net,
            timesteps=timesteps,
            encoder=encoder,
            num_classes=num_classes,
            loss=loss,
            optimizer=optimizer,
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            schedule=schedule,
            milestones=milestones,
            gamma=gamma,
            label_smoothing=label_smoothing,
            device_name=spec.name if spec is not None else None,
            pattern=pattern,
        )
        self.device_spec = spec
