"""``python -m quest_lightning.cli``: the ``quest-lightning`` command."""

import sys

from quest_lightning.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
