"""The record-store interface. Backends: SQLite (embedded default) here; Elasticsearch plugs in behind it."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterator

import numpy as np

from models.records import Attributes, Camera, Sighting

# The confidence each searchable attribute carries on the record: `min_confidence` applies to these.
SCORE_FIELDS = {"vehicle_type": "vehicle_type_score", "vehicle_color": "vehicle_color_score",
                "gender": "gender_score", "upper_color": "upper_color_score", "lower_color": "lower_color_score",
                **{name: f"{name}_score" for name in ("bag", "backpack", "hat", "long_sleeves", "long_pants")}}


@dataclass
class AttributeFilter:
    """Attribute conditions of a search (None = any): vehicle columns and person attributes.

    A colour may be one name or a tuple of names meaning any of them (near colours: silver, gray, white).
    `min_confidence` keeps only sightings whose every filtered, scored attribute was classified at least this
    sure: an attribute with no score then does not match.
    """

    vehicle_type: str | None = None
    vehicle_color: str | tuple[str, ...] | None = None
    plate_color: str | None = None
    gender: str | None = None
    upper_color: str | tuple[str, ...] | None = None
    lower_color: str | tuple[str, ...] | None = None
    bag: bool | None = None
    backpack: bool | None = None
    hat: bool | None = None
    long_sleeves: bool | None = None
    long_pants: bool | None = None
    min_confidence: float | None = None

    def items(self) -> list[tuple[str, object]]:
        """The conditions that are set, each value a str, a bool or a tuple of str (any of)."""
        return [(k, v) for k, v in self.__dict__.items() if v is not None and k != "min_confidence"]

    def scored(self) -> list[str]:
        """The score fields `min_confidence` applies to: those of the conditions that are set."""
        if self.min_confidence is None:
            return []
        return [SCORE_FIELDS[k] for k, _ in self.items() if k in SCORE_FIELDS]


@dataclass
class SightingQuery:
    kind: str | None = None
    camera_ids: list[str] | None = None
    start: datetime | None = None
    end: datetime | None = None
    plate: str | None = None
    frame_sha256: str | None = None
    attributes: AttributeFilter = field(default_factory=AttributeFilter)
    ids: list[str] | None = None
    newest_first: bool = True
    limit: int = 100
    offset: int = 0


@dataclass
class FrameRecord:
    """One ingested frame: its sha256 makes ingestion idempotent."""

    sha256: str
    camera_id: str
    ts: datetime
    source: str


@dataclass
class StoredVector:
    """A sighting's appearance vector, kept in the record store so vector indexes can always be rebuilt."""

    sighting_id: str
    space: str
    vector: np.ndarray


@dataclass
class VehicleColumns:
    """Vehicle sightings as columns, bulk-loaded without frames, crops or vectors (simulations, imports at 10M)."""

    ids: list[str]
    camera_ids: list[str]
    ts_us: np.ndarray  # int64 microseconds since the epoch, UTC
    plates: list[str]
    plate_scores: np.ndarray
    vehicle_colors: list[str | None]
    vehicle_types: list[str | None]


@dataclass
class ReadColumns:
    """One chunk of plate reads in time order, as arrays: the clone scan's input without a Sighting per row."""

    plate_ids: np.ndarray  # int64 keys of the plate dictionary; plate_names() gives the text
    lon: np.ndarray
    lat: np.ndarray
    ts_us: np.ndarray  # int64


class DuplicateFrame(Exception):
    """The frame is stored already: another writer (a thread, or a process sharing the folder) was first."""


@dataclass
class Purged:
    """What a deletion removed from the record store; the vector indexes and the crop files follow from it."""

    sightings: int = 0
    frames: int = 0
    crops: list[str] = field(default_factory=list)
    vectors: dict[str, list[int]] = field(default_factory=dict)  # space -> vector ids

    def merge(self, other: Purged) -> None:
        self.sightings += other.sightings
        self.frames += other.frames
        self.crops += other.crops
        for space, ids in other.vectors.items():
            self.vectors.setdefault(space, []).extend(ids)


