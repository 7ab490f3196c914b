"""`sightline bench web`: first paint of the map with N cameras and an M-point trajectory in headless Chromium.

The store is filled with synthetic cameras around the real Shanghai intersections
and one plate seen M times; the page is opened at `#map?plate=...` and timed from
navigation start to the moment the trajectory is drawn (the app sets
`data-trajectory` after Leaflet has added every layer), plus one animation frame.
"""
from __future__ import annotations

import shutil
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np

from indexer.store import FrameRecord
from models.records import BBox, Camera, Sighting, SightingKind, VehicleAttributes
from services.api.localserver import serving
from services.settings import Settings

PLATE = "沪A12345"


def fill(system, cameras: int, points: int, seed: int = 3) -> None:  # noqa: ANN001 - services.system.Sightline
    rng = np.random.default_rng(seed)
    lons = 121.15 + rng.random(cameras) * 0.3
    lats = 31.10 + rng.random(cameras) * 0.25
    cams = [Camera(f"B{i:05d}", f"bench camera {i}", float(lon), float(lat))
            for i, (lon, lat) in enumerate(zip(lons, lats, strict=True))]
    system.store.upsert_cameras(cams)
    start = datetime(2026, 11, 2, tzinfo=timezone.utc)
    for i in range(points):
        ts = start + timedelta(minutes=5 * i)
        cam = cams[int(rng.integers(cameras))]
        frame = uuid.uuid4().hex
        s = Sighting(uuid.uuid4().hex, cam.id, ts, SightingKind.VEHICLE, BBox(0, 0, 10, 10), 0.9,
                     VehicleAttributes(plate=PLATE, plate_score=0.95), frame_sha256=frame)
        system.store.add_frame(FrameRecord(frame, cam.id, ts, "bench"), [s], [])


def bench_web(settings: Settings, cameras: int, points: int, runs: int = 5) -> dict:
    from playwright.sync_api import sync_playwright

    from services.api.app import create_app

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    app = create_app(settings)
    fill(app.state.system, cameras, points)
    timings = []
    with serving(app) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        for _ in range(runs + 1):  # the first run warms the server and the browser's caches
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{url}/app/#map?plate={PLATE}")
            page.wait_for_selector("body[data-trajectory]", timeout=30_000)
            drawn = page.evaluate("new Promise(r => requestAnimationFrame(() => r(performance.now())))")
            painted = page.evaluate(
                "(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || null")
            timings.append((drawn, painted, int(page.get_attribute("body", "data-trajectory") or 0),
                            int(page.get_attribute("body", "data-cameras") or 0)))
            page.close()
        browser.close()
    measured = timings[1:]
    drawn_ms = [t[0] for t in measured]
    return {"cameras": measured[0][3], "trajectory_points": measured[0][2], "runs": len(measured),
            "map_with_trajectory_p50_ms": round(float(np.median(drawn_ms)), 1),
            "map_with_trajectory_max_ms": round(float(np.max(drawn_ms)), 1),
            "first_contentful_paint_p50_ms": round(float(np.median([t[1] for t in measured if t[1]] or [0])), 1)}
