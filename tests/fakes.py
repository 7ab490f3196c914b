"""Test doubles: a fake frame pipeline that needs no weights, and small synthetic photos.

`FakePipeline` stands in for `models.pipeline.Pipeline` (the `models.observations.FramePipeline`
interface) in store, search, alert and API tests. It detects nothing by itself: it reports what a test
scripted for an image, and otherwise "sees" one vehicle covering the whole frame. Its appearance vectors
are a fixed random projection of the downsampled pixels, L2-normalised, so the same photo always gives the
same vector and different photos give different ones. It says nothing about how well the real models
work: they have their own tests on real images (the `models` marker). Synthetic images are fine for a
fake; they are never a measure of accuracy.
"""
from __future__ import annotations

import copy
import hashlib
import threading
from collections.abc import Sequence
from dataclasses import replace

import cv2
import numpy as np

from models.imageops import color_name, crop, decode_image
from models.observations import Detection, FaceProbe, ObjectDescription, Observation, StageTimes
from models.records import Attributes, BBox, FaceAttributes, PersonAttributes, SightingKind, VehicleAttributes
from models.spaces import SPACES

_THUMB = 16  # pixels a side of the thumbnail that is projected into a vector
_NO_CROP = np.zeros((0, 0, 3), np.uint8)  # "crop it from the frame" (scripted observations)
FAKE_VERSION = {"embedding": "fake-projection-1"}
FAKE_HEADS = "fake-heads-1"  # what the fake's `redescribe` answers as


