"""The record-store contract: one suite, run over every backend registered in services.system.STORE_BACKENDS.

A backend that passes it can stand behind ingestion, search, retention, alerts and the geo analytics.
Records are small and synthetic (a handful of sightings with hand-picked values), so every expected
answer can be read off the data below.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from indexer.store import (
    AttributeFilter,
    DuplicateFrame,
    FrameRecord,
    Purged,
    RecordStore,
    SightingQuery,
    StoredVector,
    VehicleColumns,
)
from models.records import BBox, Camera, FaceAttributes, PersonAttributes, Sighting, TrackInfo, VehicleAttributes
from services.settings import Settings
from services.system import STORE_BACKENDS
from tests.es_cluster import for_backend

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)
CAMERAS = [Camera("c1", "North gate", 121.30, 31.20, 90.0, "checkpoint", "纪翟路", ["gate"]),
           Camera("c2", "East gate", 121.31, 31.21),
           Camera("c3", "Square", 121.32, 31.22, kind="surveillance", tags=["plaza", "night"])]


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def unit(seed: int, dim: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def car(sid: str, camera: str, minutes: float, plate: str | None = None, color: str | None = None,
        vtype: str | None = None, plate_color: str | None = None, frame: str | None = None,
        color_score: float | None = None) -> Sighting:
    return Sighting(sid, camera, at(minutes), "vehicle", BBox(10.0, 20.5, 110.0, 90.0), 0.91,
                    VehicleAttributes(plate=plate, plate_score=0.9 if plate else None, plate_color=plate_color,
                                      vehicle_type=vtype, vehicle_color=color, vehicle_color_score=color_score),
                    crop=f"crops/{sid}.jpg",
                    frame_sha256=frame, model_versions={"embedding": "test-1"})


def walker(sid: str, camera: str, minutes: float, frame: str, **attributes: object) -> Sighting:
    return Sighting(sid, camera, at(minutes), "person", BBox(1.0, 2.0, 30.0, 80.0), 0.8,
                    PersonAttributes(**attributes), crop=f"crops/{sid}.jpg", frame_sha256=frame)


@pytest.fixture(params=sorted(STORE_BACKENDS))
def reopen(request: pytest.FixtureRequest, tmp_path: Path):  # noqa: ANN201
    """Opens the backend on this test's data folder (closing the one opened before); the last is closed at the end."""
    current: list[RecordStore] = []
    with for_backend(request.param, Settings(data_dir=tmp_path, roads_geojson=None)) as settings:

        def open_store() -> RecordStore:
            if current:
                current.pop().close()
            current.append(STORE_BACKENDS[request.param](settings))
            return current[0]

        yield open_store
        if current:
            current.pop().close()


@pytest.fixture
def store(reopen) -> RecordStore:  # noqa: ANN001
    return reopen()


def add(store: RecordStore, sha: str, camera: str, minutes: float, sightings: list[Sighting],
        with_vectors: bool = True) -> list[StoredVector]:
    """Store one frame; every sighting gets a vector of its kind's space (dimension 8, seeded by its id)."""
    vectors = [StoredVector(s.id, str(s.kind), unit(sum(map(ord, s.id)), 8)) for s in sightings] if with_vectors else []
    store.add_frame(FrameRecord(sha, camera, at(minutes), f"{sha}.jpg"), sightings, vectors)
    return vectors


@pytest.fixture
def loaded(store: RecordStore) -> dict[str, Sighting]:
    """Seven sightings on five frames at three cameras, at distinct minutes 0–6."""
    store.upsert_cameras(CAMERAS)
    s = {
        "v0": car("v0", "c1", 0, "京A12345", "red", "car", "blue", "f0", color_score=0.9),
        "v1": car("v1", "c1", 1, "沪B88888", "white", "suv", "yellow", "f1", color_score=0.8),
        "v2": car("v2", "c2", 2, "京A12345", "red", "truck", "blue", "f2", color_score=0.4),
        "v3": car("v3", "c2", 3, None, "black", "car", None, "f2"),
        "p0": walker("p0", "c1", 4, "f3", gender="male", upper_color="red", bag=True, hat=False),
        "p1": walker("p1", "c3", 5, "f4", gender="female", upper_color="blue", bag=False, hat=True),
        "x0": Sighting("x0", "c3", at(6), "face", BBox(5.0, 5.0, 25.0, 30.0), 0.97,
                       FaceAttributes(quality=0.8, landmarks=[[10.0, 12.5]], person_sighting_id="p1"),
                       crop="crops/x0.jpg", frame_sha256="f5",
                       track=TrackInfo(at(5.5), at(6), 12, [[0.0, 10.0, 20.0], [30.0, 12.0, 21.5]])),
    }
    add(store, "f0", "c1", 0, [s["v0"]])
    add(store, "f1", "c1", 1, [s["v1"]])
    add(store, "f2", "c2", 2, [s["v2"], s["v3"]])
    add(store, "f3", "c1", 4, [s["p0"]])
    add(store, "f4", "c3", 5, [s["p1"]])
    add(store, "f5", "c3", 6, [s["x0"]])
    return s


