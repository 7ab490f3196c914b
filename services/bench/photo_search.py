"""`sightline bench photo-search`: vehicle photo search end to end at a store of N vehicle sightings, as JSON.

The store: the eval vehicles of one camera (`eval/reid/vehicle/<id>/cam1_*.jpg`) ingested through the real
Ingestor and models (so each gets its crop and its stored local features), plus synthetic distractor sightings
up to N. A distractor must look like a stored vehicle to the search without being any eval vehicle:
- its vector is drawn from a Gaussian fitted to real vehicle embeddings (the mean plus a random combination of
  the real vectors' deviations from it, i.e. their sample covariance, plus a little isotropic noise), so its
  similarities to a query are spread like those of real, different vehicles;
- its crop and local features are those of one real vehicle that is not in the eval set (the cars of
  `eval/plates/full` and of frames of `eval/video/car-detection.mp4`, detected by the real models), shared by
  many distractors (features live beside the crop, so one blob serves them all and the disk holds ~100 of them,
  not 100k); its colour and type are that vehicle's.
The queries are the other camera's photos, each through the real `SearchService.image` (decode, detect, embed,
describe, search, the probe's local features, verify), twice interleaved: with the stored features (today's path)
and with the features extracted from the candidates' crops at query time (the path before features were stored).
"""
from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np

from indexer.store import FrameRecord, StoredVector
from models.observations import Detection, FramePipeline, ObjectDescription, Observation
from models.records import BBox, Camera, InputError, Sighting, SightingKind, VehicleAttributes
from models.rerank import LocalFeatures, Verifier, features_key
from services.bench.evaluation import identity_kind, labelled_images
from services.ingest import PhotoJob
from services.search import Filters, Hit, Probe, SearchService
from services.settings import Settings
from services.system import Sightline

STAGES = ("decode", "detect", "embed", "describe", "search", "features", "verify")
_T0 = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)


@dataclass
class _Clock:
    """Seconds per stage of the current query; stages that run in threads beside each other overlap."""

    spent: dict[str, float] = field(default_factory=dict)
    _threads: threading.local = field(default_factory=threading.local)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def active(self) -> str | None:
        """The stage this thread is timing now."""
        return getattr(self._threads, "stage", None)

    @contextmanager
    def within(self, stage: str) -> Iterator[None]:
        """Mark this thread as working for `stage` (a stage's own worker threads), without timing it again."""
        outer, self._threads.stage = self.active, stage
        try:
            yield
        finally:
            self._threads.stage = outer

    def timed(self, stage: str, fn: Callable, *args: object) -> object:  # noqa: ANN401 - any wrapped call
        t = time.perf_counter()
        try:
            with self.within(stage):
                return fn(*args)
        finally:
            elapsed = time.perf_counter() - t
            with self._lock:
                self.spent[stage] = self.spent.get(stage, 0.0) + elapsed


class _TimedVerifier:
    """The verifier with the probe's own local features timed (`features`); what it extracts inside a timed stage
    (the candidates' features, on the crops path) stays that stage's."""

    def __init__(self, inner: Verifier, clock: _Clock):
        self.inner, self.clock = inner, clock

    def extract(self, image: np.ndarray) -> LocalFeatures:
        if self.clock.active is not None:
            return self.inner.extract(image)
        return self.clock.timed("features", self.inner.extract, image)  # type: ignore[return-value]

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


class _TimedPipeline:
    """The real pipeline, timed: detect, embed_crops (the probe's vector) and describe_object (its colour, type
    and plate)."""

    def __init__(self, inner: FramePipeline, clock: _Clock):
        self.inner, self.clock = inner, clock

    def detect(self, frames: list[np.ndarray], min_score: float | None = None) -> list[list[Detection]]:
        return self.clock.timed("detect", self.inner.detect, frames, min_score)  # type: ignore[return-value]

    def embed_crops(self, crops: list[np.ndarray], kind: str) -> np.ndarray:
        return self.clock.timed("embed", self.inner.embed_crops, crops, kind)  # type: ignore[return-value]

    def describe_object(self, image: np.ndarray, kind: str) -> ObjectDescription:
        return self.clock.timed("describe", self.inner.describe_object, image, kind)  # type: ignore[return-value]


