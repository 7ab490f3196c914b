"""A durable queue of frames for stateless workers, on Redis Streams; and the alert relay between processes.

Layout (every key under one prefix, `sightline` by default):

- `<p>:frames` — a stream; each entry is one frame: `data` (the encoded image bytes), `camera_id`, `ts` (ISO 8601,
  UTC) and `source` (the file name it came from). The bytes travel inside the entry rather than under a key of
  their own: one XADD enqueues a frame whole, one XACK+XDEL (in a transaction) forgets it, so there is never an
  orphan blob nor an entry whose bytes are gone. Each frame is bounded by settings.max_upload_bytes when it is
  queued and again when it is taken. Acknowledged entries are deleted, so the stream's memory is the backlog:
  about (waiting + pending) × frame size.
- consumer group `workers` on it: a worker takes new entries with XREADGROUP and reclaims entries another
  consumer has held for longer than the claim timeout with XAUTOCLAIM (a worker that died or hung). An entry is
  acknowledged only after its sightings are committed; a frame committed by a worker that died before its XACK
  is re-delivered and refused by the store as a duplicate (same sha256), which counts as done.
- `<p>:frames:tries` — how many times each entry was handed out; past `max_tries` it goes to `<p>:frames:dead`
  (with `reason`, `tries`, `consumer`) instead of to a worker. `<p>:frames:errors` keeps each entry's last error.
- `<p>:frames:stats` — totals (acknowledged, reclaimed, dead, enqueue→ack lag) and `<p>:frames:rate:<10 s>`
  counters, for `queue status`, /health and /metrics.
- `<p>:alerts` — a pub/sub channel: every alert raised in any process, so every API replica's SSE stream shows it.
"""
from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol
from urllib.parse import urlsplit

import redis

from models.records import InputError, parse_time

log = logging.getLogger(__name__)
GROUP = "workers"
RATE_BUCKET_S = 10  # acknowledgements are counted per 10 s; the rate is over the last minute
RATE_WINDOW_S = 60
ORIGIN = uuid.uuid4().hex  # this process, so that it does not hear its own relayed alerts twice


@dataclass(frozen=True)
class QueuedFrame:
    """One frame to ingest: its encoded bytes, which camera took it and when."""

    source: str
    data: bytes
    camera_id: str
    ts: datetime


@dataclass
class Delivery:
    """A frame handed to a consumer: the entry id, the frame (None when the entry cannot be read) and the try."""

    id: str
    frame: QueuedFrame | None
    tries: int
    problem: str | None = None  # why the entry cannot be ingested (malformed, too large)
    last_error: str | None = None
    fields: dict[bytes, bytes] = field(default_factory=dict, repr=False)

    @property
    def enqueued_at(self) -> float:
        """Unix seconds when it was queued (the entry id's first part is Redis's clock in ms)."""
        return int(self.id.split("-")[0]) / 1000


@dataclass
class ConsumerStatus:
    name: str
    pending: int
    idle_s: float


@dataclass
class QueueStatus:
    """What `queue status`, /health and /metrics report."""

    waiting: int  # queued, not yet handed to a worker
    pending: int  # handed to a worker, not yet acknowledged
    consumers: list[ConsumerStatus]
    dead_letters: int
    acked: int  # acknowledged since the queue was created
    reclaimed: int  # taken back from a consumer that held them past the claim timeout
    rate_per_s: float  # acknowledgements per second over the last minute
    lag_s: float  # how long the oldest unacknowledged frame has waited (0 when none)
    mean_latency_s: float  # enqueue → acknowledgement, averaged over every acknowledged frame


class FrameQueue(Protocol):
    """What ingestion needs of a queue; RedisFrameQueue is the one backend."""

    max_tries: int

    def put(self, frames: Iterable[QueuedFrame]) -> int: ...

    def take(self, consumer: str, count: int, block_ms: int = 1000) -> list[Delivery]: ...

    def ack(self, deliveries: list[Delivery]) -> None: ...

    def fail(self, delivery: Delivery, reason: str) -> bool: ...

    def dead(self, delivery: Delivery, reason: str, consumer: str = "") -> None: ...

    def status(self) -> QueueStatus: ...

    def retry_dead(self) -> int: ...


