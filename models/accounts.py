"""Who may do what, and the record of what they did: users, roles and audit entries.

Roles are ordered: each can do what the ones below it can, and more.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum

from models.records import InputError


class Role(IntEnum):
    VIEWER = 1  # live alerts, the map, cameras
    INVESTIGATOR = 2  # + every search, trajectory, analytics query and export
    SUPERVISOR = 3  # + watchlists, rules, webhooks, streams, cameras, the audit log
    ADMIN = 4  # + users, retention and purge

    @classmethod
    def named(cls, name: str) -> Role:
        try:
            return cls[name.strip().upper()]
        except KeyError:
            raise InputError(f"role must be one of {[r.name.lower() for r in cls]}, not {name!r}") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass
class User:
    id: str
    name: str
    role: Role
    disabled: bool = False
    created_at: datetime | None = None


@dataclass
class AuditEntry:
    """One accountable act: who, when, from where, under which case and why, with what, and how much it found.

    `hash` chains the log: an HMAC over the previous entry's hash and this entry's fields, so an entry
    altered, removed or inserted afterwards breaks every hash from there on, and only the key's holder can
    compute a new one.
    """

    seq: int
    ts: datetime
    actor: str
    role: str
    action: str
    source: str = ""  # the client's address, or "cli"
    case_ref: str | None = None
    reason: str | None = None
    params: dict[str, object] = field(default_factory=dict)
    result_count: int | None = None
    status: int | None = None  # the HTTP status, or the CLI's exit code
    prev_hash: str = ""
    hash: str = ""
    key_id: str = ""  # the key that sealed it (indexer/audit_store.AuditKey); empty before the log was keyed
