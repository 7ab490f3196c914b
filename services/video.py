"""Video files and live streams: decode, sample, detect in batches, track, and store one sighting per track.

Only the detectors run on every sampled frame; the plate, attribute and embedding
models run on each track's best frames when the track ends (see Pipeline.describe_tracks).
"""
from __future__ import annotations

import hashlib
import math
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from indexer.store import DuplicateFrame, FrameRecord
from models.records import InputError, Sighting, SightingKind, TrackInfo
from models.registry import sha256_of
from models.tracking import ByteTracker, Track
from services.ingest import Ingestor
from services.outbound import STREAM_SCHEMES, OutboundPolicy
from services.stream_gate import StreamGate

OPEN_TIMEOUT_MS = 5000
OPTIONS_VARIABLE = "OPENCV_FFMPEG_CAPTURE_OPTIONS"  # FFmpeg options OpenCV reads as a capture opens
_OPERATOR_OPTIONS = os.environ.get(OPTIONS_VARIABLE)
_options_lock = threading.Lock()
TRACK_LOW_SCORE = 0.2  # weak detections only extend existing tracks (ByteTrack's second association)


@dataclass
class VideoReport:
    source: str
    frames: int = 0  # decoded (grabbed) frames
    sampled: int = 0  # frames the detectors ran on
    tracks: int = 0
    sightings: list[Sighting] = field(default_factory=list)
    skipped_tracks: int = 0  # already stored by an earlier run over the same video
    video_seconds: float = 0.0
    seconds: float = 0.0

    def summary(self) -> VideoSummary:
        kinds: dict[str, int] = {}
        for s in self.sightings:
            kinds[s.kind] = kinds.get(s.kind, 0) + 1
        return VideoSummary(self.source, self.frames, self.sampled, self.tracks, len(self.sightings), kinds,
                            self.skipped_tracks, round(self.video_seconds, 2), round(self.seconds, 2),
                            round(self.video_seconds / self.seconds, 2) if self.seconds else None)


@dataclass
class VideoSummary:
    source: str
    frames: int
    sampled: int
    tracks: int
    sightings: int
    by_kind: dict[str, int]
    skipped_tracks: int
    video_seconds: float
    seconds: float
    realtime_factor: float | None


def open_capture(source: str, options: str = "", name: str | None = None) -> cv2.VideoCapture:
    """Open a file or URL with a bounded wait, so a URL that never answers is an error, not a hang.

    `options` are FFmpeg's (key;value|...), after any the operator set (the last of a key wins). OpenCV reads
    them from one process-wide variable as a capture opens, so each open sets it under a lock (OpenCV opens one
    capture at a time anyway). `name` is what an error calls the source."""
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, OPEN_TIMEOUT_MS]
    with _options_lock:
        _set_options("|".join(o for o in (_OPERATOR_OPTIONS, options) if o))
        try:
            capture = cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)
        finally:
            _set_options(_OPERATOR_OPTIONS)
    if not capture.isOpened():
        raise InputError(f"cannot open video {name or source!r} (unreadable file, unsupported format, or no answer)")
    return capture


def _set_options(options: str | None) -> None:
    if options:
        os.environ[OPTIONS_VARIABLE] = options
    else:
        os.environ.pop(OPTIONS_VARIABLE, None)


