"""The audit trail: who did what, when, from where, under which case and why, and how much it found.

Every search, export, bulk view, watchlist/rule/webhook change, purge, login and user change is
appended by the adapters (the HTTP API from its route table, the CLI per command). Entries are chained
and sealed under a key kept outside the data folder (indexer/audit_store.py), so `verify` finds an entry
altered, forged or re-chained after the fact; after every append a checkpoint of the log's head, signed
under the same key, is written to a second place (`Checkpoints`) and goes into every evidence package, so a
log cut short, emptied or deleted fails verification too.
"""
from __future__ import annotations

import fcntl
import hmac
import json
import os
import zipfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from indexer.audit_store import GENESIS, AuditKey, AuditStore, entry_hash
from models.accounts import AuditEntry
from models.records import InputError

CHECKPOINT_FILE = "audit-checkpoint.json"  # its name in an evidence package


@dataclass
class Verification:
    entries: int
    ok: bool
    first_broken: int | None = None  # the seq of the first entry whose hash or link does not hold
    problem: str | None = None
    checkpoint: int | None = None  # the entry count the newest signed checkpoint vouches for
    unkeyed: int = 0  # entries from before the log was keyed (chained by plain SHA-256 only)


@dataclass(frozen=True)
class Checkpoint:
    """The log's head at one moment, signed: the log must still hold entry `seq` with this hash."""

    seq: int
    hash: str
    ts: str  # ISO time it was written
    key_id: str
    unkeyed: int  # entries 1..unkeyed predate keying (0 for a log keyed from its first entry)
    mac: str = ""

    def body(self) -> str:
        return f"sightline audit checkpoint\0{self.seq}\0{self.hash}\0{self.ts}\0{self.key_id}\0{self.unkeyed}"

    def signed(self, key: AuditKey) -> Checkpoint:
        return Checkpoint(self.seq, self.hash, self.ts, self.key_id, self.unkeyed, key.mac(self.body()))

    def problem(self, key: AuditKey) -> str | None:
        if self.key_id != key.key_id:
            return f"the checkpoint of {self.ts} was signed by key {self.key_id}, not this log's key {key.key_id}"
        if not _same(self.mac, key.mac(self.body())):
            return f"the checkpoint of {self.ts} does not carry this key's signature: it was forged or altered"
        return None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_file(cls, path: Path) -> Checkpoint:
        """A checkpoint saved on its own, or the one inside an evidence package (ZIP)."""
        try:
            if zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as archive:
                    return cls.from_json(archive.read(CHECKPOINT_FILE).decode(), f"{path}:{CHECKPOINT_FILE}")
            return cls.from_json(path.read_text(), str(path))
        except KeyError:
            raise InputError(f"{path} holds no {CHECKPOINT_FILE} (an evidence package from before keying?)") from None
        except (OSError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read the checkpoint {path}: {exc}") from None

    @classmethod
    def from_json(cls, text: str, where: str) -> Checkpoint:
        try:
            data = json.loads(text)
            return cls(int(data["seq"]), str(data["hash"]), str(data["ts"]), str(data["key_id"]),
                       int(data["unkeyed"]), str(data["mac"]))
        except (ValueError, KeyError, TypeError):
            raise InputError(f"{where} is not an audit checkpoint") from None


class Checkpoints:
    """The signed head of the log, kept in one file outside the data folder and rewritten after every append
    (only forward: a process that appended earlier never moves it back). Processes sharing the log take turns
    on a lock file beside it."""

    def __init__(self, path: Path, key: AuditKey):
        self.path, self.key = path, key
        self.lock_path = path.with_name(path.name + ".lock")
        try:  # a place the checkpoint cannot be written is a configuration error at start, not a 500 per request
            with open(self.lock_path, "a"):
                pass
        except OSError as exc:
            raise InputError(f"cannot write the audit checkpoint beside {path}: {exc.strerror}") from None

    def read(self) -> Checkpoint | None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise InputError(f"cannot read the audit checkpoint {self.path}: {exc.strerror}") from None
        return Checkpoint.from_json(text, str(self.path))

    def advance(self, seq: int, hash_: str, unkeyed: int | None = None) -> None:
        """Vouch for entry `seq` (just appended) unless a later one is already vouched for."""
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.read()
            if current is not None and current.seq >= seq:
                return
            kept_unkeyed = current.unkeyed if current is not None else (unkeyed or 0)
            point = Checkpoint(seq, hash_, datetime.now(timezone.utc).isoformat(), self.key.key_id,
                               kept_unkeyed).signed(self.key)
            tmp = self.path.with_name(self.path.name + ".tmp")
            with open(tmp, "w") as f:
                f.write(point.to_json())
                f.flush()
                os.fsync(f.fileno())  # a torn checkpoint would read as tampering after a power cut
            os.replace(tmp, self.path)


@dataclass
class AuditSummary:
    """Per user and per case: how many acts of each kind (who looked up this plate, and why)."""

    by_actor: dict[str, dict[str, int]] = field(default_factory=dict)
    by_case: dict[str, dict[str, int]] = field(default_factory=dict)
    reasons: dict[str, list[str]] = field(default_factory=dict)  # case -> the distinct reasons given


class AuditLog:
    def __init__(self, store: AuditStore, key: AuditKey, checkpoints: Checkpoints):
        self.store, self.key, self.checkpoints = store, key, checkpoints
        if checkpoints.read() is None:
            self._adopt()

    def _adopt(self) -> None:
        """A log without a checkpoint: a new one, or one from before keying, whose entries are vouched for as they
        stand. One whose last entry is sealed had a checkpoint: that it is gone is for `verify` to report."""
        last = self.store.entries(limit=1)
        if last and not last[0].key_id:
            self.checkpoints.advance(last[0].seq, last[0].hash, unkeyed=last[0].seq)

    def record(self, actor: str, role: str, action: str, source: str = "", case_ref: str | None = None,
               reason: str | None = None, params: dict[str, object] | None = None, result_count: int | None = None,
               status: int | None = None) -> AuditEntry:
        entry = self.store.append(AuditEntry(0, datetime.now(timezone.utc), actor, role, action, source, case_ref,
                                             reason, params or {}, result_count, status), self.key)
        self.checkpoints.advance(entry.seq, entry.hash)
        return entry

    def checkpoint(self) -> Checkpoint | None:
        """The newest signed checkpoint (it goes into evidence packages, to be checked against the log later)."""
        return self.checkpoints.read()

    def entries(self, actor: str | None = None, case_ref: str | None = None, action: str | None = None,
                start: datetime | None = None, end: datetime | None = None, limit: int = 1000, offset: int = 0,
                about: str | None = None) -> list[AuditEntry]:
        return self.store.entries(actor, case_ref, action, start, end, limit, offset, about)

    def verify(self, checkpoints: Iterable[Checkpoint] = ()) -> Verification:
        """Recompute the chain from the first entry under the key, then hold the log against the signed
        checkpoints (this log's own, and any given, e.g. from evidence packages); the first problem is named."""
        own = self.checkpoints.read()
        points = [*([own] if own is not None else []), *checkpoints]
        unkeyed = own.unkeyed if own is not None else 0
        for point in points:
            if (bad := point.problem(self.key)) is not None:
                return Verification(0, False, None, bad, point.seq, unkeyed)
        wanted = {p.seq: p for p in points}
        prev, count, top = GENESIS, 0, max((p.seq for p in points), default=0)
        for e in self.store.walk():
            count += 1
            if (problem := _entry_problem(e, count, prev, unkeyed, self.key)) is not None:
                return Verification(count, False, e.seq, problem, top, unkeyed)
            if e.seq in wanted and wanted[e.seq].hash != e.hash:
                return Verification(count, False, e.seq, f"entry {e.seq} is not the entry the checkpoint of "
                                    f"{wanted[e.seq].ts} signed: the log was rewritten from there", top, unkeyed)
            prev = e.hash
        if count < top:
            point = max(points, key=lambda p: p.seq)
            what = ("the log is empty: it was deleted or emptied" if count == 0 else
                    f"{top - count} entries were cut from its end")
            return Verification(count, False, count + 1, f"the checkpoint of {point.ts} vouches for {top} entries "
                                f"and the log holds {count}: {what}", top, unkeyed)
        if own is None and count:
            return Verification(count, False, None, f"the checkpoint {self.checkpoints.path} is missing: the log's "
                                "end cannot be vouched for (it was deleted, or the log was moved here)", top, unkeyed)
        return Verification(count, True, checkpoint=top or None, unkeyed=unkeyed)

    def summary(self, entries: list[AuditEntry]) -> AuditSummary:
        out = AuditSummary()
        by_actor: dict[str, Counter[str]] = {}
        by_case: dict[str, Counter[str]] = {}
        reasons: dict[str, set[str]] = {}
        for e in entries:
            by_actor.setdefault(e.actor, Counter())[e.action] += 1
            if e.case_ref:
                by_case.setdefault(e.case_ref, Counter())[e.action] += 1
                if e.reason:
                    reasons.setdefault(e.case_ref, set()).add(e.reason)
        out.by_actor = {k: dict(v) for k, v in by_actor.items()}
        out.by_case = {k: dict(v) for k, v in by_case.items()}
        out.reasons = {k: sorted(v) for k, v in reasons.items()}
        return out


def _entry_problem(e: AuditEntry, position: int, prev: str, unkeyed: int, key: AuditKey) -> str | None:
    """What is wrong with the entry at this place in the chain, if anything."""
    if e.seq != position:
        return f"entry {e.seq} follows entry {position - 1}: entries are missing"
    if e.prev_hash != prev:
        return f"entry {e.seq} does not link to the entry before it"
    plain = entry_hash(e, None) == e.hash
    if e.seq <= unkeyed:
        return None if plain else f"entry {e.seq} was altered after it was written"
    if plain:
        return (f"entry {e.seq} carries a plain SHA-256 where the key's seal belongs: it was forged, or the log "
                "re-chained from there, by someone without the key")
    if e.key_id != key.key_id:
        return f"entry {e.seq} was sealed by key {e.key_id or '(none)'}, not this log's key {key.key_id}"
    if not _same(entry_hash(e, key), e.hash):
        return f"entry {e.seq} does not carry the key's seal: it was altered or forged after it was written"
    return None


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