def ids(found: list[Sighting]) -> list[str]:
    return [s.id for s in found]


# cameras -----------------------------------------------------------------------------------------------
def test_cameras_upsert_get_and_list(store: RecordStore) -> None:
    assert store.list_cameras() == [] and store.get_camera("c1") is None
    assert store.upsert_cameras(CAMERAS) == 3
    assert store.get_camera("c1") == CAMERAS[0]  # every field, the road's and tags' unicode too
    assert store.get_camera("c3").kind == "surveillance" and store.get_camera("c3").tags == ["plaza", "night"]
    assert sorted(store.list_cameras(), key=lambda c: c.id) == CAMERAS
    moved = Camera("c2", "East gate (moved)", 121.4, 31.3, 180.0, road="曹安公路")
    assert store.upsert_cameras([moved]) == 1
    assert store.get_camera("c2") == moved and len(store.list_cameras()) == 3
    assert store.get_camera("nope") is None


# frames ------------------------------------------------------------------------------------------------
def test_a_frame_is_stored_whole_with_its_sightings(store: RecordStore, loaded: dict[str, Sighting]) -> None:
    assert store.has_frame("f2") and not store.has_frame("nope")
    assert store.count() == 7 and store.count("vehicle") == 4 and store.count("person") == 2
    assert store.count("face") == 1
    for s in loaded.values():
        assert store.get_sighting(s.id) == s  # every field survives the round trip (times as aware UTC)
    assert store.get_sighting("x0").track.frames == 12
    assert store.get_sighting("nope") is None
    assert ids(store.get_sightings(["v2", "nope", "v0"])) == ["v2", "v0"]  # in the order asked, unknown skipped
    assert store.get_sightings([]) == []


def test_sightings_from_another_zone_come_back_in_utc(store: RecordStore) -> None:
    store.upsert_cameras(CAMERAS)
    shanghai = timezone(timedelta(hours=8))
    s = car("z", "c1", 0)
    s.ts = datetime(2026, 11, 2, 16, 0, tzinfo=shanghai)
    add(store, "fz", "c1", 0, [s])
    got = store.get_sighting("z")
    assert got.ts == T0 + timedelta(hours=0) and got.ts.utcoffset() == timedelta(0)


def _unserialisable() -> list[Sighting]:
    bad = car("bad-2", "c1", 9, "京A00001")
    bad.attributes.plate_raw = object()  # cannot be written: the store fails half-way through the frame
    return [car("bad-1", "c1", 9, "京A00001"), bad]


def _duplicate() -> list[Sighting]:
    return [car("dup", "c1", 9, "京A00001"), car("dup", "c1", 9, "京A00001")]


@pytest.mark.parametrize("failing", [_duplicate, _unserialisable], ids=["duplicate id", "unserialisable"])
def test_a_failing_frame_leaves_nothing_behind(store: RecordStore, loaded: dict[str, Sighting], failing) -> None:  # noqa: ANN001
    before = (store.count(), store.vector_count("vehicle"), store.vector_ids("vehicle").tolist(),
              store.plate_counts(["京A00001", "京A12345"]))
    with pytest.raises(Exception):  # noqa: B017 - whichever error the backend raises
        add(store, "f-broken", "c1", 9, failing())
    assert not store.has_frame("f-broken")
    assert (store.count(), store.vector_count("vehicle"), store.vector_ids("vehicle").tolist(),
            store.plate_counts(["京A00001", "京A12345"])) == before
    assert store.query(SightingQuery(plate="京A00001")) == []
    # and the store goes on: the same frame stored properly afterwards gets fresh vector ids
    good = car("good", "c1", 9, "京A00001")
    add(store, "f-broken", "c1", 9, [good])
    assert store.has_frame("f-broken") and good.vector_id > max(before[2])


