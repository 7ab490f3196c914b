"""Camera import: CSV, GeoJSON, and the real Shanghai intersections used by the demo and the simulator."""
from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

from models.records import Camera, CameraKind, InputError

CSV_COLUMNS = ("id", "name", "lon", "lat")


def _camera(row: dict, where: str) -> Camera:
    try:
        heading = row.get("heading_deg", row.get("heading"))
        tags = row.get("tags") or []
        if isinstance(tags, str):
            tags = [t for t in tags.replace(";", ",").split(",") if t.strip()]
        return Camera(id=str(row["id"]).strip(), name=str(row.get("name") or row["id"]), lon=float(row["lon"]),
                      lat=float(row["lat"]),
                      heading_deg=float(heading) if heading not in (None, "") else None,
                      kind=CameraKind(row.get("kind") or "checkpoint"), road=row.get("road") or None, tags=list(tags))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{where}: bad camera ({exc})") from exc


def load_csv(path: Path) -> list[Camera]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = set(CSV_COLUMNS) - set(reader.fieldnames or [])
        if missing:
            raise InputError(f"{path}: missing column(s) {sorted(missing)}; need {CSV_COLUMNS}")
        return [_camera(row, f"{path} line {n}") for n, row in enumerate(reader, start=2)]


def load_geojson(path: Path) -> list[Camera]:
    """Point features whose properties hold id, name, heading_deg, kind, road, tags."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from exc
    cameras = []
    for n, feature in enumerate(data.get("features", [])):
        geometry = feature.get("geometry") or {}
        if geometry.get("type") != "Point":
            continue
        lon, lat = geometry["coordinates"][:2]
        cameras.append(_camera({**feature.get("properties", {}), "lon": lon, "lat": lat}, f"{path} feature {n}"))
    if not cameras:
        raise InputError(f"{path}: no Point features with camera properties")
    return cameras


def load_file(path: Path) -> list[Camera]:
    if not path.is_file():
        raise InputError(f"{path} does not exist")
    loaders = {".csv": load_csv, ".geojson": load_geojson, ".json": load_geojson}
    if path.suffix.lower() not in loaders:
        raise InputError(f"{path}: cameras come as .csv or .geojson")
    return loaders[path.suffix.lower()](path)


def from_roadnet(path: Path, limit: int | None = None) -> list[Camera]:
    """One checkpoint camera per signalised intersection of the OSM road network, named after its roads."""
    data = json.loads(path.read_text(encoding="utf-8"))
    points: dict[int, tuple[float, float]] = {}
    roads: dict[int, list[str]] = defaultdict(list)
    for feature in data["features"]:
        props = feature["properties"]
        group = props.get("group_id")
        if props.get("type") == "signal" and group not in points:
            points[group] = tuple(feature["geometry"]["coordinates"][:2])
        elif props.get("type") == "way":
            name = props.get("tags", {}).get("name")
            if name and name not in roads[group]:
                roads[group].append(name)
    cameras = []
    for group in sorted(points)[:limit]:
        lon, lat = points[group]
        road = " / ".join(roads[group][:2]) or None
        cameras.append(Camera(id=f"SH{group:04d}", name=f"{road or 'intersection'} #{group}", lon=lon, lat=lat,
                              kind=CameraKind.CHECKPOINT, road=road, tags=["shanghai", "roadnet"]))
    return cameras
