"""Model registry, inference runtime, detectors, readers, classifiers, embedders and the frame pipeline."""
import os

# OpenCV's DNN warns about inference targets on every face detector it builds; keep its log to errors.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
