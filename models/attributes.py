"""Attribute classifiers: vehicle colour and type, person attributes and clothing colours, face quality."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import openvino as ov

from models.colors import DEFAULT_RULES, PERSON_RULES, UNKNOWN, ColorRules, clothing_colors, vehicle_color
from models.imageops import blob, color_name
from models.observations import Detection
from models.records import PersonAttributes, VehicleAttributes
from models.runtime import OpenVinoModel
from models.vehicle_type import DEFAULT_TYPE_RULES, MODEL_TYPES, TWO_WHEELERS, TypeEvidence, TypeRules, vehicle_type

# What the vehicle model itself outputs, in its file's order (its spec lists the types as car, bus, truck, van).
MODEL_VEHICLE_COLORS = ("white", "gray", "yellow", "red", "green", "blue", "black")
PERSON_FLAGS = ("is_male", "has_bag", "has_backpack", "has_hat", "has_longsleeves", "has_longpants",
                "has_longhair", "has_coat_jacket")
MIN_PERSON_HEIGHT = 40  # pixels: below this a person's clothing colours are "unknown" (a few pixels per region)


INNER = "inner"  # the name given to an attribute model's inner layer, added as an output for the learned heads


def inner_output(layer: str) -> Callable[[ov.Model], None]:
    """A graph rewrite that also outputs one inner layer (as INNER): what the learned heads read of the model
    (models/heads.py, block `inner`). The model's own outputs are unchanged."""
    def rewrite(model: ov.Model) -> None:
        op = next(o for o in model.get_ordered_ops() if o.get_friendly_name() == layer)
        op.output(0).get_tensor().set_names({INNER})
        model.add_outputs([op.output(0)])
    return rewrite


@dataclass(frozen=True)
class VehicleVote:
    """The vehicle model's probabilities, by name: one signal among several for type and colour; and its inner
    layer, pooled, for the learned heads."""

    colors: dict[str, float]
    types: dict[str, float]
    inner: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def vector(self) -> np.ndarray:
        """The model's outputs as the attribute heads read them (models/heads.py, block `model`)."""
        return np.array([*self.colors.values(), *self.types.values()], np.float32)


class VehicleAttributeClassifier:
    """vehicle-attributes-recognition-barrier-0039: 72×72 BGR → 7 colours, 4 types."""

    def __init__(self, model_path: Path):
        # Its last shared layer (128×5×5, before the colour and type convolutions), averaged over the image.
        self.model = OpenVinoModel(model_path, rewrite=inner_output("Eltwise3"))

    def votes(self, crops: list[np.ndarray]) -> list[VehicleVote]:
        if not crops:
            return []
        out = self.model.infer(blob(crops, 72, 72))
        colors, types = out["color"].reshape(len(crops), -1), out["type"].reshape(len(crops), -1)
        inner = out[INNER].mean(axis=(2, 3)).astype(np.float32)
        return [VehicleVote(dict(zip(MODEL_VEHICLE_COLORS, c.tolist(), strict=True)),
                            dict(zip(MODEL_TYPES, t.tolist(), strict=True)), f)
                for c, t, f in zip(colors, types, inner, strict=True)]

    def classify(self, crops: list[np.ndarray]) -> list[VehicleAttributes]:
        """The model's own answer (its argmax), without the other signals: the baseline `eval attributes` shows."""
        result = []
        for vote in self.votes(crops):
            color, vtype = max(vote.colors, key=vote.colors.__getitem__), max(vote.types, key=vote.types.__getitem__)
            result.append(VehicleAttributes(vehicle_color=color, vehicle_color_score=round(vote.colors[color], 3),
                                            vehicle_type=vtype, vehicle_type_score=round(vote.types[vtype], 3)))
        return result


def describe_vehicle(attrs: VehicleAttributes, vote: VehicleVote, crop: np.ndarray, scene_light: float,
                     two_wheeler: str | None, width_in_plates: float | None = None,
                     type_rules: TypeRules = DEFAULT_TYPE_RULES, color_rules: ColorRules = DEFAULT_RULES,
                     colors: bool = True) -> None:
    """Fill a vehicle's type and colour (unless `colors` is off: a learned head names it), with confidences, from
    every signal (see models.vehicle_type and models.colors).

    A truck's colour is "unknown": a witness gives its cab's colour, and its box holds mostly the load,
    container or trailer (measured: the box's dominant colour was the cab's on 1 truck in 7).
    """
    evidence = TypeEvidence(attrs.coco_class, vote.types, two_wheeler, width_in_plates)
    vtype, type_score = vehicle_type(evidence, type_rules)
    attrs.vehicle_type, attrs.vehicle_type_score = vtype, type_score
    if colors:
        attrs.vehicle_color, attrs.vehicle_color_score = (UNKNOWN, 0.0) if vtype == "truck" else \
            vehicle_color(crop, scene_light, vtype in TWO_WHEELERS, color_rules)


