"""``QuestModule``: a LightningModule that trains a spiking network built from quest-lightning layers.

It owns the number of time steps ``T`` and the input encoder, and computes the loss on the readout:

* ``loss="mean_output"`` (default): cross-entropy of the mean readout over ``T``;
* ``loss="per_step"``: the mean over ``T`` of the per-step cross-entropies (MINT's choice).

Optimizer and schedule default to the QUEST recipe: Adam, lr 1e-3, weight decay 1e-4, the learning rate divided by
10 at 50 % and 75 % of the epochs. ``optimizer="adamw"`` gives decoupled weight decay and ``"sgd"`` momentum SGD;
``schedule="cosine"`` or ``"none"`` replace the steps.

Padded samples (the repeats a DDP loader adds so that every rank gets as many batches, reported by its
``padded_in_batch`` or ``padding``) are left out of the loss, the read-aware penalty, the accuracies and the validation
and test losses; under DDP each rank's loss and penalty are weighted by its real samples so that a step's gradient is
one process's mean over them. A checkpoint holds the training accuracy's sums of the epoch in flight, and a fit resumed
after an epoch's last training batch validates that epoch first (see ``docs/recipes.md``, "What a resume restores").
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.fabric.utilities.data import AttributeDict
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy

from quest_lightning.energy.aware import EnergyAware, EnergyAwareKnobs
from quest_lightning.lightning.callbacks.resume import global_rng_states, set_global_rng_states, validate_after_resume
from quest_lightning.lightning.callbacks.samples import loader_of, loader_padding
from quest_lightning.nn.encoders import check_timesteps, make_encoder
from quest_lightning.nn.inspect import quantized_layers, reset_states, spiking_neurons
from quest_lightning.nn.neurons import backend_of

TRAIN_ACCURACY_KEY = "quest_train_accuracy"
"""Where a checkpoint keeps the training accuracy's partial sums of the epoch in flight, with that epoch."""
RNG_KEY = "quest_rng_states"
"""Where a checkpoint keeps every rank's global random generator states."""


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


