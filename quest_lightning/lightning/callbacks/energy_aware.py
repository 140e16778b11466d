"""``EnergyAwareTraining``: the energy-aware knobs for any LightningModule built from quest-lightning layers.

One knob per device cost, both off by default (:mod:`quest_lightning.energy.aware` has the formulas):

* ``write_margin``: the hysteresis margin of the quantized layers (fewer code changes, so fewer device writes),
  weighted per transition by the R-S pattern's write energy when ``write_weighted``;
* ``read_weight``: :math:`\\lambda_r`, the weight of the differentiable read penalty (expected device reads per
  sample, the AOR weighted by the pattern's read energy per level) added to the module's training loss.

The callback installs the hysteresis in ``setup`` (before a checkpoint is restored, so the held codes come back with
it) and leaves it in the model after fit (evaluation and export use the codes the device holds). It adds
:math:`\\lambda_r R` to whatever ``training_step`` returns (a loss tensor or a dict with ``"loss"``). With manual
optimisation, add :meth:`EnergyAwareTraining.penalty` to your loss yourself. It logs
``energy_aware/read_ratio`` (:math:`R`) per step when the read knob is on, and :meth:`record` says what the run was
trained with (for the run summary).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, Literal

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from quest_lightning.devices import DeviceSpec
from quest_lightning.energy.aware import EnergyAware, EnergyAwareKnobs

__all__ = ["EnergyAwareTraining"]


class EnergyAwareTraining(Callback):
    """Train a network that costs less on the device: fewer writes (hysteresis), fewer reads (a penalty).

    Args:
        write_margin: hysteresis margin :math:`h` in grid steps (0: off).
        write_weighted: scale the margin per transition by the pattern's write energy.
        read_weight: :math:`\\lambda_r`, the weight of the read penalty in the loss (0: off).
        read_weighted: weight each level by the pattern's read energy (else every non-zero weight costs 1: AOR).
        device: the memory device whose pattern energies weigh the knobs (``None``: the module's ``device_spec``,
            else ``"skmtj7"``); used only when a weighted knob is on.
        pattern: the R-S pattern: ``"best"``, an index or a mapping (see
            :func:`~quest_lightning.energy.aware.choose_pattern`).
        states: restrict the patterns to these device states.
        count_zero_level_reads: charge zero weights as reads in the penalty too.

    Raises:
        ValueError: a bad knob (at construction); at ``setup``, a module without quantized layers, a module whose
            own energy-aware knobs are already on, or a read knob on a module with manual optimisation.
    """

    def __init__(
        self,
        write_margin: float = 0.0,
        write_weighted: bool = True,
        read_weight: float = 0.0,
        read_weighted: bool = True,
        device: DeviceSpec | str | dict | None = None,
        pattern: Literal["best"] | int | Sequence[int] = "best",
        states: Sequence[int] | None = None,
        count_zero_level_reads: bool = False,
    ) -> None:
        self.knobs = EnergyAwareKnobs(
            write_margin=write_margin,
            write_weighted=write_weighted,
            read_weight=read_weight,
            read_weighted=read_weighted,
            pattern=pattern if isinstance(pattern, (str, int)) else tuple(pattern),
            count_zero_level_reads=count_zero_level_reads,
        )
        self.device, self.states = device, None if states is None else tuple(states)
        self.aware: EnergyAware | None = None
        self._module: pl.LightningModule | None = None
        self._record: dict[str, Any] | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(**asdict(self.knobs))

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        own = getattr(pl_module, "energy_aware", None)
        if isinstance(own, EnergyAware) and own.knobs.on and self.knobs.on:
            raise ValueError(
                f"{type(pl_module).__name__} already trains with its own energy-aware knobs ({own.knobs}); set the "
                "knobs either on the module or on EnergyAwareTraining, not both."
            )
        if self.knobs.read_weight > 0 and not pl_module.automatic_optimization:
            raise ValueError(
                "EnergyAwareTraining(read_weight>0) adds the read penalty to the loss that training_step returns, "
                "but this module optimises manually: add callback.penalty() to your loss before manual_backward."
            )
        self.teardown(trainer, pl_module, stage)
        device = self.device if self.device is not None else getattr(pl_module, "device_spec", None)
        self.aware = EnergyAware(pl_module, self.knobs, device=device, states=self.states).attach()
        self._record = self.aware.record()
        if self.knobs.read_weight > 0 and pl_module.automatic_optimization:
            self._wrap(pl_module)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._module is not None:
            self._module.__dict__.pop("training_step", None)
            self._module = None
        if self.aware is not None:
            self.aware.detach(keep_hysteresis=True)  # the model keeps the codes it was trained to hold
            self.aware = None

    def _wrap(self, pl_module: pl.LightningModule) -> None:
        step = type(pl_module).training_step.__get__(pl_module)

        def training_step(*args: Any, **kwargs: Any) -> Any:
            self.aware.begin_step()
            out = step(*args, **kwargs)
            penalty = self.aware.penalty()
            if self.aware.last_ratio is not None:
                pl_module.log("energy_aware/read_ratio", self.aware.last_ratio, on_step=True, on_epoch=True)
            if isinstance(out, Tensor):
                return out + penalty
            if isinstance(out, dict) and "loss" in out:
                return {**out, "loss": out["loss"] + penalty}
            return out  # None: the step is skipped, and so is the penalty

        pl_module.training_step = training_step
        self._module = pl_module

    def penalty(self) -> Tensor:
        """:math:`\\lambda_r R` of the forward passes since the last call (for manual optimisation)."""
        if self.aware is None:
            raise RuntimeError("EnergyAwareTraining.penalty() is available after setup (inside fit).")
        return self.aware.penalty()

    def record(self) -> dict[str, Any]:
        """The knobs the run was trained with, and the device and pattern they weighed by (JSON-ready)."""
        if self._record is not None:
            return self._record
        return {**self.knobs.to_dict(), "device": None, "pattern_index": None, "pattern": None}

    def state_dict(self) -> dict[str, Any]:
        return {"knobs": asdict(self.knobs)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = dict(state_dict.get("knobs", {}))
        if isinstance(saved.get("pattern"), list):
            saved["pattern"] = tuple(saved["pattern"])
        if saved and saved != asdict(self.knobs):
            raise ValueError(
                f"the checkpoint was trained with energy-aware knobs {saved} but this callback has "
                f"{asdict(self.knobs)}; resume with the same knobs."
            )
