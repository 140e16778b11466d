"""``quest-lightning doctor``: is the ``lightning`` command still ours, and ``--fix`` to restore it.

Both quest-lightning and lightning-sdk install a ``lightning`` console script, and the package installed last owns
it. Once lightning-sdk has replaced ours, ``lightning run recipes/vgg6_cifar10.py`` starts the SDK's cloud ``run``
group instead of the script. Our script loses nothing by coming back: it handles ``lightning run SCRIPT.py ...`` and
hands every other command line, unchanged, to lightning-sdk's CLI (:func:`~quest_lightning.cli.main.find_sdk_cli`).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["ScriptCheck", "check_lightning_script", "doctor", "restore_lightning_script", "shim_text"]

SCRIPT_NAME = "lightning"
_OURS = re.compile(r"^from quest_lightning\.cli(?:\.main)? import lightning_main\b", flags=re.M)
_ENTRY = re.compile(r"^from ([\w.]+) import (\w+)", flags=re.M)
_SHIM = """\
# The `lightning` command of quest-lightning, restored by `quest-lightning doctor --fix`. It runs
# `lightning run [OPTIONS] SCRIPT.py ...` and hands every other command to lightning-sdk's CLI when installed.
import re
import sys

from quest_lightning.cli import lightning_main

if __name__ == "__main__":
    sys.argv[0] = re.sub(r"(-script\\.pyw|\\.exe)?$", "", sys.argv[0])
    sys.exit(lightning_main())
"""


@dataclass(frozen=True)
class ScriptCheck:
    """What the ``lightning`` script of a bin folder is.

    Attributes:
        path: the script's path.
        status: ``"ours"``; ``"replaced"`` (another package's script, e.g. lightning-sdk's); ``"missing"``.
        target: for a replaced script, the ``module:function`` it runs, when it can be read off the script.
    """

    path: Path
    status: Literal["ours", "replaced", "missing"]
    target: str | None = None


def default_bin_dir() -> Path:
    """The folder of this environment's console scripts (``.venv/bin``)."""
    return Path(sysconfig.get_path("scripts"))


def check_lightning_script(bin_dir: str | os.PathLike | None = None) -> ScriptCheck:
    """Reads the ``lightning`` script of ``bin_dir`` (default: this environment's) and says whose it is."""
    path = Path(bin_dir if bin_dir is not None else default_bin_dir()) / SCRIPT_NAME
    if not path.is_file():
        return ScriptCheck(path, "missing")
    text = path.read_text(encoding="utf-8", errors="replace")
    if _OURS.search(text):
        return ScriptCheck(path, "ours")
    entry = _ENTRY.search(text)
    return ScriptCheck(path, "replaced", f"{entry.group(1)}:{entry.group(2)}" if entry else None)


def shim_text(python: str | None = None) -> str:
    """Our ``lightning`` script for the interpreter ``python`` (default: this one), as pip writes console scripts:
    a ``#!`` line, or the ``/bin/sh`` re-exec form when the interpreter's path is too long or has spaces."""
    python = python or sys.executable
    if len(python) < 120 and " " not in python:
        return f"#!{python}\n{_SHIM}"
    return f"#!/bin/sh\n'''exec' \"{python}\" \"$0\" \"$@\"\n' '''\n{_SHIM}"


def restore_lightning_script(bin_dir: str | os.PathLike | None = None, python: str | None = None) -> Path:
    """Writes our ``lightning`` script into ``bin_dir`` (default: this environment's), executable, replacing what is
    there; the replaced script is kept as ``lightning.replaced``.

    Raises:
        OSError: on Windows, where console scripts are ``.exe`` launchers (reinstall quest-lightning instead).
    """
    if os.name == "nt":
        raise OSError(
            "on Windows the lightning command is an .exe launcher; restore it with "
            "`pip install --force-reinstall --no-deps quest-lightning`."
        )
    path = Path(bin_dir if bin_dir is not None else default_bin_dir()) / SCRIPT_NAME
    if path.is_file():
        shutil.copy2(path, path.with_name(f"{SCRIPT_NAME}.replaced"))
    tmp = path.with_name(f".{SCRIPT_NAME}.tmp")
    tmp.write_text(shim_text(python), encoding="utf-8")
    tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRUSR | stat.S_IRGRP)
    os.replace(tmp, path)
    return path


def doctor(bin_dir: str | os.PathLike | None = None, fix: bool = False, out: Callable[[str], None] = print) -> int:
    """Checks the ``lightning`` command and, with ``fix``, restores ours. Prints what it found through ``out``.

    Returns:
        0 when the command is ours (or was restored), 1 when it is not.
    """
    from quest_lightning.cli.main import find_sdk_cli

    check = check_lightning_script(bin_dir)
    sdk = "installed" if find_sdk_cli() is not None else "not installed"
    out(f"lightning-sdk: {sdk}")
    on_path = shutil.which(SCRIPT_NAME)
    if bin_dir is None and on_path and Path(on_path).resolve() != check.path.resolve():
        out(f"note: `lightning` on PATH is {on_path}, not this environment's {check.path}")
    if check.status == "ours":
        out(
            f"ok: {check.path} is quest-lightning's `lightning` (lightning run SCRIPT.py; other commands go to the SDK)"
        )
        return 0
    if check.status == "missing":
        out(f"problem: there is no {check.path}")
    else:
        runs = f" (it runs {check.target})" if check.target else ""
        out(
            f"problem: {check.path} is not quest-lightning's `lightning`{runs}: another package, usually "
            "lightning-sdk, installed its own, so `lightning run SCRIPT.py` no longer launches scripts."
        )
    if not fix:
        out("fix: `quest-lightning doctor --fix` (or use `quest-lightning run SCRIPT.py ...`, which is never replaced)")
        return 1
    path = restore_lightning_script(check.path.parent)
    out(f"fixed: restored {path}; every command other than `lightning run SCRIPT.py` still goes to lightning-sdk")
    return 0
