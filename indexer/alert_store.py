"""The watchlist/rule/alert store's interface, and its SQLite backend (`alerts.db`, beside the sightings).

It holds watchlists, their entries, rules, alerts, webhooks and webhook deliveries. An alert and its pending
deliveries are written together, so a restart loses no alert and re-sends every delivery not confirmed. Several
processes (API replicas) may share one store: `claim_delivery` lets exactly one of them send each delivery.
Backends: SQLite here (embedded), Elasticsearch (indexer/es_alerts.py) for several machines.
"""
from __future__ import annotations

import json
import re
import secrets
import sqlite3
import threading
from abc import ABC, abstractmethod
from dataclasses import asdict
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import numpy as np

from indexer.sqlite_conn import open_sqlite
from indexer.sqlite_store import from_us, to_us
from models.watchlists import Alert, Rule, WatchEntry, Watchlist

DELIVERY_FIELDS = ("alert_id", "webhook_id", "state", "attempts", "last_error")

SCHEMA = """
CREATE TABLE IF NOT EXISTS watchlists (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, description TEXT NOT NULL,
    created_by TEXT NOT NULL, created_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS watch_entries (
    id TEXT PRIMARY KEY, watchlist_id TEXT NOT NULL REFERENCES watchlists(id) ON DELETE CASCADE,
    value TEXT NOT NULL, match TEXT NOT NULL, tolerance INTEGER NOT NULL, conditions TEXT NOT NULL,
    reason TEXT NOT NULL, created_by TEXT NOT NULL, created_us INTEGER NOT NULL, face BLOB
);
CREATE INDEX IF NOT EXISTS entries_list ON watch_entries(watchlist_id);
CREATE TABLE IF NOT EXISTS rules (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY, rule_id TEXT NOT NULL, sighting_id TEXT NOT NULL, camera_id TEXT NOT NULL,
    ts_us INTEGER NOT NULL, raised_us INTEGER NOT NULL, severity TEXT NOT NULL, target TEXT NOT NULL,
    details TEXT NOT NULL, crop TEXT, acked_by TEXT, acked_us INTEGER
);
CREATE INDEX IF NOT EXISTS alerts_raised ON alerts(raised_us);
CREATE INDEX IF NOT EXISTS alerts_rule ON alerts(rule_id, raised_us);
-- secret: the key each delivery's body is signed with (HMAC-SHA256), shown to the caller once
CREATE TABLE IF NOT EXISTS webhooks (id TEXT PRIMARY KEY, url TEXT NOT NULL UNIQUE, secret TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (
    alert_id TEXT NOT NULL, webhook_id TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL,
    next_us INTEGER NOT NULL, last_error TEXT, PRIMARY KEY (alert_id, webhook_id)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(state, next_us);
"""


def _now_us() -> int:
    return to_us(datetime.now(timezone.utc))


def rule_json(rule: Rule) -> str:
    body = asdict(rule)
    body["time_from"] = rule.time_from.isoformat() if rule.time_from else None
    body["time_to"] = rule.time_to.isoformat() if rule.time_to else None
    return json.dumps(body, ensure_ascii=False)


def rule_from_json(body: str) -> Rule:
    data = json.loads(body)
    for key in ("time_from", "time_to"):
        data[key] = time.fromisoformat(data[key]) if data[key] else None
    return Rule(**data)


