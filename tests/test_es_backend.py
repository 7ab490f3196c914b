"""The Elasticsearch backends without a cluster: the index templates and mappings, and the query, kNN and bulk
bodies they send. Bodies come from pure functions; the few checks of whole calls give the client a node that
records each request and acknowledges it (it answers no search). Whether a cluster then answers as the contract
expects is what tests/test_store_contract.py and tests/test_vector_contract.py check when SIGHTLINE_ES_URL is set.
"""
from __future__ import annotations

import json
from dataclasses import asdict, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from elasticsearch import Elasticsearch

from indexer.audit_store import GENESIS, AuditKey, entry_hash
from indexer.es_audit import ElasticsearchAuditStore, audit_doc, audit_from_doc, audit_index_body, audit_query
from indexer.es_common import BULK_OPTIONS, ESConnection
from indexer.es_store import (
    ElasticsearchStore,
    attribute_clauses,
    camera_doc,
    camera_from_doc,
    decode_vector,
    encode_vector,
    indices_fully_before,
    month_of,
    other_indices,
    plate_query,
    settled_prefix,
    sighting_doc,
    sighting_filter,
    sighting_from_doc,
    sighting_index,
    sighting_sort,
    sightings_template,
)
from indexer.es_vectors import (
    EXACT_FILTER,
    OVERSAMPLE,
    ElasticsearchVectorIndex,
    candidate_rows,
    exact_body,
    index_type,
    knn_body,
    knn_index_body,
    num_candidates,
)
from indexer.sqlite_store import SQLiteStore
from indexer.store import SCORE_FIELDS, AttributeFilter, FrameRecord, SightingQuery, StoredVector
from indexer.vectors import rerank_exact
from models.accounts import AuditEntry
from models.records import BBox, Camera, InputError, PersonAttributes, Sighting, TrackInfo, VehicleAttributes
from models.spaces import SPACES
from services.settings import Settings
from services.system import AUDIT_BACKENDS, STORE_BACKENDS, VECTOR_BACKENDS, Sightline
from tests.es_recorder import Recorder, sent

UTC = timezone.utc
T0 = datetime(2026, 11, 2, 8, 0, 0, 123456, tzinfo=UTC)


# mappings ----------------------------------------------------------------------------------------------------
def test_the_sightings_template_maps_every_searchable_field_explicitly() -> None:
    body = sightings_template("sl")
    assert body["name"] == "sl-sightings" and body["index_patterns"] == ["sl-sightings-*"]
    mappings = body["template"]["mappings"]
    assert mappings["dynamic"] is False  # an unknown field never grows the mapping
    props = mappings["properties"]
    assert props["ts"] == {"type": "date_nanos"}  # microseconds sort and filter exactly
    assert all(props[f] == {"type": "keyword"} for f in ("id", "camera_id", "kind", "frame_sha256"))
    attrs = props["attributes"]["properties"]
    plate = attrs["plate"]
    assert plate["type"] == "keyword"  # exact terms and counts
    assert plate["fields"]["wild"] == {"type": "wildcard"}  # ? / * and suffix patterns
    assert plate["fields"]["folded"] == {"type": "keyword", "normalizer": "plate_fold"}  # fuzzy, confusions folded
    for name in ("vehicle_type", "vehicle_color", "plate_color", "gender", "upper_color", "lower_color"):
        assert attrs[name] == {"type": "keyword"}, name
    for score in SCORE_FIELDS.values():
        assert attrs[score] == {"type": "float"}, score
    assert attrs["bag"] == attrs["hat"] == attrs["backpack"] == {"type": "boolean"}
    assert props["model_versions"]["enabled"] is False and props["track"]["enabled"] is False
    fold = body["template"]["settings"]["analysis"]
    assert fold["normalizer"]["plate_fold"]["char_filter"] == ["plate_confusions"]
    assert {"O => 0", "B => 8", "I => 1", "S => 5"} <= set(fold["char_filter"]["plate_confusions"]["mappings"])


