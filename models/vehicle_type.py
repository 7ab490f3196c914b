"""Vehicle type from every signal: the detector's COCO class, the attribute model's vote, riders and box shape.

Why fuse: the attribute model (vehicle-attributes-recognition-barrier-0039) knows car, bus, truck and van
from front views in car parks and nothing of two-wheelers; YOLOX's COCO classes know car, bus, truck,
motorcycle and bicycle but not van (COCO annotates vans as cars or trucks); the SSD vehicle detector gives
no class at all. A plate read on the vehicle gives its physical width. Each says something the others cannot,
so the type is the most probable one given all of them (naive Bayes), and that probability is its confidence.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.observations import Observation
from models.records import BBox, SightingKind, VehicleAttributes

MODEL_TYPES = ("car", "bus", "truck", "van")  # the 0039 file's output order, as its spec lists them
FOUR_WHEELERS = ("car", "van", "truck", "bus")
TWO_WHEELERS = ("motorcycle", "bicycle")

# P(YOLOX's COCO class | true type), rows by true type. COCO has no van class: its annotators called a van a
# car or a truck, so a van is read as either; buses and trucks are close cousins seen from behind.
DETECTOR_LIKELIHOOD: dict[str, dict[str, float]] = {
    "car": {"car": 0.85, "truck": 0.10, "bus": 0.05},
    "van": {"car": 0.55, "truck": 0.35, "bus": 0.10},
    "truck": {"car": 0.10, "truck": 0.75, "bus": 0.15},
    "bus": {"car": 0.05, "truck": 0.15, "bus": 0.80},
}

# A vehicle's width in plate widths (a Chinese plate is 440 mm wide): cars and MPVs are 1.7–1.9 m wide, lorries
# and buses about 2.5 m. A plate read on the vehicle turns its box into a physical size.
WIDTH_IN_PLATES: dict[str, float] = {"car": 4.1, "van": 4.3, "truck": 5.4, "bus": 5.7}
WIDTH_SPREAD = 0.15  # log-space spread: oblique views and boxes that take in the vehicle's side


@dataclass(frozen=True)
class TypeEvidence:
    """What is known of one vehicle box when its type is decided."""

    coco_class: str | None  # car, bus, truck, motorcycle, bicycle; "vehicle" from the class-less SSD; None
    model: dict[str, float]  # the attribute model's probabilities over MODEL_TYPES (empty: not run)
    two_wheeler: str | None = None  # motorcycle/bicycle: a rider on the box, or a YOLOX two-wheeler box over it
    width_in_plates: float | None = None  # box width / width of the plate read on it (None: no plate)


@dataclass(frozen=True)
class TypeRules:
    """How far the attribute model's vote is trusted: its probabilities are mixed with a uniform vote,
    because it is as sure of itself, and often wrong, on trucks and buses seen from above as on the front
    views of cars it was trained on (0: ignored, 1: taken at its word)."""

    model_trust: float = 0.5
    two_wheeler_score: float = 0.9  # a YOLOX motorcycle/bicycle box, or a rider on the box


DEFAULT_TYPE_RULES = TypeRules()


def vehicle_type(evidence: TypeEvidence, rules: TypeRules = DEFAULT_TYPE_RULES) -> tuple[str, float]:
    """The most probable type and its posterior probability (4-wheelers), or the two-wheeler's class."""
    if evidence.coco_class in TWO_WHEELERS:
        return evidence.coco_class, rules.two_wheeler_score
    if evidence.two_wheeler is not None:
        return evidence.two_wheeler, rules.two_wheeler_score
    posterior = np.ones(len(FOUR_WHEELERS))
    if evidence.coco_class in ("car", "truck", "bus"):
        posterior *= [DETECTOR_LIKELIHOOD[t][evidence.coco_class] for t in FOUR_WHEELERS]
    if evidence.model:
        model = np.array([evidence.model.get(t, 0.0) for t in FOUR_WHEELERS])
        posterior *= rules.model_trust * model + (1.0 - rules.model_trust) / len(FOUR_WHEELERS)
    if evidence.width_in_plates:
        # Mixed with a flat floor, so that an oblique view can make a car look wide but not impossible.
        gap = np.log(evidence.width_in_plates) - np.log([WIDTH_IN_PLATES[t] for t in FOUR_WHEELERS])
        posterior *= 0.2 + np.exp(-0.5 * (gap / WIDTH_SPREAD) ** 2)
    posterior /= posterior.sum()
    best = int(posterior.argmax())
    return FOUR_WHEELERS[best], round(float(posterior[best]), 3)


def two_wheeler_evidence(box: BBox, people: list[BBox], two_wheelers: list[tuple[BBox, str]]) -> str | None:
    """"motorcycle"/"bicycle" when this vehicle box is a two-wheeler seen through other detections.

    A rider: a person box about as wide as the vehicle box (a car is much wider than a pedestrian in
    front of it) that covers the vehicle box's upper part. Or a YOLOX motorcycle/bicycle box that lies
    mostly inside this one and is not much smaller (the SSD detector's class-less box around the same machine).
    """
    for other, label in two_wheelers:
        if min(other.area, box.area) >= 0.3 * max(other.area, box.area) and \
                (_inside_share(other, box) >= 0.6 or _inside_share(box, other) >= 0.6):
            return label
    for person in people:
        wide_alike = person.width >= 0.6 * box.width
        over_top = person.y1 <= box.y1 + 0.3 * box.height and person.y2 >= box.y1 + 0.3 * box.height
        if wide_alike and over_top and _inside_share(box, person) >= 0.3 and box.height >= 0.8 * box.width:
            return "motorcycle"
    return None


def two_wheeler_in_frame(vehicle: Observation, frame_objects: list[Observation]) -> str | None:
    """two_wheeler_evidence for one vehicle observation from the other observations of its frame."""
    people = [o.bbox for o in frame_objects if o.kind == SightingKind.PERSON]
    two_wheelers = [(o.bbox, str(o.attributes.coco_class)) for o in frame_objects if o is not vehicle
                    and isinstance(o.attributes, VehicleAttributes) and o.attributes.coco_class in TWO_WHEELERS]
    return two_wheeler_evidence(vehicle.bbox, people, two_wheelers)


def _inside_share(a: BBox, b: BBox) -> float:
    """The share of box a's area that lies inside box b."""
    w = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    h = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    return w * h / a.area if a.area > 0 else 0.0
