"""QUEST's recipe: VGG6, W2/U2, IF with hard reset, T = 4, on CIFAR-10, priced on the 7-state Sk-MTJ.

    python recipes/vgg6_cifar10.py                                      # the paper's setup (configs/paper.yaml)
    python recipes/vgg6_cifar10.py fit --config recipes/configs/demo.yaml
    lightning run recipes/vgg6_cifar10.py fit --config recipes/configs/demo.yaml
    quest-lightning run --devices 2 recipes/vgg6_cifar10.py fit --config recipes/configs/paper.yaml

Every LightningCLI option works (``--help``, ``--print_config``, ``--model.network.bits 3``, ``--ckpt_path last.ckpt``).
A launcher's ``--devices`` wins over the config's ``trainer.devices``. If ``lightning run`` starts lightning-sdk's
commands instead of this script, the SDK replaced the ``lightning`` command: ``quest-lightning doctor --fix``.
"""

from pathlib import Path

from quest_lightning.cli.recipe import QuestLightningCLI

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "paper.yaml"


def main() -> None:
    QuestLightningCLI(default_config=DEFAULT_CONFIG)


if __name__ == "__main__":
    main()
