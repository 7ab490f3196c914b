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
from services.ingest import FRAMES_PREFIX, frame_key, frame_of_key


@dataclass
class PurgeReport:
    """What one deletion removed, store by store (`frames`: frame records; `frame_files`: kept original frames)."""

    sightings: int
    frames: int
    vectors: int
    crops: int
    frame_files: int = 0


@dataclass
class SweepReport:
    """What a sweep of orphans removed: crop files no sighting refers to, alerts naming sightings that are gone,
    kept frames of frames no longer stored."""

    crops: int
    alerts: int
    frames: int = 0


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
        # the original frames these sightings came from: each goes once no sighting of its frame is left
        named = self.store.get_sightings(list(ids)) if ids is not None else []
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
        if ids is not None:
            frames = self._drop_frames([frame_key(s.ts, s.frame_sha256) for s in named if s.frame_sha256])
        else:
            frames = self._drop_frames(self._frame_keys(until=before), unreferenced_only=True) if before else 0
        return PurgeReport(done.sightings, done.frames, vectors, crops, frames)

    def _frame_keys(self, until: datetime | None = None) -> list[str]:
        """The kept frames captured on days up to `until`'s (all with None)."""
        last = until.astimezone(timezone.utc).date() if until is not None else None
        return [key for key in self.blobs.keys(prefix=FRAMES_PREFIX)
                if (parsed := frame_of_key(key)) is not None and (last is None or parsed[0].date() <= last)]

    def _drop_frames(self, keys: list[str], unreferenced_only: bool = True) -> int:
        """Delete the frame files whose frame has no sighting left (every one, with `unreferenced_only` off)."""
        dropped = 0
        for key in dict.fromkeys(keys):
            parsed = frame_of_key(key)
            if parsed is not None and (not unreferenced_only or not self.store.has_frame(parsed[1])):
                dropped += self.blobs.delete(key)
        return dropped

    def drop_frames_before(self, days: float) -> int:
        """The frame retention, shorter than the sightings': frames of days older than `days` go, their sightings
        stay (the evidence package then says the frame is no longer kept)."""
        cutoff = datetime.now(timezone.utc) - timedelta(days=days)
        return self._drop_frames([k for k in self._frame_keys(until=cutoff)
                                  if (p := frame_of_key(k)) and p[0] + timedelta(days=1) <= cutoff],
                                 unreferenced_only=False)

    def apply_policy(self, days: float) -> PurgeReport:
        """The retention policy: keep `days` days of sightings; then sweep the orphans (`last_sweep` says what)."""
        done = self.purge(before=datetime.now(timezone.utc) - timedelta(days=days))
        self.sweep_orphans()
        return done

    def sweep_orphans(self, grace: timedelta = ORPHAN_GRACE) -> SweepReport:
        """Remove the crop files no sighting refers to (older than `grace`: an ingest in flight writes its crops
        before its transaction) and the alerts that name sightings which are gone."""
        crops = frames = 0
        keys = self.blobs.keys(modified_before=datetime.now(timezone.utc) - grace)
        while chunk := list(islice(keys, _BATCH)):
            # a kept frame whose frame record is gone (an ingest that died before its transaction, a purge)
            frames += self._drop_frames([key for key in chunk if key.startswith(FRAMES_PREFIX)])
            chunk = [key for key in chunk if not key.startswith(FRAMES_PREFIX)]
            # A crop's key ends in its sighting's id (YYYY/MM/DD/<id>.jpg, services/ingest.py): the sightings
            # named so are looked up, and a key is kept only if its sighting still refers to it.
            named = sorted({key.rsplit("/", 1)[-1].split(".", 1)[0] for key in chunk} - {""})
            referred = {key for s in self.store.get_sightings(named) if s.crop for key in evidence_keys(s.crop)}
            crops += sum(self.blobs.delete(key) for key in chunk if key not in referred)
        self.last_sweep = SweepReport(crops, self._drop_orphan_alerts(), frames)
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
    """Applies the policies at start and then every `every_s` seconds, in a daemon thread, while the API runs: the
    sightings' (`days`) and the kept frames' (`frame_days`, shorter), either of which may be None."""

    def __init__(self, retention: Retention, days: float | None, every_s: float = 3600.0,
                 frame_days: float | None = None):
        if days is not None and days <= 0:
            raise InputError(f"SIGHTLINE_RETENTION_DAYS must be positive, not {days}")
        self.retention, self.days, self.every_s, self.frame_days = retention, days, every_s, frame_days
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="retention")
        self.last: PurgeReport | None = None
        self.last_error: str | None = None

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                if self.frame_days is not None:
                    self.retention.drop_frames_before(self.frame_days)
                if self.days is not None:
                    self.last = self.retention.apply_policy(self.days)
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - one failed pass (a locked database) must not end retention
                self.last_error = f"{type(exc).__name__}: {exc}"
            self.stop_event.wait(self.every_s)

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=10)
