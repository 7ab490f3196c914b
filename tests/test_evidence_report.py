"""The evidence report (issue #32, item 11): times in the case's zone, English or Chinese, maps that stay in their
frame with one line per trip and merged stop labels in the web app's colours, a clone finding's distances and
speeds, a co-travel finding's lags and shared cameras.

The drawing is checked on the pure functions that compute it (services/report_map.py); the rest on the PDF's
text (pypdf), from a package made by the same packager the API and the CLI use."""
from __future__ import annotations

import csv
import io
import json
import random
import re
import sqlite3
import string
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from geo.distance import haversine_one_m
from geo.trajectories import build
from indexer.case_store import SQLiteCaseStore
from models.records import BBox, Camera, InputError, Sighting, VehicleAttributes
from services.cli.main import main as sightline
from services.evidence import CJK_FONTS, COMPANION_STYLE, FRAMES_STATEMENT, TARGET_STYLE, EvidencePackager, when
from services.report_map import Frame, clip_polyline, clip_segment, fit, route_lines, stop_labels
from services.report_text import EN, ZH
from services.system import Sightline
from tests.fakes import FakePipeline, jpeg, vehicle
from tests.test_cases import ALICE

needs_font = pytest.mark.skipif(not any(p.is_file() for p in CJK_FONTS), reason="no CJK font (scripts/test.sh "
                                "installs one)")
NIGHT = datetime(2026, 11, 2, 20, 30, tzinfo=timezone.utc)  # 04:30 the next day in Shanghai
CAMERAS = [Camera(f"gate-{i}", f"纪翟路 Gate {i}", 121.29 + i / 100, 31.21 + i / 200) for i in range(1, 4)] + [
    Camera("far", "嘉闵高架 Far", 121.80, 31.40)]
PLATE, OTHER, CLONED, LATE = "皖AY766D", "沪B12345", "苏E99999", "浙C55555"
WEB_APP = Path(__file__).resolve().parent.parent / "web" / "app.js"


# the text table --------------------------------------------------------------------------------------------------
def test_every_report_string_has_its_chinese_with_the_same_blanks() -> None:
    def blanks(text: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name}

    assert set(EN) == set(ZH)
    # "frames" is FRAMES_STATEMENT as it stands in English, written out in Chinese
    assert {k for k in EN if blanks(EN[k]) != blanks(ZH[k])} == {"frames"} and EN["frames"] == "{statement}"


# times -----------------------------------------------------------------------------------------------------------
def test_a_time_is_printed_in_the_zone_with_its_offset() -> None:
    assert when(NIGHT, ZoneInfo("Asia/Shanghai")) == "2026-11-03 04:30:00 UTC+08:00"
    assert when(NIGHT) == "2026-11-02 20:30:00 UTC"
    assert when(NIGHT, ZoneInfo("Asia/Kolkata")) == "2026-11-03 02:00:00 UTC+05:30"
    summer = datetime(2026, 7, 1, 12, tzinfo=timezone.utc)
    assert when(summer, ZoneInfo("America/New_York")) == "2026-07-01 08:00:00 UTC-04:00"  # daylight saving
    assert when(NIGHT, ZoneInfo("America/New_York")) == "2026-11-02 15:30:00 UTC-05:00"


def test_a_case_keeps_its_zone_and_an_unknown_zone_is_refused(fake_system: Sightline) -> None:
    cases = fake_system.cases
    for bad in ("Mars/Base", "../etc/passwd", "asia/shanghai", "localtime", "x" * 70):
        with pytest.raises(InputError, match="time zone"):
            cases.create("Z-1", "t", "r", "alice", bad)
    assert cases.create("Z-1", "t", "r", "alice", "Asia/Shanghai").zone == "Asia/Shanghai"
    assert cases.by_ref("Z-1").zone == "Asia/Shanghai"  # type: ignore[union-attr]
    assert cases.create("Z-2", "t", "r", "alice").zone == "UTC"