def test_a_frame_stored_twice_is_refused_as_a_duplicate(store: RecordStore, loaded: dict[str, Sighting]) -> None:
    """Two writers with the same photo: the second learns it lost the race, and stores nothing of it."""
    before = (store.count(), store.vector_count("vehicle"))
    with pytest.raises(DuplicateFrame):
        add(store, "f2", "c1", 9, [car("again", "c1", 9, "京A00002")])
    assert (store.count(), store.vector_count("vehicle")) == before and store.get_sighting("again") is None


def test_bulk_sightings_without_frames_or_vectors(store: RecordStore) -> None:
    store.upsert_cameras(CAMERAS)
    rows = [car(f"b{i}", "c1", i, "苏E12345" if i % 2 else None) for i in range(6)]
    store.add_sightings(rows)
    assert store.count("vehicle") == 6 and store.plate_counts(["苏E12345"]) == {"苏E12345": 3}
    got = store.get_sighting("b3")
    assert got == rows[3] and got.vector_id is None and got.embedding_space is None
    assert store.vector_count("vehicle") == 0


# queries -----------------------------------------------------------------------------------------------
QUERIES = {
    "everything, newest first": (SightingQuery(), ["x0", "p1", "p0", "v3", "v2", "v1", "v0"]),
    "oldest first": (SightingQuery(newest_first=False), ["v0", "v1", "v2", "v3", "p0", "p1", "x0"]),
    "kind": (SightingQuery(kind="vehicle"), ["v3", "v2", "v1", "v0"]),
    "kind person": (SightingQuery(kind="person"), ["p1", "p0"]),
    "one camera": (SightingQuery(camera_ids=["c2"]), ["v3", "v2"]),
    "two cameras and a kind": (SightingQuery(kind="person", camera_ids=["c1", "c3"]), ["p1", "p0"]),
    "start inclusive, end exclusive": (SightingQuery(start=at(1), end=at(3)), ["v2", "v1"]),
    "start only": (SightingQuery(start=at(5)), ["x0", "p1"]),
    "end only": (SightingQuery(end=at(1)), ["v0"]),
    "plate": (SightingQuery(plate="京A12345"), ["v2", "v0"]),
    "plate and camera": (SightingQuery(plate="京A12345", camera_ids=["c1"]), ["v0"]),
    "plate and kind": (SightingQuery(kind="vehicle", plate="沪B88888"), ["v1"]),
    "unknown plate": (SightingQuery(plate="京Z99999"), []),
    "frame": (SightingQuery(frame_sha256="f2"), ["v3", "v2"]),
    "vehicle colour": (SightingQuery(attributes=AttributeFilter(vehicle_color="red")), ["v2", "v0"]),
    "vehicle type": (SightingQuery(kind="vehicle", attributes=AttributeFilter(vehicle_type="car")), ["v3", "v0"]),
    "plate colour": (SightingQuery(attributes=AttributeFilter(plate_color="yellow")), ["v1"]),
    "any of two colours": (SightingQuery(attributes=AttributeFilter(vehicle_color=("white", "black"))), ["v3", "v1"]),
    "any of no colour": (SightingQuery(attributes=AttributeFilter(vehicle_color=())), []),
    "colour, sure enough": (SightingQuery(attributes=AttributeFilter(vehicle_color="red", min_confidence=0.5)),
                            ["v0"]),
    "colours, sure enough": (SightingQuery(attributes=AttributeFilter(vehicle_color=("red", "white", "black"),
                                                                      min_confidence=0.8)), ["v1", "v0"]),
    "confidence alone filters nothing": (SightingQuery(kind="vehicle", attributes=AttributeFilter(min_confidence=0.99)),
                                         ["v3", "v2", "v1", "v0"]),
    "two attributes": (SightingQuery(attributes=AttributeFilter(vehicle_color="red", vehicle_type="truck")), ["v2"]),
    "gender": (SightingQuery(kind="person", attributes=AttributeFilter(gender="female")), ["p1"]),
    "upper colour": (SightingQuery(attributes=AttributeFilter(upper_color="red")), ["p0"]),
    "upper colour, any of": (SightingQuery(attributes=AttributeFilter(upper_color=("blue", "red"))), ["p1", "p0"]),
    "unscored colour, a confidence asked": (SightingQuery(attributes=AttributeFilter(upper_color="red",
                                                                                     min_confidence=0.1)), []),
    "bag true": (SightingQuery(attributes=AttributeFilter(bag=True)), ["p0"]),
    "bag false": (SightingQuery(attributes=AttributeFilter(bag=False)), ["p1"]),
    "hat": (SightingQuery(attributes=AttributeFilter(hat=True)), ["p1"]),
    "attributes, camera and time": (SightingQuery(kind="vehicle", camera_ids=["c2"], start=at(0), end=at(10),
                                                  attributes=AttributeFilter(vehicle_color="red")), ["v2"]),
    "ids": (SightingQuery(ids=["v0", "p1", "nope"]), ["p1", "v0"]),
    "ids and kind": (SightingQuery(kind="vehicle", ids=["v0", "p1"]), ["v0"]),
    "no ids at all": (SightingQuery(ids=[]), []),
    "limit": (SightingQuery(limit=2), ["x0", "p1"]),
    "offset": (SightingQuery(limit=2, offset=5), ["v1", "v0"]),
    "offset past the end": (SightingQuery(offset=7), []),
}


