"""`sightline bench search` and `sightline bench plates`: vector and plate search at scale, as JSON."""
from __future__ import annotations

import random
import resource
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import faiss
import numpy as np

from indexer.plate_index import PlateDictionary
from indexer.sqlite_store import SQLiteStore
from indexer.store import SightingQuery
from indexer.vectors import FaissIndex
from models.records import BBox, Camera, Sighting, VehicleAttributes
from services.bench_alerts import random_plate


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _percentiles(samples: list[float]) -> tuple[float, float]:
    return round(float(np.percentile(samples, 50)), 3), round(float(np.percentile(samples, 99)), 3)


def bench_search(vectors: int, dim: int, real_dir: Path | None = None, queries: int = 200, seed: int = 0) -> dict:
    """Random unit vectors (plus real embeddings of the photos under real_dir): HNSW against exact search."""
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(vectors, dim)).astype(np.float32)
    real = 0
    if real_dir is not None:
        from models.embedders import vehicle_embedder

        photos = sorted(p for p in real_dir.rglob("*.jpg"))
        embedded = vehicle_embedder().embed([cv2.imread(str(p)) for p in photos])
        if embedded.shape[1] == dim:
            data[: len(embedded)] = embedded
            real = len(embedded)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    probes = data[rng.choice(vectors, queries, replace=False)] + rng.normal(scale=0.05, size=(queries, dim)).astype(np.float32)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    ids = np.arange(1, vectors + 1)

    flat = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    flat.add_with_ids(data, ids)
    flat_ms = []
    truth = []
    for q in probes:
        t = time.perf_counter()
        _, found = flat.search(q[None, :], 10)
        flat_ms.append((time.perf_counter() - t) * 1000)
        truth.append(set(found[0].tolist()))
    del flat

    rss_before = _rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "db.sqlite")
        index = FaissIndex(Path(tmp), "bench", dim, store, exact_limit=0)
        t = time.perf_counter()
        index.add(ids, data)  # past the exact limit: the HNSW build starts in the background
        index.wait_for_build()
        build_s = time.perf_counter() - t
        ann_ms, recall = [], []
        for q, want in zip(probes, truth):
            t = time.perf_counter()
            _, found = index.search(q[None, :], 10)
            ann_ms.append((time.perf_counter() - t) * 1000)
            recall.append(len(want & set(found[0].tolist())) / 10)
        kind = index.kind
        store.close()
    p50, p99 = _percentiles(ann_ms)
    flat_p50, _ = _percentiles(flat_ms)
    return {"vectors": vectors, "dim": dim, "real_vectors": real, "index": kind, "p50_ms": p50, "p99_ms": p99,
            "recall_at_10": round(float(np.mean(recall)), 4), "flat_p50_ms": flat_p50,
            "speedup_vs_flat": round(flat_p50 / p50, 1) if p50 else None, "build_s": round(build_s, 1),
            "memory_mb": round(vectors * dim * 4 / 2**20 + vectors * 32 * 2 * 4 / 2**20, 1),
            "peak_rss_growth_mb": round(_rss_mb() - rss_before, 1)}


def bench_plates(sightings: int, distinct: int | None = None, queries: int = 100, seed: int = 1) -> dict:
    """A store with N synthetic vehicle sightings: exact, wildcard and fuzzy plate search latencies."""
    rng = random.Random(seed)
    distinct = distinct or max(100, sightings // 20)
    plates = [random_plate(rng) for _ in range(distinct)]
    start = datetime(2026, 11, 2, tzinfo=timezone.utc)
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "db.sqlite")
        store.upsert_cameras([Camera("c", "c", 121.3, 31.2)])
        t = time.perf_counter()
        for offset in range(0, sightings, 100_000):
            store.add_sightings([Sighting(f"s{offset + i}", "c", start + timedelta(seconds=offset + i), "vehicle",
                                          BBox(0, 0, 1, 1), 0.9, VehicleAttributes(plate=rng.choice(plates), plate_score=0.9))
                                 for i in range(min(100_000, sightings - offset))])
        load_s = time.perf_counter() - t
        dictionary = PlateDictionary(store)
        timings: dict[str, list[float]] = {"exact": [], "wildcard": [], "fuzzy": []}
        for plate in rng.sample(plates, min(queries, len(plates))):
            noisy = plate[:4] + ("Z" if plate[4] != "Z" else "2") + plate[5:]
            for mode, q in (("exact", plate), ("wildcard", plate[:2] + "?" + plate[3:5] + "*"), ("fuzzy", noisy)):
                t = time.perf_counter()
                for match in dictionary.search(q, mode, limit=20):
                    store.query(SightingQuery(kind="vehicle", plate=match.plate, limit=20))
                timings[mode].append((time.perf_counter() - t) * 1000)
        store.close()
    return {"sightings": sightings, "distinct_plates": distinct, "load_s": round(load_s, 1),
            **{f"{mode}_p50_ms": _percentiles(ms)[0] for mode, ms in timings.items()},
            **{f"{mode}_p99_ms": _percentiles(ms)[1] for mode, ms in timings.items()}}
