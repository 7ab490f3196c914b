"""Integration: the real models on real eval images, through ingestion into the embedded store."""
from __future__ import annotations

import csv
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

from indexer.store import SightingQuery
from models.records import Camera, InputError
from services.ingest import Ingestor, PhotoJob, jobs_from_files, read_manifest
from services.system import Sightline

pytestmark = pytest.mark.models
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=timezone(timedelta(hours=8)))


def _labels(eval_dir: Path) -> dict[str, str]:
    with (eval_dir / "plates" / "full" / "labels.tsv").open(encoding="utf-8") as fh:
        return {r["file"]: r["plate"] for r in csv.DictReader(fh, delimiter="\t")}


def _cameras(system: Sightline) -> None:
    system.store.upsert_cameras([Camera("gate-1", "Gate 1", 121.29, 31.21), Camera("gate-2", "Gate 2", 121.30, 31.22)])


def test_pipeline_reads_a_known_plate_and_describes_the_car(pipeline, eval_dir: Path) -> None:
    frame = cv2.imread(str(eval_dir / "plates" / "full" / "0000.jpg"))
    vehicles = [o for o in pipeline.process([frame])[0] if o.kind == "vehicle"]
    plated = [o for o in vehicles if o.attributes.plate]
    assert [o.attributes.plate for o in plated] == ["皖AYL375"]
    car = plated[0]
    assert car.attributes.plate_color == "blue" and car.attributes.vehicle_type == "car"
    assert car.space == "vehicle" and car.vector.shape == (1280,)
    assert np.linalg.norm(car.vector) == pytest.approx(1.0, abs=1e-4)


def test_pipeline_finds_people_with_attributes_and_faces_linked_to_them(pipeline, eval_dir: Path) -> None:
    frame = cv2.imread(str(eval_dir / "faces" / "barack_obama" / "examples_obama.jpg"))
    obs = pipeline.process([frame])[0]
    people = [o for o in obs if o.kind == "person"]
    faces = [o for o in obs if o.kind == "face"]
    assert len(people) == 1 and len(faces) == 1
    assert people[0].attributes.gender == "male" and people[0].vector.shape == (768,)
    assert obs[faces[0].parent] is people[0]
    assert faces[0].attributes.quality > 0.7 and faces[0].vector.shape == (128,)
    scene = cv2.imread(str(eval_dir / "scenes" / "prw_c1s1_001051.jpg"))
    walkers = [o for o in pipeline.process([scene])[0] if o.kind == "person"]
    assert len(walkers) >= 2 and all(o.attributes.upper_color for o in walkers)


