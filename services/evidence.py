"""The evidence package of a case: one ZIP a prosecutor can read and verify.

It holds a PDF report (the case header; each finding with its evidence crops, capture times, camera names and
locations, the query that found it, the trajectory drawn over the road network; a timeline; the notes), the
sightings as CSV and GeoJSON, every evidence crop, and a manifest of SHA-256 hashes (manifest.json, and
SHA256SUMS for `sha256sum -c`) — the chain of custody.

Sightline keeps the evidence crop of each sighting and the SHA-256 of the frame it was cut from, not the frame
itself: the package includes the crops and lists each original frame's recorded hash, so the original, held by
its source, can be checked against it. The report and the manifest say so.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from fpdf import FPDF

from geo.trajectories import trajectory
from indexer.blobs import BlobStore
from indexer.case_store import CaseItem, ItemKind
from indexer.store import RecordStore
from models.records import Camera, Sighting
from services.cases import CaseFile, CaseService

CJK_FONTS = (  # searched in order: the report must show Chinese plates as text (extractable, searchable)
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc"),
)
MAX_TRACK_POINTS = 2000  # sightings of one trajectory in a package
MAX_CROPS_SHOWN = 24  # crops a finding shows in the report (every crop is in the ZIP)
MAX_TIMELINE = 500  # rows of the report's timeline (the CSV holds them all)
MAX_ROAD_LINES = 20_000
ROUTE_COLORS = [("blue", (20, 90, 200)), ("red", (200, 40, 40)), ("green", (30, 140, 60))]
CSV_FIELDS = ["sighting_id", "kind", "ts", "camera_id", "camera_name", "lon", "lat", "plate", "vehicle_color",
              "vehicle_type", "det_score", "frame_sha256", "crop_file", "crop_sha256"]
FRAMES_STATEMENT = ("Original frames are not retained by Sightline: each sighting keeps its evidence crop (included "
                    "here, hashed) and the SHA-256 of the original frame recorded at ingestion (listed here), "
                    "against which the original held by its source can be verified.")


class NoFont(RuntimeError):
    """No font with Chinese glyphs is installed: the report could not show the plates (HTTP 503)."""


@dataclass
class EvidencePackage:
    filename: str
    data: bytes
    sightings: int


@dataclass
class _Finding:
    item: CaseItem
    sightings: list[Sighting]
    tracks: list[tuple[str, list[Sighting]]]  # (label, sightings in time order) drawn as lines


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def when(ts: datetime) -> str:
    """A capture time as the report prints it: UTC, to the second, zone named."""
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def cjk_font() -> Path:
    for path in CJK_FONTS:
        if path.is_file():
            return path
    raise NoFont("no CJK font is installed for the evidence report (install fonts-wqy-zenhei)")


class EvidencePackager:
    """Builds a case's evidence package from the case file, the record store and the blob store."""

    def __init__(self, cases: CaseService, store: RecordStore, blobs: BlobStore, roads: Path | None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.cases, self.store, self.blobs, self.roads, self.clock = cases, store, blobs, roads, clock

    def package(self, case_id: str, by: str) -> EvidencePackage:
        case_file = self.cases.file(case_id)
        cameras = {c.id: c for c in self.store.list_cameras()}
        findings = [self._finding(item) for item in case_file.items]
        sightings = {s.id: s for f in findings for s in f.sightings}
        for f in findings:
            sightings.update({s.id: s for _, track in f.tracks for s in track})
        ordered = sorted(sightings.values(), key=lambda s: (s.ts, s.id))
        crops = {s.id: data for s in ordered if s.crop and (data := self.blobs.get(s.crop)) is not None}
        generated = self.clock()
        report = _Report(case_file, findings, ordered, cameras, crops, self._road_lines(), by, generated).build()
        files: dict[str, bytes] = {"report.pdf": report,
                                   "sightings.csv": _csv(ordered, cameras, crops),
                                   "sightings.geojson": _geojson(ordered, cameras, crops)}
        files.update({f"crops/{sid}.jpg": data for sid, data in crops.items()})
        manifest = _manifest(case_file, files, ordered, by, generated)
        sums = "".join(f"{sha256(data)}  {name}\n" for name, data in files.items())
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in [*files.items(), ("manifest.json", manifest), ("SHA256SUMS", sums.encode())]:
                archive.writestr(name, data)
        safe = "".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "-" for c in case_file.case.ref)
        return EvidencePackage(f"case-{safe}-evidence.zip", buf.getvalue(), len(ordered))

    def _finding(self, item: CaseItem) -> _Finding:
        named = sorted(self.store.get_sightings(item.sighting_ids), key=lambda s: (s.ts, s.id))
        tracks: list[tuple[str, list[Sighting]]] = []
        if item.kind is ItemKind.TRAJECTORY and item.plate:
            tracks.append((item.plate, self._track(item.plate, item.start, item.end)))
        elif item.kind is ItemKind.COTRAVEL and item.plate and item.other_plate:
            start = named[0].ts - timedelta(hours=1) if named else None
            end = named[-1].ts + timedelta(hours=1) if named else None
            tracks += [(p, self._track(p, start, end)) for p in (item.plate, item.other_plate)]
        elif item.kind is ItemKind.CLONE and named:
            tracks.append((item.plate or "", named))
        return _Finding(item, named, tracks)

    def _track(self, plate: str, start: datetime | None, end: datetime | None) -> list[Sighting]:
        found = trajectory(self.store, plate, start, end, limit=MAX_TRACK_POINTS)
        return self.store.get_sightings([p.sighting_id for p in found.points[:MAX_TRACK_POINTS]])

    def _road_lines(self) -> list[list[tuple[float, float]]]:
        if self.roads is None or not self.roads.is_file():
            return []
        try:
            data = json.loads(self.roads.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []  # a broken road file costs the report its background, not the package
        lines: list[list[tuple[float, float]]] = []
        for feature in data.get("features", []) if isinstance(data, dict) else []:
            geometry = (feature.get("geometry") if isinstance(feature, dict) else None) or {}
            kind, coordinates = geometry.get("type"), geometry.get("coordinates")
            parts = [coordinates] if kind == "LineString" else coordinates if kind == "MultiLineString" else []
            try:
                lines += [[(float(p[0]), float(p[1])) for p in part] for part in parts or [] if part]
            except (TypeError, ValueError, IndexError):
                continue  # a malformed line is left out of the background
            if len(lines) >= MAX_ROAD_LINES:
                break
        return lines


def _location(camera: Camera | None) -> str:
    return f"{camera.lat:.5f}, {camera.lon:.5f}" if camera else "unknown camera"


def _plate(s: Sighting) -> str:
    return getattr(s.attributes, "plate", None) or ""


def _row(s: Sighting, cameras: dict[str, Camera], crops: dict[str, bytes]) -> dict[str, object]:
    camera = cameras.get(s.camera_id)
    a = s.attributes
    return {"sighting_id": s.id, "kind": s.kind.value, "ts": s.ts.astimezone(timezone.utc).isoformat(),
            "camera_id": s.camera_id, "camera_name": camera.name if camera else "",
            "lon": camera.lon if camera else None, "lat": camera.lat if camera else None, "plate": _plate(s),
            "vehicle_color": getattr(a, "vehicle_color", None) or "", "vehicle_type": getattr(a, "vehicle_type", None)
            or "", "det_score": s.det_score, "frame_sha256": s.frame_sha256 or "",
            "crop_file": f"crops/{s.id}.jpg" if s.id in crops else "",
            "crop_sha256": sha256(crops[s.id]) if s.id in crops else ""}


def _csv(sightings: list[Sighting], cameras: dict[str, Camera], crops: dict[str, bytes]) -> bytes:
    out = io.StringIO()
    rows = [_row(s, cameras, crops) for s in sightings]
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode("utf-8-sig")  # the BOM lets spreadsheet programs read the Chinese plates


def _geojson(sightings: list[Sighting], cameras: dict[str, Camera], crops: dict[str, bytes]) -> bytes:
    features = []
    for s in sightings:
        row = _row(s, cameras, crops)
        lon, lat = row.pop("lon"), row.pop("lat")
        geometry = None if lon is None else {"type": "Point", "coordinates": [lon, lat]}
        features.append({"type": "Feature", "geometry": geometry, "properties": row})
    return json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False, indent=1).encode()


