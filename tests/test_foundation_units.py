"""Unit tests of pre/post-processing, records, the record store and the vector index (no models)."""
from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from indexer.sqlite_store import SQLiteStore
from indexer.store import FrameRecord, SightingQuery, StoredVector
from indexer.vectors import FaissIndex
from models.detectors import yolox_decode, yolox_grid
from models.imageops import by_canvas, color_name, decode_image, letterbox, nms, tight_canvas
from models.records import BBox, Camera, InputError, Sighting, VehicleAttributes, parse_time
from services.bench.evaluation import average_precision, roc_auc
from services.cameras import from_roadnet, load_file

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)


def test_parse_time_requires_zone_and_returns_utc() -> None:
    assert parse_time("2026-11-02T16:00:00+08:00") == T0
    assert parse_time("2026-11-02T08:00:00Z") == T0
    with pytest.raises(InputError, match="no time zone"):
        parse_time("2026-11-02T08:00:00")
    with pytest.raises(InputError, match="ISO 8601"):
        parse_time("yesterday")


def test_camera_validation() -> None:
    with pytest.raises(InputError):
        Camera(id="c1", name="x", lon=200, lat=0)
    with pytest.raises(InputError):
        Camera(id="c1", name="x", lon=0, lat=0, kind="drone")


def test_decode_rejects_empty_and_corrupt_bytes() -> None:
    with pytest.raises(InputError, match="empty"):
        decode_image(b"")
    with pytest.raises(InputError, match="not a readable image"):
        decode_image(b"\xff\xd8\xff\xe0 this is not really a jpeg")


