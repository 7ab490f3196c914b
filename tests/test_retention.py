"""Retention: deleting sightings removes them everywhere (store, vector index, crops, frames, plate search),
keeps everything else, survives a crash between the store and the index, and refuses bad requests."""
from __future__ import annotations

import csv
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from indexer.store import SightingQuery
from models.records import Camera, InputError
from services.api.app import create_app
from services.api.localserver import serving
from services.ingest import PhotoJob
from services.retention import RetentionWorker
from services.settings import Settings
from services.system import Sightline
from tests.conftest import client

pytestmark = pytest.mark.models
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=timezone(timedelta(hours=8)))


def _photos(eval_dir: Path, n: int) -> list[tuple[Path, str]]:
    folder = eval_dir / "plates" / "full"
    with (folder / "labels.tsv").open(encoding="utf-8") as fh:
        rows = sorted((r["file"], r["plate"]) for r in csv.DictReader(fh, delimiter="\t"))
    return [(folder / f, plate) for f, plate in rows[:n]]


def _load(system: Sightline, photos: list[tuple[Path, str]]) -> None:
    """Photo i at gate-1 (even) or gate-2 (odd), one hour apart."""
    system.store.upsert_cameras([Camera("gate-1", "Gate 1", 121.29, 31.21), Camera("gate-2", "Gate 2", 121.30, 31.22)])
    report = system.ingestor.ingest([PhotoJob(p.name, p.read_bytes(), f"gate-{1 + i % 2}", T0 + timedelta(hours=i))
                                      for i, (p, _) in enumerate(photos)])
    assert not report.errors and report.stored >= len(photos)


def test_purge_by_time_and_camera_removes_everything_of_them_and_nothing_else(system: Sightline,
                                                                              eval_dir: Path) -> None:
    photos = _photos(eval_dir, 6)
    _load(system, photos)
    everything = system.store.query(SightingQuery(limit=10_000))
    cutoff = T0 + timedelta(hours=3, minutes=30)  # photos 0-3 are older; 0 and 2 are at gate-1
    doomed = [s for s in everything if s.ts < cutoff and s.camera_id == "gate-1"]
    kept = [s for s in everything if s not in doomed]
    assert doomed and kept
    sizes = {space: len(index) for space, index in system.indexes.items()}

    done = system.retention.purge(before=cutoff, camera_ids=["gate-1"])

    assert done.sightings == len(doomed) and done.frames == 2
    assert done.vectors == sum(s.vector_id is not None for s in doomed) and done.crops == len(doomed)
    left = system.store.query(SightingQuery(limit=10_000))
    assert {s.id for s in left} == {s.id for s in kept}
    assert all(system.blobs.get(s.crop) is None for s in doomed)
    assert all(system.blobs.get(s.crop) for s in kept if s.crop)
    for space, index in system.indexes.items():
        gone = [s.vector_id for s in doomed if s.embedding_space == space]
        assert len(index) == sizes[space] - len(gone)
        for vector_id in gone:
            with pytest.raises(KeyError):
                index.vector(vector_id)
    # The purged photo's plate is no longer counted; its frame can come in again and gets fresh vector ids.
    plate = photos[0][1]
    assert not system.store.plate_counts([plate])
    highest = max(s.vector_id for s in everything if s.embedding_space == "vehicle")
    again = system.ingestor.ingest_one(PhotoJob(photos[0][0].name, photos[0][0].read_bytes(), "gate-1", T0))
    assert not again.duplicate and again.sightings
    assert min(s.vector_id for s in again.sightings if s.embedding_space == "vehicle") > highest
    assert system.store.plate_counts([plate]) == {plate: sum(s.attributes.plate == plate for s in again.sightings
                                                             if s.kind == "vehicle")}


def test_a_crash_between_store_and_index_is_repaired_when_the_index_opens(settings: Settings, pipeline,
                                                                          eval_dir: Path) -> None:
    system = Sightline(settings, pipeline)
    _load(system, _photos(eval_dir, 2))
    system.save_indexes()
    victim = next(s for s in system.store.query(SightingQuery(kind="vehicle")) if s.vector_id is not None)
    system.store.delete_sightings(ids=[victim.id])  # the store committed; the process dies before the index
    system.store.close()
    reopened = Sightline(settings)
    try:
        index = reopened.indexes["vehicle"]
        assert len(index) == len(reopened.store.vector_ids("vehicle"))
        with pytest.raises(KeyError):
            index.vector(victim.vector_id)
    finally:
        reopened.close()


def test_purge_over_http_and_its_bad_requests(settings: Settings, pipeline, eval_dir: Path) -> None:
    app = create_app(settings, pipeline)
    system = app.state.system
    _load(system, _photos(eval_dir, 2))
    one = system.store.query(SightingQuery(limit=1))[0]
    total = system.store.count()
    with serving(app) as url, client(app, url) as api:
        assert api.delete("/sightings", params={"before": "2026-11-02T08:00:00"}).status_code == 400  # naive time
        assert api.delete("/sightings", params={"before": "2999-01-01T00:00:00Z"}).status_code == 400  # the future
        unknown = api.delete("/sightings", params={"before": "2026-11-03T00:00:00Z", "camera_id": "nope"})
        assert unknown.status_code == 400 and "nope" in unknown.json()["detail"]
        assert api.delete("/sightings").status_code == 422  # no time given: nothing is deleted by accident
        assert api.delete("/sightings/no-such-id").status_code == 404
        assert system.store.count() == total  # the refused requests deleted nothing
        assert api.delete(f"/sightings/{one.id}").json()["sightings"] == 1
        assert api.get(f"/sightings/{one.id}").status_code == 404
        everything = api.delete("/sightings", params={"before": "2026-11-03T00:00:00Z"}).json()
        assert everything["sightings"] == total - 1 and system.store.count() == 0
        assert api.get("/search/plates", params={"q": _photos(eval_dir, 1)[0][1]}).json()["results"] == []
    with pytest.raises(InputError):
        system.retention.purge()
    assert all(len(index) == 0 for index in system.indexes.values())