def test_a_cases_db_from_before_zones_reads_its_cases_as_utc(tmp_path: Path) -> None:
    db = tmp_path / "cases.db"
    with sqlite3.connect(db) as conn:  # the table as it was, and one case in it
        conn.execute("CREATE TABLE cases (id TEXT PRIMARY KEY, ref TEXT NOT NULL UNIQUE, title TEXT NOT NULL, "
                     "reason TEXT NOT NULL, owner TEXT NOT NULL, created_us INTEGER NOT NULL, status TEXT NOT NULL, "
                     "closed_us INTEGER, closed_by TEXT, ref_key TEXT, collaborators TEXT NOT NULL DEFAULT '[]')")
        conn.execute("INSERT INTO cases VALUES ('c1', 'OLD-1', 't', 'r', 'alice', 0, 'open', NULL, NULL, 'old1', "
                     "'[]')")
    store = SQLiteCaseStore(db)
    try:
        old = store.get("c1")
        assert old is not None and old.zone == "UTC"
    finally:
        store.close()


# the maps' geometry ----------------------------------------------------------------------------------------------
FRAME = Frame(10, 20, 100, 50)


def test_roads_are_cut_at_the_frame() -> None:
    assert clip_polyline([(0, 30), (200, 30)], FRAME) == [[(10, 30), (110, 30)]]  # crosses with no vertex inside
    assert clip_polyline([(0, 0), (200, 0)], FRAME) == []  # passes above it
    assert clip_polyline([(20, 30), (20, 100), (40, 100), (40, 30)], FRAME) == [[(20, 30), (20, 70)],
                                                                                 [(40, 70), (40, 30)]]
    assert clip_segment((20, 30), (30, 40), FRAME) == ((20, 30), (30, 40))  # inside: unchanged
    rng = random.Random(7)
    for _ in range(300):
        line = [(rng.uniform(-100, 250), rng.uniform(-100, 200)) for _ in range(rng.randint(2, 8))]
        for piece in clip_polyline(line, FRAME):
            assert len(piece) > 1 and all(FRAME.holds(p) for p in piece)


def _sighting(sid: str, camera: str, ts: datetime, plate: str = PLATE) -> Sighting:
    return Sighting(sid, camera, ts, "vehicle", BBox(0, 0, 10, 10), 0.9, VehicleAttributes(plate=plate))


def test_separate_trips_are_separate_lines_and_every_point_is_on_the_map() -> None:
    cameras = {c.id: c for c in CAMERAS}
    visits = [("gate-1", 0), ("gate-2", 10), ("gate-3", 20), ("gate-1", 90), ("gate-2", 100)]  # 70 min apart
    route = build(PLATE, [_sighting(f"s{i}", c, NIGHT + timedelta(minutes=m)) for i, (c, m) in enumerate(visits)],
                  cameras)
    project = fit([(p.lon, p.lat) for p in route.points], FRAME)
    points = [project(p.lon, p.lat) for p in route.points]
    assert all(FRAME.holds(p) for p in points)
    lines = route_lines(points, route.trips, FRAME)
    assert lines == [points[:3], points[3:]]  # gate-3 at 20:50 and gate-1 at 22:00 are not joined
    joined = {(a, b) for line in lines for a, b in zip(line, line[1:], strict=False)}
    assert (points[2], points[3]) not in joined


def test_stop_labels_at_one_camera_are_merged_and_labels_do_not_cover_each_other() -> None:
    a, b, c = (50.0, 40.0), (52.0, 41.0), (100.0, 60.0)
    target = [a, b, c, a, b, c, a]
    labels = stop_labels([target, [a, b]], FRAME)
    assert [(x.route, x.text) for x in labels] == [(0, "1, 4, 7"), (0, "2, 5"), (0, "3, 6"), (1, "1"), (1, "2")]
    dots = [(x - 0.9, y - 0.9, 1.8, 1.8) for x, y in (a, b, c)]
    for i, one in enumerate(labels):
        assert FRAME.holds_box(*one.box()), one
        for other in [*(o.box() for o in labels[i + 1:]), *dots]:  # no label covers another, nor a stop's dot
            x0, y0, w0, h0 = one.box()
            x1, y1, w1, h1 = other
            assert x0 + w0 <= x1 or x1 + w1 <= x0 or y0 + h0 <= y1 or y1 + h1 <= y0, (one, other)
    edge = stop_labels([[(FRAME.x + FRAME.w - 0.5, FRAME.y + 0.5)]], FRAME)[0]  # a stop in the frame's corner
    assert FRAME.holds_box(*edge.box())
    many = stop_labels([[a] * 9], FRAME)
    assert [x.text for x in many] == ["1, 2, 3, 4, 5, 6, …"]


