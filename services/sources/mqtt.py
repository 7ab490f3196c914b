"""Frigate (and any NVR that speaks its MQTT events) as a source, and Sightline's alerts published back over MQTT.

`FrigateSource` subscribes to `<prefix>/events`. Frigate publishes one message when a tracked object starts, one each
time it finds a better snapshot or the object changes zone, and one when it ends; the first message of an object
that has a snapshot is taken (once per object id, so its alert comes as early as Frigate can show it), its full
snapshot frame is fetched from Frigate's HTTP API (`/api/events/<id>/snapshot.jpg`, uncropped, without Frigate's
box drawn) through the outbound policy's checked client, and it is ingested like an upload: the camera Frigate
named (mapped to a Sightline camera id), at the snapshot's own frame time. So a Frigate install gets plate reading,
attributes, photo search, trajectories and clone detection without any change on its side.

`MqttAlertPublisher` publishes every alert this process raises to `sightline/alerts` (QoS 1) and keeps the latest
alert of each watchlist retained under `sightline/watchlists/<watchlist id>/alert`, for Home Assistant or the NVR.
"""
from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timezone
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt

from models.records import InputError
from services.ingest import Ingestor, PhotoJob
from services.outbound import WEBHOOK_SCHEMES, OutboundPolicy, http_client
from services.sources import FrameSource, SourceStatus

log = logging.getLogger(__name__)
LABELS = frozenset({"car", "motorcycle", "bus", "truck", "bicycle", "person", "face", "license_plate"})
SEEN = 10_000  # object ids remembered, so each object is ingested once
ALERTS_TOPIC = "sightline/alerts"


def broker_address(url: str, policy: OutboundPolicy) -> tuple[str, int]:
    """The broker's address and port from `mqtt://host:port`: the host resolved once and held to the outbound
    policy like any other destination, and the address it checked is the one connected to."""
    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname:
        raise InputError(f"SIGHTLINE_MQTT={url!r}: give mqtt://HOST:PORT")
    port = parts.port or 1883
    return str(policy.addresses(parts.hostname, port, "MQTT broker")[0]), port


def _client(name: str) -> mqtt.Client:
    """A client of its own id: two with one id (two replicas) would keep pushing each other off the broker."""
    return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sightline-{name}-{uuid.uuid4().hex[:8]}",
                       clean_session=True)