def test_the_other_indices_geo_point_cameras_dates_and_vectors() -> None:
    indices = other_indices("sl")
    assert sorted(indices) == ["sl-cameras", "sl-frames", "sl-plates", "sl-sequences", "sl-vectors"]
    cameras = indices["sl-cameras"]["mappings"]["properties"]
    assert cameras["location"] == {"type": "geo_point"}
    assert indices["sl-frames"]["mappings"]["properties"]["ts"] == {"type": "date_nanos"}
    plates = indices["sl-plates"]["mappings"]["properties"]
    assert plates["plate"]["fields"]["wild"] == {"type": "wildcard"} and plates["rowid"] == {"type": "long"}
    assert indices["sl-plates"]["settings"]["analysis"]["normalizer"]["plate_fold"]
    assert indices["sl-vectors"]["mappings"]["properties"]["vector"] == {"type": "binary"}


@pytest.mark.parametrize("space", sorted(SPACES))
def test_each_space_has_a_dense_vector_field_with_hnsw(space: str) -> None:
    vec = knn_index_body(space, SPACES[space])["mappings"]["properties"]["vec"]
    assert vec["type"] == "dense_vector" and vec["dims"] == SPACES[space] and vec["index"] is True
    assert vec["similarity"] == "cosine"
    assert vec["index_options"] == {"type": index_type(space, SPACES[space], (9, 1)), "m": 16, "ef_construction": 100}


def test_the_index_type_follows_the_clusters_version() -> None:
    assert [index_type("vehicle", 1280, v) for v in ((8, 11), (8, 12), (8, 17), (8, 18), (9, 2))] == [
        "hnsw", "int8_hnsw", "int8_hnsw", "bbq_hnsw", "bbq_hnsw"]  # int8 since 8.12, BBQ generally available 8.18
    assert index_type("face", 128, (9, 2)) == "hnsw" and index_type("person", 32, (9, 2)) == "int8_hnsw"
    assert knn_body(np.ones(4, np.float32), 10, oversample=3)["knn"]["k"] == 30  # BBQ: more candidates re-ranked


def test_the_vector_index_reads_the_clusters_version_before_creating_its_index(recorded: Elasticsearch,
                                                                                tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    for number, want in (("8.11.4", "hnsw"), ("8.15.0", "int8_hnsw"), ("9.2.1", "bbq_hnsw")):
        Recorder.answer = lambda method, path, body, n=number: (200, {"version": {"number": n}}) if (
            method == "GET" and path == "/") else None
        Recorder.requests.clear()
        index = ElasticsearchVectorIndex(recorded, "sl", "vehicle", 1280, store)
        (create,) = sent("PUT", "/sl-knn-vehicle")
        assert create[2]["mappings"]["properties"]["vec"]["index_options"]["type"] == want
        assert index.oversample == OVERSAMPLE[want]
    store.close()


# documents ---------------------------------------------------------------------------------------------------
def test_documents_round_trip_through_json() -> None:
    car = Sighting("v1", "c1", T0.astimezone(timezone(timedelta(hours=8))), "vehicle", BBox(1, 2, 3, 4), 0.9,
                   VehicleAttributes(plate="京A12345", plate_score=0.93, vehicle_color="red", vehicle_color_score=0.7),
                   crop="crops/v1.jpg", frame_sha256="f1", embedding_space="vehicle", vector_id=7,
                   model_versions={"embedding": "x"}, track=TrackInfo(T0, T0 + timedelta(seconds=2), 3, [[0, 1, 2]]))
    doc = json.loads(json.dumps(sighting_doc(car)))
    assert doc["ts"] == "2026-11-02T08:00:00.123456Z"  # UTC, microseconds
    assert sighting_from_doc(doc) == car and sighting_from_doc(doc).ts.utcoffset() == timedelta(0)
    walker = Sighting("p1", "c1", T0, "person", BBox(1, 2, 3, 4), 0.8, PersonAttributes(gender="female", bag=True))
    assert sighting_from_doc(json.loads(json.dumps(sighting_doc(walker)))) == walker
    camera = Camera("c1", "Gate", 121.3, 31.2, 90.0, "checkpoint", "纪翟路", ["gate"])
    assert camera_doc(camera)["location"] == {"lon": 121.3, "lat": 31.2}
    assert camera_from_doc(json.loads(json.dumps(camera_doc(camera)))) == camera
    v = np.random.default_rng(0).standard_normal(1024).astype(np.float32)
    assert np.array_equal(decode_vector(encode_vector(v)), v)  # bit-exact float32


# queries -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "mode", "expected"), [
    ("京a12345", "exact", {"term": {"plate": "京A12345"}}),
    ("12345", "suffix", {"wildcard": {"plate.wild": {"value": "*12345"}}}),
    ("京A1?3*", "wildcard", {"wildcard": {"plate.wild": {"value": "京A1?3*"}}}),
])
def test_plate_queries_per_mode(text: str, mode: str, expected: dict) -> None:
    assert plate_query(text, mode) == expected


