"""The evidence package of a case: one ZIP a prosecutor can read and verify.

It holds a PDF report (the case header; each finding with its evidence crops, capture times, camera names and
locations, the query that found it, the trajectory drawn over the road network; a timeline; the notes), the
sightings as CSV and GeoJSON, every evidence crop, and a manifest of SHA-256 hashes (manifest.json, and
SHA256SUMS for `sha256sum -c`) — the chain of custody — and the audit log's signed checkpoint at the time of
export, against which `sightline audit verify --checkpoint` later shows that the log was not cut or rewritten.

Sightline keeps the evidence crop of each sighting and the SHA-256 of the frame it was cut from, not the frame
itself: the package includes the crops and lists each original frame's recorded hash, so the original, held by
its source, can be checked against it. The report and the manifest say so.

The report is in English or Chinese (services/report_text.py) and prints every time in the case's zone with its UTC
offset; the CSV and GeoJSON keep UTC. Its maps are computed by services/report_map.py: clipped to the frame, one
line per trip, stop labels merged per place; a co-travel map draws the target and its companion as the web app does.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import BinaryIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import cv2
from fpdf import FPDF

from geo.cotravel import TRIP_GAP, Companion, co_travellers
from geo.trajectories import Trajectory, build, trajectory
from indexer.blobs import BlobStore
from indexer.case_store import CaseItem, ItemKind
from indexer.store import RecordStore
from models.imageops import decode_stored
from models.records import Camera, InputError, Sighting
from services.audit import CHECKPOINT_FILE, Checkpoint
from services.cases import CaseFile, CaseService
from services.csvsafe import csv_text
from services.ingest import frame_key
from services.report_map import Frame, clip_polyline, fit, route_lines, stop_labels
from services.report_text import LANGS, report_text

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
MAX_LABELLED = 200  # stops of one route numbered on its map (the stop list has them all)
COTRAVEL_WINDOW_S = 60.0  # ± seconds of a shared pass: the co-travel search's default (services/api/geo.py)
MAX_COTRAVEL_WINDOW_S = 3600.0  # ... and its limit


@dataclass(frozen=True)
class RouteStyle:
    """How a route is drawn: the web app's colours (web/app.js TARGET_COLOR, COMPANION_COLOR), so the map an
    investigator saw and the one in the report read the same way."""

    hex: str
    width: float  # mm
    dash: tuple[float, float] | None  # (dash, gap) in mm; None: solid
    legend: str  # report_text key that names it

    @property
    def rgb(self) -> tuple[int, int, int]:
        h = self.hex.lstrip("#")
        h = "".join(c * 2 for c in h) if len(h) == 3 else h
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


TARGET_STYLE = RouteStyle("#d33", 0.9, None, "style_target")  # wide and solid, drawn first
COMPANION_STYLE = RouteStyle("#2563a8", 0.4, (1.5, 1.0), "style_companion")  # narrow and dashed, on top
ROUTE_STYLES = (TARGET_STYLE, COMPANION_STYLE)
CSV_FIELDS = ["sighting_id", "kind", "ts", "camera_id", "camera_name", "lon", "lat", "plate", "vehicle_color",
              "vehicle_type", "det_score", "frame_sha256", "crop_file", "crop_sha256"]
FRAMES_STATEMENT = ("Each sighting keeps its evidence crop (included here, hashed) and the SHA-256 of the original "
                    "frame recorded at ingestion. Where Sightline still keeps the original frame (uploaded photos, "
                    "within the frame retention), it is included in frames/ and its SHA-256 was checked against the "
                    "recorded one; otherwise the recorded hash is listed, against which the original held by its "
                    "source can be verified.")
FRAME_SHOWN_PX = 960  # the report shows each frame at most this wide, its crop's box drawn; frames/ holds it whole
MAX_FRAMES_SHOWN = 200  # frames drawn in one report (each ~100 KB in the PDF); every kept frame is in frames/


class NoFont(RuntimeError):
    """No font with Chinese glyphs is installed: the report could not show the plates (HTTP 503)."""


@dataclass
class EvidencePackage:
    filename: str
    data: bytes
    sightings: int


@dataclass
class KeptFrame:
    """An original frame as the package holds it: its file, or why there is none."""

    sha256: str
    file: str | None  # frames/<sha>.<ext>, when kept and its hash checks
    key: str | None = None  # where the blob store keeps it (read when shown and when written, not held)
    problem: str | None = None  # "not kept", or a hash that does not check

    @property
    def checked(self) -> bool:
        return self.file is not None


@dataclass
class _Finding:
    item: CaseItem
    sightings: list[Sighting]
    tracks: list[tuple[str, list[Sighting]]]  # (label, sightings in time order) drawn as lines
    missing: list[str] = field(default_factory=list)  # sightings it named that are no longer stored
    companion: Companion | None = None  # co-travel: the companion's passes at the target's cameras, with lags
    window_s: float = COTRAVEL_WINDOW_S  # ... within ± this

    def lost(self, generated: datetime, lang: str = "en", zone: tzinfo = timezone.utc) -> str:
        """What the finding lost to retention or a purge, said where the finding is shown (the manifest: English,
        UTC; the report: its language and zone)."""
        return report_text(lang, "lost", missing=len(self.missing), named=len(self.item.sighting_ids),
                           added=when(self.item.added, zone), generated=when(generated, zone))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def utc_offset(ts: datetime) -> str:
    """A local time's offset as the report writes it: "UTC" or e.g. "UTC+08:00"."""
    minutes = round((ts.utcoffset() or timedelta()).total_seconds() / 60)
    if minutes == 0:
        return "UTC"
    return f"UTC{'+' if minutes > 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def when(ts: datetime, zone: tzinfo = timezone.utc) -> str:
    """A time as the report prints it: in the case's zone, to the second, with its offset (a reader on another
    calendar day, or across a daylight-saving change, still knows the instant)."""
    local = ts.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M:%S} {utc_offset(local)}"


