"""`sightline bench ...`: throughput figures as JSON (benchmarks, never timed tests)."""
from __future__ import annotations

import os
import time
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2

from models.records import InputError
from services import cameras as camera_io
from services.ingest import PhotoJob, image_files
from services.settings import Settings
from services.system import Sightline


def unique_copy(data: bytes, copy: int) -> bytes:
    """The same image with a trailer after its end (decoders ignore it): another sha256, the same pixels."""
    return data if copy == 0 else data + f"sightline-bench-copy-{copy}".encode()


def check_repeat(repeat: int) -> None:
    if not 1 <= repeat <= 1000:
        raise InputError("--repeat must be between 1 and 1000")


def bench_ingest(directory: Path, settings: Settings, roadnet: Path, repeat: int = 3) -> dict:
    """Ingest every image under DIR (`repeat` copies of each, made unique) into a fresh data directory:
    photos/s with storage included.

    Model loading is timed apart (a service loads once), and so is a warm-up: a full batch and a lone photo of the
    first image's shape, which compiles the detectors for that shape as a camera's first frames would
    (models/runtime.py). A copy is really processed (its sha256 differs), so 17 photos × 3 give a steadier figure.
    """
    check_repeat(repeat)
    files = image_files([directory])
    if not files:
        raise InputError(f"{directory} holds no images")
    photos = [p for _ in range(repeat) for p in files]
    system = Sightline(settings)
    try:
        cams = camera_io.from_roadnet(roadnet, limit=20)
        system.store.upsert_cameras(cams)
        t0 = time.perf_counter()
        pipeline = system.pipeline
        load_s = time.perf_counter() - t0
        first = cv2.imread(str(photos[0]))
        t_warm = time.perf_counter()
        if first is not None:  # warm-up: first-call allocations, the shape's compiling
            pipeline.process([first] * system.ingestor.batch_size)
            pipeline.process([first])
        warm_up_s = time.perf_counter() - t_warm
        pipeline.times = type(pipeline.times)()
        start = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)
        jobs = (PhotoJob(str(p), unique_copy(p.read_bytes(), i // len(files)), cams[i % len(cams)].id,
                         start + timedelta(seconds=10 * i)) for i, p in enumerate(photos))
        t1, cpu = time.perf_counter(), os.times()
        report = system.ingestor.ingest(jobs)
        elapsed, cpu_end = time.perf_counter() - t1, os.times()
        # CPU seconds of every thread of the process over the wall time: how many cores the ingest kept busy
        busy = (cpu_end.user - cpu.user + cpu_end.system - cpu.system) / elapsed
        # each stage's time in the threads that ran the models, per photo; with batches run in parallel these add up
        # to more than the wall time, and `model_threads_busy` says how many of those threads were running at once
        seconds = asdict(pipeline.times)
        stages = {k: round(v / len(photos) * 1000, 2) for k, v in seconds.items()}
        by_kind = {kind: system.store.count(kind) for kind in ("vehicle", "person", "face")}
        result = {"photos": len(photos), "seconds": round(elapsed, 3),
                  "photos_per_s": round(len(photos) / elapsed, 2), "sightings": report.stored,
                  "errors": len(report.errors), "model_load_s": round(load_s, 2), "warm_up_s": round(warm_up_s, 2),
                  "cores_busy": round(busy, 2),
                  "cpu_cores": os.cpu_count(), "wall_ms_per_photo": round(elapsed / len(photos) * 1000, 2),
                  "parallel_batches": system.ingestor.parallel_batches,
                  "model_threads_busy": round(sum(seconds.values()) / elapsed, 2), "ms_per_photo_by_stage": stages}
    finally:
        system.close()
    result["storage"] = storage_figures(settings, photos, report.stored, by_kind)
    return result


def storage_figures(settings: Settings, photos: list[Path], sightings: int, by_kind: dict[str, int]
                    ) -> dict[str, object]:
    """What one photo costs to keep, measured on disk after the ingest: the inputs of a capacity plan
    (docs/scaling.md). The record and index figures are SQLite + FAISS; Elasticsearch differs (see the plan)."""
    def size(path: Path) -> int:
        if path.is_file():
            return path.stat().st_size
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0

    per = max(1, sightings)
    return {"photo_bytes_mean": round(sum(p.stat().st_size for p in photos) / len(photos)),
            "sightings_per_photo": round(sightings / len(photos), 2),
            "sightings_by_kind": by_kind,
            "record_bytes_per_sighting": round(size(settings.data_dir / "sightline.db") / per),
            "crop_bytes_per_sighting": round(size(settings.crops_dir) / per),
            "index_bytes_per_sighting": round(size(settings.index_dir) / per)}


def bench_video(path: Path, settings: Settings, sample_fps: float) -> dict:
    """Process one video file into a fresh data directory: decode rate, processing rate, realtime factor."""
    from models.records import Camera, CameraKind
    from services.video import VideoProcessor

    system = Sightline(settings)
    try:
        system.store.upsert_cameras([Camera("bench", "bench", 121.3, 31.2, kind=CameraKind.SURVEILLANCE)])
        processor = VideoProcessor(system.ingestor, sample_fps=sample_fps)  # loads the models, not timed
        report = processor.ingest_file(path, "bench", datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc))
        summary = report.summary()
        return {"frames": report.frames, "sampled": report.sampled, "sample_fps": sample_fps,
                "decoded_fps": round(report.frames / report.seconds, 1),
                "processed_fps": round(report.sampled / report.seconds, 1), "tracks": report.tracks,
                "sightings": len(report.sightings), "by_kind": summary.by_kind,
                "video_seconds": summary.video_seconds, "seconds": summary.seconds,
                "realtime_factor": summary.realtime_factor}
    finally:
        system.close()
