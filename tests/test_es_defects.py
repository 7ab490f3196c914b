"""The Elasticsearch defects of issue #31, one test each, on the requests the backends send and on how they read
the cluster's answers (a recording node stands in for the network, see tests/test_es_backend.py; whether a real
cluster then behaves as the contract suites expect is checked where SIGHTLINE_ES_URL is set). Each test fails on
the code the issue was filed against.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from elastic_transport import ConnectionTimeout
from elasticsearch import Elasticsearch

from indexer.audit_store import AuditKey
from indexer.es_accounts import ElasticsearchAccountStore
from indexer.es_audit import ElasticsearchAuditStore, audit_doc
from indexer.es_common import MAX_TERMS, ESConnection, IndexRefused
from indexer.es_store import ElasticsearchStore
from indexer.es_vectors import ElasticsearchVectorIndex
from indexer.sqlite_store import SQLiteStore
from indexer.store import FrameRecord, StoredVector
from models.accounts import AuditEntry
from models.plate_text import PlateMatch
from models.records import BBox, Sighting, VehicleAttributes
from tests.es_recorder import Recorder, sent

UTC = timezone.utc
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def error(kind: str, reason: str) -> tuple[int, dict[str, Any]]:
    return 400, {"error": {"type": kind, "reason": reason, "root_cause": [{"type": kind, "reason": reason}]},
                 "status": 400}


@pytest.fixture
def retrying() -> Iterator[Elasticsearch]:
    """A recording client configured as ESConnection configures a real one (retries on timeout included)."""
    Recorder.requests, Recorder.count, Recorder.indices, Recorder.hits, Recorder.answer = [], 0, {}, [], None
    client = Elasticsearch("http://recorder:9200", node_class=Recorder,
                           **ESConnection("http://recorder:9200").client_options())
    yield client
    client.close()


# 1 -------------------------------------------------------------------------------------------------------------
def test_defect_1_ensure_index_raises_a_mapping_the_cluster_refuses(recorded: Elasticsearch, tmp_path: Path) -> None:
    """Only "already exists" is another process having been first; a refused mapping (int8_hnsw before 8.12) is
    an error that names the index and the cluster's reason, not silence."""
    store = SQLiteStore(tmp_path / "s.db")
    Recorder.answer = lambda method, path, body: (
        error("mapper_parsing_exception", "Unknown vector index options type [int8_hnsw]")
        if method == "PUT" and path == "/sl-knn-vehicle" else None)
    with pytest.raises(IndexRefused, match=r"sl-knn-vehicle.*int8_hnsw"):
        ElasticsearchVectorIndex(recorded, "sl", "vehicle", 4, store)
    Recorder.answer = lambda method, path, body: (
        error("resource_already_exists_exception", "index [sl-knn-vehicle] already exists")
        if method == "PUT" and path == "/sl-knn-vehicle" else None)
    ElasticsearchVectorIndex(recorded, "sl", "vehicle", 4, store)  # another process was first: fine
    store.close()


# 2 -------------------------------------------------------------------------------------------------------------
def test_defect_2_fuzzy_plate_search_verifies_every_candidate_before_cutting(recorded: Elasticsearch) -> None:
    """25 one-edit neighbours sort before the exact plate: a cut by plate order before the edit distance is
    checked kept ZA1234 and dropped ZZ1234 itself."""
    store = ElasticsearchStore(recorded, "sl")
    plates = [f"Z{c}1234" for c in "ABCDEFGHIJKLMNOPQRSTUVWXY"] + ["ZZ1234"]
    Recorder.hits = [{"_source": {"plate": p}, "sort": [p]} for p in plates]
    found = store.search_plates("ZZ1234", PlateMatch.FUZZY, limit=1)
    assert [h.plate for h in found] == ["ZZ1234"] and found[0].distance == 0


