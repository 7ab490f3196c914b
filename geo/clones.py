"""Cloned plates: one plate seen at two places too far apart for the time between them.

The straight-line distance is a lower bound on the road distance, so an implied
speed above `max_speed_kmh` over it cannot be one car. Low-confidence plate reads
are ignored (a misread is not a clone), and very close cameras are ignored (clock
jitter between neighbouring cameras is not a clone). The vehicles' appearance
strengthens a case (different colour, type or appearance vector) or weakens it (same look).

Two modes. Streaming: `CloneMonitor` keeps the last read of every plate and checks
each new read against it — one dictionary lookup and one distance. Batch: `scan`
reads the store's plate reads in time order as arrays, finds the plates with an
impossible leg with numpy, and only for those few loads full sightings to build cases.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from geo.distance import haversine_m, haversine_one_m
from geo.trajectories import check_range
from indexer.store import ReadColumns, RecordStore, SightingQuery
from models.records import Camera, InputError, Sighting


@dataclass(frozen=True)
class CloneSettings:
    max_speed_kmh: float = 150.0
    min_plate_score: float = 0.8
    min_distance_m: float = 1000.0
    same_look_below: float = 0.1  # cosine distance of appearance vectors under which two crops show one car
    different_look_above: float = 0.3  # ... and over which they show two

    def __post_init__(self) -> None:
        if self.max_speed_kmh <= 0 or self.min_distance_m < 0 or not 0 <= self.min_plate_score <= 1:
            raise InputError("max_speed_kmh must be positive, min_distance_m not negative, min_plate_score in [0, 1]")


@dataclass
class Seen:
    """One plate read, compactly: what a case shows and what the streaming check keeps per plate."""

    sighting_id: str
    camera_id: str
    lon: float
    lat: float
    ts: datetime
    color: str | None
    vehicle_type: str | None
    crop: str | None = None
    embedding_space: str | None = None
    vector_id: int | None = None

    def to_json(self) -> dict:
        return {"sighting_id": self.sighting_id, "camera_id": self.camera_id, "lon": self.lon, "lat": self.lat,
                "ts": self.ts.isoformat(), "vehicle_color": self.color, "vehicle_type": self.vehicle_type,
                "crop": self.crop}


@dataclass
class Conflict:
    """One impossible leg: two consecutive reads of the plate."""

    first: Seen
    second: Seen
    distance_m: float
    seconds: float
    speed_kmh: float  # inf when both reads have the same time


@dataclass
class Appearance:
    """How the two vehicles of the fastest impossible leg look: the evidence beside the speed."""

    color: str  # "same" | "different" | "unknown"
    vehicle_type: str
    embedding_distance: float | None  # cosine distance of the appearance vectors, when both crops have one

    def verdict(self, settings: CloneSettings) -> str:
        """"different" strengthens a case (two cars), "same" weakens it (one car, a clock or position error?)."""
        d = self.embedding_distance
        if "different" in (self.color, self.vehicle_type) or (d is not None and d > settings.different_look_above):
            return "different"
        if d is not None and d < settings.same_look_below:
            return "same"
        if self.color == "same" and self.vehicle_type == "same":
            return "same"
        return "unknown"


@dataclass
class CloneCase:
    plate: str
    speed_kmh: float  # of the fastest impossible leg, `pair`
    distance_m: float
    seconds: float
    pair: tuple[Seen, Seen]
    appearance: str  # "different" (stronger), "same" (weaker), "unknown"
    confidence: float  # 0..1: the speed evidence, moved by appearance
    evidence: Appearance | None = None
    conflicts: list[Conflict] = field(default_factory=list)
    vehicles: dict[str, list[str]] = field(default_factory=dict)  # vehicle label -> sighting ids

    def to_json(self) -> dict:
        speed = None if np.isinf(self.speed_kmh) else round(self.speed_kmh, 1)
        involved = {s.sighting_id: s for c in self.conflicts for s in (c.first, c.second)} or \
            {s.sighting_id: s for s in self.pair}
        return {"plate": self.plate, "speed_kmh": speed, "distance_m": round(self.distance_m, 1),
                "seconds": self.seconds, "appearance": self.appearance, "confidence": round(self.confidence, 2),
                "evidence": None if self.evidence is None else {
                    "color": self.evidence.color, "vehicle_type": self.evidence.vehicle_type,
                    "embedding_distance": None if self.evidence.embedding_distance is None
                    else round(self.evidence.embedding_distance, 3)},
                "vehicles": self.vehicles, "sightings": [s.to_json() for s in self.pair],
                "conflicts": [{"from": c.first.sighting_id, "to": c.second.sighting_id,
                               "distance_m": round(c.distance_m, 1), "seconds": c.seconds,
                               "speed_kmh": None if np.isinf(c.speed_kmh) else round(c.speed_kmh, 1)}
                              for c in self.conflicts],
                "conflicting_sightings": [s.to_json() for s in sorted(involved.values(), key=lambda s: s.ts)]}


def seen(s: Sighting, camera: Camera) -> Seen:
    return Seen(s.id, s.camera_id, camera.lon, camera.lat, s.ts, getattr(s.attributes, "vehicle_color", None),
                getattr(s.attributes, "vehicle_type", None), s.crop, s.embedding_space, s.vector_id)


def conflict(a: Seen, b: Seen, settings: CloneSettings) -> Conflict | None:
    """The impossible leg between a and b, or None when one vehicle can have made both reads."""
    distance = haversine_one_m(a.lon, a.lat, b.lon, b.lat)
    if distance < settings.min_distance_m:
        return None
    seconds = abs((b.ts - a.ts).total_seconds())
    speed = distance / seconds * 3.6 if seconds > 0 else float("inf")
    if speed <= settings.max_speed_kmh:
        return None
    first, second = (a, b) if a.ts <= b.ts else (b, a)
    return Conflict(first, second, distance, seconds, speed)


def _compare(a: str | None, b: str | None) -> str:
    return "unknown" if not a or not b else ("same" if a == b else "different")


def appearance(store: RecordStore | None, a: Seen, b: Seen) -> Appearance:
    distance = None
    if store is not None and a.embedding_space and a.embedding_space == b.embedding_space \
            and a.vector_id is not None and b.vector_id is not None:
        vectors = store.get_vectors(a.embedding_space, [a.vector_id, b.vector_id])
        if len(vectors) == 2:
            u, v = vectors[a.vector_id], vectors[b.vector_id]
            distance = float(1 - u @ v / max(1e-12, float(np.linalg.norm(u) * np.linalg.norm(v))))
    return Appearance(_compare(a.color, b.color), _compare(a.vehicle_type, b.vehicle_type), distance)


def make_case(plate: str, conflicts: list[Conflict], settings: CloneSettings, store: RecordStore | None = None,
              vehicles: dict[str, list[str]] | None = None) -> CloneCase:
    worst = max(conflicts, key=lambda c: c.speed_kmh)
    look = appearance(store, worst.first, worst.second)
    verdict = look.verdict(settings)
    # Twice the limit or more is hard to explain by a clock or position error; appearance moves it either way.
    confidence = 0.7 + (0.1 if worst.speed_kmh >= 2 * settings.max_speed_kmh else 0.0) \
        + {"different": 0.2, "same": -0.3, "unknown": 0.0}[verdict]
    return CloneCase(plate, worst.speed_kmh, worst.distance_m, worst.seconds, (worst.first, worst.second), verdict,
                     min(0.99, max(0.05, confidence)), look, conflicts,
                     vehicles or {"vehicle A": [worst.first.sighting_id], "vehicle B": [worst.second.sighting_id]})


class CloneMonitor:
    """Streaming check: O(1) per sighting — one dictionary lookup and one distance against the plate's last read."""

    def __init__(self, cameras: dict[str, Camera], settings: CloneSettings | None = None):
        self.cameras, self.settings = cameras, settings or CloneSettings()
        self.last: dict[str, Seen] = {}

    def check(self, s: Sighting) -> CloneCase | None:
        plate = getattr(s.attributes, "plate", None)
        score = getattr(s.attributes, "plate_score", None) or 0.0
        camera = self.cameras.get(s.camera_id)
        if not plate or score < self.settings.min_plate_score or camera is None:
            return None
        now = seen(s, camera)
        before = self.last.get(plate)
        if before is None or now.ts >= before.ts:
            self.last[plate] = now
        found = conflict(before, now, self.settings) if before is not None else None
        return make_case(plate, [found], self.settings) if found else None


