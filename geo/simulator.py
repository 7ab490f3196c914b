"""A deterministic city for tests and benchmarks, with ground truth.

Cameras stand on the real Shanghai intersections. Each vehicle has a home and a
work intersection and commutes every simulated day along the cameras nearest the
straight line between them (roads taken as 1.3× the straight line), at 25–60 km/h,
leaving home between 07:00 and 09:00 and work between 17:00 and 19:00 (local time,
UTC+8). Some vehicles follow a target as a convoy (10–40 s behind at every camera of
its trips, ±5 s of traffic); some plates are cloned (a second car with the same plate
lives across town); a share of reads are misread (one character changed, mostly with
a low confidence score). Days are generated as columns, vectorised over the fleet,
so that 10 million sightings take seconds rather than a Sighting object each.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterator

import numpy as np

from geo.distance import haversine_m
from indexer.store import VehicleColumns
from models.records import BBox, Camera, Sighting, SightingKind, VehicleAttributes

LOCAL = timezone(timedelta(hours=8))
FIRST_DAY = datetime(2026, 11, 2, tzinfo=LOCAL)
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
ALNUM = LETTERS + "0123456789"
COLORS = ("white", "gray", "black", "red", "blue", "yellow", "green")
TYPES = ("car", "car", "car", "van", "truck", "bus")
ROAD_FACTOR = 1.3  # roads are not straight
CONFIDENT_MISREADS = 0.05  # share of misreads the reader is nevertheless sure of (score 0.80–0.90)


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
class Day:
    """One simulated day: the store's bulk-load columns plus which vehicle made each read."""

    columns: VehicleColumns
    vehicle: np.ndarray  # index into City.vehicles per row
    misread: np.ndarray  # bool per row


