"""Cases over HTTP: list, open, read and close a case; add and remove its findings; notes; the evidence package.

Reading a case's content and exporting it are audited under the case's own number (the route names the case,
so no X-Case header is asked for); so is every change. Who may read, change and close a case is the case
service's rule (services/cases.py). `case_guard` refuses any case-bound query whose X-Case names a registered
case that is closed or not the caller's (services/cases.py says why unregistered numbers are still accepted).
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from geo.trajectories import parse_range
from indexer.case_store import Case
from indexer.store import RecordStore
from services.accounts import Accounts
from services.api.schemas import (
    NOT_FOUND,
    CaseFileOut,
    CaseItemOut,
    CaseNoteOut,
    CaseOut,
    CasesOut,
    ErrorOut,
    SightingOut,
)
from services.api.security import Caller
from services.cases import (
    MAX_COLLABORATORS,
    MAX_NOTE,
    MAX_QUERY,
    MAX_REASON,
    MAX_SIGHTINGS_PER_ITEM,
    MAX_TITLE,
    CaseConflict,
    CaseForbidden,
    CaseService,
    NewItem,
)
from services.evidence import EvidencePackager, NoFont
from services.exports import ExportJob, ExportJobs

CONFLICT: dict[int | str, dict] = {409: {"model": ErrorOut, "description": "the case is closed, or the number taken"}}


class CaseIn(BaseModel):
    ref: str = Field(min_length=1, max_length=64, description="the case number, e.g. 2026/0412")
    title: str = Field(min_length=1, max_length=MAX_TITLE)
    reason: str = Field(min_length=1, max_length=MAX_REASON)
    zone: str | None = Field(default=None, max_length=64, description="IANA time zone its report prints times in, "
                             "e.g. Asia/Shanghai (the web app sends the browser's); default UTC")


class ItemIn(BaseModel):
    kind: Literal["sighting", "search", "trajectory", "clone", "cotravel"]
    note: str = Field(default="", max_length=2000)
    sighting_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default=[], max_length=MAX_SIGHTINGS_PER_ITEM, description="sighting: one; clone: the conflicting reads")
    plate: str | None = Field(default=None, max_length=32, description="trajectory, clone, co-travel")
    other_plate: str | None = Field(default=None, max_length=32, description="co-travel: the companion")
    start: str | None = Field(default=None, max_length=64, description="trajectory: ISO 8601 with a zone")
    end: str | None = Field(default=None, max_length=64)
    query: str | None = Field(default=None, max_length=MAX_QUERY, description="the search that found it")


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_NOTE)


class ExportOut(BaseModel):
    """A background export: its state, its progress in steps (the findings, gathered then drawn), and when done
    the package's file name, size and number of sightings."""

    id: str
    state: Literal["queued", "building", "done", "failed"]
    done: int
    total: int
    error: str | None
    filename: str | None
    bytes: int
    sightings: int

    @classmethod
    def of(cls, job: ExportJob) -> ExportOut:
        return cls(id=job.id, state=job.state, done=job.done, total=job.total, error=job.error,  # type: ignore[arg-type]
                   filename=job.filename, bytes=job.bytes, sightings=job.sightings)


class CollaboratorsIn(BaseModel):
    names: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(max_length=MAX_COLLABORATORS)


@contextmanager
def _answers() -> Iterator[None]:
    """The use-case's refusals as HTTP answers (InputError is the app's 400 already)."""
    try:
        yield
    except CaseConflict as exc:
        raise HTTPException(409, str(exc)) from None
    except CaseForbidden as exc:
        raise HTTPException(403, str(exc)) from None
    except LookupError as exc:
        raise HTTPException(404, str(exc.args[0] if exc.args else exc)) from None
    except NoFont as exc:
        raise HTTPException(503, str(exc)) from None


def _caller(request: Request) -> Caller:
    return request.state.caller


def _audit_under(request: Request, case: Case) -> None:
    """The audit entry of this request names the case it read or changed."""
    caller = _caller(request)
    caller.case_ref = case.ref
    caller.reason = caller.reason or f"case file: {case.reason}"[:500]


def case_guard(cases: CaseService) -> Callable[[Request], Awaitable[None]]:
    """An app dependency after `authorize`: a case-bound query for a registered, closed case is a 409."""
    async def guard(request: Request) -> None:
        caller = getattr(request.state, "caller", None)
        if isinstance(caller, Caller) and caller.access.case and caller.case_ref:
            with _answers():
                caller.case_ref = cases.check_query(caller.case_ref, caller.user)
    return guard


