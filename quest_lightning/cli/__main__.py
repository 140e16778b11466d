"""``python -m quest_lightning.cli``: the ``quest-lightning`` command."""

import sys

from quest_lightning.cli.main import main

sys.exit(main())
