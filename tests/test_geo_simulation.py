"""Clone and co-travel detection against the city simulator's ground truth (with misreads), area/time
queries, the geo router over real HTTP, the CLI commands and the benchmark."""
from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from geo import areas, clones, cotravel
from geo.simulator import FIRST_DAY, LOCAL, build_city
from indexer.sqlite_store import SQLiteStore
from models.records import InputError
from services.api.geo import geo_router
from services.api.localserver import serving
from services.bench.geo import bench_geo
from services.cameras import from_roadnet
from services.cli.geo import add_geo_commands
from services.settings import Settings
from services.system import Sightline

DAYS = 7


@pytest.fixture(scope="module")
def cameras(eval_dir: Path):  # noqa: ANN201
    return from_roadnet(eval_dir / "roadnet" / "shanghai_intersections.geojson")


@pytest.fixture(scope="module")
def city_store(tmp_path_factory, cameras):  # noqa: ANN001, ANN201
    city = build_city(cameras, 300, seed=5, convoys=10, clones=10)
    store = SQLiteStore(tmp_path_factory.mktemp("city") / "db.sqlite")
    store.upsert_cameras(cameras)
    for day in city.days(DAYS, misread_rate=0.03):
        store.add_vehicle_columns(day.columns)
    rows = list(city.sightings(DAYS, misread_rate=0.03))  # the same reads as objects, for the streaming check
    yield city, store, rows
    store.close()


def _precision_recall(found: set, truth: set) -> tuple[float, float]:
    tp = len(found & truth)
    return tp / max(1, len(found)), tp / max(1, len(truth))


def test_simulator_is_deterministic_and_carries_its_ground_truth(cameras) -> None:  # noqa: ANN001
    a, b = build_city(cameras, 60, seed=3, convoys=3, clones=3), build_city(cameras, 60, seed=3, convoys=3, clones=3)
    day_a, day_b = next(a.days(1, misread_rate=0.1)), next(b.days(1, misread_rate=0.1))
    assert day_a.columns.plates == day_b.columns.plates and np.array_equal(day_a.columns.ts_us, day_b.columns.ts_us)
    assert np.all(np.diff(day_a.columns.ts_us) >= 0)  # time order within a day
    assert len(a.truth.convoys) == 3 and len(a.truth.cloned_plates) == 3
    assert sum(v.plate in a.truth.cloned_plates for v in a.vehicles) == 6  # two cars per cloned plate
    misread = day_a.misread
    plates = np.array(day_a.columns.plates, dtype=object)
    truth = np.array([a.vehicles[i].plate for i in day_a.vehicle], dtype=object)
    assert np.array_equal(plates != truth, misread) and 0.05 < misread.mean() < 0.15
    assert np.all(day_a.columns.plate_scores[~misread] >= 0.85)
    assert np.mean(day_a.columns.plate_scores[misread] < 0.8) > 0.9  # most misreads are low-confidence reads
    local = [datetime.fromtimestamp(t / 1e6, LOCAL).hour for t in day_a.columns.ts_us]
    assert min(local) >= 7 and max(local) < 21  # commutes: morning and evening


def test_clone_scan_and_stream_find_the_cloned_plates_despite_misreads(city_store) -> None:  # noqa: ANN001
    city, store, rows = city_store
    assert city.truth.misreads > 100 and city.truth.cloned_plates
    cases = clones.scan(store)
    precision, recall = _precision_recall({c.plate for c in cases}, city.truth.cloned_plates)
    assert precision >= 0.95 and recall >= 0.95
    for case in cases:
        assert case.speed_kmh > 150 and case.distance_m >= 1000 and len(case.vehicles) >= 2
        assert {s.sighting_id for s in case.pair} <= {sid for ids in case.vehicles.values() for sid in ids}
        assert all(c.speed_kmh > 150 for c in case.conflicts)
    # which sighting belongs to which car: the split agrees with the simulator's two vehicles
    by_id = {s.id: s for s in rows}
    case = cases[0]
    twins = [v for v in city.vehicles if v.plate == case.plate]
    for ids in case.vehicles.values():
        homes = {(by_id[i].attributes.vehicle_color, by_id[i].attributes.vehicle_type) for i in ids}
        assert len(homes) == 1 or twins[0].color == twins[1].color
    monitor = clones.CloneMonitor({c.id: c for c in store.list_cameras()})
    streamed = {c.plate for s in rows if (c := monitor.check(s))}
    precision, recall = _precision_recall(streamed, city.truth.cloned_plates)
    assert precision >= 0.95 and recall >= 0.95


