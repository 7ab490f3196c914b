"""Geo edge cases: distances, same camera, zero time difference, time zones, appearance evidence,
the bulk columns of the store, areas with holes and bad settings."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from geo import areas, clones
from geo.distance import haversine_m, haversine_one_m
from indexer.sqlite_store import SQLiteStore
from indexer.store import FrameRecord, SightingQuery, StoredVector, VehicleColumns
from models.records import BBox, Camera, InputError, Sighting, VehicleAttributes

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)
A = Camera("a", "A", 121.20, 31.20)
B = Camera("b", "B", 121.40, 31.20)  # ~19 km east
NEAR = Camera("n", "Near", 121.2005, 31.20)  # ~48 m east of A
CAMS = {c.id: c for c in (A, B, NEAR)}


def _s(sid: str, cam: Camera, ts: datetime, plate: str = "沪A12345", score: float = 0.9, color: str = "white",
       vtype: str = "car") -> Sighting:
    return Sighting(sid, cam.id, ts, "vehicle", BBox(0, 0, 1, 1), 0.9,
                    VehicleAttributes(plate=plate, plate_score=score, vehicle_color=color, vehicle_type=vtype),
                    frame_sha256=f"f{sid}")


def test_scalar_and_vector_distances_agree() -> None:
    rng = np.random.default_rng(0)
    lon, lat = rng.uniform(-180, 180, (2, 50)), rng.uniform(-89, 89, (2, 50))
    vec = haversine_m(lon[0], lat[0], lon[1], lat[1])
    one = [haversine_one_m(*args) for args in zip(lon[0], lat[0], lon[1], lat[1], strict=True)]
    assert np.allclose(vec, one, rtol=1e-9)
    assert haversine_one_m(179.999, 0, -179.999, 0) == pytest.approx(222.4, rel=1e-2)  # across the antimeridian


def test_streaming_check_edge_cases() -> None:
    monitor = clones.CloneMonitor(CAMS)
    assert monitor.check(_s("1", A, T0)) is None
    assert monitor.check(_s("2", A, T0)) is None  # same camera, zero time difference
    assert monitor.check(_s("3", NEAR, T0 + timedelta(seconds=1))) is None  # neighbours: clock jitter, not a clone
    case = monitor.check(_s("4", B, T0 + timedelta(seconds=1)))
    assert case is not None and case.pair[1].sighting_id == "4" and case.speed_kmh > 10_000
    same_instant = monitor.check(_s("5", A, T0 + timedelta(seconds=1)))  # B and A at the same instant
    assert same_instant is not None and np.isinf(same_instant.speed_kmh)
    assert json.dumps(same_instant.to_json(), allow_nan=False)  # no Infinity in JSON: speed is null
    assert same_instant.to_json()["speed_kmh"] is None
    assert monitor.check(_s("6", B, T0 + timedelta(minutes=30), score=0.5)) is None  # a low-confidence read
    late = clones.CloneMonitor(CAMS)
    late.check(_s("7", A, T0 + timedelta(minutes=5)))
    assert late.check(_s("8", B, T0)) is not None  # out of order: compared, ...
    assert late.last["沪A12345"].sighting_id == "7"  # ... but the latest read stays the reference


def test_time_zones_do_not_change_the_instant() -> None:
    shanghai = timezone(timedelta(hours=8))
    monitor = clones.CloneMonitor(CAMS)
    monitor.check(_s("1", A, T0))
    # 16:20+08:00 is 08:20Z: 19 km in 20 minutes is 57 km/h, a drive, not a clone
    assert monitor.check(_s("2", B, datetime(2026, 11, 2, 16, 20, tzinfo=shanghai))) is None
    assert monitor.check(_s("3", A, datetime(2026, 11, 2, 16, 21, tzinfo=shanghai))) is not None


def test_appearance_strengthens_or_weakens_a_case(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "db.sqlite")
    store.upsert_cameras(list(CAMS.values()))
    rng = np.random.default_rng(1)
    base = rng.normal(size=64).astype(np.float32)
    looks = {"1": base, "2": base + 0.01, "3": rng.normal(size=64).astype(np.float32)}
    for sid, cam, minutes in (("1", A, 0), ("2", B, 1), ("3", B, 2)):
        s = _s(sid, cam, T0 + timedelta(minutes=minutes))
        store.add_frame(FrameRecord(s.frame_sha256, s.camera_id, s.ts, "t"), [s],
                        [StoredVector(sid, "vehicle", looks[sid])])
    seen = {s.id: clones.seen(s, CAMS[s.camera_id]) for s in store.get_sightings(["1", "2", "3"])}
    settings = clones.CloneSettings()
    same = clones.make_case("沪A12345", [clones.conflict(seen["1"], seen["2"], settings)], settings, store)
    other = clones.make_case("沪A12345", [clones.conflict(seen["1"], seen["3"], settings)], settings, store)
    assert same.evidence.embedding_distance < 0.1 and same.appearance == "same"
    assert other.evidence.embedding_distance > 0.3 and other.appearance == "different"
    assert other.confidence > same.confidence
    painted = clones.Seen("x", "b", B.lon, B.lat, T0 + timedelta(minutes=1), "red", "car")
    assert clones.make_case("p", [clones.conflict(seen["1"], painted, settings)], settings).appearance == "different"
    store.close()


def test_bulk_columns_round_trip_and_scan_by_range(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "db.sqlite")
    store.upsert_cameras(list(CAMS.values()))
    us = [int((T0 + timedelta(minutes=m)).timestamp() * 1e6) for m in (0, 1, 120, 121)]
    store.add_vehicle_columns(VehicleColumns(["c1", "c2", "c3", "c4"], ["a", "b", "a", "b"],
                                             np.array(us, dtype=np.int64),
                                             ["沪C1", "沪C1", "沪C1", "沪C1"], np.array([0.9, 0.9, 0.9, 0.5]),
                                             ["red", "blue", "red", "blue"], ["car", "van", "car", "van"]))
    got = store.query(SightingQuery(plate="沪C1", newest_first=False))
    assert [s.id for s in got] == ["c1", "c2", "c3", "c4"] and got[1].attributes.vehicle_type == "van"
    assert got[0].ts == T0 and store.plate_counts(["沪C1"]) == {"沪C1": 4}
    cases = clones.scan(store)
    assert [c.plate for c in cases] == ["沪C1"] and len(cases[0].conflicts) == 1  # c4 is a low-confidence read
    assert set(cases[0].vehicles) == {"vehicle A", "vehicle B"} and cases[0].appearance == "different"
    assert clones.scan(store, T0 + timedelta(minutes=60), T0 + timedelta(hours=3)) == []  # c3 alone in range
    assert clones.scan(store, T0, T0 + timedelta(hours=3), clones.CloneSettings(max_speed_kmh=5000)) == []
    with pytest.raises(InputError, match="ends before"):
        clones.scan(store, T0, T0 - timedelta(seconds=1))
    with pytest.raises(InputError):
        clones.CloneSettings(max_speed_kmh=0)
    store.close()


def test_areas_with_holes_and_multipolygons(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "db.sqlite")
    store.upsert_cameras(list(CAMS.values()))
    outer = areas.square(A.lon, A.lat, 2000)["coordinates"][0]
    hole = areas.square(A.lon, A.lat, 10)["coordinates"][0]
    assert areas.cameras_inside(store, {"type": "Polygon", "coordinates": [outer, hole]}) == ["n"]
    multi = {"type": "MultiPolygon", "coordinates": [areas.square(A.lon, A.lat, 10)["coordinates"],
                                                    areas.square(B.lon, B.lat, 10)["coordinates"]]}
    assert sorted(areas.cameras_inside(store, multi)) == ["a", "b"]
    assert areas.seen_in_area(store, areas.AreaWindow(areas.square(0, 0, 10))) == []  # no camera there
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    for bad in (bowtie, {"type": "Polygon"}, {"coordinates": []}, "not a polygon"):
        with pytest.raises(InputError):
            areas.cameras_inside(store, bad)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        areas.seen_in_all(store, [])
    store.close()


def test_an_appearance_route_keeps_only_what_one_vehicle_could_have_driven() -> None:
    """Four cameras along a road 1 km apart and one 40 km away: a look-alike there a minute after the car passed
    the first camera is left out, and so is the weaker of two look-alikes seen at once 3 km apart."""
    from geo.trajectories import feasible_chain

    t0 = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)
    cameras = {f"c{i}": Camera(f"c{i}", f"Camera {i}", 121.30 + 0.0105 * i, 31.20) for i in range(4)}
    cameras["far"] = Camera("far", "Far away", 121.72, 31.20)  # ~40 km east

    def seen(sid: str, camera: str, minutes: float) -> Sighting:
        return Sighting(sid, camera, t0 + timedelta(minutes=minutes), "vehicle", BBox(0, 0, 1, 1), 0.9,
                        VehicleAttributes())

    matches = [(seen("anchor", "c0", 0), 1.0), (seen("far", "far", 1), 0.97), (seen("next", "c1", 2), 0.93),
               (seen("then", "c2", 4), 0.92), (seen("twin", "c0", 4.2), 0.91), (seen("last", "c3", 6), 0.95),
               (seen("unplaced", "nowhere", 3), 0.99)]
    kept, rejected = feasible_chain("anchor", matches, cameras, max_speed_kmh=150)
    assert [s.id for s in kept] == ["anchor", "next", "then", "last"]
    assert {s.id for s in rejected} == {"far", "twin"}  # twin: at c0 while the car was 2 km on, at c2
    # a looser limit lets the far look-alike join only if the speed allows it: 40 km in a minute never does
    kept_fast, _ = feasible_chain("anchor", matches, cameras, max_speed_kmh=2000)
    assert "far" not in {s.id for s in kept_fast}
    earlier, _ = feasible_chain("then", matches, cameras, max_speed_kmh=150)  # the chain runs both ways
    assert [s.id for s in earlier] == ["anchor", "next", "then", "last"]
