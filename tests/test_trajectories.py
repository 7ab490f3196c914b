"""Trajectories and stay points: geometry, edge cases, time zones, and bad input over HTTP."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from geo.trajectories import build, haversine_m, trajectory
from indexer.sqlite_store import SQLiteStore
from indexer.store import FrameRecord
from models.records import BBox, Camera, InputError, Sighting, VehicleAttributes
from services.api.app import create_app
from services.api.localserver import serving
from tests.conftest import client

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)
HOME = Camera("home", "Home gate", 121.2000, 31.2000)
NEAR = Camera("near", "Next street", 121.2030, 31.2000)  # ~286 m east
WORK = Camera("work", "Office", 121.3000, 31.2500)


def _s(i: int, cam: Camera, ts: datetime, plate: str = "沪A12345") -> Sighting:
    return Sighting(f"s{i}", cam.id, ts, "vehicle", BBox(0, 0, 1, 1), 0.9,
                    VehicleAttributes(plate=plate, plate_score=0.9), frame_sha256=f"f{i}")


def test_haversine_is_right_on_known_distances() -> None:
    assert haversine_m(0, 0, 0, 1) == pytest.approx(111_195, rel=1e-3)  # one degree of latitude
    assert haversine_m(121.2, 31.2, 121.2, 31.2) == 0.0
    assert haversine_m(HOME.lon, HOME.lat, NEAR.lon, NEAR.lat) == pytest.approx(285.6, rel=0.01)


def test_legs_trips_speeds_and_edge_cases() -> None:
    cams = {c.id: c for c in (HOME, NEAR, WORK)}
    sightings = [_s(1, HOME, T0), _s(2, WORK, T0 + timedelta(minutes=20)),
                 _s(3, WORK, T0 + timedelta(minutes=20)),  # same camera, zero time difference
                 _s(4, HOME, T0 + timedelta(hours=9)),  # a new trip after a long gap
                 _s(0, Camera("gone", "x", 0, 0), T0)]  # a camera that is not registered is left out
    traj = build("沪A12345", sightings, cams)
    assert [p.sighting_id for p in traj.points] == ["s1", "s2", "s3", "s4"]
    first, same, _ = traj.legs
    assert first.distance_m == pytest.approx(haversine_m(HOME.lon, HOME.lat, WORK.lon, WORK.lat))
    assert first.speed_kmh == pytest.approx(first.distance_m / 1200 * 3.6)
    assert same.distance_m == 0.0 and same.seconds == 0.0 and same.speed_kmh is None
    assert traj.trips == [[0, 1, 2], [3]]
    geo = traj.geojson()["features"]
    assert [f["geometry"]["type"] for f in geo] == ["Point"] * 4 + ["LineString"]


def test_stays_are_long_gaps_at_nearby_cameras_ranked_by_visits() -> None:
    cams = {c.id: c for c in (HOME, NEAR, WORK)}
    sightings, i = [], 0
    for day in range(3):  # home every night, work every day
        base = T0 + timedelta(days=day)
        for cam, hours in ((HOME, 0), (WORK, 1), (WORK, 9), (NEAR, 10)):
            i += 1
            sightings.append(_s(i, cam, base + timedelta(hours=hours)))
    places = build("沪A12345", sightings, cams).stays
    assert [p.camera_ids for p in places] == [["work"], ["home", "near"]]
    assert places[0].visits == 3 and places[0].dwell_s == 3 * 8 * 3600
    assert places[1].visits == 2  # the night between days, twice


def test_store_queries_time_zones_and_bad_ranges(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "db.sqlite")
    store.upsert_cameras([HOME, WORK])
    for s in (_s(1, HOME, T0), _s(2, WORK, T0 + timedelta(hours=1)), _s(3, HOME, T0, plate="苏E99999")):
        store.add_frame(FrameRecord(s.frame_sha256, s.camera_id, s.ts, "t"), [s], [])
    shanghai = timezone(timedelta(hours=8))
    window = trajectory(store, "沪A12345", datetime(2026, 11, 2, 16, 30, tzinfo=shanghai),
                        datetime(2026, 11, 2, 18, 0, tzinfo=shanghai))
    assert [p.sighting_id for p in window.points] == ["s2"]  # 16:30+08:00 is 08:30Z
    assert trajectory(store, "京X00000").points == []
    with pytest.raises(InputError, match="ends before it starts"):
        trajectory(store, "沪A12345", T0, T0 - timedelta(seconds=1))
    store.close()


def test_trajectory_api(settings) -> None:  # noqa: ANN001
    app = create_app(settings)
    store = app.state.system.store
    store.upsert_cameras([HOME, WORK])
    for s in (_s(1, HOME, T0), _s(2, WORK, T0 + timedelta(minutes=30))):
        store.add_frame(FrameRecord(s.frame_sha256, s.camera_id, s.ts, "t"), [s], [])
    with serving(app) as url, client(app, url) as api:
        body = api.get("/trajectories/沪A12345").json()
        assert [p["camera_id"] for p in body["points"]] == ["home", "work"] and body["legs"][0]["speed_kmh"] > 0
        assert api.get("/trajectories/沪A·12345").json()["points"]  # separators are ignored
        assert api.get("/trajectories/京X00000").json()["points"] == []
        bad = api.get("/trajectories/沪A12345", params={"start": "2026-11-03T00:00:00Z", "end": "2026-11-02T00:00:00Z"})
        assert bad.status_code == 400 and "ends before" in bad.json()["detail"]
        naive = api.get("/trajectories/沪A12345", params={"start": "2026-11-02T00:00:00"})
        assert naive.status_code == 400 and "time zone" in naive.json()["detail"]
        assert api.get("/stays/沪A12345").json()["stays"] == []
