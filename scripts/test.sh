#!/usr/bin/env bash
# Set up (idempotent), lint and type-check, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Browser tests drive Debian's Chromium (headless) through Playwright; CJK fonts render plates.
if ! command -v chromium >/dev/null || ! fc-list 2>/dev/null | grep -qi "wenquanyi"; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium fonts-wqy-zenhei >/dev/null
fi
# The queue tests start a real redis-server of their own (tests/test_queue.py), the MQTT tests a real mosquitto
# (tests/test_sources.py).
if ! command -v redis-server >/dev/null || { ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; }; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server mosquitto >/dev/null
fi
# Lint (ruff, with bugbear) and types (mypy), configured in pyproject.toml, before the tests.
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/python -m pytest -q -rs "$@"