def case_zone(name: str) -> tzinfo:
    """The case's zone; a name this host's zone database lacks prints UTC rather than failing the package."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def cjk_font() -> Path:
    for path in CJK_FONTS:
        if path.is_file():
            return path
    raise NoFont("no CJK font is installed for the evidence report (install fonts-wqy-zenhei)")


class EvidencePackager:
    """Builds a case's evidence package from the case file, the record store and the blob store."""

    def __init__(self, cases: CaseService, store: RecordStore, blobs: BlobStore, roads: Path | None,
                 audit_checkpoint: Callable[[], Checkpoint | None] = lambda: None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.cases, self.store, self.blobs, self.roads, self.clock = cases, store, blobs, roads, clock
        self.audit_checkpoint = audit_checkpoint  # `audit verify --checkpoint` holds the log against it later

    def package(self, case_id: str, by: str, lang: str = "en", out: BinaryIO | None = None,
                progress: Callable[[int, int], None] = lambda done, total: None) -> EvidencePackage:
        """The ZIP, its report in `lang` ("en" or "zh"): written to `out` when given (its `data` is then empty),
        else returned whole. Crops and frames are read one at a time as they are shown and written, never held
        together, so memory does not grow with the case. `progress(done, total)` follows the findings, twice:
        gathered, then drawn."""
        if lang not in LANGS:
            raise InputError(f"the report's language is one of {list(LANGS)}")
        case_file = self.cases.file(case_id)
        cameras = {c.id: c for c in self.store.list_cameras()}
        total = 2 * len(case_file.items) + 1
        findings = []
        for n, item in enumerate(case_file.items, 1):
            findings.append(self._finding(item))
            progress(n, total)
        sightings = {s.id: s for f in findings for s in f.sightings}
        for f in findings:
            sightings.update({s.id: s for _, track in f.tracks for s in track})
        ordered = sorted(sightings.values(), key=lambda s: (s.ts, s.id))
        crops = {s.id: sha256(data) for s in ordered if s.crop and (data := self.blobs.get(s.crop)) is not None}
        frames = self._frames(ordered)
        generated = self.clock()
        report = _Report(case_file, findings, ordered, cameras, crops, self._road_lines(), by, generated,
                         lang, frames, self.blobs, lambda n: progress(len(findings) + n, total)).build()
        target = out if out is not None else io.BytesIO()
        written: dict[str, tuple[str, int]] = {}  # name -> (sha256, bytes), for the manifest and SHA256SUMS
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            def put(name: str, data: bytes) -> None:
                archive.writestr(name, data)
                written[name] = (sha256(data), len(data))

            put("report.pdf", report)
            put("sightings.csv", _csv(ordered, cameras, crops))
            put("sightings.geojson", _geojson(ordered, cameras, crops))
            for s in ordered:
                if s.id in crops and s.crop and (data := self.blobs.get(s.crop)) is not None:
                    put(f"crops/{s.id}.jpg", data)
            for frame in frames.values():
                if frame.file and frame.key and (data := self.blobs.get(frame.key)) is not None \
                        and sha256(data) == frame.sha256:
                    put(frame.file, data)
            if (point := self.audit_checkpoint()) is not None:
                put(CHECKPOINT_FILE, point.to_json().encode())
            sums = "".join(f"{digest}  {name}\n" for name, (digest, _) in written.items())
            manifest = _manifest(case_file, written, ordered, findings, by, generated, lang, frames)
            archive.writestr("manifest.json", manifest)
            archive.writestr("SHA256SUMS", sums.encode())
        progress(total, total)
        safe = "".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "-" for c in case_file.case.ref)
        data = target.getvalue() if isinstance(target, io.BytesIO) else b""
        return EvidencePackage(f"case-{safe}-evidence.zip", data, len(ordered))

    def _frames(self, sightings: list[Sighting]) -> dict[str, KeptFrame]:
        """The original frames of these sightings that are still kept, each checked against its recorded hash."""
        out: dict[str, KeptFrame] = {}
        for s in sightings:
            if not s.frame_sha256 or s.frame_sha256 in out:
                continue
            key = frame_key(s.ts, s.frame_sha256)
            data = self.blobs.get(key)
            if data is None:
                out[s.frame_sha256] = KeptFrame(s.frame_sha256, None, problem="not kept")
            elif sha256(data) != s.frame_sha256:
                out[s.frame_sha256] = KeptFrame(s.frame_sha256, None, problem=f"the kept file's SHA-256 is "
                                                f"{sha256(data)}, not the recorded one: left out")
            else:
                ext = "png" if data.startswith(b"\x89PNG") else "jpg" if data.startswith(b"\xff\xd8") else "bin"
                out[s.frame_sha256] = KeptFrame(s.frame_sha256, f"frames/{s.frame_sha256}.{ext}", key)
        return out

    def _finding(self, item: CaseItem) -> _Finding:
        named = sorted(self.store.get_sightings(item.sighting_ids), key=lambda s: (s.ts, s.id))
        stored = {s.id for s in named}
        tracks: list[tuple[str, list[Sighting]]] = []
        companion, window = None, COTRAVEL_WINDOW_S
        if item.kind is ItemKind.TRAJECTORY and item.plate:
            tracks.append((item.plate, self._track(item.plate, item.start, item.end)))
        elif item.kind is ItemKind.COTRAVEL and item.plate and item.other_plate:
            start = named[0].ts - timedelta(hours=1) if named else None
            end = named[-1].ts + timedelta(hours=1) if named else None
            tracks += [(p, self._track(p, start, end)) for p in (item.plate, item.other_plate)]
            gaps = [abs((a.ts - b.ts).total_seconds()) for a in named for b in named  # the finding's own passes
                    if a.camera_id == b.camera_id and (_plate(a), _plate(b)) == (item.plate, item.other_plate)]
            window = min(max([COTRAVEL_WINDOW_S, *gaps]), MAX_COTRAVEL_WINDOW_S)
            companion = self._companion(item.plate, item.other_plate, tracks[0][1], window)
        elif item.kind is ItemKind.CLONE and named:
            tracks.append((item.plate or "", named))
        return _Finding(item, named, tracks, [i for i in item.sighting_ids if i not in stored], companion, window)

    def _companion(self, plate: str, other: str, target: list[Sighting], window_s: float) -> Companion | None:
        """The companion's closest pass at each of the target's cameras (per trip) over the target's drawn track,
        with its lag: geo.cotravel's own matching, with every threshold open (the finding is made already). The
        window is the search's default, or as wide as the finding's own sightings of the two at one camera."""
        if not target:
            return None
        end = target[-1].ts + timedelta(microseconds=1)  # a query's end is exclusive: the last pass counts
        found = co_travellers(self.store, plate, target[0].ts, end, window_s, min_cameras=1,
                              max_lag_std_s=None, min_trips=1, min_coverage=0.0, limit=1_000_000)
        return next((c for c in found if c.plate == other), None)

    def _track(self, plate: str, start: datetime | None, end: datetime | None) -> list[Sighting]:
        found = trajectory(self.store, plate, start, end, limit=MAX_TRACK_POINTS)
        return sorted(self.store.get_sightings([p.sighting_id for p in found.points[:MAX_TRACK_POINTS]]),
                      key=lambda s: (s.ts, s.id))

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


