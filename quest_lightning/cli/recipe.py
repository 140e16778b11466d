"""``QuestLightningCLI``: the LightningCLI behind the recipes, with the end-of-fit test, report and summary.

* With no arguments it runs ``fit`` with the recipe's default config (the paper's setup).
* The Trainer picks up the device count set by a launcher (``lightning run``/``quest-lightning run``/``fabric run``).
* After ``fit`` it tests the final model, builds the HTML report and prints a summary: test accuracy, mean spike
  rate, AOR, best R-S pattern, energy per sample, the ratios against CMOS, where the W&B run and the report are, and
  the ``wandb sync`` line.
* A launcher's ``--devices``, ``--accelerator``, ... win over the config
  (:func:`~quest_lightning.cli.launch.launcher_overrides`).
* Every run writes into its own folder and a crash is recorded as one (:mod:`quest_lightning.cli.runs`).
* The network options live under ``model.network`` (:class:`~quest_lightning.lightning.vgg_module.VGGConfig`); the
  older flat spelling (``--model.bits 3``, ``model: {bits: 3}`` in a config file) is still accepted and rewritten.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import Namespace
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from quest_lightning.cli.launch import launcher_overrides, trainer_kwargs_from_launcher_env
from quest_lightning.cli.run_summary import find_callback, print_summary
from quest_lightning.cli.runs import (
    RunConfigCallback,
    check_run_folder_is_free,
    finish_wandb,
    mark_failed,
    versioned_folder,
)
from quest_lightning.lightning.callbacks import DeviceEnergyCallback
from quest_lightning.lightning.data import CIFAR10DataModule
from quest_lightning.lightning.vgg_module import QuestVGG, VGGConfig

__all__ = ["QuestLightningCLI", "translate_flat_network_keys"]

_NETWORK_KEYS = frozenset(VGGConfig.field_names())
_SUBCOMMANDS = ("fit", "validate", "test", "predict")
_FLAT_FLAG = re.compile(r"^--model\.(\w+)(=.*)?$", flags=re.S)


def _nest_network_keys(model: Any, where: str, moved: list[str]) -> None:
    """Moves the network options of a config's ``model`` mapping into ``model["network"]`` (in place)."""
    if not isinstance(model, dict):
        return
    flat = [key for key in model if key in _NETWORK_KEYS]
    if not flat:
        return
    network = model.get("network")
    network = dict(network) if isinstance(network, dict) else {}
    both = sorted(key for key in flat if key in network)
    if both:
        raise ValueError(
            f"{where}: model.{both[0]} and model.network.{both[0]} are both given; keep model.network.{both[0]} "
            "(the flat spelling is the old one)."
        )
    for key in flat:
        network[key] = model.pop(key)
        moved.append(f"model.{key}")
    model["network"] = network


def _translate_config(path: str, moved: list[str]) -> str | None:
    """The YAML text of config file ``path`` with its flat network keys nested, or None if it has none."""
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict):
        return None
    before = len(moved)
    _nest_network_keys(data.get("model"), path, moved)
    for sub in _SUBCOMMANDS:
        if isinstance(data.get(sub), dict):
            _nest_network_keys(data[sub].get("model"), path, moved)
    return yaml.safe_dump(data, sort_keys=False) if len(moved) > before else None


def translate_flat_network_keys(args: Sequence[str]) -> list[str]:
    """Rewrites the older flat network options of a recipe command line into their ``model.network`` keys.

    ``--model.bits 3`` becomes ``--model.network.bits 3``, and a ``--config`` file whose ``model`` mapping holds
    network options (``bits``, ``neuron``, ...) is passed on as the same YAML with them under ``model.network``.
    Every other argument is unchanged. A note on stderr lists what was rewritten.

    Args:
        args: the command line without the program name.

    Returns:
        The rewritten command line.

    Raises:
        ValueError: If a config file gives an option both flat and under ``model.network``.
    """
    out: list[str] = []
    moved: list[str] = []
    tokens = list(args)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        flag = _FLAT_FLAG.match(token)
        if flag and flag.group(1) in _NETWORK_KEYS:
            out.append(f"--model.network.{flag.group(1)}{flag.group(2) or ''}")
            moved.append(f"model.{flag.group(1)}")
        elif token == "--config" and i + 1 < len(tokens):
            text = _translate_config(tokens[i + 1], moved)
            out += [token, text if text is not None else tokens[i + 1]]
            i += 1
        elif token.startswith("--config="):
            text = _translate_config(token.split("=", 1)[1], moved)
            out.append(f"--config={text}" if text is not None else token)
        else:
            out.append(token)
        i += 1
    if moved:
        keys = ", ".join(dict.fromkeys(moved))
        print(
            f"note: the network options moved under model.network; read {keys} as "
            f"{', '.join(k.replace('model.', 'model.network.', 1) for k in dict.fromkeys(moved))}.",
            file=sys.stderr,
        )
    return out


