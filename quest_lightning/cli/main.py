"""Command-line entry points: ``quest-lightning`` and a ``lightning`` command that brings back ``lightning run``.

Lightning 2.x no longer ships ``lightning run`` (it became ``fabric run`` in 2.3 and was removed in 2.5.1 because
the ``lightning-sdk`` package owns a ``lightning`` command whose ``run`` group starts cloud jobs). Our ``lightning``
console script therefore handles only::

    lightning run [LAUNCHER OPTIONS] SCRIPT.py [SCRIPT ARGS]
    lightning run model [LAUNCHER OPTIONS] SCRIPT.py [SCRIPT ARGS]

and hands every other command line, unchanged, to lightning-sdk's CLI when that package is installed.
``quest-lightning run`` does the same launching and is never shadowed by the SDK.

Launcher options are those of ``fabric run``; everything after the script path goes to the script untouched
(``--help`` included).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from quest_lightning.cli.launch import (
    LAUNCHER_ENV_VARS,
    launch_script,
    num_processes,
    trainer_kwargs_from_launcher_env,
)

__all__ = ["find_sdk_cli", "lightning_main", "main", "trainer_kwargs_from_launcher_env"]

# Launcher options that take a value (fabric run's spellings, dashes and underscores).
_VALUE_OPTIONS = frozenset(
    {
        "--accelerator",
        "--strategy",
        "--devices",
        "--num-nodes",
        "--num_nodes",
        "--node-rank",
        "--node_rank",
        "--main-address",
        "--main_address",
        "--main-port",
        "--main_port",
        "--precision",
    }
)
_HELP_OPTIONS = frozenset({"-h", "--help"})
_SCRIPT_SUFFIXES = (".py",)

_LIGHTNING_USAGE = """\
usage: lightning run [LAUNCHER OPTIONS] SCRIPT.py [SCRIPT ARGS ...]
       lightning run model [LAUNCHER OPTIONS] SCRIPT.py [SCRIPT ARGS ...]

Runs a training script the way `fabric run` (formerly `lightning run model`) does. This `lightning` command comes
from quest-lightning; every other command belongs to the lightning-sdk package, which is not installed.

launcher options (before the script; see `lightning run --help`):
  --accelerator {cpu,gpu,cuda,mps,auto}   --devices N|auto|0,1   --num-nodes N   --node-rank N
  --main-address HOST   --main-port PORT   --precision 32-true|16-mixed|bf16-mixed|...   --strategy ddp|...

Arguments after SCRIPT.py go to the script unchanged, e.g. `lightning run recipes/vgg6_cifar10.py --help`.
The same launcher is available as `quest-lightning run`, which the SDK's command cannot shadow.
"""


def _split_run_argv(tokens: Sequence[str]) -> tuple[list[str], str | None, list[str]]:
    """Splits ``[OPTIONS] SCRIPT [ARGS]`` into launcher option tokens, the script and the script's arguments."""
    options: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "--":
            rest = list(tokens[i + 1 :])
            return options, (rest[0] if rest else None), rest[1:]
        if token.startswith("-") and token != "-":
            name = token.split("=", 1)[0]
            if name in _VALUE_OPTIONS and "=" not in token:
                options.extend(tokens[i : i + 2])
                i += 2
            else:
                options.append(token)
                i += 1
            continue
        return options, token, list(tokens[i + 1 :])
    return options, None, []


def _is_ours(run_tokens: Sequence[str]) -> bool:
    """Whether ``lightning run <run_tokens>`` is a script launch (ours) rather than an SDK command."""
    if run_tokens and run_tokens[0] == "model":
        return True
    options, script, _ = _split_run_argv(run_tokens)
    if script is None or not script.endswith(_SCRIPT_SUFFIXES):
        return False
    return all(opt.split("=", 1)[0] in _VALUE_OPTIONS | _HELP_OPTIONS for opt in options if opt.startswith("-"))


