"""The command-line edge of quest-lightning: console scripts, the script launcher and the recipes' LightningCLI.

* :mod:`quest_lightning.cli.main`: the ``quest-lightning`` and ``lightning`` console scripts (:func:`main`,
  :func:`lightning_main`).
* :mod:`quest_lightning.cli.launch`: ``fabric run``-style launching and the ``LT_*`` launcher settings.
* :mod:`quest_lightning.cli.recipe`: :class:`~quest_lightning.cli.recipe.QuestLightningCLI`, the LightningCLI of
  the recipes (imported lazily: it loads torch and Lightning).
* :mod:`quest_lightning.cli.doctor`: ``quest-lightning doctor`` (a ``lightning`` script replaced by lightning-sdk).

Importing this package stays light (no torch), so that the console scripts start quickly.
"""

from __future__ import annotations

import warnings
from typing import Any

# `python -m quest_lightning.cli.main` imports this package (and so `.main`) before running `.main` as __main__;
# runpy then warns that the module is already imported. Running it twice is harmless: it only defines functions.
warnings.filterwarnings(
    "ignore", message=r"'quest_lightning\.cli\.main' found in sys\.modules", category=RuntimeWarning
)

from quest_lightning.cli.launch import trainer_kwargs_from_launcher_env  # noqa: E402
from quest_lightning.cli.main import find_sdk_cli, lightning_main, main  # noqa: E402

__all__ = ["QuestLightningCLI", "find_sdk_cli", "lightning_main", "main", "trainer_kwargs_from_launcher_env"]


def __getattr__(name: str) -> Any:
    if name == "QuestLightningCLI":
        from quest_lightning.cli.recipe import QuestLightningCLI

        return QuestLightningCLI
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
