"""The audit log in Elasticsearch: one document per entry, its id the entry's sequence number.

Several API replicas append to one log. Sequence numbers are taken with `op_type=create` on the id: the create
of id N succeeds for exactly one writer, so two writers can never both take N; the loser reads entry N (a
realtime get by id, which sees it at once, unlike a search) and tries N+1, chaining to N's hash. The chain
therefore stays one unbroken sequence however many writers there are. Appends do not wait for a refresh (that
would add up to a second to every audited request); a listing sees an entry within the refresh interval.
"""
from __future__ import annotations

import json
from datetime import datetime
from itertools import islice
from typing import Any

from elasticsearch import ConflictError, Elasticsearch

from indexer.audit_store import GENESIS, AuditKey, AuditStore, sealed
from indexer.es_common import ensure_index, walk
from indexer.es_store import from_iso, iso
from models.accounts import AuditEntry

KEYWORD = {"type": "keyword"}


def audit_index_body(replicas: int = 1) -> dict[str, Any]:
    """`params` is kept as canonical JSON in a wildcard field: `about` (a plate, an id the parameters mention) is a
    substring search, as SQLite's instr(); the entry's other fields are keywords, the time exact to the µs."""
    return {"settings": {"number_of_shards": 1, "number_of_replicas": replicas},
            "mappings": {"dynamic": False, "properties": {
                "seq": {"type": "long"}, "ts": {"type": "date_nanos"}, "actor": KEYWORD, "role": KEYWORD,
                "action": KEYWORD, "source": KEYWORD, "case_ref": KEYWORD,
                "reason": {"type": "keyword", "ignore_above": 1024},  # a longer reason is kept, just not a term
                "params": {"type": "wildcard"}, "result_count": {"type": "long"}, "status": {"type": "integer"},
                "prev_hash": KEYWORD, "hash": KEYWORD, "key_id": KEYWORD}}}


def audit_doc(e: AuditEntry) -> dict[str, Any]:
    return {"seq": e.seq, "ts": iso(e.ts), "actor": e.actor, "role": e.role, "action": e.action, "source": e.source,
            "case_ref": e.case_ref, "reason": e.reason,
            "params": json.dumps(e.params, sort_keys=True, ensure_ascii=False, default=str),
            "result_count": e.result_count, "status": e.status, "prev_hash": e.prev_hash, "hash": e.hash,
            "key_id": e.key_id}


def audit_from_doc(src: dict[str, Any]) -> AuditEntry:
    return AuditEntry(src["seq"], from_iso(src["ts"]), src["actor"], src["role"], src["action"], src["source"],
                      src.get("case_ref"), src.get("reason"), json.loads(src["params"]), src.get("result_count"),
                      src.get("status"), src["prev_hash"], src["hash"], src.get("key_id") or "")


def audit_query(actor: str | None, case_ref: str | None, action: str | None, start: datetime | None,
                end: datetime | None, about: str | None) -> dict[str, Any]:
    clauses: list[dict[str, Any]] = []
    for field, value in (("actor", actor), ("case_ref", case_ref), ("action", action)):
        if value is not None:
            clauses.append({"term": {field: value}})
    if start is not None or end is not None:
        span = {**({"gte": iso(start)} if start else {}), **({"lt": iso(end)} if end else {})}
        clauses.append({"range": {"ts": span}})
    if about:
        escaped = "".join("\\" + c if c in "\\?*" else c for c in about)
        clauses.append({"wildcard": {"params": {"value": f"*{escaped}*"}}})
    return {"bool": {"filter": clauses}}


class ElasticsearchAuditStore(AuditStore):
    def __init__(self, client: Elasticsearch, prefix: str = "sightline", replicas: int = 1):
        self.client, self.index = client, f"{prefix}-audit"
        if not ensure_index(client, self.index, audit_index_body(replicas)):
            # a log from before keying: its mapping learns the key id (its entries keep their plain hashes)
            client.indices.put_mapping(index=self.index, properties={"key_id": KEYWORD})
        self._tail: tuple[int, str] | None = None  # (seq, hash) of the last entry this process saw

    def _last(self) -> tuple[int, str]:
        """A recent tail to start from (a search may lag; append walks forward from it by id)."""
        if self._tail is None:
            hits = self.client.search(index=self.index, size=1, sort=[{"seq": "desc"}],
                                      source_includes=["seq", "hash"])["hits"]["hits"]
            self._tail = (int(hits[0]["_source"]["seq"]), hits[0]["_source"]["hash"]) if hits else (0, GENESIS)
        return self._tail

    def append(self, entry: AuditEntry, key: AuditKey) -> AuditEntry:
        seq, prev = self._last()
        while True:
            chained = sealed(entry, seq + 1, prev, key)
            try:
                self.client.create(index=self.index, id=str(chained.seq), document=audit_doc(chained))
                self._tail = (chained.seq, chained.hash)
                return chained
            except ConflictError:  # another writer took this number: chain after its entry instead
                taken = self.client.get(index=self.index, id=str(chained.seq))["_source"]
                if taken["hash"] == chained.hash:  # our own entry: a create the transport resent after a timeout
                    self._tail = (chained.seq, chained.hash)
                    return chained
                seq, prev = int(taken["seq"]), taken["hash"]

    def entries(self, actor: str | None = None, case_ref: str | None = None, action: str | None = None,
                start: datetime | None = None, end: datetime | None = None, limit: int = 1000, offset: int = 0,
                about: str | None = None) -> list[AuditEntry]:
        query = audit_query(actor, case_ref, action, start, end, about)
        self.client.indices.refresh(index=self.index)  # appends do not wait for a refresh; a reader of the log does
        if offset + limit <= 10_000:
            hits = self.client.search(index=self.index, query=query, sort=[{"seq": "desc"}], from_=offset,
                                      size=limit)["hits"]["hits"]
        else:
            # a deep page: read up to its end, not the whole log
            hits = list(islice(walk(self.client, self.index, query, [{"seq": "desc"}]), offset, offset + limit))
        return [audit_from_doc(h["_source"]) for h in hits]

    def walk(self, batch: int = 10_000) -> list[AuditEntry]:
        self.client.indices.refresh(index=self.index)  # verification reads every entry appended so far
        return [audit_from_doc(h["_source"]) for h in walk(self.client, self.index, {"match_all": {}},
                                                           [{"seq": "asc"}], page=min(batch, 10_000))]

    def close(self) -> None:
        self.client.close()