def test_fuzzy_plate_query_folds_confusions_and_bounds_the_distance() -> None:
    body = plate_query("京AO8I2S", "fuzzy")["fuzzy"]["plate.folded"]
    assert body["value"] == "京A08125"  # O→0, B/8 kept as 8, I→1, S→5: a misread costs no edit
    assert body["fuzziness"] == 2 and body["transpositions"] is True
    assert plate_query("京A12345", "fuzzy", max_distance=1.0)["fuzzy"]["plate.folded"]["fuzziness"] == 1
    with pytest.raises(InputError):
        plate_query("", "fuzzy")


def test_attribute_filters_any_of_colours_and_min_confidence() -> None:
    assert attribute_clauses(AttributeFilter(vehicle_color="red")) == [{"term": {"attributes.vehicle_color": "red"}}]
    assert attribute_clauses(AttributeFilter(vehicle_color=("white", "silver"))) == [
        {"terms": {"attributes.vehicle_color": ["white", "silver"]}}]
    assert attribute_clauses(AttributeFilter(upper_color=())) == [{"terms": {"attributes.upper_color": []}}]
    assert attribute_clauses(AttributeFilter(bag=False)) == [{"term": {"attributes.bag": False}}]
    sure = attribute_clauses(AttributeFilter(vehicle_color=("red", "white"), vehicle_type="car", bag=True,
                                             min_confidence=0.8))
    assert {"range": {"attributes.vehicle_color_score": {"gte": 0.8}}} in sure
    assert {"range": {"attributes.vehicle_type_score": {"gte": 0.8}}} in sure
    assert {"range": {"attributes.bag_score": {"gte": 0.8}}} in sure  # the learned heads score yes/no fields too
    assert len(sure) == 6  # three conditions and their three scores
    assert attribute_clauses(AttributeFilter(min_confidence=0.99)) == []  # confidence alone filters nothing


def test_time_range_cameras_kind_plate_ids_and_order() -> None:
    q = SightingQuery(kind="vehicle", camera_ids=["c1", "c2"], start=T0, end=T0 + timedelta(hours=1),
                      plate="京A12345", frame_sha256="f", ids=["a"], attributes=AttributeFilter(plate_color="blue"))
    clauses = sighting_filter(q)["bool"]["filter"]
    assert {"term": {"kind": "vehicle"}} in clauses and {"terms": {"camera_id": ["c1", "c2"]}} in clauses
    assert {"range": {"ts": {"gte": "2026-11-02T08:00:00.123456Z", "lt": "2026-11-02T09:00:00.123456Z"}}} in clauses
    assert {"term": {"attributes.plate": "京A12345"}} in clauses and {"terms": {"id": ["a"]}} in clauses
    assert {"term": {"frame_sha256": "f"}} in clauses and {"term": {"attributes.plate_color": "blue"}} in clauses
    assert sighting_filter(SightingQuery(ids=[]))["bool"]["filter"] == [{"terms": {"id": []}}]  # matches nothing
    assert sighting_filter(SightingQuery())["bool"]["filter"] == []
    assert sighting_sort(True) == [{"ts": {"order": "desc"}}, {"id": {"order": "asc"}}]
    assert sighting_sort(False)[0] == {"ts": {"order": "asc"}}