def test_faces_are_looked_for_only_where_a_person_is_unless_the_operator_asks(
        pipeline, eval_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """YuNet (the real one, its calls counted) is not run on a photo of a car alone; on a portrait it is."""
    frames = [cv2.imread(str(eval_dir / "plates" / "full" / "0000.jpg")),
              cv2.imread(str(eval_dir / "faces" / "barack_obama" / "examples_obama.jpg"))]
    asked: list[tuple[int, ...]] = []
    detect = pipeline.face_detector.detect
    monkeypatch.setattr(pipeline.face_detector, "detect", lambda frame: asked.append(frame.shape) or detect(frame))
    car, portrait = pipeline.process(frames)
    assert asked == [frames[1].shape]
    assert not any(o.kind == "face" for o in car) and sum(o.kind == "face" for o in portrait) == 1
    monkeypatch.setattr(pipeline, "faces_without_people", True)  # SIGHTLINE_FACES_WITHOUT_PEOPLE
    assert pipeline.detect_faces(frames[0], pipeline.detect(frames[:1])[0]) == [] and len(asked) == 2


def test_ingest_manifest_is_idempotent_and_searchable(system: Sightline, eval_dir: Path, tmp_path: Path) -> None:
    _cameras(system)
    labels = _labels(eval_dir)
    files = sorted(labels)[:6]
    manifest = tmp_path / "photos.csv"
    manifest.write_text("file,camera_id,captured_at\n" + "".join(
        f"{f},gate-{1 + i % 2},{(T0 + timedelta(minutes=i)).isoformat()}\n" for i, f in enumerate(files)))
    rows = read_manifest(eval_dir / "plates" / "full", manifest)
    first = system.ingestor.ingest(jobs_from_files(rows))
    assert not first.errors and first.stored >= len(files)
    plates = {s.attributes.plate for r in first.results for s in r.sightings if s.kind == "vehicle"}
    assert sum(labels[f] in plates for f in files) >= 5
    count = system.store.count()
    again = system.ingestor.ingest(jobs_from_files(rows))
    assert all(r.duplicate for r in again.results) and system.store.count() == count
    plate = labels[files[0]]
    hits = system.store.query(SightingQuery(plate=plate))
    assert hits and hits[0].camera_id == "gate-1" and hits[0].ts == T0.astimezone(timezone.utc)
    crop = cv2.imdecode(np.frombuffer(system.blobs.get(hits[0].crop), np.uint8), cv2.IMREAD_COLOR)
    assert crop is not None
    # The vector index finds the stored car from its own crop embedding.
    scores, ids = system.indexes["vehicle"].search(system.pipeline.vehicle_embedder.embed([crop]), 1)
    assert ids[0, 0] == hits[0].vector_id and scores[0, 0] > 0.95


def test_a_crash_mid_batch_loses_nothing_and_the_rerun_finishes(settings, pipeline, eval_dir: Path) -> None:
    system = Sightline(settings, pipeline)
    _cameras(system)
    photos = sorted((eval_dir / "plates" / "full").glob("*.jpg"))[:6]
    rows = [(p, "gate-1", T0 + timedelta(minutes=i)) for i, p in enumerate(photos)]
    real_add = system.store.add_frame
    calls = {"n": 0}

    def dying_add(*args, **kwargs):  # the process "dies" while writing the 4th frame
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("power cut")
        return real_add(*args, **kwargs)

    system.store.add_frame = dying_add
    with pytest.raises(KeyboardInterrupt):
        Ingestor(system.store, system.indexes, system.blobs, system.get_pipeline, listeners=[system.rules.check],
                 batch_size=2).ingest(jobs_from_files(rows))
    committed = system.store.count()
    assert committed > 0 and sum(system.store.has_frame(__import__("hashlib").sha256(p.read_bytes()).hexdigest())
                                 for p in photos) == 3
    system.store.close()  # no index save: the FAISS files are behind the store

    reopened = Sightline(settings, pipeline)
    assert len(reopened.indexes["vehicle"]) == reopened.store.count("vehicle")  # caught up from the store
    report = reopened.ingestor.ingest(jobs_from_files(rows))
    assert sum(r.duplicate for r in report.results) == 3 and not report.errors
    frames = {s.frame_sha256 for s in reopened.store.query(SightingQuery(limit=1000))}
    assert len(frames) == 6 and reopened.store.count() >= committed
    assert len(reopened.indexes["vehicle"]) == reopened.store.count("vehicle")
    reopened.close()


def test_bad_photos_are_reported_and_the_rest_is_stored(system: Sightline, eval_dir: Path) -> None:
    _cameras(system)
    good = (eval_dir / "plates" / "full" / "0000.jpg").read_bytes()
    jobs = [PhotoJob("corrupt.jpg", b"\xff\xd8garbage", "gate-1", T0),
            PhotoJob("empty.jpg", b"", "gate-1", T0),
            PhotoJob("nocam.jpg", good, "no-such-camera", T0),
            PhotoJob("naive.jpg", good, "gate-1", datetime(2026, 11, 2, 8, 0)),
            PhotoJob("good.jpg", good, "gate-2", T0)]
    report = system.ingestor.ingest(jobs)
    assert len(report.errors) == 4
    assert any("unknown camera" in e for e in report.errors) and any("time zone" in e for e in report.errors)
    assert [r.source for r in report.results] == ["good.jpg"] and system.store.count() == report.stored
    with pytest.raises(InputError, match="not a readable image"):
        system.ingestor.ingest_one(PhotoJob("c.jpg", b"not an image", "gate-1", T0))


def test_manifest_with_bad_rows_ingests_nothing(tmp_path: Path, eval_dir: Path) -> None:
    manifest = tmp_path / "photos.csv"
    manifest.write_text("file,camera_id,captured_at\n0000.jpg,gate-1,2026-11-02T08:00:00\nmissing.jpg,gate-1,"
                        "2026-11-02T08:00:00Z\n")
    with pytest.raises(InputError) as err:
        read_manifest(eval_dir / "plates" / "full", manifest)
    assert "line 2" in str(err.value) and "line 3" in str(err.value)
