"""Cases: the investigator's file of findings, and the rule that ties every query to one.

How `X-Case` relates to cases: every case-bound query names a case reference (X-Case). A reference that is
registered here and closed is refused (`check_query` raises CaseConflict, a 409): a closed file takes no more
searching. A reference not registered is still accepted, as before cases existed, so command-line users and
scripts that quote a case number kept elsewhere keep working; the audit log records the reference either way.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from indexer.case_store import Case, CaseItem, CaseNote, CaseStatus, CaseStore, ItemKind
from indexer.store import RecordStore
from models.plate_text import normalize_plate
from models.records import InputError

# The X-Case header's own pattern (services/api/security.py): a case number is what a query quotes.
CASE_REF = re.compile(r"^[\w./:# -]{1,64}$")
MAX_TITLE, MAX_REASON, MAX_NOTE, MAX_QUERY = 200, 500, 2000, 2000
MAX_SIGHTINGS_PER_ITEM, MAX_ITEMS, MAX_NOTES = 100, 2000, 2000


class CaseConflict(Exception):
    """The request contradicts the case's state: a closed case, a case number taken already (HTTP 409)."""


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

    def create(self, ref: str, title: str, reason: str, owner: str) -> Case:
        ref = (ref or "").strip()
        if not CASE_REF.match(ref):
            raise InputError("a case number is 1–64 letters, digits, spaces or . / : # _ -")
        if not ref.isascii() and any(ord(c) > 255 for c in ref):
            raise InputError("a case number travels in the X-Case header, which carries Latin letters only: "
                             "write it without Chinese characters (the title may have them)")
        case = Case(uuid.uuid4().hex[:16], ref, _text(title, "the title", MAX_TITLE),
                    _text(reason, "the reason", MAX_REASON), owner, self.clock())
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
        """The registered case of a case number, if any."""
        return self.store.by_ref(ref.strip())

    def get(self, case_id: str) -> Case:
        case = self.store.get(case_id)
        if case is None:
            raise LookupError(f"no case {case_id}")
        return case

    def file(self, case_id: str) -> CaseFile:
        case = self.get(case_id)
        return CaseFile(case, self.store.items(case_id), self.store.notes(case_id))

    def _open(self, case_id: str) -> Case:
        case = self.get(case_id)
        if case.status is not CaseStatus.OPEN:
            raise CaseConflict(f"case {case.ref} is closed: its file takes no more changes")
        return case

    def close(self, case_id: str, by: str) -> Case:
        case = self._open(case_id)
        self.store.close_case(case_id, by, self.clock())
        return self.get(case.id)

    def check_query(self, ref: str) -> None:
        """A query made for a registered case needs the case open (a reference not registered is accepted)."""
        case = self.store.by_ref(ref)
        if case is not None and case.status is not CaseStatus.OPEN:
            raise CaseConflict(f"case {ref} is closed: open a new case (or ask for this one to be reopened) "
                               "before searching for it")

    def add_item(self, case_id: str, new: NewItem, by: str) -> CaseItem:
        self._open(case_id)
        if len(self.store.items(case_id)) >= MAX_ITEMS:
            raise InputError(f"a case holds at most {MAX_ITEMS} items")
        kinds = [k.value for k in ItemKind]
        if new.kind not in kinds:
            raise InputError(f"kind is one of {kinds}")
        kind = ItemKind(new.kind)
        ids = list(dict.fromkeys(new.sighting_ids or []))
        if len(ids) > MAX_SIGHTINGS_PER_ITEM:
            raise InputError(f"an item names at most {MAX_SIGHTINGS_PER_ITEM} sightings")
        item = CaseItem(uuid.uuid4().hex[:16], case_id, kind, by, self.clock(), _text(new.note, "the note", MAX_NOTE,
                                                                                       required=False),
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

    def remove_item(self, case_id: str, item_id: str) -> None:
        self._open(case_id)
        if not self.store.remove_item(case_id, item_id):
            raise LookupError(f"no item {item_id} in this case")

    def add_note(self, case_id: str, text: str, author: str) -> CaseNote:
        self._open(case_id)
        if len(self.store.notes(case_id)) >= MAX_NOTES:
            raise InputError(f"a case holds at most {MAX_NOTES} notes")
        note = CaseNote(uuid.uuid4().hex[:16], case_id, author, self.clock(), _text(text, "the note", MAX_NOTE))
        self.store.add_note(note)
        return note
