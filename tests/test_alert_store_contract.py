"""The alert-store contract: one suite over every backend in services.system.ALERT_BACKENDS.

SQLite always; Elasticsearch against a real cluster when SIGHTLINE_ES_URL is set (tests/es_cluster.py), skipped with
that reason otherwise. A backend that passes it can stand behind the rule engine, the watchlist service, webhook
delivery (each delivery claimed by one sender only) and retention.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, time, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from indexer.alert_store import AlertStore
from models.watchlists import Alert, Rule, WatchEntry, Watchlist
from services.system import ALERT_BACKENDS
from tests.es_cluster import handles

T0 = datetime(2026, 11, 2, 8, 0, 0, 123456, tzinfo=timezone.utc)
Opener = Callable[[], AlertStore]


@pytest.fixture(params=sorted(ALERT_BACKENDS))
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    yield from handles(ALERT_BACKENDS, request.param, tmp_path)


@pytest.fixture
def store(open_store: Opener) -> AlertStore:
    return open_store()


def alert(alert_id: str, sighting: str, minutes: float, rule: str = "r1", **details: object) -> Alert:
    return Alert(alert_id, rule, sighting, "gate-1", T0 + timedelta(minutes=minutes),
                 T0 + timedelta(minutes=minutes, seconds=1), "high", "京A12345", {"rule": "plates", **details},
                 f"2026/11/02/{sighting}.jpg")


def entry(entry_id: str, watchlist_id: str, value: str = "京A12345") -> WatchEntry:
    return WatchEntry(entry_id, watchlist_id, "stolen", "ada", value, "fuzzy", 1, {})


# watchlists, entries, rules ------------------------------------------------------------------------------------
def test_watchlists_are_listed_by_name_and_deleted_with_their_entries(store: AlertStore) -> None:
    store.add_watchlist(Watchlist("w2", "stolen cars", "plate", "reported stolen", "ada"))
    store.add_watchlist(Watchlist("w1", "bolo people", "attribute", "", "bob"))
    listed = store.watchlists()
    assert [(w.id, w.name, w.kind, w.description, w.created_by) for w in listed] == [
        ("w1", "bolo people", "attribute", "", "bob"), ("w2", "stolen cars", "plate", "reported stolen", "ada")]
    assert all(w.created_at is not None and w.created_at.tzinfo is not None for w in listed)
    store.add_entries([entry("e1", "w2"), entry("e2", "w2", "沪B*")], [None, None])
    assert store.delete_watchlist("w2") and not store.delete_watchlist("w2")
    assert [w.id for w in store.watchlists()] == ["w1"] and store.entries("w2") == []


def test_entries_keep_their_order_fields_and_face_vectors(store: AlertStore) -> None:
    store.add_watchlist(Watchlist("w1", "plates", "plate"))
    store.add_watchlist(Watchlist("wf", "faces", "face"))
    plates = [entry(f"e{i}", "w1", f"京A1234{i}") for i in range(5)]
    plates[0].conditions = {"vehicle_color": "red"}
    store.add_entries(plates, [None] * 5)
    face = np.random.default_rng(1).standard_normal(128).astype(np.float32)
    store.add_entries([WatchEntry("f1", "wf", "missing person", "ada", "Jo")], [face])
    got = store.entries("w1")
    assert [e.id for e, _ in got] == ["e0", "e1", "e2", "e3", "e4"] and all(f is None for _, f in got)
    first = got[0][0]
    assert (first.value, first.match, first.tolerance, first.conditions, first.reason, first.created_by) == (
        "京A12340", "fuzzy", 1, {"vehicle_color": "red"}, "stolen", "ada")
    (enrolled, vector), = store.entries("wf")
    assert enrolled.value == "Jo" and vector is not None and np.array_equal(vector, face)
    assert {e.id for e, _ in store.entries()} == {"e0", "e1", "e2", "e3", "e4", "f1"}
    assert store.delete_entry("e3") and not store.delete_entry("e3")
    assert [e.id for e, _ in store.entries("w1")] == ["e0", "e1", "e2", "e4"]


def test_entries_are_added_all_or_none(store: AlertStore) -> None:
    store.add_watchlist(Watchlist("w1", "plates", "plate"))
    store.add_entries([entry("e1", "w1")], [None])
    with pytest.raises(Exception):  # noqa: B017,PT011 - each backend's own duplicate-key error
        store.add_entries([entry("e2", "w1"), entry("e1", "w1")], [None, None])
    assert [e.id for e, _ in store.entries("w1")] == ["e1"]


def test_rules_are_put_replaced_and_deleted(store: AlertStore) -> None:
    night = Rule("r1", "night plates", watchlist_id="w1", camera_ids=["gate-1"], time_from=time(22),
                 time_to=time(6, 30), tz="Asia/Shanghai", min_confidence=0.5, severity="high", cooldown_s=60)
    store.put_rule(night)
    store.put_rule(Rule("r2", "clones", kind="cloned_plate"))
    assert sorted(store.rules(), key=lambda r: r.id) == [night, Rule("r2", "clones", kind="cloned_plate")]
    night.active, night.camera_ids = False, []
    store.put_rule(night)  # replaces the rule with this id
    assert sorted(store.rules(), key=lambda r: r.id)[0] == night and len(store.rules()) == 2
    assert store.delete_rule("r2") and not store.delete_rule("r2")
    assert [r.id for r in store.rules()] == ["r1"]


# alerts --------------------------------------------------------------------------------------------------------
def test_alerts_round_trip_and_list_newest_first_with_filters(store: AlertStore) -> None:
    for i in range(5):
        store.add_alert(alert(f"a{i}", f"s{i}", i, rule="r1" if i % 2 == 0 else "r2", distance_km=1.5 * i))
    assert store.alert_count() == 5
    got = store.get_alert("a3")
    assert got == alert("a3", "s3", 3, rule="r2", distance_km=4.5) and store.get_alert("nope") is None
    assert [a.id for a in store.alerts()] == ["a4", "a3", "a2", "a1", "a0"]
    assert [a.id for a in store.alerts(rule_id="r1")] == ["a4", "a2", "a0"]
    assert [a.id for a in store.alerts(since=T0 + timedelta(minutes=3))] == ["a4", "a3"]
    assert [a.id for a in store.alerts(limit=2, offset=1)] == ["a3", "a2"]


def test_an_alert_is_acknowledged_once(store: AlertStore) -> None:
    store.add_alert(alert("a1", "s1", 0))
    store.add_alert(alert("a2", "s2", 1))
    assert store.ack("a1", "ada") and not store.ack("a1", "bob") and not store.ack("nope", "ada")
    acked = store.get_alert("a1")
    assert acked is not None and acked.acked_by == "ada" and acked.acked_at is not None
    assert [a.id for a in store.alerts(acked=True)] == ["a1"] and [a.id for a in store.alerts(acked=False)] == ["a2"]


def test_alerts_are_purged_with_the_sightings_they_name(store: AlertStore) -> None:
    store.add_webhook("h1", "https://8.8.8.8/hook", "secret")
    store.add_alert(alert("a1", "s1", 0))
    store.add_alert(alert("a2", "s2", 1, rule="clone", other_sighting_id="s0"))  # a cloned plate's other read
    store.add_alert(alert("a3", "s3", 2))
    assert store.named_sightings() == {"s0", "s1", "s2", "s3"}
    assert store.delete_for_sightings(["s1", "s0", "unknown"]) == 2
    assert [a.id for a in store.alerts()] == ["a3"] and store.named_sightings() == {"s3"}
    assert {d["alert_id"] for d in store.deliveries()} == {"a3"}  # their deliveries went with them
    assert store.delete_for_sightings([]) == 0


# webhooks and deliveries ----------------------------------------------------------------------------------------
def test_webhooks_are_unique_by_url_and_shown_without_credentials(store: AlertStore) -> None:
    assert store.add_webhook("h1", "https://user:pw@8.8.8.8/hook", "s1")
    assert not store.add_webhook("h2", "https://user:pw@8.8.8.8/hook", "s2")
    assert store.add_webhook("h0", "https://8.8.4.4/x", "s0")
    assert store.webhooks() == {"h0": "https://8.8.4.4/x", "h1": "https://8.8.8.8/hook"}
    store.add_alert(alert("a1", "s1", 0))
    assert store.delete_webhook("h1") and not store.delete_webhook("h1")
    assert store.webhooks() == {"h0": "https://8.8.4.4/x"}
    assert [(d["alert_id"], d["webhook_id"]) for d in store.deliveries()] == [("a1", "h0")]


def test_each_alert_gets_one_pending_delivery_per_webhook(store: AlertStore) -> None:
    store.add_alert(alert("a0", "s0", 0))  # no webhook yet: nothing to deliver
    store.add_webhook("h1", "https://8.8.8.8/one", "k1")
    store.add_webhook("h2", "https://8.8.4.4/two", "k2")
    store.add_alert(alert("a1", "s1", 1))
    assert sorted(store.due_deliveries()) == [("a1", "h1", "https://8.8.8.8/one", "k1", 0),
                                              ("a1", "h2", "https://8.8.4.4/two", "k2", 0)]
    assert sorted((d["webhook_id"], d["state"], d["attempts"], d["last_error"]) for d in store.deliveries()) == [
        ("h1", "pending", 0, None), ("h2", "pending", 0, None)]


def test_the_alerts_of_one_sighting_are_stored_in_one_write_each_with_its_deliveries(store: AlertStore) -> None:
    store.add_webhook("h1", "https://8.8.8.8/one", "k1")
    store.add_alerts([])  # a sighting that raised nothing writes nothing
    store.add_alerts([alert(f"a{i}", "s1", 0, rule=f"r{i}") for i in range(3)])
    assert store.alert_count() == 3 and {a.rule_id for a in store.alerts()} == {"r0", "r1", "r2"}
    assert sorted((d["alert_id"], d["webhook_id"], d["state"]) for d in store.deliveries()) == [
        ("a0", "h1", "pending"), ("a1", "h1", "pending"), ("a2", "h1", "pending")]


def test_a_delivery_is_claimed_once_until_its_lease_ends(store: AlertStore) -> None:
    store.add_webhook("h1", "https://8.8.8.8/one", "k1")
    store.add_alert(alert("a1", "s1", 0))
    assert store.claim_delivery("a1", "h1", 60) and not store.claim_delivery("a1", "h1", 60)
    assert not store.claim_delivery("a1", "nope", 60)
    store.add_alert(alert("a2", "s2", 1))
    assert store.claim_delivery("a2", "h1", -1)  # a sender that died: its lease is already over
    assert store.claim_delivery("a2", "h1", 60)  # so another sender takes the delivery


def test_of_senders_racing_for_one_delivery_exactly_one_wins(open_store: Opener) -> None:
    """Each sender holds its own handle on the same data, as API replicas do."""
    first = open_store()
    first.add_webhook("h1", "https://8.8.8.8/one", "k1")
    senders = [first] + [open_store() for _ in range(3)]
    for n in range(5):
        first.add_alert(alert(f"a{n}", f"s{n}", n))
        start, won = threading.Barrier(len(senders) * 2), []

        def claim(sender: AlertStore, alert_id: str, start: threading.Barrier, won: list[AlertStore]) -> None:
            start.wait()
            if sender.claim_delivery(alert_id, "h1", 60):
                won.append(sender)

        threads = [threading.Thread(target=claim, args=(s, f"a{n}", start, won)) for s in senders for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(won) == 1, f"alert a{n}: {len(won)} senders won the claim"


def test_delivery_outcomes_retries_dead_letters_and_back_off(store: AlertStore) -> None:
    store.add_webhook("h1", "https://8.8.8.8/one", "k1")
    store.add_webhook("h2", "https://8.8.4.4/two", "k2")
    for n in range(3):
        store.add_alert(alert(f"a{n}", f"s{n}", n))
    now = datetime.now(timezone.utc)
    assert store.claim_delivery("a0", "h1", 60)
    store.delivery_done("a0", "h1")
    assert store.claim_delivery("a1", "h1", 60)
    store.delivery_failed("a1", "h1", "HTTP 500 " + "x" * 600, now + timedelta(hours=1))
    store.defer_webhook("h1", now + timedelta(hours=1))  # its other pending deliveries wait too
    assert store.claim_delivery("a0", "h2", 60)
    store.delivery_failed("a0", "h2", "refused by the policy", None)  # no retry left: a dead letter
    by_key = {(d["alert_id"], d["webhook_id"]): d for d in store.deliveries()}
    assert (by_key["a0", "h1"]["state"], by_key["a0", "h1"]["attempts"]) == ("delivered", 1)
    assert (by_key["a1", "h1"]["state"], by_key["a1", "h1"]["attempts"]) == ("pending", 1)
    assert by_key["a1", "h1"]["last_error"].startswith("HTTP 500") and len(by_key["a1", "h1"]["last_error"]) == 500
    assert (by_key["a0", "h2"]["state"], by_key["a0", "h2"]["last_error"]) == ("dead", "refused by the policy")
    assert sorted((a, w) for a, w, *_ in store.due_deliveries()) == [("a1", "h2"), ("a2", "h2")]  # h1 deferred
    assert not store.claim_delivery("a2", "h1", 60) and not store.claim_delivery("a0", "h2", 60)
    assert store.delivery_counts() == {"delivered": 1, "pending": 4, "dead": 1}
    assert [(d["alert_id"], d["webhook_id"]) for d in store.deliveries("dead")] == [("a0", "h2")]
    assert store.retry_dead() == 1 and store.deliveries("dead") == []
    assert ("a0", "h2") in {(a, w) for a, w, *_ in store.due_deliveries()}  # due again, at once