def test_co_travel_is_drawn_in_the_web_apps_colours() -> None:
    found = re.search(r'TARGET_COLOR = "(#[0-9a-fA-F]+)", COMPANION_COLOR = "(#[0-9a-fA-F]+)"',
                      WEB_APP.read_text(encoding="utf-8"))
    assert found, "web/app.js names TARGET_COLOR and COMPANION_COLOR"
    assert (TARGET_STYLE.hex, COMPANION_STYLE.hex) == found.groups()
    assert TARGET_STYLE.rgb == (0xDD, 0x33, 0x33) and COMPANION_STYLE.rgb == (0x25, 0x63, 0xA8)
    assert TARGET_STYLE.width > COMPANION_STYLE.width and TARGET_STYLE.dash is None and COMPANION_STYLE.dash


# the report, end to end ------------------------------------------------------------------------------------------
def _ingest(system: Sightline, pipeline: FakePipeline) -> dict[str, str]:
    """PLATE on three trips (gate-1 on each), OTHER a minute behind it on the first, LATE 90 s behind it at gate-3,
    CLONED at gate-1 and 'far' 15 minutes apart. "plate camera minutes-after-NIGHT" -> sighting id."""
    from services.ingest import PhotoJob

    system.store.upsert_cameras(CAMERAS)
    visits = [(PLATE, "gate-1", 0), (PLATE, "gate-2", 10), (PLATE, "gate-3", 20), (PLATE, "gate-1", 90),
              (PLATE, "gate-2", 100), (PLATE, "gate-3", 110), (PLATE, "gate-1", 180), (OTHER, "gate-1", 1),
              (OTHER, "gate-2", 11), (CLONED, "gate-1", 5), (CLONED, "far", 20), (LATE, "gate-3", 21.5)]
    ids = {}
    for seed, (plate, camera, minutes) in enumerate(visits, start=1):
        pipeline.script(jpeg(seed), [vehicle(plate=plate, plate_score=0.95, vehicle_color="white")])
        job = PhotoJob(f"{seed}.jpg", jpeg(seed), camera, NIGHT + timedelta(minutes=minutes))
        ids[f"{plate} {camera} {minutes}"] = system.ingestor.ingest_one(job).sightings[0].id
    return ids


def _export(system: Sightline, pipeline: FakePipeline, tmp_path: Path, lang: str) -> tuple[str, zipfile.ZipFile]:
    from pypdf import PdfReader

    from services.cases import NewItem

    ids = _ingest(system, pipeline)
    case = system.cases.create("2026/0412", "stolen car", "theft", "alice", "Asia/Shanghai")
    for new in (NewItem("trajectory", plate=PLATE),
                NewItem("cotravel", plate=PLATE, other_plate=OTHER,
                        sighting_ids=[ids[f"{PLATE} gate-1 0"], ids[f"{OTHER} gate-1 1"]]),
                NewItem("clone", plate=CLONED, sighting_ids=[ids[f"{CLONED} far 20"], ids[f"{CLONED} gate-1 5"]]),
                NewItem("cotravel", plate=PLATE, other_plate=LATE,  # found with a wider window than the default
                        sighting_ids=[ids[f"{PLATE} gate-3 20"], ids[f"{LATE} gate-3 21.5"]])):
        system.cases.add_item(case.id, new, ALICE)
    roads = tmp_path / "roads.geojson"
    roads.write_text(json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},
                     "geometry": {"type": "LineString", "coordinates": [[120.0, 31.22], [123.0, 31.23]]}}]}))
    packager = EvidencePackager(system.cases, system.store, system.blobs, roads)
    archive = zipfile.ZipFile(io.BytesIO(packager.package(case.id, "alice", lang).data))
    pdf = archive.read("report.pdf")
    (tmp_path / f"report-{lang}.pdf").write_bytes(pdf)
    return " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages).split()), archive


