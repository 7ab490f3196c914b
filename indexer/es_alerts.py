"""The watchlist/rule/alert store in Elasticsearch, for several machines sharing one cluster.

Indices, named from the store's prefix: `<prefix>-watchlists`, `-watch-entries`, `-rules`, `-alerts`, `-webhooks`
and `-deliveries`, each with an explicit mapping of what is filtered or sorted on (`dynamic: false`: any other
field stays in _source only). Writes that a read must see use refresh="wait_for" (a search sees them when the call
returns); reads of one document by id (get) are realtime anyway.

Elasticsearch has no transactions. An alert and its deliveries go in one bulk request, and a failure undoes what
that request wrote. A delivery is sent once because it is claimed with one conditional scripted update of its
document (still pending and due → due again only after the lease; else a no-op). Elasticsearch runs an update on
the primary shard as get-then-write-if-unchanged (the document's seq_no and primary term): of several senders
claiming at once, the first write wins and the others either conflict (409) or, retried, read the claimed
document and no-op. Only a claim answered "updated" sends; a search for due deliveries is just a hint.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from itertools import islice
from typing import Any

import numpy as np
from elasticsearch import ConflictError, Elasticsearch, NotFoundError

from indexer.alert_store import DELIVERY_FIELDS, AlertStore, rule_from_json, rule_json, shown_url
from indexer.es_common import PAGE, chunks, ensure_index, once, walk, written_ok
from indexer.es_store import decode_vector, encode_vector, from_iso, iso
from models.watchlists import Alert, Rule, WatchEntry, Watchlist

KEYWORD: dict[str, Any] = {"type": "keyword"}
DATE: dict[str, Any] = {"type": "date_nanos"}  # microsecond times sort and filter exactly
OPAQUE: dict[str, Any] = {"type": "object", "enabled": False}  # kept as given, never parsed into the mapping
KINDS = ("watchlists", "watch-entries", "rules", "alerts", "webhooks", "deliveries")

# The claim: of the senders that run it on one delivery, exactly one gets result "updated" (module docstring).
CLAIM_SCRIPT = ("if (ctx._source.state == 'pending' && ctx._source.next_us <= params.now_us) "
                "{ ctx._source.next_us = params.until_us } else { ctx.op = 'noop' }")
ACK_SCRIPT = ("if (ctx._source.acked_at == null) { ctx._source.acked_by = params.user; "
              "ctx._source.acked_at = params.at } else { ctx.op = 'noop' }")
DONE_SCRIPT = "ctx._source.state = 'delivered'; ctx._source.attempts += 1"
FAILED_SCRIPT = ("ctx._source.state = params.state; ctx._source.attempts += 1; ctx._source.next_us = params.next_us; "
                 "ctx._source.last_error = params.error")
CLAIM_RETRIES = 3  # a retried claim re-reads the document: it no-ops if another sender claimed it meanwhile


def _us(ts: datetime) -> int:
    return (ts - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def alert_indices(prefix: str, replicas: int = 1) -> dict[str, dict[str, Any]]:
    """Index name -> create body. Few documents each: one shard."""
    def body(properties: dict[str, Any]) -> dict[str, Any]:
        return {"settings": {"number_of_shards": 1, "number_of_replicas": replicas},
                "mappings": {"dynamic": False, "properties": properties}}

    return {
        f"{prefix}-watchlists": body({"id": KEYWORD, "name": KEYWORD, "kind": KEYWORD, "created_by": KEYWORD,
                                      "created": DATE}),
        f"{prefix}-watch-entries": body({"id": KEYWORD, "watchlist_id": KEYWORD, "value": KEYWORD, "match": KEYWORD,
                                         "tolerance": {"type": "integer"}, "conditions": OPAQUE,
                                         "created_by": KEYWORD, "created": DATE, "n": {"type": "integer"},
                                         "face": {"type": "binary"}}),  # float32 little-endian, base64
        f"{prefix}-rules": body({"id": KEYWORD, "name": KEYWORD, "kind": KEYWORD, "active": {"type": "boolean"}}),
        f"{prefix}-alerts": body({"id": KEYWORD, "rule_id": KEYWORD, "sighting_id": KEYWORD,
                                  "other_sighting_id": KEYWORD,  # a cloned plate's other read: purged with it
                                  "camera_id": KEYWORD, "ts": DATE, "raised_at": DATE, "severity": KEYWORD,
                                  "target": KEYWORD, "details": OPAQUE, "crop": KEYWORD, "acked_by": KEYWORD,
                                  "acked_at": DATE}),
        # the document id is sha256(url): creating it is what refuses a second webhook with the same URL
        f"{prefix}-webhooks": body({"id": KEYWORD, "url": {"type": "keyword", "index": False}}),
        # the document id is "<alert_id>:<webhook_id>"; next_us is µs since the epoch (compared in the scripts)
        f"{prefix}-deliveries": body({"alert_id": KEYWORD, "webhook_id": KEYWORD, "state": KEYWORD,
                                      "attempts": {"type": "integer"}, "next_us": {"type": "long"}}),
    }


# documents ----------------------------------------------------------------------------------------------------
def watchlist_doc(w: Watchlist, created: datetime) -> dict[str, Any]:
    return {"id": w.id, "name": w.name, "kind": str(w.kind), "description": w.description,
            "created_by": w.created_by, "created": iso(created)}


def watchlist_from_doc(src: dict[str, Any]) -> Watchlist:
    return Watchlist(src["id"], src["name"], src["kind"], src.get("description", ""), src.get("created_by", ""),
                     from_iso(src["created"]))


def entry_doc(e: WatchEntry, face: np.ndarray | None, created: datetime, n: int) -> dict[str, Any]:
    return {"id": e.id, "watchlist_id": e.watchlist_id, "value": e.value, "match": str(e.match),
            "tolerance": e.tolerance, "conditions": _plain(e.conditions), "reason": e.reason,
            "created_by": e.created_by, "created": iso(created), "n": n,
            "face": None if face is None else encode_vector(face)}


def entry_from_doc(src: dict[str, Any]) -> tuple[WatchEntry, np.ndarray | None]:
    entry = WatchEntry(src["id"], src["watchlist_id"], src["reason"], src["created_by"], src["value"], src["match"],
                       src["tolerance"], src["conditions"], from_iso(src["created"]))
    return entry, (decode_vector(src["face"]) if src.get("face") is not None else None)


def rule_doc(rule: Rule) -> dict[str, Any]:
    return {"id": rule.id, "name": rule.name, "kind": str(rule.kind), "active": rule.active, "body": rule_json(rule)}


def alert_doc(a: Alert) -> dict[str, Any]:
    other = a.details.get("other_sighting_id")
    return {"id": a.id, "rule_id": a.rule_id, "sighting_id": a.sighting_id,
            "other_sighting_id": None if other is None else str(other), "camera_id": a.camera_id, "ts": iso(a.ts),
            "raised_at": iso(a.raised_at), "severity": str(a.severity), "target": a.target,
            "details": _plain(a.details), "crop": a.crop, "acked_by": a.acked_by,
            "acked_at": iso(a.acked_at) if a.acked_at else None}


def alert_from_doc(src: dict[str, Any]) -> Alert:
    return Alert(src["id"], src["rule_id"], src["sighting_id"], src["camera_id"], from_iso(src["ts"]),
                 from_iso(src["raised_at"]), src["severity"], src["target"], src["details"], src.get("crop"),
                 src.get("acked_by"), from_iso(src["acked_at"]) if src.get("acked_at") else None)


def delivery_id(alert_id: str, webhook_id: str) -> str:
    return f"{alert_id}:{webhook_id}"


def _plain(value: dict[str, object]) -> Any:
    """As JSON holds it (what SQLite stores too): a time or other object in alert details becomes its text."""
    return json.loads(json.dumps(value, ensure_ascii=False, default=str))


# queries and scripts --------------------------------------------------------------------------------------------
def alerts_query(rule_id: str | None, acked: bool | None, since: datetime | None) -> dict[str, Any]:
    clauses: list[dict[str, Any]] = []
    if rule_id:
        clauses.append({"term": {"rule_id": rule_id}})
    if since:
        clauses.append({"range": {"raised_at": {"gte": iso(since)}}})
    acked_at = {"exists": {"field": "acked_at"}}
    if acked:
        clauses.append(acked_at)
    return {"bool": {"filter": clauses, **({"must_not": [acked_at]} if acked is False else {})}}


def naming_query(sighting_ids: list[str]) -> dict[str, Any]:
    """The alerts that name any of these sightings, as their own or as a cloned plate's other read."""
    return {"bool": {"should": [{"terms": {"sighting_id": sighting_ids}},
                                {"terms": {"other_sighting_id": sighting_ids}}], "minimum_should_match": 1}}