def test_chunked_scan_carries_legs_across_chunks(city_store) -> None:  # noqa: ANN001
    _, store, _ = city_store
    settings = clones.CloneSettings()
    whole, small = clones.LastRead(), clones.LastRead()
    flagged_whole = set()
    for chunk in store.plate_read_columns(None, None, settings.min_plate_score, batch=10_000_000):
        flagged_whole |= set(clones.flag_plates(chunk, whole, settings).tolist())
    flagged_small = set()
    for chunk in store.plate_read_columns(None, None, settings.min_plate_score, batch=777):
        flagged_small |= set(clones.flag_plates(chunk, small, settings).tolist())
    assert flagged_whole == flagged_small and flagged_whole


def test_co_travellers_of_each_convoy_target_day_by_day(city_store) -> None:  # noqa: ANN001
    city, store, _ = city_store
    found, truth = set(), set()
    for day in range(DAYS):
        start = FIRST_DAY + timedelta(days=day)
        for target, followers in city.truth.convoys.items():
            companions = cotravel.co_travellers(store, target, start, start + timedelta(days=1))
            assert all(c.cameras >= 3 and c.lag_std_s <= 15 for c in companions)
            found |= {(day, target, c.plate) for c in companions}
            truth |= {(day, target, f) for f in followers}
    precision, recall = _precision_recall(found, truth)
    assert precision >= 0.9 and recall >= 0.9
    target, followers = next(iter(city.truth.convoys.items()))
    best = cotravel.co_travellers(store, target, FIRST_DAY, FIRST_DAY + timedelta(days=DAYS))[0]
    assert best.plate in followers and best.cameras >= 3 and 10 - 15 <= best.mean_lag_s <= 40 + 15
    assert all(r["camera_id"] and r["sighting_id"] and r["target_sighting_id"] for r in best.shared)
    assert cotravel.co_travellers(store, "京X00000") == []
    with pytest.raises(InputError):
        cotravel.co_travellers(store, target, FIRST_DAY, FIRST_DAY - timedelta(days=1))


