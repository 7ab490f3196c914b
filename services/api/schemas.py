"""The HTTP responses as pydantic models, so /openapi.json describes every response the API sends.

Each model keeps the exact JSON shape the routes sent before they were typed (the web app and the
tests read these field names). A model is built from the typed record a use-case returns, through
the record's own `to_json` where it has one, so that shape stays defined in one place; unknown keys
are refused (`extra="forbid"`), so a record that grows a field fails loudly instead of vanishing
from the API.
"""
from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, time
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, WithJsonSchema, model_validator

from geo.clones import CloneCase
from geo.cotravel import Companion
from geo.trajectories import Trajectory
from models.plate_text import PlateMatch
from models.records import CameraKind, Sighting, SightingKind
from models.watchlists import Alert, RuleKind, Severity, WatchlistKind
from services.delivery import alert_json
from services.ingest import IngestResult
from services.search import FaceSearchResult, Hit, ImageSearchResult, PlateResult

IsoTime = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time",
                                         "description": "ISO 8601 with its UTC offset"})]
Box = Annotated[list[float], Field(min_length=4, max_length=4, description="pixels: [x1, y1, x2, y2]")]
GeoJsonFeature = Annotated[dict[str, Any], Field(description="a GeoJSON Feature (geometry in lon/lat, properties)")]


class Out(BaseModel):
    """A response body: its fields are all it may hold."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def from_record(cls, record: Any) -> Self:  # noqa: ANN401 - any dataclass record
        """The record's own JSON shape (`to_json`) where it has one, else its fields."""
        return cls.model_validate(record.to_json() if hasattr(record, "to_json") else asdict(record))


class ErrorOut(Out):
    """A 4xx/5xx answer: what was wrong, in words."""

    detail: str


NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "no such record"}}


class FeatureCollectionOut(Out):
    """A GeoJSON FeatureCollection, drawn as it is by the map (Leaflet)."""

    type: Literal["FeatureCollection"]
    features: list[GeoJsonFeature]


# -- system, map, cameras --------------------------------------------------------------------------

class HealthOut(Out):
    """Liveness and the size of the store."""

    status: Literal["ok"]
    sightings: int
    cameras: int


class MapConfigOut(Out):
    """The map's base layer: offline roads, or a tile server."""

    tile_url: str | None
    roads: bool = Field(description="whether GET /map/roads has a road network to draw")
    attribution: str


class CameraOut(Out):
    """A registered camera as stored."""

    id: str
    name: str
    lon: float
    lat: float
    heading_deg: float | None
    kind: CameraKind
    road: str | None
    tags: list[str]


class StoredOut(Out):
    """How many records a write stored."""

    stored: int


# -- sightings -------------------------------------------------------------------------------------

class VehicleAttributesOut(Out):
    """What was read off a vehicle; each field is null when the model could not tell."""

    plate: str | None
    plate_score: float | None
    plate_color: str | None
    plate_layers: int | None
    plate_raw: str | None = Field(description="a read that is not a valid plate (partial, foreign)")
    vehicle_type: str | None
    vehicle_type_score: float | None
    vehicle_color: str | None
    vehicle_color_score: float | None
    coco_class: str | None


class PersonAttributesOut(Out):
    """What was recognised on a person; each field is null when the model could not tell."""

    gender: str | None
    gender_score: float | None
    bag: bool | None
    bag_score: float | None = None
    backpack: bool | None
    backpack_score: float | None = None
    hat: bool | None
    hat_score: float | None = None
    long_sleeves: bool | None
    long_sleeves_score: float | None = None
    long_pants: bool | None
    long_pants_score: float | None = None
    long_hair: bool | None
    coat_jacket: bool | None
    upper_color: str | None
    upper_color_score: float | None = None
    lower_color: str | None
    lower_color_score: float | None = None


class FaceAttributesOut(Out):
    """A face's quality, landmarks and the person sighting it belongs to."""

    quality: float | None
    landmarks: list[list[float]]
    person_sighting_id: str | None


ATTRIBUTE_MODELS: dict[str, type[Out]] = {SightingKind.VEHICLE: VehicleAttributesOut,
                                          SightingKind.PERSON: PersonAttributesOut,
                                          SightingKind.FACE: FaceAttributesOut}


