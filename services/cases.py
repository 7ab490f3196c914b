"""Cases: the investigator's file of findings, and the rule that ties every query to one.

How `X-Case` relates to cases: every case-bound query names a case reference (X-Case, or --case on the command
line), checked here once for both (`query_purpose`). Case numbers are compared folded (`case_key`: case,
width, spaces and punctuation aside), so a closed case cannot be searched under another spelling of its
number. A reference that is registered and closed is refused (`check_query` raises CaseConflict, a 409); one
registered to others is refused to an investigator who is not on it (CaseForbidden, a 403). A reference not
registered is still accepted, as before cases existed, so scripts that quote a case number kept elsewhere keep
working; the audit log records the registered spelling, or the one given.

Who may do what with a case: its owner and named collaborators read and change its contents; supervisors and
admins read every case and may close it, and change only the ones they are on; the owner names collaborators.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from indexer.case_store import Case, CaseItem, CaseNote, CaseStatus, CaseStore, ItemKind, case_key
from indexer.store import RecordStore
from models.accounts import Role, User
from models.plate_text import normalize_plate
from models.records import InputError

# A case number is what a query quotes (X-Case, percent-encoded as UTF-8 over HTTP, or --case): letters of any
# script, digits, spaces, and the punctuation case numbers use, e.g. 2026/0412 or 沪公(2026)0412号.
CASE_REF = re.compile(r"^[\w./:#()\[\]（）〔〕【】 -]{1,64}$")
CASE_REF_RULE = "1–64 letters, digits, spaces or . / : # _ - ( ) [ ], with a letter or digit"
MAX_TITLE, MAX_REASON, MAX_NOTE, MAX_QUERY = 200, 500, 2000, 2000
MAX_SIGHTINGS_PER_ITEM, MAX_ITEMS, MAX_NOTES, MAX_COLLABORATORS = 100, 2000, 2000, 50
ZONE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$")  # IANA names: Asia/Shanghai, Etc/GMT-8


class CaseConflict(Exception):
    """The request contradicts the case's state: a closed case, a case number taken already (HTTP 409)."""


class CaseForbidden(PermissionError):
    """The caller is not on this case for what they asked (HTTP 403)."""


def query_purpose(case_ref: str | None, reason: str | None, names: tuple[str, str] = ("X-Case", "X-Reason")
                  ) -> tuple[str, str]:
    """The (case, reason) a query must carry, checked the same way for every adapter; `names` are what the
    adapter calls them in its messages (the headers, or --case and --reason)."""
    ref, why = (case_ref or "").strip(), (reason or "").strip()
    if not ref or not why:
        raise InputError(f"this query must say which case it serves and why: give {names[0]} (a case number) "
                         f"and {names[1]} (the reason)")
    if not CASE_REF.match(ref) or not case_key(ref):
        raise InputError(f"{names[0]} is {CASE_REF_RULE}")
    if len(why) > MAX_REASON or any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in why):
        raise InputError(f"{names[1]} is at most {MAX_REASON} characters of plain text (no control characters)")
    return ref, why


def may_read(case: Case, user: User) -> bool:
    return user.name == case.owner or user.name in case.collaborators or user.role >= Role.SUPERVISOR


def may_edit(case: Case, user: User) -> bool:
    return user.name == case.owner or user.name in case.collaborators


def _refuse(case: Case, what: str) -> CaseForbidden:
    return CaseForbidden(f"case {case.ref} is {case.owner}'s: only its owner and collaborators may {what} "
                         "(ask the owner to add you)")


@dataclass
class CaseFile:
    """A case with everything collected in it: what the case page shows and the evidence package holds."""

    case: Case
    items: list[CaseItem]
    notes: list[CaseNote]


@dataclass
class NewItem:
    """What a caller asks to add; checked against its kind by `CaseService.add_item`."""

    kind: str
    note: str = ""
    sighting_ids: list[str] | None = None
    plate: str | None = None
    other_plate: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    query: str | None = None


