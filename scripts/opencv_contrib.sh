#!/usr/bin/env bash
# Make OpenCV's contrib build the one `import cv2` loads. Photo-search verification describes keypoints with its
# TEBLID descriptor (models/rerank.py), but rapidocr-onnxruntime pulls opencv-python, whose cv2 files are the same
# paths as contrib's: whichever pip wrote last wins. Run after every `pip install` of Sightline; idempotent.
# Usage: scripts/opencv_contrib.sh [PYTHON]   (default: python)
set -euo pipefail
PY="${1:-python}"
if ! "$PY" -c "import cv2; cv2.xfeatures2d.TEBLID_create" 2>/dev/null; then
  VERSION="$("$PY" -c 'import importlib.metadata as m; print(m.version("opencv-contrib-python-headless"))')"
  "$PY" -m pip install -q --no-cache-dir --no-deps --force-reinstall "opencv-contrib-python-headless==$VERSION"
fi