class TrackOut(Out):
    """How a video object was followed."""

    first_seen: IsoTime
    last_seen: IsoTime
    frames: int
    path: list[list[float]] = Field(description="[seconds after first_seen, centre x, centre y] per frame")


class SightingOut(Out):
    """One vehicle, person or face seen by one camera at one instant (Sighting.to_json)."""

    id: str
    camera_id: str
    ts: IsoTime
    kind: SightingKind
    bbox: Box
    det_score: float
    attributes: VehicleAttributesOut | PersonAttributesOut | FaceAttributesOut = Field(
        description="the attributes of the sighting's kind")
    crop: str | None = Field(description="blob key of the evidence crop (GET /sightings/{id}/crop)")
    frame_sha256: str | None
    embedding_space: str | None
    vector_id: int | None
    model_versions: dict[str, str]
    track: TrackOut | None = Field(description="video sightings: how the object was tracked")

    @model_validator(mode="before")
    @classmethod
    def _attributes_of_kind(cls, data: Any) -> Any:  # noqa: ANN401 - pydantic's raw input
        """The attribute fields are all optional, so only the sighting's kind says which model they are."""
        if isinstance(data, dict) and isinstance(data.get("attributes"), dict) and data.get("kind") in ATTRIBUTE_MODELS:
            data = {**data, "attributes": ATTRIBUTE_MODELS[data["kind"]].model_validate(data["attributes"])}
        return data


class SightingsOut(Out):
    """A page of sightings."""

    count: int
    sightings: list[SightingOut]

    @classmethod
    def of(cls, found: list[Sighting]) -> Self:
        return cls(count=len(found), sightings=[SightingOut.from_record(s) for s in found])


class IngestOut(Out):
    """One uploaded frame: its hash, whether it was seen before, and its sightings."""

    frame_sha256: str
    duplicate: bool
    sightings: list[SightingOut]

    @classmethod
    def from_record(cls, record: IngestResult) -> Self:
        return cls(frame_sha256=record.frame_sha256, duplicate=record.duplicate,
                   sightings=[SightingOut.from_record(s) for s in record.sightings])


class PurgeOut(Out):
    """What one deletion removed, store by store (PurgeReport)."""

    sightings: int
    frames: int
    vectors: int
    crops: int
    frame_files: int = Field(0, description="kept original frames deleted with their last sighting")


class SourceOut(Out):
    """A source of frames (services/sources: SourceStatus)."""

    name: str
    kind: str
    state: str
    counters: dict[str, int]
    last_error: str | None
    lag_s: float | None


class StreamOut(Out):
    """A live stream's state and counts (StreamStatus)."""

    id: str
    url: str
    camera_id: str
    state: str = Field(description="starting | running | reconnecting | stopped")
    fps: float
    frames: int
    sightings: int
    reconnects: int
    last_error: str | None


# -- search ----------------------------------------------------------------------------------------

class VocabularyOut(Out):
    """The values attribute search takes, and each colour's near colours (what `near_colors` adds)."""

    vehicle_colors: list[str]
    person_colors: list[str]
    vehicle_types: list[str]
    genders: list[str]
    near_colors: dict[str, list[str]]
    default_near: dict[str, list[str]] = Field(description="what a colour also matches unless `exact_colors`")


class ChipOut(Out):
    """One understood phrase of a free-text query: the filter it sets and the words it came from."""

    field: str
    value: str | bool | dict[str, object]
    text: str
    applied: bool = Field(description="false for a place that matches no camera: shown, not searched")


class ParsedQueryOut(Out):
    """A free-text query as the structured search it asks for; `filters` is an attribute-search body."""

    text: str
    kind: str | None
    plate: dict[str, str] | None = Field(description="q and mode (exact, wildcard, suffix) for /search/plates")
    filters: dict[str, object]
    chips: list[ChipOut]
    ignored: list[str] = Field(description="words not understood: not part of the search")


