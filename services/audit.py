"""The audit trail: who did what, when, from where, under which case and why, and how much it found.

Every search, export, bulk view, watchlist/rule/webhook change, purge, login and user change is
appended by the adapters (the HTTP API from its route table, the CLI per command). The log is
hash-chained (indexer/audit_store.py), so `verify` finds an entry altered after the fact.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

from indexer.audit_store import GENESIS, AuditStore, entry_hash
from models.accounts import AuditEntry


@dataclass
class Verification:
    entries: int
    ok: bool
    first_broken: int | None = None  # the seq of the first entry whose hash or link does not hold
    problem: str | None = None


@dataclass
class AuditSummary:
    """Per user and per case: how many acts of each kind (who looked up this plate, and why)."""

    by_actor: dict[str, dict[str, int]] = field(default_factory=dict)
    by_case: dict[str, dict[str, int]] = field(default_factory=dict)
    reasons: dict[str, list[str]] = field(default_factory=dict)  # case -> the distinct reasons given


class AuditLog:
    def __init__(self, store: AuditStore):
        self.store = store

    def record(self, actor: str, role: str, action: str, source: str = "", case_ref: str | None = None,
               reason: str | None = None, params: dict[str, object] | None = None, result_count: int | None = None,
               status: int | None = None) -> AuditEntry:
        return self.store.append(AuditEntry(0, datetime.now(timezone.utc), actor, role, action, source, case_ref,
                                            reason, params or {}, result_count, status))

    def entries(self, actor: str | None = None, case_ref: str | None = None, action: str | None = None,
                start: datetime | None = None, end: datetime | None = None, limit: int = 1000, offset: int = 0,
                about: str | None = None) -> list[AuditEntry]:
        return self.store.entries(actor, case_ref, action, start, end, limit, offset, about)

    def verify(self) -> Verification:
        """Recompute the chain from the first entry; the first mismatch is named."""
        prev, count = GENESIS, 0
        for e in self.store.walk():
            count += 1
            if e.seq != count:
                return Verification(count, False, e.seq,
                                    f"entry {e.seq} follows entry {count - 1}: entries are missing")
            if e.prev_hash != prev:
                return Verification(count, False, e.seq, f"entry {e.seq} does not link to the entry before it")
            if entry_hash(e) != e.hash:
                return Verification(count, False, e.seq, f"entry {e.seq} was altered after it was written")
            prev = e.hash
        return Verification(count, True)

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
