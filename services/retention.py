"""Retention: delete sightings older than a policy allows (or chosen ones) everywhere they are kept.

Order matters for crash safety: the record store commits first, batch by batch; then the vector
indexes drop those vectors and are saved; then the crop files go. A crash in between leaves at
worst stale vectors (dropped when the index next opens: it checks itself against the store) or
orphan crop files, never a stored sighting without its vector or its evidence.
"""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import numpy as np

from models.records import InputError
from services.system import Sightline


def purge(system: Sightline, before: datetime | None = None, camera_ids: list[str] | None = None,
          ids: list[str] | None = None) -> dict:
    """Delete the sightings taken before `before` (at `camera_ids`, or all cameras), or the given `ids`."""
    if (before is None) == (ids is None):
        raise InputError("say what to delete: a time (before) or sighting ids")
    if before is not None and before > datetime.now(timezone.utc):
        raise InputError(f"{before.isoformat()} is in the future: that would delete sightings still arriving")
    if camera_ids:
        known = {c.id for c in system.store.list_cameras()}
        unknown = sorted(set(camera_ids) - known)
        if unknown:
            raise InputError(f"unknown camera(s): {', '.join(unknown)}")
    done = system.store.delete_sightings(before=before, camera_ids=camera_ids, ids=ids)
    vectors = sum(system.indexes[space].remove(np.array(vector_ids, dtype=np.int64))
                  for space, vector_ids in done.vectors.items() if space in system.indexes)
    if done.vectors:
        system.save_indexes()
    crops = 0
    for key in done.crops:
        path = system.settings.crops_dir / key
        if path.is_file():
            path.unlink()
            crops += 1
    return {"sightings": done.sightings, "frames": done.frames, "vectors": vectors, "crops": crops}


def apply_policy(system: Sightline, days: float) -> dict:
    """The retention policy: keep `days` days of sightings."""
    return purge(system, before=datetime.now(timezone.utc) - timedelta(days=days))


class RetentionWorker:
    """Applies the policy at start and then every `every_s` seconds, in a daemon thread, while the API runs."""

    def __init__(self, system: Sightline, days: float, every_s: float = 3600.0):
        if days <= 0:
            raise InputError(f"SIGHTLINE_RETENTION_DAYS must be positive, not {days}")
        self.system, self.days, self.every_s = system, days, every_s
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="retention")
        self.last: dict | None = None
        self.last_error: str | None = None

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.last, self.last_error = apply_policy(self.system, self.days), None
            except Exception as exc:  # noqa: BLE001 - one failed pass (a locked database) must not end retention
                self.last_error = f"{type(exc).__name__}: {exc}"
            self.stop_event.wait(self.every_s)

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=10)
