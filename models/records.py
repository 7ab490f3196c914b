"""The core records every package shares: cameras and sightings.

They are plain dataclasses so that the record store, the vector index, the
API and the analytics can pass them around without dicts-of-anything.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from datetime import datetime, timezone
from enum import Enum, StrEnum
from typing import Any, Protocol, Union, runtime_checkable


class SightingKind(StrEnum):
    """What a sighting shows; each kind has its attributes and its embedding space."""

    VEHICLE = "vehicle"
    PERSON = "person"
    FACE = "face"


class CameraKind(StrEnum):
    CHECKPOINT = "checkpoint"  # a fixed plate-reading camera over a lane
    SURVEILLANCE = "surveillance"  # a wide view of a street or a place


SIGHTING_KINDS: tuple[str, ...] = tuple(k.value for k in SightingKind)
CAMERA_KINDS: tuple[str, ...] = tuple(k.value for k in CameraKind)


class InputError(ValueError):
    """Bad input from a user: shown as a 4xx or a CLI exit code 2, never a traceback."""


def require_utc(ts: datetime) -> datetime:
    """Times inside Sightline are timezone-aware UTC; a naive time is refused, not guessed, and so is one whose
    UTC value falls outside the years 1–9999 (0001-01-01T00:00:00+14:00 is in year 0 in UTC)."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise InputError(f"timestamp {ts.isoformat()} has no time zone; give an offset such as +08:00 or Z")
    try:
        return ts.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        raise InputError(f"timestamp {ts.isoformat()} is outside the years 1–9999 in UTC") from None


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 timestamp that must carry a zone; return it in UTC."""
    try:
        ts = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except (ValueError, OverflowError) as exc:
        raise InputError(f"not an ISO 8601 timestamp: {text!r}") from exc
    return require_utc(ts)


@dataclass(frozen=True)
class BBox:
    """Pixel box in the source frame, x1,y1 top-left, x2,y2 bottom-right."""

    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    def as_list(self) -> list[float]:
        return [round(float(v), 1) for v in (self.x1, self.y1, self.x2, self.y2)]


@dataclass
class Camera:
    id: str
    name: str
    lon: float
    lat: float
    heading_deg: float | None = None
    kind: CameraKind = CameraKind.CHECKPOINT
    road: str | None = None
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.id or not str(self.id).strip():
            raise InputError("camera id is empty")
        if not -180.0 <= float(self.lon) <= 180.0 or not -90.0 <= float(self.lat) <= 90.0:
            raise InputError(f"camera {self.id}: lon/lat out of range ({self.lon}, {self.lat})")
        if self.kind not in CAMERA_KINDS:
            raise InputError(f"camera {self.id}: kind must be one of {CAMERA_KINDS}, not {self.kind!r}")
        self.kind = CameraKind(self.kind)
        if self.heading_deg is not None and not 0.0 <= float(self.heading_deg) < 360.0:
            raise InputError(f"camera {self.id}: heading_deg must be in [0, 360)")


# The vocabularies attributes are written in (models/attributes.py writes them; search, its form and the
# free-text parser read them): kept here, light to import, beside the records that carry them.
VEHICLE_COLORS = ("white", "silver", "gray", "black", "red", "blue", "green", "yellow", "brown", "orange", "purple",
                  "pink")
PERSON_COLORS = ("white", "gray", "black", "red", "blue", "green", "yellow", "brown", "orange", "purple", "pink")
VEHICLE_TYPES = ("car", "van", "truck", "bus", "motorcycle", "bicycle")
UNKNOWN = "unknown"  # a colour looked at and not told: never matches a colour query


@dataclass
class VehicleAttributes:
    plate: str | None = None
    plate_score: float | None = None
    plate_color: str | None = None
    plate_layers: int | None = None
    plate_raw: str | None = None  # a read that is not a valid plate (partial, foreign): not searchable as a plate
    vehicle_type: str | None = None
    vehicle_type_score: float | None = None
    vehicle_color: str | None = None
    vehicle_color_score: float | None = None
    coco_class: str | None = None


@dataclass
class PersonAttributes:
    gender: str | None = None
    gender_score: float | None = None
    bag: bool | None = None
    bag_score: float | None = None  # the yes/no fields' scores: a learned head's calibrated confidence in its answer
    backpack: bool | None = None
    backpack_score: float | None = None
    hat: bool | None = None
    hat_score: float | None = None
    long_sleeves: bool | None = None
    long_sleeves_score: float | None = None
    long_pants: bool | None = None
    long_pants_score: float | None = None
    long_hair: bool | None = None
    coat_jacket: bool | None = None
    upper_color: str | None = None
    upper_color_score: float | None = None
    lower_color: str | None = None
    lower_color_score: float | None = None


@dataclass
class FaceAttributes:
    quality: float | None = None
    landmarks: list[list[float]] = field(default_factory=list)
    person_sighting_id: str | None = None


Attributes = Union[VehicleAttributes, PersonAttributes, FaceAttributes]
ATTRIBUTE_CLASSES: dict[str, type[VehicleAttributes] | type[PersonAttributes] | type[FaceAttributes]] = {
    SightingKind.VEHICLE: VehicleAttributes,
    SightingKind.PERSON: PersonAttributes,
    SightingKind.FACE: FaceAttributes,
}


def attributes_from_dict(kind: str, data: dict) -> Attributes:
    cls = ATTRIBUTE_CLASSES[kind]
    known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
    return cls(**known)


@dataclass
class TrackInfo:
    """How a video object was followed: when it was first and last seen, and its path in the frame."""

    first_seen: datetime
    last_seen: datetime
    frames: int
    path: list[list[float]] = field(default_factory=list)  # [seconds after first_seen, centre x, centre y]

    def to_json(self) -> dict:
        return {"first_seen": self.first_seen.astimezone(timezone.utc).isoformat(),
                "last_seen": self.last_seen.astimezone(timezone.utc).isoformat(),
                "frames": self.frames, "path": self.path}

    @staticmethod
    def from_json(data: dict) -> "TrackInfo":
        return TrackInfo(datetime.fromisoformat(data["first_seen"]), datetime.fromisoformat(data["last_seen"]),
                         int(data["frames"]), data.get("path", []))


@dataclass
class Sighting:
    """One detected vehicle, person or face, seen by one camera at one instant."""

    id: str
    camera_id: str
    ts: datetime
    kind: SightingKind
    bbox: BBox
    det_score: float
    attributes: Attributes
    crop: str | None = None
    frame_sha256: str | None = None
    embedding_space: str | None = None
    vector_id: int | None = None
    model_versions: dict[str, str] = field(default_factory=dict)
    track: TrackInfo | None = None  # video sightings: one per tracked object

    def __post_init__(self) -> None:
        self.kind = SightingKind(self.kind)

    def to_json(self) -> dict:
        """The API's shape of a sighting (times as ISO 8601 UTC)."""
        out = asdict(self)
        out["ts"] = self.ts.astimezone(timezone.utc).isoformat()
        out["bbox"] = self.bbox.as_list()
        out["track"] = self.track.to_json() if self.track else None
        return out


@runtime_checkable
class _HasToJson(Protocol):
    """A record with its own JSON shape (`isinstance` checks only that the attribute is there, like hasattr)."""

    def to_json(self) -> Any: ...


def to_plain(obj: object) -> Any:
    """Typed results as JSON-ready values: records by their own JSON shape, other dataclasses field by field,
    enums as their values, times as ISO 8601 — for the command line's output."""
    if isinstance(obj, _HasToJson) and is_dataclass(obj):
        return obj.to_json()
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, dict):
        return {str(to_plain(k)): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    return obj
