"""Alert delivery: live subscribers (Server-Sent Events) and webhooks with retries and dead letters.

Delivery never blocks ingestion: an alert is stored with its pending webhook deliveries in
one transaction (by the rule engine), pushed to live subscribers, and sent by a worker thread
that retries with exponential back-off and parks what keeps failing as dead letters.
"""
from __future__ import annotations

import asyncio
import threading
from dataclasses import asdict
from datetime import datetime, timedelta, timezone

import httpx

from indexer.alert_store import AlertStore
from models.watchlists import Alert


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
    out = asdict(alert)
    for key in ("ts", "raised_at", "acked_at"):
        out[key] = out[key].isoformat() if out[key] else None
    return out


class WebhookDispatcher(threading.Thread):
    """Sends pending deliveries; a failure is retried after base·2^attempts seconds, dead after max_attempts."""

    def __init__(self, store: AlertStore, base_delay_s: float = 1.0, max_delay_s: float = 300.0,
                 max_attempts: int = 12, timeout_s: float = 5.0):
        super().__init__(daemon=True, name="webhooks")
        self.store, self.base, self.max_delay, self.max_attempts = store, base_delay_s, max_delay_s, max_attempts
        self.client = httpx.Client(timeout=timeout_s)
        self.wake, self.stopping = threading.Event(), threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            for alert_id, webhook_id, url, attempts in self.store.due_deliveries():
                self._send(alert_id, webhook_id, url, attempts)
            self.wake.wait(0.25)
            self.wake.clear()

    def _send(self, alert_id: str, webhook_id: str, url: str, attempts: int) -> None:
        alert = self.store.get_alert(alert_id)
        if alert is None:
            return
        try:
            response = self.client.post(url, json=alert_json(alert), headers={"Idempotency-Key": alert_id})
            if 200 <= response.status_code < 300:
                self.store.delivery_done(alert_id, webhook_id)
                return
            error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        retry_at = None
        if attempts + 1 < self.max_attempts:
            retry_at = datetime.now(timezone.utc) + timedelta(seconds=min(self.max_delay, self.base * 2 ** attempts))
        self.store.delivery_failed(alert_id, webhook_id, error, retry_at)

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.join(timeout=10)
        self.client.close()


class AlertDelivery:
    """Both ways out for raised alerts; started and stopped by the composition root."""

    def __init__(self, store: AlertStore):
        self.broadcaster = AlertBroadcaster()
        self.webhooks = WebhookDispatcher(store)

    def deliver(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            self.broadcaster.publish(alert_json(alert))
        if alerts:
            self.webhooks.wake.set()

    def start(self) -> None:
        if not self.webhooks.is_alive():
            self.webhooks.start()

    def stop(self) -> None:
        if self.webhooks.is_alive():
            self.webhooks.stop()
        else:
            self.webhooks.client.close()
