"""`sightline trajectory|clones|cotravel ...` and `sightline bench geo`: the geo analytics from the command line.

Every command prints JSON; bad input (a naive or inverted time range, a bad setting)
raises InputError, which `sightline` turns into a message and exit code 2.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path

from geo import bench, clones, cotravel, trajectories
from indexer.plate_index import PlateDictionary
from models.plate_text import normalize_plate
from services.cameras import from_roadnet
from services.system import ROADNET, Settings, Sightline

BENCH_FORMAT = 1  # bump when the simulator changes, so a cached city is rebuilt


def print_json(obj: object) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


def _open(args: argparse.Namespace) -> Sightline:
    return Sightline(Settings.with_dirs(args.data, args.models))


def time_range(args: argparse.Namespace) -> tuple[datetime | None, datetime | None]:
    return trajectories.parse_range(args.start, args.end)


def cmd_trajectory(args: argparse.Namespace) -> int:
    with _open(args) as system:
        start, end = time_range(args)
        plate = normalize_plate(args.plate)
        also = [m.plate for m in PlateDictionary(system.store).search(plate, "fuzzy", max_distance=1.0)
                if m.plate != plate] if args.fuzzy else []
        found = trajectories.trajectory(system.store, plate, start, end, also=also).to_json()
        print_json({"plate": found["plate"], "stays": found["stays"]} if args.stays else found)
    return 0


def cmd_clones(args: argparse.Namespace) -> int:
    with _open(args) as system:
        start, end = time_range(args)
        found = clones.scan(system.store, start, end,
                            clones.CloneSettings(args.max_speed_kmh, args.min_plate_score, args.min_distance_m))
        print_json({"count": len(found), "cases": [c.to_json() for c in found]})
    return 0


def cmd_cotravel(args: argparse.Namespace) -> int:
    with _open(args) as system:
        start, end = time_range(args)
        plate = normalize_plate(args.plate)
        found = cotravel.co_travellers(system.store, plate, start, end, args.window_s, args.min_cameras)
        print_json({"plate": plate, "companions": [c.to_json() for c in found]})
    return 0


def add_geo_commands(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("trajectory", help="a plate's trajectory: legs, trips and stay points (GeoJSON inside)")
    t.add_argument("plate")
    t.add_argument("--fuzzy", action="store_true", help="add the plate's misreads (one confusion or edit away)")
    t.add_argument("--stays", action="store_true", help="only the stay points")
    c = sub.add_parser("clones", help="cloned-plate cases over a time range")
    c.add_argument("--max-speed-kmh", type=float, default=150.0)
    c.add_argument("--min-plate-score", type=float, default=0.8)
    c.add_argument("--min-distance-m", type=float, default=1000.0)
    v = sub.add_parser("cotravel", help="vehicles that travel with a target plate")
    v.add_argument("plate")
    v.add_argument("--window-s", type=float, default=60.0)
    v.add_argument("--min-cameras", type=int, default=3)
    for parser, func in ((t, cmd_trajectory), (c, cmd_clones), (v, cmd_cotravel)):
        parser.add_argument("--start", help="ISO 8601 with a time zone")
        parser.add_argument("--end", help="ISO 8601 with a time zone")
        parser.set_defaults(func=func)


def bench_geo(n: int, cache_dir: Path | None = None, days: int = 7, seed: int = 11, roadnet: Path = ROADNET) -> dict:
    """The simulated city at n sightings. With cache_dir, the loaded city is kept there and reused by later runs
    (a 10M load takes minutes); without it, a temporary folder is used and removed."""
    folder = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="sightline-bench-geo-"))
    data = folder / f"geo-v{BENCH_FORMAT}-n{n}-d{days}-s{seed}"
    marker = data / "loaded.json"
    if not marker.is_file():
        shutil.rmtree(data, ignore_errors=True)  # a load that was cut short
    system = Sightline(Settings(data_dir=data))
    try:
        city = bench.city_for(from_roadnet(roadnet), n, days, seed)
        if marker.is_file():
            loaded = bench.Loaded(**json.loads(marker.read_text()))
            load_s = None
        else:
            started = time.perf_counter()
            loaded = bench.load(system.store, city, n, days)
            load_s = round(time.perf_counter() - started, 1)
            marker.write_text(json.dumps(loaded.__dict__))
        return {**bench.measure(system.store, city, loaded, seed), "load_s": load_s, "cached": load_s is None}
    finally:
        system.close()
        if cache_dir is None:
            shutil.rmtree(folder, ignore_errors=True)
