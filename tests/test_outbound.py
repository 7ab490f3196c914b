"""Outbound requests are the operator's choice: webhook and stream URLs pass one policy (services/outbound.py).

Over real HTTP with the fake pipeline: refused URL classes (loopback, private, metadata, local files, other
schemes, CR/LF, credentials) are a 400 that stores nothing; an allow-listed receiver gets signed bodies; a
redirect to a refused address is not followed; a broken or failing receiver never stops the others.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from indexer.alert_store import SQLiteAlertStore
from models.records import InputError
from services.api.app import create_app
from services.api.localserver import serving
from services.delivery import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookDispatcher, sign
from services.outbound import STREAM_SCHEMES, OutboundPolicy, system_resolver
from services.settings import Settings
from services.system import Sightline
from tests.fakes import FakePipeline, jpeg, vehicle

CAMERA = {"id": "gate-1", "name": "Gate 1", "lon": 121.29, "lat": 31.21}
MORNING = "2026-11-02T08:00:00+08:00"
PLATE = "京A12345"
FAKE_DNS = {"loopback.example": ["127.0.0.1"], "sneaky.example": ["8.8.8.8", "127.0.0.1"],
            "public.example": ["8.8.8.8"], "meta.example": ["169.254.169.254"]}


def fake_resolver(host: str, port: int) -> list[str]:
    """Test names resolve as FAKE_DNS says (no network needed); anything else as the system resolves it."""
    return FAKE_DNS[host] if host in FAKE_DNS else system_resolver(host, port)


class Receiver:
    """A webhook receiver: records each POST (path, headers, raw body) and answers `status` (+ Location)."""

    def __init__(self, host: str = "127.0.0.1", status: int = 204, location: str | None = None):
        self.got: list[tuple[str, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.got.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def receivers(*specs: dict) -> Iterator[list[Receiver]]:
    started = [Receiver(**spec) for spec in specs]
    try:
        yield started
    finally:
        for r in started:
            r.close()


@contextmanager
def running(tmp_path: Path, model_dir: Path, allow: tuple[str, ...] = ()) -> Iterator[tuple[httpx.Client, Sightline,
                                                                                             FakePipeline]]:
    """The API on the fake pipeline, an admin's client, with `allow` as the operator's outbound allow-list."""
    fake = FakePipeline()
    settings = Settings(data_dir=tmp_path / "data", model_dir=model_dir, roads_geojson=None, outbound_allow=allow)
    app = create_app(settings, fake)
    system: Sightline = app.state.system
    system.delivery.webhooks.base = 0.05  # fast back-off: 0.05, 0.1, 0.2 s ...
    system.outbound.resolver = fake_resolver
    _, token = system.accounts.add("ops", "admin")
    with serving(app) as url, httpx.Client(base_url=url, timeout=30,
                                           headers={"Authorization": f"Bearer {token}"}) as api:
        assert api.post("/cameras", json=CAMERA).status_code in (200, 201)
        yield api, system, fake


def watch_plate(api: httpx.Client) -> None:
    wl = api.post("/watchlists", json={"name": "stolen", "kind": "plate", "created_by": "ops"})
    assert wl.status_code == 201, wl.text
    entry = api.post(f"/watchlists/{wl.json()['id']}/entries",
                     json={"value": PLATE, "reason": "reported stolen", "created_by": "ops"})
    assert entry.status_code == 201, entry.text
    rule = api.post("/rules", json={"name": "stolen cars", "watchlist_id": wl.json()["id"], "cooldown_s": 0})
    assert rule.status_code == 201, rule.text


def raise_alert(api: httpx.Client, fake: FakePipeline, seed: int) -> str:
    """Post a frame the fake pipeline reads as the watched plate; the id of the alert it raised."""
    photo = jpeg(seed)
    fake.script(photo, [vehicle(plate=PLATE, plate_score=0.9)])
    r = api.post("/frames", files={"file": ("car.jpg", photo, "image/jpeg")},
                 data={"camera_id": "gate-1", "captured_at": MORNING})
    assert r.status_code == 201, r.text
    (sighting,) = r.json()["sightings"]
    (alert,) = [a for a in api.get("/alerts").json() if a["sighting_id"] == sighting["id"]]
    return alert["id"]


def wait_for(condition: Callable[[], object], seconds: float = 10.0) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def verified(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """What a receiver does: recompute the HMAC over the raw body and compare in constant time."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers.get(SIGNATURE_HEADER.lower(), ""))