class _TimedSearch(SearchService):
    """SearchService with its stages timed; `from_crops` makes verification ignore the stored features."""

    clock: _Clock
    from_crops = False
    before_verify: Sighting | None = None
    candidates: tuple[str, ...] = ()  # the sightings the last query verified, by id
    probe_vector: np.ndarray | None = None  # the last query's vector, and the sightings the index answered
    found: tuple[str, ...] = ()

    def probe(self, data: bytes, kind: str, pick: int | None) -> tuple[Probe, list]:
        return self.clock.timed("probe", super().probe, data, kind, pick)  # type: ignore[return-value]

    def nearest(self, space: str, vector: np.ndarray, k: int, filters: Filters, kind: str
                ) -> list[tuple[Sighting, float]]:
        hits: list[tuple[Sighting, float]] = self.clock.timed(  # type: ignore[assignment]
            "search", super().nearest, space, vector, k, filters, kind)
        self.probe_vector, self.found = vector, tuple(s.id for s, _ in hits)
        return hits

    def verify(self, query: LocalFeatures, ranked: list[Hit]) -> list[Hit]:
        self.before_verify = ranked[0].sighting if ranked else None
        self.candidates = tuple(h.sighting.id for h in ranked[: self.verifier.top_k])
        return self.clock.timed("verify", super().verify, query, ranked)  # type: ignore[return-value]

    def local_features(self, sighting: Sighting) -> tuple[LocalFeatures | None, bool]:
        if self.from_crops:
            return self.crop_features(sighting), False
        return super().local_features(sighting)

    def crop_features(self, sighting: Sighting) -> LocalFeatures | None:
        # a candidate's, extracted in verify's own threads: verify's time, not the probe's `features`
        with self.clock.within("verify"):
            return super().crop_features(sighting)


def _pool(pipeline: FramePipeline, eval_root: Path, video_frames: int) -> list[Observation]:
    """Real vehicles that are not in the re-id set: the cars of the plate photos and of a road video's frames."""
    photos = sorted((eval_root / "plates" / "full").glob("*.jpg"))
    frames = [im for p in photos if (im := cv2.imread(str(p))) is not None]
    video = cv2.VideoCapture(str(eval_root / "video" / "car-detection.mp4"))
    total = int(video.get(cv2.CAP_PROP_FRAME_COUNT)) or 1
    for i in range(video_frames):
        video.set(cv2.CAP_PROP_POS_FRAMES, i * total // video_frames)
        ok, frame = video.read()
        if ok:
            frames.append(frame)
    video.release()
    out: list[Observation] = []
    for i in range(0, len(frames), 4):
        out += [ob for obs in pipeline.process(frames[i:i + 4]) for ob in obs
                if ob.kind == SightingKind.VEHICLE and ob.vector is not None and min(ob.crop.shape[:2]) >= 32]
    return out


class _ExactSearch:
    """Exact nearest sightings over every stored vehicle vector (the gallery's and the distractors'), by id."""

    def __init__(self, real: np.ndarray, real_ids: list[str], distractors: np.ndarray, distractor_ids: list[str]):
        self.parts = [(real, np.array(real_ids)), (distractors, np.array(distractor_ids))]

    def top(self, vector: np.ndarray | None, k: int) -> list[str]:
        if vector is None or k <= 0:
            return []
        scores = np.concatenate([m @ vector if len(m) else np.zeros(0, np.float32) for m, _ in self.parts])
        ids = np.concatenate([i for _, i in self.parts])
        best = np.argpartition(-scores, min(k, len(scores)) - 1)[:k] if len(scores) > k else np.arange(len(scores))
        return ids[best[np.argsort(-scores[best], kind="stable")]].tolist()


def _cctv_pool(pipeline: FramePipeline, eval_root: Path, limit: int, batch: int = 32) -> list[Observation]:
    """Up to `limit` vehicle crops of `eval/traffic_cctv` (another road's highway camera; evenly spread over its
    sorted list when fewer than all), as observations of their own: each embedded and described (colour, type) as
    a photo-search probe is."""
    paths = sorted((eval_root / "traffic_cctv" / "crops").glob("*/*.jpg"))
    if limit < len(paths):
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, limit).astype(int)] if limit > 0 else []
    crops = [im for p in paths if (im := cv2.imread(str(p))) is not None and min(im.shape[:2]) >= 32]
    out: list[Observation] = []
    for lo in range(0, len(crops), batch):
        part = crops[lo:lo + batch]
        for crop, vector in zip(part, pipeline.embed_crops(part, SightingKind.VEHICLE), strict=True):
            described = pipeline.describe_object(crop, SightingKind.VEHICLE)
            attributes = VehicleAttributes(vehicle_type=described.vehicle_type, vehicle_color=described.vehicle_color)
            out.append(Observation(SightingKind.VEHICLE, BBox(0, 0, crop.shape[1], crop.shape[0]), 1.0, attributes,
                                   crop, vector, SightingKind.VEHICLE))
    return out


