"""`sightline bench search` and `sightline bench plates`: vector and plate search at scale, as JSON."""
from __future__ import annotations

import random
import resource
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import cv2
import faiss
import numpy as np

from indexer.plate_index import PlateDictionary
from indexer.sqlite_store import SQLiteStore
from indexer.store import FrameRecord, SightingQuery, StoredVector, VehicleColumns
from indexer.vectors import GRAPH_EF_SEARCH, GRAPH_LINKS, FaissIndex, candidate_plan, pq_bytes
from models.records import BBox, Camera, Sighting, SightingKind, VehicleAttributes
from services.bench.alerts import random_plate


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _percentiles(samples: list[float]) -> tuple[float, float]:
    return round(float(np.percentile(samples, 50)), 3), round(float(np.percentile(samples, 99)), 3)


def random_vectors(rng: np.random.Generator, n: int, dim: int, distribution: str) -> np.ndarray:
    """N random unit vectors. "uniform": i.i.d. on the sphere — no neighbourhood structure at all, the worst
    case for any index (every cosine ≈ 0 ± 1/√dim). "clustered": shaped like a sighting store — appearance
    groups (√n of them, e.g. "white SUV"), objects within a group, several sightings of each object."""
    if distribution == "uniform":
        data = rng.standard_normal(size=(n, dim), dtype=np.float32)
    else:
        groups = rng.standard_normal(size=(max(1, int(np.sqrt(n))), dim), dtype=np.float32)
        groups /= np.linalg.norm(groups, axis=1, keepdims=True)
        objects = groups[rng.integers(0, len(groups), max(1, n // 8))]
        objects += rng.standard_normal(size=objects.shape, dtype=np.float32) * np.float32(0.8 / np.sqrt(dim))
        objects /= np.linalg.norm(objects, axis=1, keepdims=True)
        data = objects[rng.integers(0, len(objects), n)]
        for lo in range(0, n, 100_000):  # in place, in chunks: no second copy of a 4 GB array
            chunk = data[lo:lo + 100_000]
            chunk += rng.standard_normal(size=chunk.shape, dtype=np.float32) * np.float32(0.5 / np.sqrt(dim))
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    return data


def bench_search(vectors: int, dim: int, real_dir: Path | None = None, queries: int = 200, seed: int = 0,
                 distribution: str = "clustered", kind: str = "hnsw") -> dict:
    """An index past its exact limit (an HNSW graph, or the compressed IVF re-ranking on the record store's floats,
    built as in production) against exact search, one query at a time.

    Queries are stored vectors seen again with noise (a new sighting of a known object); recall@10 is
    measured against exact inner-product search over the same vectors.
    """
    rng = np.random.default_rng(seed)
    data = random_vectors(rng, vectors, dim, distribution)
    real = 0
    if real_dir is not None:
        from models.embedders import vehicle_embedder

        photos = sorted(p for p in real_dir.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        images = [im for im in (cv2.imread(str(p)) for p in photos) if im is not None]
        embedded = np.concatenate([vehicle_embedder().embed(images[i:i + 32]) for i in range(0, len(images), 32)])
        if embedded.shape[1] == dim:
            data[: len(embedded)] = embedded
            real = len(embedded)
    probes = data[rng.choice(vectors, queries, replace=False)]
    probes = probes + rng.standard_normal(size=probes.shape, dtype=np.float32) * np.float32(0.3 / np.sqrt(dim))
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    ids = np.arange(1, vectors + 1)

    flat = faiss.IndexFlatIP(dim)
    flat.add(data)
    flat_ms, truth = [], []
    for q in probes:
        t = time.perf_counter()
        _, found = flat.search(q[None, :], 10)
        flat_ms.append((time.perf_counter() - t) * 1000)
        truth.append(set((found[0] + 1).tolist()))
    del flat

    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "db.sqlite")
        compressed = kind == "ivfpq"
        if compressed:  # it re-ranks on the record store's floats: they are stored first, as ingestion does
            _store_vectors(store, data)
        rss_before = _rss_mb()
        t = time.perf_counter()
        # past the exact limit: the graph or IVF is built in the background, from the vectors the index takes in
        # from the store on opening (stored ones) or is given
        index = FaissIndex(Path(tmp), "bench", dim, store, exact_limit=0, graph_limit=0 if compressed else vectors)
        if not compressed:
            index.add(ids, data)
        del data
        index.wait_for_build()
        build_s = time.perf_counter() - t
        ann_ms, recall = [], []
        for q, want in zip(probes, truth, strict=True):
            t = time.perf_counter()
            _, found = index.search(q[None, :], 10)
            ann_ms.append((time.perf_counter() - t) * 1000)
            recall.append(len(want & set(found[0].tolist())) / 10)
        kind, lists = index.kind, getattr(index.index, "nlist", None)
        index.save()
        index_file_mb = index.path.stat().st_size / 2**20
        rss_now = _current_rss_mb()
        store.close()
    if not recall or kind != ("ivfpq" if compressed else "hnsw"):
        raise RuntimeError(f"bench search measured nothing: the index is {kind}, {len(recall)} queries answered")
    p50, p99 = _percentiles(ann_ms)
    flat_p50, _ = _percentiles(flat_ms)
    graph = kind == "hnsw"
    depth, nprobe = candidate_plan(10, lists or 1)  # a query for 10 hits
    per_vector = 8 + 16 + (dim * 4 + 2 * GRAPH_LINKS * 4 if graph else pq_bytes(dim))  # ids both ways, then data
    return {"vectors": vectors, "dim": dim, "distribution": distribution, "real_vectors": real, "index": kind,
            "lists": lists, "nprobe": None if graph else nprobe,
            "links": GRAPH_LINKS if graph else None, "ef_search": GRAPH_EF_SEARCH if graph else None,
            "pq_bytes": None if graph else pq_bytes(dim), "reranked": None if graph else depth,
            "p50_ms": p50, "p99_ms": p99,
            "recall_at_10": round(float(np.mean(recall)), 4), "flat_p50_ms": flat_p50,
            "speedup_vs_flat": round(flat_p50 / p50, 1) if p50 else None, "build_s": round(build_s, 1),
            # a graph keeps every float and ~2 × links neighbours a vector at its lowest level; the compressed IVF
            # its PQ codes and centroids (its floats stay in the record store, on disk)
            "memory_mb": round((vectors * per_vector + (lists or 0) * dim * 4) / 2**20, 1),
            "index_file_mb": round(index_file_mb, 1),
            "peak_rss_growth_mb": round(_rss_mb() - rss_before, 1), "rss_after_build_mb": round(rss_now, 1)}


def _store_vectors(store: SQLiteStore, data: np.ndarray, batch: int = 5_000) -> None:
    """The vectors as sightings of one synthetic camera, ids 1..n in order, a frame (one transaction) per batch."""
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for lo in range(0, len(data), batch):
        rows = [Sighting(f"b{lo + i}", "bench", t0, SightingKind.VEHICLE, BBox(0, 0, 1, 1), 0.9, VehicleAttributes())
                for i in range(min(batch, len(data) - lo))]
        store.add_frame(FrameRecord(f"bench-{lo}", "bench", t0, "synthetic"), rows,
                        [StoredVector(r.id, "bench", v) for r, v in zip(rows, data[lo:lo + batch], strict=True)])


def _current_rss_mb() -> float:
    """Resident memory now (the peak above includes a build's transient copies)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def bench_plates(sightings: int, distinct: int | None = None, queries: int = 100, seed: int = 1) -> dict:
    """A store with N synthetic vehicle sightings (bulk-loaded as columns): plate search latencies, each
    including the fetch of up to 20 sightings per matching plate by the (plate, time) index."""
    rng = random.Random(seed)
    distinct = distinct or max(100, sightings // 20)
    plates = sorted({random_plate(rng) for _ in range(distinct)})
    start_us = int(datetime(2026, 11, 2, tzinfo=timezone.utc).timestamp() * 1_000_000)
    pick = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "db.sqlite")
        store.upsert_cameras([Camera("c", "c", 121.3, 31.2)])
        t = time.perf_counter()
        for offset in range(0, sightings, 1_000_000):
            n = min(1_000_000, sightings - offset)
            chosen = pick.integers(0, len(plates), n)
            store.add_vehicle_columns(VehicleColumns(
                ids=[f"s{offset + i}" for i in range(n)], camera_ids=["c"] * n,
                ts_us=start_us + (offset + np.arange(n, dtype=np.int64)) * 1_000_000,
                plates=[plates[i] for i in chosen.tolist()], plate_scores=np.full(n, 0.9),
                vehicle_colors=[None] * n, vehicle_types=[None] * n))
        load_s = time.perf_counter() - t
        t = time.perf_counter()
        dictionary = PlateDictionary(store)
        dictionary_s = time.perf_counter() - t
        timings: dict[str, list[float]] = {"exact": [], "wildcard": [], "wildcard_noprefix": [], "fuzzy": [],
                                           "suffix": []}
        for plate in rng.sample(plates, min(queries, len(plates))):
            noisy = plate[:4] + ("Z" if plate[4] != "Z" else "2") + plate[5:]  # one reader confusion
            noisy = noisy[:6] + ("7" if noisy[6] != "7" else "1")  # and one plain substitution
            for mode, q, kind in (("exact", plate, "exact"),
                                  ("wildcard", plate[:2] + "?" + plate[3:5] + "*", "wildcard"),
                                  ("wildcard_noprefix", "*" + plate[3:6] + "?", "wildcard"), ("fuzzy", noisy, "fuzzy"),
                                  ("suffix", plate[-4:], "suffix")):
                t = time.perf_counter()
                for match in dictionary.search(q, kind, limit=20):
                    store.query(SightingQuery(kind="vehicle", plate=match.plate, limit=20))
                timings[mode].append((time.perf_counter() - t) * 1000)
        store.close()
    return {"sightings": sightings, "distinct_plates": len(plates), "load_s": round(load_s, 1),
            "dictionary_load_s": round(dictionary_s, 1),
            **{f"{mode}_p50_ms": _percentiles(ms)[0] for mode, ms in timings.items()},
            **{f"{mode}_p99_ms": _percentiles(ms)[1] for mode, ms in timings.items()}}
