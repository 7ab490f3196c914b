"""A deterministic city for tests and benchmarks, with ground truth.

Cameras stand on the real Shanghai intersections. Each vehicle has a home and a
work intersection and commutes on weekdays along the cameras nearest the straight
line between them, at 25–60 km/h, leaving home between 07:00 and 09:00 and work
between 17:00 and 19:00 (local time, UTC+8). Some vehicles follow a target as a
convoy (10–40 s behind at every camera of its trips, ±5 s of traffic); some plates are cloned (a
second car with the same plate lives across town); a share of reads are misread
(one character changed, with a lower confidence score).
"""
from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np

from geo.trajectories import haversine_m
from models.records import BBox, Camera, Sighting, VehicleAttributes

LOCAL = timezone(timedelta(hours=8))
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
ALNUM = LETTERS + "0123456789"
COLORS = ("white", "gray", "black", "red", "blue", "yellow", "green")
TYPES = ("car", "car", "car", "van", "truck", "bus")


@dataclass
class Vehicle:
    plate: str
    home: int
    work: int
    speed_kmh: float
    color: str
    vehicle_type: str
    leader: int | None = None  # index of the vehicle it follows as a convoy
    lag_s: float = 0.0


@dataclass
class Truth:
    cloned_plates: set[str] = field(default_factory=set)
    convoys: dict[str, set[str]] = field(default_factory=dict)  # target plate -> follower plates
    misreads: int = 0


@dataclass
class City:
    cameras: list[Camera]
    vehicles: list[Vehicle]
    truth: Truth
    seed: int

    def sightings(self, days: int, misread_rate: float = 0.02, start: datetime | None = None):  # noqa: ANN201
        """Yield the sightings of `days` weekdays, day by day, in time order within each day."""
        rng = random.Random(self.seed + 1)
        first = start or datetime(2026, 11, 2, tzinfo=LOCAL)
        lon = np.array([c.lon for c in self.cameras])
        lat = np.array([c.lat for c in self.cameras])
        for day in range(days):
            midnight = first + timedelta(days=day)
            day_rows: list[Sighting] = []
            leaving: dict[int, list[tuple[int, datetime]]] = {}
            for i, v in enumerate(self.vehicles):
                if v.leader is not None:
                    continue
                morning = midnight + timedelta(hours=7, seconds=rng.uniform(0, 7200))
                evening = midnight + timedelta(hours=17, seconds=rng.uniform(0, 7200))
                passes = self._drive(v, v.home, v.work, morning, lon, lat) + self._drive(v, v.work, v.home, evening, lon, lat)
                leaving[i] = passes
                day_rows += [self._read(v, cam, ts, rng, misread_rate) for cam, ts in passes]
            for v in self.vehicles:
                if v.leader is not None and v.leader in leaving:
                    day_rows += [self._read(v, cam, ts + timedelta(seconds=max(2.0, v.lag_s + rng.gauss(0, 5))), rng, misread_rate)
                                 for cam, ts in leaving[v.leader]]
            yield from sorted(day_rows, key=lambda s: s.ts)

    def _drive(self, v: Vehicle, a: int, b: int, depart: datetime, lon: np.ndarray, lat: np.ndarray
               ) -> list[tuple[int, datetime]]:
        """Cameras near the straight line a→b, ordered along it, with arrival times at the vehicle's speed."""
        ax, ay, bx, by = lon[a], lat[a], lon[b], lat[b]
        dx, dy = bx - ax, by - ay
        length2 = dx * dx + dy * dy or 1e-12
        t = ((lon - ax) * dx + (lat - ay) * dy) / length2
        off = np.abs((lon - ax) * dy - (lat - ay) * dx) / np.sqrt(length2)
        on_route = np.flatnonzero((t > 0) & (t < 1) & (off < 0.004))  # within ~400 m of the line
        route = [a, *on_route[np.argsort(t[on_route])].tolist(), b]
        out, clock = [], depart
        for prev, cam in zip(route, route[1:] + [None]):
            out.append((prev, clock))
            if cam is not None:
                metres = float(haversine_m(lon[prev], lat[prev], lon[cam], lat[cam])) * 1.3  # roads are not straight
                clock = clock + timedelta(seconds=metres / (v.speed_kmh / 3.6))
        return out

    def _read(self, v: Vehicle, cam: int, ts: datetime, rng: random.Random, misread_rate: float) -> Sighting:
        plate, score = v.plate, rng.uniform(0.85, 0.99)
        if rng.random() < misread_rate:
            i = rng.randrange(2, len(plate))
            plate = plate[:i] + rng.choice(ALNUM.replace(plate[i], "")) + plate[i + 1:]
            score = rng.uniform(0.3, 0.75)
            self.truth.misreads += 1
        return Sighting(uuid.UUID(int=rng.getrandbits(128)).hex, self.cameras[cam].id, ts.astimezone(timezone.utc),
                        "vehicle", BBox(0, 0, 100, 60), 0.9,
                        VehicleAttributes(plate=plate, plate_score=round(score, 3), vehicle_color=v.color,
                                          vehicle_type=v.vehicle_type), frame_sha256=None)


def build_city(cameras: list[Camera], vehicles: int, seed: int = 11, convoys: int = 10, clones: int = 10) -> City:
    rng = random.Random(seed)
    lon = np.array([c.lon for c in cameras])
    lat = np.array([c.lat for c in cameras])
    plates: set[str] = set()

    def new_plate() -> str:
        while True:
            p = "沪" + rng.choice(LETTERS) + "".join(rng.choice(ALNUM) for _ in range(5))
            if p not in plates:
                plates.add(p)
                return p

    fleet = [Vehicle(new_plate(), rng.randrange(len(cameras)), rng.randrange(len(cameras)), rng.uniform(25, 60),
                     rng.choice(COLORS), rng.choice(TYPES)) for _ in range(vehicles)]
    truth = Truth()
    for leader in rng.sample(range(len(fleet)), convoys):
        follower = Vehicle(new_plate(), fleet[leader].home, fleet[leader].work, fleet[leader].speed_kmh,
                           rng.choice(COLORS), rng.choice(TYPES), leader=leader, lag_s=rng.uniform(10, 40))
        fleet.append(follower)
        truth.convoys.setdefault(fleet[leader].plate, set()).add(follower.plate)
    originals = [i for i in range(vehicles) if fleet[i].plate not in truth.convoys]
    for original in rng.sample(originals, clones):
        o = fleet[original]
        far = np.flatnonzero(haversine_m(lon[o.home], lat[o.home], lon, lat) > 15_000)
        if len(far) < 2:
            continue
        home, work = rng.sample(far.tolist(), 2)
        fleet.append(Vehicle(o.plate, home, work, rng.uniform(25, 60), rng.choice(COLORS), rng.choice(TYPES)))
        truth.cloned_plates.add(o.plate)
    return City(cameras, fleet, truth, seed)