def _run_parser(prog: str) -> argparse.ArgumentParser:
    from typing import get_args

    from lightning.fabric.cli import _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS, _SUPPORTED_ACCELERATORS

    parser = argparse.ArgumentParser(
        prog=prog,
        usage="%(prog)s [LAUNCHER OPTIONS] SCRIPT [SCRIPT ARGS ...]",
        description=(
            "Run a training script with the launcher of `fabric run`. LT_* environment variables carry the options "
            "to the script (a Trainer reads them via quest_lightning.cli.launch.trainer_kwargs_from_launcher_env). One "
            "process on one node runs in this interpreter; more go through torchrun. Arguments after SCRIPT are "
            "passed to the script unchanged."
        ),
    )
    parser.add_argument("script", metavar="SCRIPT", help="path of the Python script to run")
    parser.add_argument(
        "--accelerator", choices=_SUPPORTED_ACCELERATORS, default=None, help="hardware accelerator to run on"
    )
    parser.add_argument(
        "--strategy", default=None, help="strategy across devices (ddp, ddp_find_unused_parameters_true, fsdp, dp...)"
    )
    parser.add_argument(
        "--devices", default="1", help="devices per node: a number, a list such as '0,1', or 'auto' (default: 1)"
    )
    parser.add_argument("--num-nodes", "--num_nodes", dest="num_nodes", type=int, default=1, help="number of machines")
    parser.add_argument(
        "--node-rank", "--node_rank", dest="node_rank", type=int, default=0, help="index of this machine (0-based)"
    )
    parser.add_argument(
        "--main-address", "--main_address", dest="main_address", default="127.0.0.1", help="address of node 0"
    )
    parser.add_argument(
        "--main-port", "--main_port", dest="main_port", type=int, default=29400, help="rendezvous port on node 0"
    )
    parser.add_argument(
        "--precision",
        choices=get_args(_PRECISION_INPUT_STR) + get_args(_PRECISION_INPUT_STR_ALIAS),
        default=None,
        help="numeric precision, e.g. 32-true, 16-mixed, bf16-mixed",
    )
    return parser


def _exit_code(err: SystemExit) -> int:
    if err.code is None:
        return 0
    return err.code if isinstance(err.code, int) else 1


def _run_command(tokens: Sequence[str], prog: str) -> int:
    """Parses ``[model] [LAUNCHER OPTIONS] SCRIPT [ARGS]`` and launches the script."""
    tokens = list(tokens)
    if tokens and tokens[0] == "model":
        tokens = tokens[1:]
    options, script, script_args = _split_run_argv(tokens)
    parser = _run_parser(prog)
    try:
        ns = parser.parse_args([*options, "--", script] if script is not None else options)
    except SystemExit as err:  # --help or a bad option: argparse has printed the message
        return _exit_code(err)
    if not os.path.isfile(ns.script):
        parser.print_usage(sys.stderr)
        print(f"{prog}: error: script not found: {ns.script}", file=sys.stderr)
        return 2
    try:
        num_processes(ns.accelerator, ns.devices, ns.strategy)
    except Exception as err:  # ValueError or Lightning's MisconfigurationException for bad --devices
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    return launch_script(
        ns.script,
        script_args,
        accelerator=ns.accelerator,
        strategy=ns.strategy,
        devices=ns.devices,
        num_nodes=ns.num_nodes,
        node_rank=ns.node_rank,
        main_address=ns.main_address,
        main_port=ns.main_port,
        precision=ns.precision,
        explicit=_given_settings(options),
    )


def _given_settings(options: Sequence[str]) -> list[str]:
    """The Trainer settings (``devices``, ``num_nodes``, ...) named by the launcher option tokens."""
    names = (token.split("=", 1)[0].lstrip("-").replace("-", "_") for token in options if token.startswith("--"))
    return sorted({name for name in names if name in LAUNCHER_ENV_VARS})


def find_sdk_cli() -> Callable[[], Any] | None:
    """Finds the ``lightning`` console script of the ``lightning-sdk`` distribution through its entry point.

    Returns:
        The entry-point function (it reads ``sys.argv``), or ``None`` when lightning-sdk is not installed.
    """
    from importlib.metadata import entry_points

    for ep in entry_points(group="console_scripts", name="lightning"):
        if ep.value.startswith("quest_lightning"):
            continue
        dist = getattr(ep, "dist", None)
        dist_name = (dist.metadata["Name"] or "") if dist is not None else ""
        normalized = dist_name.lower().replace("_", "-").replace(".", "-")
        if normalized == "lightning-sdk" or ep.value.startswith("lightning_sdk"):
            return ep.load()
    return None


def _delegate_to_sdk(argv: Sequence[str]) -> int:
    """Hands ``argv`` unchanged to lightning-sdk's ``lightning`` command, or prints our usage (exit 2) without it."""
    sdk_main = find_sdk_cli()
    if sdk_main is None:
        if list(argv) in (["-h"], ["--help"]):
            print(_LIGHTNING_USAGE, end="")
            return 0
        print(_LIGHTNING_USAGE, end="", file=sys.stderr)
        if argv:
            print(f"\nlightning: error: unsupported command: {' '.join(argv)}", file=sys.stderr)
        return 2
    saved = sys.argv
    sys.argv = [saved[0] if saved else "lightning", *argv]
    try:
        result = sdk_main()
    finally:
        sys.argv = saved
    if result is None or isinstance(result, int):
        return result or 0
    print(result, file=sys.stderr)
    return 1