def _wrapped(text: str, width: float, measure: Callable[[str], float]) -> list[str]:
    """Lines of whole words that fit `width` (greedy, by spaces); a word or a run without spaces that does not fit
    stays one line, for fpdf2 to break."""
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if current and measure(candidate) >= width:
            lines.append(current)
            current = word
        else:
            current = candidate
    return [*lines, current]


def _frame_with_box(data: bytes, box: list[float]) -> tuple[bytes, int, int] | None:
    """The frame at most FRAME_SHOWN_PX wide with the sighting's box drawn in red, as JPEG, with its height and
    width; None when it cannot be decoded (the file itself is still in frames/)."""
    image = decode_stored(data)  # a frame ingest kept: bounded when it came in
    if image is None:
        return None
    h, w = image.shape[:2]
    scale = min(1.0, FRAME_SHOWN_PX / w)
    if scale < 1:
        image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    x1, y1, x2, y2 = (round(v * scale) for v in box)  # the box's corners in the frame's pixels
    if x2 > x1 and y2 > y1:
        cv2.rectangle(image, (x1, y1), (x2, y2), (0, 0, 230), max(2, image.shape[1] // 300))
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return (buf.tobytes(), image.shape[0], image.shape[1]) if ok else None


def _location(camera: Camera | None, lang: str = "en") -> str:
    return f"{camera.lat:.5f}, {camera.lon:.5f}" if camera else report_text(lang, "unknown_camera")


def _plate(s: Sighting) -> str:
    return getattr(s.attributes, "plate", None) or ""


def _row(s: Sighting, cameras: dict[str, Camera], crops: dict[str, str]) -> dict[str, object]:
    camera = cameras.get(s.camera_id)
    a = s.attributes
    return {"sighting_id": s.id, "kind": s.kind.value, "ts": s.ts.astimezone(timezone.utc).isoformat(),
            "camera_id": s.camera_id, "camera_name": camera.name if camera else "",
            "lon": camera.lon if camera else None, "lat": camera.lat if camera else None, "plate": _plate(s),
            "vehicle_color": getattr(a, "vehicle_color", None) or "", "vehicle_type": getattr(a, "vehicle_type", None)
            or "", "det_score": s.det_score, "frame_sha256": s.frame_sha256 or "",
            "crop_file": f"crops/{s.id}.jpg" if s.id in crops else "",
            "crop_sha256": crops.get(s.id, "")}


def _csv(sightings: list[Sighting], cameras: dict[str, Camera], crops: dict[str, str]) -> bytes:
    rows = (_row(s, cameras, crops) for s in sightings)
    text = csv_text(CSV_FIELDS, ([row[f] for f in CSV_FIELDS] for row in rows))  # a camera named =... neutralised
    return text.encode("utf-8-sig")  # the BOM lets spreadsheet programs read the Chinese plates


def _geojson(sightings: list[Sighting], cameras: dict[str, Camera], crops: dict[str, str]) -> bytes:
    features = []
    for s in sightings:
        row = _row(s, cameras, crops)
        lon, lat = row.pop("lon"), row.pop("lat")
        geometry = None if lon is None else {"type": "Point", "coordinates": [lon, lat]}
        features.append({"type": "Feature", "geometry": geometry, "properties": row})
    return json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False, indent=1).encode()


def _manifest(case_file: CaseFile, files: dict[str, tuple[str, int]], sightings: list[Sighting],
              findings: list[_Finding],
              by: str, generated: datetime, lang: str, kept: dict[str, KeptFrame]) -> bytes:
    frames: dict[str, list[Sighting]] = {}
    for s in sightings:
        if s.frame_sha256:
            frames.setdefault(s.frame_sha256, []).append(s)
    case = case_file.case
    body = {
        "case": {"ref": case.ref, "title": case.title, "status": case.status.value, "owner": case.owner,
                 "zone": case.zone},
        "generated": generated.isoformat(), "generated_by": by, "report_language": lang, "algorithm": "SHA-256",
        "files": [{"path": name, "sha256": digest, "bytes": size} for name, (digest, size) in files.items()],
        "original_frames": {
            "kept": sum(1 for f in kept.values() if f.checked), "statement": FRAMES_STATEMENT,
            "frames": [{"sha256": sha, "camera_id": group[0].camera_id,
                        "captured": group[0].ts.astimezone(timezone.utc).isoformat(),
                        "sighting_ids": [s.id for s in group],
                        "file": kept[sha].file if sha in kept else None,
                        "hash_checked": sha in kept and kept[sha].checked,
                        **({"not_included": kept[sha].problem} if sha in kept and kept[sha].problem else {})}
                       for sha, group in frames.items()]},
        "sightings_no_longer_stored": [
            {"item": f.item.id, "kind": f.item.kind.value, "added": f.item.added.astimezone(timezone.utc).isoformat(),
             "sighting_ids": f.missing, "statement": f.lost(generated)} for f in findings if f.missing],
    }
    return json.dumps(body, ensure_ascii=False, indent=1).encode()


class _Report:
    """The PDF report (fpdf2), with a CJK font embedded so plates are text a reader can search and copy; its strings
    in one language, its times in the case's zone."""

    def __init__(self, case_file: CaseFile, findings: list[_Finding], sightings: list[Sighting],
                 cameras: dict[str, Camera], crops: dict[str, str], roads: list[list[tuple[float, float]]],
                 by: str, generated: datetime, lang: str = "en", frames: dict[str, KeptFrame] | None = None,
                 blobs: BlobStore | None = None, drawn: Callable[[int], None] = lambda n: None):
        self.file, self.findings, self.sightings = case_file, findings, sightings
        self.frames, self.blobs, self.drawn = frames or {}, blobs, drawn  # crops (sha256 by id) read when shown
        self.frames_drawn = 0
        self.cameras, self.crops, self.by, self.generated = cameras, crops, by, generated
        self.roads = [(min(p[0] for p in r), min(p[1] for p in r), max(p[0] for p in r), max(p[1] for p in r), r)
                      for r in roads]  # each with its bounding box, to skip the roads far off a map at once
        self.lang, self.zone = lang, case_zone(case_file.case.zone)
        logging.getLogger("fontTools.subset").setLevel(logging.ERROR)  # the font's bitmap tables are dropped
        self.pdf = FPDF(format="A4")
        self.pdf.set_auto_page_break(True, margin=15)
        self.pdf.add_font("cjk", "", str(cjk_font()))
        self.pdf.set_font("cjk", size=10)
        self.pdf.set_title(self.t("pdf_title", ref=case_file.case.ref))
        self.pdf.set_creator("Sightline")

    def t(self, key: str, **values: object) -> str:
        return report_text(self.lang, key, **values)

    def when(self, ts: datetime) -> str:
        return when(ts, self.zone)

    def camera(self, camera_id: str) -> str:
        camera = self.cameras.get(camera_id)
        return camera.name if camera else camera_id

    def apart(self, seconds: float) -> str:
        s = round(abs(seconds))
        if s < 60:
            return self.t("seconds", s=s)
        if s < 3600:
            return self.t("minutes", m=s // 60, s=s % 60)
        return self.t("hours", h=s // 3600, m=s % 3600 // 60)

    def line(self, text: str, size: float = 10, height: float = 5.5, indent: float = 0) -> None:
        self.pdf.set_font("cjk", size=size)
        self.write(text, indent, height)

    def write(self, text: str, indent: float, height: float) -> None:
        """One paragraph from `indent`: a single cell when it fits the width (fpdf2's line breaking costs a few ms
        a line, most of a large package's time), else broken into lines."""
        pdf = self.pdf
        width = pdf.w - pdf.r_margin - pdf.l_margin - indent - 1
        for part in _wrapped(text, width, pdf.get_string_width):
            pdf.set_x(pdf.l_margin + indent)
            if pdf.get_string_width(part) < width:
                pdf.cell(width, height, part, new_x="LMARGIN", new_y="NEXT", align="L")
            else:  # a word longer than the line, or text without spaces (Chinese): fpdf2 breaks it
                pdf.multi_cell(width, height, part, new_x="LMARGIN", new_y="NEXT", align="L")

    def offsets(self) -> str:
        """The zone's offsets over the times this report prints (two across a daylight-saving change)."""
        times = [self.generated, self.file.case.created, *(s.ts for s in self.sightings)]
        return ", ".join(dict.fromkeys(utc_offset(ts.astimezone(self.zone)) for ts in sorted(times)))

    def build(self) -> bytes:
        pdf, case = self.pdf, self.file.case
        pdf.add_page()
        self.line(self.t("title", ref=case.ref), 16, 9)
        self.line(self.t("case_title", title=case.title))
        self.line(self.t("reason", reason=case.reason))
        closed = self.t("closed_by", at=self.when(case.closed), by=case.closed_by) if case.closed else ""
        self.line(self.t("header", owner=case.owner, opened=self.when(case.created),
                         status=self.t(f"status_{case.status.value}")) + closed)
        self.line(self.t("generated", at=self.when(self.generated), by=self.by, findings=len(self.findings),
                         sightings=len(self.sightings), crops=len(self.crops)))
        self.line(self.t("zone", zone=case.zone, offsets=self.offsets()), 9, 5)
        self.line(self.t("frames", statement=FRAMES_STATEMENT), 8, 4.5)
        self.timeline()
        for n, finding in enumerate(self.findings, 1):
            self.finding(n, finding)
            self.drawn(n)
        if self.file.notes:
            pdf.ln(4)
            self.line(self.t("notes"), 13, 8)
            for note in self.file.notes:
                self.line(self.t("note_line", at=self.when(note.ts), author=note.author, text=note.text), 9, 5)
        return bytes(pdf.output())

    def what(self, s: Sighting) -> str:
        return _plate(s) or self.t(s.kind.value)

    def timeline(self) -> None:
        self.pdf.ln(3)
        self.line(self.t("timeline"), 13, 8)
        for s in self.sightings[:MAX_TIMELINE]:
            camera = self.cameras.get(s.camera_id)
            self.line(f"{self.when(s.ts)}   {self.what(s)}   {self.camera(s.camera_id)}"
                      f"   ({_location(camera, self.lang)})", 8, 4.5)
        if len(self.sightings) > MAX_TIMELINE:
            self.line(self.t("more_in_csv", n=len(self.sightings) - MAX_TIMELINE), 8, 4.5)

    def finding(self, n: int, f: _Finding) -> None:
        pdf, item = self.pdf, f.item
        if pdf.get_y() > pdf.h - 90:
            pdf.add_page()
        else:
            pdf.ln(6)
        subject = " / ".join(p for p in (item.plate, item.other_plate) if p)
        kind = self.t(f"kind_{item.kind.value}")
        self.line(self.t("finding", n=n, kind=kind) + (f" — {subject}" if subject else ""), 13, 8)
        self.line(self.t("added", at=self.when(item.added), by=item.added_by), 9, 5)
        if item.kind is ItemKind.TRAJECTORY:
            self.line(self.t("range", start=self.when(item.start) if item.start else self.t("first_sighting"),
                             end=self.when(item.end) if item.end else self.t("last_sighting")), 9, 5)
        if item.query:
            self.line(self.t("query", query=item.query), 9, 5)
        if item.note:
            self.line(self.t("note", note=item.note), 9, 5)
        if f.missing:
            self.line(f.lost(self.generated, self.lang, self.zone), 9, 5)
        if item.kind in (ItemKind.TRAJECTORY, ItemKind.COTRAVEL) and not any(track for _, track in f.tracks):
            self.line(self.t("none_stored"), 9, 5)
        if item.kind is ItemKind.CLONE:
            self.clone_legs(build(item.plate or "", f.sightings, self.cameras))
        if item.kind is ItemKind.COTRAVEL and any(track for _, track in f.tracks):
            self.shared(item.plate or "", item.other_plate or "", f.companion, f.window_s)
        if f.tracks:
            self.routes(f.tracks, ["role_target", "role_companion"] if item.kind is ItemKind.COTRAVEL
                        else ["role_route"])
        for s in f.sightings[:MAX_CROPS_SHOWN]:
            self.sighting(s)
        if len(f.sightings) > MAX_CROPS_SHOWN:
            self.line(self.t("more_sightings", n=len(f.sightings) - MAX_CROPS_SHOWN), 9, 5)

    def clone_legs(self, found: Trajectory) -> None:
        """Why the reads cannot be one car: each pair in time order, its distance, time apart and implied speed
        (geo's legs; the numbers are the map's and the stop list's)."""
        if not found.legs:
            return
        self.line(self.t("clone_legs"), 9, 5)
        for leg in found.legs:
            a, b = found.points[leg.from_index], found.points[leg.to_index]
            values = {"a": leg.from_index + 1, "b": leg.to_index + 1, "km": f"{leg.distance_m / 1000:.1f}",
                      "from_camera": a.camera_name, "to_camera": b.camera_name}
            if leg.speed_kmh is None:
                self.line(self.t("clone_leg_same_time", **values), 9, 5, indent=4)
            else:
                self.line(self.t("clone_leg", apart=self.apart(leg.seconds), speed=f"{leg.speed_kmh:.0f}", **values),
                          9, 5, indent=4)

    def lag(self, seconds: float) -> str:
        s = round(seconds)
        return self.t("lag_same") if s == 0 else self.t("lag_after" if s > 0 else "lag_before", s=abs(s))

    def shared(self, plate: str, other: str, companion: Companion | None, window_s: float) -> None:
        """Where the two passed the same camera, and how far apart in time (geo.cotravel's matching)."""
        window = f"{window_s:.0f}"
        if companion is None or not companion.shared:
            self.line(self.t("no_shared", window=window), 9, 5)
            return
        names = list(dict.fromkeys(self.camera(r["camera_id"]) for r in companion.shared))
        self.line(self.t("shared_cameras", n=len(names), window=window, names=self.t("list_sep").join(names)), 9, 5)
        for r in companion.shared:
            target_ts = datetime.fromisoformat(r["ts"]) - timedelta(seconds=r["lag_s"])
            self.line(self.t("shared_pass", camera=self.camera(r["camera_id"]), target=plate,
                             at=self.when(target_ts), companion=other, lag=self.lag(r["lag_s"])), 8, 4.5, indent=4)
        self.line(self.t("mean_lag", companion=other, lag=self.lag(companion.mean_lag_s)), 9, 5)

    def sighting(self, s: Sighting) -> None:
        pdf = self.pdf
        if pdf.get_y() > pdf.h - 60:
            pdf.add_page()
        camera = self.cameras.get(s.camera_id)
        top = pdf.get_y() + 2
        data = self.blobs.get(s.crop) if self.blobs is not None and s.crop and s.id in self.crops else None
        if data is not None:
            try:
                pdf.image(io.BytesIO(data), x=pdf.l_margin, y=top, h=35, keep_aspect_ratio=True, w=50)
            except Exception:  # noqa: BLE001 - an unreadable crop is reported, the package is still made
                data = None
        pdf.set_xy(pdf.l_margin + 55, top)
        lines = [f"{self.what(s)}   {self.when(s.ts)}",
                 self.t("camera", name=camera.name if camera else self.t("unknown"), id=s.camera_id),
                 self.t("location", location=_location(camera, self.lang)),
                 self.t("sighting", id=s.id, score=f"{s.det_score:.2f}", box=s.bbox.as_list()),
                 self.frame_line(s),
                 self.t("crop_sha", file=f"crops/{s.id}.jpg", sha=self.crops[s.id]) if data else self.t("crop_missing")]
        pdf.set_font("cjk", size=8)
        for text in lines:
            self.write(text, 55, 4.5)
        pdf.set_y(max(pdf.get_y(), top + 37))
        self.full_frame(s)

    def frame_line(self, s: Sighting) -> str:
        kept = self.frames.get(s.frame_sha256 or "")
        if kept is not None and kept.checked:
            return self.t("frame_kept", file=kept.file, sha=s.frame_sha256)
        return self.t("frame_sha", sha=s.frame_sha256 or self.t("not_recorded"))

    def full_frame(self, s: Sighting) -> None:
        """The original frame the crop was cut from, its box drawn, below the sighting (when it is kept)."""
        kept = self.frames.get(s.frame_sha256 or "")
        if kept is None or not kept.key or self.blobs is None or self.frames_drawn >= MAX_FRAMES_SHOWN:
            return
        self.frames_drawn += 1
        data = self.blobs.get(kept.key)
        shown = _frame_with_box(data, s.bbox.as_list()) if data else None
        if shown is None:
            return
        pdf = self.pdf
        width = (pdf.w - pdf.l_margin - pdf.r_margin) * 0.75
        height = width * shown[1] / shown[2]
        if pdf.get_y() + height + 8 > pdf.h - pdf.b_margin:
            pdf.add_page()
        self.line(self.t("frame_shown", file=kept.file), 7, 4)
        pdf.image(io.BytesIO(shown[0]), x=pdf.l_margin, y=pdf.get_y(), w=width, h=height)
        pdf.set_y(pdf.get_y() + height + 2)

    def style(self, style: RouteStyle) -> None:
        self.pdf.set_draw_color(*style.rgb)
        self.pdf.set_fill_color(*style.rgb)
        self.pdf.set_text_color(*style.rgb)
        self.pdf.set_line_width(style.width)
        self.pdf.set_dash_pattern(*(style.dash or (0, 0)))

    def plain(self) -> None:
        self.pdf.set_draw_color(0, 0, 0)
        self.pdf.set_text_color(0, 0, 0)
        self.pdf.set_line_width(0.2)
        self.pdf.set_dash_pattern()

    def routes(self, tracks: list[tuple[str, list[Sighting]]], roles: list[str]) -> None:
        """The routes drawn on one map over the road network, each in its style (target first), one line per trip,
        stops numbered; then each route's stops listed, trip by trip."""
        pdf = self.pdf
        routes = [(label, build(label, track, self.cameras)) for label, track in tracks]
        for (label, route), style, role in zip(routes, ROUTE_STYLES, roles, strict=False):
            y = pdf.get_y() + 2.6
            self.style(style)
            pdf.line(pdf.l_margin, y, pdf.l_margin + 8, y)  # the legend's sample of the line
            self.plain()
            points = route.points
            legend = self.t("legend", role=self.t(role), plate=label, style=self.t(style.legend), n=len(points))
            if points:
                legend += self.t("legend_span", start=self.when(points[0].ts), end=self.when(points[-1].ts))
            if len(route.trips) > 1:
                legend += self.t("legend_trips", trips=len(route.trips), gap=round(TRIP_GAP.total_seconds() / 60))
            self.line(legend, 9, 5, indent=10)
        every = [(p.lon, p.lat) for _, route in routes for p in route.points]
        if not every:
            return
        box_h = 100.0
        if pdf.get_y() + box_h > pdf.h - 20:
            pdf.add_page()
        frame = Frame(pdf.l_margin, pdf.get_y() + 1, pdf.w - pdf.l_margin - pdf.r_margin, box_h)
        project = fit(every, frame)
        west, north = project.lonlat(frame.x, frame.y)
        east, south = project.lonlat(frame.x + frame.w, frame.y + frame.h)
        drawn = [[project(p.lon, p.lat) for p in route.points] for _, route in routes]
        with pdf.rect_clip(frame.x, frame.y, frame.w, frame.h):  # the computed clipping, and the PDF's own
            pdf.set_draw_color(215, 215, 215)
            for x0, y0, x1, y1, road in self.roads:
                if x0 <= east and x1 >= west and y0 <= north and y1 >= south:
                    for piece in clip_polyline([project(lon, lat) for lon, lat in road], frame):
                        pdf.polyline(piece)
            for (_, route), on_page, style in zip(routes, drawn, ROUTE_STYLES, strict=False):
                self.style(style)
                for piece in route_lines(on_page, route.trips, frame):
                    pdf.polyline(piece)
                pdf.set_dash_pattern()
                for x, y in on_page[:MAX_LABELLED]:
                    pdf.circle(x=x, y=y, radius=0.9, style="F")
            pdf.set_font("cjk", size=7)
            pdf.set_fill_color(255, 255, 255)
            for mark in stop_labels([on_page[:MAX_LABELLED] for on_page in drawn], frame,
                                    char_w=pdf.get_string_width("0"), h=2.4):
                x, y, w, h = mark.box()
                pdf.rect(x - 0.3, y - 0.2, w + 0.6, h + 0.6, style="F")  # a label stays legible over a line
                pdf.set_text_color(*ROUTE_STYLES[mark.route].rgb)
                pdf.text(mark.x, mark.y, mark.text)
        self.plain()
        pdf.set_draw_color(160, 160, 160)
        pdf.rect(frame.x, frame.y, frame.w, frame.h)
        pdf.set_draw_color(0, 0, 0)
        pdf.set_y(frame.y + frame.h + 2)
        for label, route in routes:
            self.line(self.t("stops", plate=label), 9, 5)
            for n, trip in enumerate(route.trips, 1):
                if trip[0] >= MAX_TIMELINE:
                    break
                if len(route.trips) > 1:
                    self.line(self.t("trip", n=n), 8, 4.5, indent=2)
                for i in trip:
                    if i >= MAX_TIMELINE:
                        break
                    p = route.points[i]
                    self.line(self.t("stop", n=i + 1, at=self.when(p.ts), camera=p.camera_name,
                                     location=_location(self.cameras.get(p.camera_id), self.lang)), 8, 4.5)
