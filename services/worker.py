"""A stateless ingestion worker: frames from the queue's consumer group through the one Ingestor, acknowledged
only after their sightings are committed.

Why it is safe to run many, and to kill any of them at any time:
- a frame is acknowledged after `Ingestor.ingest` has committed it, so a worker that dies holds only
  unacknowledged frames, which another worker reclaims after the claim timeout;
- a frame committed just before its worker died is re-delivered and refused by the store as a duplicate
  (same sha256): that counts as done, so no sighting is ever stored twice;
- a frame that cannot be ingested (it does not decode, its camera is unknown) goes straight to the dead letters
  with the reason, as trying again cannot change the answer; any other failure is retried by whichever worker
  takes it next, up to the queue's max_tries, then dead-lettered with the last reason;
- workers keep no FAISS index (the CLI turns `faiss` into `store-only` for them): every vector is in the record
  store, the API processes catch up on it before each search (FaissIndex.catch_up), and only they write the
  index files (each save an atomic rename) — so workers never race on them and use no memory for them.

Rules are per process: a worker reloads watchlists and rules every `reload_s` seconds, and its alerts go out
through the AlertRelay to every API replica. Cool-downs and clone checks are per worker.
"""
from __future__ import annotations

import hashlib
import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from models.records import InputError
from services.ingest import Ingestor, PhotoJob
from services.queue import Delivery, FrameQueue, QueuedFrame

if TYPE_CHECKING:
    from services.system import Sightline

log = logging.getLogger(__name__)


@dataclass
class WorkerCounts:
    batches: int = 0
    acked: int = 0
    duplicates: int = 0
    dead: int = 0
    failed: int = 0


class Worker:
    """Take a batch, ingest it, acknowledge what was committed; until `stop` is set (after the current batch)."""

    def __init__(self, queue: FrameQueue, ingestor: Ingestor, name: str, batch: int = 8,
                 reload_rules: Callable[[], object] | None = None, reload_s: float = 5.0):
        self.queue, self.ingestor, self.name, self.batch = queue, ingestor, name, batch
        self.reload_rules, self.reload_s, self._reloaded = reload_rules, reload_s, time.monotonic()
        self.stop = threading.Event()
        self.counts = WorkerCounts()

    def run(self) -> WorkerCounts:
        backoff = 0.5
        while not self.stop.is_set():
            try:
                self._refresh_rules()
                deliveries = self.queue.take(self.name, self.batch, block_ms=1000)
                if deliveries:
                    self.process(deliveries)
                backoff = 0.5
            except Exception:  # noqa: BLE001 - Redis or the store unavailable: wait, then go on (nothing is lost)
                log.exception("worker %s: round failed; retrying in %.1f s", self.name, backoff)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 30)
        return self.counts

    def _refresh_rules(self) -> None:
        if self.reload_rules is not None and time.monotonic() - self._reloaded >= self.reload_s:
            self.reload_rules()
            self._reloaded = time.monotonic()

    def process(self, deliveries: list[Delivery]) -> None:
        """One batch: dead-letter what cannot be ingested, ingest the rest, acknowledge what was committed."""
        self.counts.batches += 1
        ready: list[tuple[Delivery, QueuedFrame, str]] = []
        for d in deliveries:
            if d.problem is not None or d.frame is None:
                self._dead(d, d.problem or "unreadable entry")
            elif d.tries > self.queue.max_tries:
                self._dead(d, d.last_error or f"taken {d.tries - 1} times and never finished "
                                              "(its worker died or stalled while holding it)")
            else:
                ready.append((d, d.frame, hashlib.sha256(d.frame.data).hexdigest()))
        if not ready:
            return
        jobs = [PhotoJob(f.source, f.data, f.camera_id, f.ts) for _, f, _ in ready]
        try:
            report = self.ingestor.ingest(jobs)
        except Exception as exc:  # noqa: BLE001 - the models or the store failed: each frame is tried again later
            log.exception("worker %s: a batch of %d failed", self.name, len(ready))
            for d, _, _ in ready:
                self.counts.failed += 1
                if self.queue.fail(d, f"{type(exc).__name__}: {exc}"):
                    self.counts.dead += 1
            return
        stored = {r.frame_sha256: r.duplicate for r in report.results}
        done = [d for d, _, sha in ready if sha in stored]
        self.queue.ack(done)  # committed (or stored before: a re-delivery), so acknowledged
        self.counts.acked += len(done)
        self.counts.duplicates += sum(stored[sha] for _, _, sha in ready if sha in stored)
        for d, frame, sha in ready:
            if sha not in stored:
                prefix = f"{frame.source}: "
                reason = next((e[len(prefix):] for e in report.errors if e.startswith(prefix)), "not stored")
                self._dead(d, reason)

    def _dead(self, delivery: Delivery, reason: str) -> None:
        log.warning("worker %s: frame %s to the dead letters: %s", self.name, delivery.id, reason)
        self.queue.dead(delivery, reason, self.name)
        self.counts.dead += 1


def serve(system: Sightline, name: str, batch: int = 8, claim_timeout_s: float = 60.0, max_tries: int = 3,
          reload_s: float = 5.0) -> WorkerCounts:
    """Run a worker over an opened system until SIGTERM or SIGINT (each ends it after the current batch).

    The models load before the first frame is taken, then one JSON line `{"worker": NAME, "ready": true}` is
    printed, so that a supervisor (or `bench workers`) knows when the worker is taking frames.
    """
    queue = system.queue
    if queue is None:
        raise InputError("give --queue redis://HOST:PORT/DB or set SIGHTLINE_QUEUE")
    queue.claim_ms, queue.max_tries = int(claim_timeout_s * 1000), max_tries
    queue.check()
    system.get_pipeline()
    worker = Worker(queue, system.ingestor, name, batch, system.rules.reload, reload_s)
    previous = {sig: signal.signal(sig, lambda *_: worker.stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    print(json.dumps({"worker": name, "ready": True}), flush=True)
    try:
        return worker.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        try:
            queue.forget_consumer(name)
        except Exception:  # noqa: BLE001 - Redis gone at shutdown: the consumer just stays listed
            log.warning("worker %s: could not leave the consumer group", name)
