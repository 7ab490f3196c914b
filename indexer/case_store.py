"""Persistence of cases: the case header, the findings collected in it, and its notes (SQLite, in the data folder).

A case is the investigator's file: what was found (sightings, saved searches, trajectories, clone and co-travel
findings) and why, kept apart from the sightings so that retention never empties a case without saying so —
an item keeps the plate, times and ids it named even after the sightings themselves are purged.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
import unicodedata
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from indexer.sqlite_conn import open_sqlite
from indexer.sqlite_store import from_us, to_us

log = logging.getLogger(__name__)


def case_key(ref: str) -> str:
    """What makes two spellings of a case number the same case: letters and digits only, folded (width and
    case), so `CASE-A`, `case-a`, `CASE-A.` and `CASE -A` are one number, and a closed one stays closed."""
    return "".join(c for c in unicodedata.normalize("NFKC", ref).casefold() if c.isalnum())


class CaseStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class ItemKind(StrEnum):
    """What a case item records: one sighting, a saved search, a plate's trajectory, a clone or co-travel finding."""

    SIGHTING = "sighting"
    SEARCH = "search"
    TRAJECTORY = "trajectory"
    CLONE = "clone"
    COTRAVEL = "cotravel"


@dataclass
class Case:
    id: str  # opaque, for URLs (a case number such as 2026/0412 holds a slash)
    ref: str  # the case number investigators quote, and the X-Case header of the queries made for it
    title: str
    reason: str
    owner: str
    created: datetime
    status: CaseStatus = CaseStatus.OPEN
    closed: datetime | None = None
    closed_by: str | None = None
    collaborators: list[str] = field(default_factory=list)  # who may edit it beside its owner
    zone: str = "UTC"  # IANA name: the zone its report prints times in (times are stored in UTC)


@dataclass
class CaseItem:
    """One finding of a case. Which fields are set depends on `kind` (services/cases.py checks them)."""

    id: str
    case_id: str
    kind: ItemKind
    added_by: str
    added: datetime
    note: str = ""
    sighting_ids: list[str] = field(default_factory=list)  # the sighting, or the sightings behind a finding
    plate: str | None = None  # trajectory, clone, co-travel: the plate
    other_plate: str | None = None  # co-travel: the companion
    start: datetime | None = None  # trajectory: the time range
    end: datetime | None = None
    query: str | None = None  # the search that found it (a saved search: the search itself)


@dataclass
class CaseNote:
    id: str
    case_id: str
    author: str
    ts: datetime
    text: str


class CaseStore(ABC):
    @abstractmethod
    def create(self, case: Case) -> None:
        """Store a new case; a case number that exists already raises KeyError."""

    @abstractmethod
    def get(self, case_id: str) -> Case | None: ...

    @abstractmethod
    def by_ref(self, ref: str) -> Case | None:
        """The case of this number however it is spelt (`case_key`)."""

    @abstractmethod
    def set_collaborators(self, case_id: str, names: list[str]) -> bool:
        """Replace the case's collaborators; False when there is no such case."""

    @abstractmethod
    def cases(self, status: CaseStatus | None = None, limit: int = 200) -> list[Case]:
        """Newest first."""

    @abstractmethod
    def close_case(self, case_id: str, by: str, at: datetime) -> bool:
        """Close an open case; False when it was not open."""

    @abstractmethod
    def add_item(self, item: CaseItem) -> None: ...

    @abstractmethod
    def remove_item(self, case_id: str, item_id: str) -> bool: ...

    @abstractmethod
    def items(self, case_id: str) -> list[CaseItem]:
        """In the order they were added."""

    @abstractmethod
    def add_note(self, note: CaseNote) -> None: ...

    @abstractmethod
    def notes(self, case_id: str) -> list[CaseNote]: ...

    @abstractmethod
    def close(self) -> None: ...


SCHEMA = """
CREATE TABLE IF NOT EXISTS cases (
    id TEXT PRIMARY KEY, ref TEXT NOT NULL UNIQUE, title TEXT NOT NULL, reason TEXT NOT NULL, owner TEXT NOT NULL,
    created_us INTEGER NOT NULL, status TEXT NOT NULL, closed_us INTEGER, closed_by TEXT, ref_key TEXT,
    collaborators TEXT NOT NULL DEFAULT '[]', zone TEXT NOT NULL DEFAULT 'UTC'
);
CREATE TABLE IF NOT EXISTS case_items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
    case_id TEXT NOT NULL REFERENCES cases(id) ON DELETE CASCADE, kind TEXT NOT NULL, added_by TEXT NOT NULL,
    added_us INTEGER NOT NULL, note TEXT NOT NULL, sighting_ids TEXT NOT NULL, plate TEXT, other_plate TEXT,
    start_us INTEGER, end_us INTEGER, query TEXT
);
CREATE INDEX IF NOT EXISTS case_items_case ON case_items(case_id, seq);
CREATE TABLE IF NOT EXISTS case_notes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
    case_id TEXT NOT NULL REFERENCES cases(id) ON DELETE CASCADE, author TEXT NOT NULL, ts_us INTEGER NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS case_notes_case ON case_notes(case_id, seq);
"""

_CASE_COLUMNS = "id, ref, title, reason, owner, created_us, status, closed_us, closed_by, collaborators, zone"
_ITEM_COLUMNS = "id, case_id, kind, added_by, added_us, note, sighting_ids, plate, other_plate, start_us, end_us, query"


def _us(ts: datetime | None) -> int | None:
    return None if ts is None else to_us(ts)


def _ts(us: int | None) -> datetime | None:
    return None if us is None else from_us(us)