class PlateMatchOut(Out):
    """One matching plate, how close it is to the query, and its latest sightings."""

    plate: str
    score: float
    distance: float
    sightings_total: int
    sightings: list[SightingOut]

    @classmethod
    def from_record(cls, record: PlateResult) -> Self:
        return cls(plate=record.plate, score=record.score, distance=record.distance,
                   sightings_total=record.sightings_total,
                   sightings=[SightingOut.from_record(s) for s in record.sightings])


class PlateSearchOut(Out):
    """A plate search: the query as given and the matching plates, closest first."""

    query: str
    mode: str
    results: list[PlateMatchOut]


class DetectedObjectOut(Out):
    """An object of the searched kind in the query photo (largest first); `pick` takes it by index."""

    index: int
    bbox: Box
    score: float
    label: str


class ProbeOut(Out):
    """What the search took the query object to be."""

    kind: str
    bbox: Box
    vehicle_color: str | None
    vehicle_type: str | None
    plate: str | None


class HitOut(Out):
    """A sighting found by appearance, its score and the terms that made it."""

    sighting: SightingOut
    score: float
    why: dict[str, float | int] = Field(
        description="score terms: appearance, colour, type, plate, local (and local_inliers, a count; local_stored "
                    "1 when the features stored at ingest were matched, 0 when extracted from the crop)")

    @classmethod
    def from_record(cls, record: Hit) -> Self:
        return cls(sighting=SightingOut.from_record(record.sighting), score=record.score, why=record.why)


class ImageSearchOut(Out):
    """A photo search: the objects in the photo, the one searched for, and the nearest sightings."""

    objects: list[DetectedObjectOut]
    probe: ProbeOut
    results: list[HitOut]

    @classmethod
    def from_record(cls, record: ImageSearchResult) -> Self:
        return cls(objects=[DetectedObjectOut.from_record(o) for o in record.objects],
                   probe=ProbeOut.from_record(record.probe), results=[HitOut.from_record(h) for h in record.results])


class FaceHitOut(Out):
    """A face sighting at or above the match threshold, by cosine similarity."""

    sighting: SightingOut
    score: float


class FaceSearchOut(Out):
    """A face search: the face found in the photo, the threshold, and the matching face sightings."""

    face: Box
    threshold: float
    results: list[FaceHitOut]

    @classmethod
    def from_record(cls, record: FaceSearchResult) -> Self:
        return cls(face=record.face, threshold=record.threshold, results=[
            FaceHitOut(sighting=SightingOut.from_record(h.sighting), score=h.score) for h in record.results])


# -- geo analytics ---------------------------------------------------------------------------------

class LonLatOut(Out):
    lon: float
    lat: float


class TrackPointOut(Out):
    """One sighting of the plate on its route, at its camera."""

    sighting_id: str
    camera_id: str
    camera_name: str
    lon: float
    lat: float
    ts: IsoTime
    plate_score: float | None


class LegOut(Out):
    """Two consecutive points of the route: distance, time and implied speed."""

    model_config = ConfigDict(populate_by_name=True)

    from_: LonLatOut = Field(alias="from")
    to: LonLatOut
    distance_m: float
    seconds: float
    speed_kmh: float | None = Field(description="null when both sightings have the same time")


class StayOut(Out):
    """A place where the vehicle stops: nearby cameras with long gaps between its sightings."""

    lon: float
    lat: float
    camera_ids: list[str]
    visits: int
    dwell_s: float
    first: IsoTime | None
    last: IsoTime | None


class TrajectoryOut(Out):
    """A plate's (or a look-alike's) time-ordered route: points, legs, trips, stay points and GeoJSON."""

    plate: str
    points: list[TrackPointOut]
    legs: list[LegOut]
    trips: list[list[int]] = Field(description="each trip as indices into points")
    stays: list[StayOut]
    geojson: FeatureCollectionOut = Field(description="Point per sighting, LineString per trip with its time span")
    rejected: list[str] = Field(default=[], description="by appearance: look-alikes no feasible route keeps")

    @classmethod
    def from_record(cls, record: Trajectory) -> Self:
        return cls.model_validate(record.to_json())


class StaysOut(Out):
    """The stay points of a plate, ranked by visits and dwell time."""

    plate: str
    stays: list[StayOut]

    @classmethod
    def from_record(cls, record: Trajectory) -> Self:
        route = TrajectoryOut.from_record(record)
        return cls(plate=route.plate, stays=route.stays)