@pytest.mark.parametrize("name", QUERIES)
def test_query_filters(store: RecordStore, loaded: dict[str, Sighting], name: str) -> None:
    query, expected = QUERIES[name]
    found = store.query(query)
    assert ids(found) == expected
    assert all(s == loaded[s.id] for s in found)


def test_paging_walks_every_sighting_once(store: RecordStore, loaded: dict[str, Sighting]) -> None:
    for newest_first in (True, False):
        pages = [ids(store.query(SightingQuery(limit=3, offset=o, newest_first=newest_first))) for o in (0, 3, 6, 9)]
        assert [len(p) for p in pages] == [3, 3, 1, 0]
        walked = [i for p in pages for i in p]
        assert walked == ids(store.query(SightingQuery(newest_first=newest_first)))


# plates ------------------------------------------------------------------------------------------------
def test_plate_counts_and_the_incremental_plate_feed(store: RecordStore, loaded: dict[str, Sighting]) -> None:
    assert store.plate_counts(["京A12345", "沪B88888", "京Z99999"]) == {"京A12345": 2, "沪B88888": 1}
    assert store.plate_counts([]) == {}
    rows = store.plates_after(0)
    assert sorted((plate, n) for _, plate, n in rows) == [("京A12345", 2), ("沪B88888", 1)]
    rowids = [r for r, _, _ in rows]
    assert rowids == sorted(rowids) and len(set(rowids)) == len(rowids)
    assert store.plates_after(rowids[-1]) == []
    add(store, "f9", "c1", 9, [car("v9", "c1", 9, "浙C77777"), car("v10", "c1", 9, "京A12345")])
    new = store.plates_after(rowids[-1])
    assert [(plate, n) for _, plate, n in new] == [("浙C77777", 1)]  # a plate seen before is not new
    assert new[0][0] > rowids[-1]
    assert store.plate_counts(["京A12345", "浙C77777"]) == {"京A12345": 3, "浙C77777": 1}