# -- refused URLs ------------------------------------------------------------------------------------

REFUSED_WEBHOOKS = {
    "http://127.0.0.1:9/hook": "loopback",
    "http://localhost:9/hook": "loopback",
    "http://[::1]:9/hook": "loopback",
    "http://127.1/hook": "loopback",  # the same address written short
    "http://10.1.2.3/hook": "private",
    "http://192.168.1.20:8080/hook": "private",
    "http://169.254.169.254/latest/meta-data/": "cloud metadata",
    "http://[fd00:ec2::254]/latest/": "cloud metadata",
    "http://loopback.example/hook": "resolves to 127.0.0.1",
    "http://sneaky.example/hook": "resolves to 127.0.0.1",  # one public address does not excuse the other
    "http://meta.example/hook": "cloud metadata",
    "file:///etc/passwd": "CLI",
    "/etc/passwd": "CLI",
    "ftp://8.8.8.8/hook": "ftp",
    "gopher://8.8.8.8/_x": "gopher",
    "http://8.8.8.8/hook\r\nX-Injected: 1": "control characters",
    "http://8.8.8.8/ho ok": "whitespace",
    "http://ops:hunter2@8.8.8.8/hook": "credentials",
    "http:8.8.8.8/hook": "no host",
    "http://8.8.8.8:99999/hook": "port",
    "http://[::1/hook": "cannot be parsed",
}


def test_refused_webhook_and_stream_urls_are_a_400_that_stores_nothing(tmp_path: Path, model_dir: Path) -> None:
    with running(tmp_path, model_dir) as (api, system, _):
        for url, why in REFUSED_WEBHOOKS.items():
            r = api.post("/webhooks", json={"url": url})
            assert r.status_code == 400, (url, r.text)
            detail = r.json()["detail"]
            assert why in detail, (url, detail)
            assert "hunter2" not in r.text and "X-Injected" not in r.text, url  # nothing of the URL echoed
        listed = api.get("/webhooks")
        assert listed.status_code == 200 and listed.json()["webhooks"] == {}
        assert system.alert_store.webhooks() == {}

        # a public address needs no allow-list entry (registering does not connect to it)
        public = api.post("/webhooks", json={"url": "https://public.example/hook"})
        assert public.status_code == 201, public.text
        assert api.delete(f"/webhooks/{public.json()['id']}").status_code == 204

        # streams: only rtsp/rtsps/http/https through the same policy; local files go through the CLI
        for url, why in {"/etc/passwd": "CLI", "file:///etc/passwd": "CLI", "./clip.mp4": "CLI",
                         "C:/videos/clip.mp4": "CLI", "ftp://8.8.8.8/clip.mp4": "ftp",
                         "http://127.0.0.1:1/stream.mjpg": "loopback", "rtsp://[::1]:554/live": "loopback",
                         "rtsp://10.0.0.7/live": "private", "http://169.254.169.254/": "cloud metadata",
                         "rtsp://admin:pw@8.8.8.8/live": "credentials", "rtsp://8.8.8.8/a\r\nb": "control"}.items():
            r = api.post("/streams", json={"url": url, "camera_id": "gate-1"})
            assert r.status_code == 400 and why in r.json()["detail"], (url, r.text)
        assert api.get("/streams").json() == []


def test_the_allow_list_names_hosts_addresses_and_networks() -> None:
    policy = OutboundPolicy(["127.0.0.1", "10.0.0.0/8", "Intranet.Example.", "169.254.0.0/16"], fake_resolver)
    assert policy.check("http://127.0.0.1:8000/x").addresses[0].is_loopback
    assert policy.check("https://10.9.8.7/x").url == "https://10.9.8.7/x"
    assert policy.check("rtsp://10.1.1.1/live", STREAM_SCHEMES, "stream").port == 554
    assert policy.check("http://169.254.10.10/x")  # link-local, inside an allowed network
    with pytest.raises(InputError, match="cloud metadata"):  # a metadata address must be named on its own
        policy.check("http://169.254.169.254/latest/")
    assert OutboundPolicy(["169.254.169.254"]).check("http://169.254.169.254/latest/")
    with pytest.raises(InputError, match="private"):
        policy.check("http://192.168.0.1/")
    with pytest.raises(InputError, match="loopback"):
        policy.check("http://[::ffff:127.0.0.2]/")  # IPv4-mapped: judged by the IPv4 address inside
    by_name = OutboundPolicy(["loopback.example"], fake_resolver)  # a host name the operator named
    assert by_name.check("http://loopback.example/x").host == "loopback.example"
    with pytest.raises(InputError, match="loopback"):
        by_name.check("http://127.0.0.1/x")
    with pytest.raises(InputError, match="rtsp"):
        policy.check("rtsp://10.1.1.1/live")  # webhooks are http(s) only
    for bad in ("http://x", "*.example.com", "10.0.0.0/33", "a b"):
        with pytest.raises(InputError, match="SIGHTLINE_OUTBOUND_ALLOW"):
            OutboundPolicy([bad])
    env = Settings.from_env({"SIGHTLINE_OUTBOUND_ALLOW": "127.0.0.1, 10.0.0.0/8,,cams.local"})
    assert env.outbound_allow == ("127.0.0.1", "10.0.0.0/8", "cams.local")


