"""Clone and co-travel detection against the city simulator's ground truth (with misreads), and the
area/time queries and their bad input."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from geo import areas, clones, cotravel
from geo.simulator import LOCAL, build_city
from indexer.sqlite_store import SQLiteStore
from models.records import InputError
from services.api import create_app
from services.cameras import from_roadnet
from services.localserver import serving

DAYS = 7  # a week: twins whose trips never overlap in time on a given day cannot be told apart that day


@pytest.fixture(scope="module")
def city_store(tmp_path_factory, eval_dir: Path):  # noqa: ANN001, ANN201
    cams = from_roadnet(eval_dir / "roadnet" / "shanghai_intersections.geojson")
    city = build_city(cams, 300, seed=5, convoys=10, clones=10)
    store = SQLiteStore(tmp_path_factory.mktemp("city") / "db.sqlite")
    store.upsert_cameras(cams)
    rows = list(city.sightings(DAYS, misread_rate=0.03))
    store.add_sightings(rows)
    yield city, store, rows
    store.close()


def _precision_recall(found: set, truth: set) -> tuple[float, float]:
    tp = len(found & truth)
    return tp / max(1, len(found)), tp / max(1, len(truth))


def test_clone_scan_and_stream_find_the_cloned_plates_despite_misreads(city_store) -> None:  # noqa: ANN001
    city, store, rows = city_store
    assert city.truth.misreads > 100 and city.truth.cloned_plates
    cases = clones.scan(store)
    precision, recall = _precision_recall({c.plate for c in cases}, city.truth.cloned_plates)
    assert precision >= 0.95 and recall >= 0.95
    case = cases[0]
    assert case.speed_kmh > 150 and case.distance_m >= 1000 and len(case.vehicles) >= 2
    assert {s.sighting_id for s in case.pair} <= {sid for ids in case.vehicles.values() for sid in ids}
    monitor = clones.CloneMonitor({c.id: c for c in store.list_cameras()})
    streamed = {c.plate for s in rows if (c := monitor.check(s))}
    precision, recall = _precision_recall(streamed, city.truth.cloned_plates)
    assert precision >= 0.95 and recall >= 0.95


def test_clone_check_edge_cases(city_store) -> None:  # noqa: ANN001
    _, store, rows = city_store
    cams = {c.id: c for c in store.list_cameras()}
    s = rows[0]
    same_time_same_camera = clones.CloneMonitor(cams)
    assert same_time_same_camera.check(s) is None and same_time_same_camera.check(s) is None  # distance 0
    weak = clones.CloneMonitor(cams, clones.CloneSettings(min_plate_score=1.0))
    assert all(weak.check(r) is None for r in rows[:200])  # low-confidence reads never make a case


def test_co_travellers_of_each_convoy_target_day_by_day(city_store) -> None:  # noqa: ANN001
    city, store, _ = city_store
    found, truth = set(), set()
    for day in range(DAYS):
        start = datetime(2026, 11, 2, tzinfo=LOCAL) + timedelta(days=day)
        for target, followers in city.truth.convoys.items():
            companions = cotravel.co_travellers(store, target, start, start + timedelta(days=1))
            assert all(c.cameras >= 3 and c.lag_std_s <= 15 for c in companions)
            found |= {(day, target, c.plate) for c in companions}
            truth |= {(day, target, f) for f in followers}
    precision, recall = _precision_recall(found, truth)
    assert precision >= 0.9 and recall >= 0.9
    assert cotravel.co_travellers(store, "京X00000") == []
    with pytest.raises(InputError):
        cotravel.co_travellers(store, "京X00000", datetime(2026, 11, 3, tzinfo=timezone.utc),
                               datetime(2026, 11, 2, tzinfo=timezone.utc))


def _square(lon: float, lat: float, d: float = 0.01) -> dict:
    ring = [[lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d], [lon - d, lat - d]]
    return {"type": "Polygon", "coordinates": [ring]}


def test_area_queries_and_their_intersection(city_store) -> None:  # noqa: ANN001
    city, store, _ = city_store
    cams = {c.id: c for c in store.list_cameras()}
    v = next(v for v in city.vehicles if v.leader is None and v.home != v.work)
    home, work = city.cameras[v.home], city.cameras[v.work]
    day = datetime(2026, 11, 2, tzinfo=LOCAL)
    at_home = areas.AreaWindow(_square(home.lon, home.lat, 0.001), day, day + timedelta(hours=12))
    at_work = areas.AreaWindow(_square(work.lon, work.lat, 0.001), day, day + timedelta(hours=12))
    both = areas.seen_in_all(store, [at_home, at_work])
    assert v.plate in both and all(s.camera_id in (home.id, work.id) for s in both[v.plate])
    inside = areas.seen_in_area(store, at_home)
    assert inside and all(cams[s.camera_id].id == home.id for s in inside)
    with pytest.raises(InputError, match="(?i)polygon"):
        areas.seen_in_area(store, areas.AreaWindow({"type": "Point", "coordinates": [121, 31]}))
    with pytest.raises(InputError, match="ends before"):
        areas.seen_in_area(store, areas.AreaWindow(at_home.polygon, day, day - timedelta(hours=1)))


def test_analytics_api_over_http(settings, city_store) -> None:  # noqa: ANN001
    city, store, rows = city_store
    app = create_app(settings)
    target = app.state.system.store
    target.upsert_cameras(store.list_cameras())
    target.add_sightings(rows[:20_000])
    leader = next(iter(city.truth.convoys))
    with serving(app) as url, httpx.Client(base_url=url, timeout=60) as api:
        found = api.get("/clones").json()
        assert found["count"] >= 1 and found["cases"][0]["speed_kmh"] > 150
        assert api.get("/clones", params={"start": "2026-11-05T00:00:00Z", "end": "2026-11-01T00:00:00Z"}).status_code == 400
        day = {"start": "2026-11-02T00:00:00+08:00", "end": "2026-11-03T00:00:00+08:00"}
        companions = api.get(f"/co-travel/{leader}", params=day).json()["companions"]
        assert {c["plate"] for c in companions} <= city.truth.convoys[leader] | set()
        assert api.get("/co-travel/京X00000").json()["companions"] == []
        cam = store.list_cameras()[0]
        body = {"areas": [{"polygon": _square(cam.lon, cam.lat), **day}]}
        assert api.post("/search/areas", json=body).status_code == 200
        bad = api.post("/search/areas", json={"areas": [{"polygon": {"type": "Polygon", "coordinates": [[[0, 0]]]}}]})
        assert bad.status_code == 400
