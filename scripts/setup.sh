#!/usr/bin/env bash
# Create .venv in the checkout, install Sightline into it, and pull the model weights.
# Usage: scripts/setup.sh [MODEL_MIRROR]   (default: ../shared/models beside the checkout)
set -euo pipefail
cd "$(dirname "$0")/.."
MIRROR="${1:-${SIGHTLINE_MODEL_MIRROR:-../shared/models}}"
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# The CPU build of torch first: a plain `torch` requirement would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[test]'
scripts/opencv_contrib.sh .venv/bin/python
# The web app's map library comes from the npm registry (web/package-lock.json pins it).
npm ci --prefix web --no-audit --no-fund --loglevel=error
.venv/bin/sightline models pull --mirror "$MIRROR"
