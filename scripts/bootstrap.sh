#!/usr/bin/env bash
# Create .venv (if missing) and install quest-lightning with its dev and docs extras into it.
# TORCH_SPEC lets a machine choose its torch build; the default matches the wheels this project is tested with.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  # shellcheck disable=SC2086
  .venv/bin/python -m pip install -q $TORCH_SPEC
fi
.venv/bin/python -m pip install -q -e ".[dev,docs]"
# NeuroBench's own metric code, for the tests that cross-check quest_lightning's NeuroBench metrics against it. Its
# wheel requires torchaudio, tonic and numba, which the metric modules do not import, so it goes in without them.
.venv/bin/python -m pip install -q --no-deps "neurobench==2.3.0"
