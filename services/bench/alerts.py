"""`sightline bench alerts`: alert latency to a live SSE subscriber, and ingest throughput with and without rules.

Sightings are synthetic (random plates and face vectors) but go through the real
commit path — crop files, the SQLite transaction, FAISS, the alert engine, the
HTTP server's SSE stream — so the figures isolate the rules' cost. With a photo
folder, the real models also run on real photos without and with the rules.
"""
from __future__ import annotations

import json
import random
import threading
import time
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import numpy as np

from indexer.store import FrameRecord
from models.imageops import decode_image
from models.observations import FramePipeline, Observation
from models.plate_text import PROVINCES
from models.records import BBox, Camera, FaceAttributes, Sighting, SightingKind, VehicleAttributes
from models.spaces import SPACES
from models.watchlists import Rule, WatchEntry
from services.api.localserver import serving
from services.ingest import Ingestor, image_files, jobs_from_files
from services.settings import Settings
from services.system import Sightline
from services.watchlists import EntrySpec, WatchlistService

LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
ALNUM = LETTERS + "0123456789"
START = datetime(2026, 11, 2, tzinfo=timezone.utc)
CAMERA = Camera("bench", "bench", 121.3, 31.2)


def random_plate(rng: random.Random) -> str:
    return rng.choice(PROVINCES) + rng.choice(LETTERS) + "".join(rng.choice(ALNUM) for _ in range(5))


def unit_vector(rng: np.random.Generator, dim: int) -> np.ndarray:
    v = rng.normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


class SyntheticFrames:
    """Frames of one vehicle with a plate and one face, committed through Ingestor.commit."""

    def __init__(self, seed: int = 7):
        self.rng, self.np_rng = random.Random(seed), np.random.default_rng(seed)
        self.image = np.full((64, 64, 3), 128, np.uint8)
        self.count = 0

    def commit(self, ingestor: Ingestor, plate: str | None = None) -> None:
        box = BBox(0, 0, 64, 64)
        observations = [
            Observation(SightingKind.VEHICLE, box, 0.9,
                        VehicleAttributes(plate=plate or random_plate(self.rng), plate_score=0.95), self.image,
                        unit_vector(self.np_rng, SPACES["vehicle"]), "vehicle"),
            Observation(SightingKind.FACE, box, 0.9, FaceAttributes(quality=0.9), self.image,
                        unit_vector(self.np_rng, SPACES["face"]), "face"),
        ]
        self.count += 1
        frame = FrameRecord(uuid.uuid4().hex, CAMERA.id, START + timedelta(seconds=self.count), "bench")
        ingestor.commit(frame, observations)

    def rate(self, ingestor: Ingestor, n: int) -> float:
        """Sightings per second over n frames (two sightings each)."""
        t0 = time.perf_counter()
        for _ in range(n):
            self.commit(ingestor)
        return 2 * n / (time.perf_counter() - t0)


def _fresh(settings: Settings, name: str, pipeline: FramePipeline | None = None) -> Sightline:
    """A system of its own in a sub-folder: no watchlists, so no rules to check."""
    system = Sightline(replace(settings, data_dir=settings.data_dir / name), pipeline)
    system.store.upsert_cameras([CAMERA])
    return system