def due_query(now: datetime) -> dict[str, Any]:
    return {"bool": {"filter": [{"term": {"state": "pending"}}, {"range": {"next_us": {"lte": _us(now)}}}]}}


def claim_script(now: datetime, lease_s: float) -> dict[str, Any]:
    return {"source": CLAIM_SCRIPT, "lang": "painless",
            "params": {"now_us": _us(now), "until_us": _us(now + timedelta(seconds=lease_s))}}


def ack_script(user: str, at: datetime) -> dict[str, Any]:
    return {"source": ACK_SCRIPT, "lang": "painless", "params": {"user": user, "at": iso(at)}}


def failed_script(error: str, retry_at: datetime | None) -> dict[str, Any]:
    state, next_us = ("pending", _us(retry_at)) if retry_at else ("dead", 0)
    return {"source": FAILED_SCRIPT, "lang": "painless",
            "params": {"state": state, "next_us": next_us, "error": error[:500]}}


def defer_query(webhook_id: str, until: datetime) -> dict[str, Any]:
    """The receiver's pending deliveries due before `until` (the others keep their later time: a max, as SQLite)."""
    return {"bool": {"filter": [{"term": {"webhook_id": webhook_id}}, {"term": {"state": "pending"}},
                                {"range": {"next_us": {"lt": _us(until)}}}]}}