def cases_router(cases: CaseService, evidence: EvidencePackager, exports: ExportJobs, store: RecordStore,
                 accounts: Accounts) -> APIRouter:
    router = APIRouter(prefix="/cases", tags=["cases"])

    def opened(request: Request, case_id: str) -> Case:
        """The case the route names, audited under its number; its contents only for those who may read them."""
        with _answers():
            case = cases.get(case_id)
        _audit_under(request, case)
        with _answers():
            return cases.read(case_id, _caller(request).user)

    @router.get("")
    def list_cases(status: Annotated[str | None, Query(pattern="^(open|closed)$")] = None,
                   ref: Annotated[str | None, Query(max_length=64, description="only the case of this number")]
                   = None, limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> CasesOut:
        """Case headers, newest first (their content is read, audited, with GET /cases/{case_id})."""
        if ref is not None:
            found = cases.by_ref(ref)
            return CasesOut(cases=[CaseOut.of(found)] if found and status in (None, found.status.value) else [])
        return CasesOut(cases=[CaseOut.of(c) for c in cases.find(status, limit)])

    @router.post("", status_code=201, responses=CONFLICT)
    def create_case(body: CaseIn, request: Request) -> CaseOut:
        """Open a case; its number is what the queries made for it send as X-Case."""
        with _answers():
            case = cases.create(body.ref, body.title, body.reason, _caller(request).user.name, body.zone)
        _audit_under(request, case)
        return CaseOut.of(case)

    @router.get("/{case_id}", responses=NOT_FOUND)
    def read_case(case_id: str, request: Request) -> CaseFileOut:
        opened(request, case_id)
        with _answers():
            found = cases.file(case_id)
        named = list(dict.fromkeys(s for item in found.items for s in item.sighting_ids))
        sightings = store.get_sightings(named)
        return CaseFileOut(case=CaseOut.of(found.case), items=[CaseItemOut.of(i) for i in found.items],
                           sightings=[SightingOut.from_record(s) for s in sightings],
                           notes=[CaseNoteOut.of(n) for n in found.notes])

    @router.post("/{case_id}/close", responses={**NOT_FOUND, **CONFLICT})
    def close_case(case_id: str, request: Request) -> CaseOut:
        """Close the file: it then takes no more findings, notes or queries. Its owner or a supervisor may."""
        with _answers():
            _audit_under(request, cases.get(case_id))
            return CaseOut.of(cases.close(case_id, _caller(request).user))

    @router.put("/{case_id}/collaborators", responses={**NOT_FOUND, 403: {"model": ErrorOut}})
    def set_collaborators(case_id: str, body: CollaboratorsIn, request: Request) -> CaseOut:
        """Who may change the case beside its owner (the owner names them; every name must be a user)."""
        with _answers():
            _audit_under(request, cases.get(case_id))
            for name in body.names:
                accounts.get(name)  # an unknown name is a 400, not a silent grant to a future account
            return CaseOut.of(cases.set_collaborators(case_id, body.names, _caller(request).user))

    @router.post("/{case_id}/items", status_code=201, responses={**NOT_FOUND, **CONFLICT})
    def add_item(case_id: str, body: ItemIn, request: Request) -> CaseItemOut:
        """Add a finding: a sighting, a saved search (its query), a trajectory (plate and time range), a clone
        finding (plate and conflicting sightings) or co-travel (plate, companion), each with an optional note."""
        opened(request, case_id)
        start, end = parse_range(body.start, body.end)
        new = NewItem(body.kind, body.note, body.sighting_ids, body.plate, body.other_plate, start, end, body.query)
        with _answers():
            return CaseItemOut.of(cases.add_item(case_id, new, _caller(request).user))

    @router.delete("/{case_id}/items/{item_id}", status_code=204, responses={**NOT_FOUND, **CONFLICT})
    def remove_item(case_id: str, item_id: str, request: Request) -> None:
        opened(request, case_id)
        with _answers():
            cases.remove_item(case_id, item_id, _caller(request).user)

    @router.post("/{case_id}/notes", status_code=201, responses={**NOT_FOUND, **CONFLICT})
    def add_note(case_id: str, body: NoteIn, request: Request) -> CaseNoteOut:
        opened(request, case_id)
        with _answers():
            return CaseNoteOut.of(cases.add_note(case_id, body.text, _caller(request).user))

    zipped = {"application/zip": {"schema": {"type": "string", "format": "binary"}}}

    @router.get("/{case_id}/export", response_class=Response,
                responses={200: {"description": "the evidence package (ZIP)", "content": zipped}, **NOT_FOUND,
                           503: {"model": ErrorOut, "description": "no CJK font for the report"}})
    def export_case(case_id: str, request: Request,
                    lang: Annotated[Literal["en", "zh"], Query(description="the report's language")] = "en"
                    ) -> Response:
        """The evidence package: report.pdf (in English or Chinese, times in the case's zone), sightings.csv,
        sightings.geojson (UTC times), crops/, frames/ (the original frames still kept, their hashes checked), the
        audit log's signed checkpoint and the SHA-256 manifest (manifest.json, SHA256SUMS). Built while the request
        waits: for a large case start it in the background instead (`POST /cases/{case_id}/exports`)."""
        opened(request, case_id)
        with _answers():
            package = evidence.package(case_id, _caller(request).user.name, lang)
        return Response(package.data, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{package.filename}"',
                                 "X-Sightings": str(package.sightings)})

    @router.post("/{case_id}/exports", status_code=202, responses={**NOT_FOUND})
    def start_export(case_id: str, request: Request,
                     lang: Annotated[Literal["en", "zh"], Query(description="the report's language")] = "en"
                     ) -> ExportOut:
        """Build the evidence package in the background; poll `GET /cases/{case_id}/exports/{export_id}` for its
        progress, then download it from `.../file` (kept for a day)."""
        opened(request, case_id)
        with _answers():
            return ExportOut.of(exports.start(case_id, _caller(request).user.name, lang))

    @router.get("/{case_id}/exports/{export_id}", responses={**NOT_FOUND})
    def export_status(case_id: str, export_id: str, request: Request) -> ExportOut:
        opened(request, case_id)
        with _answers():
            return ExportOut.of(exports.get(case_id, export_id))

    @router.get("/{case_id}/exports/{export_id}/file", response_class=FileResponse,
                responses={200: {"description": "the evidence package (ZIP)", "content": zipped}, **NOT_FOUND})
    def export_file(case_id: str, export_id: str, request: Request) -> FileResponse:
        opened(request, case_id)
        with _answers():
            job, path = exports.file(case_id, export_id)
        return FileResponse(path, media_type="application/zip", filename=job.filename,
                            headers={"X-Sightings": str(job.sightings)})

    return router
