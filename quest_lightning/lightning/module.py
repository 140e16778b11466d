"""``QuestModule``: a LightningModule that trains a spiking network built from quest-lightning layers.

It owns the number of time steps ``T`` and the input encoder, and computes the loss on the readout:

* ``loss="mean_output"`` (default): cross-entropy of the mean readout over ``T``;
* ``loss="per_step"``: the mean over ``T`` of the per-step cross-entropies (MINT's choice).

Optimizer and schedule default to the QUEST recipe: Adam, lr 1e-3, weight decay 1e-4, the learning rate divided by
10 at 50 % and 75 % of the epochs. ``optimizer="adamw"`` gives decoupled weight decay and ``"sgd"`` momentum SGD;
``schedule="cosine"`` or ``"none"`` replace the steps.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.fabric.utilities.data import AttributeDict
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from quest_lightning.energy.aware import EnergyAware, EnergyAwareKnobs
from quest_lightning.nn.encoders import check_timesteps, make_encoder
from quest_lightning.nn.inspect import quantized_layers, spiking_neurons
from quest_lightning.nn.neurons import backend_of


def _describe(model: nn.Module) -> dict[str, Any]:
    """Hyperparameters that can be read off the network (bits, neuron kind, reset)."""
    layers = quantized_layers(model)
    neurons = spiking_neurons(model)
    info: dict[str, Any] = {"bits": sorted({layer.bits for _, layer in layers}) or None}
    if neurons:
        n = neurons[0][1]
        info["neuron"] = "lif" if n.leaky else "if"
        info["reset"] = n.reset_mode
        info["threshold"] = n.threshold
        info["backend"] = backend_of(n)
    return info


class QuestModule(pl.LightningModule):
    """Train a spiking network (``[T, B, ...] -> [T, B, classes]``) on batches of ``(inputs, labels)``.

    Args:
        model: the network, e.g. ``quest_lightning.nn.spiking_vgg("vgg6")`` or any ``nn.Module`` with our layers.
        timesteps: number of time steps :math:`T`.
        encoder: ``"direct"`` (default), ``"rate"`` or ``"latency"``.
        num_classes: number of classes for the accuracy metrics.
        loss: ``"mean_output"`` or ``"per_step"``.
        optimizer: ``"adam"`` (default), ``"adamw"`` or ``"sgd"``.
        lr: learning rate; weight_decay: L2 (Adam) or decoupled (AdamW) weight decay; momentum: for SGD.
        schedule: ``"step"`` (÷``gamma`` at ``milestones`` × epochs), ``"cosine"`` or ``"none"``.
        milestones: fractions of ``max_epochs`` where the step schedule decays.
        gamma: the step schedule's factor.
        label_smoothing: cross-entropy label smoothing.
        device_name, pattern: recorded as hyperparameters (the device and R-S pattern of the run); with an
            energy-aware knob on, they also choose the write and read energies that weigh it.
        write_aware: the write-aware hysteresis margin :math:`h` in grid steps, in ``[0, 0.5)`` (0: off); see
            ``docs/energy-aware.md`` and :class:`~quest_lightning.energy.aware.EnergyAwareKnobs`.
        read_aware: the weight :math:`\\lambda_r` of the read-aware penalty added to the training loss (0: off).
        energy_weighted: weigh both knobs by the chosen R-S pattern's write and read energies (else every level
            change, and every non-zero weight, costs the same).
        energy_device: the :class:`~quest_lightning.devices.DeviceSpec` (or preset name, dict, YAML path) whose
            energies weigh the knobs; ``None`` uses ``device_name`` (``"skmtj7"`` when that is ``None`` too). Not
            saved as a hyperparameter.
    """

    def __init__(
        self,
        model: nn.Module,
        timesteps: int = 4,
        encoder: Literal["direct", "rate", "latency"] = "direct",
        num_classes: int = 10,
        loss: Literal["mean_output", "per_step"] = "mean_output",
        optimizer: Literal["adam", "adamw", "sgd"] = "adam",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        momentum: float = 0.9,
        schedule: Literal["step", "cosine", "none"] = "step",
        milestones: Sequence[float] = (0.5, 0.75),
        gamma: float = 0.1,
        label_smoothing: float = 0.0,
        device_name: str | None = None,
        pattern: str | int | None = None,
        write_aware: float = 0.0,
        read_aware: float = 0.0,
        energy_weighted: bool = True,
        energy_device: Any = None,
    ) -> None:
        super().__init__()
        check_timesteps(timesteps)
        for name, value, allowed in (
            ("loss", loss, ("mean_output", "per_step")),
            ("optimizer", optimizer, ("adam", "adamw", "sgd")),
            ("schedule", schedule, ("step", "cosine", "none")),
        ):
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is unknown: use one of {allowed}.")
        if lr <= 0:
            raise ValueError(f"lr={lr} must be positive.")
        if list(milestones) != sorted(milestones) or any(not 0 < m < 1 for m in milestones):
            raise ValueError(f"milestones={list(milestones)} must be increasing fractions of the epochs in (0, 1).")
        self.model = model
        self.timesteps = timesteps
        self.encoder = make_encoder(encoder, timesteps)
        knobs = EnergyAwareKnobs(
            write_margin=write_aware,
            read_weight=read_aware,
            write_weighted=energy_weighted,
            read_weighted=energy_weighted,
            pattern="best" if pattern is None else pattern,
        )
        # built here, before any checkpoint is loaded: the write knob's held codes are part of the state dict
        self.energy_aware = EnergyAware(model, knobs, energy_device if energy_device is not None else device_name)
        self.energy_aware.attach()
        self.save_hyperparameters(ignore=["model", "energy_device"])
        self._replace_hyperparameters({**self.hparams, "milestones": list(milestones)})  # plain YAML, not a tuple
        self.network_description = _describe(model)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    @property
    def hparams_initial(self) -> AttributeDict:
        """What loggers record at the start of a run: the constructor arguments (:attr:`hparams`), plus the
        network's description (bits, neuron, reset, threshold, back-end) under the names no argument uses.

        The description is never written back into :attr:`hparams`, which checkpoints store and
        ``load_from_checkpoint`` and ``--ckpt_path`` pass back to the constructor.
        """
        initial = super().hparams_initial
        for key, value in self.network_description.items():
            initial.setdefault(key, value)
        return initial

    def _replace_hyperparameters(self, hparams: Mapping[str, Any]) -> None:
        """Set the saved constructor arguments (what checkpoints store and loggers record) to ``hparams``."""
        self._hparams = AttributeDict(hparams)
        self._hparams_initial = copy.deepcopy(self._hparams)

    def forward(self, x: Tensor) -> Tensor:
        """Encode ``x`` (``[B, ...]``) over ``T`` steps and return the readout per step, ``[T, B, classes]``."""
        return self.model(self.encoder(x))

    def _loss(self, out: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if out.dim() < 3 or out.shape[0] != self.timesteps:
            raise ValueError(
                f"the model returned shape {tuple(out.shape)}; QuestModule expects [T={self.timesteps}, B, classes]."
            )
        logits = out.mean(0)
        smoothing = self.hparams.label_smoothing
        if self.hparams.loss == "per_step":
            loss = F.cross_entropy(out.flatten(0, 1), y.repeat(out.shape[0]), label_smoothing=smoothing)
        else:
            loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
        return loss, logits

    def _shared_step(self, batch: Any, stage: str) -> Tensor:
        x, y = batch
        loss, logits = self._loss(self(x), y)
        acc = getattr(self, f"{stage}_acc")
        acc(logits, y)
        self.log(f"{stage}/loss", loss, prog_bar=stage != "test", sync_dist=stage != "train", batch_size=y.shape[0])
        if stage != "train":  # the training accuracy is logged in on_train_epoch_end
            self.log(f"{stage}/acc", acc, prog_bar=True, on_step=False, on_epoch=True, batch_size=y.shape[0])
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss = self._shared_step(batch, "train")
        if self.energy_aware.knobs.read_weight > 0:
            penalty = self.energy_aware.penalty().to(loss.device)
            self.log("train/read_penalty", penalty.detach(), batch_size=batch[1].shape[0])
            loss = loss + penalty
        return loss

    def on_train_epoch_end(self) -> None:
        # Computed here, in the module's hook, on every rank at the same point. A Metric logged from training_step is
        # computed (a collective under DDP) by the progress bar on rank zero alone, in the middle of the callbacks'
        # on_train_epoch_end hooks, where it would pair with another callback's collective on the other ranks.
        if self.train_acc.update_called:  # an epoch without training batches has no accuracy to log
            self.log("train/acc", self.train_acc.compute(), prog_bar=True)
        self.train_acc.reset()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def configure_optimizers(self):
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        if hp.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)
        elif hp.optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        else:
            opt = torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        if hp.schedule == "none":
            return opt
        epochs = max(int(self.trainer.max_epochs or 1), 1)
        if hp.schedule == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        else:
            steps = sorted({max(1, round(m * epochs)) for m in hp.milestones})
            sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=steps, gamma=hp.gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