def test_the_server_applies_the_retention_policy(settings: Settings, pipeline, eval_dir: Path) -> None:
    now = datetime.now(timezone.utc)
    days = (now - T0).total_seconds() / 86400 / 2  # keeps the recent photo, not those at T0
    app = create_app(replace(settings, retention_days=days), pipeline)
    system = app.state.system
    _load(system, _photos(eval_dir, 2))  # taken at T0 and T0 + 1 h
    photo = _photos(eval_dir, 3)[2][0]
    recent = system.ingestor.ingest_one(PhotoJob(photo.name, photo.read_bytes(), "gate-1", now - timedelta(minutes=1)))
    with serving(app) as url, client(app, url) as api:
        for _ in range(100):  # the worker runs once at start, then hourly
            if api.get("/health").json()["sightings"] == len(recent.sightings):
                break
            time.sleep(0.1)
        left = api.get("/sightings", params={"limit": 1000}).json()["sightings"]
    assert {s["id"] for s in left} == {s.id for s in recent.sightings}
    with pytest.raises(InputError, match="positive"):
        RetentionWorker(system.retention, 0)  # "keep nothing" is a mistake, not a policy


def test_original_frames_are_kept_once_and_go_with_their_last_sighting(fake_system: Sightline,
                                                                       fake_pipeline) -> None:  # noqa: ANN001
    from services.ingest import frame_key
    from tests.fakes import jpeg, vehicle

    fake_system.store.upsert_cameras([Camera("gate-1", "Gate 1", 121.29, 31.21)])
    day = datetime(2026, 11, 2, 8, tzinfo=timezone.utc)
    fake_pipeline.script(jpeg(1), [vehicle(plate="京A12345"), vehicle(plate="京B22222")])
    fake_pipeline.script(jpeg(2), [vehicle(plate="京C33333")])
    two = fake_system.ingestor.ingest_one(PhotoJob("1.jpg", jpeg(1), "gate-1", day))
    one = fake_system.ingestor.ingest_one(PhotoJob("2.jpg", jpeg(2), "gate-1", day + timedelta(days=1)))
    again = fake_system.ingestor.ingest_one(PhotoJob("1-again.jpg", jpeg(1), "gate-1", day))
    assert again.duplicate
    blobs, retention = fake_system.blobs, fake_system.retention
    first, second = frame_key(day, two.frame_sha256), frame_key(day + timedelta(days=1), one.frame_sha256)
    assert blobs.get(first) == jpeg(1) and blobs.get(second) == jpeg(2)  # the photo's own bytes: its hash checks
    assert len(list(blobs.keys(prefix="frames/"))) == 2  # one per frame, shared by its sightings

    assert retention.purge(ids=[two.sightings[0].id]).frame_files == 0  # the frame still shows another sighting
    assert blobs.get(first) == jpeg(1)
    assert retention.purge(ids=[two.sightings[1].id]).frame_files == 1 and blobs.get(first) is None
    # the frame retention, shorter than the sightings': the frame goes, its sighting stays
    assert retention.drop_frames_before(days=(datetime.now(timezone.utc) - day).days - 2) == 1
    assert blobs.get(second) is None and fake_system.store.count() == 1
    blobs.put(frame_key(day, "f" * 64), b"a frame whose ingest died before its transaction")
    assert retention.sweep_orphans(grace=timedelta(0)).frames == 1


def test_a_purge_by_time_takes_the_frames_of_those_days(fake_system: Sightline, fake_pipeline) -> None:  # noqa: ANN001
    from tests.fakes import jpeg, vehicle

    fake_system.store.upsert_cameras([Camera("gate-1", "Gate 1", 121.29, 31.21)])
    day = datetime(2026, 11, 2, 8, tzinfo=timezone.utc)
    for seed in (1, 2):
        fake_pipeline.script(jpeg(seed), [vehicle(plate=f"京A1234{seed}")])
        fake_system.ingestor.ingest_one(PhotoJob(f"{seed}.jpg", jpeg(seed), "gate-1", day + timedelta(days=seed)))
    assert fake_system.retention.purge(before=day + timedelta(days=1, hours=12)).frame_files == 1
    assert len(list(fake_system.blobs.keys(prefix="frames/"))) == 1


def test_frames_are_not_kept_when_the_setting_says_none(tmp_path: Path, fake_pipeline) -> None:  # noqa: ANN001
    from tests.fakes import jpeg

    settings = Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "m", roads_geojson=None,
                        frame_retention_days=0)
    with Sightline(settings, fake_pipeline) as system:
        system.store.upsert_cameras([Camera("gate-1", "Gate 1", 121.29, 31.21)])
        system.ingestor.ingest_one(PhotoJob("1.jpg", jpeg(1), "gate-1", datetime(2026, 11, 2, tzinfo=timezone.utc)))
        assert system.store.count() == 1 and list(system.blobs.keys(prefix="frames/")) == []
