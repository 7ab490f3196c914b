"""The case-store and account-store contracts: one suite over every backend in services.system.CASE_BACKENDS and
ACCOUNT_BACKENDS.

SQLite always; Elasticsearch against a real cluster when SIGHTLINE_ES_URL is set (tests/es_cluster.py), skipped with
that reason otherwise. Each test may open several handles on the same data, as the replicas of a deployment would.
The Elasticsearch documents' round trips (what is written and read back) are checked without a cluster.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from indexer.accounts_store import AccountStore
from indexer.case_store import Case, CaseItem, CaseNote, CaseStatus, CaseStore, ItemKind
from indexer.es_accounts import account_index_bodies, user_doc, user_from_doc
from indexer.es_cases import (
    case_doc,
    case_from_doc,
    case_index_bodies,
    item_doc,
    item_from_doc,
    note_doc,
    note_from_doc,
)
from models.accounts import Role, User
from services.system import ACCOUNT_BACKENDS, CASE_BACKENDS
from tests.es_cluster import handles

T0 = datetime(2026, 11, 2, 8, 0, 0, 123456, tzinfo=timezone.utc)
PLATE = "皖AY766D"


@pytest.fixture(params=sorted(CASE_BACKENDS))
def open_cases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], CaseStore]]:
    yield from handles(CASE_BACKENDS, request.param, tmp_path)


@pytest.fixture(params=sorted(ACCOUNT_BACKENDS))
def open_accounts(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], AccountStore]]:
    yield from handles(ACCOUNT_BACKENDS, request.param, tmp_path)


# cases ---------------------------------------------------------------------------------------------------------
def test_cases_keep_their_items_and_notes_for_every_handle(open_cases: Callable[[], CaseStore]) -> None:
    store = open_cases()
    case = Case("c1", "2026/0412", "stolen car", "enquiry", "alice", T0, zone="Asia/Shanghai")
    store.create(case)
    with pytest.raises(KeyError):
        store.create(Case("c2", "2026/0412", "again", "x", "bob", T0))  # the number is taken
    store.add_item(CaseItem("i1", "c1", ItemKind.TRAJECTORY, "alice", T0, "seen twice", [], PLATE, None,
                            T0, T0 + timedelta(hours=2)))
    store.add_item(CaseItem("i2", "c1", ItemKind.SIGHTING, "alice", T0, "", ["s1"], query="plates q=皖AY766D"))
    store.add_item(CaseItem("i0", "c1", ItemKind.SEARCH, "bob", T0, "", [], query="attributes color=red"))
    store.add_note(CaseNote("n1", "c1", "alice", T0, "owner called"))
    store.add_note(CaseNote("n0", "c1", "bob", T0, "x" * 40_000))  # a long note is kept whole
    assert store.close_case("c1", "alice", T0 + timedelta(days=1))
    assert not store.close_case("c1", "alice", T0) and not store.close_case("nope", "alice", T0)

    other = open_cases()  # another process, or another replica
    got = other.by_ref("2026/0412")
    assert got is not None and got.status is CaseStatus.CLOSED and got.closed_by == "alice"
    assert got.created == T0 and got.closed == T0 + timedelta(days=1) and other.get("c1") == got
    assert got.zone == "Asia/Shanghai" and store.cases()[0].zone == "Asia/Shanghai"
    assert other.by_ref("2026/9999") is None and other.get("c9") is None
    items = other.items("c1")
    assert [i.id for i in items] == ["i1", "i2", "i0"]  # in the order they were added, not by id
    assert items[0].plate == PLATE and items[0].end == T0 + timedelta(hours=2) and items[0].note == "seen twice"
    assert items[1].sighting_ids == ["s1"] and items[1].query == "plates q=皖AY766D"
    assert [n.id for n in other.notes("c1")] == ["n1", "n0"] and len(other.notes("c1")[1].text) == 40_000
    assert other.items("c9") == [] and other.notes("c9") == []
    assert not other.remove_item("c9", "i1")  # only through its own case
    assert other.remove_item("c1", "i1") and not other.remove_item("c1", "i1")
    assert [i.id for i in store.items("c1")] == ["i2", "i0"]


def test_cases_are_listed_newest_first_and_by_status(open_cases: Callable[[], CaseStore]) -> None:
    store = open_cases()
    for n in range(5):
        store.create(Case(f"c{n}", f"2026/00{n}", f"case {n}", "enquiry", "alice", T0 + timedelta(hours=n)))
    store.close_case("c1", "alice", T0 + timedelta(days=1))
    assert [c.id for c in store.cases()] == ["c4", "c3", "c2", "c1", "c0"]
    assert [c.id for c in store.cases(limit=2)] == ["c4", "c3"]
    assert [c.id for c in store.cases(CaseStatus.CLOSED)] == ["c1"]
    assert [c.id for c in store.cases(CaseStatus.OPEN)] == ["c4", "c3", "c2", "c0"]


def test_a_case_number_is_one_cases_however_many_replicas_create_it(open_cases: Callable[[], CaseStore]) -> None:
    stores = [open_cases() for _ in range(4)]
    won: list[str] = []

    def create(n: int) -> None:
        try:
            stores[n].create(Case(f"c{n}", "2026/0001", "race", "enquiry", f"user{n}", T0))
            won.append(f"c{n}")
        except KeyError:
            pass

    threads = [threading.Thread(target=create, args=(n,)) for n in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    case = stores[0].by_ref("2026/0001")
    assert case is not None and case.id == won[0]


# accounts ------------------------------------------------------------------------------------------------------
def test_users_tokens_and_sessions_for_every_handle(open_accounts: Callable[[], AccountStore]) -> None:
    store = open_accounts()
    ada, bob = User("u1", "ada", Role.ADMIN, False, T0), User("u2", "bob", Role.VIEWER, False, T0)
    store.add_user(bob, "token-bob")
    store.add_user(ada, "token-ada")
    with pytest.raises(KeyError):
        store.add_user(User("u3", "ada", Role.VIEWER, False, T0), "token-3")  # the name is taken
    other = open_accounts()
    assert [u.name for u in other.users()] == ["ada", "bob"]
    found = other.user_by_token("token-ada")
    assert found is not None and (found.id, found.role, found.disabled, found.created_at) == ("u1", Role.ADMIN,
                                                                                               False, T0)
    assert other.user_by_name("bob") == other.user_by_token("token-bob") and other.user_by_name("eve") is None
    assert other.user_by_token("token-3") is None and other.user_by_token("nope") is None

    later = datetime.now(timezone.utc) + timedelta(hours=1)
    store.add_session("s-ada", "u1", "csrf-ada", later)
    store.add_session("s-bob", "u2", "csrf-bob", later)
    store.add_session("s-old", "u2", "csrf-old", datetime.now(timezone.utc) - timedelta(seconds=1))
    session = other.session("s-ada")
    assert session is not None and session[0].name == "ada" and session[1] == "csrf-ada"
    assert other.session("s-old") is None and other.session("nope") is None  # expired, unknown

    other.set_token("u1", "token-ada-2")  # rotated: the old token and its sessions stop at once
    assert store.user_by_token("token-ada") is None
    assert (u := store.user_by_token("token-ada-2")) is not None and u.name == "ada"
    assert store.session("s-ada") is None and store.session("s-bob") is not None

    other.set_disabled("u2", True)  # disabled: its sessions end; re-enabled, it signs in afresh
    assert store.session("s-bob") is None
    assert (u := store.user_by_token("token-bob")) is not None and u.disabled
    other.set_disabled("u2", False)
    assert (u := store.user_by_name("bob")) is not None and not u.disabled and store.session("s-bob") is None
    store.add_session("s-bob-2", "u2", "csrf-2", later)
    other.end_session("s-bob-2")
    assert store.session("s-bob-2") is None


# the Elasticsearch documents, without a cluster ---------------------------------------------------------------
def test_the_elasticsearch_documents_read_back_as_written() -> None:
    case = Case("c1", "2026/0412", "stolen car", "enquiry", "alice", T0, CaseStatus.CLOSED,
                T0 + timedelta(days=1), "bob", zone="Asia/Shanghai")
    assert case_from_doc(case_doc(case)) == case
    assert case_from_doc({k: v for k, v in case_doc(case).items() if k != "zone"}).zone == "UTC"  # a doc from before
    item = CaseItem("i1", "c1", ItemKind.COTRAVEL, "alice", T0, "together", ["s1", "s2"], PLATE, "沪B12345",
                    T0, T0 + timedelta(hours=2), "cotravel plate=皖AY766D")
    assert item_from_doc(item_doc(item, 7)) == item and item_doc(item, 7)["seq"] == 7
    note = CaseNote("n1", "c1", "alice", T0, "owner called")
    assert note_from_doc(note_doc(note, 8)) == note
    user = User("u1", "ada", Role.INVESTIGATOR, True, T0)
    assert user_from_doc(user_doc(user, "hash", T0)) == user
    # every field a query filters or sorts on is mapped; the rest stay unindexed in _source
    cases = case_index_bodies()["cases"]["mappings"]
    assert {"ref", "status", "created"} <= set(cases["properties"]) and cases["dynamic"] is False
    assert "title" not in cases["properties"]
    assert set(account_index_bodies()) == {"users", "user-names", "tokens", "sessions"}