# vectors -----------------------------------------------------------------------------------------------
def test_vectors_are_kept_with_their_sightings(store: RecordStore, loaded: dict[str, Sighting]) -> None:
    vehicles = [loaded[i] for i in ("v0", "v1", "v2", "v3")]
    vids = [s.vector_id for s in vehicles]
    assert all(isinstance(i, int) for i in vids) and vids == sorted(set(vids))  # increasing, in commit order
    assert all(s.embedding_space == "vehicle" for s in vehicles)
    assert loaded["p0"].embedding_space == "person" and loaded["x0"].embedding_space == "face"
    assert loaded["p0"].vector_id < loaded["p1"].vector_id
    assert store.vector_count("vehicle") == 4 and store.vector_count("person") == 2
    assert store.vector_count("face") == 1 and store.vector_count("nothing") == 0
    assert store.vector_ids("vehicle").tolist() == vids and store.vector_ids("vehicle").dtype == np.int64
    assert store.vector_ids("nothing").tolist() == []
    expected = {s.vector_id: unit(sum(map(ord, s.id)), 8) for s in vehicles}

    batches = list(store.vectors_after("vehicle", 0, batch=3))
    assert [len(b[0]) for b in batches] == [3, 1]
    got_ids = np.concatenate([b[0] for b in batches])
    got = np.concatenate([b[1] for b in batches])
    assert got_ids.tolist() == vids and got.dtype == np.float32 and got.shape == (4, 8)
    assert np.array_equal(got, np.stack([expected[i] for i in vids]))
    after = list(store.vectors_after("vehicle", vids[1]))
    assert np.concatenate([b[0] for b in after]).tolist() == vids[2:]
    assert list(store.vectors_after("vehicle", vids[-1])) == []

    picked = store.get_vectors("vehicle", [vids[2], vids[0], 10**9])
    assert sorted(picked) == sorted([vids[0], vids[2]])
    assert all(np.array_equal(picked[i], expected[i]) for i in picked)
    assert store.get_vectors("vehicle", []) == {}
    assert store.sighting_ids_for_vectors("vehicle", [vids[3], vids[1], 10**9]) == {vids[3]: "v3", vids[1]: "v1"}
    assert store.sighting_ids_for_vectors("vehicle", []) == {}
    # spaces number their vectors independently: the person space's ids name person sightings only
    person_ids = [loaded["p0"].vector_id, loaded["p1"].vector_id]
    assert store.sighting_ids_for_vectors("person", person_ids) == dict(zip(person_ids, ["p0", "p1"], strict=True))


def test_vector_batches_hold_one_dimension(store: RecordStore) -> None:
    """After a space's model changes dimension, old and new vectors are interleaved by id; every batch is of one
    dimension (an index skips the batches of the other), and together they are all of them in id order."""
    store.upsert_cameras(CAMERAS)
    dims = [8, 8, 12, 8, 12, 12, 12]
    for i, dim in enumerate(dims):
        s = car(f"d{i}", "c1", i)
        store.add_frame(FrameRecord(f"fd{i}", "c1", at(i), "x.jpg"), [s], [StoredVector(s.id, "vehicle", unit(i, dim))])
    batches = list(store.vectors_after("vehicle", 0, batch=3))
    assert [b[1].shape[1] for b in batches] == [8, 12, 8, 12, 12]  # fetched 3 at a time, split where the dim changes
    assert np.concatenate([b[0] for b in batches]).tolist() == store.vector_ids("vehicle").tolist()
    assert all(np.array_equal(v, unit(i, dims[i])) for i, v in enumerate(v for b in batches for v in b[1]))


def test_replaced_vectors_take_new_ids_and_the_old_ones_go(store: RecordStore, loaded: dict[str, Sighting]) -> None:
    """A space's model changed: its sightings get new vectors under ids past every id given, the old vectors are
    deleted, the sightings point at the new ones, and a sighting deleted meanwhile is skipped."""
    before = store.vector_ids("vehicle").tolist()
    new = {sid: unit(i + 100, 12) for i, sid in enumerate(("v0", "v2"))}
    assert store.replace_vectors([StoredVector(sid, "vehicle", v) for sid, v in new.items()]
                                 + [StoredVector("gone", "vehicle", unit(7, 12))], "test-2") == 2
    v0, v2 = store.get_sightings(["v0", "v2"])
    assert v0.vector_id > max(before) and v2.vector_id > v0.vector_id and v0.embedding_space == "vehicle"
    assert v0.model_versions == {"embedding": "test-2"} and store.get_sighting("v1").model_versions == {
        "embedding": "test-1"}
    assert store.vector_ids("vehicle").tolist() == sorted(
        set(before) - {loaded["v0"].vector_id, loaded["v2"].vector_id} | {v0.vector_id, v2.vector_id})
    assert np.array_equal(store.get_vectors("vehicle", [v2.vector_id])[v2.vector_id], new["v2"])
    assert store.sighting_ids_for_vectors("vehicle", [v0.vector_id]) == {v0.vector_id: "v0"}
    fresh = list(store.vectors_after("vehicle", max(before)))
    assert [b[0].tolist() for b in fresh] == [[v0.vector_id, v2.vector_id]] and fresh[0][1].shape == (2, 12)