def _distractor_vectors(rng: np.random.Generator, real: np.ndarray, n: int) -> np.ndarray:
    """N unit vectors from the Gaussian fitted to the real ones (see the module docstring)."""
    mean = real.mean(axis=0)
    deviations = (real - mean) / np.sqrt(max(1, len(real) - 1))
    noise = float(np.sqrt(np.mean(np.sum(deviations ** 2, axis=1)) / real.shape[1])) * 0.3
    out = np.empty((n, real.shape[1]), np.float32)
    for lo in range(0, n, 10_000):
        m = min(10_000, n - lo)
        chunk = mean + rng.standard_normal((m, len(real)), dtype=np.float32) @ deviations
        chunk += rng.standard_normal(chunk.shape, dtype=np.float32) * np.float32(noise)
        out[lo:lo + m] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return out


def _stats(samples: list[float]) -> dict[str, float]:
    return {"p50": round(float(np.percentile(samples, 50)), 1), "p99": round(float(np.percentile(samples, 99)), 1)}


def bench_photo_search(settings: Settings, eval_root: Path, reid_dir: Path, sightings: int,
                       gallery_camera: str = "cam1", seed: int = 0, video_frames: int = 30,
                       distractors: str = "synthetic") -> dict:
    """Fill a store (see the module docstring), then time each query photo of the other camera both ways.

    `distractors="real"`: instead of synthetic ones, the vehicle crops of `eval/traffic_cctv` (up to the count), each
    embedded, described and stored like any sighting with its own crop: real vehicles, which a projection or a new
    embedding moves as it moves the gallery (the synthetic ones are fitted to the embedding under test)."""
    items = labelled_images(reid_dir)
    gallery = [(who, p) for who, p in items if p.name.split("_", 1)[0] == gallery_camera]
    queries = [(who, p) for who, p in items if p.name.split("_", 1)[0] != gallery_camera]
    if not gallery or not queries:
        raise InputError(f"{reid_dir}: no photos of camera {gallery_camera!r} and of another camera")
    rng = np.random.default_rng(seed)
    system = Sightline(settings)
    try:
        system.store.upsert_cameras([Camera(gallery_camera, gallery_camera, 121.30, 31.20),
                                     Camera("distractors", "distractors", 121.31, 31.21)])
        t = time.perf_counter()
        report = system.ingestor.ingest(PhotoJob(str(p), p.read_bytes(), gallery_camera, _T0 + timedelta(seconds=i))
                                        for i, (_, p) in enumerate(gallery))
        ingest_s = time.perf_counter() - t
        identity = {str(p): who for who, p in gallery}
        who_is = {s.id: identity[r.source] for r in report.results for s in r.sightings
                  if s.kind == SightingKind.VEHICLE}
        sighting_of = {s.vector_id: s.id for r in report.results for s in r.sightings  # ids are per space
                       if s.vector_id is not None and s.embedding_space == "vehicle"}
        real = system.store.get_vectors("vehicle", list(sighting_of))
        real_vectors, real_ids = list(real.values()), [sighting_of[v] for v in real]

        t = time.perf_counter()
        count = max(0, sightings - len(who_is))
        pool = _cctv_pool(system.pipeline, eval_root, count) if distractors == "real" else _pool(
            system.pipeline, eval_root, video_frames)
        pool_keys = []
        for j, ob in enumerate(pool):
            key = f"distractors/{j}.jpg"
            system.blobs.put(key, cv2.imencode(".jpg", ob.crop, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
            system.blobs.put(features_key(key), system.verifier.encode(ob.crop))
            pool_keys.append(key)
        if distractors == "real":  # each crop once, with its own vector
            count = min(count, len(pool))
            vectors = np.array([ob.vector for ob in pool[:count]], np.float32).reshape(count, -1)
            picks = np.arange(count)
        else:
            vectors = _distractor_vectors(rng, np.array(real_vectors + [ob.vector for ob in pool], np.float32), count)
            picks = rng.integers(0, len(pool), count)
        distractor_ids: list[str] = []
        for lo in range(0, count, 2_000):  # one synthetic "frame" per 2 000 distractors: 1 transaction each
            frame = FrameRecord(uuid.uuid4().hex, "distractors", _T0 + timedelta(minutes=lo), "synthetic")
            batch, stored = [], []
            for i in range(lo, min(count, lo + 2_000)):
                ob = pool[picks[i]]
                attrs = ob.attributes
                sid = uuid.uuid4().hex
                distractor_ids.append(sid)
                batch.append(Sighting(sid, "distractors", frame.ts, SightingKind.VEHICLE, BBox(0, 0, 1, 1), 0.9,
                                      VehicleAttributes(vehicle_type=getattr(attrs, "vehicle_type", None),
                                                        vehicle_color=getattr(attrs, "vehicle_color", None)),
                                      crop=pool_keys[picks[i]], frame_sha256=frame.sha256))
                stored.append(StoredVector(sid, "vehicle", vectors[i]))
            system.store.add_frame(frame, batch, stored)
        index = system.indexes["vehicle"]
        index.catch_up()
        getattr(index, "wait_for_build", lambda: None)()  # past SIGHTLINE_EXACT_LIMIT: time the built graph
        fill_s = time.perf_counter() - t

        clock = _Clock()
        search = _TimedSearch(system.store, system.indexes, system.plates, system.blobs,
                              lambda: _TimedPipeline(system.pipeline, clock),  # type: ignore[arg-type, return-value]
                              _TimedVerifier(system.verifier, clock))  # type: ignore[arg-type]
        search.clock = clock
        search.image(queries[0][1].read_bytes(), "vehicle", 10, Filters())  # warm-up: first-call allocations
        modes = ("stored", "crops")
        runs: dict[str, dict[str, list[float]]] = {m: {s: [] for s in (*STAGES, "total", "cpu")} for m in modes}
        right = {m: 0 for m in modes}
        plain_right, distractors_verified, fallbacks, candidate_recall = 0, [], 0, []
        exact = _ExactSearch(np.array(real_vectors, np.float32), real_ids, vectors, distractor_ids)
        by_kind: dict[str, Counter[str]] = {}  # per kind of vehicle (the identity's folder prefix), stored path
        for q, (who, path) in enumerate(queries):
            data = path.read_bytes()
            for mode in (modes if q % 2 == 0 else modes[::-1]):  # interleaved, alternating who goes first
                search.from_crops = mode == "crops"
                clock.spent = {}
                t, cpu = time.perf_counter(), time.process_time()
                result = search.image(data, "vehicle", 10, Filters())
                total, cpu = time.perf_counter() - t, time.process_time() - cpu
                spent = clock.spent
                run = runs[mode]
                run["total"].append(total * 1000)
                run["cpu"].append(cpu * 1000)
                run["decode"].append((spent.get("probe", 0) - spent.get("detect", 0)) * 1000)
                for stage in STAGES[1:]:
                    run[stage].append(spent.get(stage, 0.0) * 1000)
                top = result.results[0].sighting.id if result.results else None
                right[mode] += who_is.get(top or "") == who
                if mode == "stored":
                    plain = search.before_verify is not None and who_is.get(search.before_verify.id) == who
                    plain_right += plain
                    tally = by_kind.setdefault(identity_kind(who), Counter())
                    nearest = exact.top(search.probe_vector, len(search.found))
                    candidate_recall.append(len(set(nearest) & set(search.found)) / max(1, len(nearest)))
                    tally.update(queries=1, rank1=int(who_is.get(top or "") == who), rank1_unverified=int(plain),
                                 match_verified=int(any(who_is.get(c) == who for c in search.candidates)),
                                 match_exact=int(any(who_is.get(c) == who for c in nearest[:len(search.candidates)])))
                    verified = [h for h in result.results if "local_inliers" in h.why]
                    fallbacks += sum(h.why.get("local_stored") == 0.0 for h in verified)
                    distractors_verified.append(sum(h.sighting.id not in who_is for h in verified))
        n = len(queries)
        return {
            "sightings": system.store.count("vehicle"), "gallery_vehicles": len(who_is), "queries": n,
            "distractors": distractors,
            "distractor_crops": len(pool), "ingest_gallery_s": round(ingest_s, 1), "fill_s": round(fill_s, 1),
            "index": f"{type(index).__name__} {getattr(index, 'kind', '')}".strip(),
            "stored_features": {"p50_ms": _stats(runs["stored"]["total"])["p50"], **{
                f"{k}_ms": _stats(v) for k, v in runs["stored"].items()}, "rank1": round(right["stored"] / n, 4)},
            "crop_features": {"p50_ms": _stats(runs["crops"]["total"])["p50"], **{
                f"{k}_ms": _stats(v) for k, v in runs["crops"].items()}, "rank1": round(right["crops"] / n, 4)},
            "rank1_unverified": round(plain_right / n, 4),
            # match_verified: the query's vehicle was among the candidates verified (else no verification can help);
            # match_exact: among as many of the exact nearest (else the embedding, not the index, lost it)
            "by_kind": {kind: {"queries": t["queries"], **{k: round(t[k] / t["queries"], 4) for k in
                                                            ("rank1", "rank1_unverified", "match_verified",
                                                             "match_exact")}}
                        for kind, t in sorted(by_kind.items())},
            "distractors_among_verified_top10_mean": round(float(np.mean(distractors_verified)), 2),
            # the index's candidates against exact search over every stored vector: an index miss, not the embedding's
            "candidate_recall": round(float(np.mean(candidate_recall)), 4),
            "match_exact": round(sum(t["match_exact"] for t in by_kind.values()) / n, 4),
            "match_verified": round(sum(t["match_verified"] for t in by_kind.values()) / n, 4),
            "stored_path_fallbacks": fallbacks,
            "notes": "wall-clock ms (cpu_ms: this process's CPU time, all threads); decode = probe minus detect; "
                     "embed = the probe's vector; describe = its colour, type and plate, read in a thread beside "
                     "embed, search and features (so the stages sum to more than the total); "
                     "features = its local features; "
                     "the two paths are interleaved query by query on the same warm store",
        }
    finally:
        system.close()

