"""Appearance vectors: one embedding space per kind, every vector L2-normalised.

- vehicle: MobileNet v1 embedding (1024-d), generic appearance;
- person: person-reidentification-retail-0288 (256-d);
- face: dlib's ResNet (128-d) on a 5-point aligned chip; same person below Euclidean 0.6.
"""
from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import cv2
import dlib
import numpy as np

from models.imageops import blob
from models.records import BBox
from models.registry import ModelError
from models.runtime import OpenVinoModel


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


class Embedder:
    """Turns crops of one kind into unit vectors of one named space."""

    space: str
    dim: int
    version: str

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError


class VehicleEmbedder(Embedder):
    space, dim, version = "vehicle", 1024, "mobilenet_v1_embedding"

    def __init__(self, model_path: Path):
        self.model = OpenVinoModel(model_path)

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        if not crops:
            return np.zeros((0, self.dim), np.float32)
        out = next(iter(self.model.infer(blob(crops, 224, 224, rgb=True, nchw=False, dtype=np.uint8)).values()))
        return l2_normalise(out.reshape(len(crops), -1))


class PersonEmbedder(Embedder):
    space, dim, version = "person", 256, "person-reidentification-retail-0288"

    def __init__(self, model_path: Path):
        self.model = OpenVinoModel(model_path)

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        if not crops:
            return np.zeros((0, self.dim), np.float32)
        out = next(iter(self.model.infer(blob(crops, 128, 256)).values()))
        return l2_normalise(out.reshape(len(crops), -1))


def _dlib_model(name: str) -> str:
    """Path of a dlib model file inside the face-recognition-models wheel.

    Found without importing the package: its __init__ needs pkg_resources, which new setuptools dropped.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("face-recognition-models is not installed (pip install face-recognition-models==0.3.0)")
    return str(Path(spec.submodule_search_locations[0]) / "models" / name)


class FaceEmbedder:
    """dlib 128-d face descriptors from a frame and YuNet boxes (5-point alignment by dlib's predictor)."""

    space, dim, version = "face", 128, "dlib_face_recognition_resnet_model_v1"

    def __init__(self) -> None:
        self.shape_predictor = dlib.shape_predictor(_dlib_model("shape_predictor_5_face_landmarks.dat"))
        self.encoder = dlib.face_recognition_model_v1(_dlib_model("dlib_face_recognition_resnet_model_v1.dat"))
        self._lock = threading.Lock()

    def embed_faces(self, frame: np.ndarray, boxes: list[BBox]) -> np.ndarray:
        """One descriptor per face box; the vectors are unit-normalised (distance 0.6 ≈ cosine 0.82)."""
        if not boxes:
            return np.zeros((0, self.dim), np.float32)
        rgb = np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        with self._lock:
            shapes = dlib.full_object_detections()
            for b in boxes:
                shapes.append(self.shape_predictor(rgb, dlib.rectangle(int(b.x1), int(b.y1), int(b.x2), int(b.y2))))
            descriptors = self.encoder.compute_face_descriptor(rgb, shapes)
        return l2_normalise(np.array([np.array(d) for d in descriptors]))
