"""Retention: delete sightings older than a policy allows (or chosen ones) everywhere they are kept.

Order matters for crash safety: the record store commits first, batch by batch; then the alerts that
name the purged sightings; then the vector indexes drop those vectors and are saved; then the crops go.
A crash in between leaves at worst stale vectors (dropped when the index next opens: it checks itself
against the store), orphan alerts or orphan crops — never a stored sighting without its vector or its
evidence. `sweep_orphans` (part of every policy pass, and `sightline purge --sweep`) removes the orphans:
crops (and the local-features blobs beside them, models/rerank.py `evidence_keys`) no sighting refers to (a
crash between writing them and the ingest's transaction leaves those too) and alerts that name sightings which are gone.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import islice

import numpy as np

from indexer.alert_store import AlertStore
from indexer.blobs import BlobStore
from indexer.store import RecordStore
from indexer.vectors import VectorIndex
from models.records import InputError
from models.rerank import evidence_keys


@dataclass
class PurgeReport:
    """What one deletion removed, store by store."""

    sightings: int
    frames: int
    vectors: int
    crops: int


@dataclass
class SweepReport:
    """What a sweep of orphans removed: crop files no sighting refers to, alerts naming sightings that are gone."""

    crops: int
    alerts: int


# An ingest writes its crops before its transaction: a crop younger than this may still be about to be referred to.
ORPHAN_GRACE = timedelta(hours=1)
_BATCH = 500


class Retention:
    def __init__(self, store: RecordStore, indexes: dict[str, VectorIndex], blobs: BlobStore,
                 alerts: AlertStore | None = None):
        self.store, self.indexes, self.blobs, self.alerts = store, indexes, blobs, alerts
        self.last_sweep: SweepReport | None = None

    def purge(self, before: datetime | None = None, camera_ids: list[str] | None = None,
              ids: list[str] | None = None) -> PurgeReport:
        """Delete the sightings taken before `before` (at `camera_ids`, or all cameras), or the given `ids`."""
        if (before is None) == (ids is None):
            raise InputError("say what to delete: a time (before) or sighting ids")
        if before is not None and before > datetime.now(timezone.utc):
            raise InputError(f"{before.isoformat()} is in the future: that would delete sightings still arriving")
        if camera_ids:
            known = {c.id for c in self.store.list_cameras()}
            unknown = sorted(set(camera_ids) - known)
            if unknown:
                raise InputError(f"unknown camera(s): {', '.join(unknown)}")
        done = self.store.delete_sightings(before=before, camera_ids=camera_ids, ids=ids)
        if self.alerts is not None:  # the alerts that name them keep their plates, cameras, times and crops
            if ids is not None:
                self.alerts.delete_for_sightings(list(ids))
            elif done.sightings:
                self._drop_orphan_alerts()
        vectors = sum(self.indexes[space].remove(np.array(vector_ids, dtype=np.int64))
                      for space, vector_ids in done.vectors.items() if space in self.indexes)
        for space in done.vectors:
            if space in self.indexes:
                self.indexes[space].save()
        crops = 0
        for key in done.crops:
            crop, features = evidence_keys(key)
            crops += self.blobs.delete(crop)  # the report counts crops; a vehicle's features go with its crop
            self.blobs.delete(features)
        return PurgeReport(done.sightings, done.frames, vectors, crops)

    def apply_policy(self, days: float) -> PurgeReport:
        """The retention policy: keep `days` days of sightings; then sweep the orphans (`last_sweep` says what)."""
        done = self.purge(before=datetime.now(timezone.utc) - timedelta(days=days))
        self.sweep_orphans()
        return done

    def sweep_orphans(self, grace: timedelta = ORPHAN_GRACE) -> SweepReport:
        """Remove the crop files no sighting refers to (older than `grace`: an ingest in flight writes its crops
        before its transaction) and the alerts that name sightings which are gone."""
        crops = 0
        keys = self.blobs.keys(modified_before=datetime.now(timezone.utc) - grace)
        while chunk := list(islice(keys, _BATCH)):
            # A crop's key ends in its sighting's id (YYYY/MM/DD/<id>.jpg, services/ingest.py): the sightings
            # named so are looked up, and a key is kept only if its sighting still refers to it.
            named = sorted({key.rsplit("/", 1)[-1].split(".", 1)[0] for key in chunk} - {""})
            referred = {key for s in self.store.get_sightings(named) if s.crop for key in evidence_keys(s.crop)}
            crops += sum(self.blobs.delete(key) for key in chunk if key not in referred)
        self.last_sweep = SweepReport(crops, self._drop_orphan_alerts())
        return self.last_sweep

    def _drop_orphan_alerts(self) -> int:
        """Delete the alerts that name a sighting no longer stored."""
        if self.alerts is None:
            return 0
        named = sorted(self.alerts.named_sightings())
        gone: list[str] = []
        for i in range(0, len(named), _BATCH):
            chunk = named[i:i + _BATCH]
            found = {s.id for s in self.store.get_sightings(chunk)}
            gone += [sid for sid in chunk if sid not in found]
        return self.alerts.delete_for_sightings(gone) if gone else 0


class RetentionWorker:
    """Applies the policy at start and then every `every_s` seconds, in a daemon thread, while the API runs."""

    def __init__(self, retention: Retention, days: float, every_s: float = 3600.0):
        if days <= 0:
            raise InputError(f"SIGHTLINE_RETENTION_DAYS must be positive, not {days}")
        self.retention, self.days, self.every_s = retention, days, every_s
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="retention")
        self.last: PurgeReport | None = None
        self.last_error: str | None = None

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.last, self.last_error = self.retention.apply_policy(self.days), None
            except Exception as exc:  # noqa: BLE001 - one failed pass (a locked database) must not end retention
                self.last_error = f"{type(exc).__name__}: {exc}"
            self.stop_event.wait(self.every_s)

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=10)