def test_stale_vectors_are_those_another_model_made(store: RecordStore, loaded: dict[str, Sighting]) -> None:
    """What `reembed` replaces: the vectors whose sightings name another embedding model, whatever their dimension
    (all of them "test-1" here), a batch at a time; replacing one batch before the next is read moves nothing."""
    vehicles = sorted(loaded[i].vector_id for i in ("v0", "v1", "v2", "v3"))
    assert sorted(i for b in store.stale_vectors("vehicle", "test-2") for i in b) == vehicles
    assert list(store.stale_vectors("vehicle", "test-1")) == [] and list(store.stale_vectors("nothing", "x")) == []
    done: list[int] = []
    for batch in store.stale_vectors("vehicle", "test-2", batch=2):
        assert len(batch) <= 2 and not set(batch) & set(done)
        owners = store.sighting_ids_for_vectors("vehicle", batch)
        store.replace_vectors([StoredVector(sid, "vehicle", unit(7, 8)) for sid in owners.values()], "test-2")
        done += batch
    assert sorted(done) == vehicles and list(store.stale_vectors("vehicle", "test-2")) == []
    people = sorted(i for b in store.stale_vectors("person", "test-2") for i in b)  # no model recorded: stale
    assert people == sorted([loaded["p0"].vector_id, loaded["p1"].vector_id])


def test_stale_attributes_are_replaced_whole_and_filtered_on(store: RecordStore, loaded: dict[str, Sighting]) -> None:
    """What `reattribute` redoes: sightings of a kind whose attributes another classifier wrote (none recorded: the
    rules), a batch at a time; the new attributes replace the old (the plate kept, as the caller passes it), the
    version is recorded beside the embedding's, searches see the new values, a deleted sighting is skipped."""
    assert sorted(i for b in store.stale_attributes("vehicle", "heads-1") for i in b) == ["v0", "v1", "v2", "v3"]
    done: list[str] = []
    for batch in store.stale_attributes("vehicle", "heads-1", batch=3):
        assert len(batch) <= 3 and not set(batch) & set(done)
        updates = []
        for s in store.get_sightings(batch):
            assert isinstance(s.attributes, VehicleAttributes)
            s.attributes.vehicle_color, s.attributes.vehicle_color_score = "silver", 0.61
            updates.append((s.id, s.attributes))
        assert store.replace_attributes(updates + [("gone", VehicleAttributes())], "heads-1") == len(batch)
        done += batch
    assert list(store.stale_attributes("vehicle", "heads-1")) == []
    assert sorted(i for b in store.stale_attributes("person", "heads-1") for i in b) == ["p0", "p1"]
    v0 = store.get_sighting("v0")
    assert v0 is not None and isinstance(v0.attributes, VehicleAttributes)
    assert (v0.attributes.plate, v0.attributes.vehicle_color, v0.attributes.vehicle_color_score) == (
        "京A12345", "silver", 0.61)
    assert v0.model_versions == {"embedding": "test-1", "attributes": "heads-1"}
    silver = store.query(SightingQuery(kind="vehicle", attributes=AttributeFilter(vehicle_color="silver",
                                                                                   min_confidence=0.6)))
    assert sorted(ids(silver)) == ["v0", "v1", "v2", "v3"]
    assert store.query(SightingQuery(kind="vehicle", attributes=AttributeFilter(vehicle_color="red"))) == []
    person = store.get_sighting("p0")
    assert person is not None and isinstance(person.attributes, PersonAttributes)
    person.attributes.bag, person.attributes.bag_score = False, 0.9
    store.replace_attributes([("p0", person.attributes)], "heads-2")
    sure = store.query(SightingQuery(kind="person", attributes=AttributeFilter(bag=False, min_confidence=0.8)))
    assert ids(sure) == ["p0"]


def test_a_sighting_without_a_vector(store: RecordStore) -> None:
    store.upsert_cameras(CAMERAS)
    s = car("nv", "c1", 0)
    add(store, "fnv", "c1", 0, [s], with_vectors=False)
    assert store.get_sighting("nv").vector_id is None and store.vector_count("vehicle") == 0