class ElasticsearchAlertStore(AlertStore):
    """Watchlist names are unique by the service's check before adding (WatchlistService.create), not by the index."""

    def __init__(self, client: Elasticsearch, prefix: str = "sightline", replicas: int = 1):
        self.client = client
        bodies = alert_indices(prefix, replicas)
        for name, body in bodies.items():
            ensure_index(client, name, body)
        (self.watchlists_index, self.entries_index, self.rules_index, self.alerts_index, self.webhooks_index,
         self.deliveries_index) = (f"{prefix}-{kind}" for kind in KINDS)

    def _delete(self, index: str, doc_id: str) -> bool:
        answer = self.client.options(ignore_status=404).delete(index=index, id=doc_id, refresh="wait_for")
        return answer.get("result") == "deleted"

    def _write_all(self, actions: list[dict[str, Any]]) -> None:
        """One bulk request, visible when it returns; on failure the documents it did write are deleted again."""
        written: list[tuple[str, str, str]] = []
        try:
            written_ok(once(self.client), actions, written, refresh="wait_for")
        except BaseException:
            undo = [{"_op_type": "delete", "_index": index, "_id": doc_id} for _, index, doc_id in written]
            try:
                written_ok(self.client, undo, [], refresh="wait_for")
            except Exception:  # noqa: BLE001 - the original error is the one to report
                pass
            raise

    # watchlists and entries ------------------------------------------------------------------------
    def add_watchlist(self, w: Watchlist) -> None:
        self.client.create(index=self.watchlists_index, id=w.id, document=watchlist_doc(w, _now()),
                           refresh="wait_for")

    def watchlists(self) -> list[Watchlist]:
        return [watchlist_from_doc(h["_source"]) for h in walk(self.client, self.watchlists_index,
                                                               {"match_all": {}}, [{"name": "asc"}, {"id": "asc"}])]

    def delete_watchlist(self, watchlist_id: str) -> bool:
        """The list first (it is gone at once), then its entries (an entry of no list is never matched)."""
        deleted = self._delete(self.watchlists_index, watchlist_id)
        self.client.delete_by_query(index=self.entries_index, query={"term": {"watchlist_id": watchlist_id}},
                                    refresh=True, conflicts="proceed")
        return deleted

    def add_entries(self, entries: list[WatchEntry], faces: list[np.ndarray | None]) -> None:
        now = _now()
        self._write_all([{"_op_type": "create", "_index": self.entries_index, "_id": e.id,
                          "_source": entry_doc(e, f, now, n)}
                         for n, (e, f) in enumerate(zip(entries, faces, strict=True))])

    def entries(self, watchlist_id: str | None = None) -> list[tuple[WatchEntry, np.ndarray | None]]:
        query = {"term": {"watchlist_id": watchlist_id}} if watchlist_id else {"match_all": {}}
        return [entry_from_doc(h["_source"]) for h in walk(self.client, self.entries_index, query,
                                                           [{"created": "asc"}, {"n": "asc"}, {"id": "asc"}])]

    def delete_entry(self, entry_id: str) -> bool:
        return self._delete(self.entries_index, entry_id)

    # rules ------------------------------------------------------------------------------------
    def put_rule(self, rule: Rule) -> None:
        self.client.index(index=self.rules_index, id=rule.id, document=rule_doc(rule), refresh="wait_for")

    def rules(self) -> list[Rule]:
        return [rule_from_json(h["_source"]["body"])
                for h in walk(self.client, self.rules_index, {"match_all": {}}, [{"id": "asc"}])]

    def delete_rule(self, rule_id: str) -> bool:
        return self._delete(self.rules_index, rule_id)

    # alerts ------------------------------------------------------------------------------------
    def add_alerts(self, alerts: list[Alert]) -> None:
        """The alerts (create: an id stored already is refused) and their deliveries in one bulk request."""
        if not alerts:
            return
        due, webhooks = _us(_now()), list(self._webhooks())
        actions: list[dict[str, Any]] = []
        for a in alerts:
            actions.append({"_op_type": "create", "_index": self.alerts_index, "_id": a.id, "_source": alert_doc(a)})
            actions += [{"_op_type": "create", "_index": self.deliveries_index, "_id": delivery_id(a.id, webhook_id),
                         "_source": {"alert_id": a.id, "webhook_id": webhook_id, "state": "pending", "attempts": 0,
                                     "next_us": due, "last_error": None}} for webhook_id in webhooks]
        self._write_all(actions)

    def alerts(self, rule_id: str | None = None, acked: bool | None = None, since: datetime | None = None,
               limit: int = 100, offset: int = 0) -> list[Alert]:
        query, order = alerts_query(rule_id, acked, since), [{"raised_at": "desc"}, {"id": "desc"}]
        if offset + limit <= 10_000:  # from/size reaches 10,000 hits; deeper pages are walked with search_after
            hits = self.client.search(index=self.alerts_index, query=query, sort=order, from_=offset,
                                      size=limit)["hits"]["hits"]
        else:
            hits = list(islice(walk(self.client, self.alerts_index, query, order), offset, offset + limit))
        return [alert_from_doc(h["_source"]) for h in hits]

    def get_alert(self, alert_id: str) -> Alert | None:
        try:
            return alert_from_doc(self.client.get(index=self.alerts_index, id=alert_id)["_source"])
        except NotFoundError:
            return None

    def ack(self, alert_id: str, user: str) -> bool:
        """A conditional update (acknowledged once: a second acknowledgement, from any process, is a no-op)."""
        try:
            answer = once(self.client).update(index=self.alerts_index, id=alert_id, script=ack_script(user, _now()),
                                              retry_on_conflict=CLAIM_RETRIES, refresh="wait_for")
        except NotFoundError:
            return False
        return answer.get("result") == "updated"

    def named_sightings(self) -> set[str]:
        named: set[str] = set()
        for h in walk(self.client, self.alerts_index, {"match_all": {}}, [{"id": "asc"}],
                      source=["sighting_id", "other_sighting_id"]):
            named |= {str(v) for k in ("sighting_id", "other_sighting_id") if (v := h["_source"].get(k)) is not None}
        return named

    def delete_for_sightings(self, sighting_ids: list[str], batch: int = 500) -> int:
        """Per batch: the naming alerts' deliveries, then the alerts (after a crash, the next purge or sweep finds
        the alerts again)."""
        deleted = 0
        for part in chunks(list(sighting_ids), batch):
            query = naming_query(list(part))
            alert_ids = [h["_id"] for h in walk(self.client, self.alerts_index, query, [{"id": "asc"}], source=False)]
            for ids in chunks(alert_ids, PAGE):
                self.client.delete_by_query(index=self.deliveries_index, query={"terms": {"alert_id": list(ids)}},
                                            refresh=True, conflicts="proceed")
            if alert_ids:
                deleted += int(self.client.delete_by_query(index=self.alerts_index, query=query, refresh=True,
                                                           conflicts="proceed")["deleted"])
        return deleted

    def alert_count(self) -> int:
        return int(self.client.count(index=self.alerts_index)["count"])

    # webhooks and deliveries ---------------------------------------------------------------------------
    def _webhooks(self) -> dict[str, dict[str, Any]]:
        """webhook id -> its document (url, secret)."""
        return {h["_source"]["id"]: h["_source"]
                for h in walk(self.client, self.webhooks_index, {"match_all": {}}, [{"id": "asc"}])}

    def add_webhook(self, webhook_id: str, url: str, secret: str) -> bool:
        try:
            self.client.create(index=self.webhooks_index, id=hashlib.sha256(url.encode()).hexdigest(),
                               document={"id": webhook_id, "url": url, "secret": secret}, refresh="wait_for")
        except ConflictError:
            return False
        return True

    def webhooks(self) -> dict[str, str]:
        return {webhook_id: shown_url(doc["url"]) for webhook_id, doc in self._webhooks().items()}

    def delete_webhook(self, webhook_id: str) -> bool:
        self.client.delete_by_query(index=self.deliveries_index, query={"term": {"webhook_id": webhook_id}},
                                    refresh=True, conflicts="proceed")
        answer = self.client.delete_by_query(index=self.webhooks_index, query={"term": {"id": webhook_id}},
                                             refresh=True, conflicts="proceed")
        return int(answer["deleted"]) > 0

    def due_deliveries(self, limit: int = 100) -> list[tuple[str, str, str, str, int]]:
        hits = self.client.search(index=self.deliveries_index, query=due_query(_now()), size=limit,
                                  sort=[{"next_us": "asc"}, {"alert_id": "asc"}, {"webhook_id": "asc"}])["hits"]["hits"]
        hooks = self._webhooks() if hits else {}
        return [(d["alert_id"], d["webhook_id"], hooks[d["webhook_id"]]["url"], hooks[d["webhook_id"]]["secret"],
                 int(d["attempts"])) for d in (h["_source"] for h in hits) if d["webhook_id"] in hooks]

    def claim_delivery(self, alert_id: str, webhook_id: str, lease_s: float) -> bool:
        """The conditional scripted update of the module docstring: True only when this call changed it."""
        try:
            answer = once(self.client).update(index=self.deliveries_index, id=delivery_id(alert_id, webhook_id),
                                              script=claim_script(_now(), lease_s), retry_on_conflict=CLAIM_RETRIES)
        except (NotFoundError, ConflictError):  # gone (its webhook or alert deleted), or still contended
            return False
        return answer.get("result") == "updated"

    def _update(self, alert_id: str, webhook_id: str, script: dict[str, Any]) -> None:
        """A delivery's outcome; none when it was deleted meanwhile (as SQLite's UPDATE of no row)."""
        once(self.client).options(ignore_status=404).update(index=self.deliveries_index,
                                                            id=delivery_id(alert_id, webhook_id), script=script,
                                                            retry_on_conflict=CLAIM_RETRIES, refresh="wait_for")

    def delivery_done(self, alert_id: str, webhook_id: str) -> None:
        self._update(alert_id, webhook_id, {"source": DONE_SCRIPT, "lang": "painless"})

    def defer_webhook(self, webhook_id: str, until: datetime) -> None:
        """Deliveries changed meanwhile (claimed by a sender) are skipped: conflicts=proceed."""
        self.client.update_by_query(index=self.deliveries_index, query=defer_query(webhook_id, until),
                                    script={"source": "ctx._source.next_us = params.until_us", "lang": "painless",
                                            "params": {"until_us": _us(until)}},
                                    conflicts="proceed", refresh=True)

    def delivery_failed(self, alert_id: str, webhook_id: str, error: str, retry_at: datetime | None) -> None:
        self._update(alert_id, webhook_id, failed_script(error, retry_at))

    def deliveries(self, state: str | None = None) -> list[dict]:
        query = {"term": {"state": state}} if state else {"match_all": {}}
        return [{k: h["_source"].get(k) for k in DELIVERY_FIELDS} for h in walk(
            self.client, self.deliveries_index, query, [{"alert_id": "asc"}, {"webhook_id": "asc"}])]

    def delivery_counts(self) -> dict[str, int]:
        answer = self.client.search(index=self.deliveries_index, size=0,
                                    aggs={"states": {"terms": {"field": "state", "size": 10}}})
        return {b["key"]: int(b["doc_count"]) for b in answer["aggregations"]["states"]["buckets"]}

    def retry_dead(self) -> int:
        answer = self.client.update_by_query(
            index=self.deliveries_index, query={"term": {"state": "dead"}}, conflicts="proceed", refresh=True,
            script={"source": "ctx._source.state = 'pending'; ctx._source.next_us = params.now_us",
                    "lang": "painless", "params": {"now_us": _us(_now())}})
        return int(answer["updated"])

    def close(self) -> None:
        self.client.close()
