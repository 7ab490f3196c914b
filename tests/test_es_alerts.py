"""The Elasticsearch alert store without a cluster: its mappings, its documents, and the bodies of the requests that
matter (the once-only delivery claim, the acknowledgement, the alert with its deliveries, retention's purge).
The client is given a node that records each request and answers as told. Whether a cluster then behaves as the
contract says (the Painless scripts included) is what tests/test_alert_store_contract.py checks when
SIGHTLINE_ES_URL is set.
"""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import pytest
from elastic_transport import ApiResponseMeta, BaseNode, HttpHeaders
from elastic_transport._node._base import NodeApiResponse
from elasticsearch import Elasticsearch

from indexer.alert_store import rule_from_json
from indexer.es_alerts import (
    ACK_SCRIPT,
    CLAIM_SCRIPT,
    ElasticsearchAlertStore,
    alert_doc,
    alert_from_doc,
    alert_indices,
    alerts_query,
    defer_query,
    entry_doc,
    entry_from_doc,
    failed_script,
    naming_query,
    rule_doc,
)
from models.records import InputError
from models.watchlists import Alert, Rule, WatchEntry
from services.settings import Settings
from services.system import ALERT_BACKENDS

T0 = datetime(2026, 11, 2, 8, 0, 0, 123456, tzinfo=timezone.utc)
INDICES = ("watchlists", "watch-entries", "rules", "alerts", "webhooks", "deliveries")


def clone_alert(acked: bool = False) -> Alert:
    return Alert("a1", "r1", "s1", "gate-1", T0, T0 + timedelta(seconds=2), "high", "京A12345",
                 {"rule": "clones", "other_sighting_id": "s0", "distance_km": 12.5}, "2026/11/02/s1.jpg",
                 "ada" if acked else None, T0 + timedelta(minutes=5) if acked else None)


# mappings and documents -------------------------------------------------------------------------------------------
def test_every_index_maps_its_fields_explicitly() -> None:
    bodies = alert_indices("sl", replicas=2)
    assert sorted(bodies) == sorted(f"sl-{kind}" for kind in INDICES)
    for body in bodies.values():
        assert body["mappings"]["dynamic"] is False and body["settings"]["number_of_replicas"] == 2
    alerts = bodies["sl-alerts"]["mappings"]["properties"]
    for field in ("id", "rule_id", "sighting_id", "other_sighting_id", "camera_id", "severity", "acked_by"):
        assert alerts[field] == {"type": "keyword"}, field
    for field in ("ts", "raised_at", "acked_at"):
        assert alerts[field] == {"type": "date_nanos"}, field  # µs times sort and filter exactly
    assert alerts["details"] == {"type": "object", "enabled": False}
    deliveries = bodies["sl-deliveries"]["mappings"]["properties"]
    assert deliveries["state"] == {"type": "keyword"} and deliveries["next_us"] == {"type": "long"}
    assert "secret" not in bodies["sl-webhooks"]["mappings"]["properties"]  # kept in _source, never indexed
    assert bodies["sl-watch-entries"]["mappings"]["properties"]["face"] == {"type": "binary"}


def test_documents_round_trip_through_json() -> None:
    for a in (clone_alert(), clone_alert(acked=True)):
        doc = json.loads(json.dumps(alert_doc(a)))
        assert alert_from_doc(doc) == a and doc["other_sighting_id"] == "s0"
    face = np.random.default_rng(0).standard_normal(128).astype(np.float32)
    e = WatchEntry("e1", "w1", "missing", "ada", "Jo", "exact", 0, {"gender": "female"})
    back, vector = entry_from_doc(json.loads(json.dumps(entry_doc(e, face, T0, 3))))
    assert back == replace(e, created_at=T0) and vector is not None and np.array_equal(vector, face)
    rule = Rule("r1", "night", watchlist_id="w1", time_from=time(22), time_to=time(6), severity="high")
    doc = rule_doc(rule)
    assert rule_from_json(doc["body"]) == rule and (doc["kind"], doc["active"]) == ("watchlist", True)


def test_alert_listing_and_purge_queries() -> None:
    assert alerts_query("r1", False, T0) == {"bool": {
        "filter": [{"term": {"rule_id": "r1"}}, {"range": {"raised_at": {"gte": "2026-11-02T08:00:00.123456Z"}}}],
        "must_not": [{"exists": {"field": "acked_at"}}]}}
    assert alerts_query(None, True, None) == {"bool": {"filter": [{"exists": {"field": "acked_at"}}]}}
    assert alerts_query(None, None, None) == {"bool": {"filter": []}}
    assert naming_query(["s1"]) == {"bool": {"should": [{"terms": {"sighting_id": ["s1"]}},
                                                        {"terms": {"other_sighting_id": ["s1"]}}],
                                             "minimum_should_match": 1}}
    until = datetime(2026, 11, 2, tzinfo=timezone.utc)
    assert defer_query("h1", until)["bool"]["filter"][2] == {"range": {"next_us": {"lt": 1_793_577_600_000_000}}}
    assert failed_script("x" * 900, None)["params"] == {"state": "dead", "next_us": 0, "error": "x" * 500}


