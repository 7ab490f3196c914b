"""Cloned plates: one plate seen at two places too far apart for the time between them.

The straight-line distance is a lower bound on the road distance, so an implied
speed above `max_speed_kmh` over it cannot be one car. Low-confidence plate reads
are ignored (a misread is not a clone), and very close cameras are ignored (clock
jitter between neighbouring cameras is not a clone). The vehicles' appearance
strengthens a case (different colour or type) or weakens it (same look).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from geo.trajectories import haversine_m
from indexer.store import RecordStore
from models.records import Camera, Sighting


@dataclass(frozen=True)
class CloneSettings:
    max_speed_kmh: float = 150.0
    min_plate_score: float = 0.8
    min_distance_m: float = 1000.0


@dataclass
class Seen:
    """What the streaming check keeps per plate: the latest sighting, compactly."""

    sighting_id: str
    camera_id: str
    lon: float
    lat: float
    ts: datetime
    color: str | None
    vehicle_type: str | None


@dataclass
class CloneCase:
    plate: str
    speed_kmh: float
    distance_m: float
    seconds: float
    pair: tuple[Seen, Seen]
    appearance: str  # "different" (stronger), "same" (weaker), "unknown"
    vehicles: dict[str, list[str]] = field(default_factory=dict)  # vehicle label -> sighting ids

    def to_json(self, crops: dict[str, str | None] | None = None) -> dict:
        crops = crops or {}
        return {"plate": self.plate, "speed_kmh": round(self.speed_kmh, 1), "distance_m": round(self.distance_m, 1),
                "seconds": self.seconds, "appearance": self.appearance, "vehicles": self.vehicles,
                "sightings": [{"sighting_id": s.sighting_id, "camera_id": s.camera_id, "lon": s.lon, "lat": s.lat,
                               "ts": s.ts.isoformat(), "vehicle_color": s.color, "vehicle_type": s.vehicle_type,
                               "crop": crops.get(s.sighting_id)} for s in self.pair]}


def _seen(s: Sighting, camera: Camera) -> Seen:
    return Seen(s.id, s.camera_id, camera.lon, camera.lat, s.ts, getattr(s.attributes, "vehicle_color", None),
                getattr(s.attributes, "vehicle_type", None))


def _appearance(a: Seen, b: Seen) -> str:
    if a.color and b.color and a.vehicle_type and b.vehicle_type:
        return "same" if (a.color, a.vehicle_type) == (b.color, b.vehicle_type) else "different"
    return "unknown"


def conflict(a: Seen, b: Seen, plate: str, settings: CloneSettings) -> CloneCase | None:
    """A case when a and b cannot be one vehicle; None when they can."""
    distance = float(haversine_m(a.lon, a.lat, b.lon, b.lat))
    if distance < settings.min_distance_m:
        return None
    seconds = abs((b.ts - a.ts).total_seconds())
    speed = distance / seconds * 3.6 if seconds > 0 else float("inf")
    if speed <= settings.max_speed_kmh:
        return None
    first, second = (a, b) if a.ts <= b.ts else (b, a)
    return CloneCase(plate, speed, distance, seconds, (first, second), _appearance(first, second))


class CloneMonitor:
    """Streaming check: O(1) per sighting — one dictionary lookup and one distance."""

    def __init__(self, cameras: dict[str, Camera], settings: CloneSettings | None = None):
        self.cameras, self.settings = cameras, settings or CloneSettings()
        self.last: dict[str, Seen] = {}

    def check(self, s: Sighting) -> CloneCase | None:
        plate = getattr(s.attributes, "plate", None)
        score = getattr(s.attributes, "plate_score", None) or 0.0
        camera = self.cameras.get(s.camera_id)
        if not plate or score < self.settings.min_plate_score or camera is None:
            return None
        now = _seen(s, camera)
        before = self.last.get(plate)
        if before is None or now.ts >= before.ts:
            self.last[plate] = now
        return conflict(before, now, plate, self.settings) if before is not None else None


def split_vehicles(seen: list[Seen], settings: CloneSettings) -> dict[str, list[str]]:
    """Assign a plate's sightings (time order) to as few vehicles as can physically have made them."""
    groups: list[list[Seen]] = []
    for s in sorted(seen, key=lambda x: x.ts):
        home = next((g for g in groups if conflict(g[-1], s, "", settings) is None), None)
        if home is None:
            groups.append([s])
        else:
            home.append(s)
    return {f"vehicle {chr(65 + i)}": [s.sighting_id for s in g] for i, g in enumerate(groups)}


def scan(store: RecordStore, start: datetime | None = None, end: datetime | None = None,
         settings: CloneSettings | None = None) -> list[CloneCase]:
    """Batch scan of a time range: every consecutive pair of each plate's reads, vectorised per plate chunk."""
    settings = settings or CloneSettings()
    cameras = {c.id: c for c in store.list_cameras()}
    cases: list[CloneCase] = []
    for plate, rows in store.plate_reads(start, end, settings.min_plate_score):
        rows = [r for r in rows if r[1] in cameras]
        if len(rows) < 2:
            continue
        lon = np.array([cameras[r[1]].lon for r in rows])
        lat = np.array([cameras[r[1]].lat for r in rows])
        secs = np.array([r[2].timestamp() for r in rows])
        dist = haversine_m(lon[:-1], lat[:-1], lon[1:], lat[1:])
        dt = np.diff(secs)
        with np.errstate(divide="ignore"):
            speed = np.where(dt > 0, dist / np.maximum(dt, 1e-9) * 3.6, np.inf)
        bad = np.flatnonzero((dist >= settings.min_distance_m) & (speed > settings.max_speed_kmh))
        if not len(bad):
            continue
        sightings = {s.id: s for s in store.get_sightings([r[0] for r in rows])}
        seen = [_seen(sightings[r[0]], cameras[r[1]]) for r in rows if r[0] in sightings]
        vehicles = split_vehicles(seen, settings)
        for i in bad:
            case = conflict(seen[i], seen[i + 1], plate, settings)
            if case is not None:
                case.vehicles = vehicles
                cases.append(case)
    return sorted(cases, key=lambda c: -c.speed_kmh)


def case_crops(store: RecordStore, cases: list[CloneCase]) -> dict[str, str | None]:
    ids = [s.sighting_id for c in cases for s in c.pair]
    return {s.id: s.crop for s in store.get_sightings(ids)}