def _manifest(case_file: CaseFile, files: dict[str, bytes], sightings: list[Sighting], by: str,
              generated: datetime) -> bytes:
    frames: dict[str, list[Sighting]] = {}
    for s in sightings:
        if s.frame_sha256:
            frames.setdefault(s.frame_sha256, []).append(s)
    case = case_file.case
    body = {
        "case": {"ref": case.ref, "title": case.title, "status": case.status.value, "owner": case.owner},
        "generated": generated.isoformat(), "generated_by": by, "algorithm": "SHA-256",
        "files": [{"path": name, "sha256": sha256(data), "bytes": len(data)} for name, data in files.items()],
        "original_frames": {
            "kept": False, "statement": FRAMES_STATEMENT,
            "frames": [{"sha256": sha, "camera_id": group[0].camera_id,
                        "captured": group[0].ts.astimezone(timezone.utc).isoformat(),
                        "sighting_ids": [s.id for s in group]} for sha, group in frames.items()]},
    }
    return json.dumps(body, ensure_ascii=False, indent=1).encode()


class _Report:
    """The PDF report (fpdf2), with a CJK font embedded so plates are text a reader can search and copy."""

    def __init__(self, case_file: CaseFile, findings: list[_Finding], sightings: list[Sighting],
                 cameras: dict[str, Camera], crops: dict[str, bytes], roads: list[list[tuple[float, float]]],
                 by: str, generated: datetime):
        self.file, self.findings, self.sightings = case_file, findings, sightings
        self.cameras, self.crops, self.roads, self.by, self.generated = cameras, crops, roads, by, generated
        logging.getLogger("fontTools.subset").setLevel(logging.ERROR)  # the font's bitmap tables are dropped
        self.pdf = FPDF(format="A4")
        self.pdf.set_auto_page_break(True, margin=15)
        self.pdf.add_font("cjk", "", str(cjk_font()))
        self.pdf.set_font("cjk", size=10)
        case = case_file.case
        self.pdf.set_title(f"Evidence package, case {case.ref}")
        self.pdf.set_creator("Sightline")

    def line(self, text: str, size: float = 10, height: float = 5.5) -> None:
        self.pdf.set_font("cjk", size=size)
        self.pdf.multi_cell(0, height, text, new_x="LMARGIN", new_y="NEXT", align="L")

    def build(self) -> bytes:
        pdf, case = self.pdf, self.file.case
        pdf.add_page()
        self.line(f"Evidence package — case {case.ref}", 16, 9)
        self.line(f"Title: {case.title}")
        self.line(f"Reason: {case.reason}")
        self.line(f"Owner: {case.owner}    Opened: {when(case.created)}    Status: {case.status.value}"
                  + (f" (closed {when(case.closed)} by {case.closed_by})" if case.closed else ""))
        self.line(f"Generated {when(self.generated)} by {self.by}. Findings: {len(self.findings)}; "
                  f"sightings: {len(self.sightings)}; evidence crops: {len(self.crops)}.")
        self.line(FRAMES_STATEMENT, 8, 4.5)
        self.timeline()
        for n, finding in enumerate(self.findings, 1):
            self.finding(n, finding)
        if self.file.notes:
            pdf.ln(4)
            self.line("Case notes", 13, 8)
            for note in self.file.notes:
                self.line(f"{when(note.ts)}, {note.author}: {note.text}", 9, 5)
        return bytes(pdf.output())

    def timeline(self) -> None:
        self.pdf.ln(3)
        self.line("Timeline", 13, 8)
        for s in self.sightings[:MAX_TIMELINE]:
            camera = self.cameras.get(s.camera_id)
            self.line(f"{when(s.ts)}   {_plate(s) or s.kind.value}   {camera.name if camera else s.camera_id}"
                      f"   ({_location(camera)})", 8, 4.5)
        if len(self.sightings) > MAX_TIMELINE:
            self.line(f"… and {len(self.sightings) - MAX_TIMELINE} more in sightings.csv", 8, 4.5)

    def finding(self, n: int, f: _Finding) -> None:
        pdf, item = self.pdf, f.item
        if pdf.get_y() > pdf.h - 90:
            pdf.add_page()
        else:
            pdf.ln(6)
        title = {ItemKind.SIGHTING: "Sighting", ItemKind.SEARCH: "Saved search", ItemKind.TRAJECTORY: "Trajectory",
                 ItemKind.CLONE: "Cloned plate", ItemKind.COTRAVEL: "Co-travel"}[item.kind]
        subject = " / ".join(p for p in (item.plate, item.other_plate) if p)
        self.line(f"Finding {n}: {title}" + (f" — {subject}" if subject else ""), 13, 8)
        self.line(f"Added {when(item.added)} by {item.added_by}", 9, 5)
        if item.kind is ItemKind.TRAJECTORY:
            span = f"{when(item.start) if item.start else 'the first sighting'} to " \
                   f"{when(item.end) if item.end else 'the last sighting'}"
            self.line(f"Time range: {span}", 9, 5)
        if item.query:
            self.line(f"Query: {item.query}", 9, 5)
        if item.note:
            self.line(f"Note: {item.note}", 9, 5)
        if f.tracks:
            self.routes(f.tracks)
        for s in f.sightings[:MAX_CROPS_SHOWN]:
            self.sighting(s)
        if len(f.sightings) > MAX_CROPS_SHOWN:
            self.line(f"… and {len(f.sightings) - MAX_CROPS_SHOWN} more sightings in sightings.csv", 9, 5)

    def sighting(self, s: Sighting) -> None:
        pdf = self.pdf
        if pdf.get_y() > pdf.h - 60:
            pdf.add_page()
        camera = self.cameras.get(s.camera_id)
        top = pdf.get_y() + 2
        data = self.crops.get(s.id)
        if data is not None:
            try:
                pdf.image(io.BytesIO(data), x=pdf.l_margin, y=top, h=35, keep_aspect_ratio=True, w=50)
            except Exception:  # noqa: BLE001 - an unreadable crop is reported, the package is still made
                data = None
        pdf.set_xy(pdf.l_margin + 55, top)
        lines = [f"{_plate(s) or s.kind.value}   {when(s.ts)}",
                 f"Camera: {camera.name if camera else 'unknown'} ({s.camera_id})",
                 f"Location: {_location(camera)}",
                 f"Sighting {s.id}, detection score {s.det_score:.2f}, box in the frame {s.bbox.as_list()} px",
                 f"Frame SHA-256 (original not kept): {s.frame_sha256 or 'not recorded'}",
                 f"Crop crops/{s.id}.jpg SHA-256: {sha256(data)}" if data else "Evidence crop: missing"]
        pdf.set_font("cjk", size=8)
        for text in lines:
            pdf.set_x(pdf.l_margin + 55)
            pdf.multi_cell(pdf.w - pdf.r_margin - pdf.l_margin - 55, 4.5, text, new_x="LMARGIN", new_y="NEXT",
                           align="L")
        pdf.set_y(max(pdf.get_y(), top + 37))

    def routes(self, tracks: list[tuple[str, list[Sighting]]]) -> None:
        """The routes drawn on one map: each track's points in time order joined by a line (a colour per track),
        numbered, over the road network; then each route's stops listed."""
        pdf = self.pdf
        routes = [(label, [(c.lon, c.lat, s) for s in track if (c := self.cameras.get(s.camera_id))])
                  for label, track in tracks]
        for (label, points), color in zip(routes, ROUTE_COLORS, strict=False):
            self.line(f"Route of {label} ({color[0]}): {len(points)} sightings"
                      + (f", {when(points[0][2].ts)} to {when(points[-1][2].ts)}" if points else ""), 9, 5)
        every = [p for _, points in routes for p in points]
        if not every:
            return
        box_w, box_h = pdf.w - pdf.l_margin - pdf.r_margin, 100.0
        if pdf.get_y() + box_h > pdf.h - 20:
            pdf.add_page()
        x0, y0 = pdf.l_margin, pdf.get_y() + 1
        lons, lats = [p[0] for p in every], [p[1] for p in every]
        pad = max(max(lons) - min(lons), max(lats) - min(lats), 0.002) * 0.1
        west, east, south, north = min(lons) - pad, max(lons) + pad, min(lats) - pad, max(lats) + pad
        kx = math.cos(math.radians((south + north) / 2))
        scale = min(box_w / ((east - west) * kx), box_h / (north - south))
        x0 += (box_w - (east - west) * kx * scale) / 2  # centred in the box

        def xy(lon: float, lat: float) -> tuple[float, float]:
            return x0 + (lon - west) * kx * scale, y0 + box_h - (lat - south) * scale

        pdf.set_draw_color(160, 160, 160)
        pdf.set_line_width(0.2)
        pdf.rect(pdf.l_margin, y0, box_w, box_h)
        pdf.set_draw_color(215, 215, 215)
        for road in self.roads:
            if any(west <= lon <= east and south <= lat <= north for lon, lat in road):
                pdf.polyline([xy(lon, lat) for lon, lat in road])
        pdf.set_font("cjk", size=6)
        for (_, points), (_, rgb) in zip(routes, ROUTE_COLORS, strict=False):
            pdf.set_draw_color(*rgb)
            pdf.set_fill_color(*rgb)
            pdf.set_line_width(0.6)
            if len(points) > 1:
                pdf.polyline([xy(lon, lat) for lon, lat, _ in points])
            for i, (lon, lat, _) in enumerate(points[:200], 1):
                x, y = xy(lon, lat)
                pdf.circle(x=x, y=y, radius=0.9, style="F")
                pdf.text(x + 1.2, y - 1.2, str(i))
        pdf.set_line_width(0.2)
        pdf.set_draw_color(0, 0, 0)
        pdf.set_y(y0 + box_h + 2)
        for label, points in routes:
            self.line(f"Stops of {label}", 9, 5)
            for i, (_, _, s) in enumerate(points[:MAX_TIMELINE], 1):
                camera = self.cameras.get(s.camera_id)
                self.line(f"{i}. {when(s.ts)}   {camera.name if camera else s.camera_id}   ({_location(camera)})",
                          8, 4.5)
