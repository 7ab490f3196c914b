"""The live alert stream (Server-Sent Events) as the browser sees it, over real HTTP with the fake pipeline: alerts
raised by another process on the same data folder reach it; a user disabled, or whose token is rotated, is cut
off."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from services.api import alerts as alerts_api
from services.api.security import SESSION_COOKIE
from services.delivery import AlertWatcher
from services.ingest import PhotoJob
from services.settings import Settings
from services.system import Sightline
from tests.conftest import client
from tests.fakes import FakePipeline, jpeg, vehicle


@pytest.fixture
def fresh(fake_served: tuple[FastAPI, str]) -> tuple[FastAPI, str]:
    return fake_served


def _login(url: str, token: str) -> httpx.Response:
    return httpx.post(url + "/auth/login", json={"token": token}, timeout=30)


def _listen(url: str, headers: dict[str, str], cookies: dict[str, str] | None = None
            ) -> tuple[list[str], threading.Thread, threading.Event]:
    """Read the alert stream's event names and data lines in the background until it ends."""
    lines: list[str] = []
    opened = threading.Event()

    def read() -> None:
        with httpx.Client(base_url=url, timeout=30, headers=headers, cookies=cookies) as client, \
                client.stream("GET", "/alerts/stream") as response:
            for line in response.iter_lines():
                opened.set()
                if line.startswith(("event:", "data:")):
                    lines.append(line)
        opened.set()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return lines, thread, opened


def test_a_live_alert_stream_ends_when_its_user_is_disabled_or_rotated(fresh: tuple[FastAPI, str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alerts_api, "RECHECK_S", 0.2)
    app, url = fresh
    accounts, broadcaster = app.state.system.accounts, app.state.system.delivery.broadcaster
    _, token = accounts.add("watcher", "viewer")
    _, other = accounts.add("desk", "viewer")
    by_token, token_reader, opened = _listen(url, {"Authorization": f"Bearer {token}"})
    session = _login(url, other).cookies[SESSION_COOKIE]
    by_session, session_reader, session_opened = _listen(url, {}, {SESSION_COOKIE: session})
    assert opened.wait(10) and session_opened.wait(10)  # each subscribed before its first line
    broadcaster.publish({"id": "before"})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (by_token and by_session):
        time.sleep(0.05)
    assert by_token == by_session == ["event: alert", 'data: {"id": "before"}']

    accounts.disable("watcher")
    accounts.rotate("desk")  # the session opened with the old token ends with it
    broadcaster.publish({"id": "after"})
    token_reader.join(10)
    session_reader.join(10)
    assert not token_reader.is_alive() and not session_reader.is_alive()  # the server ended both streams
    for lines in (by_token, by_session):
        assert lines[2:] == ["event: signed-out", "data: {}"]  # and "after" never reached them


def test_an_alert_raised_by_another_process_on_the_folder_reaches_the_stream(
        fresh: tuple[FastAPI, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alerts_api, "RECHECK_S", 0.2)
    app, url = fresh
    with client(app, url) as admin:
        assert admin.post("/cameras", json=[{"id": "gate-1", "name": "Gate 1", "lon": 121.29, "lat": 31.21}]
                          ).status_code == 201
        wl = admin.post("/watchlists", json={"name": "stolen", "kind": "plate", "created_by": "ops"}).json()
        assert admin.post(f"/watchlists/{wl['id']}/entries", json={"value": "京A12345", "reason": "stolen",
                                                                    "created_by": "ops"}).status_code == 201
        assert admin.post("/rules", json={"name": "stolen cars", "watchlist_id": wl["id"]}).status_code == 201
        lines, reader, opened = _listen(url, dict(admin.headers))
        assert opened.wait(10)
    other = FakePipeline()  # a CLI ingest beside the server: its own process, its own alert engine
    other.script(jpeg(7), [vehicle(plate="京A12345", plate_score=0.95)])
    settings = Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "no-models", roads_geojson=None)
    with Sightline(settings, other) as cli:
        done = cli.ingestor.ingest_one(PhotoJob("7.jpg", jpeg(7), "gate-1", datetime.now(timezone.utc)))
        assert len(cli.alert_store.alerts()) == 1
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(lines) < 2:
        time.sleep(0.05)
    assert lines[0] == "event: alert" and done.sightings[0].id in lines[1]  # shown live, once
    time.sleep(2 * AlertWatcher.POLL_S + 0.5)  # the watcher looks at the store again: not shown a second time
    assert len(lines) == 2
    app.state.system.accounts.rotate("test-admin")  # ends the stream (and the test's reader)
    reader.join(10)
    assert lines[2:] == ["event: signed-out", "data: {}"]
