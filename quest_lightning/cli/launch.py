"""Launching training scripts the way ``fabric run`` does, and reading its settings back inside a script.

``fabric run`` (formerly ``lightning run model``) passes its launcher options to the script through ``LT_*``
environment variables. Only :class:`lightning.fabric.Fabric` reads them; a :class:`lightning.pytorch.Trainer`
does not, so a recipe should build its Trainer with :func:`trainer_kwargs_from_launcher_env`::

    trainer = L.Trainer(max_epochs=10, **trainer_kwargs_from_launcher_env())

Which setting wins when a script's own config names one too (:func:`launcher_overrides`): an option given to the
launcher on its command line (``--devices 2``) wins; an option the launcher only defaulted does not. In a launch
that started several processes, the device and node counts always come from the launcher, since the processes
already exist and the Trainer must join them.

This module is light on purpose (no torch import at module level) so that recipes and the CLI start quickly.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import sys
from argparse import Namespace
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "EXPLICIT_OPTIONS_VAR",
    "LAUNCHER_ENV_VARS",
    "launch_script",
    "launcher_overrides",
    "num_processes",
    "trainer_kwargs_from_launcher_env",
]

LAUNCHER_ENV_VARS: dict[str, str] = {
    "accelerator": "LT_ACCELERATOR",
    "devices": "LT_DEVICES",
    "num_nodes": "LT_NUM_NODES",
    "precision": "LT_PRECISION",
    "strategy": "LT_STRATEGY",
}
"""Trainer argument → environment variable set by ``fabric run`` and by our launcher."""
EXPLICIT_OPTIONS_VAR = "QUEST_LAUNCHER_OPTIONS"
"""Set by our launcher: the Trainer arguments (comma-separated keys of :data:`LAUNCHER_ENV_VARS`) that were given on
its command line rather than defaulted."""

_INT = re.compile(r"^-?\d+$")


def _parse_devices(value: str) -> int | str | list[int]:
    value = value.strip()
    if _INT.match(value):
        return int(value)
    if value.startswith("["):
        parsed = json.loads(value)
        if isinstance(parsed, list) and all(isinstance(v, int) for v in parsed):
            return parsed
        raise ValueError(f"LT_DEVICES must be an int, 'auto', '0,1' or a list of ints, got {value!r}")
    return value  # "auto", "0,1", "1," ...: the Trainer parses these strings itself


def trainer_kwargs_from_launcher_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Returns Trainer keyword arguments for the launcher settings found in ``LT_*`` environment variables.

    Only variables that are set (and not empty) appear in the result, so the output can be splatted into
    ``Trainer(...)`` after the recipe's own defaults. ``devices`` and ``num_nodes`` become ints where they are
    numbers; ``accelerator``, ``precision`` and ``strategy`` stay strings (the Trainer accepts ``"32"``, ``"bf16"``).

    Args:
        environ: mapping to read instead of :data:`os.environ`.

    Returns:
        A dict with some of the keys ``accelerator``, ``devices``, ``num_nodes``, ``precision``, ``strategy``.

    Example:
        >>> trainer_kwargs_from_launcher_env({"LT_DEVICES": "2", "LT_ACCELERATOR": "cpu", "LT_NUM_NODES": "1"})
        {'accelerator': 'cpu', 'devices': 2, 'num_nodes': 1}
    """
    env = os.environ if environ is None else environ
    kwargs: dict[str, Any] = {}
    for key, var in LAUNCHER_ENV_VARS.items():
        value = env.get(var)
        if value is None or value == "":
            continue
        if key == "devices":
            kwargs[key] = _parse_devices(value)
        elif key == "num_nodes":
            kwargs[key] = int(value)
        else:
            kwargs[key] = value
    return kwargs