# deletion ----------------------------------------------------------------------------------------------
def test_delete_by_time_removes_sightings_vectors_plates_and_empty_frames(store: RecordStore,
                                                                          loaded: dict[str, Sighting]) -> None:
    store.add_frame(FrameRecord("empty", "c1", at(-1), "empty.jpg"), [], [])  # a frame in which nothing was seen
    done = store.delete_sightings(before=at(2), batch=1)  # batch 1: each sighting its own transaction
    assert isinstance(done, Purged)
    assert done.sightings == 2 and done.frames == 3  # f0, f1 and the empty frame
    assert sorted(done.crops) == ["crops/v0.jpg", "crops/v1.jpg"]
    assert {k: sorted(v) for k, v in done.vectors.items()} == {"vehicle": sorted([loaded["v0"].vector_id,
                                                                                  loaded["v1"].vector_id])}
    assert not store.has_frame("f0") and not store.has_frame("f1") and not store.has_frame("empty")
    assert store.has_frame("f2") and store.count() == 5
    assert store.get_sighting("v0") is None and store.get_sightings(["v0", "v1"]) == []
    assert store.vector_ids("vehicle").tolist() == [loaded["v2"].vector_id, loaded["v3"].vector_id]
    assert store.vector_count("vehicle") == 2
    assert store.get_vectors("vehicle", [loaded["v0"].vector_id]) == {}
    assert store.sighting_ids_for_vectors("vehicle", [loaded["v1"].vector_id]) == {}
    assert store.plate_counts(["京A12345", "沪B88888"]) == {"京A12345": 1}
    assert ids(store.query(SightingQuery(plate="京A12345"))) == ["v2"]
    assert store.delete_sightings(before=at(2)) == Purged()  # nothing left to delete: a rerun is harmless


def test_delete_by_time_at_some_cameras(store: RecordStore, loaded: dict[str, Sighting]) -> None:
    done = store.delete_sightings(before=at(100), camera_ids=["c3"])
    assert done.sightings == 2 and done.frames == 2
    assert {k: sorted(v) for k, v in done.vectors.items()} == {"person": [loaded["p1"].vector_id],
                                                              "face": [loaded["x0"].vector_id]}
    assert ids(store.query(SightingQuery())) == ["p0", "v3", "v2", "v1", "v0"]
    assert store.vector_count("face") == 0 and store.vector_count("person") == 1


def test_delete_by_ids_keeps_a_frame_until_its_last_sighting_goes(store: RecordStore,
                                                                  loaded: dict[str, Sighting]) -> None:
    first = store.delete_sightings(ids=["v3", "nope"])
    assert first.sightings == 1 and first.frames == 0 and store.has_frame("f2")
    assert first.crops == ["crops/v3.jpg"] and first.vectors == {"vehicle": [loaded["v3"].vector_id]}
    second = store.delete_sightings(ids=["v2"])
    assert second.sightings == 1 and second.frames == 1 and not store.has_frame("f2")
    assert store.delete_sightings(ids=["nope"]) == Purged()
    assert store.count() == 5


def test_delete_needs_a_time_or_ids(store: RecordStore, loaded: dict[str, Sighting]) -> None:
    with pytest.raises(ValueError):
        store.delete_sightings()
    with pytest.raises(ValueError):
        store.delete_sightings(before=at(10), ids=["v0"])
    assert store.count() == 7


def test_vector_ids_are_never_reused_after_deletion(store: RecordStore, reopen, loaded: dict[str, Sighting]) -> None:  # noqa: ANN001
    highest = loaded["v3"].vector_id
    store.delete_sightings(ids=["v3", "v2"])  # the highest ids of the space go
    again = car("again", "c1", 8)
    add(store, "f8", "c1", 8, [again])
    assert again.vector_id > highest
    store.delete_sightings(ids=["again"])
    reopened = reopen()  # and after the store is reopened
    late = car("late", "c1", 9)
    add(reopened, "f9", "c1", 9, [late])
    assert late.vector_id > again.vector_id
    assert reopened.vector_ids("vehicle").tolist() == [loaded["v0"].vector_id, loaded["v1"].vector_id, late.vector_id]


