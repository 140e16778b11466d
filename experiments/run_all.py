"""Run every experiment of docs/results.md at one scale, in order, and time each step.

    .venv/bin/python experiments/run_all.py --scale small   # CPU: about 17 minutes of training on 2 (shared) cores
    .venv/bin/python experiments/run_all.py --scale full    # GPU: 1 + 16 runs of the paper schedule

Order: main.py (the one training run the weight-update, activity and energy analyses read), weight_updates.py,
activity.py, energy.py, precision_neuron.py (16 runs). Each step is the documented script command; finished runs are
reused unless --force is given (so a second call only redoes the analyses). The wall time of every training run is in
experiments/results/<scale>/<experiment>.json.
"""

from __future__ import annotations

import subprocess
import time

from common import REPO, python, scale_parser

STEPS = ("main.py", "weight_updates.py", "activity.py", "energy.py", "precision_neuron.py")


def main() -> None:
    p = scale_parser(__doc__)
    p.add_argument("--skip", nargs="*", default=[], help="steps to skip, e.g. precision_neuron.py")
    args = p.parse_args()
    timings = []
    for step in STEPS:
        if step in args.skip:
            continue
        cmd = [python(), f"experiments/{step}", "--scale", args.scale]
        cmd += ["--force"] if args.force else []
        cmd += ["--dry-run"] if args.dry_run else []
        print(f"== {' '.join(cmd)}", flush=True)
        start = time.time()
        subprocess.run(cmd, cwd=REPO, check=True)
        timings.append({"command": " ".join(cmd), "wall_s": round(time.time() - start, 1)})
    for t in timings:
        print(f"{t['wall_s']:8.1f} s  {t['command']}")


if __name__ == "__main__":
    main()
