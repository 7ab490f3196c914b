"""Ingestion of photos: validate, decode, dedupe by sha256, run the pipeline in batches, store atomically.

Order of writes per frame: evidence crops (blob store) → one record-store transaction
(frame + sightings + vectors) → the vector indexes catch up from the store. A crash
before the transaction leaves only orphan crops; after it, the indexes catch up on the
next start (or the next query). So a rerun finishes a batch and nothing committed is
lost or doubled.
"""
from __future__ import annotations

import csv
import hashlib
import io
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

import cv2
import numpy as np

from indexer.blobs import BlobStore
from indexer.store import DuplicateFrame, FrameRecord, RecordStore, SightingQuery, StoredVector
from indexer.vectors import VectorIndex
from models.imageops import IMAGE_SUFFIXES, decode_image, decode_stored
from models.observations import FramePipeline, Observation
from models.records import FaceAttributes, InputError, Sighting, SightingKind, TrackInfo, parse_time, require_utc
from models.rerank import Verifier, evidence_keys, features_key

T = TypeVar("T")
# How far ahead of this machine's clock a capture time may be (camera clocks drift): a later one is refused, as a
# sighting stored in the future would outlive every retention cut-off.
FUTURE_TOLERANCE = timedelta(minutes=5)
# Batches the models run on at once (see Ingestor.ingest): two fill the 2 cores this was measured on.
PARALLEL_BATCHES = 2
FRAMES_PREFIX = "frames/"  # original frames in the blob store, beside the crops (YYYY/MM/DD/<sighting>.jpg)
# Called after each committed frame with its sightings and their vectors (the rule engine's hook).
Listener = Callable[[list[Sighting], dict[str, np.ndarray]], object]


@dataclass
class PhotoJob:
    """One photo to ingest: where its bytes come from, which camera, when."""

    source: str
    data: bytes
    camera_id: str
    ts: datetime


@dataclass
class IngestResult:
    source: str
    frame_sha256: str
    duplicate: bool
    sightings: list[Sighting]