class AlertStore(ABC):
    """Watchlists, entries, rules, alerts, webhooks and their deliveries, for the rule engine, the watchlist service,
    webhook delivery and retention. Every write is visible to the next read of any process when it returns."""

    # watchlists and entries
    @abstractmethod
    def add_watchlist(self, w: Watchlist) -> None: ...

    @abstractmethod
    def watchlists(self) -> list[Watchlist]:
        """By name."""

    @abstractmethod
    def delete_watchlist(self, watchlist_id: str) -> bool:
        """The list and its entries; False when there was none."""

    @abstractmethod
    def add_entries(self, entries: list[WatchEntry], faces: list[np.ndarray | None]) -> None:
        """All or none; `faces` gives each entry's enrolled face vector (None for plates and attributes)."""

    @abstractmethod
    def entries(self, watchlist_id: str | None = None) -> list[tuple[WatchEntry, np.ndarray | None]]:
        """One list's entries in the order they were added, or every entry; each with its face vector."""

    @abstractmethod
    def delete_entry(self, entry_id: str) -> bool: ...

    # rules
    @abstractmethod
    def put_rule(self, rule: Rule) -> None:
        """Add the rule, or replace the one with its id."""

    @abstractmethod
    def rules(self) -> list[Rule]: ...

    @abstractmethod
    def delete_rule(self, rule_id: str) -> bool: ...

    # alerts
    @abstractmethod
    def add_alerts(self, alerts: list[Alert]) -> None:
        """The alerts and one pending delivery each per registered webhook, all together: one write for the
        alerts one sighting raises (50 rules on one list raise 50), so the first is not kept waiting by the rest."""

    def add_alert(self, a: Alert) -> None:
        """One alert and its deliveries."""
        self.add_alerts([a])

    @abstractmethod
    def alerts(self, rule_id: str | None = None, acked: bool | None = None, since: datetime | None = None,
               limit: int = 100, offset: int = 0) -> list[Alert]:
        """Newest raised first."""

    @abstractmethod
    def get_alert(self, alert_id: str) -> Alert | None: ...

    @abstractmethod
    def ack(self, alert_id: str, user: str) -> bool:
        """Acknowledge once: False when there is no such alert or it was acknowledged already (by anyone)."""

    @abstractmethod
    def named_sightings(self) -> set[str]:
        """Every sighting id an alert names: its own sighting, and a cloned plate's other read (retention's check)."""

    @abstractmethod
    def delete_for_sightings(self, sighting_ids: list[str], batch: int = 500) -> int:
        """Delete the alerts that name any of these sightings (as theirs, or as a cloned plate's other read) with
        their deliveries, pending or dead: retention leaves no plate, camera, time or crop of a purged sighting.
        Returns how many alerts went."""

    @abstractmethod
    def alert_count(self) -> int: ...

    # webhooks and deliveries
    @abstractmethod
    def add_webhook(self, webhook_id: str, url: str, secret: str) -> bool:
        """Register a receiver (False: one with this URL exists already)."""

    @abstractmethod
    def webhooks(self) -> dict[str, str]:
        """id -> URL, for showing: never the secret, never credentials or control characters (from older data)."""

    @abstractmethod
    def delete_webhook(self, webhook_id: str) -> bool:
        """Stop delivering to a receiver: it and its deliveries (pending or dead) are gone."""

    @abstractmethod
    def due_deliveries(self, limit: int = 100) -> list[tuple[str, str, str, str, int]]:
        """(alert_id, webhook_id, url, secret, attempts) whose next attempt is due, oldest first. Only a hint of
        what to send: a sender must `claim_delivery` each before sending it."""

    @abstractmethod
    def claim_delivery(self, alert_id: str, webhook_id: str, lease_s: float) -> bool:
        """Take one due delivery for `lease_s` seconds (it is due again after that, should the sender die); False
        when it is not pending and due any more, e.g. another process claimed it first. Of several processes that
        claim the same delivery at once, exactly one gets True."""

    @abstractmethod
    def delivery_done(self, alert_id: str, webhook_id: str) -> None: ...

    @abstractmethod
    def defer_webhook(self, webhook_id: str, until: datetime) -> None:
        """Hold a failing receiver's other pending deliveries until its next retry (their attempts unchanged)."""

    @abstractmethod
    def delivery_failed(self, alert_id: str, webhook_id: str, error: str, retry_at: datetime | None) -> None:
        """Schedule the next attempt, or park the delivery as dead (dead letter) when retries are spent."""

    @abstractmethod
    def deliveries(self, state: str | None = None) -> list[dict]:
        """Each delivery (in one state, or all) as {alert_id, webhook_id, state, attempts, last_error}."""

    @abstractmethod
    def delivery_counts(self) -> dict[str, int]:
        """How many deliveries are in each state (pending, delivered, dead)."""

    @abstractmethod
    def retry_dead(self) -> int:
        """Put dead-lettered deliveries back in the queue (an operator's 'resend'); returns how many."""

    @abstractmethod
    def close(self) -> None: ...


