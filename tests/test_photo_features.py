"""Stored local features: the format, written at ingest, used by photo search, re-extracted for older
sightings, removed with their sighting; and on real eval vehicles, inliers that tell the same car from others."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

from indexer.store import StoredVector
from models.hamming import two_nearest
from models.records import Camera, InputError, SightingKind
from models.rerank import FEATURES_MAGIC, LocalFeatures, Verifier, features_key
from models.spaces import SPACES
from services.ingest import PhotoJob
from services.search import Filters

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)
VERIFIER = Verifier()


def _vehicles(eval_dir: Path) -> list[Path]:
    return sorted(d for d in (eval_dir / "reid" / "vehicle").iterdir() if d.is_dir())


def test_the_features_format_round_trips(eval_dir: Path) -> None:
    image = cv2.imread(str(_vehicles(eval_dir)[0] / "cam1_01.jpg"))
    features = VERIFIER.extract(image)
    blob = VERIFIER.encode(image)
    back = VERIFIER.decode(blob)
    assert blob[:4] == FEATURES_MAGIC and back is not None and features.descriptors is not None
    assert len(blob) == 12 + 36 * len(features.points)  # header + uint16 (x, y) + 32-byte descriptor a keypoint
    assert np.array_equal(back.descriptors, features.descriptors)
    assert np.abs(back.points - features.points).max() <= 1 / 128  # 1/64 px fixed point
    empty = LocalFeatures(np.zeros((0, 2), np.float32), None)  # a flat crop has no keypoint
    restored = VERIFIER.decode(empty.encode(VERIFIER.side))
    assert restored is not None and restored.descriptors is None and len(restored.points) == 0
    # Not this format, another version, another side, or cut short: None, so the caller re-extracts from the crop
    assert VERIFIER.decode(b"JPEG" + blob[4:]) is None
    assert VERIFIER.decode(blob[:4] + b"\x03\x00" + blob[6:]) is None
    assert VERIFIER.decode(blob[:4] + b"\x01\x00" + blob[6:]) is None  # version 1: ORB's own descriptors
    assert Verifier(side=VERIFIER.side + 64).decode(blob) is None
    assert VERIFIER.decode(blob[:-1]) is None and VERIFIER.decode(b"") is None


def test_stored_features_match_as_the_crops_did_and_tell_the_same_car_from_others(eval_dir: Path) -> None:
    """cam2 photo against cam1 photos of 8 vehicles: the same vehicle's stored features give many more
    inliers than any other vehicle's, and as many as features extracted from its image at query time."""
    folders = _vehicles(eval_dir)[:8]
    gallery = [VERIFIER.decode(VERIFIER.encode(cv2.imread(str(d / "cam1_01.jpg")))) for d in folders]
    same, other, agree = [], [], 0
    for i, d in enumerate(folders):
        query = VERIFIER.extract(cv2.imread(str(d / "cam2_01.jpg")))
        counts = [VERIFIER.inliers(query, g) for g in gallery if g is not None]
        same.append(counts[i])
        other.append(max(c for j, c in enumerate(counts) if j != i))
        fresh = VERIFIER.inliers(query, VERIFIER.extract(cv2.imread(str(d / "cam1_01.jpg"))))
        agree += abs(fresh - counts[i]) <= max(2, fresh // 10)
    assert sum(s > o for s, o in zip(same, other, strict=True)) >= 7, (same, other)
    assert np.median(same) >= 3 * np.median(other), (same, other)
    assert agree >= 7  # quantised coordinates change MAGSAC's count by a couple of inliers at most


def _ingest_two(system, eval_dir: Path) -> tuple[Path, list]:  # noqa: ANN001 - a Sightline
    system.store.upsert_cameras([Camera("cam1", "Camera 1", 121.30, 31.20)])
    folders = _vehicles(eval_dir)[:2]
    report = system.ingestor.ingest([PhotoJob(str(d / "cam1_01.jpg"), (d / "cam1_01.jpg").read_bytes(), "cam1",
                                              T0 + timedelta(minutes=i)) for i, d in enumerate(folders)])
    sightings = [s for r in report.results for s in r.sightings]
    assert report.errors == [] and all(s.kind == SightingKind.VEHICLE and s.crop for s in sightings)
    return folders[0] / "cam2_01.jpg", sightings


def test_ingest_stores_features_search_uses_them_older_sightings_fall_back(fake_system, eval_dir: Path) -> None:  # noqa: ANN001
    query, sightings = _ingest_two(fake_system, eval_dir)
    for s in sightings:  # a vehicle's features beside its crop, in the stored format
        blob = fake_system.blobs.get(features_key(s.crop))
        assert blob is not None and VERIFIER.decode(blob) is not None
    found = fake_system.search.image(query.read_bytes(), "vehicle", 5, Filters()).results
    assert len(found) == 2 and all(h.why["local_stored"] == 1.0 for h in found)
    stored_inliers = {h.sighting.id: h.why["local_inliers"] for h in found}
    assert max(stored_inliers.values()) >= 10

    # A sighting stored before features were: its crop is decoded and its features extracted at query time
    fake_system.blobs.delete(features_key(sightings[0].crop))
    again = {h.sighting.id: h for h in fake_system.search.image(query.read_bytes(), "vehicle", 5, Filters()).results}
    assert again[sightings[0].id].why["local_stored"] == 0.0 and again[sightings[1].id].why["local_stored"] == 1.0
    fallback, stored = again[sightings[0].id].why["local_inliers"], stored_inliers[sightings[0].id]
    assert abs(fallback - stored) <= max(3, stored // 5)  # JPEG-decoded crop vs the raw one at ingest
    # Features of an unknown format (a later version) are re-extracted too, never misread
    fake_system.blobs.put(features_key(sightings[1].crop), b"SLOF\x09\x00" + bytes(20))
    features, from_store = fake_system.search.local_features(sightings[1])
    assert features is not None and not from_store


def test_reembed_gives_vehicles_todays_local_features(fake_system, eval_dir: Path) -> None:  # noqa: ANN001
    """Features of the older format (ORB's own descriptors, version 1) or none at all: `reembed` extracts today's
    from the crops, once; a search then reads them stored instead of extracting them."""
    query, sightings = _ingest_two(fake_system, eval_dir)
    keys = [features_key(s.crop) for s in sightings]
    today = fake_system.blobs.get(keys[0])
    fake_system.blobs.put(keys[0], today[:4] + b"\x01\x00" + today[6:])  # as a release before TEBLID wrote it
    fake_system.blobs.delete(keys[1])
    found = fake_system.search.image(query.read_bytes(), "vehicle", 5, Filters()).results
    assert [h.why["local_stored"] for h in found] == [0.0, 0.0]

    report = fake_system.ingestor.reembed("vehicle")
    assert report.features_refreshed == 2 and report.stale == 0
    assert all(VERIFIER.decode(fake_system.blobs.get(k) or b"") is not None for k in keys)
    found = fake_system.search.image(query.read_bytes(), "vehicle", 5, Filters()).results
    assert [h.why["local_stored"] for h in found] == [1.0, 1.0]
    assert fake_system.ingestor.reembed("vehicle").features_refreshed == 0  # nothing left to do
    assert fake_system.ingestor.reembed("person").features_refreshed == 0  # people have none


def test_reembed_gives_an_earlier_models_sightings_todays_vectors(fake_system, eval_dir: Path) -> None:  # noqa: ANN001
    query, sightings = _ingest_two(fake_system, eval_dir)
    earlier = np.random.default_rng(0).standard_normal((2, 1024)).astype(np.float32)  # another dimension
    assert fake_system.store.replace_vectors([StoredVector(s.id, "vehicle", v / np.linalg.norm(v))
                                              for s, v in zip(sightings, earlier, strict=True)], "earlier-model") == 2
    assert fake_system.search.image(query.read_bytes(), "vehicle", 5, Filters()).results == []  # skipped
    fake_system.blobs.delete(sightings[1].crop)  # purged by hand, say: nothing to embed it from

    report = fake_system.ingestor.reembed("vehicle", batch=1)
    assert (report.stale, report.replaced, report.without_crop) == (2, 1, 1) and report.model == "fake-projection-1"
    found = fake_system.search.image(query.read_bytes(), "vehicle", 5, Filters()).results
    assert [h.sighting.id for h in found] == [sightings[0].id]
    kept = fake_system.store.get_sighting(sightings[0].id)
    assert kept is not None and kept.model_versions["embedding"] == "fake-projection-1"
    assert fake_system.store.get_vectors("vehicle", [kept.vector_id])[kept.vector_id].shape == (SPACES["vehicle"],)
    again = fake_system.ingestor.reembed("vehicle")  # a rerun finds only the one it could not do
    assert (again.stale, again.replaced, again.without_crop) == (1, 0, 1)
    for space, batch in (("face", 64), ("vehicle", 0)):
        with pytest.raises(InputError):
            fake_system.ingestor.reembed(space, batch)


def test_reembed_finds_a_model_change_that_keeps_the_dimension(fake_system, eval_dir: Path) -> None:  # noqa: ANN001
    query, sightings = _ingest_two(fake_system, eval_dir)
    rng = np.random.default_rng(1)
    earlier = rng.standard_normal((2, SPACES["vehicle"])).astype(np.float32)  # today's dimension, another model
    fake_system.store.replace_vectors([StoredVector(s.id, "vehicle", v / np.linalg.norm(v))
                                       for s, v in zip(sightings, earlier, strict=True)], "earlier-same-dim")
    index = fake_system.search.indexes["vehicle"]
    index.remove(np.array([s.vector_id for s in sightings]))  # as an index opened on that store would be
    assert index.catch_up() == 2 and len(index) == 2
    report = fake_system.ingestor.reembed("vehicle")
    assert (report.stale, report.replaced, report.without_crop) == (2, 2, 0) and report.model == "fake-projection-1"
    kept = fake_system.store.get_sightings([s.id for s in sightings])
    assert len(index) == 2 and all(s.model_versions["embedding"] == "fake-projection-1" for s in kept)
    found = fake_system.search.image(query.read_bytes(), "vehicle", 5, Filters()).results
    assert found and found[0].sighting.id == sightings[0].id  # found by today's vector again, not a random one
    assert fake_system.ingestor.reembed("vehicle").stale == 0  # nothing left

    # A vector that names a sighting which no longer points at it (what a crash between an Elasticsearch replace's
    # two requests leaves) never finds it: the sighting comes back once, by its own vector.
    own = kept[0].vector_id
    orphan = own + 1000
    fake_system.store.conn.execute("INSERT INTO vectors VALUES ('vehicle', ?, ?, ?)",
                                   (orphan, kept[0].id, index.vector(own).tobytes()))
    index.add(np.array([orphan]), index.vector(own)[None, :])
    hits = fake_system.search.nearest("vehicle", index.vector(own), 5, Filters(), "vehicle")
    assert [s.id for s, _ in hits].count(kept[0].id) == 1


def test_purge_and_the_orphan_sweep_remove_the_features(fake_system, eval_dir: Path) -> None:  # noqa: ANN001
    _, sightings = _ingest_two(fake_system, eval_dir)
    gone, kept = sightings
    fake_system.retention.purge(ids=[gone.id])
    assert fake_system.blobs.get(features_key(gone.crop)) is None and fake_system.blobs.get(gone.crop) is None
    assert fake_system.blobs.get(features_key(kept.crop)) is not None
    orphan = features_key(f"{T0:%Y/%m/%d}/{'f' * 32}.jpg")  # a crash between the blobs and the transaction
    fake_system.blobs.put(orphan, b"SLOF")
    fake_system.retention.sweep_orphans(grace=timedelta(seconds=-5))
    assert fake_system.blobs.get(orphan) is None
    assert fake_system.blobs.get(features_key(kept.crop)) is not None and fake_system.blobs.get(kept.crop)


@pytest.mark.parametrize("crop_key, expected", [("2026/11/02/abc.jpg", "2026/11/02/abc.orb"), ("abc", "abc.orb"),
                                                     ("a.b/c", "a.b/c.orb")])
def test_features_key_sits_beside_the_crop(crop_key: str, expected: str) -> None:
    assert features_key(crop_key) == expected


def _opencv_two_nearest(queries: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference: OpenCV's brute-force matcher, the two nearest of each query descriptor."""
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(queries, gallery, k=2)
    return (np.array([[m.distance for m in pair] for pair in pairs], np.int32),
            np.array([pair[0].trainIdx for pair in pairs], np.int64))


def test_the_hamming_kernel_finds_what_opencv_finds(eval_dir: Path) -> None:
    """On real descriptors (TEBLID on ORB keypoints) of two views of one vehicle and of two different vehicles: the
    same two least distances for every descriptor, and the same nearest wherever the least distance is not tied."""
    folders = _vehicles(eval_dir)[:2]
    a, b, c = (VERIFIER.extract(cv2.imread(str(f))).descriptors
               for f in (folders[0] / "cam1_01.jpg", folders[0] / "cam2_01.jpg", folders[1] / "cam2_01.jpg"))
    assert a is not None and b is not None and c is not None
    for gallery in (b, c, a[:1001]):  # an odd query count: the kernel pairs rows
        distances, nearest = two_nearest(a, gallery)
        want_distances, want_nearest = _opencv_two_nearest(a, gallery)
        assert np.array_equal(distances, want_distances)
        untied = distances[:, 0] < distances[:, 1]
        assert untied.mean() > 0.5 and np.array_equal(nearest[untied], want_nearest[untied])
    assert np.array_equal(two_nearest(a[:5], a[:5])[1], np.arange(5))  # each its own nearest, at distance 0


def test_the_hamming_kernel_edges() -> None:
    one = np.full((1, 32), 0b1010_1010, np.uint8)
    distances, nearest = two_nearest(np.zeros((3, 32), np.uint8), one)
    assert distances.tolist() == [[128, np.iinfo(np.int32).max]] * 3 and nearest.tolist() == [0, 0, 0]
    tied = np.vstack([one, one, np.zeros((1, 32), np.uint8)])
    distances, nearest = two_nearest(np.zeros((1, 32), np.uint8), tied)
    assert distances.tolist() == [[0, 128]] and nearest.tolist() == [2]
    distances, nearest = two_nearest(one, tied)
    assert distances.tolist() == [[0, 0]] and nearest.tolist() == [0]  # a tie for first: the ratio test fails it
    assert two_nearest(np.zeros((0, 32), np.uint8), one)[0].shape == (0, 2)
    for queries, gallery in ((np.zeros((1, 16), np.uint8), one), (one, np.zeros((0, 32), np.uint8))):
        with pytest.raises(ValueError):
            two_nearest(queries, gallery)