# whole calls, recorded ----------------------------------------------------------------------------------------------
class Recorder(BaseNode):
    """Records every request; answers what `answers` says for the first (method, path part) that matches, else an
    acknowledgement (HEAD: no such index; bulk: every item done)."""

    requests: ClassVar[list[tuple[str, str, dict[str, list[str]], Any]]] = []
    answers: ClassVar[list[tuple[str, str, int, dict[str, Any]]]] = []

    def perform_request(self, method: str, target: str, body: bytes | None = None, headers: Any = None,
                        request_timeout: Any = None) -> NodeApiResponse:
        parts = urlsplit(target)
        path, query = unquote(parts.path), parse_qs(parts.query)
        lines = [json.loads(x) for x in (body.decode() if body else "").splitlines() if x.strip()]
        Recorder.requests.append((method, path, query, lines if path.endswith("/_bulk") else (lines or [None])[0]))
        status, answer = 200, {"acknowledged": True}
        if method == "HEAD":
            status, answer = 404, {}
        elif path.endswith("/_bulk"):
            answer = {"errors": False, "items": [{op: {"_index": meta["_index"], "_id": meta["_id"], "status": 201}}
                                                 for entry in lines if len(entry) == 1
                                                 for op, meta in entry.items() if isinstance(meta, dict)]}
        for want_method, part, want_status, want in Recorder.answers:
            if method == want_method and part in path:
                status, answer = want_status, want
                break
        meta = ApiResponseMeta(status, "1.1", HttpHeaders({"x-elastic-product": "Elasticsearch",
                                                           "content-type": "application/json"}), 0.0, self.config)
        return NodeApiResponse(meta, json.dumps(answer).encode())


@pytest.fixture
def store() -> ElasticsearchAlertStore:
    Recorder.requests, Recorder.answers = [], []
    opened = ElasticsearchAlertStore(Elasticsearch("http://recorder:9200", node_class=Recorder), "sl")
    Recorder.requests.clear()
    yield opened
    opened.close()


def sent(method: str, path_part: str) -> list[tuple[str, str, dict[str, list[str]], Any]]:
    return [r for r in Recorder.requests if r[0] == method and path_part in r[1]]


def hits(*sources: dict[str, Any]) -> dict[str, Any]:
    return {"hits": {"hits": [{"_id": str(i), "_source": s, "sort": [i]} for i, s in enumerate(sources)]}}


def test_opening_creates_the_six_indices_with_their_mappings() -> None:
    Recorder.requests, Recorder.answers = [], []
    ElasticsearchAlertStore(Elasticsearch("http://recorder:9200", node_class=Recorder), "sl").close()
    created = {r[1]: r[3] for r in sent("PUT", "/sl-")}
    assert created == {f"/{name}": body for name, body in alert_indices("sl").items()}


def test_a_delivery_claim_is_one_conditional_scripted_update(store: ElasticsearchAlertStore) -> None:
    Recorder.answers = [("POST", "/_update/", 200, {"result": "updated"})]
    before = datetime.now(timezone.utc)
    assert store.claim_delivery("a1", "h1", 90)
    ((_, path, query, body),) = sent("POST", "/_update/")
    assert path == "/sl-deliveries/_update/a1:h1" and query["retry_on_conflict"] == ["3"]
    script = body["script"]
    assert script["source"] == CLAIM_SCRIPT
    assert "state == 'pending'" in CLAIM_SCRIPT and "ctx.op = 'noop'" in CLAIM_SCRIPT  # else: nothing changes
    params = script["params"]
    assert params["until_us"] - params["now_us"] == 90_000_000
    assert params["now_us"] >= int(before.timestamp() * 1e6) - 1
    Recorder.answers = [("POST", "/_update/", 200, {"result": "noop"})]  # not due, or claimed by another sender
    assert not store.claim_delivery("a1", "h1", 90)
    Recorder.answers = [("POST", "/_update/", 409, {"error": {"type": "version_conflict_engine_exception"},
                                                   "status": 409})]
    assert not store.claim_delivery("a1", "h1", 90)  # still contended after the retries: another sender
    Recorder.answers = [("POST", "/_update/", 404, {"error": {"type": "document_missing_exception"}, "status": 404})]
    assert not store.claim_delivery("a1", "h1", 90)  # the delivery is gone (its webhook was deleted)


def test_an_acknowledgement_is_conditional_and_waits_for_a_refresh(store: ElasticsearchAlertStore) -> None:
    Recorder.answers = [("POST", "/_update/", 200, {"result": "updated"})]
    assert store.ack("a1", "ada")
    ((_, path, query, body),) = sent("POST", "/_update/")
    assert path == "/sl-alerts/_update/a1" and query["refresh"] == ["wait_for"]
    assert body["script"]["source"] == ACK_SCRIPT and body["script"]["params"]["user"] == "ada"
    Recorder.answers = [("POST", "/_update/", 200, {"result": "noop"})]
    assert not store.ack("a1", "bob")  # acknowledged already
    Recorder.answers = [("POST", "/_update/", 404, {"error": {"type": "document_missing_exception"}, "status": 404})]
    assert not store.ack("nope", "bob")


