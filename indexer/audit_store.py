"""The audit log's interface and its SQLite backend (`audit.db` beside the data): append-only and hash-chained.

Each entry's hash is sha256 over the previous entry's hash and the entry's own fields in a
canonical JSON form; `verify` recomputes the chain and names the first entry that does not
match, so an entry altered, deleted or inserted after the fact is found. Purging sightings
never touches this file.
"""
from __future__ import annotations

import hashlib
import json
import threading
from abc import ABC, abstractmethod
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from indexer.sqlite_conn import open_sqlite
from models.accounts import AuditEntry

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY, ts_us INTEGER NOT NULL, actor TEXT NOT NULL, role TEXT NOT NULL,
    action TEXT NOT NULL, source TEXT NOT NULL, case_ref TEXT, reason TEXT, params TEXT NOT NULL,
    result_count INTEGER, status INTEGER, prev_hash TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_actor ON audit(actor, ts_us);
CREATE INDEX IF NOT EXISTS audit_case ON audit(case_ref, ts_us);
CREATE INDEX IF NOT EXISTS audit_action ON audit(action, ts_us);
CREATE INDEX IF NOT EXISTS audit_ts ON audit(ts_us);
"""
GENESIS = "0" * 64


def entry_hash(e: AuditEntry) -> str:
    """sha256 of the previous hash and every field but the hash itself, as canonical JSON."""
    body = {"seq": e.seq, "ts": e.ts.astimezone(timezone.utc).isoformat(), "actor": e.actor, "role": e.role,
            "action": e.action, "source": e.source, "case": e.case_ref, "reason": e.reason, "params": e.params,
            "result_count": e.result_count, "status": e.status}
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256((e.prev_hash + text).encode()).hexdigest()


class AuditStore(ABC):
    """Where the audit log lives: append-only, one writer sequence (seq 1, 2, ...), each entry chained by hash to
    the one before it. Backends: SQLite here (embedded), Elasticsearch (indexer/es_audit.py) for several machines."""

    @abstractmethod
    def append(self, entry: AuditEntry) -> AuditEntry:
        """Give the entry the next seq and the previous entry's hash, hash it and store it; returns it chained."""

    @abstractmethod
    def entries(self, actor: str | None = None, case_ref: str | None = None, action: str | None = None,
                start: datetime | None = None, end: datetime | None = None, limit: int = 1000, offset: int = 0,
                about: str | None = None) -> list[AuditEntry]:
        """Newest first; `about` keeps the entries whose parameters mention it (a plate, a sighting id)."""

    @abstractmethod
    def walk(self, batch: int = 10_000) -> list[AuditEntry]:
        """Every entry in chain order (for verification)."""

    @abstractmethod
    def close(self) -> None: ...


class SQLiteAuditStore(AuditStore):
    def __init__(self, path: Path):
        self.conn = open_sqlite(path, "synchronous=FULL")  # an acknowledged audit entry survives a power cut
        self.conn.executescript(SCHEMA)
        self.lock = threading.Lock()

    def append(self, entry: AuditEntry) -> AuditEntry:
        """Chain and store one entry; its seq and hashes are given here, under the write lock (several
        processes may append to one log)."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                last = self.conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
                chained = replace(entry, seq=(last[0] + 1) if last else 1, prev_hash=last[1] if last else GENESIS)
                chained.hash = entry_hash(chained)
                self.conn.execute("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", _row(chained))
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        return chained

    def entries(self, actor: str | None = None, case_ref: str | None = None, action: str | None = None,
                start: datetime | None = None, end: datetime | None = None, limit: int = 1000, offset: int = 0,
                about: str | None = None) -> list[AuditEntry]:
        """Newest first; `about` keeps the entries whose parameters mention it (a plate, a sighting id)."""
        where: list[str] = ["1=1"]
        args: list[object] = []
        if about:
            where.append("instr(params, ?) > 0")
            args.append(about)
        for column, value in (("actor", actor), ("case_ref", case_ref), ("action", action)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if start is not None:
            where.append("ts_us >= ?")
            args.append(_us(start))
        if end is not None:
            where.append("ts_us < ?")
            args.append(_us(end))
        sql = f"SELECT * FROM audit WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ? OFFSET ?"
        with self.lock:
            return [_entry(r) for r in self.conn.execute(sql, [*args, limit, offset])]

    def walk(self, batch: int = 10_000) -> list[AuditEntry]:
        """Every entry in chain order (for verification), read in batches."""
        out: list[AuditEntry] = []
        last = 0
        while True:
            with self.lock:
                rows = self.conn.execute("SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
                                         (last, batch)).fetchall()
            if not rows:
                return out
            out.extend(_entry(r) for r in rows)
            last = rows[-1][0]

    def close(self) -> None:
        with self.lock:
            self.conn.close()


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _us(ts: datetime) -> int:
    """Exact microseconds since the epoch (no float rounding: the hash covers the time to the microsecond)."""
    return (ts - EPOCH) // timedelta(microseconds=1)


def _row(e: AuditEntry) -> tuple:
    return (e.seq, _us(e.ts), e.actor, e.role, e.action, e.source, e.case_ref, e.reason,
            json.dumps(e.params, sort_keys=True, ensure_ascii=False, default=str), e.result_count, e.status,
            e.prev_hash, e.hash)


def _entry(r: tuple) -> AuditEntry:
    return AuditEntry(r[0], EPOCH + timedelta(microseconds=r[1]), r[2], r[3], r[4], r[5], r[6], r[7],
                      json.loads(r[8]), r[9], r[10], r[11], r[12])
