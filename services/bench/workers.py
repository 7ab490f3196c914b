"""`sightline bench workers DIR --workers 1,2`: queue throughput with 1, 2, ... real worker processes.

For each worker count: a fresh data folder, N `sightline worker` processes (their model loading is timed apart:
the clock starts once every worker said it is ready), the photos of DIR queued at once (`--repeat` copies, each
made unique by a trailer after the image's end so its sha256 differs and it is really processed), and the clock
stops when the queue is empty and nothing is pending. Figures: photos/s, the queue lag (the oldest unfinished
frame's wait, largest seen) and the mean enqueue→acknowledge latency.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta, timezone
from pathlib import Path

import redis

from models.records import InputError
from services import cameras as camera_io
from services.bench.pipeline import check_repeat, unique_copy
from services.ingest import image_files
from services.queue import QueuedFrame, RedisFrameQueue, parse_queue_url
from services.settings import Settings
from services.system import Sightline

MAX_WORKERS = 64


def worker_counts(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--workers must be counts like 1,2,4, not {text!r}") from None
    if not counts or not all(1 <= n <= MAX_WORKERS for n in counts):
        raise InputError(f"--workers: each count from 1 to {MAX_WORKERS}, e.g. 1,2")
    return counts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """A throwaway redis-server (no persistence) on a free localhost port; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise InputError("redis-server is not installed: install it (apt-get install redis-server) or give --queue")
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                "no", "--dir", str(directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise InputError("the redis-server started for the benchmark did not answer") from None
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        process.terminate()
        process.wait(10)


def bench_workers(directory: Path, settings: Settings, workers: str, queue_url: str | None, roadnet: Path,
                  repeat: int = 3) -> dict:
    counts = worker_counts(workers)
    photos = image_files([directory])
    if not photos:
        raise InputError(f"{directory} holds no images")
    check_repeat(repeat)
    work = Path(tempfile.mkdtemp(prefix="sightline-bench-redis-"))
    try:
        if queue_url is None:
            with redis_server(work) as url:
                runs = [_run(url, n, photos, settings, roadnet, repeat) for n in counts]
        else:
            runs = [_run(parse_queue_url(queue_url), n, photos, settings, roadnet, repeat) for n in counts]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = runs[0]["photos_per_s"] / counts[0] if runs[0]["photos_per_s"] else 0
    for run in runs:
        run["speedup_vs_linear"] = round(run["photos_per_s"] / (base * run["workers"]), 2) if base else None
    return {"photos": len(photos) * repeat, "cpu_cores": os.cpu_count(), "runs": runs,
            "note": "each worker is one process with its own models; the clock starts when all are ready"}


def _run(url: str, n: int, photos: list[Path], settings: Settings, roadnet: Path, repeat: int) -> dict:
    data_dir = settings.data_dir / f"workers-{n}"
    queue = RedisFrameQueue(url, settings.max_upload_bytes).check()
    if queue.status().waiting or queue.status().pending:
        raise InputError(f"the queue at {url} is not empty: the benchmark needs an idle one")
    queue.clear()  # the figures of this run only
    with Sightline(Settings(data_dir=data_dir, model_dir=settings.model_dir, roads_geojson=None)) as system:
        cams = camera_io.from_roadnet(roadnet, limit=20)
        system.store.upsert_cameras(cams)
    command = [sys.executable, "-m", "services.cli.main", "--data", str(data_dir), "--models", str(settings.model_dir),
               "worker", "--queue", url]  # the worker's own batch: 8 frames, two model batches at once
    t_start = time.perf_counter()
    procs = [subprocess.Popen([*command, "--name", f"bench-{n}-{i}"], stdout=subprocess.PIPE, text=True)
             for i in range(n)]
    try:
        for p in procs:  # each prints one "ready" line once its models are loaded
            line = p.stdout.readline() if p.stdout else ""
            if '"ready"' not in line:
                raise InputError(f"a worker did not start (exit {p.poll()}): {line.strip()}")
        load_s = time.perf_counter() - t_start
        start = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)
        frames = (QueuedFrame(f"{p.name}#{c}", unique_copy(p.read_bytes(), c), cams[i % len(cams)].id,
                              start + timedelta(seconds=10 * (i + c * len(photos))))
                  for c in range(repeat) for i, p in enumerate(photos))
        t0 = time.perf_counter()
        total = queue.put(frames)
        max_lag = 0.0
        while True:
            status = queue.status()
            max_lag = max(max_lag, status.lag_s)
            if status.acked + status.dead_letters >= total and not status.waiting and not status.pending:
                break
            if any(p.poll() is not None for p in procs):
                raise InputError("a worker exited during the benchmark")
            time.sleep(0.1)
        elapsed = time.perf_counter() - t0
    finally:
        for p in procs:
            with suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        outputs = [p.communicate(timeout=60)[0] for p in procs]
        queue.close()
    done = [_last_json(text) for text in outputs]
    return {"workers": n, "photos": total, "seconds": round(elapsed, 2), "photos_per_s": round(total / elapsed, 2),
            "photos_per_s_per_worker": round(total / elapsed / n, 2), "worker_start_s": round(load_s, 1),
            "queue_lag_max_s": round(max_lag, 2), "mean_latency_s": status.mean_latency_s,
            "dead_letters": status.dead_letters, "acked_by_worker": [d.get("acked") for d in done]}


def _last_json(text: str) -> dict:
    """The worker's last line: its counts as JSON."""
    lines = text.strip().splitlines()
    with suppress(ValueError, IndexError):
        return dict(json.loads(lines[-1]))
    return {}