# time-based indices and retention ----------------------------------------------------------------------------
def test_monthly_index_names_follow_utc() -> None:
    assert sighting_index("sl", T0) == "sl-sightings-2026.11"
    new_year_in_shanghai = datetime(2027, 1, 1, 7, 0, tzinfo=timezone(timedelta(hours=8)))
    assert sighting_index("sl", new_year_in_shanghai) == "sl-sightings-2026.12"  # still December in UTC
    assert month_of("sl", "sl-sightings-2026.02") == datetime(2026, 2, 1, tzinfo=UTC)
    assert month_of("sl", "sl-frames") is None and month_of("sl", "sl-sightings-junk") is None


def test_retention_drops_only_months_wholly_before_the_cutoff() -> None:
    names = ["sl-sightings-2025.12", "sl-sightings-2026.01", "sl-sightings-2026.02", "sl-sightings-2026.03",
             "other-sightings-2025.01", "sl-sightings-x"]
    assert indices_fully_before("sl", names, datetime(2026, 3, 1, tzinfo=UTC)) == [
        "sl-sightings-2025.12", "sl-sightings-2026.01", "sl-sightings-2026.02"]  # March 1st ends February exactly
    assert indices_fully_before("sl", names, datetime(2026, 2, 28, 23, 59, tzinfo=UTC)) == [
        "sl-sightings-2025.12", "sl-sightings-2026.01"]  # February's edge is deleted by query, not dropped
    assert indices_fully_before("sl", names, datetime(2025, 12, 31, tzinfo=UTC)) == []


# kNN ---------------------------------------------------------------------------------------------------------
def test_filtered_knn_body_sizes_candidates_from_k() -> None:
    q = np.full(4, 0.5, np.float32)
    body = knn_body(q, 10, np.array([3, 1, 2]))
    knn = body["knn"]
    assert knn["field"] == "vec" and knn["query_vector"] == [0.5] * 4
    assert knn["k"] == 20 and body["size"] == 20  # oversampled, re-ranked on the float vectors
    assert knn["num_candidates"] == num_candidates(20) == 200
    assert knn["filter"] == {"terms": {"id": [3, 1, 2]}}  # applied inside the graph search, not after it
    assert "filter" not in knn_body(q, 10)["knn"]
    assert num_candidates(1) == 100 and num_candidates(5000) == 10_000
    assert knn_body(q, 8000)["knn"]["k"] == 10_000  # Elasticsearch's limit
    exact = exact_body(q, 5, np.array([7]))
    assert exact["size"] == 5 and exact["query"]["script_score"]["query"] == {"terms": {"id": [7]}}
    assert "cosineSimilarity" in exact["query"]["script_score"]["script"]["source"]
    assert exact_body(q, 5)["query"]["script_score"]["query"] == {"match_all": {}}


def test_rerank_scores_by_exact_inner_product() -> None:
    q = np.array([1.0, 0.0], np.float32)
    vectors = {1: np.array([0.6, 0.8], np.float32), 2: np.array([1.0, 0.0], np.float32)}
    scores, ids = rerank_exact(q, candidate_rows([[1, 2, 9]]), vectors, 3)  # 9: deleted meanwhile, dropped
    scores, ids = scores[0], ids[0]
    assert ids.tolist() == [2, 1, -1] and np.allclose(scores[:2], [1.0, 0.6]) and scores[2] == -np.inf


