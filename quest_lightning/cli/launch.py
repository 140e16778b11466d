"""Launching training scripts the way ``fabric run`` does, and reading its settings back inside a script.

``fabric run`` (formerly ``lightning run model``) passes its launcher options to the script through ``LT_*``
environment variables. Only :class:`lightning.fabric.Fabric` reads them; a :class:`lightning.pytorch.Trainer`
does not, so a recipe should build its Trainer with :func:`trainer_kwargs_from_launcher_env`::

    trainer = L.Trainer(max_epochs=10, **trainer_kwargs_from_launcher_env())

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

__all__ = ["LAUNCHER_ENV_VARS", "launch_script", "num_processes", "trainer_kwargs_from_launcher_env"]

LAUNCHER_ENV_VARS: dict[str, str] = {
    "accelerator": "LT_ACCELERATOR",
    "devices": "LT_DEVICES",
    "num_nodes": "LT_NUM_NODES",
    "precision": "LT_PRECISION",
    "strategy": "LT_STRATEGY",
}
"""Trainer argument → environment variable set by ``fabric run`` and by our launcher."""

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