def _text(value: str | None, what: str, limit: int, required: bool = True) -> str:
    text = (value or "").strip()
    if required and not text:
        raise InputError(f"{what} is empty")
    if len(text) > limit:
        raise InputError(f"{what} is longer than {limit} characters")
    if any(ord(c) < 32 and c not in "\n\t" for c in text):
        raise InputError(f"{what} holds control characters")
    return text


def check_zone(zone: str | None) -> str:
    """A case's time zone: an IANA name this host's zone database knows (e.g. Asia/Shanghai); none is UTC. Checked
    here, when the case is opened, so its report never guesses."""
    name = (zone or "").strip() or "UTC"
    try:
        if len(name) <= 64 and ZONE_NAME.match(name) and name not in ("localtime", "posixrules"):  # host files
            ZoneInfo(name)
            return name
    except (ZoneInfoNotFoundError, ValueError):
        pass
    raise InputError(f"unknown time zone {name[:64]!r}: give an IANA name such as Asia/Shanghai or UTC")


def _plate(value: str | None, what: str) -> str:
    plate = normalize_plate(_text(value, what, 32))
    if not plate:
        raise InputError(f"{what} is empty")
    return plate


class CaseService:
    """Create, fill, annotate and close cases; refuse queries made for a closed one."""

    def __init__(self, store: CaseStore, records: RecordStore,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.store, self.records, self.clock = store, records, clock

    def create(self, ref: str, title: str, reason: str, owner: str, zone: str | None = None) -> Case:
        """Open a case; `zone` (IANA, default UTC) is where its investigators are: the report prints times there."""
        ref = (ref or "").strip()
        if not CASE_REF.match(ref) or not case_key(ref):
            raise InputError(f"a case number is {CASE_REF_RULE}")
        case = Case(uuid.uuid4().hex[:16], ref, _text(title, "the title", MAX_TITLE),
                    _text(reason, "the reason", MAX_REASON), owner, self.clock(), zone=check_zone(zone))
        try:
            self.store.create(case)
        except KeyError:
            raise CaseConflict(f"case {ref} exists already") from None
        return case

    def find(self, status: str | None = None, limit: int = 200) -> list[Case]:
        if status is not None and status not in tuple(CaseStatus):
            raise InputError(f"status is one of {[s.value for s in CaseStatus]}")
        return self.store.cases(CaseStatus(status) if status else None, limit)

    def by_ref(self, ref: str) -> Case | None:
        """The registered case of a case number, however it is spelt."""
        return self.store.by_ref(ref.strip())

    def get(self, case_id: str) -> Case:
        case = self.store.get(case_id)
        if case is None:
            raise LookupError(f"no case {case_id}")
        return case

    def read(self, case_id: str, user: User) -> Case:
        """The case, for a caller allowed to read its contents."""
        case = self.get(case_id)
        if not may_read(case, user):
            raise _refuse(case, "read it")
        return case

    def file(self, case_id: str) -> CaseFile:
        case = self.get(case_id)
        return CaseFile(case, self.store.items(case_id), self.store.notes(case_id))

    def _open(self, case_id: str, user: User) -> Case:
        """The case, open, for a caller allowed to change it."""
        case = self.get(case_id)
        if not may_edit(case, user):
            raise _refuse(case, "change it")
        if case.status is not CaseStatus.OPEN:
            raise CaseConflict(f"case {case.ref} is closed: its file takes no more changes")
        return case

    def close(self, case_id: str, by: User) -> Case:
        case = self.get(case_id)
        if by.name != case.owner and by.role < Role.SUPERVISOR:
            raise CaseForbidden(f"only the case's owner ({case.owner}) or a supervisor may close it")
        if case.status is not CaseStatus.OPEN:
            raise CaseConflict(f"case {case.ref} is closed already")
        self.store.close_case(case_id, by.name, self.clock())
        return self.get(case.id)

    def set_collaborators(self, case_id: str, names: list[str], by: User) -> Case:
        """The owner names who else may change the case (the names are checked against the accounts by the
        caller); the owner is implied, so it is not listed."""
        case = self.get(case_id)
        if by.name != case.owner:
            raise CaseForbidden(f"only the case's owner ({case.owner}) names its collaborators")
        kept = [n for n in dict.fromkeys(n.strip() for n in names) if n and n != case.owner]
        if len(kept) > MAX_COLLABORATORS:
            raise InputError(f"a case has at most {MAX_COLLABORATORS} collaborators")
        self.store.set_collaborators(case_id, kept)
        return self.get(case_id)

    def check_query(self, ref: str, user: User) -> str:
        """A query made for a registered case needs the case open and the caller allowed to read it (a reference
        not registered is accepted); returns the number as registered, for the audit log."""
        case = self.store.by_ref(ref)
        if case is None:
            return ref
        if case.status is not CaseStatus.OPEN:
            raise CaseConflict(f"case {case.ref} is closed: open a new case (or ask for this one to be reopened) "
                               "before searching for it")
        if not may_read(case, user):
            raise _refuse(case, "search under its number")
        return case.ref

    def add_item(self, case_id: str, new: NewItem, by: User) -> CaseItem:
        self._open(case_id, by)
        if len(self.store.items(case_id)) >= MAX_ITEMS:
            raise InputError(f"a case holds at most {MAX_ITEMS} items")
        kinds = [k.value for k in ItemKind]
        if new.kind not in kinds:
            raise InputError(f"kind is one of {kinds}")
        kind = ItemKind(new.kind)
        ids = list(dict.fromkeys(new.sighting_ids or []))
        if len(ids) > MAX_SIGHTINGS_PER_ITEM:
            raise InputError(f"an item names at most {MAX_SIGHTINGS_PER_ITEM} sightings")
        item = CaseItem(uuid.uuid4().hex[:16], case_id, kind, by.name, self.clock(),
                        _text(new.note, "the note", MAX_NOTE, required=False),
                        query=_text(new.query, "the query", MAX_QUERY, required=kind is ItemKind.SEARCH) or None)
        if kind is ItemKind.SIGHTING and len(ids) != 1:
            raise InputError("a sighting item names exactly one sighting (sighting_ids)")
        if kind is ItemKind.CLONE and not ids:
            raise InputError("a clone finding names the conflicting sightings (sighting_ids)")
        if kind in (ItemKind.TRAJECTORY, ItemKind.CLONE, ItemKind.COTRAVEL):
            item.plate = _plate(new.plate, "the plate")
        if kind is ItemKind.COTRAVEL:
            item.other_plate = _plate(new.other_plate, "the companion's plate (other_plate)")
        if kind is ItemKind.TRAJECTORY:
            if new.start and new.end and new.end < new.start:
                raise InputError("the time range ends before it starts")
            item.start, item.end = new.start, new.end
        if ids:
            found = {s.id for s in self.records.get_sightings(ids)}
            missing = [i for i in ids if i not in found]
            if missing:
                raise InputError(f"no sighting {', '.join(missing[:5])}")
            item.sighting_ids = ids
        self.store.add_item(item)
        return item

    def remove_item(self, case_id: str, item_id: str, by: User) -> None:
        self._open(case_id, by)
        if not self.store.remove_item(case_id, item_id):
            raise LookupError(f"no item {item_id} in this case")

    def add_note(self, case_id: str, text: str, by: User) -> CaseNote:
        self._open(case_id, by)
        if len(self.store.notes(case_id)) >= MAX_NOTES:
            raise InputError(f"a case holds at most {MAX_NOTES} notes")
        note = CaseNote(uuid.uuid4().hex[:16], case_id, by.name, self.clock(), _text(text, "the note", MAX_NOTE))
        self.store.add_note(note)
        return note