def _route(a: int, b: int, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cameras within ~400 m of the straight line a→b, ordered along it, and the road metres to reach each."""
    ax, ay, bx, by = lon[a], lat[a], lon[b], lat[b]
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy or 1e-12
    t = ((lon - ax) * dx + (lat - ay) * dy) / length2
    off = np.abs((lon - ax) * dy - (lat - ay) * dx) / np.sqrt(length2)
    on_route = np.flatnonzero((t > 0) & (t < 1) & (off < 0.004))
    cams = np.array([a, *on_route[np.argsort(t[on_route])].tolist(), b], dtype=np.int64)
    metres = np.concatenate([[0.0],
                             np.cumsum(haversine_m(lon[cams[:-1]], lat[cams[:-1]], lon[cams[1:]], lat[cams[1:]]))])
    return cams, metres * ROAD_FACTOR


@dataclass
class City:
    cameras: list[Camera]
    vehicles: list[Vehicle]
    truth: Truth
    seed: int

    def days(self, days: int, misread_rate: float = 0.02, start: datetime | None = None) -> Iterator[Day]:
        """Each day's reads as columns, in time order. The same seed always gives the same reads."""
        first = start or FIRST_DAY
        lon = np.array([c.lon for c in self.cameras])
        lat = np.array([c.lat for c in self.cameras])
        drivers = np.array([i for i, v in enumerate(self.vehicles) if v.leader is None], dtype=np.int64)
        speed = np.array([v.speed_kmh / 3.6 for v in self.vehicles])
        # Each driver's two trips, flattened: row -> (vehicle, camera, seconds after departure).
        trips: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for a_of, b_of in ((lambda v: v.home, lambda v: v.work), (lambda v: v.work, lambda v: v.home)):
            cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
            trip_veh: list[np.ndarray] = []
            trip_cam: list[np.ndarray] = []
            trip_off: list[np.ndarray] = []
            for i in drivers.tolist():
                v = self.vehicles[i]
                key = (a_of(v), b_of(v))
                if key not in cache:
                    cache[key] = _route(*key, lon, lat)
                cams, metres = cache[key]
                trip_veh.append(np.full(len(cams), i))
                trip_cam.append(cams)
                trip_off.append(metres / speed[i])
            trips.append((np.concatenate(trip_veh), np.concatenate(trip_cam), np.concatenate(trip_off)))
        followers = [(i, v.leader, v.lag_s) for i, v in enumerate(self.vehicles) if v.leader is not None]
        plates = np.array([v.plate for v in self.vehicles], dtype=object)
        colors = np.array([v.color for v in self.vehicles], dtype=object)
        types = np.array([v.vehicle_type for v in self.vehicles], dtype=object)
        camera_ids = np.array([c.id for c in self.cameras], dtype=object)
        for day in range(days):
            rng = np.random.default_rng([self.seed, day])
            midnight = (first + timedelta(days=day)).timestamp()
            depart = np.zeros(len(self.vehicles))
            veh_parts: list[np.ndarray] = []
            cam_parts: list[np.ndarray] = []
            ts_parts: list[np.ndarray] = []
            for hour, (trip_veh_ids, trip_cams, trip_offsets) in zip((7, 17), trips, strict=True):
                depart[drivers] = midnight + hour * 3600 + rng.uniform(0, 7200, len(drivers))
                trip_ts = depart[trip_veh_ids] + trip_offsets
                veh_parts.append(trip_veh_ids)
                cam_parts.append(trip_cams)
                ts_parts.append(trip_ts)
                for i, leader, lag in followers:
                    mine = trip_veh_ids == leader
                    veh_parts.append(np.full(int(mine.sum()), i))
                    cam_parts.append(trip_cams[mine])
                    ts_parts.append(trip_ts[mine] + np.maximum(2.0, lag + rng.normal(0, 5, int(mine.sum()))))
            veh, cam, ts = np.concatenate(veh_parts), np.concatenate(cam_parts), np.concatenate(ts_parts)
            order = np.argsort(ts, kind="stable")
            veh, cam, ts_us = veh[order], cam[order], np.round(ts[order] * 1e6).astype(np.int64)
            n = len(veh)
            misread = rng.random(n) < misread_rate
            score = rng.uniform(0.85, 0.99, n)
            confident = rng.random(n) < CONFIDENT_MISREADS
            score[misread] = np.where(confident[misread], rng.uniform(0.80, 0.90, n)[misread],
                                      rng.uniform(0.3, 0.75, n)[misread])
            read = plates[veh]
            for row, pos, pick in zip(np.flatnonzero(misread).tolist(), rng.integers(2, 7, n)[misread].tolist(),
                                      rng.integers(0, len(ALNUM) - 1, n)[misread].tolist(), strict=True):
                plate = read[row]
                read[row] = plate[:pos] + ALNUM.replace(plate[pos], "")[pick] + plate[pos + 1:]
            self.truth.misreads += int(misread.sum())
            ids = [f"sim{self.seed}-{day:03d}-{i:07d}" for i in range(n)]
            yield Day(VehicleColumns(ids, camera_ids[cam].tolist(), ts_us, read.tolist(), np.round(score, 3),
                                     colors[veh].tolist(), types[veh].tolist()), veh, misread)

    def sightings(self, days: int, misread_rate: float = 0.02, start: datetime | None = None) -> Iterator[Sighting]:
        """The same reads as Sighting objects (tests and the streaming check; bulk loads use days())."""
        for d in self.days(days, misread_rate, start):
            c = d.columns
            for sid, cam, ts, plate, score, color, vtype in zip(c.ids, c.camera_ids, c.ts_us.tolist(), c.plates,
                                                                c.plate_scores.tolist(), c.vehicle_colors,
                                                                c.vehicle_types, strict=True):
                yield Sighting(sid, cam, datetime.fromtimestamp(ts / 1e6, timezone.utc), SightingKind.VEHICLE,
                               BBox(0, 0, 100, 60), 0.9,
                               VehicleAttributes(plate=plate, plate_score=score, vehicle_color=color,
                                                 vehicle_type=vtype))

    def route_cameras(self, plate: str) -> set[str]:
        """The distinct cameras a (non-cloned) plate passes every day: what a convoy behind it shares."""
        v = next(v for v in self.vehicles if v.plate == plate)
        lon = np.array([c.lon for c in self.cameras])
        lat = np.array([c.lat for c in self.cameras])
        cams = set(_route(v.home, v.work, lon, lat)[0].tolist()) | set(_route(v.work, v.home, lon, lat)[0].tolist())
        return {self.cameras[i].id for i in cams}

    def reads_per_vehicle_day(self) -> float:
        """Mean reads a vehicle makes a day, for sizing a fleet to a wanted number of sightings."""
        lon = np.array([c.lon for c in self.cameras])
        lat = np.array([c.lat for c in self.cameras])
        return float(np.mean([len(_route(v.home, v.work, lon, lat)[0]) * 2 for v in self.vehicles]))


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

    def commute(home: int, avoid: tuple[int, ...] = ()) -> int:
        """A workplace 3-25 km from home (and over 10 km from `avoid`): a commute long enough to meet traffic."""
        d = haversine_m(lon[home], lat[home], lon, lat)
        ok = (d >= 3_000) & (d <= 25_000)
        for place in avoid:
            ok &= haversine_m(lon[place], lat[place], lon, lat) > 10_000
        choices = np.flatnonzero(ok)
        return int(rng.choice(choices.tolist())) if len(choices) else rng.randrange(len(cameras))

    homes = [rng.randrange(len(cameras)) for _ in range(vehicles)]
    fleet = [Vehicle(new_plate(), home, commute(home), rng.uniform(25, 60), rng.choice(COLORS), rng.choice(TYPES))
             for home in homes]
    truth = Truth()
    for leader in rng.sample(range(len(fleet)), convoys):
        follower = Vehicle(new_plate(), fleet[leader].home, fleet[leader].work, fleet[leader].speed_kmh,
                           rng.choice(COLORS), rng.choice(TYPES), leader=leader, lag_s=rng.uniform(10, 40))
        fleet.append(follower)
        truth.convoys.setdefault(fleet[leader].plate, set()).add(follower.plate)
    originals = [i for i in range(vehicles) if fleet[i].plate not in truth.convoys]
    for original in rng.sample(originals, clones):
        o = fleet[original]
        far = np.flatnonzero((haversine_m(lon[o.home], lat[o.home], lon, lat) > 15_000)
                             & (haversine_m(lon[o.work], lat[o.work], lon, lat) > 10_000))
        if not len(far):
            continue
        home = int(rng.choice(far.tolist()))  # the twin lives and works across town
        fleet.append(Vehicle(o.plate, home, commute(home, (o.home, o.work)), rng.uniform(25, 60), rng.choice(COLORS),
                             rng.choice(TYPES)))
        truth.cloned_plates.add(o.plate)
    return City(cameras, fleet, truth, seed)