# whole calls, recorded ---------------------------------------------------------------------------------------
def test_opening_the_store_puts_the_template_and_creates_the_indices(recorded: Elasticsearch) -> None:
    ElasticsearchStore(recorded, "sl")
    (template,) = sent("PUT", "/_index_template/sl-sightings")
    want = sightings_template("sl")
    assert template[2]["index_patterns"] == want["index_patterns"] and template[2]["template"] == want["template"]
    created = {r[1].split("?")[0] for r in sent("PUT", "/sl-") if r[1].startswith("/sl-")}
    assert created == {f"/{name}" for name in other_indices("sl")}


def test_reattribute_reads_versions_and_updates_attributes_with_the_heads_version(recorded: Elasticsearch) -> None:
    store = ElasticsearchStore(recorded, "sl")
    Recorder.hits = [{"_index": "sl-sightings-2026.11", "_id": "v0", "sort": ["v0"],
                      "_source": {"id": "v0", "model_versions": {"embedding": "e1"}}},
                     {"_index": "sl-sightings-2026.11", "_id": "v1", "sort": ["v1"],
                      "_source": {"id": "v1", "model_versions": {"embedding": "e1", "attributes": "heads-1"}}}]
    assert list(store.stale_attributes("vehicle", "heads-1")) == [["v0"]]
    (search,) = sent("POST", "/_search")
    assert search[2]["query"] == {"term": {"kind": "vehicle"}} and search[2]["_source"] == ["id", "model_versions"]
    attrs = VehicleAttributes(plate="京A12345", vehicle_color="silver", vehicle_color_score=0.61)
    assert store.replace_attributes([("v0", attrs), ("gone", VehicleAttributes())], "heads-1") == 1
    (request,) = sent("PUT", "/_bulk")
    assert "refresh=wait_for" in request[1]
    action, doc = request[2]
    assert action == {"update": {"_index": "sl-sightings-2026.11", "_id": "v0"}}
    # the whole attributes object (plate kept), the version merged beside the embedding's
    assert doc == {"doc": {"attributes": asdict(attrs), "model_versions": {"attributes": "heads-1"}}}


def test_committed_writes_wait_for_a_refresh(recorded: Elasticsearch) -> None:
    store = ElasticsearchStore(recorded, "sl")
    store.upsert_cameras([Camera("c1", "Gate", 121.3, 31.2)])
    (request,) = sent("PUT", "/_bulk")
    assert "refresh=wait_for" in request[1]  # searchable when the call returns
    action, doc = request[2]
    assert action == {"index": {"_index": "sl-cameras", "_id": "c1"}} and doc["location"] == {"lon": 121.3, "lat": 31.2}


def test_retention_drops_whole_months_and_deletes_the_edge_by_query(recorded: Elasticsearch) -> None:
    store = ElasticsearchStore(recorded, "sl")
    Recorder.indices = {f"sl-sightings-2026.0{m}": {} for m in (1, 2, 3)}
    Recorder.requests.clear()
    store.delete_sightings(before=datetime(2026, 3, 10, tzinfo=UTC))
    dropped = [r[1].split("?")[0] for r in Recorder.requests if r[0] == "DELETE"]
    assert dropped == ["/sl-sightings-2026.01", "/sl-sightings-2026.02"]  # March holds sightings after the cutoff
    read_first = [r[1].split("?")[0] for r in sent("POST", "/_search")][:2]
    assert read_first == ["/sl-sightings-2026.01/_search", "/sl-sightings-2026.02/_search"]  # read before dropped
    edge = [r for r in sent("POST", "/sl-sightings-*/_search") if "range" in json.dumps(r[2])][-1]
    assert edge[2]["query"]["bool"]["filter"] == [{"range": {"ts": {"lt": "2026-03-10T00:00:00.000000Z"}}}]
    (frames,) = sent("POST", "/sl-frames/_delete_by_query")
    assert {"term": {"n_sightings": 0}} in frames[2]["query"]["bool"]["filter"]  # frames in which nothing was seen
    Recorder.requests.clear()
    store.delete_sightings(before=datetime(2026, 3, 10, tzinfo=UTC), camera_ids=["c1"])
    assert not [r for r in Recorder.requests if r[0] == "DELETE"]  # some cameras only: never a whole month


