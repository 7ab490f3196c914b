"""Frames from where cameras already are: Frigate's events over a real MQTT broker (Debian's mosquitto, started on a
free loopback port), its snapshots served by a loopback HTTP server standing for Frigate's API (allowed by the
operator's outbound allow-list, as an operator allows their NVR), and alerts published back over MQTT.

The event payloads follow Frigate's documentation (docs.frigate.video/integrations/mqtt, `frigate/events`). The
models are the fake pipeline: what is under test is the source and the broker, not recognition."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from indexer.store import SightingQuery
from models.records import Camera, InputError
from models.watchlists import Rule
from services.settings import Settings
from services.system import Sightline
from services.watchlists import EntrySpec
from tests.fakes import FakePipeline, jpeg, vehicle

FRAME_TIME = 1764662400.25  # 2025-12-02 08:00:00.25 UTC
PLATE = "京A12345"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real mosquitto of this module's own on a free loopback port."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.skip("mosquitto is not installed (scripts/test.sh installs it)")
    port = _free_port()
    config = tmp_path_factory.mktemp("mosquitto") / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline and process.poll() is None, "mosquitto did not start"
            time.sleep(0.05)
    yield port
    process.terminate()
    process.wait(10)


class FrigateApi:
    """Frigate's HTTP API as far as the source uses it: each event's snapshot, and which were asked for."""

    def __init__(self, snapshots: dict[str, bytes]):
        self.snapshots, self.asked = snapshots, []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                api.asked.append(self.path)
                event = self.path.split("/api/events/", 1)[-1].split("/", 1)[0]
                body = api.snapshots.get(event)
                self.send_response(200 if body else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def frigate_event(kind: str, object_id: str, camera: str = "front_gate", label: str = "car",
                  has_snapshot: bool = True) -> dict:
    """A `frigate/events` message as Frigate's documentation shows it (fields Sightline does not read kept)."""
    after = {"id": object_id, "camera": camera, "frame_time": FRAME_TIME + 1, "label": label, "sub_label": None,
             "top_score": 0.958984375, "false_positive": False, "start_time": FRAME_TIME - 2, "end_time": None,
             "score": 0.7890625, "box": [424, 500, 536, 712], "area": 23744, "ratio": 2.113207,
             "region": [264, 450, 667, 853], "current_zones": ["driveway"], "entered_zones": ["driveway"],
             "thumbnail": None, "has_snapshot": has_snapshot, "has_clip": True, "stationary": False,
             "snapshot": {"frame_time": FRAME_TIME, "box": [415, 489, 528, 700], "area": 12728,
                          "region": [260, 446, 660, 846], "score": 0.77546, "attributes": []}}
    return {"type": kind, "before": {**after, "has_snapshot": False}, "after": after}


