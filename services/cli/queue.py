"""`sightline worker` and `sightline queue ...`: the scale-out commands (services/queue.py, services/worker.py)."""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from models.records import InputError
from services.cli.common import open_system, print_json, settings_of
from services.queue import QueuedFrame, RedisFrameQueue, default_consumer, parse_queue_url, status_json
from services.settings import Settings
from services.system import Sightline


def queue_url(args: argparse.Namespace) -> str:
    """--queue, else SIGHTLINE_QUEUE; checked for shape (reachability is checked when it is opened)."""
    url = args.queue or settings_of(args).queue
    if not url:
        raise InputError("give --queue redis://HOST:PORT/DB or set SIGHTLINE_QUEUE")
    return parse_queue_url(url)


def open_queue(args: argparse.Namespace) -> RedisFrameQueue:
    return RedisFrameQueue(queue_url(args), settings_of(args).max_upload_bytes).check()


def worker_settings(args: argparse.Namespace) -> Settings:
    """A worker's settings: the queue, and no FAISS index of its own (services/worker.py says why); a shared
    vector backend (a cluster every process writes to) stays as configured; Elasticsearch commits without waiting
    for a refresh (indexer/es_store.py says why)."""
    settings = settings_of(args)
    vectors = "store-only" if settings.vector_backend == "faiss" else settings.vector_backend
    return replace(settings, queue=queue_url(args), vector_backend=vectors, es_visible_on_commit=False)


def cmd_worker(args: argparse.Namespace) -> int:
    from services.worker import serve

    if args.batch < 1 or args.max_tries < 1:
        raise InputError("--batch and --max-tries must be 1 or more")
    if not 0.1 <= args.claim_timeout <= 86_400:
        raise InputError("--claim-timeout must be between 0.1 and 86400 seconds")
    name = args.name or default_consumer()
    try:
        system = Sightline(worker_settings(args))
    except OSError as exc:  # a folder that cannot be made or opened
        raise InputError(f"the data folder cannot be opened ({exc.strerror or exc})") from None
    with system:
        counts = serve(system, name, args.batch, args.claim_timeout, args.max_tries)
    print(json.dumps({"worker": name, **counts.__dict__}), flush=True)  # one line: supervisors read the last
    return 0


def cmd_queue(args: argparse.Namespace) -> int:
    queue = open_queue(args)
    try:
        if args.action == "status":
            print_json(status_json(queue.status()))
        elif args.action == "dead":
            print_json(queue.dead_letters(args.limit))
        else:
            print_json({"requeued": queue.retry_dead()})
    finally:
        queue.close()
    return 0


def enqueue(args: argparse.Namespace, rows: list[tuple[Path, str, datetime]]) -> int:
    """`ingest ... --queue URL`: the checked rows (file, camera, time) onto the queue; prints how many."""
    limit = settings_of(args).max_upload_bytes
    big = [f"{path} ({path.stat().st_size} bytes)" for path, _, _ in rows if path.stat().st_size > limit]
    if big:
        raise InputError(f"over the limit of {limit} bytes (SIGHTLINE_MAX_UPLOAD_MB), nothing was queued: "
                         + ", ".join(big))
    queue = open_queue(args)
    try:
        with open_system(args) as system:  # the cameras must be registered, as for a direct ingest
            for camera_id in sorted({r[1] for r in rows}):
                if system.store.get_camera(camera_id) is None:
                    raise InputError(f"unknown camera {camera_id!r}: import it first with `sightline cameras import`")
        queued = queue.put(QueuedFrame(str(path), path.read_bytes(), camera_id, ts) for path, camera_id, ts in rows)
    finally:
        queue.close()
    print_json({"queued": queued, "queue": queue.url})
    return 0


def add_queue_commands(sub: argparse._SubParsersAction) -> None:
    w = sub.add_parser("worker", help="ingest frames from the queue (run as many as the machines allow)")
    w.add_argument("--queue", help="redis://HOST:PORT/DB (default $SIGHTLINE_QUEUE)")
    w.add_argument("--batch", type=int, default=8, help="frames taken from the queue at a time")
    w.add_argument("--name", help="this consumer's name in the group (default HOST-PID)")
    w.add_argument("--claim-timeout", type=float, default=60.0,
                   help="seconds after which another worker's unacknowledged frames are taken back")
    w.add_argument("--max-tries", type=int, default=3, help="tries before a frame goes to the dead letters")
    w.set_defaults(func=cmd_worker)

    q = sub.add_parser("queue", help="the frame queue: status, dead letters, retry them")
    q.add_argument("action", choices=["status", "dead", "retry-dead"])
    q.add_argument("--queue", help="redis://HOST:PORT/DB (default $SIGHTLINE_QUEUE)")
    q.add_argument("--limit", type=int, default=100, help="dead: how many to list")
    q.set_defaults(func=cmd_queue)