# -- delivery ------------------------------------------------------------------------------------------

def test_refused_without_the_allow_list_and_signed_deliveries_with_it(tmp_path: Path, model_dir: Path) -> None:
    with receivers({}) as (receiver,):
        with running(tmp_path / "closed", model_dir) as (api, _, _):
            r = api.post("/webhooks", json={"url": receiver.url + "/hook"})
            assert r.status_code == 400 and "SIGHTLINE_OUTBOUND_ALLOW" in r.json()["detail"]

        with running(tmp_path / "open", model_dir, allow=("127.0.0.1",)) as (api, system, fake):
            created = api.post("/webhooks", json={"url": receiver.url + "/hook"})
            assert created.status_code == 201, created.text
            hook = created.json()
            assert hook["url"] == receiver.url + "/hook" and len(hook["secret"]) >= 32
            assert api.post("/webhooks", json={"url": receiver.url + "/hook"}).status_code == 409
            listed = api.get("/webhooks")
            assert listed.json()["webhooks"] == {hook["id"]: receiver.url + "/hook"}
            assert hook["secret"] not in listed.text and "secret" not in listed.text

            watch_plate(api)
            alert_id = raise_alert(api, fake, 1)
            assert wait_for(lambda: receiver.got)
            path, headers, body = receiver.got[0]
            assert path == "/hook" and json.loads(body)["id"] == alert_id
            assert headers["idempotency-key"] == alert_id and headers["content-type"] == "application/json"
            assert verified(hook["secret"], headers, body)
            assert headers[SIGNATURE_HEADER.lower()] == sign(hook["secret"], body)
            assert abs(int(headers[TIMESTAMP_HEADER.lower()]) - time.time()) < 60
            assert not verified(hook["secret"], headers, body + b" ")  # a changed body no longer verifies
            assert not verified("another secret", headers, body)
            assert wait_for(lambda: system.alert_store.deliveries("delivered"))

            assert api.delete(f"/webhooks/{hook['id']}").status_code == 204
            assert api.delete(f"/webhooks/{hook['id']}").status_code == 404
            assert api.get("/webhooks").json()["webhooks"] == {}
            raise_alert(api, fake, 2)  # raised after the receiver was removed: not sent to it
            time.sleep(0.5)
            assert len(receiver.got) == 1 and system.alert_store.deliveries() == []


def test_a_redirect_to_a_refused_address_is_not_followed(tmp_path: Path, model_dir: Path) -> None:
    with receivers({}, {"host": "127.0.0.2"}) as (good, hidden):  # 127.0.0.2: loopback, not on the allow-list
        with receivers({"status": 302, "location": hidden.url + "/internal"},
                       {"status": 307, "location": good.url + "/moved"}) as (evil, moving):
            with running(tmp_path, model_dir, allow=("127.0.0.1",)) as (api, system, fake):
                refused = api.post("/webhooks", json={"url": hidden.url + "/internal"})
                assert refused.status_code == 400 and "loopback" in refused.json()["detail"]
                redirecting = api.post("/webhooks", json={"url": evil.url + "/hook"}).json()
                moved = api.post("/webhooks", json={"url": moving.url + "/hook"}).json()
                watch_plate(api)
                alert_id = raise_alert(api, fake, 3)

                assert wait_for(lambda: good.got)  # a redirect to an allowed address is followed
                path, headers, body = good.got[0]
                assert path == "/moved" and json.loads(body)["id"] == alert_id
                assert verified(moved["secret"], headers, body)
                assert wait_for(lambda: system.alert_store.deliveries("dead"))
                time.sleep(0.3)
                assert len(evil.got) == 1 and hidden.got == []  # asked once, the redirect not followed
                (dead,) = api.get("/webhooks").json()["dead_letters"]
                assert dead["webhook_id"] == redirecting["id"] and dead["attempts"] == 1
                assert "redirect not followed" in dead["last_error"] and "loopback" in dead["last_error"]