class SampleMean(Metric):
    r"""The mean of a per-sample value (a loss) over the samples of every rank, from each batch's mean and its
    samples, summed in float64 whatever the precision (``torchmetrics.MeanMetric`` casts its inputs to the default
    dtype of its construction).

    .. math::
        \bar\ell = \frac{\sum_b n_b \bar\ell_b}{\sum_b n_b}

    over the batches :math:`b` of every rank, :math:`n_b` real samples each.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("samples", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, mean: Tensor, samples: int) -> None:
        """Add a batch: ``mean`` (a scalar tensor) over ``samples`` samples."""
        self.total += mean.detach().to(torch.float64) * samples
        self.samples += samples

    def compute(self) -> Tensor:
        """The mean over every sample added (float64; NaN before any)."""
        return self.total / self.samples


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
        self.val_loss, self.test_loss = SampleMean(), SampleMean()  # over the real samples of all ranks
        self._saved_train_acc: dict[str, Any] | None = None  # a resumed fit's partial sums, until its epoch runs
        self._saved_rng: dict[str, Any] | None = None  # a resumed fit's generator states, until its first step
        self._train_acc_restored = False

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
        """Encode ``x`` (``[B, ...]``) over ``T`` steps and return the readout per step, ``[T, B, classes]``.

        Every batch is a new sequence: the state the model's neurons keep between calls (a converted SpikingJelly or
        snnTorch network's) is zeroed first (:func:`~quest_lightning.nn.inspect.reset_states`)."""
        reset_states(self.model)
        return self.model(self.encoder(x))

    def _loss(
        self, out: Tensor, y: Tensor, real: int | None = None, scale: float | None = None
    ) -> tuple[Tensor, Tensor]:
        """The batch's loss and its mean readout (the logits, ``[B, classes]``).

        Without ``real`` and ``scale``: the mean of the per-sample losses :math:`\\ell_i` over the batch. With them,
        the last ``B - real`` samples are padding and the loss is :math:`s \\sum_{i < \\text{real}} \\ell_i`, with
        :math:`s` = ``scale``, by default :math:`1 / \\text{real}` (the mean over the real samples).
        """
        if out.dim() < 3 or out.shape[0] != self.timesteps:
            raise ValueError(
                f"the model returned shape {tuple(out.shape)}; QuestModule expects [T={self.timesteps}, B, classes]."
            )
        logits = out.mean(0)
        smoothing = self.hparams.label_smoothing
        per_step = self.hparams.loss == "per_step"
        if real is None and scale is None:
            if per_step:
                loss = F.cross_entropy(out.flatten(0, 1), y.repeat(out.shape[0]), label_smoothing=smoothing)
            else:
                loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
            return loss, logits
        if per_step:
            losses = F.cross_entropy(
                out.flatten(0, 1), y.repeat(out.shape[0]), reduction="none", label_smoothing=smoothing
            )
            losses = losses.view(out.shape[0], -1).mean(0)
        else:
            losses = F.cross_entropy(logits, y, reduction="none", label_smoothing=smoothing)
        real = y.shape[0] if real is None else real
        scale = (1.0 / real if real else 0.0) if scale is None else scale
        return losses[:real].sum() * scale, logits

    def _padding(self, stage: str, batch: int, dataloader_idx: int, size: int) -> tuple[int, float | None]:
        """The padded samples at the end of this batch of ``size`` (``padded_in_batch``/``padding`` of its loader,
        as the callbacks read them), and for a training step under DDP whose ranks hold different numbers of real
        samples, the scale that makes the step's gradient the mean over its real samples. DDP averages the ranks'
        gradients, so rank :math:`r` takes

        .. math::
            L_r = \\frac{W}{N_\\text{step}} \\sum_{i \\in r,\\ \\text{real}} \\ell_i

        with :math:`W` ranks and :math:`N_\\text{step}` the real samples of the step on all ranks (the loader's
        ``real_in_step``). ``(0, None)`` outside a Trainer; the scale is ``None`` when every rank holds the same number
        of real samples (their mean is that scale already) or the loader cannot tell."""
        trainer = self._trainer
        if trainer is None:
            return 0, None
        loader = loader_of(trainer, stage, dataloader_idx)
        padded = loader_padding(loader, batch)
        world = int(getattr(trainer, "world_size", 1) or 1)
        in_step = getattr(loader, "real_in_step", None)
        if stage != "train" or world == 1 or not callable(in_step):
            return padded, None
        total = int(in_step(batch))
        return padded, None if total in (0, world * (size - padded)) else world / total

    def _shared_step(self, batch: Any, stage: str, batch_idx: int = 0, dataloader_idx: int = 0) -> Tensor:
        x, y = batch
        padded, scale = self._padding(stage, batch_idx, dataloader_idx, y.shape[0])
        real = y.shape[0] - padded
        reads = stage == "train" and self.energy_aware.knobs.read_weight > 0
        if reads:
            self.energy_aware.begin_step(exclude=padded)
        out = self(x)
        if padded or scale is not None:  # padding left out of the loss, the accuracy and the logged figures
            loss, logits = self._loss(out, y, real, scale)
        else:
            loss, logits = self._loss(out, y)
        penalty = self._read_penalty(real, scale) if reads else None  # added after train/loss is logged
        if real == 0:  # a batch that is padding only: nothing to count, a zero loss to take part in the step
            return loss if penalty is None else loss + penalty
        acc = getattr(self, f"{stage}_acc")
        acc(logits[:real], y[:real])
        if stage == "train":  # this rank's mean over its real samples
            shown = loss.detach() / (scale * real) if scale is not None else loss
            self.log("train/loss", shown, prog_bar=True, batch_size=real)
        else:  # the means over the real samples of every rank, whatever their split (torchmetrics sums them)
            mean = getattr(self, f"{stage}_loss")
            mean.update(loss, real)
            self.log(f"{stage}/loss", mean, prog_bar=stage != "test", on_step=False, on_epoch=True)
            self.log(f"{stage}/acc", acc, prog_bar=True, on_step=False, on_epoch=True)
        return loss if penalty is None else loss + penalty

    def _read_penalty(self, real: int, scale: float | None) -> Tensor:
        """The read-aware penalty :math:`\\lambda_r R` of this step's forward pass over its ``real`` samples, logged
        as ``train/read_penalty``; under DDP with ranks of different real samples, weighted as the loss is
        (:meth:`_padding`), so that the step's gradient is that of the penalty over the real samples of all ranks:
        :math:`\\frac{W n_r}{N_\\text{step}} \\lambda_r R_r`."""
        penalty = self.energy_aware.penalty()
        if real:
            self.log("train/read_penalty", penalty.detach(), batch_size=real)
        return penalty if scale is None else penalty * (scale * real)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        self._restore_rng()
        self._restore_train_accuracy()
        return self._shared_step(batch, "train", batch_idx)

    def on_train_epoch_end(self) -> None:
        # Computed here, in the module's hook, on every rank at the same point. A Metric logged from training_step is
        # computed (a collective under DDP) by the progress bar on rank zero alone, in the middle of the callbacks'
        # on_train_epoch_end hooks, where it would pair with another callback's collective on the other ranks.
        self._restore_train_accuracy()
        if self.train_acc.update_called or self._train_acc_restored:  # an epoch without batches has no accuracy
            with warnings.catch_warnings():  # restored sums, no update in this process
                warnings.filterwarnings("ignore", message=r".*was called before the ``update`` method.*")
                self.log("train/acc", self.train_acc.compute(), prog_bar=True)
        self.train_acc.reset()
        self._train_acc_restored = False

    # --- resuming -------------------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the training accuracy's sums of the epoch in flight, over all ranks, with their epoch (a collective
        under DDP: Lightning builds the checkpoint on every rank)."""
        metric = self.train_acc
        with metric.sync_context(should_sync=metric.sync_on_compute):
            states = {name: getattr(metric, name).detach().cpu().clone() for name in metric._defaults}
        checkpoint[TRAIN_ACCURACY_KEY] = {"epoch": self.current_epoch, "states": states}
        checkpoint[RNG_KEY] = global_rng_states(self._trainer, self.device)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A fit resumed from ``checkpoint`` goes on with its training accuracy's partial sums, if it goes on in their
        epoch (a fresh fit of a module loaded with ``load_from_checkpoint`` starts from zero), and validates the epoch
        whose last training batch the checkpoint was written after
        (:func:`~quest_lightning.lightning.callbacks.resume.validate_after_resume`)."""
        trainer = self._trainer
        validate_after_resume(trainer, checkpoint)
        resuming = trainer is not None and trainer.state.fn == "fit"
        self._saved_train_acc = checkpoint.get(TRAIN_ACCURACY_KEY) if resuming else None
        self._saved_rng = checkpoint.get(RNG_KEY) if resuming else None

    def _restore_rng(self) -> None:
        """Set the global generators back to the checkpoint's at the first step after a resume (a training step, or
        the validation a resume after an epoch's last batch runs first; not Lightning's sanity check, which the
        uninterrupted run did not run there), so that dropout masks and random encoders draw what they drew."""
        if self._saved_rng is not None and not self.trainer.sanity_checking:
            saved, self._saved_rng = self._saved_rng, None
            set_global_rng_states(saved, self._trainer, self.device)

    def _restore_train_accuracy(self) -> None:
        """Apply the saved partial sums at the first training step or epoch end after a resume, when the run is in
        their epoch (else they are dropped: a restored sum is never folded into another epoch). Rank 0 gets the sums
        over all ranks and the others start from zero, so that the next sync counts them once."""
        saved, self._saved_train_acc = self._saved_train_acc, None
        if saved is None or int(saved["epoch"]) != self.current_epoch:
            return
        metric = self.train_acc
        metric.reset()
        if self.global_rank == 0:
            for name, value in saved["states"].items():
                setattr(metric, name, value.to(getattr(metric, name).device))
        self._train_acc_restored = True

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._restore_rng()
        self._shared_step(batch, "val", batch_idx, dataloader_idx)

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._shared_step(batch, "test", batch_idx, dataloader_idx)

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
