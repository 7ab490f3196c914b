"""The audit-store contract: one suite over every backend in services.system.AUDIT_BACKENDS.

SQLite always; Elasticsearch against a real cluster when SIGHTLINE_ES_URL is set (tests/es_cluster.py), skipped with
that reason otherwise. Several handles on one log stand for the replicas of a deployment appending at once.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from indexer.audit_store import GENESIS, AuditKey, AuditStore, entry_hash
from models.accounts import AuditEntry
from services.audit import AuditLog, Checkpoints
from services.system import AUDIT_BACKENDS
from tests.es_cluster import handles

T0 = datetime(2026, 11, 2, 8, 0, 0, 123456, tzinfo=timezone.utc)
PLATE = "皖AY766D"
KEY = AuditKey(b"contract key, 32 bytes long.....")


@pytest.fixture(params=sorted(AUDIT_BACKENDS))
def open_audit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], AuditStore]]:
    yield from handles(AUDIT_BACKENDS, request.param, tmp_path)


def verified(store: AuditStore, folder: Path) -> AuditLog:
    """The log over this store, with a checkpoint of its head as the log's own appends would have left."""
    log = AuditLog(store, KEY, Checkpoints(folder / "checkpoint.json", KEY))
    if head := store.entries(limit=1):
        log.checkpoints.advance(head[0].seq, head[0].hash)
    return log


def entry(i: int, actor: str = "ada", case: str | None = "CASE-1", action: str = "search.plates",
          params: dict[str, object] | None = None) -> AuditEntry:
    return AuditEntry(0, T0 + timedelta(minutes=i), actor, "investigator", action, "10.0.0.1", case, "theft",
                      params if params is not None else {"q": f"A{i}"}, i, 200)


def test_appends_are_numbered_chained_and_sealed(open_audit: Callable[[], AuditStore], tmp_path: Path) -> None:
    store = open_audit()
    first, second = store.append(entry(0), KEY), store.append(entry(1), KEY)
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == GENESIS and second.prev_hash == first.hash
    assert first.hash == entry_hash(first, KEY) and second.hash == entry_hash(second, KEY)
    assert first.key_id == KEY.key_id and first.hash != entry_hash(first, None)  # a MAC, not a plain hash
    assert [e.seq for e in store.walk()] == [1, 2] and store.walk()[1] == second
    assert verified(store, tmp_path).verify().ok


def test_a_log_sealed_by_another_key_does_not_verify(open_audit: Callable[[], AuditStore], tmp_path: Path) -> None:
    store = open_audit()
    store.append(entry(0), AuditKey(b"another key entirely, 32 bytes.."))
    verdict = verified(store, tmp_path).verify()
    assert not verdict.ok and verdict.first_broken == 1 and "not this log's key" in (verdict.problem or "")


def test_entries_are_newest_first_and_filtered(open_audit: Callable[[], AuditStore]) -> None:
    store = open_audit()
    store.append(entry(0, actor="ada", case="CASE-1", params={"q": PLATE, "mode": "exact"}), KEY)
    store.append(entry(1, actor="bob", case="CASE-2", action="search.photo"), KEY)
    store.append(entry(2, actor="ada", case="CASE-2", action="export.case"), KEY)
    assert [e.seq for e in store.entries()] == [3, 2, 1]
    assert [e.seq for e in store.entries(actor="ada")] == [3, 1]
    assert [e.seq for e in store.entries(case_ref="CASE-2")] == [3, 2]
    assert [e.seq for e in store.entries(action="search.photo")] == [2]
    assert [e.seq for e in store.entries(start=T0 + timedelta(minutes=1), end=T0 + timedelta(minutes=2))] == [2]
    assert [e.seq for e in store.entries(about=PLATE)] == [1]  # a plate named in the parameters, CJK included
    assert [e.seq for e in store.entries(limit=1, offset=1)] == [2]
    (found,) = store.entries(about=PLATE)
    assert found.params == {"q": PLATE, "mode": "exact"} and found.ts == T0 and found.result_count == 0


def test_replicas_appending_at_once_keep_one_unbroken_chain(open_audit: Callable[[], AuditStore],
                                                            tmp_path: Path) -> None:
    stores = [open_audit() for _ in range(3)]
    errors: list[BaseException] = []

    def append_many(store: AuditStore, who: str) -> None:
        try:
            for i in range(15):
                store.append(entry(i, actor=who), KEY)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=append_many, args=(s, f"user{n}")) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    walked = open_audit().walk()
    assert [e.seq for e in walked] == list(range(1, 46))
    verdict = verified(open_audit(), tmp_path).verify()
    assert verdict.ok and verdict.entries == 45


def test_the_log_outlives_its_handle(open_audit: Callable[[], AuditStore]) -> None:
    store = open_audit()
    written = [store.append(entry(i), KEY) for i in range(3)]
    store.close()
    reopened = open_audit()
    assert reopened.walk() == written
    assert reopened.append(entry(3), KEY).prev_hash == written[-1].hash  # the chain goes on from the stored tail