class SQLiteCaseStore(CaseStore):
    """Cases in one SQLite file (WAL), shared safely by the threads of one process."""

    def __init__(self, path: Path):
        self.conn = open_sqlite(path, "foreign_keys=ON")
        self.conn.executescript(SCHEMA)
        self.lock = threading.RLock()
        self._migrate()

    def _migrate(self) -> None:
        """A cases.db from before case numbers were folded and cases had collaborators and a zone: add them (an old
        case's zone is UTC, the zone its report printed), and key every number. Two registered numbers that now fold
        to one (unlikely) keep working: the closed one wins lookups."""
        columns = {r[1] for r in self.conn.execute("PRAGMA table_info(cases)")}
        with self.lock, self.conn:
            if "ref_key" not in columns:
                self.conn.execute("ALTER TABLE cases ADD COLUMN ref_key TEXT")
            if "collaborators" not in columns:
                self.conn.execute("ALTER TABLE cases ADD COLUMN collaborators TEXT NOT NULL DEFAULT '[]'")
            if "zone" not in columns:
                self.conn.execute("ALTER TABLE cases ADD COLUMN zone TEXT NOT NULL DEFAULT 'UTC'")
            unkeyed = self.conn.execute("SELECT id, ref FROM cases WHERE ref_key IS NULL").fetchall()
            self.conn.executemany("UPDATE cases SET ref_key=? WHERE id=?", [(case_key(r), i) for i, r in unkeyed])
        try:
            self.conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS cases_ref_key ON cases(ref_key)")
        except sqlite3.IntegrityError:
            log.warning("cases.db holds case numbers that differ only in case or punctuation; each stays reachable")
            self.conn.execute("CREATE INDEX IF NOT EXISTS cases_ref_key_dup ON cases(ref_key)")

    def _rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self.lock:
            return self.conn.execute(sql, args).fetchall()

    def _write(self, sql: str, args: tuple = ()) -> int:
        with self.lock:
            return self.conn.execute(sql, args).rowcount

    @staticmethod
    def _case(r: tuple) -> Case:
        return Case(r[0], r[1], r[2], r[3], r[4], from_us(r[5]), CaseStatus(r[6]), _ts(r[7]), r[8], json.loads(r[9]),
                    r[10])

    def create(self, case: Case) -> None:
        with self.lock:
            if self.by_ref(case.ref) is not None:  # the unique index says so too, where a legacy pair allows it
                raise KeyError(case.ref)
            try:
                self._write(f"INSERT INTO cases ({_CASE_COLUMNS}, ref_key) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                            (case.id, case.ref, case.title, case.reason, case.owner, to_us(case.created),
                             case.status.value, _us(case.closed), case.closed_by, json.dumps(case.collaborators),
                             case.zone, case_key(case.ref)))
            except sqlite3.IntegrityError:
                raise KeyError(case.ref) from None

    def get(self, case_id: str) -> Case | None:
        rows = self._rows(f"SELECT {_CASE_COLUMNS} FROM cases WHERE id=?", (case_id,))
        return self._case(rows[0]) if rows else None

    def by_ref(self, ref: str) -> Case | None:
        rows = self._rows(f"SELECT {_CASE_COLUMNS} FROM cases WHERE ref_key=? ORDER BY status='closed' DESC, "
                          "created_us LIMIT 1", (case_key(ref),))
        return self._case(rows[0]) if rows else None

    def set_collaborators(self, case_id: str, names: list[str]) -> bool:
        return self._write("UPDATE cases SET collaborators=? WHERE id=?", (json.dumps(names), case_id)) > 0

    def cases(self, status: CaseStatus | None = None, limit: int = 200) -> list[Case]:
        where, args = ("WHERE status=?", (status.value,)) if status else ("", ())
        rows = self._rows(f"SELECT {_CASE_COLUMNS} FROM cases {where} ORDER BY created_us DESC, ref LIMIT ?",
                          (*args, limit))
        return [self._case(r) for r in rows]

    def close_case(self, case_id: str, by: str, at: datetime) -> bool:
        return self._write("UPDATE cases SET status=?, closed_us=?, closed_by=? WHERE id=? AND status=?",
                           (CaseStatus.CLOSED.value, to_us(at), by, case_id, CaseStatus.OPEN.value)) > 0

    def add_item(self, item: CaseItem) -> None:
        self._write(f"INSERT INTO case_items ({_ITEM_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (item.id, item.case_id, item.kind.value, item.added_by, to_us(item.added), item.note,
                     json.dumps(item.sighting_ids), item.plate, item.other_plate, _us(item.start), _us(item.end),
                     item.query))

    def remove_item(self, case_id: str, item_id: str) -> bool:
        return self._write("DELETE FROM case_items WHERE case_id=? AND id=?", (case_id, item_id)) > 0

    def items(self, case_id: str) -> list[CaseItem]:
        rows = self._rows(f"SELECT {_ITEM_COLUMNS} FROM case_items WHERE case_id=? ORDER BY seq", (case_id,))
        return [CaseItem(r[0], r[1], ItemKind(r[2]), r[3], from_us(r[4]), r[5], json.loads(r[6]), r[7], r[8],
                         _ts(r[9]), _ts(r[10]), r[11]) for r in rows]

    def add_note(self, note: CaseNote) -> None:
        self._write("INSERT INTO case_notes (id, case_id, author, ts_us, text) VALUES (?,?,?,?,?)",
                    (note.id, note.case_id, note.author, to_us(note.ts), note.text))

    def notes(self, case_id: str) -> list[CaseNote]:
        rows = self._rows("SELECT id, case_id, author, ts_us, text FROM case_notes WHERE case_id=? ORDER BY seq",
                          (case_id,))
        return [CaseNote(r[0], r[1], r[2], from_us(r[3]), r[4]) for r in rows]

    def close(self) -> None:
        with self.lock:
            self.conn.close()