def test_nms_keeps_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=np.float32)
    scores = np.array([0.8, 0.9, 0.5], dtype=np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_letterbox_top_left_keeps_aspect() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    canvas, scale, offset = letterbox(image, 416, 114, centred=False)
    assert canvas.shape == (416, 416, 3) and scale == pytest.approx(2.08) and offset == (0, 0)
    assert canvas[300, 10].tolist() == [114, 114, 114]  # padding below the image


@pytest.mark.parametrize(("shape", "canvas"), [((1160, 720), (416, 320)), ((720, 1280), (256, 416)),
                                               ((500, 500), (416, 416)), ((10, 4000), (64, 416))])
def test_tight_canvas_holds_the_letterboxed_image_in_multiples_of_64(shape, canvas) -> None:
    assert tight_canvas(shape, 416) == canvas
    padded, _, _ = letterbox(np.full((*shape, 3), 200, np.uint8), 416, 114, centred=False, canvas=canvas)
    ys, xs = np.nonzero(padded[..., 0] == 200)
    assert padded.shape[:2] == canvas and ys.max() < canvas[0] and xs.max() < canvas[1]
    assert canvas[0] - ys.max() <= 64 and canvas[1] - xs.max() <= 64  # less than one quantum of padding


def test_frames_are_grouped_by_their_own_canvas() -> None:
    frames = [np.zeros((720, 1280, 3), np.uint8), np.zeros((1160, 720, 3), np.uint8), np.zeros((360, 640, 3), np.uint8)]
    assert by_canvas(frames, 416, tight=True) == {(256, 416): [0, 2], (416, 320): [1]}
    assert by_canvas(frames, 416, tight=False) == {(416, 416): [0, 1, 2]}


def test_yolox_decode_maps_grid_cells_to_pixels() -> None:
    grid, strides = yolox_grid(416)
    assert len(grid) == 3549
    raw = np.zeros((3549, 85), np.float32)
    row = 52 * 52 + 26 * 3 + 5  # stride-16 cell x=5, y=3
    raw[row, :4] = [0.5, 0.5, np.log(4), np.log(2)]
    raw[row, 4], raw[row, 5 + 2] = 0.9, 0.8  # objectness, class "car"
    boxes, scores, classes = yolox_decode(raw, grid, strides)
    assert classes[row] == 2 and scores[row] == pytest.approx(0.72)
    cx, cy, w, h = 5.5 * 16, 3.5 * 16, 64, 32
    assert boxes[row].tolist() == pytest.approx([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def test_color_names() -> None:
    assert color_name(np.array([20, 20, 20])) == "black"
    assert color_name(np.array([240, 240, 240])) == "white"
    assert color_name(np.array([30, 30, 200])) == "red"
    assert color_name(np.array([200, 60, 20])) == "blue"


def test_metrics() -> None:
    assert roc_auc(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == 1.0
    assert roc_auc(np.array([0.5]), np.array([0.5])) == 0.5
    assert average_precision(np.array([True, False, True])) == pytest.approx((1 + 2 / 3) / 2)


def test_roadnet_cameras_are_real_intersections(eval_dir: Path) -> None:
    cams = from_roadnet(eval_dir / "roadnet" / "shanghai_intersections.geojson")
    assert len(cams) == 238
    assert all(121.0 < c.lon < 121.6 and 30.9 < c.lat < 31.5 for c in cams)
    assert any(c.road and "纪翟路" in c.road for c in cams)


def test_camera_csv_errors_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "cams.csv"
    bad.write_text("id,name,lon\nc1,x,121\n")
    with pytest.raises(InputError, match="missing column"):
        load_file(bad)
    good = tmp_path / "good.csv"
    good.write_text("id,name,lon,lat,heading_deg,kind,road\nc1,Gate,121.3,31.2,90,checkpoint,Main\n")
    assert load_file(good)[0].heading_deg == 90


def _sighting(i: int, plate: str, camera: str = "c1") -> Sighting:
    return Sighting(id=f"s{i}", camera_id=camera, ts=T0 + timedelta(minutes=i), kind="vehicle",
                    bbox=BBox(0, 0, 10, 10), det_score=0.9, attributes=VehicleAttributes(plate=plate, plate_score=0.9),
                    frame_sha256=f"f{i}")


def test_store_round_trip_filters_and_atomic_frames(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "db.sqlite")
    store.upsert_cameras([Camera("c1", "one", 121.3, 31.2), Camera("c2", "two", 121.4, 31.3)])
    for i in range(5):
        s = _sighting(i, "沪A12345" if i % 2 else "苏E99999", camera="c1" if i < 3 else "c2")
        store.add_frame(FrameRecord(f"f{i}", s.camera_id, s.ts, "test"), [s],
                        [StoredVector(s.id, "vehicle", np.full(4, i, np.float32))])
    assert store.count() == 5 and store.has_frame("f3")
    assert [s.id for s in store.query(SightingQuery(plate="沪A12345"))] == ["s3", "s1"]
    assert [s.id for s in store.query(SightingQuery(camera_ids=["c2"]))] == ["s4", "s3"]
    window = store.query(SightingQuery(start=T0 + timedelta(minutes=1), end=T0 + timedelta(minutes=3)))
    assert sorted(s.id for s in window) == ["s1", "s2"]
    got = store.get_sighting("s1")
    assert got is not None and got.ts == T0 + timedelta(minutes=1) and got.attributes.plate == "沪A12345"
    assert got.vector_id == 2
    # A frame whose write fails half-way leaves nothing behind, and what was stored is intact.
    broken = _sighting(9, "X")
    with pytest.raises(sqlite3.IntegrityError):
        store.add_frame(FrameRecord("f9", "c1", T0, "test"), [broken, broken], [])  # duplicate primary key
    assert not store.has_frame("f9") and store.count() == 5
    ids, vecs = next(store.vectors_after("vehicle", 2))
    assert ids.tolist() == [3, 4, 5] and vecs[0].tolist() == [2, 2, 2, 2]
    store.close()


def test_faiss_index_catches_up_and_survives_a_corrupt_file(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "db.sqlite")
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(20, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for i, v in enumerate(vectors[:10]):
        s = _sighting(i, "A")
        store.add_frame(FrameRecord(f"f{i}", "c1", s.ts, "t"), [s], [StoredVector(s.id, "vehicle", v)])
    index = FaissIndex(tmp_path / "vec", "vehicle", 8, store)
    assert len(index) == 10
    index.save()
    for i, v in enumerate(vectors[10:], start=10):  # stored, but the process "dies" before the index is saved
        s = _sighting(i, "A")
        store.add_frame(FrameRecord(f"f{i}", "c1", s.ts, "t"), [s], [StoredVector(s.id, "vehicle", v)])
    reopened = FaissIndex(tmp_path / "vec", "vehicle", 8, store)
    assert len(reopened) == 20
    scores, ids = reopened.search(vectors[15:16], 1)
    assert ids[0, 0] == 16 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    (tmp_path / "vec" / "vehicle.faiss").write_bytes(b"garbage")
    assert len(FaissIndex(tmp_path / "vec", "vehicle", 8, store)) == 20
    store.close()