def test_a_frame_is_claimed_then_written_in_one_bulk_that_waits_for_a_refresh(recorded: Elasticsearch) -> None:
    store = ElasticsearchStore(recorded, "sl")
    Recorder.requests.clear()
    car = Sighting("v0", "c1", T0, "vehicle", BBox(0, 0, 1, 1), 0.9, VehicleAttributes(plate="京A12345"),
                   frame_sha256="f0")
    store.add_frame(FrameRecord("f0", "c1", T0, "a.jpg"), [car], [StoredVector("v0", "vehicle", np.ones(4, "f4"))])
    steps = [(r[0], r[1].split("?")[0]) for r in Recorder.requests]
    assert steps == [("PUT", "/sl-frames/_create/f0"),  # the claim: op_type=create, a second writer gets 409
                     ("POST", "/sl-sequences/_update/vectors-vehicle"),  # the vector id
                     ("POST", "/sl-plates/_mget"), ("POST", "/sl-sequences/_update/plates"),  # a new plate's row id
                     ("PUT", "/_bulk"),  # everything else at once,
                     ("POST", "/sl-frames/_update/f0")]  # then the commit mark
    bulk_target, actions = Recorder.requests[4][1], Recorder.requests[4][2]
    assert "refresh=wait_for" in bulk_target  # searchable when add_frame returns
    assert actions[0] == {"create": {"_index": "sl-vectors", "_id": "vehicle:1"}}
    assert actions[2] == {"create": {"_index": "sl-sightings-2026.11", "_id": "v0"}}
    assert actions[3]["vector_id"] == 1 and actions[3]["attributes"]["plate"] == "京A12345"
    assert actions[4]["update"]["_id"] == "京A12345" and actions[5]["upsert"]["rowid"] == 1
    assert car.vector_id == 1 and car.embedding_space == "vehicle"


def test_a_queue_worker_commits_without_waiting_for_a_refresh(recorded: Elasticsearch) -> None:
    store = ElasticsearchStore(recorded, "sl", visible_on_commit=False)
    Recorder.requests.clear()
    car = Sighting("v1", "c1", T0, "vehicle", BBox(0, 0, 1, 1), 0.9, VehicleAttributes(), frame_sha256="f1")
    store.add_frame(FrameRecord("f1", "c1", T0, "b.jpg"), [car], [StoredVector("v1", "vehicle", np.ones(4, "f4"))])
    (target,) = [r[1] for r in Recorder.requests if r[1].startswith("/_bulk")]
    assert "refresh=false" in target  # durable when the bulk succeeds; searchable within the refresh interval


def test_bulk_retries_rejections_with_back_off() -> None:
    assert BULK_OPTIONS["max_retries"] >= 3 and BULK_OPTIONS["initial_backoff"] > 0
    assert BULK_OPTIONS["max_backoff"] >= BULK_OPTIONS["initial_backoff"] * 2 ** (BULK_OPTIONS["max_retries"] - 1)
    assert BULK_OPTIONS["chunk_size"] == 500