class SQLiteAlertStore(AlertStore):
    """One SQLite file that every process on the machine opens; multi-row writes are one transaction each."""

    def __init__(self, path: Path):
        self.conn = open_sqlite(path, "foreign_keys=ON")
        self.conn.executescript(SCHEMA)
        self.lock = threading.RLock()
        self._migrate()

    def _migrate(self) -> None:
        """Bring a database from an earlier version up to SCHEMA."""
        def has_secret() -> bool:
            return "secret" in {r[1] for r in self.conn.execute("PRAGMA table_info(webhooks)")}

        if has_secret():
            return
        self.conn.execute("BEGIN IMMEDIATE")  # another process may be migrating the same file: ask again inside
        try:
            if not has_secret():  # webhooks from before signed deliveries: each gets its own new key
                self.conn.execute("ALTER TABLE webhooks ADD COLUMN secret TEXT NOT NULL DEFAULT ''")
                for (webhook_id,) in self.conn.execute("SELECT id FROM webhooks").fetchall():
                    self.conn.execute("UPDATE webhooks SET secret=? WHERE id=?", (new_secret(), webhook_id))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def _write(self, sql: str, args: tuple | list = ()) -> int:
        with self.lock:
            return self.conn.execute(sql, args).rowcount

    # watchlists and entries ------------------------------------------------------------------------
    def add_watchlist(self, w: Watchlist) -> None:
        self._write("INSERT INTO watchlists VALUES (?,?,?,?,?,?)",
                    (w.id, w.name, w.kind, w.description, w.created_by, _now_us()))

    def watchlists(self) -> list[Watchlist]:
        with self.lock:
            rows = self.conn.execute("SELECT id, name, kind, description, created_by, created_us FROM watchlists "
                                     "ORDER BY name").fetchall()
        return [Watchlist(r[0], r[1], r[2], r[3], r[4], from_us(r[5])) for r in rows]

    def delete_watchlist(self, watchlist_id: str) -> bool:
        return self._write("DELETE FROM watchlists WHERE id=?", (watchlist_id,)) > 0

    def add_entries(self, entries: list[WatchEntry], faces: list[np.ndarray | None]) -> None:
        rows = [(e.id, e.watchlist_id, e.value, e.match, e.tolerance, json.dumps(e.conditions, ensure_ascii=False),
                 e.reason, e.created_by, _now_us(), None if f is None else np.asarray(f, np.float32).tobytes())
                for e, f in zip(entries, faces, strict=True)]
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.executemany("INSERT INTO watch_entries VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    def entries(self, watchlist_id: str | None = None) -> list[tuple[WatchEntry, np.ndarray | None]]:
        sql = ("SELECT id, watchlist_id, value, match, tolerance, conditions, reason, created_by, created_us, face "
               "FROM watch_entries")
        with self.lock:
            rows = (self.conn.execute(sql + " WHERE watchlist_id=? ORDER BY created_us", (watchlist_id,))
                    if watchlist_id else self.conn.execute(sql)).fetchall()
        return [(WatchEntry(r[0], r[1], r[6], r[7], r[2], r[3], r[4], json.loads(r[5]), from_us(r[8])),
                 np.frombuffer(r[9], np.float32) if r[9] is not None else None) for r in rows]

    def delete_entry(self, entry_id: str) -> bool:
        return self._write("DELETE FROM watch_entries WHERE id=?", (entry_id,)) > 0

    # rules ------------------------------------------------------------------------------------
    def put_rule(self, rule: Rule) -> None:
        self._write("INSERT INTO rules VALUES (?,?) ON CONFLICT(id) DO UPDATE SET body=excluded.body",
                    (rule.id, rule_json(rule)))

    def rules(self) -> list[Rule]:
        with self.lock:
            return [rule_from_json(r[0]) for r in self.conn.execute("SELECT body FROM rules")]

    def delete_rule(self, rule_id: str) -> bool:
        return self._write("DELETE FROM rules WHERE id=?", (rule_id,)) > 0

    # alerts and deliveries -----------------------------------------------------------------------
    def add_alerts(self, alerts: list[Alert]) -> None:
        """The alerts and one pending delivery each per webhook, in one transaction (one sync to disk)."""
        if not alerts:
            return
        rows = [(a.id, a.rule_id, a.sighting_id, a.camera_id, to_us(a.ts), to_us(a.raised_at), a.severity, a.target,
                 json.dumps(a.details, ensure_ascii=False, default=str), a.crop, None, None) for a in alerts]
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.executemany("INSERT INTO alerts VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
                self.conn.executemany("INSERT INTO deliveries SELECT ?, id, 'pending', 0, ?, NULL FROM webhooks",
                                      [(a.id, _now_us()) for a in alerts])
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    def alerts(self, rule_id: str | None = None, acked: bool | None = None, since: datetime | None = None,
               limit: int = 100, offset: int = 0) -> list[Alert]:
        where: list[str] = []
        args: list[object] = []
        if rule_id:
            where.append("rule_id=?")
            args.append(rule_id)
        if acked is not None:
            where.append("acked_us IS NOT NULL" if acked else "acked_us IS NULL")
        if since:
            where.append("raised_us>=?")
            args.append(to_us(since))
        sql = "SELECT * FROM alerts" + (" WHERE " + " AND ".join(where) if where else "")
        with self.lock:
            rows = self.conn.execute(sql + " ORDER BY raised_us DESC LIMIT ? OFFSET ?",
                                     [*args, limit, offset]).fetchall()
        return [_alert(r) for r in rows]

    def get_alert(self, alert_id: str) -> Alert | None:
        with self.lock:
            row = self.conn.execute("SELECT * FROM alerts WHERE id=?", (alert_id,)).fetchone()
        return _alert(row) if row else None

    def ack(self, alert_id: str, user: str) -> bool:
        return self._write("UPDATE alerts SET acked_by=?, acked_us=? WHERE id=? AND acked_us IS NULL",
                           (user, _now_us(), alert_id)) > 0

    def named_sightings(self) -> set[str]:
        """Every sighting id an alert names: its own sighting, and a cloned plate's other read (retention's check)."""
        with self.lock:
            rows = self.conn.execute(
                "SELECT sighting_id FROM alerts UNION "
                "SELECT json_extract(details, '$.other_sighting_id') FROM alerts "
                "WHERE json_valid(details) AND json_extract(details, '$.other_sighting_id') IS NOT NULL").fetchall()
        return {str(r[0]) for r in rows}

    def delete_for_sightings(self, sighting_ids: list[str], batch: int = 500) -> int:
        """Delete the alerts that name any of these sightings (as theirs, or as a cloned plate's other read) with
        their deliveries, pending or dead: retention leaves no plate, camera, time or crop of a purged sighting."""
        deleted = 0
        for i in range(0, len(sighting_ids), batch):
            chunk = list(sighting_ids[i:i + batch])
            marks = ",".join("?" * len(chunk))
            named = (f"SELECT id FROM alerts WHERE sighting_id IN ({marks}) OR (json_valid(details) AND "
                     f"json_extract(details, '$.other_sighting_id') IN ({marks}))")
            with self.lock:
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    self.conn.execute(f"DELETE FROM deliveries WHERE alert_id IN ({named})", chunk + chunk)
                    deleted += self.conn.execute(f"DELETE FROM alerts WHERE id IN ({named})", chunk + chunk).rowcount
                    self.conn.execute("COMMIT")
                except BaseException:
                    self.conn.execute("ROLLBACK")
                    raise
        return deleted

    def alert_count(self) -> int:
        with self.lock:
            return int(self.conn.execute("SELECT COUNT(*) FROM alerts").fetchone()[0])

    def add_webhook(self, webhook_id: str, url: str, secret: str) -> bool:
        """Register a receiver (False: one with this URL exists already)."""
        try:
            self._write("INSERT INTO webhooks (id, url, secret) VALUES (?,?,?)", (webhook_id, url, secret))
        except sqlite3.IntegrityError:
            return False
        return True

    def webhooks(self) -> dict[str, str]:
        """id -> URL, for showing: never the secret, never credentials or control characters (from older data)."""
        with self.lock:
            rows = self.conn.execute("SELECT id, url FROM webhooks ORDER BY id").fetchall()
        return {webhook_id: shown_url(url) for webhook_id, url in rows}

    def delete_webhook(self, webhook_id: str) -> bool:
        """Stop delivering to a receiver: it and its deliveries (pending or dead) are gone."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.execute("DELETE FROM deliveries WHERE webhook_id=?", (webhook_id,))
                deleted = self.conn.execute("DELETE FROM webhooks WHERE id=?", (webhook_id,)).rowcount
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        return deleted > 0

    def due_deliveries(self, limit: int = 100) -> list[tuple[str, str, str, str, int]]:
        """(alert_id, webhook_id, url, secret, attempts) whose next attempt is due, oldest first."""
        with self.lock:
            return self.conn.execute(
                "SELECT d.alert_id, d.webhook_id, w.url, w.secret, d.attempts "
                "FROM deliveries d JOIN webhooks w ON w.id=d.webhook_id "
                "WHERE d.state='pending' AND d.next_us<=? ORDER BY d.next_us LIMIT ?", (_now_us(), limit)).fetchall()

    def claim_delivery(self, alert_id: str, webhook_id: str, lease_s: float) -> bool:
        """One conditional UPDATE (still pending, still due -> due again only after the lease), which SQLite runs
        under its write lock: of the processes that read the delivery as due, exactly one updates it."""
        now = datetime.now(timezone.utc)
        return self._write(
            "UPDATE deliveries SET next_us=? WHERE alert_id=? AND webhook_id=? AND state='pending' AND next_us<=?",
            (to_us(now + timedelta(seconds=lease_s)), alert_id, webhook_id, to_us(now))) == 1

    def delivery_done(self, alert_id: str, webhook_id: str) -> None:
        self._write("UPDATE deliveries SET state='delivered', attempts=attempts+1 WHERE alert_id=? AND webhook_id=?",
                    (alert_id, webhook_id))

    def defer_webhook(self, webhook_id: str, until: datetime) -> None:
        """Hold a failing receiver's other pending deliveries until its next retry (their attempts unchanged)."""
        self._write("UPDATE deliveries SET next_us=MAX(next_us, ?) WHERE webhook_id=? AND state='pending'",
                    (to_us(until), webhook_id))

    def delivery_failed(self, alert_id: str, webhook_id: str, error: str, retry_at: datetime | None) -> None:
        """Schedule the next attempt, or park the delivery as dead (dead letter) when retries are spent."""
        state, next_us = ("pending", to_us(retry_at)) if retry_at else ("dead", 0)
        self._write("UPDATE deliveries SET state=?, attempts=attempts+1, next_us=?, last_error=? "
                    "WHERE alert_id=? AND webhook_id=?", (state, next_us, error[:500], alert_id, webhook_id))

    def deliveries(self, state: str | None = None) -> list[dict]:
        with self.lock:
            rows = self.conn.execute("SELECT alert_id, webhook_id, state, attempts, last_error FROM deliveries"
                                     + (" WHERE state=?" if state else ""), (state,) if state else ()).fetchall()
        return [dict(zip(DELIVERY_FIELDS, r, strict=True)) for r in rows]

    def delivery_counts(self) -> dict[str, int]:
        with self.lock:
            return dict(self.conn.execute("SELECT state, COUNT(*) FROM deliveries GROUP BY state").fetchall())

    def retry_dead(self) -> int:
        """Put dead-lettered deliveries back in the queue (an operator's 'resend')."""
        return self._write("UPDATE deliveries SET state='pending', next_us=? WHERE state='dead'", (_now_us(),))

    def close(self) -> None:
        with self.lock:
            self.conn.close()


def new_secret() -> str:
    """A webhook's signing key: 256 random bits."""
    return secrets.token_urlsafe(32)


_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


def shown_url(url: str) -> str:
    """A stored URL fit to show: any user:password@ dropped, whitespace and control characters percent-encoded."""
    url = _USERINFO.sub(r"\1", url)
    return "".join(c if c.isprintable() and not c.isspace() else quote(c, safe="") for c in url)


def _alert(r: tuple) -> Alert:
    return Alert(id=r[0], rule_id=r[1], sighting_id=r[2], camera_id=r[3], ts=from_us(r[4]), raised_at=from_us(r[5]),
                 severity=r[6], target=r[7], details=json.loads(r[8]), crop=r[9], acked_by=r[10],
                 acked_at=from_us(r[11]) if r[11] else None)