@dataclass
class BatchReport:
    results: list[IngestResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def stored(self) -> int:
        return sum(len(r.sightings) for r in self.results if not r.duplicate)

    def summary(self) -> IngestSummary:
        return IngestSummary(photos=len(self.results), new=sum(not r.duplicate for r in self.results),
                             duplicates=sum(r.duplicate for r in self.results), sightings=self.stored,
                             errors=self.errors)


@dataclass
class IngestSummary:
    photos: int
    new: int
    duplicates: int
    sightings: int
    errors: list[str]


@dataclass
class ReembedReport:
    """`sightline reembed`: sightings whose vector an earlier model of the space made, and what became of them."""

    space: str
    model: str = ""  # the version of the model that made the new vectors
    stale: int = 0  # vectors another model than today's made (of any dimension)
    replaced: int = 0
    without_crop: int = 0  # no readable crop left (purged meanwhile, or never stored): they stay unsearchable by photo
    features_refreshed: int = 0  # vehicles whose local features were missing or of an older format, now today's
    seconds: float = 0.0


@dataclass
class ReattributeReport:
    """`sightline reattribute`: sightings whose attributes another classifier wrote, and what became of them."""

    kind: str
    heads: str = ""  # the version of the heads that wrote the new attributes
    stale: int = 0
    replaced: int = 0
    without_crop: int = 0  # no readable crop left: their attributes stay as they were
    seconds: float = 0.0


class Ingestor:
    """Photos (and video tracks) in, sightings out: the one write path, whatever the entry point."""

    def __init__(self, store: RecordStore, indexes: dict[str, VectorIndex], blobs: BlobStore,
                 pipeline: Callable[[], FramePipeline], listeners: list[Listener] | None = None,
                 batch_size: int = 4, save_every: int = 200, verifier: Verifier | None = None,
                 parallel_batches: int = PARALLEL_BATCHES, keep_frames: bool = True):
        self.store, self.indexes, self.blobs, self.get_pipeline = store, indexes, blobs, pipeline
        # The uploaded photo itself, as evidence: stored once per frame (content-addressed, shared by its sightings)
        # before the transaction, like the crops, so the evidence package shows the full frame and its hash checks.
        self.keep_frames = keep_frames
        # Each vehicle's local features (models/rerank.py), extracted once here and stored beside its crop, so that
        # a photo search matches its candidates' stored features instead of extracting 20 crops per query: the
        # same verifier as the search's (the composition root gives both one), or the stored side would not match.
        self.verifier = verifier or Verifier()
        self.batch_size = batch_size
        self.parallel_batches = parallel_batches
        self.save_every = save_every
        self._since_save = 0
        # Batches with the models at once in this process, whoever asks (uploads, a folder, video): more only
        # share the same cores
        self.model_slots = threading.BoundedSemaphore(parallel_batches)
        self.write_lock = threading.Lock()  # one writer per process
        self.listeners: list[Listener] = list(listeners or [])

    def save_indexes(self) -> None:
        for index in self.indexes.values():
            index.save()

    def validate(self, camera_id: str, ts: datetime) -> datetime:
        if self.store.get_camera(camera_id) is None:
            raise InputError(f"unknown camera {camera_id!r}: register it first "
                             "(POST /cameras or `sightline cameras import`)")
        return not_in_future(require_utc(ts))

    def ingest(self, jobs: Iterable[PhotoJob]) -> BatchReport:
        """Ingest photos in batches; a photo that cannot be decoded is reported and skipped.

        The stages overlap: hashing and decoding run ahead in one worker thread; the models run on
        `parallel_batches` batches at once (at batch 1-4 one inference cannot keep both cores busy: two
        batches together made `bench ingest` 30-37 % faster on 2 cores); and each batch's
        commit (crop JPEGs, local features, the transaction) runs in one more thread, in input order.
        OpenCV, OpenVINO and SQLite release the GIL. The call returns when every commit is done; results
        are in input order, a repeated photo's read back once its original is stored.
        """
        report = BatchReport()
        results: dict[int, IngestResult] = {}  # by input position
        repeats: list[tuple[int, str, str]] = []  # (position, source, sha256) of photos stored before
        pending: list[tuple[int, PhotoJob, str, np.ndarray]] = []
        seen: set[str] = set()
        with ThreadPoolExecutor(max_workers=self.parallel_batches, thread_name_prefix="ingest-models") as models, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-commit") as committer:
            observing: deque[tuple[list[tuple[int, PhotoJob, str, np.ndarray]], Future[list[list[Observation]]]]] = \
                deque()
            committing: Future[list[tuple[int, IngestResult]]] | None = None

            def commit_observed(keep: int) -> None:
                """Commit the oldest observed batches until `keep` are left with the models."""
                nonlocal committing
                while len(observing) > keep:
                    batch, observed = observing.popleft()
                    observations = observed.result()
                    if committing is not None:  # one commit at a time, in input order
                        results.update(committing.result())
                    committing = committer.submit(self._store_batch, batch, observations)

            def run(batch: list[tuple[int, PhotoJob, str, np.ndarray]]) -> None:
                observing.append((batch, models.submit(self._observe, [frame for *_, frame in batch])))
                commit_observed(keep=self.parallel_batches - 1)

            for position, (job, prepared) in enumerate(_prefetch(jobs, self._prepare, ahead=2 * self.batch_size)):
                if isinstance(prepared, InputError):
                    report.errors.append(f"{job.source}: {prepared}")
                    continue
                sha, frame = prepared
                if sha in seen or self.store.has_frame(sha):
                    repeats.append((position, job.source, sha))
                    continue
                seen.add(sha)
                pending.append((position, job, sha, frame))
                if len(pending) >= self.batch_size:
                    run(pending)
                    pending = []
            if pending:
                run(pending)
            commit_observed(keep=0)
            if committing is not None:
                results.update(committing.result())
        for position, source, sha in repeats:
            results[position] = IngestResult(source, sha, True, self._stored_sightings(sha))
        report.results = [results[p] for p in sorted(results)]
        self.save_indexes()
        return report

    def reembed(self, space: str, batch: int = 64) -> ReembedReport:
        """Give the sightings whose stored vector another model of `space` made a vector of today's model, from
        their stored crops. Until then an old vector of another dimension is skipped by the indexes (photo search
        does not find its sighting), and one of the same dimension is compared with today's as if alike.
        Vehicles also get today's local features where theirs are missing or of another format.

        Each batch is its own store transaction, so an interrupted run keeps what it did and a rerun does the rest.
        """
        _check_crop_job(space, batch, "vectors are made from their crops")
        t0 = time.perf_counter()
        pipeline = self.get_pipeline()
        report = ReembedReport(space, model=pipeline.embedding_version(space))
        for stale in self.store.stale_vectors(space, report.model, batch):
            report.stale += len(stale)
            owners = self.store.sighting_ids_for_vectors(space, stale)
            found = self._with_crops(list(owners.values()))
            report.without_crop += len(owners) - len(found)
            crops = [(s.id, image) for s, image in found]
            if crops:
                vectors = pipeline.embed_crops([c for _, c in crops], space)
                report.replaced += self.store.replace_vectors(
                    [StoredVector(sid, space, v) for (sid, _), v in zip(crops, vectors, strict=True)], report.model)
                # the old vectors leave this process's index now (another process's drops them when it next opens)
                done = {sid for sid, _ in crops}
                self.indexes[space].remove(np.array([v for v, sid in owners.items() if sid in done], np.int64))
        self.indexes[space].catch_up()
        self.save_indexes()
        if space == SightingKind.VEHICLE:
            report.features_refreshed = self._refresh_features(batch)
        report.seconds = round(time.perf_counter() - t0, 2)
        return report

    def reattribute(self, kind: str, batch: int = 256) -> ReattributeReport:
        """Give the sightings of `kind` whose attributes the rules or older heads wrote today's heads' answers,
        from their stored crops (the fields heads do not cover, a plate, are kept). Each batch is its own store
        transaction: an interrupted run keeps what it did and a rerun does the rest; a server may run meanwhile."""
        _check_crop_job(kind, batch, "attributes are learned")
        t0 = time.perf_counter()
        pipeline = self.get_pipeline()
        version = pipeline.attributes_version(kind)
        if version is None:
            raise InputError(f"no learned {kind} heads are active in the model folder (sightline models pull "
                             "installs the shipped ones): nothing to recompute")
        report = ReattributeReport(kind, heads=version)
        for ids in self.store.stale_attributes(kind, version, batch):
            report.stale += len(ids)
            todo = self._with_crops(ids)
            report.without_crop += len(ids) - len(todo)
            if todo:
                with self.model_slots:
                    pipeline.redescribe([image for _, image in todo], [s.attributes for s, _ in todo], kind)
                report.replaced += self.store.replace_attributes([(s.id, s.attributes) for s, _ in todo], version)
        report.seconds = round(time.perf_counter() - t0, 2)
        return report

    def _with_crops(self, ids: list[str]) -> list[tuple[Sighting, np.ndarray]]:
        """The sightings of `ids` whose evidence crop can still be read, each with its decoded crop."""
        found = []
        for s in self.store.get_sightings(ids):
            image = decode_stored(self.blobs.get(s.crop)) if s.crop else None
            if image is not None:
                found.append((s, image))
        return found

    def _refresh_features(self, batch: int) -> int:
        """Give every vehicle whose stored local features are missing or another format (ORB's own descriptors,
        format 1) today's, from its crop; returns how many. Until then photo search extracts them from the crop
        each time it verifies that vehicle (~10 ms a candidate)."""
        refreshed = 0
        ids = self.store.vector_ids(SightingKind.VEHICLE)
        for start in range(0, len(ids), batch):
            owners = self.store.sighting_ids_for_vectors(SightingKind.VEHICLE, ids[start : start + batch].tolist())
            for sighting in self.store.get_sightings(list(owners.values())):
                if not sighting.crop:
                    continue
                key = features_key(sighting.crop)
                stored = self.blobs.get(key)
                if stored is not None and self.verifier.decode(stored) is not None:
                    continue
                image = decode_stored(self.blobs.get(sighting.crop))
                if image is not None:
                    self.blobs.put(key, self.verifier.encode(image))
                    refreshed += 1
        return refreshed

    def _prepare(self, job: PhotoJob) -> tuple[str, np.ndarray] | InputError:
        try:
            job.ts = self.validate(job.camera_id, job.ts)
            return hashlib.sha256(job.data).hexdigest(), decode_image(job.data)
        except InputError as exc:
            return exc

    def ingest_one(self, job: PhotoJob) -> IngestResult:
        """Ingest a single photo; bad input raises InputError and stores nothing."""
        report = self.ingest([job])
        if report.errors:
            raise InputError(report.errors[0].split(": ", 1)[1])
        return report.results[0]

    def _stored_sightings(self, sha: str) -> list[Sighting]:
        return self.store.query(SightingQuery(frame_sha256=sha, limit=10_000))

    def _observe(self, frames: list[np.ndarray]) -> list[list[Observation]]:
        with self.model_slots:
            return self.get_pipeline().process(frames)

    def _store_batch(self, batch: list[tuple[int, PhotoJob, str, np.ndarray]], observations: list[list[Observation]]
                     ) -> list[tuple[int, IngestResult]]:
        return [(position, self._store(job, sha, obs))
                for (position, job, sha, _), obs in zip(batch, observations, strict=True)]

    def _store(self, job: PhotoJob, sha: str, observations: list[Observation]) -> IngestResult:
        frame = FrameRecord(sha, job.camera_id, job.ts, job.source)
        if self.keep_frames and observations:
            self.blobs.put(frame_key(job.ts, sha), job.data)  # a duplicate writes the same bytes to the same key
        try:
            return IngestResult(job.source, sha, False, self.commit(frame, observations))
        except DuplicateFrame:  # the same photo committed meanwhile by another upload or process
            return IngestResult(job.source, sha, True, self._stored_sightings(sha))

    def commit(self, frame: FrameRecord, observations: list[Observation], track: TrackInfo | None = None
               ) -> list[Sighting]:
        """Store one frame's observations: crops, then one transaction, then the vector indexes catch up."""
        with self.write_lock:
            return self._commit(frame, observations, track)

    def _commit(self, frame: FrameRecord, observations: list[Observation], track: TrackInfo | None
                ) -> list[Sighting]:
        ids = [uuid.uuid4().hex for _ in observations]
        sightings, vectors = [], []
        for sid, ob in zip(ids, observations, strict=True):
            attrs = ob.attributes
            if isinstance(attrs, FaceAttributes) and ob.parent is not None:
                attrs.person_sighting_id = ids[ob.parent]
            crop_key = self._save_crop(frame.ts, sid, ob.crop)
            if ob.kind == SightingKind.VEHICLE and ob.crop.size:  # photo search verifies vehicles by these
                self.blobs.put(features_key(crop_key), self.verifier.encode(ob.crop))
            sightings.append(Sighting(id=sid, camera_id=frame.camera_id, ts=frame.ts, kind=ob.kind, bbox=ob.bbox,
                                      det_score=round(ob.det_score, 4), attributes=attrs, crop=crop_key,
                                      frame_sha256=frame.sha256, model_versions=ob.model_versions, track=track))
            if ob.vector is not None and ob.space is not None:
                vectors.append(StoredVector(sid, ob.space, ob.vector))
        try:
            self.store.add_frame(frame, sightings, vectors)
        except DuplicateFrame:
            for s in sightings:  # its evidence was written first: take it back
                for key in evidence_keys(s.crop) if s.crop else ():
                    self.blobs.delete(key)
            raise
        for space in {v.space for v in vectors}:
            self.indexes[space].catch_up()  # this frame's vectors, and any another process stored before them
        for listener in self.listeners:
            listener(sightings, {v.sighting_id: v.vector for v in vectors})
        self._since_save += 1
        if self._since_save >= self.save_every:
            self.save_indexes()
            self._since_save = 0
        return sightings

    def _save_crop(self, ts: datetime, sighting_id: str, image: np.ndarray) -> str:
        key = f"{ts:%Y/%m/%d}/{sighting_id}.jpg"
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise RuntimeError(f"could not encode the crop of sighting {sighting_id}")
        self.blobs.put(key, buf.tobytes())
        return key


def frame_key(ts: datetime, sha256: str) -> str:
    """Where an original frame is kept: by its capture day (retention drops whole days) and its SHA-256."""
    return f"{FRAMES_PREFIX}{ts.astimezone(timezone.utc):%Y/%m/%d}/{sha256}"


def frame_of_key(key: str) -> tuple[datetime, str] | None:
    """The capture day and SHA-256 of a frame key, or None for any other key."""
    parts = key.split("/")
    if len(parts) != 5 or parts[0] + "/" != FRAMES_PREFIX or len(parts[4]) != 64:
        return None
    try:
        return datetime(int(parts[1]), int(parts[2]), int(parts[3]), tzinfo=timezone.utc), parts[4]
    except ValueError:
        return None


def _prefetch(jobs: Iterable[PhotoJob], prepare: Callable[[PhotoJob], T], ahead: int) -> Iterator[tuple[PhotoJob, T]]:
    """Yield (job, prepare(job)) in order while up to `ahead` later jobs are prepared in a worker thread."""
    queue: deque[tuple[PhotoJob, Future[T]]] = deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-decode") as pool:
        for job in jobs:
            queue.append((job, pool.submit(prepare, job)))
            if len(queue) > ahead:
                head, future = queue.popleft()
                yield head, future.result()
        while queue:
            head, future = queue.popleft()
            yield head, future.result()


def read_manifest(directory: Path, manifest: Path) -> list[tuple[Path, str, datetime]]:
    """Rows of (file, camera_id, captured_at); every bad row is listed in one InputError, nothing ingested."""
    if not manifest.exists():
        raise InputError(f"manifest {manifest} does not exist")
    rows, problems = [], []
    try:
        text = manifest.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"manifest {manifest} is not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"manifest {manifest} cannot be read ({exc.strerror or exc})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        table = list(reader)
    except csv.Error as exc:
        raise InputError(f"manifest {manifest} is not a readable CSV ({exc})") from None
    missing = {"file", "camera_id", "captured_at"} - set(reader.fieldnames or [])
    if missing:
        raise InputError(f"manifest {manifest} lacks the column(s) {sorted(missing)}")
    for line, row in enumerate(table, start=2):
        try:
            if any(row.get(column) is None for column in ("file", "camera_id", "captured_at")):
                raise InputError("the row has fewer columns than the header")
            path = directory / row["file"]
            if not path.is_file():
                raise InputError(f"file {path} does not exist")
            rows.append((path, row["camera_id"].strip(), not_in_future(parse_time(row["captured_at"]))))
        except InputError as exc:
            problems.append(f"line {line}: {exc}")
    if problems:
        raise InputError("the manifest has bad rows, nothing was ingested:\n  " + "\n  ".join(problems))
    return rows


def not_in_future(ts: datetime) -> datetime:
    """A capture time no later than FUTURE_TOLERANCE past now (UTC); a later one is an InputError."""
    if ts > datetime.now(timezone.utc) + FUTURE_TOLERANCE:
        raise InputError(f"capture time {ts.isoformat()} is in the future (more than "
                         f"{int(FUTURE_TOLERANCE.total_seconds() // 60)} minutes ahead of this server's clock)")
    return ts


def image_files(paths: list[Path]) -> list[Path]:
    """Expand folders into their image files (sorted); plain files are kept as given."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES))
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"{p} does not exist")
    return out


def jobs_from_files(rows: Iterable[tuple[Path, str, datetime]]) -> Iterable[PhotoJob]:
    """Read each file only when the batch reaches it, so a large folder never sits in memory."""
    for path, camera_id, ts in rows:
        yield PhotoJob(str(path), path.read_bytes(), camera_id, ts)


def _check_crop_job(kind: str, batch: int, what: str) -> None:
    """A recomputation from stored crops (reembed, reattribute): of vehicles or people, a batch from 1 to 10,000."""
    if kind not in (SightingKind.VEHICLE, SightingKind.PERSON):
        raise InputError(f"only vehicle and person {what}: choose vehicle or person")
    if not 1 <= batch <= 10_000:
        raise InputError(f"the batch must be between 1 and 10000 crops, not {batch}")