class FrigateSource(FrameSource):
    def __init__(self, broker: str, frigate_url: str, ingestor: Ingestor, policy: OutboundPolicy,
                 cameras: Callable[[str], str | None], prefix: str = "frigate", max_bytes: int = 50 << 20):
        """`cameras` maps a Frigate camera name to a Sightline camera id (None: not registered, skipped)."""
        self.host, self.port = broker_address(broker, policy)
        self.frigate = policy.check(frigate_url, WEBHOOK_SCHEMES, "Frigate").url.rstrip("/")
        self.ingestor, self.cameras, self.prefix, self.max_bytes = ingestor, cameras, prefix.strip("/"), max_bytes
        self.http = http_client(policy, timeout_s=10.0)
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.counters = {"events": 0, "ingested": 0, "sightings": 0, "skipped": 0, "failed": 0}
        self.state: str = "stopped"
        self.last_error: str | None = None
        self.lag_s: float | None = None  # from the snapshot's frame time to its sightings stored
        self.lock = threading.Lock()
        self.work: list[dict] = []
        self.wake = threading.Condition(self.lock)
        self.client = _client("frigate")
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_: self._set_state("reconnecting")
        self.client.on_message = self._on_message
        self.worker = threading.Thread(target=self._run, daemon=True, name="frigate-source")

    def start(self) -> None:
        self._set_state("starting")
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        self.worker.start()

    def stop(self) -> None:
        """Stop taking events (those received and not yet stored are dropped: Frigate keeps them)."""
        if self.worker.is_alive():
            self.client.disconnect()
            self.client.loop_stop()
        with self.lock:
            self.state = "stopped"
            self.wake.notify_all()
        if self.worker.is_alive():
            self.worker.join(timeout=15)
        self.http.close()

    def status(self) -> SourceStatus:
        with self.lock:
            return SourceStatus(f"frigate {self.frigate}", "mqtt", self.state, dict(self.counters), self.last_error,
                                self.lag_s)

    def _set_state(self, state: str) -> None:
        with self.lock:
            self.state = state

    def _on_connect(self, client: mqtt.Client, _userdata: object, _flags: object, reason: object,
                    _properties: object = None) -> None:
        client.subscribe(f"{self.prefix}/events", qos=1)
        self._set_state("running")

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        """Runs on the MQTT thread: only picks the event out, the fetching and the models run on the worker."""
        try:
            event = json.loads(message.payload)
            after = event["after"]
            object_id, label = str(after["id"]), str(after.get("label") or "")
        except (ValueError, KeyError, TypeError):
            with self.lock:
                self.counters["failed"] += 1
                self.last_error = f"not a Frigate event on {message.topic}"
            return
        with self.lock:
            self.counters["events"] += 1
            if object_id in self.seen or not after.get("has_snapshot") or label not in LABELS:
                return  # taken already, no snapshot yet (a later message brings it), or a kind Sightline ignores
            self.seen[object_id] = None
            while len(self.seen) > SEEN:
                self.seen.popitem(last=False)
            self.work.append(after)
            self.wake.notify()

    def _run(self) -> None:
        while True:
            with self.lock:
                while not self.work and self.state != "stopped":
                    self.wake.wait()
                if self.state == "stopped":
                    return
                after = self.work.pop(0)
            self._ingest(after)

    def _ingest(self, after: dict) -> None:
        camera = self.cameras(str(after.get("camera") or ""))
        if camera is None:
            with self.lock:
                self.counters["skipped"] += 1
                self.last_error = f"Frigate camera {after.get('camera')!r} is not registered: import it first"
            return
        snapshot = after.get("snapshot") or {}
        when = datetime.fromtimestamp(float(snapshot.get("frame_time") or after["frame_time"]), timezone.utc)
        try:
            data = self._snapshot(str(after["id"]))
            result = self.ingestor.ingest_one(PhotoJob(f"frigate:{after['id']}", data, camera, when))
        except Exception as exc:  # noqa: BLE001 - one bad event is counted and said; the source goes on
            with self.lock:
                self.counters["failed"] += 1
                self.last_error = f"event {after.get('id')}: {exc}"
            return
        with self.lock:
            self.counters["ingested"] += 1
            self.counters["sightings"] += len(result.sightings)
            self.lag_s = round((datetime.now(timezone.utc) - when).total_seconds(), 3)

    def _snapshot(self, object_id: str) -> bytes:
        """The object's best full frame, through the checked client: no redirect is followed, the size is bounded."""
        url = f"{self.frigate}/api/events/{object_id}/snapshot.jpg"
        with self.http.stream("GET", url, params={"bbox": 0, "crop": 0, "timestamp": 0}) as response:
            if response.status_code != 200:
                raise InputError(f"Frigate answered HTTP {response.status_code} for the snapshot")
            data = bytearray()  # grown in place: concatenating bytes copies the whole frame at every chunk
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > self.max_bytes:
                    raise InputError(f"the snapshot exceeds {self.max_bytes} bytes")
        return bytes(data)


class MqttAlertPublisher:
    """Sightline's alerts on MQTT: each on `sightline/alerts`, the latest of each watchlist retained."""

    def __init__(self, broker: str, policy: OutboundPolicy, watchlist_of: Callable[[str], str | None]):
        """`watchlist_of` gives a rule's watchlist id (None for rules without one)."""
        self.host, self.port = broker_address(broker, policy)
        self.watchlist_of = watchlist_of
        self.client = _client("alerts")
        self.started = False

    def start(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        self.started = True

    def stop(self) -> None:
        if self.started:
            self.client.disconnect()
            self.client.loop_stop()
            self.started = False

    def publish(self, payload: dict) -> None:
        """A relay of AlertDelivery: called for every alert this process raises (never blocks on the broker)."""
        body = json.dumps(payload, ensure_ascii=False, default=str)
        self.client.publish(ALERTS_TOPIC, body, qos=1)
        watchlist = self.watchlist_of(str(payload.get("rule_id")))
        if watchlist:
            self.client.publish(f"sightline/watchlists/{watchlist}/alert", body, qos=1, retain=True)