class VideoProcessor:
    """Runs one video source through detection, tracking and per-track description."""

    def __init__(self, ingestor: Ingestor, sample_fps: float = 5.0, batch_size: int = 4):
        if not 0.1 <= sample_fps <= 60:
            raise InputError("sample_fps must be between 0.1 and 60")
        self.ingestor = ingestor
        self.pipeline = ingestor.get_pipeline()
        self.sample_fps = sample_fps
        self.batch_size = batch_size

    def ingest_file(self, path: Path, camera_id: str, start: datetime) -> VideoReport:
        """A video file whose first frame was taken at `start`; rerunning it stores no track twice."""
        if not path.is_file():
            raise InputError(f"{path} does not exist")
        start = self.ingestor.validate(camera_id, start)
        capture = open_capture(str(path))
        fps = capture.get(cv2.CAP_PROP_FPS)
        fps = fps if fps and math.isfinite(fps) and 0 < fps <= 240 else 25.0
        key = sha256_of(path)

        def clock(index: int) -> datetime:
            return start + timedelta(seconds=index / fps)

        report = VideoReport(str(path))
        self.run(capture, fps, camera_id, clock, key, report)
        report.video_seconds = report.frames / fps
        return report

    def run(self, capture: cv2.VideoCapture, fps: float, camera_id: str, clock: Callable[[int], datetime],
            key: str, report: VideoReport, stop: threading.Event | None = None,
            on_frame: Callable[[], None] | None = None) -> None:
        """Read until the source ends (or `stop` is set); `clock(frame_index)` gives each frame's UTC time."""
        t0 = time.perf_counter()
        interval = 1.0 / self.sample_fps  # sample on the clock, so 12.5 fps at 5 fps keeps 5 frames a second
        next_sample = 0.0
        trackers = {SightingKind.VEHICLE: ByteTracker(low=TRACK_LOW_SCORE),
                    SightingKind.PERSON: ByteTracker(low=TRACK_LOW_SCORE),
                    SightingKind.FACE: ByteTracker(high=0.8, low=0.8)}
        times: dict[int, datetime] = {}
        batch: list[tuple[int, np.ndarray]] = []
        index = 0
        while stop is None or not stop.is_set():
            if not capture.grab():
                break
            if index / fps >= next_sample - 1e-9:
                next_sample += interval
                ok, frame = capture.retrieve()
                if ok and frame is not None:
                    batch.append((index, frame))
                    times[index] = clock(index)
                    if on_frame:
                        on_frame()
            index += 1
            report.frames += 1
            if len(batch) >= self.batch_size:
                self._track(batch, trackers, times, camera_id, key, report)
                batch = []
        if batch:
            self._track(batch, trackers, times, camera_id, key, report)
        ended = [t for tracker in trackers.values() for t in tracker.finish()]
        self._commit(ended, times, camera_id, key, report)
        self.ingestor.save_indexes()
        report.seconds += time.perf_counter() - t0

    def _track(self, batch: list[tuple[int, np.ndarray]], trackers: dict[SightingKind, ByteTracker],
               times: dict[int, datetime], camera_id: str, key: str, report: VideoReport) -> None:
        frames = [f for _, f in batch]
        detections = self.pipeline.detect(frames, min_score=TRACK_LOW_SCORE)
        ended: list[Track] = []
        for (index, frame), dets in zip(batch, detections, strict=True):
            report.sampled += 1
            faces = self.pipeline.detect_faces(frame, dets)
            for kind, tracker in trackers.items():
                of_kind = faces if kind == SightingKind.FACE else [d for d in dets if d.kind == kind]
                ended.extend(tracker.update(index, frame, of_kind))
        self._commit(ended, times, camera_id, key, report)

    def _commit(self, tracks: list[Track], times: dict[int, datetime], camera_id: str, key: str,
                report: VideoReport) -> None:
        """Describe and store finished tracks; each is its own frame record, so a rerun skips it."""
        report.tracks += len(tracks)
        todo = []
        for track in tracks:
            sha = hashlib.sha256(f"{key}:{track.kind}:{track.id}".encode()).hexdigest()
            if self.ingestor.store.has_frame(sha):
                report.skipped_tracks += 1
            else:
                todo.append((track, sha))
        if not todo:
            return
        with self.ingestor.model_slots:
            observations = self.pipeline.describe_tracks([t for t, _ in todo])
            for (track, sha), ob in zip(todo, observations, strict=True):
                best = track.best(1)[0]
                first, last = times[track.first_frame], times[track.last_frame]
                info = TrackInfo(first, last, track.hits,
                                 [[round((times[i] - first).total_seconds(), 2), x, y] for i, x, y in track.path])
                frame = FrameRecord(sha, camera_id, times[best.frame_index], f"{report.source}#{track.kind}-{track.id}")
                try:
                    report.sightings.extend(self.ingestor.commit(frame, [ob], info))
                except DuplicateFrame:  # another run over the same video stored this track first
                    report.skipped_tracks += 1


@dataclass
class StreamStatus:
    id: str
    url: str
    camera_id: str
    state: str = "starting"  # starting | running | reconnecting | stopped
    fps: float = 0.0
    frames: int = 0
    sightings: int = 0
    reconnects: int = 0
    last_error: str | None = None