def launcher_overrides(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The Trainer arguments a launcher decides, which must win over the script's config.

    These are the options given on the launcher's command line (listed in :data:`EXPLICIT_OPTIONS_VAR` by
    ``quest-lightning run`` / ``lightning run``) and, when the script runs as one of several processes that a
    launcher started (``WORLD_SIZE`` > 1, e.g. under ``fabric run --devices 2``), ``devices`` and ``num_nodes``:
    those processes already exist, so a config that asks for another count would start unrelated trainings.

    Args:
        environ: mapping to read instead of :data:`os.environ`.

    Returns:
        A subset of :func:`trainer_kwargs_from_launcher_env`.

    Example:
        >>> launcher_overrides({"LT_DEVICES": "2", "LT_NUM_NODES": "1", "QUEST_LAUNCHER_OPTIONS": "devices"})
        {'devices': 2}
        >>> launcher_overrides({"LT_DEVICES": "2", "LT_NUM_NODES": "1", "WORLD_SIZE": "2"})
        {'devices': 2, 'num_nodes': 1}
    """
    env = os.environ if environ is None else environ
    given = trainer_kwargs_from_launcher_env(env)
    wins = {key for key in env.get(EXPLICIT_OPTIONS_VAR, "").split(",") if key}
    if _INT.match(env.get("WORLD_SIZE", "").strip()) and int(env["WORLD_SIZE"]) > 1:
        wins |= {"devices", "num_nodes"}
    return {key: value for key, value in given.items() if key in wins}


def num_processes(accelerator: str | None, devices: str, strategy: str | None = None) -> int:
    """Number of processes the launcher starts on this node, with the rules of ``fabric run``.

    Args:
        accelerator: ``"cpu"``, ``"gpu"``, ``"cuda"``, ``"mps"``, ``"auto"`` or ``None`` (auto).
        devices: device count, list (``"0,1"``) or ``"auto"`` (one process, as in ``fabric run``).
        strategy: ``"dp"`` always runs one process.

    Returns:
        The process count per node.
    """
    if strategy == "dp":
        return 1
    from lightning.fabric.cli import _get_num_processes

    return _get_num_processes(accelerator, devices)


def _run_in_process(script: str, script_args: Sequence[str]) -> None:
    """Runs ``script`` as ``__main__`` in this interpreter, like ``python script args`` would."""
    path = os.path.abspath(script)
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = [script, *script_args]
    sys.path.insert(0, os.path.dirname(path))
    try:
        runpy.run_path(path, run_name="__main__")
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path


def launch_script(
    script: str,
    script_args: Sequence[str] = (),
    *,
    accelerator: str | None = None,
    strategy: str | None = None,
    devices: str = "1",
    num_nodes: int = 1,
    node_rank: int = 0,
    main_address: str = "127.0.0.1",
    main_port: int = 29400,
    precision: str | None = None,
    explicit: Sequence[str] = (),
) -> int:
    """Runs a script with ``fabric run`` semantics.

    The ``LT_*`` variables are set with Lightning's own ``lightning.fabric.cli._set_env_variables``. One process on
    one node runs the script in this interpreter (``runpy``, no torchrun overhead; the script may still start its
    own processes, e.g. a Trainer with ``devices=2``). Anything larger goes through Lightning's torchrun launcher
    (``lightning.fabric.cli.main`` → ``torch.distributed.run``), which sets ``RANK``, ``WORLD_SIZE``, ... per process.

    Args:
        script: path of the Python script.
        script_args: arguments for the script, passed unchanged.
        accelerator: hardware accelerator (``LT_ACCELERATOR``).
        strategy: distribution strategy (``LT_STRATEGY``).
        devices: devices per node (``LT_DEVICES``).
        num_nodes: number of machines (``LT_NUM_NODES``).
        node_rank: index of this machine.
        main_address: address of the machine with node rank 0.
        main_port: port of the rendezvous on the main machine.
        precision: precision setting (``LT_PRECISION``).
        explicit: the Trainer arguments (keys of :data:`LAUNCHER_ENV_VARS`) given on the launcher's command line;
            they win over the script's config (:func:`launcher_overrides`).

    Returns:
        Exit status: 0 on success, 1 if a torchrun worker failed. A ``SystemExit`` raised by an in-process script
        propagates unchanged.
    """
    from lightning.fabric import cli as fabric_cli

    args = Namespace(
        script=script,
        accelerator=accelerator,
        strategy=strategy,
        devices=str(devices),
        num_nodes=int(num_nodes),
        node_rank=int(node_rank),
        main_address=main_address,
        main_port=int(main_port),
        precision=precision,
    )
    nproc = num_processes(accelerator, args.devices, strategy)
    unknown = sorted(set(explicit) - set(LAUNCHER_ENV_VARS))
    if unknown:
        raise ValueError(f"explicit={unknown} are not launcher settings: use keys of {sorted(LAUNCHER_ENV_VARS)}")
    os.environ[EXPLICIT_OPTIONS_VAR] = ",".join(explicit)  # torchrun's workers inherit the environment
    if nproc == 1 and args.num_nodes == 1:
        fabric_cli._set_env_variables(args)
        _run_in_process(script, script_args)
        return 0

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    try:
        fabric_cli.main(args, list(script_args))
    except ChildFailedError:
        return 1  # torchrun has already printed which worker failed and why
    return 0