class SeenOut(Out):
    """One read of a cloned plate, with its evidence crop."""

    sighting_id: str
    camera_id: str
    lon: float
    lat: float
    ts: IsoTime
    vehicle_color: str | None
    vehicle_type: str | None
    crop: str | None


class AppearanceOut(Out):
    """How the two vehicles of the fastest impossible leg compare: each "same", "different" or "unknown"."""

    color: str
    vehicle_type: str
    embedding_distance: float | None = Field(description="cosine distance of the appearance vectors")


class ConflictOut(Out):
    """One impossible leg between two consecutive reads (sighting ids)."""

    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from")
    to: str
    distance_m: float
    seconds: float
    speed_kmh: float | None = Field(description="null when both reads have the same time")


class CloneCaseOut(Out):
    """A cloned-plate case: the fastest impossible leg, the appearance evidence and which read is which car."""

    plate: str
    speed_kmh: float | None
    distance_m: float
    seconds: float
    appearance: str = Field(description='"different" (stronger), "same" (weaker) or "unknown"')
    confidence: float
    evidence: AppearanceOut | None
    vehicles: dict[str, list[str]] = Field(description="vehicle label -> its sighting ids")
    sightings: list[SeenOut] = Field(description="the two reads of the fastest impossible leg")
    conflicts: list[ConflictOut]
    conflicting_sightings: list[SeenOut]


class ClonesOut(Out):
    """The cloned-plate cases found in a time range."""

    count: int
    cases: list[CloneCaseOut]

    @classmethod
    def of(cls, found: list[CloneCase]) -> Self:
        return cls(count=len(found), cases=[CloneCaseOut.from_record(c) for c in found])


class SharedPassOut(Out):
    """The target and a companion at one camera on one trip."""

    camera_id: str
    target_sighting_id: str
    sighting_id: str
    lag_s: float = Field(description="companion time minus target time")
    ts: IsoTime
    trip: int


class CompanionOut(Out):
    """A vehicle that travels with the target: how many cameras and trips, and how steady its lag is."""

    plate: str
    cameras: int
    trips: int
    mean_lag_s: float
    lag_std_s: float
    shared: list[SharedPassOut]


class CoTravelOut(Out):
    """The companions of a plate, ranked by shared cameras and by lag steadiness."""

    plate: str
    companions: list[CompanionOut]

    @classmethod
    def of(cls, plate: str, found: list[Companion]) -> Self:
        return cls(plate=plate, companions=[CompanionOut.from_record(c) for c in found])


class AreaMatchOut(Out):
    """One vehicle (by plate) or one sighting seen in every area during its window."""

    key: str
    plate: str | None
    sightings: list[SightingOut]


class AreaSearchOut(Out):
    """Who was seen in all the areas."""

    count: int
    results: list[AreaMatchOut]

    @classmethod
    def of(cls, found: dict[str, list[Sighting]], kind: str) -> Self:
        return cls(count=len(found), results=[
            AreaMatchOut(key=key, plate=key if kind == SightingKind.VEHICLE else None,
                         sightings=[SightingOut.from_record(s) for s in hits]) for key, hits in found.items()])


# -- watchlists, rules, alerts, webhooks -----------------------------------------------------------

class WatchlistOut(Out):
    """A watchlist (created_at is null in the answer to its creation)."""

    id: str
    name: str
    kind: WatchlistKind
    description: str
    created_by: str
    created_at: datetime | None


class WatchEntryOut(Out):
    """A watched plate pattern, enrolled face or attribute condition, with who added it and why."""

    id: str
    watchlist_id: str
    reason: str
    created_by: str
    value: str = Field(description="plate pattern, or a label for a face")
    match: PlateMatch
    tolerance: int
    conditions: dict[str, JsonValue] = Field(description="attribute entries: sighting field -> wanted value")
    created_at: datetime | None


class ImportOut(Out):
    """How many entries a CSV import added."""

    imported: int


class RuleOut(Out):
    """An alert rule."""

    id: str
    name: str
    kind: RuleKind
    target_plate: str | None
    watchlist_id: str | None
    camera_ids: list[str]
    area_wkt: str | None
    time_from: time | None
    time_to: time | None
    tz: str
    min_confidence: float
    severity: Severity
    cooldown_s: int
    active: bool