def test_a_reopened_store_holds_what_was_committed(reopen, loaded: dict[str, Sighting]) -> None:  # noqa: ANN001
    reopened = reopen()
    assert sorted(reopened.list_cameras(), key=lambda c: c.id) == CAMERAS
    assert [reopened.get_sighting(i) for i in loaded] == list(loaded.values())
    assert reopened.vector_count("vehicle") == 4 and reopened.has_frame("f5")
    assert reopened.plate_counts(["京A12345"]) == {"京A12345": 2}


# the analytics' reads ----------------------------------------------------------------------------------
def test_camera_window(store: RecordStore, loaded: dict[str, Sighting]) -> None:
    window = store.camera_window("c2", at(2), at(3))  # both ends included
    assert sorted(window) == [("v2", "京A12345", at(2)), ("v3", None, at(3))]
    assert all(ts.utcoffset() == timedelta(0) for _, _, ts in window)
    assert store.camera_window("c2", at(2.5), at(10)) == [("v3", None, at(3))]
    assert store.camera_window("c1", at(0), at(10), kind="person") == [("p0", None, at(4))]
    assert store.camera_window("c1", at(20), at(30)) == []
    assert store.camera_window("nope", at(0), at(30)) == []


def test_vehicle_columns_plate_reads_and_plate_names(store: RecordStore) -> None:
    store.upsert_cameras(CAMERAS)
    us = lambda minutes: int(at(minutes).timestamp() * 1_000_000)  # noqa: E731
    columns = VehicleColumns(
        ids=["b0", "b1", "b2", "b3", "b4", "b5"],
        camera_ids=["c1", "c2", "c1", "c3", "c2", "c1"],
        ts_us=np.array([us(5), us(1), us(3), us(2), us(4), us(0)], np.int64),
        plates=["京A12345", "沪B88888", "京A12345", "苏E12345", "京A12345", "沪B88888"],
        plate_scores=np.array([0.9, 0.95, 0.5, 0.99, 0.85, 0.9]),
        vehicle_colors=["red", None, "red", "white", "red", None],
        vehicle_types=["car", "suv", None, "car", "car", None])
    store.add_vehicle_columns(columns)
    assert store.count("vehicle") == 6
    b0 = store.get_sighting("b0")
    assert b0.kind == "vehicle" and b0.camera_id == "c1" and b0.ts == at(5)
    assert (b0.attributes.plate, b0.attributes.vehicle_color, b0.attributes.vehicle_type) == ("京A12345", "red", "car")
    assert b0.attributes.plate_score == pytest.approx(0.9)
    assert ids(store.query(SightingQuery(plate="京A12345"))) == ["b0", "b4", "b2"]
    assert ids(store.query(SightingQuery(attributes=AttributeFilter(vehicle_color="white")))) == ["b3"]
    assert store.plate_counts(["京A12345", "沪B88888", "苏E12345"]) == {"京A12345": 3, "沪B88888": 2, "苏E12345": 1}
    assert {p for _, p, _ in store.plates_after(0)} == {"京A12345", "沪B88888", "苏E12345"}

    chunks = list(store.plate_read_columns(at(1), at(5), min_score=0.8, batch=2))  # [start, end), score ≥ 0.8
    assert len(chunks) >= 2
    ts = np.concatenate([c.ts_us for c in chunks])
    assert ts.tolist() == [us(1), us(2), us(4)]  # b1, b3, b4 in time order; b2 scores too low, b0 is at the end
    plate_ids = np.concatenate([c.plate_ids for c in chunks])
    names = store.plate_names(plate_ids.tolist())
    assert [names[int(p)] for p in plate_ids] == ["沪B88888", "苏E12345", "京A12345"]
    positions = {c.id: (c.lon, c.lat) for c in CAMERAS}
    lon, lat = np.concatenate([c.lon for c in chunks]), np.concatenate([c.lat for c in chunks])
    assert list(zip(lon.tolist(), lat.tolist(), strict=True)) == [positions["c2"], positions["c3"], positions["c2"]]
    everything = list(store.plate_read_columns(None, None, min_score=0.0))
    assert sum(len(c.ts_us) for c in everything) == 6
    assert np.all(np.diff(np.concatenate([c.ts_us for c in everything])) >= 0)
    assert store.plate_names([]) == {}