def _listener(port: int, topic: str, got: list[tuple[str, dict, bool]]) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{topic.replace('/', '-')}")
    client.on_message = lambda _c, _u, m: got.append((m.topic, json.loads(m.payload), bool(m.retain)))
    client.connect("127.0.0.1", port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    return client


def _wait(condition, what: str, seconds: float = 20) -> None:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def test_a_frigate_event_becomes_a_sighting_and_its_alert_goes_back_over_mqtt(broker: int, tmp_path: Path) -> None:
    snapshot = jpeg(7)
    frigate = FrigateApi({"1764662398.1-abcdef": snapshot})
    pipeline = FakePipeline()
    pipeline.script(snapshot, [vehicle(plate=PLATE, plate_score=0.95, vehicle_color="white")])
    settings = Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "no-models", roads_geojson=None,
                        mqtt_url=f"mqtt://127.0.0.1:{broker}", frigate_url=frigate.url,
                        outbound_allow=("127.0.0.1",))  # the operator allows their NVR and broker
    alerts: list[tuple[str, dict, bool]] = []
    listener = _listener(broker, "sightline/#", alerts)
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-frigate")
    publisher.connect("127.0.0.1", broker)
    publisher.loop_start()
    try:
        with Sightline(settings, pipeline) as system:
            system.store.upsert_cameras([Camera("front_gate", "Front gate", 121.29, 31.21)])
            watchlist = system.watchlists.create("stolen", "plate", created_by="ops")
            system.watchlists.add_entries(watchlist.id, [EntrySpec("stolen 2025-12-01", "ops", PLATE, "exact")])
            system.watchlists.put_rule(Rule("rule-stolen", "stolen cars", watchlist_id=watchlist.id))
            system.start()
            source = system.sources[0]
            _wait(lambda: source.status().state == "running", "the source to subscribe")
            for message in (frigate_event("new", "1764662398.1-abcdef", has_snapshot=False),  # no snapshot yet
                            frigate_event("update", "1764662398.1-abcdef"),  # taken: the first with a snapshot
                            frigate_event("end", "1764662398.1-abcdef"),  # the same object again: not taken twice
                            frigate_event("new", "1764662399.2-person", label="dog"),  # a kind Sightline ignores
                            frigate_event("new", "1764662399.3-ghost", camera="back_yard")):  # not registered
                publisher.publish("frigate/events", json.dumps(message), qos=1).wait_for_publish(5)
            _wait(lambda: source.status().counters["events"] == 5 and len(alerts) >= 2, "the event and its alert")
            time.sleep(0.5)  # anything taken twice would be stored by now

            (sighting,) = system.store.query(SightingQuery(plate=PLATE, limit=10))
            assert sighting.camera_id == "front_gate" and sighting.ts.timestamp() == FRAME_TIME  # the snapshot's time
            assert system.store.count() == 1
            assert frigate.asked == ["/api/events/1764662398.1-abcdef/snapshot.jpg?bbox=0&crop=0&timestamp=0"]
            status = source.status()
            assert status.counters == {"events": 5, "ingested": 1, "sightings": 1, "skipped": 1, "failed": 0}
            assert "back_yard" in (status.last_error or "") and status.lag_s is not None

            by_topic = {topic: (body, retained) for topic, body, retained in alerts}
            body, _ = by_topic["sightline/alerts"]
            assert (body["target"], body["sighting_id"], body["camera_id"]) == (PLATE, sighting.id, "front_gate")
            state, _ = by_topic[f"sightline/watchlists/{watchlist.id}/alert"]
            assert state["id"] == body["id"]
        late: list[tuple[str, dict, bool]] = []  # a subscriber arriving later still gets each watchlist's state
        _listener(broker, f"sightline/watchlists/{watchlist.id}/alert", late)
        _wait(lambda: bool(late), "the retained state")
        assert late[0][2] and late[0][1]["target"] == PLATE
    finally:
        listener.loop_stop()
        publisher.loop_stop()
        frigate.close()


def test_the_nvr_and_the_broker_pass_the_outbound_policy(broker: int, tmp_path: Path) -> None:
    """Frigate's API is fetched from, the broker connected to: neither may be an address the operator did not allow."""
    base = Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "no-models", roads_geojson=None)
    for more, refused in (({"mqtt_url": f"mqtt://127.0.0.1:{broker}"}, "MQTT broker"),
                          ({"mqtt_url": "mqtt://10.0.0.5:1883", "frigate_url": "http://127.0.0.1:5000",
                            "outbound_allow": ("10.0.0.5",)}, "Frigate"),
                          ({"mqtt_url": "http://127.0.0.1:1883", "outbound_allow": ("127.0.0.1",)}, "mqtt://")):
        with pytest.raises(InputError, match=refused):
            Sightline(Settings(**{**base.__dict__, **more}))  # type: ignore[arg-type]


def test_the_api_lists_its_sources_with_their_state_and_counters(broker: int, tmp_path: Path) -> None:
    from services.api.app import create_app
    from services.api.localserver import serving
    from tests.conftest import client

    frigate = FrigateApi({})
    app = create_app(Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "no-models", roads_geojson=None,
                              mqtt_url=f"mqtt://127.0.0.1:{broker}", frigate_url=frigate.url,
                              outbound_allow=("127.0.0.1",)), FakePipeline())
    try:
        with serving(app) as url, client(app, url, "supervisor", case=False) as chief, \
                client(app, url, "investigator", case=False) as officer:
            _wait(lambda: chief.get("/sources").json()[0]["state"] == "running", "the source to run")
            (listed,) = chief.get("/sources").json()
            assert listed["kind"] == "mqtt" and listed["name"] == f"frigate {frigate.url}"
            assert listed["counters"] == {"events": 0, "ingested": 0, "sightings": 0, "skipped": 0, "failed": 0}
            assert officer.get("/sources").status_code == 403  # a supervisor's view, like streams
            scraped = chief.get("/metrics").text  # and on /metrics, by counts only
            assert 'sightline_source_up{source="0",kind="mqtt"} 1' in scraped
            assert 'sightline_source_items_total{source="0",kind="mqtt",counter="events"} 0' in scraped
    finally:
        frigate.close()