class StreamWorker(threading.Thread):
    """One live source: reads, processes, and reconnects with exponential back-off when the stream drops.

    The URL passes the outbound policy again before every (re)connection (DNS may have changed since), and the
    decoder connects only through a StreamGate, which checks every hop: redirects, playlist entries, RTSP."""

    def __init__(self, processor: VideoProcessor, url: str, camera_id: str, max_backoff_s: float = 30.0,
                 policy: OutboundPolicy | None = None):
        super().__init__(daemon=True, name=f"stream-{camera_id}")
        self.processor, self.max_backoff_s = processor, max_backoff_s
        self.policy = policy or OutboundPolicy()
        self.status = StreamStatus(uuid.uuid4().hex[:12], url, camera_id)
        self.stop_event = threading.Event()
        self._frame_times: list[float] = []

    def run(self) -> None:
        backoff = 0.5
        while not self.stop_event.is_set():
            opened, reason = self._connect_once()
            if opened:
                backoff = 0.5
            if not self.stop_event.is_set():
                self._wait(backoff, reason)
            if not opened:
                backoff = min(self.max_backoff_s, backoff * 2)
        self.status.state = "stopped"

    def _connect_once(self) -> tuple[bool, str]:
        """One connection, through a gate of its own (services/stream_gate.py): whether it opened, why it ended."""
        with StreamGate(self.status.url, self.policy) as gate:
            try:
                self.policy.check(self.status.url, STREAM_SCHEMES, "stream")
                source, options = gate.decoder_source()
                capture = open_capture(source, options, name=self.status.url)
            except InputError as exc:
                return False, gate.refused or str(exc)
            self.status.state = "running"
            report = VideoReport(self.status.url)
            key = hashlib.sha256(f"{self.status.url}:{time.time_ns()}".encode()).hexdigest()
            error = None
            try:
                self.processor.run(capture, capture.get(cv2.CAP_PROP_FPS) or 25.0, self.status.camera_id,
                                   lambda _i: datetime.now(timezone.utc), key, report, self.stop_event,
                                   self._count_frame)
            except Exception as exc:  # noqa: BLE001 - a failing stream must not take the others down
                error = f"{type(exc).__name__}: {exc}"
            finally:
                capture.release()
            self.status.sightings += len(report.sightings)
            return True, gate.refused or error or "the stream ended"

    def _wait(self, seconds: float, reason: str) -> None:
        self.status.state, self.status.last_error = "reconnecting", reason
        self.status.reconnects += 1
        self.stop_event.wait(seconds)

    def _count_frame(self) -> None:
        now = time.monotonic()
        self.status.frames += 1
        self._frame_times = [t for t in self._frame_times if now - t < 5.0] + [now]
        span = self._frame_times[-1] - self._frame_times[0]
        self.status.fps = round((len(self._frame_times) - 1) / span, 2) if span > 0 else 0.0


class StreamManager:
    """The service's live streams, each in its own thread.

    A stream is an rtsp://, rtsps://, http:// or https:// URL that passes `policy` (services/outbound.py; the
    default allows public addresses only), as does every connection its decoder makes (services/stream_gate.py):
    never a local path or file:// — local videos are ingested with the CLI (VideoProcessor.ingest_file)."""

    def __init__(self, ingestor: Ingestor, sample_fps: float = 5.0, policy: OutboundPolicy | None = None):
        self.ingestor, self.sample_fps = ingestor, sample_fps
        self.policy = policy or OutboundPolicy()
        self.workers: dict[str, StreamWorker] = {}
        self.lock = threading.Lock()

    def add(self, url: str, camera_id: str, sample_fps: float | None = None) -> StreamStatus:
        if not url.strip():
            raise InputError("the stream URL is empty")
        self.ingestor.validate(camera_id, datetime.now(timezone.utc))
        url = self.policy.check(url, STREAM_SCHEMES, "stream").url
        worker = StreamWorker(VideoProcessor(self.ingestor, sample_fps or self.sample_fps), url, camera_id,
                              policy=self.policy)
        with self.lock:
            self.workers[worker.status.id] = worker
        worker.start()
        return worker.status

    def list(self) -> list[StreamStatus]:
        with self.lock:
            return [w.status for w in self.workers.values()]

    def remove(self, stream_id: str) -> bool:
        with self.lock:
            worker = self.workers.pop(stream_id, None)
        if worker is None:
            return False
        worker.stop_event.set()
        worker.join(timeout=10)
        return True

    def stop_all(self) -> None:
        for stream_id in list(self.workers):
            self.remove(stream_id)
