"""Signing in (the web app's session) and the audit log over HTTP."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from geo.trajectories import parse_range
from models.accounts import AuditEntry
from services.accounts import SESSION_HOURS, Accounts
from services.api.security import CSRF_COOKIE, SESSION_COOKIE, Caller, SignInGuard, source_of
from services.audit import AuditLog, AuditSummary, Verification
from services.csvsafe import csv_text


class LoginIn(BaseModel):
    token: str = Field(min_length=1, max_length=200, description="the API token `sightline users add` printed")


class MeOut(BaseModel):
    name: str
    role: str
    csrf: str | None = Field(default=None, description="send it back as X-CSRF-Token on every change")


class AuditEntryOut(BaseModel):
    seq: int
    ts: str
    actor: str
    role: str
    action: str
    source: str
    case_ref: str | None
    reason: str | None
    params: dict[str, object]
    result_count: int | None
    status: int | None
    hash: str

    @classmethod
    def of(cls, e: AuditEntry) -> AuditEntryOut:
        return cls(seq=e.seq, ts=e.ts.isoformat(), actor=e.actor, role=e.role, action=e.action, source=e.source,
                   case_ref=e.case_ref, reason=e.reason, params=e.params, result_count=e.result_count,
                   status=e.status, hash=e.hash)


class AuditSummaryOut(BaseModel):
    by_actor: dict[str, dict[str, int]]
    by_case: dict[str, dict[str, int]]
    reasons: dict[str, list[str]]


class VerificationOut(BaseModel):
    entries: int
    ok: bool
    first_broken: int | None
    problem: str | None
    checkpoint: int | None = None  # the entry count the signed checkpoint vouches for
    unkeyed: int = 0  # entries from before the log was keyed


CSV_COLUMNS = ("seq", "ts", "actor", "role", "action", "source", "case_ref", "reason", "params", "result_count",
               "status", "hash")


def auth_router(accounts: Accounts, audit: AuditLog, secure_cookies: bool, guard: SignInGuard) -> APIRouter:
    router = APIRouter(tags=["accounts and audit"])

    @router.post("/auth/login")
    def login(body: LoginIn, request: Request, response: Response) -> MeOut:
        """Exchange a token for a web session: an HttpOnly, SameSite=Strict cookie, and a CSRF token. Failures
        count against the address (429 past the limit); the audit log records them (folded when repeated)."""
        source = source_of(request)
        guard.check(source)
        user = accounts.authenticate(body.token)
        if user is None:
            guard.failed(source)
            raise HTTPException(401, "that token is not valid (or its user is disabled)")
        session = accounts.open_session(user)
        age = SESSION_HOURS * 3600
        response.set_cookie(SESSION_COOKIE, session.id, max_age=age, httponly=True, samesite="strict",
                            secure=secure_cookies, path="/")
        response.set_cookie(CSRF_COOKIE, session.csrf, max_age=age, httponly=False, samesite="strict",
                            secure=secure_cookies, path="/")
        audit.record(user.name, user.role.label, "login", source, status=200)
        return MeOut(name=user.name, role=user.role.label, csrf=session.csrf)

    @router.post("/auth/logout", status_code=204)
    def logout(request: Request, response: Response) -> None:
        session = request.cookies.get(SESSION_COOKIE)
        if session:
            accounts.close_session(session)
        response.delete_cookie(SESSION_COOKIE, path="/")
        response.delete_cookie(CSRF_COOKIE, path="/")

    @router.get("/auth/me")
    def me(request: Request) -> MeOut:
        caller: Caller = request.state.caller
        return MeOut(name=caller.user.name, role=caller.user.role.label)

    def found(user: str | None, case: str | None, action: str | None, start: str | None, end: str | None,
              limit: int, offset: int, about: str | None = None) -> list[AuditEntry]:
        t0, t1 = parse_range(start, end)
        return audit.entries(user, case, action, t0, t1, limit, offset, about)

    @router.get("/audit")
    def list_audit(user: str | None = None, case: str | None = None, action: str | None = None,
                   start: str | None = None, end: str | None = None,
                   about: Annotated[str | None, Query(max_length=200)] = None,
                   limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
                   offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> list[AuditEntryOut]:
        """The audit log, newest first, filtered by user, case, action (e.g. `GET /search/plates`), time, and
        `about` (a plate or an id its parameters mention: who looked up this plate, and why)."""
        return [AuditEntryOut.of(e) for e in found(user, case, action, start, end, limit, offset, about)]

    @router.get("/audit/export", response_class=PlainTextResponse,
                responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}})
    def export_audit(user: str | None = None, case: str | None = None, action: str | None = None,
                     start: str | None = None, end: str | None = None,
                     about: Annotated[str | None, Query(max_length=200)] = None,
                     limit: Annotated[int, Query(ge=1, le=1_000_000)] = 100_000) -> PlainTextResponse:
        """The entries `GET /audit` lists with the same filters, as CSV (formulas neutralised)."""
        rows = (AuditEntryOut.of(e).model_dump() for e in found(user, case, action, start, end, limit, 0, about))
        text = csv_text(CSV_COLUMNS, ([row[c] if c != "params" else _json(row[c]) for c in CSV_COLUMNS]
                                      for row in rows))  # a reason like =HYPERLINK(...) is neutralised
        return PlainTextResponse(text, media_type="text/csv")

    @router.get("/audit/summary")
    def summary(user: str | None = None, case: str | None = None, action: str | None = None,
                start: str | None = None, end: str | None = None,
                about: Annotated[str | None, Query(max_length=200)] = None) -> AuditSummaryOut:
        """Who did what, per user and per case, with the reasons each case gave (who looked up this plate,
        and why: filter by action and read `by_case`)."""
        result: AuditSummary = audit.summary(found(user, case, action, start, end, 1_000_000, 0, about))
        return AuditSummaryOut(by_actor=result.by_actor, by_case=result.by_case, reasons=result.reasons)

    @router.get("/audit/verify")
    def verify() -> VerificationOut:
        """Check every entry's seal and link, and the log's length against its signed checkpoint; the first
        problem is named."""
        v: Verification = audit.verify()
        return VerificationOut(entries=v.entries, ok=v.ok, first_broken=v.first_broken, problem=v.problem,
                               checkpoint=v.checkpoint, unkeyed=v.unkeyed)

    return router


def _json(value: object) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, sort_keys=True)