def parse_queue_url(url: str) -> str:
    """A redis:// or rediss:// URL with a host, a port that is a number and a database 0–15; else an InputError."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InputError(f"queue URL {url!r} is not valid ({exc})") from None
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise InputError(f"queue URL {url!r} must look like redis://HOST:PORT/DB")
    db = parts.path.strip("/") or "0"
    if not db.isdigit() or not 0 <= int(db) <= 15:
        raise InputError(f"queue URL {url!r}: the database must be a number from 0 to 15, not {db!r}")
    if port == 0:
        raise InputError(f"queue URL {url!r}: port 0 is not a port")
    return url


class RedisFrameQueue:
    """FrameQueue on Redis Streams (see the module docstring for the layout and why)."""

    def __init__(self, url: str, max_bytes: int, prefix: str = "sightline", claim_timeout_s: float = 60.0,
                 max_tries: int = 3):
        self.url = parse_queue_url(url)
        # redis-py's stubs type each reply as "value or awaitable": the client is used synchronously only
        self.r: Any = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=30, health_check_interval=30)
        self.max_bytes, self.claim_ms, self.max_tries = max_bytes, int(claim_timeout_s * 1000), max_tries
        self.key, self.dead_key = f"{prefix}:frames", f"{prefix}:frames:dead"
        self.tries_key, self.errors_key = f"{prefix}:frames:tries", f"{prefix}:frames:errors"
        self.stats_key, self.rate_prefix = f"{prefix}:frames:stats", f"{prefix}:frames:rate:"
        self.alerts_channel = f"{prefix}:alerts"
        self._group_ready = False

    def check(self) -> RedisFrameQueue:
        """Reach the server now (and make the consumer group): an unreachable one is an InputError."""
        self._ensure_group()
        return self

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self.r.xgroup_create(self.key, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise InputError(f"the queue at {self.url} refused the consumer group: {exc}") from None
        except redis.RedisError as exc:
            raise InputError(f"cannot reach the queue at {self.url} ({exc})") from None
        self._group_ready = True

    # producing ----------------------------------------------------------------------------------------
    def put(self, frames: Iterable[QueuedFrame], chunk: int = 64) -> int:
        """Append frames (in order); returns how many. A frame over max_bytes is an InputError."""
        self._ensure_group()
        queued, pipe = 0, self.r.pipeline(transaction=False)
        for frame in frames:
            if len(frame.data) > self.max_bytes:
                raise InputError(f"{frame.source}: {len(frame.data)} bytes exceeds the limit of {self.max_bytes}")
            pipe.xadd(self.key, {"data": frame.data, "camera_id": frame.camera_id, "source": frame.source,
                                 "ts": frame.ts.astimezone(timezone.utc).isoformat()})
            queued += 1
            if queued % chunk == 0:
                pipe.execute()
        pipe.execute()
        return queued

    # consuming ----------------------------------------------------------------------------------------
    def take(self, consumer: str, count: int, block_ms: int = 1000) -> list[Delivery]:
        """Up to `count` frames: first those another consumer held past the claim timeout, then new ones
        (waiting up to block_ms for one). Each take counts as a try."""
        self._ensure_group()
        _, claimed, _ = self.r.xautoclaim(self.key, GROUP, consumer, self.claim_ms, "0-0", count=count)
        entries = [(i, f) for i, f in claimed if f is not None]
        if entries:
            self.r.hincrby(self.stats_key, "reclaimed", len(entries))
        if len(entries) < count:
            fresh = self.r.xreadgroup(GROUP, consumer, {self.key: ">"}, count=count - len(entries),
                                      block=None if entries else block_ms)
            for _, items in fresh or []:
                entries += [(i, f) for i, f in items if f is not None]
        if not entries:
            return []
        pipe = self.r.pipeline(transaction=False)
        for entry_id, _ in entries:
            pipe.hincrby(self.tries_key, entry_id, 1)
            pipe.hget(self.errors_key, entry_id)
        replies = pipe.execute()
        return [self._delivery(entry_id.decode(), fields, int(replies[2 * n]), replies[2 * n + 1])
                for n, (entry_id, fields) in enumerate(entries)]

    def _delivery(self, entry_id: str, fields: dict[bytes, bytes], tries: int, error: bytes | None) -> Delivery:
        out = Delivery(entry_id, None, tries, last_error=error.decode(errors="replace") if error else None,
                       fields=fields)
        try:
            data = fields[b"data"]
            source = fields.get(b"source", b"queued").decode(errors="replace")
            frame = QueuedFrame(source, data, fields[b"camera_id"].decode(), parse_time(fields[b"ts"].decode()))
        except (KeyError, UnicodeDecodeError, InputError) as exc:
            out.problem = f"malformed queue entry ({type(exc).__name__}: {exc})"
            return out
        if len(data) > self.max_bytes:
            out.problem = f"{len(data)} bytes exceeds the limit of {self.max_bytes}"
            return out
        out.frame = frame
        return out

    def ack(self, deliveries: list[Delivery]) -> None:
        """Done: forget the entries (XACK and XDEL in one transaction) and count them."""
        if not deliveries:
            return
        ids = [d.id for d in deliveries]
        now = time.time()
        lags = [max(0.0, now - d.enqueued_at) for d in deliveries]
        pipe = self.r.pipeline(transaction=True)
        pipe.xack(self.key, GROUP, *ids)
        pipe.xdel(self.key, *ids)
        pipe.hdel(self.tries_key, *ids)
        pipe.hdel(self.errors_key, *ids)
        pipe.hincrby(self.stats_key, "acked", len(ids))
        pipe.hincrbyfloat(self.stats_key, "latency_s_sum", sum(lags))
        bucket = f"{self.rate_prefix}{int(now) // RATE_BUCKET_S}"
        pipe.incrby(bucket, len(ids))
        pipe.expire(bucket, RATE_WINDOW_S * 2)
        pipe.execute()

    def fail(self, delivery: Delivery, reason: str) -> bool:
        """A try that failed: keep the reason; past max_tries the frame goes to the dead letters (True), else it
        stays pending and any worker takes it again after the claim timeout."""
        if delivery.tries >= self.max_tries:
            self.dead(delivery, reason)
            return True
        self.r.hset(self.errors_key, delivery.id, reason[:2000])
        return False

    def dead(self, delivery: Delivery, reason: str, consumer: str = "") -> None:
        """Move the entry to the dead-letter stream with its reason, in one transaction."""
        fields: dict[bytes | str, bytes | str | int] = {
            k: v for k, v in delivery.fields.items() if k not in (b"reason", b"tries", b"consumer", b"entry")}
        fields.update(reason=reason[:2000], tries=delivery.tries, consumer=consumer, entry=delivery.id)
        pipe = self.r.pipeline(transaction=True)
        pipe.xadd(self.dead_key, fields)
        pipe.xack(self.key, GROUP, delivery.id)
        pipe.xdel(self.key, delivery.id)
        pipe.hdel(self.tries_key, delivery.id)
        pipe.hdel(self.errors_key, delivery.id)
        pipe.hincrby(self.stats_key, "dead", 1)
        pipe.execute()

    def forget_consumer(self, consumer: str) -> None:
        """Drop a consumer that stops cleanly, when it holds nothing (a dead one stays listed with its frames)."""
        pending = self.r.xpending_range(self.key, GROUP, "-", "+", 1, consumername=consumer)
        if not pending:
            self.r.xgroup_delconsumer(self.key, GROUP, consumer)

    # operating --------------------------------------------------------------------------------------------
    def dead_letters(self, limit: int = 100) -> list[dict[str, str]]:
        """The dead letters (oldest first) without their bytes: entry, source, camera_id, ts, reason, tries."""
        out = []
        for entry_id, fields in self.r.xrange(self.dead_key, count=limit):
            row = {k.decode(): v.decode(errors="replace") for k, v in fields.items() if k != b"data"}
            out.append({"id": entry_id.decode(), **row})
        return out

    def retry_dead(self, chunk: int = 100) -> int:
        """Queue every dead letter again (after the cause is fixed, e.g. its camera registered)."""
        self._ensure_group()
        moved = 0
        while True:
            rows = self.r.xrange(self.dead_key, count=chunk)
            if not rows:
                return moved
            pipe = self.r.pipeline(transaction=True)
            for entry_id, fields in rows:
                pipe.xadd(self.key, {k: v for k, v in fields.items()
                                     if k not in (b"reason", b"tries", b"consumer", b"entry")})
                pipe.xdel(self.dead_key, entry_id)
            pipe.execute()
            moved += len(rows)

    def status(self) -> QueueStatus:
        self._ensure_group()
        pipe = self.r.pipeline(transaction=False)
        pipe.xlen(self.key)
        pipe.xinfo_consumers(self.key, GROUP)
        pipe.xlen(self.dead_key)
        pipe.hgetall(self.stats_key)
        pipe.xrange(self.key, count=1)
        now = time.time()
        buckets = [f"{self.rate_prefix}{int(now) // RATE_BUCKET_S - n}" for n in range(RATE_WINDOW_S // RATE_BUCKET_S)]
        pipe.mget(buckets)
        length, consumers, dead, stats, oldest, counts = pipe.execute()
        people = [ConsumerStatus(_text(c["name"]), int(c["pending"]), round(int(c["idle"]) / 1000, 1))
                  for c in consumers]
        pending = sum(c.pending for c in people)
        stat = {k.decode(): float(v) for k, v in stats.items()}
        acked = int(stat.get("acked", 0))
        # the current bucket is partly filled: the window is the full buckets plus the part elapsed
        window = (RATE_WINDOW_S - RATE_BUCKET_S) + (now % RATE_BUCKET_S)
        lag = now - int(oldest[0][0].decode().split("-")[0]) / 1000 if oldest else 0.0
        return QueueStatus(waiting=max(0, length - pending), pending=pending, consumers=people, dead_letters=dead,
                           acked=acked, reclaimed=int(stat.get("reclaimed", 0)),
                           rate_per_s=round(sum(int(c or 0) for c in counts) / window, 2), lag_s=round(max(lag, 0), 2),
                           mean_latency_s=round(stat.get("latency_s_sum", 0) / acked, 3) if acked else 0.0)

    def clear(self) -> None:
        """Drop the queue, its dead letters and figures (benchmarks start from nothing); the group is made again."""
        self.r.delete(self.key, self.dead_key, self.tries_key, self.errors_key, self.stats_key)
        self._group_ready = False
        self._ensure_group()

    def close(self) -> None:
        self.r.close()


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def default_consumer() -> str:
    """host-pid: unique per live process, readable in `queue status`."""
    return f"{socket.gethostname()}-{os.getpid()}"


class AlertRelay:
    """Alerts between processes over Redis pub/sub: a worker publishes what its rule engine raised; every API
    process subscribes and hands them to its SSE subscribers (and wakes its webhook sender).

    Pub/sub, not a stream: the SSE stream is live-only (the alert store keeps every alert for GET /alerts), so a
    replica that is down misses live items exactly as an SSE client that is not connected does. Each message
    names the process that sent it, which therefore does not show its own alerts twice.
    """

    def __init__(self, queue: RedisFrameQueue):
        self.r, self.channel = queue.r, queue.alerts_channel
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish(self, payload: dict) -> None:
        self.r.publish(self.channel, json.dumps({"origin": ORIGIN, "alert": payload}, ensure_ascii=False))

    def listen(self, deliver: Callable[[dict], None]) -> None:
        """Start a thread that hands every other process's alert to `deliver`; it reconnects after an error."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, args=(deliver,), daemon=True, name="alert-relay")
        self._thread.start()

    def _run(self, deliver: Callable[[dict], None]) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                pubsub = self.r.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                backoff = 0.5
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message and message.get("type") == "message":
                        envelope = json.loads(message["data"])
                        if envelope.get("origin") != ORIGIN:
                            deliver(envelope["alert"])
                pubsub.close()
            except Exception:  # noqa: BLE001 - Redis restarting, a bad message: listen again
                log.warning("alert relay: reconnecting after an error", exc_info=True)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def status_json(status: QueueStatus) -> dict[str, object]:
    """The status as plain JSON-able figures (the CLI prints it, /health embeds it)."""
    from dataclasses import asdict

    out = asdict(status)
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}
