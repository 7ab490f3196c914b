"""Appearance vectors: one embedding space per kind, every vector L2-normalised.

- vehicle: MobileNet v1 embedding (1024-d, generic appearance) beside person-reidentification-retail-0288 (256-d);
- person: person-reidentification-retail-0288 (256-d) beside OSNet x0.25 (512-d);
- face: dlib's ResNet (128-d) on a 5-point aligned chip; same person below Euclidean 0.6.
"""
from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import dlib
import numpy as np
import openvino as ov

from models.imageops import blob
from models.records import BBox
from models.registry import ModelError, model_path
from models.runtime import OpenVinoModel, int8_pointwise_convolutions


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class CropInput:
    """How a model wants its crops: size, channel order, layout and dtype (values are not rescaled)."""

    width: int
    height: int
    rgb: bool = False
    nchw: bool = True
    dtype: type = np.float32
    mean: tuple[float, float, float] | None = None  # per channel, on values scaled to 0..1 (ImageNet-style)
    std: tuple[float, float, float] | None = None


class CropEmbedder:
    """Turns crops of one kind into unit vectors of one named embedding space."""

    def __init__(self, space: str, dim: int, version: str, model_path: Path, layout: CropInput,
                 rewrite: Callable[[ov.Model], object] | None = None, precision: str | None = None):
        self.space, self.dim, self.version, self.layout = space, dim, version, layout
        self.model = OpenVinoModel(model_path, rewrite=rewrite, precision=precision)

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        if not crops:
            return np.zeros((0, self.dim), np.float32)
        lay = self.layout
        batch = blob(crops, lay.width, lay.height, rgb=lay.rgb, nchw=lay.nchw, dtype=lay.dtype)
        if lay.mean is not None and lay.std is not None:
            shape = (1, 3, 1, 1) if lay.nchw else (1, 1, 1, 3)
            batch = ((batch / 255.0 - np.reshape(lay.mean, shape)) / np.reshape(lay.std, shape)).astype(np.float32)
        out = next(iter(self.model.infer(batch).values()))
        return l2_normalise(out.reshape(len(crops), -1))


class ConcatEmbedder:
    """Several models' unit vectors side by side, renormalised: their cosines average, their errors differ."""

    def __init__(self, space: str, parts: list[CropEmbedder]):
        self.space, self.parts = space, parts
        self.dim = sum(p.dim for p in parts)
        self.version = "+".join(p.version for p in parts)

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        if not crops:
            return np.zeros((0, self.dim), np.float32)
        return l2_normalise(np.hstack([p.embed(crops) for p in self.parts]))


def vehicle_embedder(model_dir: Path | None = None) -> ConcatEmbedder:
    """MobileNet v1 (1024-d, generic appearance) beside the person re-id model retail-0288 (256-d): no
    vehicle-specific model is to be had offline, and a model trained to tell look-alike people apart by texture and
    colour layout tells look-alike vehicles apart too.

    On ../shared/eval/reid/vehicle, rank-1 / mAP (`sightline eval reid --kind vehicle` for this pair; the others
    compared once with the same metric): MobileNet alone 0.757 / 0.843, retail-0288 alone 0.771 / 0.847, the pair
    0.857 / 0.912 (OSNet beside MobileNet 0.786, all three 0.843). The pair was chosen on that set; choosing among
    those five again on 4/5 of the identities picked it in all 5 folds, 0.857 on the held-out fifths. At 100k
    stored (`bench photo-search`) rank-1 before verification went 0.486 → 0.571. Cost: 3–4 ms a vehicle crop
    (ingest at 0.92 of its speed), and 1,280 dimensions instead of 1,024.
    """
    # Its 1×1 convolutions in int8 (the same sums: int8_pointwise_convolutions), so the same version: 2× faster.
    mobilenet = CropEmbedder("vehicle", 1024, "mobilenet_v1_embedding",
                             model_path("mobilenet_v1_embedding.tflite", model_dir),
                             CropInput(224, 224, rgb=True, nchw=False, dtype=np.uint8),
                             rewrite=int8_pointwise_convolutions, precision="f32")
    retail = CropEmbedder("vehicle", 256, "person-reidentification-retail-0288",
                          model_path("person-reidentification-retail-0288.xml", model_dir), CropInput(128, 256))
    return ConcatEmbedder("vehicle", [mobilenet, retail])


def person_embedder(model_dir: Path | None = None) -> ConcatEmbedder:
    """person-reidentification-retail-0288 (256-d, BGR) beside OSNet x0.25 MSMT17 (512-d, RGB, ImageNet norm).

    On ../shared/eval/reid/person the pair gives rank-1 0.755 / mAP 0.704 where retail-0288 alone gives
    0.655 / 0.634 and OSNet alone 0.571 / 0.584 (a plain ensemble, nothing tuned on that set).
    """
    retail = CropEmbedder("person", 256, "person-reidentification-retail-0288",
                          model_path("person-reidentification-retail-0288.xml", model_dir), CropInput(128, 256))
    osnet = CropEmbedder("person", 512, "osnet_x0_25_msmt17", model_path("osnet_x0_25_msmt17.onnx", model_dir),
                         CropInput(128, 256, rgb=True, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)))
    return ConcatEmbedder("person", [retail, osnet])


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
