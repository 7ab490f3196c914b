"""Vehicles travelling together with a target: the same cameras, within ±T seconds, at ≥ N distinct cameras.

For every sighting of the target, the camera's other vehicle sightings within the
window are fetched by the (camera, time) index; companions are ranked by how many
distinct cameras they share and then by how steady their lag is (a convoy keeps
its distance; a car that happens to pass twice does not).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from geo.trajectories import check_range
from indexer.store import RecordStore, SightingQuery
from models.records import InputError

TRIP_GAP = timedelta(minutes=30)


@dataclass
class Companion:
    plate: str
    cameras: int
    shared: list[dict] = field(default_factory=list)  # target and companion sighting ids, camera, lag
    mean_lag_s: float = 0.0
    lag_std_s: float = 0.0
    trips: int = 0

    def to_json(self) -> dict:
        return {"plate": self.plate, "cameras": self.cameras, "trips": self.trips,
                "mean_lag_s": round(self.mean_lag_s, 1), "lag_std_s": round(self.lag_std_s, 1), "shared": self.shared}


def co_travellers(store: RecordStore, plate: str, start: datetime | None = None, end: datetime | None = None,
                  window_s: float = 60.0, min_cameras: int = 3, max_lag_std_s: float | None = 15.0,
                  min_trips: int = 2, min_coverage: float = 0.5, limit: int = 50) -> list[Companion]:
    """Companions of `plate` that keep their place and come back.

    Cars that merely share a busy road pass within the window at random lags, on both
    sides of the target; a convoy stays ahead or behind by about the same time
    (max_lag_std_s). Two cars can also drive side by side once by chance; a companion
    is seen with the target on at least `min_trips` of its trips (trips are split by
    gaps over 30 minutes; a target with fewer trips in the range needs all of them). And a
    companion keeps with the target for most of those trips (`min_coverage` of the target's
    camera passes in them): in dense traffic, cars sharing a few cameras of a long route at
    a steady lag by chance are common, cars sharing most of it are not.
    """
    check_range(start, end)
    if window_s <= 0 or min_cameras < 1 or not 0 <= min_coverage <= 1:
        raise InputError("window_s must be positive, min_cameras at least 1 and min_coverage in [0, 1]")
    target = sorted(store.query(SightingQuery(kind="vehicle", plate=plate, start=start, end=end, limit=100_000)),
                    key=lambda s: s.ts)
    trip_of: dict[str, int] = {}  # target sighting id -> its trip
    trip = 0
    for before, after in zip([None, *target], target, strict=False):
        if before is not None and (after.ts - before.ts) > TRIP_GAP:
            trip += 1
        trip_of[after.id] = trip
    needed_trips = min(min_trips, trip + 1)
    passes_in_trip = Counter(trip_of[t.id] for t in {(t.camera_id, trip_of[t.id]): t for t in target}.values())
    window = timedelta(seconds=window_s)
    # plate -> (camera, trip) -> (|lag|, record), keeping the closest
    passes: dict[str, dict[tuple[str, int], tuple[float, dict]]] = {}
    for t in target:
        for sid, other, ts in store.camera_window(t.camera_id, t.ts - window, t.ts + window):
            if not other or other == plate:
                continue
            lag = (ts - t.ts).total_seconds()
            record = {"camera_id": t.camera_id, "target_sighting_id": t.id, "sighting_id": sid, "lag_s": lag,
                      "ts": ts.isoformat(), "trip": trip_of[t.id]}
            key = (t.camera_id, trip_of[t.id])  # the closest pass per camera and trip
            best = passes.setdefault(other, {}).get(key)
            if best is None or abs(lag) < best[0]:
                passes[other][key] = (abs(lag), record)
    found = []
    for other, by_pass in passes.items():
        cameras = {camera for camera, _ in by_pass}
        trips = {trip for _, trip in by_pass}
        if len(cameras) < min_cameras or len(trips) < needed_trips \
                or len(by_pass) < min_coverage * sum(passes_in_trip[t] for t in trips):
            continue
        shared = [r for _, r in by_pass.values()]
        lags = np.array([r["lag_s"] for r in shared])
        steady = (np.all(lags > 0) or np.all(lags < 0)) and lags.std() <= (max_lag_std_s or 0)
        if max_lag_std_s is not None and not steady:
            continue
        found.append(Companion(other, len(cameras), sorted(shared, key=lambda r: r["ts"]), float(lags.mean()),
                               float(lags.std()), len(trips)))
    return sorted(found, key=lambda c: (-c.cameras, c.lag_std_s))[:limit]
