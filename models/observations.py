"""The frame → sightings currency: detections and observations, and the pipeline interface that makes them.

Light to import (no model loads): services type against `FramePipeline`, which the real
`models.pipeline.Pipeline` implements and which tests replace with a fake one.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from models.records import Attributes, BBox, SightingKind

if TYPE_CHECKING:
    from models.tracking import Track


@dataclass
class Detection:
    kind: str  # vehicle | person | face
    label: str  # coco class name, or "face"
    bbox: BBox
    score: float
    landmarks: list[list[float]] = field(default_factory=list)


@dataclass
class Observation:
    """A sighting before it has an id, a camera and a time."""

    kind: SightingKind
    bbox: BBox
    det_score: float
    attributes: Attributes
    crop: np.ndarray
    vector: np.ndarray | None = None
    space: str | None = None
    parent: int | None = None  # index of the person observation a face belongs to, in the same frame
    model_versions: dict[str, str] = field(default_factory=dict)


@dataclass
class ObjectDescription:
    """What a photo search reads off a vehicle it looks for, beside its appearance vector: colour, type and plate."""

    vehicle_color: str | None = None
    vehicle_type: str | None = None
    plate: str | None = None


@dataclass
class FaceProbe:
    """The subject face of a photo (its largest, surest) and its vector."""

    bbox: BBox
    vector: np.ndarray


@dataclass
class StageTimes:
    """Seconds spent per stage, summed over calls (for `sightline bench ingest`)."""

    detect: float = 0.0
    plates: float = 0.0
    attributes: float = 0.0
    embed: float = 0.0
    faces: float = 0.0


class FramePipeline(Protocol):
    """What ingestion, video and search need of the models; one per process, loaded once."""

    times: StageTimes

    def process(self, frames: list[np.ndarray]) -> list[list[Observation]]:
        """Observations for each frame, in frame order."""

    def detect(self, frames: list[np.ndarray], min_score: float | None = None) -> list[list[Detection]]:
        """Vehicles and people per frame (a tracker asks for weak boxes too)."""

    def detect_faces(self, frame: np.ndarray, objects: Sequence[Detection | Observation] | None = None
                     ) -> list[Detection]:
        """Faces in a frame; given the objects detected in it, only if a person is among them (the real pipeline's
        rule, which an operator may lift)."""

    def describe_tracks(self, tracks: list[Track]) -> list[Observation]:
        """One observation per finished video track, from its best views."""

    def describe_object(self, image: np.ndarray, kind: str) -> ObjectDescription:
        """A cropped vehicle's colour, type and plate (a person's: nothing); its vector comes from `embed_crops`."""

    def embed_crops(self, crops: list[np.ndarray], kind: str) -> np.ndarray:
        """Appearance vectors of cropped vehicles or people, batched (re-embedding), by `embedding_version`'s model."""

    def embedding_version(self, kind: str) -> str:
        """The version of the model that embeds `kind` today: what a sighting's `model_versions["embedding"]`
        must say for its vector to be of today's model."""

    def subject_face(self, frame: np.ndarray) -> FaceProbe | None:
        """The photo's largest, surest face with its vector."""

    def attributes_version(self, kind: str) -> str | None:
        """The version of the learned heads that describe `kind` today (models/heads.py), None where the rules do:
        what a sighting's `model_versions["attributes"]` says when its attributes are today's."""

    def redescribe(self, crops: list[np.ndarray], attributes: list[Attributes], kind: str) -> None:
        """Today's heads' answers written onto stored attributes, in place, from their evidence crops
        (`reattribute`); the fields the heads do not cover (a plate) are kept."""
