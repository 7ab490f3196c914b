"""Cases in Elasticsearch: what every API replica on every host reads and writes (SQLite's cases.db is one host's).

Four indices under the deployment's prefix: `cases` (id = the case's id), `case-refs` (id = the case number's
folded key, `case_key`: its `op_type=create` is what makes a number one case's, however many replicas create at
once, and however it is spelt; numbers registered before folding stay reachable by their exact spelling),
`case-items` and `case-notes` (id = the item's or note's id, ordered by `seq`, a per-process strictly increasing
nanosecond clock, then by id). Writes wait for a refresh, so the listing an investigator opens next shows what was
just added; closing a case is a conditional update, so only the first close counts.
"""
from __future__ import annotations

import itertools
import threading
import time
from datetime import datetime
from typing import Any

from elasticsearch import ConflictError, Elasticsearch, NotFoundError

from indexer.case_store import Case, CaseItem, CaseNote, CaseStatus, CaseStore, ItemKind, case_key
from indexer.es_common import ensure_indices, once, small_index, walk
from indexer.es_store import from_iso, iso

KEYWORD = {"type": "keyword"}
CLOSE_SCRIPT = ("if (ctx._source.status == params.open) { ctx._source.status = params.closed; "
                "ctx._source.closed = params.at; ctx._source.closed_by = params.by } else { ctx.op = 'noop' }")


def case_index_bodies(replicas: int = 1) -> dict[str, dict[str, Any]]:
    """Index suffix → settings and mappings: only what is filtered or sorted on is mapped (titles, reasons, notes
    and the rest stay in _source, of any length; so does a case's zone, which no query filters on, so indices made
    before cases had one need no change); times are date_nanos, exact to the microsecond."""
    when = {"type": "date_nanos"}
    return {
        "cases": small_index({"id": KEYWORD, "ref": KEYWORD, "owner": KEYWORD, "created": when, "status": KEYWORD,
                              "closed": when, "closed_by": KEYWORD, "collaborators": KEYWORD}, replicas),
        "case-refs": small_index({"case_id": KEYWORD}, replicas),
        "case-items": small_index({"id": KEYWORD, "case_id": KEYWORD, "seq": {"type": "long"}}, replicas),
        "case-notes": small_index({"id": KEYWORD, "case_id": KEYWORD, "seq": {"type": "long"}}, replicas),
    }


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else iso(ts)


def _ts(value: str | None) -> datetime | None:
    return None if value is None else from_iso(value)


def case_doc(case: Case) -> dict[str, Any]:
    return {"id": case.id, "ref": case.ref, "title": case.title, "reason": case.reason, "owner": case.owner,
            "created": iso(case.created), "status": case.status.value, "closed": _iso(case.closed),
            "closed_by": case.closed_by, "collaborators": case.collaborators, "zone": case.zone}


def case_from_doc(src: dict[str, Any]) -> Case:
    return Case(src["id"], src["ref"], src["title"], src["reason"], src["owner"], from_iso(src["created"]),
                CaseStatus(src["status"]), _ts(src.get("closed")), src.get("closed_by"), src.get("collaborators") or [],
                src.get("zone") or "UTC")  # a case written before cases had a zone printed UTC


def item_doc(item: CaseItem, seq: int) -> dict[str, Any]:
    return {"id": item.id, "case_id": item.case_id, "seq": seq, "kind": item.kind.value, "added_by": item.added_by,
            "added": iso(item.added), "note": item.note, "sighting_ids": item.sighting_ids, "plate": item.plate,
            "other_plate": item.other_plate, "start": _iso(item.start), "end": _iso(item.end), "query": item.query}


def item_from_doc(src: dict[str, Any]) -> CaseItem:
    return CaseItem(src["id"], src["case_id"], ItemKind(src["kind"]), src["added_by"], from_iso(src["added"]),
                    src.get("note") or "", list(src.get("sighting_ids") or []), src.get("plate"),
                    src.get("other_plate"), _ts(src.get("start")), _ts(src.get("end")), src.get("query"))


def note_doc(note: CaseNote, seq: int) -> dict[str, Any]:
    return {"id": note.id, "case_id": note.case_id, "seq": seq, "author": note.author, "ts": iso(note.ts),
            "text": note.text}


def note_from_doc(src: dict[str, Any]) -> CaseNote:
    return CaseNote(src["id"], src["case_id"], src["author"], from_iso(src["ts"]), src["text"])


def close_script(by: str, at: datetime) -> dict[str, Any]:
    return {"source": CLOSE_SCRIPT, "lang": "painless",
            "params": {"open": CaseStatus.OPEN.value, "closed": CaseStatus.CLOSED.value, "by": by, "at": iso(at)}}


class _Sequence:
    """Strictly increasing nanosecond stamps: the order items and notes were added, across restarts and, to the
    clocks' agreement, across replicas (ties between replicas fall back to the id)."""

    def __init__(self) -> None:
        self.last, self.lock = 0, threading.Lock()

    def next(self) -> int:
        with self.lock:
            self.last = max(time.time_ns(), self.last + 1)
            return self.last