@needs_font
def test_the_report_prints_times_in_the_cases_zone_and_states_each_finding(
        fake_system: Sightline, fake_pipeline: FakePipeline, tmp_path: Path) -> None:
    text, archive = _export(fake_system, fake_pipeline, tmp_path, "en")
    assert "Times are Asia/Shanghai (UTC+08:00)" in text and "sightings.csv and sightings.geojson keep UTC" in text
    assert "2026-11-03 04:30:00 UTC+08:00" in text and "2026-11-02 20:30:00" not in text
    assert "Evidence package — case 2026/0412" in text and FRAMES_STATEMENT.split(":")[0] in text
    rows = list(csv.DictReader(io.StringIO(archive.read("sightings.csv").decode("utf-8-sig"))))
    assert "2026-11-02T20:30:00+00:00" in {r["ts"] for r in rows}  # machine data stays UTC
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["case"]["zone"] == "Asia/Shanghai" and manifest["report_language"] == "en"

    # the trajectory: three trips, drawn apart
    assert "Route 皖AY766D (red, wide solid line), sightings: 7" in text and "3 trips, drawn apart" in text
    assert "Trip 3" in text
    # co-travel: the target first, its lags and shared cameras
    target = text.index("Target 皖AY766D (red, wide solid line)")
    assert target < text.index("Companion 沪B12345 (blue, narrow dashed line)")
    assert "Shared cameras (2), passes within ±60 s: 纪翟路 Gate 1, 纪翟路 Gate 2" in text
    assert "纪翟路 Gate 1: 皖AY766D at 2026-11-03 04:30:00 UTC+08:00; 沪B12345 60 s later" in text
    assert "纪翟路 Gate 2: 皖AY766D at 2026-11-03 04:40:00 UTC+08:00; 沪B12345 60 s later" in text
    assert "Mean lag: 沪B12345 60 s later" in text
    assert "Shared cameras (1), passes within ±90 s: 纪翟路 Gate 3" in text and "浙C55555 90 s later" in text
    # the clone: its two reads in time order, distance, time apart, implied speed
    gate, far = CAMERAS[0], CAMERAS[3]
    km = haversine_one_m(gate.lon, gate.lat, far.lon, far.lat) / 1000
    assert f"1 → 2: {km:.1f} km apart, 15 min 0 s apart, implied speed {km * 4:.0f} km/h " \
           "(纪翟路 Gate 1 → 嘉闵高架 Far)" in text


@needs_font
def test_the_report_in_chinese(fake_system: Sightline, fake_pipeline: FakePipeline, tmp_path: Path) -> None:
    text, archive = _export(fake_system, fake_pipeline, tmp_path, "zh")
    for phrase in ("证据包 — 案件 2026/0412", "事由：theft", "本报告中的时间均为 Asia/Shanghai 时间（UTC+08:00）",
                   "原图收入 frames/ 目录", "原图见 frames/", "红框为目标位置",
                   "时间线", "发现 1：轨迹", "发现 2：同行车辆", "发现 3：套牌", "共 3 段行程",
                   "目标车辆 皖AY766D（红色粗实线）", "同行车辆 沪B12345（蓝色细虚线）",
                   "共同经过的摄像头（2 个，前后 60 秒内）：纪翟路 Gate 1、纪翟路 Gate 2",
                   "沪B12345 晚 60 秒", "推算车速", "15 分 0 秒", "2026-11-03 04:30:00 UTC+08:00"):
        assert phrase in text, phrase
    for english in ("Evidence package", "Finding", "Timeline", "Reason:", "Shared cameras", "its hash checked"):
        assert english not in text, english
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["report_language"] == "zh" and manifest["original_frames"]["statement"] == FRAMES_STATEMENT


@needs_font
def test_the_command_line_opens_a_case_in_a_zone_and_exports_it_in_chinese(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    base = ["--data", str(data), "cases"]
    assert sightline([*base, "open", "C-9", "--title", "t", "--reason", "r", "--zone", "Mars/Base"]) == 2
    assert "unknown time zone" in capsys.readouterr().err
    assert sightline([*base, "open", "C-9", "--title", "t", "--reason", "r", "--zone", "Asia/Shanghai"]) == 0
    assert json.loads(capsys.readouterr().out)["zone"] == "Asia/Shanghai"
    out = tmp_path / "c9.zip"
    assert sightline([*base, "export", "C-9", "--reason", "r", "--lang", "zh", "--out", str(out)]) == 0
    manifest = json.loads(zipfile.ZipFile(out).read("manifest.json"))
    assert (manifest["case"]["zone"], manifest["report_language"]) == ("Asia/Shanghai", "zh")
