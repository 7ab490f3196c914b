"""`sightline bench web`: first paint of the map with N cameras and an M-point trajectory in headless Chromium.

The store is filled with synthetic cameras around the real Shanghai intersections
and one plate seen M times; the page is opened at `#map?plate=...` and timed from
navigation start to the moment the trajectory is drawn (the app sets
`data-trajectory` after Leaflet has added every layer), plus one animation frame.

The API needs a signed-in user and, for the trajectory, a case: an investigator is
added to the bench's own data folder and signed in once over HTTP; its session cookie
goes into the browser context, and the case bar's case and reason into each tab's
sessionStorage, so every run times what an investigator's opened link does (the app
asks /auth/me before it loads).
"""
from __future__ import annotations

import json
import shutil
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import numpy as np

from indexer.store import FrameRecord
from models.records import BBox, Camera, Sighting, SightingKind, VehicleAttributes
from services.api.localserver import serving
from services.settings import Settings

PLATE = "沪A12345"
CASE, REASON = "BENCH-1", "web benchmark"


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
    _, token = app.state.system.accounts.add("bench-investigator", "investigator")
    timings = []
    with serving(app) as url, sync_playwright() as p:
        signed = httpx.post(f"{url}/auth/login", json={"token": token}, timeout=30)
        signed.raise_for_status()
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.add_cookies([{"name": name, "value": value, "url": url} for name, value in signed.cookies.items()])
        context.add_init_script(f"sessionStorage.setItem('sightline-case', {json.dumps(CASE)});"
                                f"sessionStorage.setItem('sightline-reason', {json.dumps(REASON)});")
        for _ in range(runs + 1):  # the first run warms the server and the browser's caches
            page = context.new_page()
            page.goto(f"{url}/app/#map?plate={PLATE}")
            page.wait_for_selector("body[data-trajectory]", timeout=30_000)
            drawn = page.evaluate("new Promise(r => requestAnimationFrame(() => r(performance.now())))")
            painted = page.evaluate(
                "(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || null")
            timings.append((drawn, painted, int(page.get_attribute("body", "data-trajectory") or 0),
                            int(page.get_attribute("body", "data-cameras") or 0)))
            page.close()
        context.close()
        browser.close()
    measured = timings[1:]
    drawn_ms = [t[0] for t in measured]
    return {"cameras": measured[0][3], "trajectory_points": measured[0][2], "runs": len(measured),
            "map_with_trajectory_p50_ms": round(float(np.median(drawn_ms)), 1),
            "map_with_trajectory_max_ms": round(float(np.max(drawn_ms)), 1),
            "first_contentful_paint_p50_ms": round(float(np.median([t[1] for t in measured if t[1]] or [0])), 1)}
