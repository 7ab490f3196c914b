"""Area/time queries: who was seen inside polygon A during [t1, t2] — and also in B during [t3, t4], and so on.

A polygon selects the cameras inside it (shapely, lon/lat); the record store's
(camera, time) index does the rest. Vehicles are joined across areas by plate;
people, who carry no plate, are listed per area only.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shapely.errors import ShapelyError
from shapely.geometry import Point, shape

from geo.trajectories import check_range
from indexer.store import RecordStore, SightingQuery
from models.records import InputError, Sighting


@dataclass
class AreaWindow:
    polygon: dict  # GeoJSON Polygon or MultiPolygon, lon/lat
    start: datetime | None = None
    end: datetime | None = None


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


def seen_in_all(store: RecordStore, windows: list[AreaWindow], kind: str = "vehicle") -> dict[str, list[Sighting]]:
    """Plates (vehicles) seen in every area during its window, with their sightings there; for people, one area."""
    if not windows:
        raise InputError("give at least one area")
    if kind != "vehicle" and len(windows) > 1:
        raise InputError("joining several areas needs a plate: use kind=vehicle")
    per_area = [seen_in_area(store, w, kind) for w in windows]
    if kind != "vehicle":
        return {s.id: [s] for s in per_area[0]}
    by_plate = [{} for _ in per_area]
    for index, found in zip(by_plate, per_area):
        for s in found:
            plate = getattr(s.attributes, "plate", None)
            if plate:
                index.setdefault(plate, []).append(s)
    common = set(by_plate[0]).intersection(*by_plate[1:])
    return {p: sorted((s for index in by_plate for s in index[p]), key=lambda s: s.ts) for p in sorted(common)}