def jpeg(seed: int, width: int = 128, height: int = 96, quality: int = 95) -> bytes:
    """A small JPEG of coloured blocks, different for every seed (the same bytes for the same seed)."""
    blocks = np.random.default_rng(seed).integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    image = cv2.resize(blocks, (width, height), interpolation=cv2.INTER_NEAREST)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def solid_jpeg(bgr: tuple[int, int, int], width: int = 64, height: int = 48) -> bytes:
    """A JPEG of one colour (BGR)."""
    ok, buf = cv2.imencode(".jpg", np.full((height, width, 3), bgr, np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


def frame_key(image: bytes | np.ndarray) -> str:
    """What a script is keyed by: the decoded pixels (the pipeline sees frames, never file bytes)."""
    frame = decode_image(image) if isinstance(image, (bytes, bytearray)) else np.asarray(image)
    return hashlib.sha256(repr(frame.shape).encode() + np.ascontiguousarray(frame).tobytes()).hexdigest()


def vehicle(bbox: BBox | None = None, score: float = 0.9, vector: np.ndarray | None = None, **attributes: object
            ) -> Observation:
    """A scripted vehicle (bbox None: the whole frame); attributes are VehicleAttributes fields."""
    return Observation(SightingKind.VEHICLE, bbox or BBox(0, 0, 0, 0), score, VehicleAttributes(**attributes),
                       _NO_CROP, vector)


def person(bbox: BBox | None = None, score: float = 0.9, vector: np.ndarray | None = None, **attributes: object
           ) -> Observation:
    """A scripted person (bbox None: the whole frame); attributes are PersonAttributes fields."""
    return Observation(SightingKind.PERSON, bbox or BBox(0, 0, 0, 0), score, PersonAttributes(**attributes),
                       _NO_CROP, vector)


def face(bbox: BBox, vector: np.ndarray | None = None, score: float = 0.95, quality: float = 0.9,
         parent: int | None = None) -> Observation:
    """A scripted face; `vector` None derives it from the face's pixels, `parent` is the index of its person."""
    return Observation(SightingKind.FACE, bbox, score, FaceAttributes(quality=quality), _NO_CROP, vector,
                       parent=parent)


def unit(vector: np.ndarray) -> np.ndarray:
    v = np.asarray(vector, np.float32)
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


class FakePipeline:
    """A deterministic FramePipeline without weights (see the module docstring): scripted observations per
    image, else one vehicle covering the frame; vectors are a fixed projection of the pixels."""

    def __init__(self, seed: int = 0):
        self.times = StageTimes()
        self.seed = seed
        self.scripts: dict[str, list[Observation]] = {}
        self.frames_seen = 0  # how many frames `process` was given (a duplicate photo is never processed)
        self._projections: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    # scripting ---------------------------------------------------------------------------------------
    def script(self, image: bytes | np.ndarray, observations: list[Observation]) -> None:
        """What the pipeline will see in this image (an empty list: nothing). Observations made with
        `vehicle`, `person` and `face` get their crop and, unless given, their vector from the frame."""
        self.scripts[frame_key(image)] = list(observations)

    # the interface -----------------------------------------------------------------------------------
    def embed(self, image: np.ndarray, space: str) -> np.ndarray:
        """The fake appearance vector: the image as a 16×16 thumbnail, centred, projected, unit length."""
        if space not in self._projections:
            rng = np.random.default_rng([self.seed, list(SPACES).index(space)])
            self._projections[space] = rng.standard_normal((_THUMB * _THUMB * 3, SPACES[space])).astype(np.float32)
        thumb = cv2.resize(image, (_THUMB, _THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)
        return unit((thumb.reshape(-1) - 127.5) / 127.5 @ self._projections[space])

    def process(self, frames: list[np.ndarray]) -> list[list[Observation]]:
        with self._lock:  # ingest calls it from two threads at once
            self.frames_seen += len(frames)
        return [[self._complete(frame, ob) for ob in self._seen(frame)] for frame in frames]

    def detect(self, frames: list[np.ndarray], min_score: float | None = None) -> list[list[Detection]]:
        out = []
        for frame in frames:
            found = [self._complete(frame, ob) for ob in self._seen(frame) if ob.kind != SightingKind.FACE]
            out.append([Detection(ob.kind, _label(ob), ob.bbox, ob.det_score) for ob in found
                        if ob.det_score >= (min_score or 0.0)])
        return out

    def detect_faces(self, frame: np.ndarray, objects: Sequence[Detection | Observation] | None = None
                     ) -> list[Detection]:  # every face it was given: the fake has no cost to save
        return [Detection("face", "face", ob.bbox, ob.det_score) for ob in self._seen(frame)
                if ob.kind == SightingKind.FACE]

    def describe_object(self, image: np.ndarray, kind: str) -> ObjectDescription:
        described = ObjectDescription()
        if kind == SightingKind.VEHICLE:
            described.vehicle_color = _colour(image)
        return described

    def embed_crops(self, crops: list[np.ndarray], kind: str) -> np.ndarray:
        return np.array([self.embed(c, kind) for c in crops], np.float32).reshape(len(crops), SPACES[kind])

    def embedding_version(self, kind: str) -> str:
        return FAKE_VERSION["embedding"]

    def attributes_version(self, kind: str) -> str | None:
        """Scripted sightings carry no attribute version, as those the rules wrote: all are stale to these."""
        return FAKE_HEADS

    def redescribe(self, crops: list[np.ndarray], attributes: list[Attributes], kind: str) -> None:
        """A vehicle's colour (a person's upper colour) named from its crop's mean pixel, scored 0.5."""
        for image, attrs in zip(crops, attributes, strict=True):
            if isinstance(attrs, VehicleAttributes):
                attrs.vehicle_color, attrs.vehicle_color_score = _colour(image), 0.5
            elif isinstance(attrs, PersonAttributes):
                attrs.upper_color, attrs.upper_color_score = _colour(image), 0.5

    def subject_face(self, frame: np.ndarray) -> FaceProbe | None:
        faces = [self._complete(frame, ob) for ob in self._seen(frame) if ob.kind == SightingKind.FACE]
        if not faces:
            return None
        best = max(faces, key=lambda ob: (ob.bbox.area, ob.det_score))
        return FaceProbe(best.bbox, best.vector)

    def describe_tracks(self, tracks: list) -> list[Observation]:  # noqa: ANN001 - models.tracking.Track
        out = []
        for track in tracks:
            best = track.best(1)[0]
            det = best.detection
            attrs = {SightingKind.VEHICLE: VehicleAttributes(coco_class=det.label),
                     SightingKind.PERSON: PersonAttributes(),
                     SightingKind.FACE: FaceAttributes(quality=det.score)}[track.kind]
            out.append(self._complete(best.frame, Observation(track.kind, det.bbox, det.score, attrs, _NO_CROP)))
        return out

    # inside ------------------------------------------------------------------------------------------
    def _seen(self, frame: np.ndarray) -> list[Observation]:
        scripted = self.scripts.get(frame_key(frame))
        if scripted is not None:
            return scripted
        h, w = frame.shape[:2]
        return [Observation(SightingKind.VEHICLE, BBox(0, 0, w, h), 0.9,
                            VehicleAttributes(coco_class="car", vehicle_color=_colour(frame)), _NO_CROP)]

    def _complete(self, frame: np.ndarray, ob: Observation) -> Observation:
        """A fresh copy of an observation with its box, crop, vector and space filled in from the frame."""
        h, w = frame.shape[:2]
        box = ob.bbox if ob.bbox.area > 0 else BBox(0, 0, w, h)
        image = crop(frame, box) if ob.crop.size == 0 else ob.crop
        vector = unit(ob.vector) if ob.vector is not None else self.embed(image, ob.kind)
        return replace(ob, bbox=box, crop=image, vector=vector, space=ob.space or str(ob.kind),
                       attributes=copy.deepcopy(ob.attributes), model_versions={**FAKE_VERSION, **ob.model_versions})


def _label(ob: Observation) -> str:
    if ob.kind == SightingKind.VEHICLE:
        return getattr(ob.attributes, "coco_class", None) or "car"
    return str(ob.kind)


def _colour(image: np.ndarray) -> str:
    return color_name(image.reshape(-1, 3).mean(axis=0))