class RecordStore(ABC):
    @abstractmethod
    def upsert_cameras(self, cameras: list[Camera]) -> int: ...

    @abstractmethod
    def get_camera(self, camera_id: str) -> Camera | None: ...

    @abstractmethod
    def list_cameras(self) -> list[Camera]: ...

    @abstractmethod
    def has_frame(self, sha256: str) -> bool: ...

    @abstractmethod
    def add_frame(self, frame: FrameRecord, sightings: list[Sighting], vectors: list[StoredVector]) -> None:
        """Store a frame with all its sightings and vectors in one transaction (all or nothing).

        Assigns each vector an id (per space) and writes it back to its sighting's `vector_id`.
        A frame whose sha256 is stored already raises DuplicateFrame and stores nothing.
        """

    @abstractmethod
    def add_sightings(self, sightings: list[Sighting]) -> None:
        """Bulk-load sightings without frames or vectors, in one transaction (simulations, imports)."""

    @abstractmethod
    def plates_after(self, after_rowid: int) -> list[tuple[int, str, int]]:
        """(row id, plate, sightings) of the distinct plates added after a row id (incremental dictionary refresh)."""

    @abstractmethod
    def plate_counts(self, plates: list[str]) -> dict[str, int]: ...

    @abstractmethod
    def get_sighting(self, sighting_id: str) -> Sighting | None: ...

    @abstractmethod
    def get_sightings(self, ids: list[str]) -> list[Sighting]: ...

    @abstractmethod
    def query(self, q: SightingQuery) -> list[Sighting]: ...

    @abstractmethod
    def count(self, kind: str | None = None) -> int: ...

    @abstractmethod
    def vectors_after(self, space: str, after_id: int, batch: int = 10_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) batches of one space with id > after_id, in id order (for index catch-up). A batch holds
        vectors of one dimension: after a space's model changes, its older vectors keep theirs until re-embedded,
        and the index skips them by their shape (`split_by_dimension`)."""

    @abstractmethod
    def sighting_ids_for_vectors(self, space: str, vector_ids: list[int]) -> dict[int, str]: ...

    @abstractmethod
    def delete_sightings(self, before: datetime | None = None, camera_ids: list[str] | None = None,
                         ids: list[str] | None = None, batch: int = 10_000) -> Purged:
        """Delete sightings taken before `before` (optionally at `camera_ids`) or the given `ids`, with their
        vectors and the frames left empty. Each batch is its own transaction: a crash keeps every batch whole,
        and the rerun deletes the rest. Vector ids are never reused afterwards."""

    @abstractmethod
    def replace_vectors(self, vectors: list[StoredVector], model: str) -> int:
        """Give stored sightings new vectors made by `model` (their space's model changed): each new vector takes
        an id past every id the space ever gave, so indexes take it in on catch-up; the sighting's old vector is
        deleted and its `model_versions["embedding"]` becomes `model`. Sightings deleted meanwhile are skipped;
        returns how many were replaced."""

    @abstractmethod
    def stale_vectors(self, space: str, model: str, batch: int = 10_000) -> Iterator[list[int]]:
        """Ids of a space's vectors that another embedding model than `model` made (by their sightings'
        `model_versions["embedding"]`; none recorded counts as another), in batches, without reading a vector:
        what `reembed` replaces, whether or not the dimension changed. A batch is read when asked for, so the
        caller may replace one before asking for the next."""

    @abstractmethod
    def stale_attributes(self, kind: str, version: str, batch: int = 1_000) -> Iterator[list[str]]:
        """Ids of a kind's sightings whose attributes another classifier than `version` wrote (by their
        `model_versions["attributes"]`; none recorded, the rules', counts as another), in batches read when asked
        for: what `reattribute` redoes."""

    @abstractmethod
    def replace_attributes(self, updates: list[tuple[str, Attributes]], version: str) -> int:
        """Give stored sightings new attributes (the whole record, plate fields included) and record `version` as
        their `model_versions["attributes"]`; sightings deleted meanwhile are skipped; returns how many changed."""

    @abstractmethod
    def vector_ids(self, space: str) -> np.ndarray:
        """Every stored vector id of a space (an index checks itself against it after a crash)."""

    @abstractmethod
    def vector_count(self, space: str, dim: int | None = None) -> int:
        """How many vectors a space holds (of one dimension, when given): an index opening compares it with its
        own size, which counts only its dimension's (vectors of an earlier model wait for re-embedding)."""

    @abstractmethod
    def camera_window(self, camera_id: str, start: datetime, end: datetime, kind: str = "vehicle"
                      ) -> list[tuple[str, str | None, datetime]]:
        """(sighting id, plate, time) at one camera in [start, end] — the co-travel join."""

    @abstractmethod
    def add_vehicle_columns(self, columns: VehicleColumns) -> None:
        """Bulk-load vehicle sightings given as columns, in one transaction."""

    @abstractmethod
    def plate_read_columns(self, start: datetime | None, end: datetime | None, min_score: float,
                           batch: int = 1_000_000) -> Iterator[ReadColumns]:
        """Plate reads scoring at least min_score in [start, end), in time order, in chunks, with camera positions."""

    @abstractmethod
    def plate_names(self, plate_ids: list[int]) -> dict[int, str]: ...

    @abstractmethod
    def get_vectors(self, space: str, vector_ids: list[int]) -> dict[int, np.ndarray]:
        """Stored appearance vectors by id (evidence for a few sightings, not a search)."""

    @abstractmethod
    def close(self) -> None: ...


def split_by_dimension(ids: np.ndarray, vectors: list[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Consecutive runs of one dimension as (ids, stacked vectors): what `vectors_after` yields of a fetch."""
    start = 0
    for end in range(1, len(vectors) + 1):
        if end == len(vectors) or len(vectors[end]) != len(vectors[start]):
            yield ids[start:end], np.stack(vectors[start:end])
            start = end
