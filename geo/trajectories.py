"""Trajectories and stay points of one plate: sightings joined with camera positions, in time order.

A trajectory is cut into trips where consecutive sightings are more than `trip_gap`
apart. A stay is a gap of at least `min_stay` between two consecutive sightings
at cameras within `stay_radius_m` of each other: the vehicle stopped nearby.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from geo.distance import haversine_m
from indexer.store import RecordStore, SightingQuery
from models.records import Camera, InputError, Sighting, parse_time


@dataclass
class TrackPoint:
    sighting_id: str
    camera_id: str
    camera_name: str
    lon: float
    lat: float
    ts: datetime
    plate_score: float | None


@dataclass
class Leg:
    """From one sighting to the next: straight-line distance (a lower bound on the road), time, implied speed."""

    from_index: int
    to_index: int
    distance_m: float
    seconds: float
    speed_kmh: float | None  # None when both sightings have the same time


@dataclass
class Stay:
    lon: float
    lat: float
    camera_ids: list[str]
    visits: int = 0
    dwell_s: float = 0.0
    first: datetime | None = None
    last: datetime | None = None


@dataclass
class Trajectory:
    plate: str
    points: list[TrackPoint]
    legs: list[Leg]
    trips: list[list[int]]  # indices into points
    stays: list[Stay] = field(default_factory=list)

    def to_json(self) -> dict:
        pts = [{"sighting_id": p.sighting_id, "camera_id": p.camera_id, "camera_name": p.camera_name, "lon": p.lon,
                "lat": p.lat, "ts": p.ts.isoformat(), "plate_score": p.plate_score} for p in self.points]
        legs = [{"from": {"lon": self.points[g.from_index].lon, "lat": self.points[g.from_index].lat},
                 "to": {"lon": self.points[g.to_index].lon, "lat": self.points[g.to_index].lat},
                 "distance_m": round(g.distance_m, 1), "seconds": g.seconds,
                 "speed_kmh": None if g.speed_kmh is None else round(g.speed_kmh, 1)} for g in self.legs]
        stays = [{"lon": s.lon, "lat": s.lat, "camera_ids": s.camera_ids, "visits": s.visits, "dwell_s": s.dwell_s,
                  "first": s.first.isoformat() if s.first else None, "last": s.last.isoformat() if s.last else None}
                 for s in self.stays]
        return {"plate": self.plate, "points": pts, "legs": legs, "trips": self.trips, "stays": stays,
                "geojson": self.geojson()}

    def geojson(self) -> dict:
        """Points, and one LineString per trip with its time span."""
        features = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [p.lon, p.lat]},
                     "properties": {"order": i + 1, "sighting_id": p.sighting_id, "camera_id": p.camera_id,
                                    "ts": p.ts.isoformat()}} for i, p in enumerate(self.points)]
        for n, trip in enumerate(self.trips):
            if len(trip) > 1:
                features.append({"type": "Feature", "geometry": {
                    "type": "LineString", "coordinates": [[self.points[i].lon, self.points[i].lat] for i in trip]},
                    "properties": {"trip": n + 1, "start": self.points[trip[0]].ts.isoformat(),
                                   "end": self.points[trip[-1]].ts.isoformat()}})
        return {"type": "FeatureCollection", "features": features}


def check_range(start: datetime | None, end: datetime | None) -> None:
    if start and end and end < start:
        raise InputError("the time range ends before it starts")


def parse_range(start: str | None, end: str | None) -> tuple[datetime | None, datetime | None]:
    """An optional ISO 8601 range (each end with a zone), checked for order."""
    t0, t1 = (parse_time(start) if start else None), (parse_time(end) if end else None)
    check_range(t0, t1)
    return t0, t1


def build(plate: str, sightings: list[Sighting], cameras: dict[str, Camera],
          trip_gap: timedelta = timedelta(minutes=30), min_stay: timedelta = timedelta(minutes=30),
          stay_radius_m: float = 500.0) -> Trajectory:
    """Order sightings in time, join camera positions, and derive legs, trips and stays."""
    ordered = sorted((s for s in sightings if s.camera_id in cameras), key=lambda s: (s.ts, s.id))
    points = [TrackPoint(s.id, s.camera_id, cameras[s.camera_id].name, cameras[s.camera_id].lon,
                         cameras[s.camera_id].lat, s.ts, getattr(s.attributes, "plate_score", None)) for s in ordered]
    legs: list[Leg] = []
    trips: list[list[int]] = [[0]] if points else []
    if len(points) > 1:
        lon = np.array([p.lon for p in points])
        lat = np.array([p.lat for p in points])
        dist = haversine_m(lon[:-1], lat[:-1], lon[1:], lat[1:])
        secs = np.array([(b.ts - a.ts).total_seconds() for a, b in zip(points, points[1:], strict=False)])
        for i, (d, t) in enumerate(zip(dist, secs, strict=True)):
            legs.append(Leg(i, i + 1, float(d), float(t), float(d / t * 3.6) if t > 0 else None))
            if t > trip_gap.total_seconds():
                trips.append([i + 1])
            else:
                trips[-1].append(i + 1)
    return Trajectory(plate, points, legs, trips, stays(points, legs, min_stay, stay_radius_m))


def stays(points: list[TrackPoint], legs: list[Leg], min_stay: timedelta, radius_m: float) -> list[Stay]:
    """Long gaps at nearby cameras, grouped into places (greedy by distance), ranked by visits then dwell."""
    places: list[Stay] = []
    for leg in legs:
        if leg.seconds < min_stay.total_seconds() or leg.distance_m > radius_m:
            continue
        a, b = points[leg.from_index], points[leg.to_index]
        lon, lat = (a.lon + b.lon) / 2, (a.lat + b.lat) / 2
        place = next((p for p in places if haversine_m(p.lon, p.lat, lon, lat) <= radius_m), None)
        if place is None:
            place = Stay(lon, lat, [])
            places.append(place)
        place.visits += 1
        place.dwell_s += leg.seconds
        place.camera_ids = sorted(set(place.camera_ids) | {a.camera_id, b.camera_id})
        place.first = min(filter(None, [place.first, a.ts]))
        place.last = max(filter(None, [place.last, b.ts]))
    return sorted(places, key=lambda p: (-p.visits, -p.dwell_s))


def trajectory(store: RecordStore, plate: str, start: datetime | None = None, end: datetime | None = None,
               limit: int = 100_000, also: list[str] | None = None) -> Trajectory:
    """The trajectory of a plate over a time range (an unknown plate gives an empty trajectory).

    `also` adds the sightings of other plate texts — the near misses a fuzzy search found, i.e. the same
    car misread — so one misread character does not cut the route short.
    """
    check_range(start, end)
    sightings = [s for p in [plate, *(also or [])]
                 for s in store.query(SightingQuery(kind="vehicle", plate=p, start=start, end=end, limit=limit))]
    cameras = {c.id: c for c in store.list_cameras()}
    return build(plate, sightings, cameras)


NEARBY_M = 200.0  # cameras this close may see one vehicle at the same instant (one junction, both sides of a road)


def feasible_chain(anchor: str, matches: list[tuple[Sighting, float]], cameras: dict[str, Camera],
                   max_speed_kmh: float) -> tuple[list[Sighting], list[Sighting]]:
    """Of a vehicle's look-alikes, the ones it could really have been: the chain through the anchor sighting, in
    time order, whose every step is reachable in a straight line at `max_speed_kmh` (within NEARBY_M at once), with
    the most summed similarity; and the rest, which no such chain keeps (a look-alike 40 km away a minute later).

    A dynamic programme over the time-ordered matches: the best chain ending at each one, and starting at each one;
    the anchor joins the two."""
    placed = sorted(((s, score) for s, score in matches if s.camera_id in cameras), key=lambda m: (m[0].ts, m[0].id))
    if not any(s.id == anchor for s, _ in placed):
        return [s for s, _ in placed], []
    n = len(placed)
    lon = np.array([cameras[s.camera_id].lon for s, _ in placed])
    lat = np.array([cameras[s.camera_id].lat for s, _ in placed])
    ts = np.array([s.ts.timestamp() for s, _ in placed])
    gain = np.array([score for _, score in placed])
    metres = haversine_m(lon[:, None], lat[:, None], lon[None, :], lat[None, :])
    reach = np.maximum(NEARBY_M, np.abs(ts[None, :] - ts[:, None]) * max_speed_kmh / 3.6)
    ok = metres <= reach  # ok[i, j]: one vehicle can be at both
    ending, before = gain.copy(), np.full(n, -1)
    for j in range(n):
        steps = np.flatnonzero(ok[:j, j])
        if steps.size:
            i = steps[np.argmax(ending[steps])]
            ending[j], before[j] = gain[j] + ending[i], i
    starting, after = gain.copy(), np.full(n, -1)
    for j in range(n - 1, -1, -1):
        steps = j + 1 + np.flatnonzero(ok[j, j + 1:])
        if steps.size:
            i = steps[np.argmax(starting[steps])]
            starting[j], after[j] = gain[j] + starting[i], i
    a = next(k for k, (s, _) in enumerate(placed) if s.id == anchor)
    chain, k = [], a
    while k != -1:
        chain.append(int(k))
        k = before[k]
    chain.reverse()
    k = after[a]
    while k != -1:
        chain.append(int(k))
        k = after[k]
    kept = set(chain)
    return [placed[k][0] for k in chain], [placed[k][0] for k in range(n) if k not in kept]


def trajectory_of_sightings(store: RecordStore, label: str, sightings: list[Sighting]) -> Trajectory:
    """A trajectory from chosen sightings, e.g. a vehicle's appearance matches when its plate is hidden or fake."""
    return build(label, sightings, {c.id: c for c in store.list_cameras()})
