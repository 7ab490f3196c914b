"""Alert delivery: live subscribers (Server-Sent Events) and webhooks with retries and dead letters.

Delivery never blocks ingestion: an alert is stored with its pending webhook deliveries in
one transaction (by the rule engine), pushed to live subscribers, and sent by a worker thread
that retries with exponential back-off and parks what keeps failing as dead letters.

Each webhook body is signed: `X-Sightline-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed with
the webhook's secret>`, beside `X-Sightline-Timestamp` (Unix seconds) and `Idempotency-Key` (the alert id).
A receiver recomputes the HMAC over the bytes it received and compares in constant time. Every URL, the
registered one and each redirect, passes the outbound policy (services/outbound.py) before it is sent to.

Several processes (API replicas) may share one alert store, each with its own sender thread. Each delivery is
sent once, by one of them: a sender first claims it (`AlertStore.claim_delivery`: still pending, still due →
due again only after a lease, done atomically by the store — a conditional UPDATE in SQLite, a conditional
scripted update in Elasticsearch), so exactly one process wins; the others skip it. The lease outlives any
attempt (its timeouts and redirects); should the winner die mid-attempt, the delivery is due again when the
lease ends (at least once; the Idempotency-Key lets a receiver drop a repeat).
Alerts raised in other processes arrive through `relayed` (queue workers: services/queue.py AlertRelay), and
from the alert store itself (`AlertWatcher`: a CLI ingest into the served data folder, a replica without a
queue), each shown once.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import fields
from datetime import datetime, timedelta, timezone

import httpx

from indexer.alert_store import AlertStore
from models.records import InputError
from models.watchlists import Alert
from services.outbound import WEBHOOK_SCHEMES, OutboundPolicy, Unresolvable, http_client

log = logging.getLogger(__name__)
SIGNATURE_HEADER, TIMESTAMP_HEADER = "X-Sightline-Signature", "X-Sightline-Timestamp"
REDIRECTS = (301, 302, 303, 307, 308)


class AlertBroadcaster:
    """Live subscribers (SSE clients): each an asyncio queue fed from the ingest threads."""

    def __init__(self) -> None:
        self._subscribers: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = []
        self._lock = threading.Lock()

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(maxsize=1000)
        with self._lock:
            self._subscribers.append((asyncio.get_running_loop(), queue))
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        with self._lock:
            self._subscribers = [(lp, q) for lp, q in self._subscribers if q is not queue]

    def publish(self, payload: dict) -> None:
        with self._lock:
            targets = list(self._subscribers)
        for loop, queue in targets:
            try:
                loop.call_soon_threadsafe(_offer, queue, payload)
            except RuntimeError:  # that subscriber's loop has closed
                self.unsubscribe(queue)


def _offer(queue: asyncio.Queue, payload: dict) -> None:
    if not queue.full():  # a subscriber that stopped reading misses live items; the store keeps them all
        queue.put_nowait(payload)


def alert_json(alert: Alert) -> dict:
    """The alert as JSON values. Copied one level deep, not by `asdict` (a deep copy: 50 µs an alert, 2.5 ms
    before the last of the 50 alerts one sighting may raise reaches the live stream)."""
    out = {f.name: getattr(alert, f.name) for f in fields(alert)}
    out["details"] = dict(alert.details)
    for key in ("ts", "raised_at", "acked_at"):
        out[key] = out[key].isoformat() if out[key] else None
    return out


def sign(secret: str, body: bytes) -> str:
    """The X-Sightline-Signature value of a body: sha256=<hex HMAC-SHA256 keyed with the webhook's secret>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Refused(Exception):
    """A delivery that cannot succeed by retrying: the URL (or where it redirects) is refused by the policy."""