def _feasible(reads: list[Seen], settings: CloneSettings) -> bool:
    return all(conflict(a, b, settings) is None for a, b in zip(reads, reads[1:], strict=False))


def split_vehicles(reads: list[Seen], settings: CloneSettings) -> dict[str, list[str]]:
    """Assign a plate's reads to as few vehicles as can physically have made them.

    When the reads' look (colour, type) splits them into groups that are each drivable by one
    car, that is the answer. Otherwise reads go in time order to a vehicle that can have
    reached them, preferring the same look, then the nearest (a car starts where it stopped).
    """
    ordered = sorted(reads, key=lambda x: x.ts)
    by_look: dict[tuple, list[Seen]] = {}
    for s in ordered:
        by_look.setdefault((s.color, s.vehicle_type), []).append(s)
    if (len(by_look) > 1 and None not in {c for c, _ in by_look}
            and all(_feasible(g, settings) for g in by_look.values())):
        groups = list(by_look.values())
    else:
        groups = []
        for s in ordered:
            reachable = [g for g in groups if conflict(g[-1], s, settings) is None]
            if not reachable:
                groups.append([s])
                continue
            min(reachable, key=lambda g: ((g[-1].color, g[-1].vehicle_type) != (s.color, s.vehicle_type),
                                          haversine_one_m(g[-1].lon, g[-1].lat, s.lon, s.lat))).append(s)
    groups.sort(key=lambda g: g[0].ts)
    return {f"vehicle {chr(65 + i) if i < 26 else i + 1}": [s.sighting_id for s in g] for i, g in enumerate(groups)}