def lightning_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lightning`` console script.

    ``lightning run [model] [LAUNCHER OPTIONS] SCRIPT.py [ARGS]`` launches the script (see :func:`main`'s ``run``);
    any other command line goes unchanged to lightning-sdk's CLI if installed, else usage is printed (exit 2).

    Args:
        argv: arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns:
        The exit status.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run" and _is_ours(argv[1:]):
        return _run_command(argv[1:], prog="lightning run")
    return _delegate_to_sdk(argv)


def _report_command(run_dir: str, out_dir: str | None, force: bool = False) -> int:
    try:
        from quest_lightning.report import build_report
    except ImportError as err:
        print(
            f"quest-lightning report: the report builder is not available ({err}). It needs "
            "quest_lightning.report.build_report(run_dir, out_dir=None); check the installation of quest-lightning.",
            file=sys.stderr,
        )
        return 1
    from quest_lightning.summary import SummaryFormatError

    try:
        result = build_report(run_dir, out_dir=out_dir, **({"force": True} if force else {}))
    except (FileNotFoundError, FileExistsError, SummaryFormatError) as err:  # no or bad summary; a folder not ours
        print(f"quest-lightning report: {err}", file=sys.stderr)
        return 1
    print(result)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``quest-lightning`` console script.

    Subcommands:
        ``run [LAUNCHER OPTIONS] SCRIPT [ARGS]``: launch a training script (options as for ``fabric run``).
        ``export CHECKPOINT|RUN_DIR --out DIR``: write a deployment bundle (:mod:`quest_lightning.deploy`).
        ``report RUN_DIR [--out-dir DIR] [--force]``: build the report of a finished run.
        ``sweep RUN_DIR|CHECKPOINT --sigma V [V ...] [OPTIONS]``: accuracy against device variation per R-S pattern,
        saved into the run folder and drawn by the report (:mod:`quest_lightning.cli.sweep`).
        ``doctor [--fix] [--bin-dir DIR]``: check that ``lightning`` is still ours (lightning-sdk replaces it).

    Args:
        argv: arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns:
        The exit status.
    """
    from quest_lightning import __version__

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run":
        return _run_command(argv[1:], prog="quest-lightning run")
    if argv and argv[0] == "sweep":
        from quest_lightning.cli.sweep import sweep_main

        return sweep_main(argv[1:])
    if argv and argv[0] == "export":  # its own parser, imported only when asked for (it loads torch)
        from quest_lightning.deploy.command import export_command

        return export_command(argv[1:])
    parser = argparse.ArgumentParser(
        prog="quest-lightning", description="Quantized, energy-aware SNN training with PyTorch Lightning."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser(
        "run",
        help="run a training script: run [--accelerator A] [--devices N] [--num-nodes N] [--precision P] "
        "[--strategy S] SCRIPT [ARGS] (see `quest-lightning run --help`)",
    )
    sub.add_parser(
        "sweep",
        help="accuracy against device variation per R-S pattern: sweep RUN_DIR|CHECKPOINT --sigma V [V ...] "
        "[--vary F] [--draws N] [--patterns all|best|INDEX ...] [--data.KEY VALUE] [--limit-test N] [--force] "
        "(see `quest-lightning sweep --help`)",
    )
    sub.add_parser(
        "export",
        help="write a deployment bundle (integer codes, thresholds, programming map): export CHECKPOINT|RUN_DIR "
        "--out DIR (see `quest-lightning export --help`)",
    )
    report = sub.add_parser("report", help="build the report of a finished run", description="Build a run report.")
    report.add_argument("run_dir", metavar="RUN_DIR", help="folder of the run")
    report.add_argument(
        "--out-dir",
        "--out_dir",
        dest="out_dir",
        default=None,
        help="where to write the report (default RUN_DIR/report); a non-empty folder that holds no earlier report "
        "is refused unless --force",
    )
    report.add_argument(
        "--force", action="store_true", help="write into a non-empty --out-dir, replacing same-named files"
    )
    doctor = sub.add_parser(
        "doctor",
        help="check that the `lightning` command is quest-lightning's (lightning-sdk replaces it); --fix restores it",
        description="Check the installation's `lightning` command and restore it with --fix.",
    )
    doctor.add_argument("--fix", action="store_true", help="restore quest-lightning's `lightning` script")
    doctor.add_argument(
        "--bin-dir", dest="bin_dir", default=None, help="folder of the console scripts (default: this environment's)"
    )
    try:
        ns = parser.parse_args(argv)
    except SystemExit as err:
        return _exit_code(err)
    if ns.command == "report":
        return _report_command(ns.run_dir, ns.out_dir, ns.force)
    if ns.command == "doctor":
        from quest_lightning.cli.doctor import doctor as run_doctor

        return run_doctor(ns.bin_dir, fix=ns.fix)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