class WebhookDispatcher(threading.Thread):
    """Sends pending deliveries; a failure is retried after base·2^attempts seconds, dead after max_attempts.

    A receiver that fails, redirects somewhere refused, or whose stored URL cannot even be parsed only fails
    its own delivery: every error is caught and recorded on that delivery, and the thread goes on.
    """

    def __init__(self, store: AlertStore, policy: OutboundPolicy | None = None, base_delay_s: float = 1.0,
                 max_delay_s: float = 300.0, max_attempts: int = 12, timeout_s: float = 5.0, max_redirects: int = 3):
        super().__init__(daemon=True, name="webhooks")
        self.store, self.base, self.max_delay, self.max_attempts = store, base_delay_s, max_delay_s, max_attempts
        self.policy = policy or OutboundPolicy()
        self.max_redirects = max_redirects
        self.client = http_client(self.policy, timeout_s)
        self.lease_s = timeout_s * (max_redirects + 1) * 2 + 30  # longer than any one attempt can take
        self.wake, self.stopping = threading.Event(), threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.deliver_due()
            except Exception:  # noqa: BLE001 - e.g. the store is busy: try again on the next round
                log.exception("webhook delivery round failed")
            self.wake.wait(0.25)
            self.wake.clear()

    def deliver_due(self) -> None:
        """One round: every due delivery, each on its own (a failing receiver is skipped for the rest of the round)."""
        failing: set[str] = set()
        for alert_id, webhook_id, url, secret, attempts in self.store.due_deliveries():
            if self.stopping.is_set():
                return
            if webhook_id in failing:
                continue
            try:
                if not self._send(alert_id, webhook_id, url, secret, attempts):
                    failing.add(webhook_id)
            except Exception:  # noqa: BLE001 - recording the outcome failed; the delivery stays due
                log.exception("webhook delivery %s -> %s failed", alert_id, webhook_id)
                failing.add(webhook_id)

    def claim(self, alert_id: str, webhook_id: str) -> bool:
        """Take one due delivery for this sender until the lease ends; False when another process took it first."""
        return self.store.claim_delivery(alert_id, webhook_id, self.lease_s)

    def _send(self, alert_id: str, webhook_id: str, url: str, secret: str, attempts: int) -> bool:
        """Try one delivery and record how it went; True when it was delivered (or has nothing left to send)."""
        if not self.claim(alert_id, webhook_id):
            return True  # another process is sending it
        alert = self.store.get_alert(alert_id)
        if alert is None:
            return True
        permanent = False
        try:
            self.post(url, json.dumps(alert_json(alert), ensure_ascii=False).encode(), secret, alert_id)
            self.store.delivery_done(alert_id, webhook_id)
            return True
        except Refused as exc:
            error, permanent = str(exc), True
        except Unresolvable as exc:  # DNS may answer later
            error = str(exc)
        except InputError as exc:  # refused by the policy, or a stored URL that cannot be parsed
            error, permanent = str(exc), True
        except httpx.HTTPStatusError as exc:  # the receiver answered, but not with 2xx
            error = str(exc)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # noqa: BLE001 - whatever one receiver does, the others still get theirs
            error = f"{type(exc).__name__}: {exc}"
        retry_at = None
        if not permanent and attempts + 1 < self.max_attempts:
            retry_at = datetime.now(timezone.utc) + timedelta(seconds=min(self.max_delay, self.base * 2 ** attempts))
        self.store.delivery_failed(alert_id, webhook_id, error, retry_at)
        if retry_at is not None:
            self.store.defer_webhook(webhook_id, retry_at)
        return False

    def post(self, url: str, body: bytes, secret: str, idempotency_key: str) -> None:
        """POST the signed body to `url`; raise unless 2xx. A redirect (301/302/303/307/308) is followed only to
        a URL the policy allows, at most `max_redirects` times, re-sending the same signed body."""
        target = self.policy.check(url, WEBHOOK_SCHEMES, "webhook").url
        headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key,
                   SIGNATURE_HEADER: sign(secret, body), "User-Agent": "sightline-webhooks"}
        for _ in range(self.max_redirects + 1):
            headers[TIMESTAMP_HEADER] = str(int(time.time()))
            with self.client.stream("POST", target, content=body, headers=headers) as response:
                status, location = response.status_code, response.headers.get("location")
            if 200 <= status < 300:
                return
            if status not in REDIRECTS or not location:
                raise httpx.HTTPStatusError(f"HTTP {status}", request=response.request, response=response)
            try:
                target = self.policy.check(str(httpx.URL(target).join(location)), WEBHOOK_SCHEMES, "webhook").url
            except Unresolvable:
                raise
            except (InputError, httpx.InvalidURL) as exc:
                raise Refused(f"HTTP {status} redirect not followed: {exc}") from None
        raise Refused(f"more than {self.max_redirects} redirects")

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.join(timeout=10)
        self.client.close()