class QuestLightningCLI(LightningCLI):
    """LightningCLI for :class:`QuestVGG` on :class:`CIFAR10DataModule` (both overridable with ``--model``/``--data``
    class paths), with recipe defaults and the end-of-fit summary.

    Args:
        default_config: the config ``fit`` runs with when the command line is empty.
        args: the command line (default: ``sys.argv[1:]``), or a dict/Namespace config.
        **kwargs: passed to :class:`~lightning.pytorch.cli.LightningCLI`.
    """

    def __init__(self, default_config: str | os.PathLike | None = None, args: Sequence[str] | None = None, **kwargs):
        self.default_config = default_config
        self.trainer: Trainer | None = None
        os.environ.setdefault("WANDB_X_DISABLE_STATS", "true")
        kwargs.setdefault("save_config_callback", RunConfigCallback)
        defaults = dict(kwargs.pop("trainer_defaults", {}) or {})
        defaults.update(trainer_kwargs_from_launcher_env())
        super().__init__(QuestVGG, CIFAR10DataModule, args=args, trainer_defaults=defaults, **kwargs)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        if isinstance(args, (dict, Namespace)):
            super().parse_arguments(parser, args)
            return
        given = list(sys.argv[1:] if args is None else args)
        if not given and self.default_config is not None:
            given = ["fit", "--config", str(self.default_config)]  # no arguments: the recipe's default run
        self.config = parser.parse_args(translate_flat_network_keys(given))

    def before_instantiate_classes(self) -> None:
        trainer = self._get(self.config, "trainer")
        for key, value in launcher_overrides().items():
            if trainer.get(key) != value and rank_zero_only.rank == 0:
                print(
                    f"note: the launcher's {key}={value!r} replaces trainer.{key}={trainer.get(key)!r} of the config",
                    file=sys.stderr,
                )
            trainer[key] = value
        if trainer.get("logger") is False or trainer.get("logger") == []:  # no logger: a new folder per run
            trainer["default_root_dir"] = str(versioned_folder(trainer.get("default_root_dir") or os.getcwd()))

    def _run_subcommand(self, subcommand: str) -> None:
        check_run_folder_is_free(self.trainer)
        try:
            super()._run_subcommand(subcommand)
        except SystemExit as err:
            if err.code not in (0, None):
                mark_failed(self.trainer, err, subcommand)
            raise
        except BaseException as err:
            mark_failed(self.trainer, err, subcommand)
            raise
        finish_wandb(self.trainer)

    def after_fit(self) -> None:
        trainer = self.trainer
        if trainer.interrupted:
            return
        results = trainer.test(self.model, datamodule=self.datamodule, verbose=False)
        if trainer.is_global_zero:
            report = _build_report(trainer)
            print_summary(trainer, results[0] if results else {}, report)


def _build_report(trainer) -> str | None:
    energy = find_callback(trainer, DeviceEnergyCallback)
    path = getattr(energy, "summary_path", None)
    if path is None:
        return None
    from quest_lightning.report import build_report, report_files

    html = build_report(Path(path).parent)
    for logger in trainer.loggers:  # W&B gets the report's charts too
        if isinstance(logger, WandbLogger):
            for png in sorted(p for p in report_files(html.parent) if p.suffix == ".png"):
                logger.log_image(key=f"report/{png.stem}", images=[str(png)])
    return str(html)