class ElasticsearchCaseStore(CaseStore):
    def __init__(self, client: Elasticsearch, prefix: str = "sightline", replicas: int = 1):
        self.client = client
        self.index = ensure_indices(client, prefix, case_index_bodies(replicas))
        self.seq = _Sequence()

    def create(self, case: Case) -> None:
        """The case number is taken first (create-only, by number); a number left taken by a creation that died
        before its case was written is taken over, conditionally, so two takers still cannot both win. A creation
        that was only slow, not dead, finds its number taken over when it checks after writing its case, and
        withdraws it: a number never ends up naming two cases."""
        key = case_key(case.ref)
        if self._legacy(case.ref) is not None:
            raise KeyError(case.ref)
        try:
            self.client.create(index=self.index["case-refs"], id=key, document={"case_id": case.id},
                               refresh="wait_for")
        except ConflictError:
            held = self.client.get(index=self.index["case-refs"], id=key)
            if self.get(held["_source"]["case_id"]) is not None:
                raise KeyError(case.ref) from None
            try:
                self.client.index(index=self.index["case-refs"], id=key, document={"case_id": case.id},
                                  if_seq_no=held["_seq_no"], if_primary_term=held["_primary_term"], refresh="wait_for")
            except ConflictError:
                raise KeyError(case.ref) from None
        self.client.index(index=self.index["cases"], id=case.id, document=case_doc(case), refresh="wait_for")
        if self.client.get(index=self.index["case-refs"], id=key)["_source"]["case_id"] != case.id:
            self.client.delete(index=self.index["cases"], id=case.id, refresh="wait_for")
            raise KeyError(case.ref)

    def get(self, case_id: str) -> Case | None:
        try:
            return case_from_doc(self.client.get(index=self.index["cases"], id=case_id)["_source"])
        except NotFoundError:
            return None

    def by_ref(self, ref: str) -> Case | None:
        return self._held(case_key(ref), ref) or self._legacy(ref)

    def _held(self, doc_id: str, ref: str) -> Case | None:
        try:
            held = self.client.get(index=self.index["case-refs"], id=doc_id)["_source"]
        except NotFoundError:
            return None
        case = self.get(held["case_id"])
        return case if case is not None and case_key(case.ref) == case_key(ref) else None

    def _legacy(self, ref: str) -> Case | None:
        """A number registered before folding, under its exact spelling."""
        return self._held(ref, ref) if ref != case_key(ref) else None

    def set_collaborators(self, case_id: str, names: list[str]) -> bool:
        try:
            self.client.update(index=self.index["cases"], id=case_id, doc={"collaborators": names},
                               refresh="wait_for")
        except NotFoundError:
            return False
        return True

    def cases(self, status: CaseStatus | None = None, limit: int = 200) -> list[Case]:
        if limit <= 0:
            return []
        query = {"term": {"status": status.value}} if status else {"match_all": {}}
        hits = walk(self.client, self.index["cases"], query, [{"created": "desc"}, {"ref": "asc"}],
                    page=min(limit, 1_000))
        return [case_from_doc(h["_source"]) for h in itertools.islice(hits, limit)]

    def close_case(self, case_id: str, by: str, at: datetime) -> bool:
        try:
            answer = once(self.client).update(index=self.index["cases"], id=case_id, script=close_script(by, at),
                                        retry_on_conflict=3, refresh="wait_for")
        except NotFoundError:
            return False
        return answer.get("result") == "updated"

    def add_item(self, item: CaseItem) -> None:
        self.client.index(index=self.index["case-items"], id=item.id, document=item_doc(item, self.seq.next()),
                          refresh="wait_for")

    def remove_item(self, case_id: str, item_id: str) -> bool:
        """Only an item of that case goes (read, then deleted only if unchanged since the read)."""
        try:
            held = self.client.get(index=self.index["case-items"], id=item_id)
            if held["_source"]["case_id"] != case_id:
                return False
            self.client.delete(index=self.index["case-items"], id=item_id, if_seq_no=held["_seq_no"],
                               if_primary_term=held["_primary_term"], refresh="wait_for")
        except (NotFoundError, ConflictError):
            return False
        return True

    def items(self, case_id: str) -> list[CaseItem]:
        return [item_from_doc(h["_source"]) for h in walk(self.client, self.index["case-items"],
                                                          {"term": {"case_id": case_id}},
                                                          [{"seq": "asc"}, {"id": "asc"}])]

    def add_note(self, note: CaseNote) -> None:
        self.client.index(index=self.index["case-notes"], id=note.id, document=note_doc(note, self.seq.next()),
                          refresh="wait_for")

    def notes(self, case_id: str) -> list[CaseNote]:
        return [note_from_doc(h["_source"]) for h in walk(self.client, self.index["case-notes"],
                                                          {"term": {"case_id": case_id}},
                                                          [{"seq": "asc"}, {"id": "asc"}])]

    def close(self) -> None:
        self.client.close()