class AlertOut(Out):
    """A raised alert, acknowledged or not (also the `data` of each SSE `alert` event)."""

    id: str
    rule_id: str
    sighting_id: str
    camera_id: str
    ts: IsoTime = Field(description="when the sighting was made")
    raised_at: IsoTime
    severity: Severity
    target: str = Field(description="the plate, face entry or condition that matched")
    details: dict[str, JsonValue] = Field(description="rule-specific evidence, with the rule's name and the kind")
    crop: str | None
    acked_by: str | None
    acked_at: IsoTime | None

    @classmethod
    def from_record(cls, record: Alert) -> Self:
        return cls.model_validate(alert_json(record))


class WebhookOut(Out):
    """A webhook just registered, with the secret its deliveries are signed with (shown only here, once)."""

    id: str
    url: str
    secret: str = Field(description="HMAC-SHA256 key: each delivery's X-Sightline-Signature is "
                                    "sha256=<hex HMAC of the raw body>; keep it, it is never shown again")


class DeliveryOut(Out):
    """One alert's delivery to one webhook."""

    alert_id: str
    webhook_id: str
    state: str
    attempts: int
    last_error: str | None


class WebhooksOut(Out):
    """The webhooks (id -> url) and the deliveries that gave up."""

    webhooks: dict[str, str]
    dead_letters: list[DeliveryOut]


class RequeuedOut(Out):
    """How many dead deliveries were put back in the queue."""

    requeued: int


# -- cases (services/api/cases.py) -------------------------------------------------------------------

class CaseOut(Out):
    """A case's header: its number (the X-Case of the queries made for it), title, reason, owner and state."""

    id: str = Field(description="opaque id used in the /cases/{case_id} URLs")
    ref: str = Field(description="the case number")
    title: str
    reason: str
    owner: str
    created: IsoTime
    status: Literal["open", "closed"]
    closed: IsoTime | None
    closed_by: str | None
    collaborators: list[str] = Field(default=[], description="who may change it beside its owner")
    zone: str = Field(default="UTC", description="IANA time zone its evidence report prints times in")

    @classmethod
    def of(cls, case: Any) -> Self:  # noqa: ANN401 - indexer.case_store.Case
        return cls(id=case.id, ref=case.ref, title=case.title, reason=case.reason, owner=case.owner,
                   created=case.created.isoformat(), status=case.status.value,
                   closed=case.closed.isoformat() if case.closed else None, closed_by=case.closed_by,
                   collaborators=case.collaborators, zone=case.zone)


class CasesOut(Out):
    """Cases, newest first."""

    cases: list[CaseOut]


class CaseItemOut(Out):
    """One finding collected in a case."""

    id: str
    kind: Literal["sighting", "search", "trajectory", "clone", "cotravel"]
    added_by: str
    added: IsoTime
    note: str
    sighting_ids: list[str]
    plate: str | None
    other_plate: str | None
    start: IsoTime | None
    end: IsoTime | None
    query: str | None

    @classmethod
    def of(cls, item: Any) -> Self:  # noqa: ANN401 - indexer.case_store.CaseItem
        return cls(id=item.id, kind=item.kind.value, added_by=item.added_by, added=item.added.isoformat(),
                   note=item.note, sighting_ids=item.sighting_ids, plate=item.plate, other_plate=item.other_plate,
                   start=item.start.isoformat() if item.start else None,
                   end=item.end.isoformat() if item.end else None, query=item.query)


class CaseNoteOut(Out):
    id: str
    author: str
    ts: IsoTime
    text: str

    @classmethod
    def of(cls, note: Any) -> Self:  # noqa: ANN401 - indexer.case_store.CaseNote
        return cls(id=note.id, author=note.author, ts=note.ts.isoformat(), text=note.text)


class CaseFileOut(Out):
    """A case with its items (in the order added), the sightings they name, and its notes."""

    case: CaseOut
    items: list[CaseItemOut]
    sightings: list[SightingOut] = Field(description="the sightings the items name (those not purged since)")
    notes: list[CaseNoteOut]