@dataclass(frozen=True)
class PersonOutputs:
    """The person model's outputs for n crops."""

    flags: np.ndarray  # (n, 8), PERSON_FLAGS
    tops: np.ndarray  # (n, 2) the upper colour point, crop-relative
    bottoms: np.ndarray  # (n, 2)
    inner: np.ndarray  # (n, 512) inner layer, upper half then lower half


class PersonAttributeClassifier:
    """person-attributes-recognition-crossroad-0230: 160×80 BGR → 8 flags and two colour sample points."""

    def __init__(self, model_path: Path, threshold: float = 0.5):
        # Its last shared layer (256×10×5, before the flag and colour-point convolutions), for the learned heads.
        self.model = OpenVinoModel(model_path, rewrite=inner_output("450"))
        self.threshold = threshold
        # Output names of this exact file (pinned by its sha256): 8 flags, then the top and bottom colour points.
        self.flags_name, self.top_name, self.bottom_name = "453", "456", "459"

    def classify(self, crops: list[np.ndarray]) -> list[PersonAttributes]:
        """The model's own answer: its flags, and the colours at the two points it picks (the baseline).

        Each flag is the mean of the model's answers for the crop and its mirror image (a person's left and
        right say the same about gender or a bag). On the 56 labelled `eval/attributes` people: gender 0.66 →
        0.74, bag 0.68 → 0.73, backpack 0.73 → 0.75, sleeves 0.82 → 0.84, hat 1.00 → 0.98; nothing was tuned,
        but the choice was made on that set. Mirroring the vehicle model did nothing there, so it is not done.
        """
        return self.answers(crops, self.outputs(crops)) if crops else []

    def answers(self, crops: list[np.ndarray], outputs: PersonOutputs) -> list[PersonAttributes]:
        """`classify` from outputs already computed (the pipeline also hands them to the learned heads)."""
        flags, tops, bottoms = outputs.flags, outputs.tops, outputs.bottoms
        return [self._attributes(c, f, t, b) for c, f, t, b in zip(crops, flags, tops, bottoms, strict=True)]

    def outputs(self, crops: list[np.ndarray]) -> PersonOutputs:
        """The flags (mean of crop and mirror), the colour points, and the inner layer for the learned heads."""
        n = len(crops)
        out = self.model.infer(blob(crops + [c[:, ::-1] for c in crops], 80, 160))
        both = out[self.flags_name].reshape(2 * n, -1)
        flags = (both[:n] + both[n:]) / 2
        # The inner layer averaged over the upper and the lower half of the person (crop and mirror together).
        inner = out[INNER][:n] + out[INNER][n:]
        halves = np.concatenate([inner[:, :, :5].mean(axis=(2, 3)), inner[:, :, 5:].mean(axis=(2, 3))], axis=1) / 2
        return PersonOutputs(flags, out[self.top_name].reshape(2 * n, 2)[:n],
                             out[self.bottom_name].reshape(2 * n, 2)[:n], halves.astype(np.float32))

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


def describe_person(attrs: PersonAttributes, crop: np.ndarray, scene_light: float,
                    rules: ColorRules = PERSON_RULES, colors: bool = True) -> None:
    """Refine the model's answer: clothing colours from the torso and legs (models.colors) with confidences,
    "unknown" on crops too small to tell (unless `colors` is off: learned heads name them); a backpack is a bag
    (as a witness, and the labels, count it)."""
    if colors and crop.shape[0] < MIN_PERSON_HEIGHT:
        attrs.upper_color = attrs.lower_color = UNKNOWN
        attrs.upper_color_score = attrs.lower_color_score = 0.0
    elif colors:
        (attrs.upper_color, attrs.upper_color_score), (attrs.lower_color, attrs.lower_color_score) = \
            clothing_colors(crop, scene_light, rules)
    attrs.bag = bool(attrs.bag or attrs.backpack)


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