def _load_rules(watchlists: WatchlistService, rules: int, plates: list[str], faces: int,
                rng: np.random.Generator) -> None:
    plate_list = watchlists.create("bench plates", "plate", created_by="bench")
    tenth = max(1, len(plates) // 10)
    spec = ([EntrySpec("bench", "bench", p, "exact") for p in plates[: -2 * tenth]]
            + [EntrySpec("bench", "bench", p[:4] + "*", "wildcard") for p in plates[-2 * tenth: -tenth]]
            + [EntrySpec("bench", "bench", p, "fuzzy", 1) for p in plates[-tenth:]])
    watchlists.add_entries(plate_list.id, spec)
    face_list = watchlists.create("bench faces", "face", created_by="bench")
    # Random enrolled faces go straight to the store: enrolment from photos would need as many photos.
    enrolled = [WatchEntry(uuid.uuid4().hex[:12], face_list.id, "bench", "bench", f"face-{i}") for i in range(faces)]
    watchlists.store.add_entries(enrolled, [unit_vector(rng, 128) for _ in range(faces)])
    for i in range(rules):
        watchlists.put_rule(Rule(uuid.uuid4().hex[:12], f"rule-{i}",
                                 watchlist_id=(plate_list.id, face_list.id)[i % 2], cooldown_s=0))


def bench_alerts(settings: Settings, rules: int, entries: int, faces: int, sightings: int,
                 photos_dir: Path | None) -> dict:
    from services.api.app import create_app

    frames = SyntheticFrames()
    plates = [random_plate(frames.rng) for _ in range(entries)]
    plain = _fresh(settings, "plain")
    rate_plain = frames.rate(plain.ingestor, sightings // 2)
    plain.close()

    app = create_app(settings)
    system = app.state.system
    system.store.upsert_cameras([CAMERA])
    _load_rules(system.watchlists, rules, plates, faces, frames.np_rng)
    ingestor = system.ingestor
    stored_at: dict[str, float] = {}

    def record(stored: list[Sighting], _vectors: dict) -> None:  # runs right after the commit, before the rules
        now = time.perf_counter()
        stored_at.update((s.id, now) for s in stored)

    ingestor.listeners.insert(0, record)
    latencies: list[float] = []
    refused: list[str] = []
    measured = min(100, entries)
    _, token = system.accounts.add("bench-duty-officer", "viewer")  # the stream, like every route, needs a user
    with serving(app) as url:
        signed = httpx.post(f"{url}/auth/login", json={"token": token}, timeout=30)  # the web app's session cookie
        signed.raise_for_status()
        done, ready = threading.Event(), threading.Event()

        def listen() -> None:
            with httpx.stream("GET", url + "/alerts/stream", cookies=signed.cookies, timeout=120) as response:
                if response.status_code != 200:
                    refused.append(f"HTTP {response.status_code} {response.read().decode(errors='replace')[:200]}")
                    ready.set()
                    done.set()
                    return
                for line in response.iter_lines():
                    ready.set()
                    if line.startswith("data: "):
                        alert = json.loads(line[6:])
                        latencies.append((time.perf_counter() - stored_at[alert["sighting_id"]]) * 1000)
                        if len(latencies) >= measured:
                            done.set()
                            return

        threading.Thread(target=listen, daemon=True).start()
        ready.wait(10)
        for plate in plates[:measured]:
            frames.commit(ingestor, plate)
            time.sleep(0.01)
        done.wait(30)
        if not latencies:  # a bench that measured nothing must not look like a result
            raise RuntimeError("bench alerts measured no alert: the alert stream "
                               + (f"refused the listener ({refused[0]})" if refused else "sent none within 30 s"))
        ingestor.listeners.remove(record)
        rate_rules = frames.rate(ingestor, sightings // 2)
        photo_rates = _photo_rates(settings, photos_dir, system) if photos_dir is not None else {}
    result = {"rules": rules, "plate_entries": entries, "enrolled_faces": faces, "alerts_measured": len(latencies),
              "p50_ms": round(float(np.percentile(latencies, 50)), 2) if latencies else None,
              "p99_ms": round(float(np.percentile(latencies, 99)), 2) if latencies else None,
              "sightings_per_s_without_rules": round(rate_plain, 1), "sightings_per_s_with_rules": round(rate_rules, 1),
              "slowdown": round(1 - rate_rules / rate_plain, 3), **photo_rates}
    return result


def _photo_rates(settings: Settings, photos_dir: Path, loaded: Sightline) -> dict:
    """The real models on real photos, each run into a fresh store: without, then with the loaded rules."""
    photos = image_files([photos_dir])
    rows = [(p, CAMERA.id, START + timedelta(seconds=i)) for i, p in enumerate(photos)]
    loaded.pipeline.process([decode_image(photos[0].read_bytes())])  # warm-up
    rates = {}
    for name, hooked in (("without_rules", False), ("with_rules", True)):
        system = _fresh(settings, f"photos-{name}", loaded.pipeline)
        ingestor = system.ingestor
        if hooked:
            ingestor.listeners.append(loaded.rules.check)
        t0 = time.perf_counter()
        ingestor.ingest(jobs_from_files(rows))
        rates[name] = len(photos) / (time.perf_counter() - t0)
        system.close()
    return {"photos": len(photos), "photos_per_s_without_rules": round(rates["without_rules"], 2),
            "photos_per_s_with_rules": round(rates["with_rules"], 2),
            "photo_slowdown": round(1 - rates["with_rules"] / rates["without_rules"], 3)}