# 3 -------------------------------------------------------------------------------------------------------------
def test_defect_3_an_exact_search_allowing_more_ids_than_a_terms_query_takes_is_sent_in_parts(
        recorded: Elasticsearch, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    index = ElasticsearchVectorIndex(recorded, "sl", "vehicle", 4, store, exact_limit=1000)
    Recorder.count = 10  # a small index: searched exactly, whatever the filter's width
    allowed = np.arange(1, MAX_TERMS + 5_000, dtype=np.int64)
    Recorder.requests.clear()
    index.search(np.eye(4, dtype=np.float32)[:2], 3, allowed)
    (msearch,) = sent("POST", "/_msearch")
    bodies = msearch[2][1::2]
    terms = [b["query"]["script_score"]["query"]["terms"]["id"] for b in bodies]
    assert len(bodies) == 4  # two parts for each of the two queries, in one round trip
    assert all(len(t) <= MAX_TERMS for t in terms) and sorted(terms[0] + terms[1]) == allowed.tolist()
    store.close()


# 4 -------------------------------------------------------------------------------------------------------------
def test_defect_4_increments_are_sent_once_though_reads_are_retried_after_a_timeout(retrying: Elasticsearch) -> None:
    """The transport resends a request that timed out; the cluster may have applied it. A sequence's numbers and
    plate counts are increments: sent once, and the frame's writes are undone by recounting, never replayed."""
    store = ElasticsearchStore(retrying, "sl")
    timeouts = {"n": 0}

    def answer(method: str, path: str, body: Any) -> tuple[int, Any] | None:
        if path.startswith("/sl-sequences/_update/") or path == "/_bulk" and any(
                "update" in line for line in body if isinstance(line, dict)):
            raise ConnectionTimeout("timed out")
        if path == "/sl-cameras/_doc/c1":
            timeouts["n"] += 1
            if timeouts["n"] == 1:
                raise ConnectionTimeout("timed out")
            return 404, {"_index": "sl-cameras", "_id": "c1", "found": False}
        return None

    Recorder.answer = answer
    with pytest.raises(ConnectionTimeout):
        store._allocate("vectors-vehicle", 1)
    assert len(sent("POST", "/sl-sequences/_update/")) == 1
    assert store.get_camera("c1") is None and len(sent("GET", "/sl-cameras/_doc/c1")) == 2  # a read: retried

    Recorder.requests.clear()
    Recorder.answer = lambda method, path, body: (_ for _ in ()).throw(ConnectionTimeout("timed out")) if (
        path == "/_bulk" and any("update" in line for line in body if isinstance(line, dict))
        and not any("delete" in line for line in body if isinstance(line, dict))) else None
    car = Sighting("v1", "c1", T0, "vehicle", BBox(0, 0, 1, 1), 0.9, VehicleAttributes(plate="京A12345"),
                   frame_sha256="f1")
    with pytest.raises(ConnectionTimeout):
        store.add_frame(FrameRecord("f1", "c1", T0, "a.jpg"), [car], [])
    bulks = [r[2] for r in Recorder.requests if r[1].startswith("/_bulk")]
    commits = [b for b in bulks if any("update" in line for line in b)]
    assert len(commits) == 1  # the commit went once
    deletes = [line["delete"]["_id"] for b in bulks for line in b if "delete" in line]
    assert "v1" in deletes  # its outcome unknown: the sighting it may have written is deleted
    assert sent("POST", "/sl-plates/_mget") and not any("-=" in str(b) for b in bulks)  # recounted, not decremented


def test_defect_4_an_audit_entry_resent_after_a_timeout_is_recognised_not_chained_twice(
        retrying: Elasticsearch) -> None:
    """An audit append is a create on its sequence number; resent after a timeout it meets its own entry (409),
    which must be taken as written, not as another writer's entry to chain after (the log would hold it twice)."""
    stored: dict[str, Any] = {}

    def answer(method: str, path: str, body: Any) -> tuple[int, Any] | None:
        if path.startswith("/sl-audit/_create/"):
            doc_id = path.rsplit("/", 1)[1]
            if doc_id in stored:
                return 409, {"error": {"type": "version_conflict_engine_exception", "reason": "exists"}, "status": 409}
            stored[doc_id] = body
            raise ConnectionTimeout("timed out")  # applied, and the answer lost
        if path.startswith("/sl-audit/_doc/"):
            doc_id = path.rsplit("/", 1)[1]
            return 200, {"_index": "sl-audit", "_id": doc_id, "found": True, "_source": stored[doc_id]}
        return None

    Recorder.answer = answer
    store = ElasticsearchAuditStore(retrying, "sl")
    entry = store.append(AuditEntry(0, T0, "ada", "admin", "login"), AuditKey(b"k" * 32))
    assert entry.seq == 1 and list(stored) == ["1"]


# 5 -------------------------------------------------------------------------------------------------------------
def test_defect_5_a_month_is_dropped_only_after_its_plates_are_recounted_without_it(recorded: Elasticsearch) -> None:
    store = ElasticsearchStore(recorded, "sl")
    Recorder.indices = {"sl-sightings-2026.01": {}}
    month = [{"_index": "sl-sightings-2026.01", "_id": "s1", "sort": ["s1"],
              "_source": {"id": "s1", "attributes": {"plate": "京A12345"}, "frame_sha256": "f1"}}]

    def answer(method: str, path: str, body: Any) -> tuple[int, Any] | None:
        if path == "/sl-sightings-2026.01/_search":
            return 200, {"hits": {"hits": month}}
        if path == "/sl-plates/_mget":
            return 200, {"docs": [{"_id": i, "found": True, "_seq_no": 4, "_primary_term": 1} for i in body["ids"]]}
        return None

    Recorder.answer = answer
    Recorder.requests.clear()
    store.delete_sightings(before=datetime(2026, 3, 1, tzinfo=UTC))
    order = [(r[0], r[1].split("?")[0]) for r in Recorder.requests]
    drop = order.index(("DELETE", "/sl-sightings-2026.01"))
    counts = [i for i, r in enumerate(Recorder.requests) if r[1].startswith("/sl-sightings-*/_search")
              and "attributes.plate" in str(r[2].get("aggs", ""))]
    recount = [i for i, r in enumerate(Recorder.requests) if r[1].startswith("/_bulk")
               and any(line.get("delete", {}).get("_id") == "京A12345" for line in r[2] if isinstance(line, dict))]
    assert counts and recount and max(counts + recount) < drop  # a crash before the drop leaves the month to redo
    query = Recorder.requests[counts[0]][2]["query"]["bool"]
    assert query["must_not"] == [{"term": {"_index": "sl-sightings-2026.01"}}]  # counted without the month
    (guard,) = [line["delete"] for line in Recorder.requests[recount[0]][2] if "delete" in line]
    assert (guard["if_seq_no"], guard["if_primary_term"]) == (4, 1)  # and only if no writer counted it since


def test_a_recount_that_meets_a_concurrent_increment_counts_that_plate_again(recorded: Elasticsearch) -> None:
    """(Issue #31, lesser) the recount wrote over increments made meanwhile; now a changed plate is re-read."""
    store = ElasticsearchStore(recorded, "sl")
    seq = {"n": 4}

    def answer(method: str, path: str, body: Any) -> tuple[int, Any] | None:
        if path == "/sl-plates/_mget":
            return 200, {"docs": [{"_id": i, "found": True, "_seq_no": seq["n"], "_primary_term": 1}
                                  for i in body["ids"]]}
        if path == "/_bulk" and seq["n"] == 4:
            seq["n"] = 5  # another writer counted a sighting in between: this write is refused
            return 200, {"errors": True, "items": [{"update": {"_index": "sl-plates", "_id": "京A12345",
                                                               "status": 409, "error": {"type": "conflict"}}}]}
        return None

    Recorder.answer = answer
    Recorder.requests.clear()
    store._recount_plates(["京A12345"])
    assert len(sent("POST", "/sl-plates/_mget")) == 2
    last = [r for r in Recorder.requests if r[1].startswith("/_bulk")][-1][2]
    assert last[0]["delete"]["if_seq_no"] == 5


# 6 -------------------------------------------------------------------------------------------------------------
def test_defect_6_the_store_counts_a_spaces_vectors_of_one_dimension(recorded: Elasticsearch) -> None:
    """The index compares its size with the store's count of its own dimension (the contract suite shows the
    deletions this finds: tests/test_vector_contract.py::test_deletions_are_dropped_on_open_...)."""
    store = ElasticsearchStore(recorded, "sl")
    store.add_frame(FrameRecord("f1", "c1", T0, "a.jpg"),
                    [Sighting("v1", "c1", T0, "vehicle", BBox(0, 0, 1, 1), 0.9, VehicleAttributes())],
                    [StoredVector("v1", "vehicle", np.ones(6, np.float32) / np.sqrt(6))])
    (commit,) = [r[2] for r in Recorder.requests if r[1].startswith("/_bulk")]
    (doc,) = [b for a, b in zip(commit, commit[1:], strict=False) if a.get("create", {}).get("_index") == "sl-vectors"]
    assert doc["dim"] == 6
    Recorder.requests.clear()
    store.vector_count("vehicle", 6)
    (count,) = sent("POST", "/sl-vectors/_count")
    assert count[2]["query"] == {"bool": {"filter": [{"term": {"space": "vehicle"}}, {"term": {"dim": 6}}]}}


# 7 -------------------------------------------------------------------------------------------------------------
def test_defect_7_reranking_reads_float_vectors_from_the_store_not_the_index_source(recorded: Elasticsearch,
                                                                                   tmp_path: Path) -> None:
    """Elasticsearch 9.2 leaves dense vectors out of `_source`: a hit carries its id only, as here."""
    store = SQLiteStore(tmp_path / "s.db")
    vectors = np.eye(4, dtype=np.float32)
    rows = [Sighting(f"s{i}", "c1", T0, "vehicle", BBox(0, 0, 1, 1), 0.9, VehicleAttributes()) for i in range(4)]
    store.add_frame(FrameRecord("f", "c1", T0, "t"), rows,
                    [StoredVector(s.id, "vehicle", v) for s, v in zip(rows, vectors, strict=True)])
    index = ElasticsearchVectorIndex(recorded, "sl", "vehicle", 4, store, exact_limit=1000)
    ids = [s.vector_id for s in rows]
    Recorder.count = 4
    Recorder.answer = lambda method, path, body: (200, {"responses": [
        {"hits": {"hits": [{"_source": {"id": i}} for i in ids]}} for _ in body[::2]]}) if path == "/_msearch" else None
    Recorder.requests.clear()
    scores, found = index.search(vectors[2:3] * 0.8 + vectors[1:2] * 0.6, 2)
    assert found[0].tolist() == [ids[2], ids[1]] and np.allclose(scores[0], [0.8, 0.6])
    (msearch,) = sent("POST", "/_msearch")
    assert msearch[2][1]["_source"] == ["id"]  # vectors are not asked of the index
    store.close()


# lesser ----------------------------------------------------------------------------------------------------------
def test_a_deep_audit_page_reads_up_to_its_end_not_the_whole_log(recorded: Elasticsearch) -> None:
    entry = AuditEntry(1, T0, "ada", "admin", "login", hash="h")
    pages = {"n": 0}

    def answer(method: str, path: str, body: Any) -> tuple[int, Any] | None:
        if path == "/sl-audit/_search":
            pages["n"] += 1
            full = pages["n"] <= 20  # a log of 20 pages
            hit = {"_source": audit_doc(entry), "sort": [pages["n"]]}
            return 200, {"hits": {"hits": [hit] * (1000 if full else 0)}}
        return None

    Recorder.answer = answer
    store = ElasticsearchAuditStore(recorded, "sl")
    assert len(store.entries(limit=10, offset=10_000)) == 10
    assert pages["n"] == 11  # pages 1-11 hold entries 0-10,999


def test_logins_sweep_expired_sessions_now_and_then_not_each_time(recorded: Elasticsearch) -> None:
    Recorder.answer = lambda method, path, body: (200, {"_index": "sl-users", "_id": "u1", "found": True,
                                                        "_source": {"token_hash": "t"}}) if path.startswith(
        "/sl-users/_doc/") else None
    store = ElasticsearchAccountStore(recorded, "sl")
    for i in range(3):
        store.add_session(f"s{i}", "u1", "c", T0)
    assert len(sent("POST", "/sl-sessions/_delete_by_query")) == 1
