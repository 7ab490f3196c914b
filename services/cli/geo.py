"""`sightline trajectory|clones|cotravel ...`: the geo analytics from the command line, case-bound and audited.

Every command prints JSON; bad input (a naive or inverted time range, a bad setting)
raises InputError, which `sightline` turns into a message and exit code 2.
"""
from __future__ import annotations

import argparse

from geo import clones, cotravel, trajectories
from models.plate_text import normalize_plate
from services.cli.accounts import case_args, record
from services.cli.cases import case_system
from services.cli.common import print_json, time_range


def _params(args: argparse.Namespace, *names: str) -> dict[str, object]:
    return {name: getattr(args, name) for name in ("start", "end", *names)}


def cmd_trajectory(args: argparse.Namespace) -> int:
    with case_system(args) as (system, case):
        start, end = time_range(args)
        plate = normalize_plate(args.plate)
        also = [m.plate for m in system.plates.search(plate, "fuzzy", max_distance=1.0)
                if m.plate != plate] if args.fuzzy else []
        found = trajectories.trajectory(system.store, plate, start, end, also=also).to_json()
        record(system, "trajectory", _params(args, "plate", "fuzzy", "stays"), case, len(found["points"]))
        print_json({"plate": found["plate"], "stays": found["stays"]} if args.stays else found)
    return 0


def cmd_clones(args: argparse.Namespace) -> int:
    with case_system(args) as (system, case):
        start, end = time_range(args)
        found = clones.scan(system.store, start, end,
                            clones.CloneSettings(args.max_speed_kmh, args.min_plate_score, args.min_distance_m))
        record(system, "clones", _params(args, "max_speed_kmh", "min_plate_score", "min_distance_m"), case,
               len(found))
        print_json({"count": len(found), "cases": [c.to_json() for c in found]})
    return 0


def cmd_cotravel(args: argparse.Namespace) -> int:
    with case_system(args) as (system, case):
        start, end = time_range(args)
        plate = normalize_plate(args.plate)
        found = cotravel.co_travellers(system.store, plate, start, end, args.window_s, args.min_cameras)
        record(system, "cotravel", _params(args, "plate", "window_s", "min_cameras"), case, len(found))
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
        case_args(parser)
        parser.set_defaults(func=func)