def test_an_alert_and_its_deliveries_are_one_bulk_that_waits_for_a_refresh(store: ElasticsearchAlertStore) -> None:
    Recorder.answers = [("POST", "/sl-webhooks/_search", 200, hits({"id": "h1", "url": "https://8.8.8.8/a"},
                                                                     {"id": "h2", "url": "https://8.8.4.4/b"}))]
    store.add_alert(clone_alert())
    ((_, _, query, actions),) = sent("PUT", "/_bulk")
    assert query["refresh"] == ["wait_for"]
    assert actions[0] == {"create": {"_index": "sl-alerts", "_id": "a1"}} and actions[1]["sighting_id"] == "s1"
    assert actions[2] == {"create": {"_index": "sl-deliveries", "_id": "a1:h1"}}
    assert actions[4] == {"create": {"_index": "sl-deliveries", "_id": "a1:h2"}}
    assert {k: actions[3][k] for k in ("alert_id", "webhook_id", "state", "attempts")} == {
        "alert_id": "a1", "webhook_id": "h1", "state": "pending", "attempts": 0}


def test_a_failed_alert_write_is_undone(store: ElasticsearchAlertStore) -> None:
    Recorder.answers = [("POST", "/sl-webhooks/_search", 200, hits({"id": "h1", "url": "https://8.8.8.8/a"})),
                        ("PUT", "/_bulk", 200, {"errors": True, "items": [
                            {"create": {"_index": "sl-alerts", "_id": "a1", "status": 201}},
                            {"create": {"_index": "sl-deliveries", "_id": "a1:h1", "status": 400,
                                        "error": {"type": "mapper_parsing_exception"}}}]})]
    with pytest.raises(Exception):  # noqa: B017,PT011 - the bulk error
        store.add_alert(clone_alert())
    undo = [r for r in sent("PUT", "/_bulk") if r[3][0] == {"delete": {"_index": "sl-alerts", "_id": "a1"}}]
    assert undo  # the alert that was written is deleted again


def test_retention_purges_alerts_and_their_deliveries_by_query(store: ElasticsearchAlertStore) -> None:
    Recorder.answers = [("POST", "/sl-alerts/_search", 200, {"hits": {"hits": [{"_id": "a1", "sort": ["a1"]}]}}),
                        ("POST", "/sl-alerts/_delete_by_query", 200, {"deleted": 1})]
    assert store.delete_for_sightings(["s0", "s9"]) == 1
    (search,) = sent("POST", "/sl-alerts/_search")
    assert search[3]["query"] == naming_query(["s0", "s9"])
    steps = [r[1] for r in Recorder.requests if r[1].endswith("_delete_by_query")]
    assert steps == ["/sl-deliveries/_delete_by_query", "/sl-alerts/_delete_by_query"]  # deliveries first
    deliveries, alerts = sent("POST", "/sl-deliveries/_delete_by_query")[0], sent("POST", "/sl-alerts/_delete_by")[0]
    assert deliveries[3]["query"] == {"terms": {"alert_id": ["a1"]}}
    assert alerts[3]["query"] == naming_query(["s0", "s9"])
    assert deliveries[2]["refresh"] == ["true"] and alerts[2]["conflicts"] == ["proceed"]


def test_outcomes_defer_and_resend_bodies(store: ElasticsearchAlertStore) -> None:
    retry_at = T0 + timedelta(minutes=1)
    store.delivery_failed("a1", "h1", "HTTP 500", retry_at)
    ((_, path, query, body),) = sent("POST", "/_update/")
    assert path == "/sl-deliveries/_update/a1:h1" and query["refresh"] == ["wait_for"]
    assert body["script"]["params"] == {"state": "pending", "next_us": 1_793_606_460_123_456, "error": "HTTP 500"}
    store.defer_webhook("h1", retry_at)
    (defer,) = sent("POST", "/sl-deliveries/_update_by_query")
    assert defer[3]["query"] == defer_query("h1", retry_at) and defer[3]["conflicts"] == "proceed"
    Recorder.answers = [("POST", "/_update_by_query", 200, {"updated": 2})]
    assert store.retry_dead() == 2
    assert sent("POST", "/_update_by_query")[-1][3]["query"] == {"term": {"state": "dead"}}


def test_the_system_chooses_the_alert_store_by_the_record_store(tmp_path: Path) -> None:
    assert sorted(ALERT_BACKENDS) == ["elasticsearch", "sqlite"]
    settings = replace(Settings(data_dir=tmp_path, roads_geojson=None), store_backend="elasticsearch")
    with pytest.raises(InputError, match="SIGHTLINE_ES_URL"):
        ALERT_BACKENDS["elasticsearch"](settings)