class _Shown:
    """The ids of the alerts this process has pushed live lately, so that one that arrives by two ways (raised
    here, or relayed, and then read from the store) is shown once. Bounded: ids older than KEEP_S are forgotten."""

    KEEP_S = 600.0

    def __init__(self) -> None:
        self.ids: dict[str, float] = {}
        self.lock = threading.Lock()

    def first(self, alert_id: str) -> bool:
        """True the first time an id is seen."""
        now = time.monotonic()
        with self.lock:
            if alert_id in self.ids:
                return False
            self.ids[alert_id] = now
            if len(self.ids) > 10_000:
                self.ids = {k: t for k, t in self.ids.items() if t > now - self.KEEP_S}
            return True


class AlertDelivery:
    """Both ways out for raised alerts; started and stopped by the composition root."""

    def __init__(self, store: AlertStore, policy: OutboundPolicy | None = None):
        self.broadcaster = AlertBroadcaster()
        self.webhooks = WebhookDispatcher(store, policy)
        self.watcher = AlertWatcher(store, self)
        self.policy = self.webhooks.policy  # what a webhook URL must pass to be registered
        # where this process's alerts also go: other processes (the queue's AlertRelay.publish)
        self.relays: list[Callable[[dict], None]] = []
        self.shown = _Shown()

    def deliver(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            payload = alert_json(alert)
            if self.shown.first(alert.id):
                self.broadcaster.publish(payload)
            for relay in self.relays:
                try:
                    relay(payload)
                except Exception:  # noqa: BLE001 - the alert is stored; only the other replicas' live view misses it
                    log.warning("alert %s not relayed to the other processes", alert.id, exc_info=True)
        if alerts:
            self.webhooks.wake.set()

    def relayed(self, payload: dict) -> None:
        """An alert raised in another process: to this process's live subscribers, and its webhooks are due."""
        if self.shown.first(str(payload.get("id"))):  # the watcher reads an alert again for a few seconds
            self.broadcaster.publish(payload)
            self.webhooks.wake.set()

    def start(self) -> None:
        if not self.webhooks.is_alive():
            self.webhooks.start()
        if not self.watcher.is_alive():
            self.watcher.start()

    def stop(self) -> None:
        self.watcher.stop()
        if self.webhooks.is_alive():
            self.webhooks.stop()
        else:
            self.webhooks.client.close()


class AlertWatcher(threading.Thread):
    """Reads the alerts raised since its last look from the store, every POLL_S, and hands those this process has
    not shown to `relayed`: alerts raised by another process on the same store (a CLI ingest into the served
    data folder, a replica or worker without a queue relay) reach this process's live subscribers too. It looks
    back SKEW_S further than its last look, for clocks of other machines a little behind."""

    POLL_S, SKEW_S = 1.0, 5.0

    def __init__(self, store: AlertStore, delivery: AlertDelivery):
        super().__init__(name="alert-watcher", daemon=True)
        self.store, self.delivery = store, delivery
        self.stopping = threading.Event()
        self.since = datetime.now(timezone.utc)

    def run(self) -> None:
        while not self.stopping.wait(self.POLL_S):
            try:
                self.look()
            except Exception:  # noqa: BLE001 - a store hiccup costs one look; the next one catches up
                log.warning("could not read new alerts from the store", exc_info=True)

    def look(self) -> None:
        now = datetime.now(timezone.utc)
        for alert in reversed(self.store.alerts(since=self.since - timedelta(seconds=self.SKEW_S), limit=500)):
            self.delivery.relayed(alert_json(alert))  # shown once: those this process showed already are skipped
        self.since = now

    def stop(self) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(timeout=10)
