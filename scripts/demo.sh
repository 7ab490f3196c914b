#!/usr/bin/env bash
# Set up from scratch, then ingest the shared eval photos on the embedded default (SQLite + FAISS in ./data).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/sightline --data data demo