def test_a_broken_or_failing_receiver_never_stops_delivery_to_the_others(tmp_path: Path, model_dir: Path) -> None:
    with receivers({}, {"status": 500}) as (good, failing):
        with running(tmp_path, model_dir, allow=("127.0.0.1",)) as (api, system, fake):
            broken = {"crlf": good.url + "/x\r\nX-Injected: 1", "unparseable": "http://[::1/x",
                      "file": "file:///etc/passwd", "creds": f"http://ops:hunter2@{good.url[7:]}/creds"}
            with sqlite3.connect(tmp_path / "data" / "alerts.db") as db:  # stored by an older version
                db.executemany("INSERT INTO webhooks (id, url, secret) VALUES (?, ?, 's')", broken.items())
            assert api.post("/webhooks", json={"url": failing.url + "/hook"}).status_code == 201
            hook = api.post("/webhooks", json={"url": good.url + "/hook"}).json()
            listed = api.get("/webhooks")
            assert "hunter2" not in listed.text and "\r" not in json.dumps(listed.json()["webhooks"])
            assert listed.json()["webhooks"]["creds"] == good.url + "/creds"

            watch_plate(api)
            sent = {raise_alert(api, fake, seed) for seed in (4, 5, 6)}
            assert wait_for(lambda: {json.loads(b)["id"] for _, _, b in good.got} == sent)
            assert all(path == "/hook" and verified(hook["secret"], h, b) for path, h, b in good.got)
            assert system.delivery.webhooks.is_alive()
            assert wait_for(lambda: len(system.alert_store.deliveries("dead")) == 3 * len(broken))
            dead = system.alert_store.deliveries("dead")
            assert {d["webhook_id"] for d in dead} == set(broken)
            assert all(d["last_error"] and "\n" not in d["last_error"] and "hunter2" not in d["last_error"]
                       for d in dead)
            assert failing.got  # tried, and retried later: pending with back-off, not dead at once
            pending = system.alert_store.deliveries("pending")
            assert pending and all("500" in (d["last_error"] or "") for d in pending if d["attempts"])

            later = raise_alert(api, fake, 7)  # the thread is still delivering
            assert wait_for(lambda: later in {json.loads(b)["id"] for _, _, b in good.got})


def test_connections_go_only_to_checked_addresses(tmp_path: Path) -> None:
    """DNS rebinding: a name that passes the check but resolves to loopback when connecting is refused there."""
    answers: list[list[str]] = [["8.8.8.8"], ["127.0.0.1"]]

    def rebinding(host: str, port: int) -> list[str]:
        return answers.pop(0) if host == "rebind.example" and answers else fake_resolver(host, port)

    with receivers({}) as (receiver,):
        store = SQLiteAlertStore(tmp_path / "alerts.db")
        dispatcher = WebhookDispatcher(store, OutboundPolicy((), rebinding), timeout_s=2)
        port = receiver.url.rsplit(":", 1)[1]
        with pytest.raises(InputError, match="loopback"):
            dispatcher.post(f"http://rebind.example:{port}/hook", b"{}", "s", "k")
        assert receiver.got == [] and answers == []

        allowed = WebhookDispatcher(store, OutboundPolicy(["127.0.0.1"], fake_resolver), timeout_s=2)
        allowed.post(f"http://loopback.example:{port}/hook", b"{}", "s", "k")  # pinned to 127.0.0.1, Host kept
        assert receiver.got[0][1]["host"] == f"loopback.example:{port}"
        dispatcher.client.close()
        allowed.client.close()
        store.close()


def test_webhooks_from_an_older_database_get_a_secret(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE webhooks (id TEXT PRIMARY KEY, url TEXT NOT NULL UNIQUE)")
        db.execute("INSERT INTO webhooks VALUES ('old', 'http://8.8.8.8/hook')")
    store = SQLiteAlertStore(path)
    secret = store.conn.execute("SELECT secret FROM webhooks WHERE id='old'").fetchone()[0]
    assert len(secret) >= 32 and store.webhooks() == {"old": "http://8.8.8.8/hook"}
    store.close()
    reopened = SQLiteAlertStore(path)  # migrating twice changes nothing
    assert reopened.conn.execute("SELECT secret FROM webhooks").fetchone()[0] == secret
    reopened.close()
