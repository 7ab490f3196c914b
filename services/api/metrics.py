"""Operations figures: the frame queue on /health, and everything a scraper wants on /metrics (Prometheus text).

/metrics is for viewers and up (Prometheus sends a bearer token: `authorization: {credentials: TOKEN}`); it
holds counts only, no sighting, plate or camera; a source of frames is named by its place in the list, not its
URL. The queue figures appear when SIGHTLINE_QUEUE is set; an unreachable queue is reported (sightline_queue_up 0,
and an `error` on /health), never a failed scrape.
"""
from __future__ import annotations

import os
import resource
import time
from typing import TYPE_CHECKING

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from services.api.schemas import HealthOut
from services.queue import QueueStatus

if TYPE_CHECKING:
    from services.system import Sightline

STARTED = time.time()


class ConsumerOut(BaseModel):
    name: str
    pending: int
    idle_s: float


class QueueOut(BaseModel):
    """The frame queue (services/queue.py), or why it cannot be read."""

    url: str
    error: str | None = None
    waiting: int | None = None
    pending: int | None = None
    consumers: list[ConsumerOut] = []
    dead_letters: int | None = None
    acked: int | None = None
    reclaimed: int | None = None
    rate_per_s: float | None = None
    lag_s: float | None = None
    mean_latency_s: float | None = None


class HealthQueueOut(HealthOut):
    """Liveness, the size of the store, and the frame queue when one is configured."""

    queue: QueueOut | None = None


def queue_figures(system: Sightline) -> tuple[QueueOut | None, QueueStatus | None]:
    queue = system.queue
    if queue is None:
        return None, None
    try:
        status = queue.status()
    except Exception as exc:  # noqa: BLE001 - Redis down or unreachable: reported, the API stays up
        return QueueOut(url=_shown(queue.url), error=f"{type(exc).__name__}: {exc}"), None
    out = QueueOut(url=_shown(queue.url), **{k: v for k, v in status.__dict__.items() if k != "consumers"},
                   consumers=[ConsumerOut(**c.__dict__) for c in status.consumers])
    return out, status


def _shown(url: str) -> str:
    """The URL without a password."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


def health_of(system: Sightline) -> HealthQueueOut:
    return HealthQueueOut(status="ok", sightings=system.store.count(), cameras=len(system.store.list_cameras()),
                          queue=queue_figures(system)[0])


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(system: Sightline) -> str:
    """The exposition format, version 0.0.4: HELP and TYPE, then the samples."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"])
        lines.extend(f"{name}{labels} {value:g}" for labels, value in samples)

    store, alerts = system.store, system.alert_store
    metric("sightline_sightings", "gauge", "Sightings stored.", [("", store.count())])
    metric("sightline_cameras", "gauge", "Cameras registered.", [("", len(store.list_cameras()))])
    raised, states = alerts.alert_count(), sorted(alerts.delivery_counts().items())
    metric("sightline_alerts", "gauge", "Alerts stored.", [("", raised)])
    metric("sightline_webhook_deliveries", "gauge", "Webhook deliveries by state (dead: dead letters).",
           [(f'{{state="{_label(state)}"}}', n) for state, n in states])
    if system.queue is not None:
        _, status = queue_figures(system)
        metric("sightline_queue_up", "gauge", "1 when the frame queue answered.", [("", status is not None)])
        if status is not None:
            metric("sightline_queue_waiting", "gauge", "Frames queued and not yet taken.", [("", status.waiting)])
            metric("sightline_queue_pending", "gauge", "Frames taken by a worker and not yet acknowledged.",
                   [(f'{{consumer="{_label(c.name)}"}}', c.pending) for c in status.consumers])
            metric("sightline_queue_dead_letters", "gauge", "Frames in the dead-letter stream.",
                   [("", status.dead_letters)])
            metric("sightline_queue_acked_total", "counter", "Frames acknowledged.", [("", status.acked)])
            metric("sightline_queue_reclaimed_total", "counter", "Frames taken back from a dead or stalled worker.",
                   [("", status.reclaimed)])
            metric("sightline_queue_rate", "gauge", "Frames acknowledged per second over the last minute.",
                   [("", status.rate_per_s)])
            metric("sightline_queue_lag_seconds", "gauge", "How long the oldest unacknowledged frame has waited.",
                   [("", status.lag_s)])
    sources = [(source.status(), i) for i, source in enumerate(system.sources)]
    if sources:
        metric("sightline_source_up", "gauge", "1 while a source of frames runs (Frigate over MQTT...).",
               [(f'{{source="{i}",kind="{_label(s.kind)}"}}', s.state == "running") for s, i in sources])
        metric("sightline_source_items_total", "counter", "A source's counters (events, ingested, skipped...).",
               [(f'{{source="{i}",kind="{_label(s.kind)}",counter="{_label(name)}"}}', n)
                for s, i in sources for name, n in sorted(s.counters.items())])
        metric("sightline_source_lag_seconds", "gauge", "From a source's latest item's own time to its storage.",
               [(f'{{source="{i}",kind="{_label(s.kind)}"}}', s.lag_s) for s, i in sources if s.lag_s is not None])
    usage = resource.getrusage(resource.RUSAGE_SELF)
    metric("process_cpu_seconds_total", "counter", "CPU time of this process.", [("", usage.ru_utime + usage.ru_stime)])
    metric("process_resident_memory_bytes", "gauge", "Resident memory of this process.", [("", _rss())])
    metric("process_start_time_seconds", "gauge", "When this process started (Unix time).", [("", STARTED)])
    metric("process_open_fds", "gauge", "Open file descriptors.", [("", _open_fds())])
    return "\n".join(lines) + "\n"


def _rss() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _open_fds() -> float:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def metrics_router(system: Sightline) -> APIRouter:
    router = APIRouter()

    @router.get("/metrics", tags=["operations"], response_class=PlainTextResponse, responses={
        200: {"description": "Prometheus text (0.0.4): store, alerts, webhook deliveries, queue, process",
              "content": {"text/plain": {"schema": {"type": "string"}}}}})
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(prometheus_text(system), media_type="text/plain; version=0.0.4; charset=utf-8")

    return router
