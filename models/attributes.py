"""Attribute classifiers: vehicle colour and type, person attributes and clothing colours, face quality."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from models.imageops import blob, color_name
from models.observations import Detection
from models.records import PersonAttributes, VehicleAttributes
from models.runtime import OpenVinoModel

VEHICLE_COLORS = ("white", "gray", "yellow", "red", "green", "blue", "black")
VEHICLE_TYPES = ("car", "van", "truck", "bus")
PERSON_FLAGS = ("is_male", "has_bag", "has_backpack", "has_hat", "has_longsleeves", "has_longpants",
                "has_longhair", "has_coat_jacket")


class VehicleAttributeClassifier:
    """vehicle-attributes-recognition-barrier-0039: 72×72 BGR → 7 colours, 4 types."""

    def __init__(self, model_path: Path):
        self.model = OpenVinoModel(model_path)

    def classify(self, crops: list[np.ndarray]) -> list[VehicleAttributes]:
        if not crops:
            return []
        out = self.model.infer(blob(crops, 72, 72))
        colors, types = out["color"].reshape(len(crops), -1), out["type"].reshape(len(crops), -1)
        result = []
        for c, t in zip(colors, types, strict=True):
            ci, ti = int(c.argmax()), int(t.argmax())
            result.append(VehicleAttributes(vehicle_color=VEHICLE_COLORS[ci],
                                            vehicle_color_score=round(float(c[ci]), 3),
                                            vehicle_type=VEHICLE_TYPES[ti], vehicle_type_score=round(float(t[ti]), 3)))
        return result


class PersonAttributeClassifier:
    """person-attributes-recognition-crossroad-0230: 160×80 BGR → 8 flags and two colour sample points."""

    def __init__(self, model_path: Path, threshold: float = 0.5):
        self.model = OpenVinoModel(model_path)
        self.threshold = threshold
        # Output names of this exact file (pinned by its sha256): 8 flags, then the top and bottom colour points.
        self.flags_name, self.top_name, self.bottom_name = "453", "456", "459"

    def classify(self, crops: list[np.ndarray]) -> list[PersonAttributes]:
        if not crops:
            return []
        out = self.model.infer(blob(crops, 80, 160))
        flags = out[self.flags_name].reshape(len(crops), -1)
        tops, bottoms = out[self.top_name].reshape(len(crops), 2), out[self.bottom_name].reshape(len(crops), 2)
        return [self._attributes(c, f, t, b) for c, f, t, b in zip(crops, flags, tops, bottoms, strict=True)]

    def _attributes(self, crop: np.ndarray, flags: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> PersonAttributes:
        on = {name: bool(p >= self.threshold) for name, p in zip(PERSON_FLAGS, flags, strict=True)}
        male = float(flags[0])
        return PersonAttributes(
            gender="male" if male >= 0.5 else "female",
            gender_score=round(male if male >= 0.5 else 1.0 - male, 3),
            bag=on["has_bag"], backpack=on["has_backpack"], hat=on["has_hat"],
            long_sleeves=on["has_longsleeves"], long_pants=on["has_longpants"], long_hair=on["has_longhair"],
            coat_jacket=on["has_coat_jacket"],
            upper_color=sample_color(crop, top), lower_color=sample_color(crop, bottom),
        )


def sample_color(crop: np.ndarray, point: np.ndarray, radius_frac: float = 0.08) -> str:
    """Name the median colour of a small patch around a point given in crop-relative [0,1] coordinates."""
    h, w = crop.shape[:2]
    x, y = float(np.clip(point[0], 0, 1)) * (w - 1), float(np.clip(point[1], 0, 1)) * (h - 1)
    r = max(2, int(radius_frac * w))
    patch = crop[max(0, int(y) - r): int(y) + r + 1, max(0, int(x) - r): int(x) + r + 1].reshape(-1, 3)
    return color_name(np.median(patch, axis=0))


def face_quality(face_crop: np.ndarray, det: Detection) -> float:
    """0..1: how usable a face is for identification — size, sharpness, frontal pose and detector score."""
    size = min(1.0, min(det.bbox.width, det.bbox.height) / 112.0)
    gray = cv2.cvtColor(face_crop, cv2.COLOR_BGR2GRAY) if face_crop.ndim == 3 else face_crop
    sharp = min(1.0, float(cv2.Laplacian(cv2.resize(gray, (112, 112)), cv2.CV_64F).var()) / 300.0)
    frontal = 1.0
    if len(det.landmarks) == 5:
        (rx, _), (lx, _), (nx, _), _, _ = det.landmarks  # right eye, left eye, nose, mouth corners
        eye_span = abs(lx - rx) + 1e-6
        frontal = float(np.clip(1.0 - abs((nx - (rx + lx) / 2) / eye_span) * 2.0, 0.0, 1.0))
    return round(0.3 * size + 0.25 * sharp + 0.25 * frontal + 0.2 * det.score, 3)
