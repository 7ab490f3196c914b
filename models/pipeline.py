"""The frame → observations pipeline: detect, read plates, classify attributes, embed — batched per kind.

An Observation is a sighting before it has an id, a camera and a time: the
ingest service adds those and stores it. Models are loaded once per Pipeline.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.attributes import PersonAttributeClassifier, VehicleAttributeClassifier, face_quality
from models.detectors import Detection, FaceDetector, ObjectDetector
from models.embedders import CropEmbedder, FaceEmbedder, person_embedder, vehicle_embedder
from models.imageops import crop
from models.plates import PlateReader, PlateReading
from models.records import Attributes, BBox, FaceAttributes, PersonAttributes, VehicleAttributes
from models.registry import default_model_dir, model_path


@dataclass
class Observation:
    kind: str
    bbox: BBox
    det_score: float
    attributes: Attributes
    crop: np.ndarray
    vector: np.ndarray | None = None
    space: str | None = None
    parent: int | None = None  # index of the person observation a face belongs to, in the same frame
    model_versions: dict[str, str] = field(default_factory=dict)


@dataclass
class StageTimes:
    """Seconds spent per stage, summed over calls (for `sightline bench ingest`)."""

    detect: float = 0.0
    plates: float = 0.0
    attributes: float = 0.0
    embed: float = 0.0
    faces: float = 0.0


class Pipeline:
    def __init__(self, model_dir: Path | None = None, faces: bool = True):
        d = model_dir or default_model_dir()
        self.detector = ObjectDetector(model_path("yolox_nano.onnx", d))
        self.plate_reader = PlateReader(d)
        self.vehicle_attributes = VehicleAttributeClassifier(model_path("vehicle-attributes-recognition-barrier-0039.xml", d))
        self.person_attributes = PersonAttributeClassifier(model_path("person-attributes-recognition-crossroad-0230.xml", d))
        self.vehicle_embedder = vehicle_embedder(d)
        self.person_embedder = person_embedder(d)
        self.face_detector = FaceDetector(model_path("yunet_s_dynamic.onnx", d)) if faces else None
        self.face_embedder = FaceEmbedder() if faces else None
        self.times = StageTimes()

    def process(self, frames: list[np.ndarray]) -> list[list[Observation]]:
        """Observations for each frame, in frame order; every model runs once per batch of crops."""
        t0 = time.perf_counter()
        detections = self.detector.detect(frames)
        t1 = time.perf_counter()
        plates = self.plate_reader.read_frames(frames)
        t2 = time.perf_counter()
        per_frame: list[list[Observation]] = []
        for frame, dets, frame_plates in zip(frames, detections, plates):
            per_frame.append(self._objects(frame, dets, frame_plates))
        vehicles = [o for obs in per_frame for o in obs if o.kind == "vehicle"]
        people = [o for obs in per_frame for o in obs if o.kind == "person"]
        self._classify(vehicles, people)
        t3 = time.perf_counter()
        self._embed(vehicles, self.vehicle_embedder)
        self._embed(people, self.person_embedder)
        t4 = time.perf_counter()
        if self.face_detector is not None:
            for frame, obs in zip(frames, per_frame):
                obs.extend(self._faces(frame, obs))
        t5 = time.perf_counter()
        times = self.times
        times.detect += t1 - t0
        times.plates += t2 - t1
        times.attributes += t3 - t2
        times.embed += t4 - t3
        times.faces += t5 - t4
        return per_frame

    def _objects(self, frame: np.ndarray, dets: list[Detection], plates: list[PlateReading]) -> list[Observation]:
        obs = [Observation(d.kind, d.bbox, d.score, VehicleAttributes(coco_class=d.label) if d.kind == "vehicle"
                           else PersonAttributes(), crop(frame, d.bbox)) for d in dets]
        for plate in plates:
            owner = _owner_of(plate.bbox, [o for o in obs if o.kind == "vehicle"])
            if owner is None:
                # A checkpoint photo often shows only the front of the car: the plate is the evidence.
                box = _vehicle_box_around_plate(plate.bbox, frame.shape)
                owner = Observation("vehicle", box, plate.det_score, VehicleAttributes(coco_class=None), crop(frame, box))
                obs.append(owner)
            attrs = owner.attributes
            assert isinstance(attrs, VehicleAttributes)
            if attrs.plate is None or (plate.score or 0) > (attrs.plate_score or 0):
                attrs.plate, attrs.plate_score = plate.text, round(float(plate.score), 3)
                attrs.plate_color, attrs.plate_layers = plate.color, plate.layers
        return obs

    def _classify(self, vehicles: list[Observation], people: list[Observation]) -> None:
        for o, a in zip(vehicles, self.vehicle_attributes.classify([o.crop for o in vehicles])):
            assert isinstance(o.attributes, VehicleAttributes)
            o.attributes.vehicle_color, o.attributes.vehicle_color_score = a.vehicle_color, a.vehicle_color_score
            o.attributes.vehicle_type, o.attributes.vehicle_type_score = a.vehicle_type, a.vehicle_type_score
            if o.attributes.coco_class in ("bicycle", "motorcycle"):
                o.attributes.vehicle_type = o.attributes.coco_class  # the 4-class model knows no two-wheelers
        for o, a in zip(people, self.person_attributes.classify([o.crop for o in people])):
            o.attributes = a

    @staticmethod
    def _embed(observations: list[Observation], embedder: CropEmbedder) -> None:
        vectors = embedder.embed([o.crop for o in observations])
        for o, v in zip(observations, vectors):
            o.vector, o.space = v, embedder.space
            o.model_versions["embedding"] = embedder.version

    def _faces(self, frame: np.ndarray, obs: list[Observation]) -> list[Observation]:
        assert self.face_detector is not None and self.face_embedder is not None
        faces = self.face_detector.detect(frame)
        if not faces:
            return []
        vectors = self.face_embedder.embed_faces(frame, [f.bbox for f in faces])
        people = [i for i, o in enumerate(obs) if o.kind == "person"]
        out = []
        for det, vec in zip(faces, vectors):
            face_crop = crop(frame, det.bbox, margin=0.15)
            parent = _owner_index(det.bbox, obs, people)
            attrs = FaceAttributes(quality=face_quality(crop(frame, det.bbox), det), landmarks=[[round(x, 1), round(y, 1)]
                                   for x, y in det.landmarks])
            out.append(Observation("face", det.bbox, det.score, attrs, face_crop, vec, self.face_embedder.space,
                                   parent, {"embedding": self.face_embedder.version}))
        return out


def _centre_inside(inner: BBox, outer: BBox) -> bool:
    cx, cy = (inner.x1 + inner.x2) / 2, (inner.y1 + inner.y2) / 2
    return outer.x1 <= cx <= outer.x2 and outer.y1 <= cy <= outer.y2


def _owner_of(box: BBox, candidates: list[Observation]) -> Observation | None:
    """The smallest candidate whose box holds the centre of `box` (the nearest enclosing object)."""
    inside = [c for c in candidates if _centre_inside(box, c.bbox)]
    return min(inside, key=lambda c: c.bbox.area) if inside else None


def _owner_index(box: BBox, obs: list[Observation], indices: list[int]) -> int | None:
    owner = _owner_of(box, [obs[i] for i in indices])
    return next(i for i in indices if obs[i] is owner) if owner is not None else None


def _vehicle_box_around_plate(plate: BBox, shape: tuple[int, ...]) -> BBox:
    """A plausible vehicle front around a plate: about 4 plate-widths wide and 6 plate-heights tall."""
    h, w = shape[:2]
    cx, pw, ph = (plate.x1 + plate.x2) / 2, plate.width, plate.height
    return BBox(max(0.0, cx - 2 * pw), max(0.0, plate.y1 - 5 * ph), min(float(w), cx + 2 * pw), min(float(h), plate.y2 + 1.5 * ph))
