"""The audit log's interface and its SQLite backend (`audit.db` beside the data): append-only, chained by MAC.

Each entry's hash is an HMAC-SHA256, under a key kept outside the data folder, of the previous entry's hash and
the entry's own fields in a canonical JSON form. Whoever can write the log but not read the key cannot forge an
entry, re-chain the log after an edit, or append to it; cutting its end or deleting it is caught by the signed
checkpoint kept in a second place (services/audit.py). Entries written before the log was keyed carry no key id
and a plain SHA-256. Purging sightings never touches this file.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from indexer.sqlite_conn import open_sqlite
from models.accounts import AuditEntry
from models.records import InputError

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY, ts_us INTEGER NOT NULL, actor TEXT NOT NULL, role TEXT NOT NULL,
    action TEXT NOT NULL, source TEXT NOT NULL, case_ref TEXT, reason TEXT, params TEXT NOT NULL,
    result_count INTEGER, status INTEGER, prev_hash TEXT NOT NULL, hash TEXT NOT NULL, key_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_actor ON audit(actor, ts_us);
CREATE INDEX IF NOT EXISTS audit_case ON audit(case_ref, ts_us);
CREATE INDEX IF NOT EXISTS audit_action ON audit(action, ts_us);
CREATE INDEX IF NOT EXISTS audit_ts ON audit(ts_us);
"""
GENESIS = "0" * 64


COLUMNS = ("seq, ts_us, actor, role, action, source, case_ref, reason, params, result_count, status, prev_hash, hash,"
           " key_id")


@dataclass(frozen=True)
class AuditKey:
    """The secret that seals the log. Its id (a hash of it) is stored with each entry, so that an entry sealed
    under another key is named as such rather than as altered."""

    secret: bytes = field(repr=False)

    @property
    def key_id(self) -> str:
        return hashlib.sha256(b"sightline audit key id\0" + self.secret).hexdigest()[:16]

    def mac(self, text: str) -> str:
        return hmac.new(self.secret, text.encode(), hashlib.sha256).hexdigest()

    @classmethod
    def load_or_create(cls, path: Path) -> AuditKey:
        """Read the key file, or create it (32 random bytes, hex, readable by its owner only) on first use.
        Several processes may race to create it: the exclusive create lets exactly one win."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        except OSError as exc:
            raise InputError(f"cannot create the audit key {path}: {exc.strerror}") from None
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
                f.flush()
                os.fsync(f.fileno())
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise InputError(f"cannot read the audit key {path}: {exc.strerror}") from None
        try:
            secret = bytes.fromhex(text)
        except ValueError:
            raise InputError(f"the audit key {path} is not hex") from None
        if len(secret) < 16:
            raise InputError(f"the audit key {path} is too short: at least 16 bytes (32 hex digits)")
        return cls(secret)


def canonical(e: AuditEntry) -> str:
    """The entry's fields but its hash, as canonical JSON (the key id only where the entry has one, so that
    entries from before keying keep their hash)."""
    body = {"seq": e.seq, "ts": e.ts.astimezone(timezone.utc).isoformat(), "actor": e.actor, "role": e.role,
            "action": e.action, "source": e.source, "case": e.case_ref, "reason": e.reason, "params": e.params,
            "result_count": e.result_count, "status": e.status}
    if e.key_id:
        body["key_id"] = e.key_id
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def entry_hash(e: AuditEntry, key: AuditKey | None) -> str:
    """The entry's seal: HMAC-SHA256 under the key of the previous hash and the canonical fields; without a key
    the plain SHA-256 of the same text (entries from before keying, and a forger's recomputed hash)."""
    text = e.prev_hash + canonical(e)
    return key.mac(text) if key is not None else hashlib.sha256(text.encode()).hexdigest()


def sealed(entry: AuditEntry, seq: int, prev_hash: str, key: AuditKey) -> AuditEntry:
    """The entry numbered, linked to the one before it and sealed under the key."""
    chained = replace(entry, seq=seq, prev_hash=prev_hash, key_id=key.key_id)
    chained.hash = entry_hash(chained, key)
    return chained


class AuditStore(ABC):
    """Where the audit log lives: append-only, one writer sequence (seq 1, 2, ...), each entry chained by hash to
    the one before it. Backends: SQLite here (embedded), Elasticsearch (indexer/es_audit.py) for several machines."""

    @abstractmethod
    def append(self, entry: AuditEntry, key: AuditKey) -> AuditEntry:
        """Give the entry the next seq and the previous entry's hash, seal it under the key and store it; returns
        it chained."""

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
        columns = {r[1] for r in self.conn.execute("PRAGMA table_info(audit)")}
        if "key_id" not in columns:  # a log from before keying: its entries keep their plain hashes
            self.conn.execute("ALTER TABLE audit ADD COLUMN key_id TEXT NOT NULL DEFAULT ''")
        self.lock = threading.Lock()

    def append(self, entry: AuditEntry, key: AuditKey) -> AuditEntry:
        """Chain and store one entry; its seq and hashes are given here, under the write lock (several
        processes may append to one log)."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                last = self.conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
                chained = sealed(entry, (last[0] + 1) if last else 1, last[1] if last else GENESIS, key)
                self.conn.execute(f"INSERT INTO audit ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                                  _row(chained))
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
        sql = f"SELECT {COLUMNS} FROM audit WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ? OFFSET ?"
        with self.lock:
            return [_entry(r) for r in self.conn.execute(sql, [*args, limit, offset])]

    def walk(self, batch: int = 10_000) -> list[AuditEntry]:
        """Every entry in chain order (for verification), read in batches."""
        out: list[AuditEntry] = []
        last = 0
        while True:
            with self.lock:
                rows = self.conn.execute(f"SELECT {COLUMNS} FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
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
            e.prev_hash, e.hash, e.key_id)


def _entry(r: tuple) -> AuditEntry:
    return AuditEntry(r[0], EPOCH + timedelta(microseconds=r[1]), r[2], r[3], r[4], r[5], r[6], r[7],
                      json.loads(r[8]), r[9], r[10], r[11], r[12], r[13])
