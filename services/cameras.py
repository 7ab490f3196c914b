"""Camera import: CSV, GeoJSON, and the real Shanghai intersections used by the demo and the simulator."""
from __future__ import annotations

import csv
import io
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


def _text(path: Path) -> str:
    """A file's UTF-8 text (a BOM is dropped); a missing, unreadable or non-UTF-8 file is an InputError."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"{path} cannot be read ({exc.strerror or exc})") from None


def _json_features(path: Path) -> list:
    """The `features` of a GeoJSON FeatureCollection; anything else is an InputError."""
    try:
        data = json.loads(_text(path))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from exc
    features = data.get("features") if isinstance(data, dict) else None
    if not isinstance(features, list):
        raise InputError(f"{path}: not a GeoJSON FeatureCollection (no list of features)")
    return features


def load_csv(path: Path) -> list[Camera]:
    reader = csv.DictReader(io.StringIO(_text(path), newline=""))
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise InputError(f"{path}: not a readable CSV ({exc})") from None
    missing = set(CSV_COLUMNS) - set(reader.fieldnames or [])
    if missing:
        raise InputError(f"{path}: missing column(s) {sorted(missing)}; need {CSV_COLUMNS}")
    return [_camera(row, f"{path} line {n}") for n, row in enumerate(rows, start=2)]


def load_geojson(path: Path) -> list[Camera]:
    """Point features whose properties hold id, name, heading_deg, kind, road, tags."""
    cameras = []
    for n, feature in enumerate(_json_features(path)):
        try:
            geometry = feature.get("geometry") or {}
            if geometry.get("type") != "Point":
                continue
            lon, lat = geometry["coordinates"][:2]
            properties = {**(feature.get("properties") or {}), "lon": lon, "lat": lat}
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path} feature {n}: not a GeoJSON Point feature ({exc!r})") from None
        cameras.append(_camera(properties, f"{path} feature {n}"))
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
    if not path.is_file():
        raise InputError(f"{path} does not exist")
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, not {limit}")
    points: dict[int, tuple[float, float]] = {}
    roads: dict[int, list[str]] = defaultdict(list)
    for n, feature in enumerate(_json_features(path)):
        try:
            props = feature["properties"]
            group = props.get("group_id")
            if props.get("type") == "signal" and group not in points:
                if not isinstance(group, int):
                    raise TypeError(f"group_id {group!r} is not a whole number")
                lon, lat = feature["geometry"]["coordinates"][:2]
                points[group] = (float(lon), float(lat))
            elif props.get("type") == "way":
                name = props.get("tags", {}).get("name")
                if name and name not in roads[group]:
                    roads[group].append(name)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path} feature {n}: not an OSM intersection feature ({exc!r})") from None
    cameras = []
    for group in sorted(points)[:limit]:
        lon, lat = points[group]
        road = " / ".join(roads[group][:2]) or None
        cameras.append(Camera(id=f"SH{group:04d}", name=f"{road or 'intersection'} #{group}", lon=lon, lat=lat,
                              kind=CameraKind.CHECKPOINT, road=road, tags=["shanghai", "roadnet"]))
    if not cameras:
        raise InputError(f"{path}: no signalised intersections (features with type=signal and a group_id)")
    return cameras