class LastRead:
    """The latest read of every plate so far, as arrays indexed by plate id: carries legs across chunks."""

    def __init__(self) -> None:
        self.lon, self.lat = np.zeros(0), np.zeros(0)
        self.ts = np.zeros(0, dtype=np.int64)  # -1: no read of that plate yet

    def ensure(self, size: int) -> None:
        if size > len(self.ts):
            grow = size - len(self.ts) + 1024
            self.lon, self.lat = np.append(self.lon, np.zeros(grow)), np.append(self.lat, np.zeros(grow))
            self.ts = np.append(self.ts, np.full(grow, -1, dtype=np.int64))


def flag_plates(chunk: ReadColumns, last: LastRead, settings: CloneSettings) -> np.ndarray:
    """Plate ids with an impossible leg in a time-ordered chunk (legs from the previous chunk included)."""
    order = np.lexsort((chunk.ts_us, chunk.plate_ids))  # by plate, then time
    p, x, y, t = chunk.plate_ids[order], chunk.lon[order], chunk.lat[order], chunk.ts_us[order]
    last.ensure(int(p.max()) + 1)
    first = np.ones(len(p), dtype=bool)
    first[1:] = p[1:] != p[:-1]
    px, py, pt = np.roll(x, 1), np.roll(y, 1), np.roll(t, 1)
    px[first], py[first], pt[first] = last.lon[p[first]], last.lat[p[first]], last.ts[p[first]]
    has_prev = pt >= 0
    dist = haversine_m(px, py, x, y)
    dt = (t - pt) / 1e6
    with np.errstate(divide="ignore", invalid="ignore"):
        too_fast = np.where(dt > 0, dist / dt * 3.6 > settings.max_speed_kmh, True)
    bad = has_prev & (dist >= settings.min_distance_m) & too_fast
    final = np.ones(len(p), dtype=bool)
    final[:-1] = p[:-1] != p[1:]
    last.lon[p[final]], last.lat[p[final]], last.ts[p[final]] = x[final], y[final], t[final]
    return np.unique(p[bad])


def plate_case(store: RecordStore, plate: str, cameras: dict[str, Camera], start: datetime | None,
               end: datetime | None, settings: CloneSettings) -> CloneCase | None:
    """The full case for one plate: every impossible leg, its evidence, and which reads belong to which vehicle."""
    found = store.query(SightingQuery(kind="vehicle", plate=plate, start=start, end=end, newest_first=False,
                                      limit=1_000_000))
    reads = [seen(s, cameras[s.camera_id]) for s in found
             if s.camera_id in cameras
             and (getattr(s.attributes, "plate_score", None) or 0.0) >= settings.min_plate_score]
    conflicts = [c for a, b in zip(reads, reads[1:], strict=False) if (c := conflict(a, b, settings))]
    if not conflicts:
        return None
    return make_case(plate, conflicts, settings, store, split_vehicles(reads, settings))


def scan(store: RecordStore, start: datetime | None = None, end: datetime | None = None,
         settings: CloneSettings | None = None) -> list[CloneCase]:
    """Batch scan of a time range: numpy over time-ordered chunks of all reads, then full cases for flagged plates."""
    check_range(start, end)
    settings = settings or CloneSettings()
    last, flagged = LastRead(), set()
    for chunk in store.plate_read_columns(start, end, settings.min_plate_score):
        flagged.update(flag_plates(chunk, last, settings).tolist())
    cameras = {c.id: c for c in store.list_cameras()}
    names = store.plate_names(sorted(flagged))
    cases = [case for plate in sorted(names.values())
             if (case := plate_case(store, plate, cameras, start, end, settings))]
    return sorted(cases, key=lambda c: (-c.confidence, -c.speed_kmh, c.plate))
