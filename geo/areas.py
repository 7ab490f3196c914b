"""Area/time queries: who was seen inside polygon A during [t1, t2] — and also in B during [t3, t4], and so on.

A polygon selects the cameras inside it (shapely, lon/lat); the record store's
(camera, time) index does the rest. Vehicles are joined across areas by plate;
people, who carry no plate, are listed per area only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

from shapely.errors import ShapelyError
from shapely.geometry import Point, shape

from geo.trajectories import check_range
from indexer.store import RecordStore, SightingQuery
from models.records import InputError, Sighting

EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)  # an open window's ends
LATEST = datetime(2200, 1, 1, tzinfo=timezone.utc)


@dataclass
class AreaWindow:
    polygon: dict  # GeoJSON Polygon or MultiPolygon, lon/lat
    start: datetime | None = None
    end: datetime | None = None


def square(lon: float, lat: float, half_side_m: float) -> dict:
    """A GeoJSON square around a point (a quick area for tests, benchmarks and "around this camera")."""
    dlat = half_side_m / 111_195.0
    dlon = dlat / max(1e-6, math.cos(math.radians(lat)))
    ring = [[lon - dlon, lat - dlat], [lon + dlon, lat - dlat], [lon + dlon, lat + dlat], [lon - dlon, lat + dlat]]
    return {"type": "Polygon", "coordinates": [ring + [ring[0]]]}


def cameras_inside(store: RecordStore, polygon: dict) -> list[str]:
    try:
        area = shape(polygon)
    except (ShapelyError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"the area is not a valid GeoJSON polygon: {exc}") from exc
    if area.geom_type not in ("Polygon", "MultiPolygon") or area.is_empty or not area.is_valid:
        raise InputError("the area must be a valid, non-empty Polygon or MultiPolygon (lon/lat)")
    return [c.id for c in store.list_cameras() if area.covers(Point(c.lon, c.lat))]


def seen_in_area(store: RecordStore, window: AreaWindow, kind: str = "vehicle", limit: int = 100_000) -> list[Sighting]:
    check_range(window.start, window.end)
    cameras = cameras_inside(store, window.polygon)
    if not cameras:
        return []
    return store.query(SightingQuery(kind=kind, camera_ids=cameras, start=window.start, end=window.end, limit=limit))


def seen_in_all(store: RecordStore, windows: list[AreaWindow], kind: str = "vehicle",
                limit: int | None = None) -> dict[str, list[Sighting]]:
    """Plates (vehicles) seen in every area during its window, with their sightings there; for people, one area.

    Each area is read compactly (sighting id, plate, time per camera, from the (camera, time)
    index); full sightings are loaded only for the plates in every area, at most `limit` of them:
    a busy area at rush hour holds thousands of passes, and most plates drop out of the join.
    """
    if not windows:
        raise InputError("give at least one area")
    if kind != "vehicle" and len(windows) > 1:
        raise InputError("joining several areas needs a plate: use kind=vehicle")
    per_area: list[dict[str, list[str]]] = []
    for w in windows:
        check_range(w.start, w.end)
        found: dict[str, list[str]] = {}
        t0, t1 = w.start or EARLIEST, w.end or LATEST
        for camera in cameras_inside(store, w.polygon):
            for sid, plate, ts in store.camera_window(camera, t0, t1, kind):
                if ts >= t1:
                    continue
                if kind != "vehicle":
                    found.setdefault(sid, []).append(sid)
                elif plate:  # vehicles are joined by plate: an unread one joins nothing
                    found.setdefault(plate, []).append(sid)
        per_area.append(found)
    common = sorted(set(per_area[0]).intersection(*per_area[1:]))[:limit]
    ids = [sid for key in common for area in per_area for sid in area[key]]
    sightings = {s.id: s for i in range(0, len(ids), 10_000) for s in store.get_sightings(ids[i:i + 10_000])}
    return {key: sorted((sightings[sid] for area in per_area for sid in area[key] if sid in sightings),
                        key=lambda s: s.ts)
            for key in common}