def test_the_vector_index_sends_bulk_adds_knn_with_filters_and_deletes(recorded: Elasticsearch,
                                                                        tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    index = ElasticsearchVectorIndex(recorded, "sl", "vehicle", 4, store, exact_limit=1000)
    (create,) = sent("PUT", "/sl-knn-vehicle")
    assert create[2]["mappings"]["properties"]["vec"]["dims"] == 4
    vectors = np.eye(4, dtype=np.float32)
    index.add(np.array([1, 2, 3, 4]), vectors)
    (bulk_request,) = sent("PUT", "/_bulk")
    assert "refresh=wait_for" in bulk_request[1]
    assert bulk_request[2][:2] == [{"index": {"_index": "sl-knn-vehicle", "_id": "1"}},
                                   {"id": 1, "vec": [1.0, 0.0, 0.0, 0.0]}]
    Recorder.count = 5000  # past the exact limit: approximate kNN, filtered inside the search
    wide = np.arange(1, EXACT_FILTER + 2)
    index.search(vectors[:2], 3, wide)
    (msearch,) = sent("POST", "/_msearch")
    header, body = msearch[2][:2]
    assert header == {"index": "sl-knn-vehicle"} and body["knn"]["filter"]["terms"]["id"] == wide.tolist()
    assert len(msearch[2]) == 4  # both queries in one round trip
    Recorder.requests.clear()
    index.search(vectors[:1], 3, np.array([2, 3]))  # a narrow filter: exact among the allowed
    (msearch,) = sent("POST", "/_msearch")
    assert msearch[2][1]["query"]["script_score"]["query"] == {"terms": {"id": [2, 3]}}
    index.remove(np.array([1, 2]))
    (delete,) = sent("POST", "/sl-knn-vehicle/_delete_by_query")
    assert "refresh=true" in delete[1] and delete[2]["query"] == {"terms": {"id": [1, 2]}}
    store.close()


# configuration -----------------------------------------------------------------------------------------------
def test_settings_read_the_cluster_from_the_environment() -> None:
    s = Settings.from_env({"SIGHTLINE_STORE": "elasticsearch", "SIGHTLINE_VECTORS": "elasticsearch",
                           "SIGHTLINE_ES_URL": "https://es01:9200", "SIGHTLINE_ES_USER": "elastic",
                           "SIGHTLINE_ES_PASSWORD": "s3cret", "SIGHTLINE_ES_API_KEY": "k3y",
                           "SIGHTLINE_ES_PREFIX": "city-a", "SIGHTLINE_BLOBS": "/mnt/shared/sightline"})
    assert (s.store_backend, s.vector_backend, s.es_url, s.es_prefix) == ("elasticsearch", "elasticsearch",
                                                                          "https://es01:9200", "city-a")
    assert s.blobs_dir == Path("/mnt/shared/sightline")
    assert "s3cret" not in repr(s) and "k3y" not in repr(s)  # secrets never reach a log line
    assert Settings.from_env({}).es_prefix == "sightline" and Settings.from_env({}).blobs_dir is None
    with pytest.raises(InputError, match="SIGHTLINE_ES_PREFIX"):
        Settings.from_env({"SIGHTLINE_ES_PREFIX": "City A"})
    assert "elasticsearch" in STORE_BACKENDS and "elasticsearch" in VECTOR_BACKENDS


def test_the_connection_prefers_an_api_key() -> None:
    with_key = ESConnection("http://es:9200", api_key="k", user="elastic", password="p").client()
    with_password = ESConnection("http://es:9200", user="elastic", password="p").client()
    try:
        assert with_key._headers["authorization"].startswith("ApiKey ")
        assert with_password._headers["authorization"].startswith("Basic ")
    finally:
        with_key.close()
        with_password.close()


def test_choosing_elasticsearch_without_a_url_is_a_clear_error(tmp_path: Path) -> None:
    settings = replace(Settings(data_dir=tmp_path, roads_geojson=None), store_backend="elasticsearch")
    with pytest.raises(InputError, match="SIGHTLINE_ES_URL"):
        Sightline(settings)


# the audit log -----------------------------------------------------------------------------------------------
KEY = AuditKey(b"k" * 32)


def test_audit_entries_round_trip_and_keep_their_hash() -> None:
    entry = AuditEntry(3, T0, "ada", "investigator", "search.plates", "10.0.0.1", "CASE-1", "theft",
                       {"q": "京A12345", "mode": "fuzzy"}, 2, 200, "a" * 64, key_id=KEY.key_id)
    entry.hash = entry_hash(entry, KEY)
    back = audit_from_doc(json.loads(json.dumps(audit_doc(entry))))
    assert back == entry and entry_hash(back, KEY) == entry.hash  # verification recomputes the same seal
    legacy = audit_doc(entry)
    del legacy["key_id"]  # an entry written before the log was keyed reads back without a key id
    assert audit_from_doc(legacy).key_id == ""
    props = audit_index_body()["mappings"]["properties"]
    assert props["params"] == {"type": "wildcard"} and props["seq"] == {"type": "long"}
    query = audit_query("ada", None, "search.plates", T0, None, "京A1*")["bool"]["filter"]
    assert {"term": {"actor": "ada"}} in query and {"range": {"ts": {"gte": "2026-11-02T08:00:00.123456Z"}}} in query
    assert {"wildcard": {"params": {"value": "*京A1\\**"}}} in query  # a substring, with the pattern escaped


def test_audit_appends_take_their_sequence_number_with_create(recorded: Elasticsearch) -> None:
    store = ElasticsearchAuditStore(recorded, "sl")
    first = store.append(AuditEntry(0, T0, "ada", "admin", "login"), KEY)
    assert first.seq == 1 and first.prev_hash == GENESIS and first.hash == entry_hash(first, KEY)
    (create,) = sent("PUT", "/sl-audit/_create/")
    assert create[1].startswith("/sl-audit/_create/1") and create[2]["hash"] == first.hash  # op_type=create on seq
    second = store.append(AuditEntry(0, T0, "ada", "admin", "logout"), KEY)
    assert second.seq == 2 and second.prev_hash == first.hash
    assert AUDIT_BACKENDS["sqlite"] and AUDIT_BACKENDS["elasticsearch"]


# several writers: ids are taken before the write --------------------------------------------------------------
def test_plates_after_stops_before_a_gap_a_writer_may_still_fill() -> None:
    now, old, young = 10**15, 10**15 - 10**9, 10**15 - 10**6  # created 1000 s ago, 1 s ago
    assert settled_prefix(0, [1, 2, 3], [young] * 3, now) == 3  # no gap
    assert settled_prefix(0, [1, 2, 4], [young] * 3, now) == 2  # 3 may still come: stop before 4
    assert settled_prefix(0, [1, 2, 4, 5], [old, old, old, young], now) == 4  # 3 was taken before 4, long ago
    assert settled_prefix(10, [12], [young], now) == 0  # 11 may still come
    assert settled_prefix(10, [], [], now) == 0


def test_catch_up_takes_in_a_vector_stored_after_a_later_one(recorded: Elasticsearch) -> None:
    stored = {1: np.ones(4, np.float32), 2: np.ones(4, np.float32), 4: np.ones(4, np.float32)}

    def vectors_after(space: str, after: int, batch: int = 10_000):  # noqa: ANN202
        ids = sorted(i for i in stored if i > after)
        if ids:
            yield np.array(ids, np.int64), np.stack([stored[i] for i in ids])

    store = SimpleNamespace(vectors_after=vectors_after, vector_count=lambda space, dim=None: len(stored),
                            get_vectors=lambda space, ids: {i: stored[i] for i in ids if i in stored})
    index = ElasticsearchVectorIndex(recorded, "sl", "vehicle", 4, store)
    assert index.last_id == 4 and sorted(index.holes) == [3]  # 3 was taken by a writer that has not stored it yet
    assert index.catch_up() == 0
    stored[3] = np.ones(4, np.float32)  # now it has
    assert index.catch_up() == 1 and index.holes == {}
    assert index.catch_up() == 0