def test_area_queries_and_their_intersection(city_store) -> None:  # noqa: ANN001
    city, store, _ = city_store
    v = next(v for v in city.vehicles if v.leader is None and v.plate not in city.truth.cloned_plates)
    home, work = city.cameras[v.home], city.cameras[v.work]
    morning = FIRST_DAY + timedelta(hours=6), FIRST_DAY + timedelta(hours=12)
    evening = FIRST_DAY + timedelta(hours=16), FIRST_DAY + timedelta(hours=22)
    at_home = areas.AreaWindow(areas.square(home.lon, home.lat, 100), *morning)
    at_work = areas.AreaWindow(areas.square(work.lon, work.lat, 100), *evening)
    both = areas.seen_in_all(store, [at_home, at_work])
    assert v.plate in both and {s.camera_id for s in both[v.plate]} == {home.id, work.id}
    inside = areas.seen_in_area(store, at_home)
    assert inside and all(s.camera_id == home.id for s in inside)
    assert all(morning[0] <= s.ts < morning[1] for s in inside)
    night = areas.AreaWindow(at_work.polygon, FIRST_DAY, FIRST_DAY + timedelta(hours=5))  # nobody drives at night
    assert v.plate not in areas.seen_in_all(store, [at_home, night])
    three = areas.seen_in_all(store, [at_home, at_work, areas.AreaWindow(at_home.polygon, *evening)])
    assert set(three) <= set(both)
    with pytest.raises(InputError, match="(?i)polygon"):
        areas.seen_in_area(store, areas.AreaWindow({"type": "Point", "coordinates": [121, 31]}))
    with pytest.raises(InputError, match="(?i)polygon"):
        areas.seen_in_area(store, areas.AreaWindow({"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}))
    with pytest.raises(InputError, match="ends before"):
        areas.seen_in_area(store, areas.AreaWindow(at_home.polygon, morning[1], morning[0]))


def _app(system: Sightline) -> FastAPI:
    app = FastAPI()
    app.include_router(geo_router(system.store, system.search, system.plates))

    @app.exception_handler(InputError)
    async def input_error(_: Request, exc: InputError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    return app


def test_geo_router_over_http(settings, city_store) -> None:  # noqa: ANN001
    city, store, rows = city_store
    system = Sightline(settings)
    system.store.upsert_cameras(store.list_cameras())
    system.store.add_sightings(rows[:30_000])
    leader = next(iter(city.truth.convoys))
    day = {"start": "2026-11-02T00:00:00+08:00", "end": "2026-11-03T00:00:00+08:00"}
    try:
        with serving(_app(system)) as url, httpx.Client(base_url=url, timeout=60) as api:
            found = api.get("/clones").json()
            assert found["count"] >= 1 and found["cases"][0]["speed_kmh"] > 150
            assert {c["plate"] for c in found["cases"]} <= city.truth.cloned_plates
            case = found["cases"][0]
            assert len(case["conflicting_sightings"]) >= 2 and "crop" in case["sightings"][0] and case["evidence"]
            inverted = {"start": "2026-11-05T00:00:00Z", "end": "2026-11-01T00:00:00Z"}
            assert api.get("/clones", params=inverted).status_code == 400
            assert api.get("/clones", params={"start": "2026-11-05T00:00:00"}).status_code == 400  # naive time
            companions = api.get(f"/co-travel/{leader}", params=day).json()["companions"]
            assert {c["plate"] for c in companions} <= city.truth.convoys[leader]
            assert api.get("/co-travel/京X00000").json()["companions"] == []
            traj = api.get(f"/trajectories/{leader}", params=day).json()
            assert traj["points"] and traj["geojson"]["type"] == "FeatureCollection"
            assert api.get("/trajectories/京X00000").json()["points"] == []
            assert api.get(f"/trajectories/{leader}", params={**day, "fuzzy": "true"}).status_code == 200
            assert api.get(f"/stays/{leader}").json()["plate"] == leader
            backwards = {"start": day["end"], "end": day["start"]}
            assert api.get(f"/trajectories/{leader}", params=backwards).status_code == 400
            assert api.get("/trajectories/by-sighting/nope").status_code == 404
            cam = store.list_cameras()[0]
            body = {"areas": [{"polygon": areas.square(cam.lon, cam.lat, 2000), **day}]}
            hits = api.post("/search/areas", json=body)
            assert hits.status_code == 200 and hits.json()["count"] >= 0
            point = {"type": "Polygon", "coordinates": [[[0, 0]]]}
            bad = api.post("/search/areas", json={"areas": [{"polygon": point}]})
            assert bad.status_code == 400 and "polygon" in bad.json()["detail"].lower()
            inverted = api.post("/search/areas", json={"areas": [{"polygon": body["areas"][0]["polygon"],
                                                                   "start": day["end"], "end": day["start"]}]})
            assert inverted.status_code == 400
    finally:
        system.close()


def _run(argv: list[str], data: Path, capsys, case: bool = True) -> tuple[int, object]:  # noqa: ANN001
    """A geo command, with the case and reason every search must give (unless `case` is False)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--data")
    parser.add_argument("--models")
    add_geo_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["--data", str(data), *argv, *(("--case", "TEST-1", "--reason", "automated test")
                                                            if case else ())])
    code = args.func(args)
    return code, json.loads(capsys.readouterr().out)


def test_cli_commands_print_json(tmp_path: Path, city_store, capsys) -> None:  # noqa: ANN001
    city, store, rows = city_store
    system = Sightline(Settings(data_dir=tmp_path))
    system.store.upsert_cameras(store.list_cameras())
    system.store.add_sightings(rows[:30_000])
    system.close()
    leader = next(iter(city.truth.convoys))
    code, out = _run(["clones"], tmp_path, capsys)
    assert code == 0 and out["count"] >= 1
    code, out = _run(["trajectory", leader, "--start", "2026-11-02T00:00:00+08:00"], tmp_path, capsys)
    assert code == 0 and out["points"]
    code, out = _run(["trajectory", leader, "--stays"], tmp_path, capsys)
    assert code == 0 and set(out) == {"plate", "stays"}
    code, out = _run(["cotravel", leader, "--start", "2026-11-02T00:00:00+08:00", "--end", "2026-11-03T00:00:00+08:00"],
                     tmp_path, capsys)
    assert code == 0 and {c["plate"] for c in out["companions"]} <= city.truth.convoys[leader]
    with pytest.raises(InputError):
        _run(["clones", "--start", "2026-11-03T00:00:00Z", "--end", "2026-11-02T00:00:00Z"], tmp_path, capsys)
    with pytest.raises(InputError, match="--case"):  # no case, no search
        _run(["trajectory", leader], tmp_path, capsys, case=False)


def test_bench_geo_reports_quality_and_latency(tmp_path: Path) -> None:
    first = bench_geo(20_000, tmp_path)
    for key in ("sightings", "trajectory_p50_ms", "clone_scan_s", "clone_stream_us_per_sighting", "cotravel_p50_ms",
                "area_query_p50_ms", "clone_precision", "clone_recall", "cotravel_precision", "cotravel_recall"):
        assert key in first
    assert first["sightings"] == 20_000 and not first["cached"]
    again = bench_geo(20_000, tmp_path)
    assert again["cached"] and again["clone_precision"] == first["clone_precision"]
