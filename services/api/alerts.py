"""Watchlists, rules, alerts (with a live Server-Sent Events stream) and webhooks over HTTP."""
from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import time
from typing import Annotated, AsyncIterator

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field

from indexer.alert_store import AlertStore, new_secret
from models.accounts import User
from models.records import InputError, parse_time
from models.spaces import FACE_MATCH_RULE
from models.watchlists import Rule
from services.api.schemas import (
    NOT_FOUND,
    AlertOut,
    ErrorOut,
    ImportOut,
    RequeuedOut,
    RuleOut,
    WatchEntryOut,
    WatchlistOut,
    WebhookOut,
    WebhooksOut,
)
from services.delivery import AlertDelivery
from services.outbound import WEBHOOK_SCHEMES
from services.watchlists import EntrySpec, WatchlistService, entries_from_csv, entries_to_csv

RECHECK_S, KEEPALIVE_S = 5.0, 15.0  # how often a quiet stream re-checks its caller, and sends a comment
SSE_EVENTS = ("`: connected` and a `: keep-alive` comment every 15 s; per new alert an `alert` event whose `id` is "
              "the alert's id and whose `data` is the alert as JSON (AlertOut); `signed-out`, and the end of the "
              "stream, once the caller is disabled or their token or session no longer holds")


class WatchlistIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    kind: str = Field(description="plate | face | attribute")
    description: str = ""
    created_by: str = ""


class EntryIn(BaseModel):
    value: str = Field(default="", description="plate: exact text, wildcard (京A?23*) or fuzzy base text")
    match: str = Field(default="exact", description="exact | wildcard | fuzzy")
    tolerance: int = Field(default=1, description="fuzzy: edit distance allowed (1 or 2)")
    conditions: dict[str, object] = Field(default_factory=dict,
                                          description="attribute lists: e.g. {kind: vehicle, vehicle_color: red}")
    reason: str = Field(description="why this is watched (required)")
    created_by: str = Field(description="who added it (required)")


class RuleIn(BaseModel):
    name: str = Field(min_length=1)
    kind: str = Field(default="watchlist", description="watchlist | not_on_whitelist | cloned_plate | co_traveller")
    watchlist_id: str | None = None
    target_plate: str | None = Field(default=None, description="co_traveller: the target whose companions alert")
    camera_ids: list[str] = []
    area_wkt: str | None = Field(default=None, description="POLYGON((lon lat, ...)) — only cameras inside count")
    time_from: time | None = Field(default=None, description="local time-of-day window start (with tz)")
    time_to: time | None = None
    tz: str = "UTC"
    min_confidence: float = Field(default=0.0, description="plate score, face quality or detection score")
    severity: str = "medium"
    cooldown_s: int = Field(default=300, ge=0, description="one alert per rule, target and camera in this window")
    active: bool = True


class WebhookIn(BaseModel):
    url: str = Field(max_length=2048, description=(
        "http:// or https:// without credentials; loopback, private, link-local and metadata addresses only where "
        "the operator allows them (SIGHTLINE_OUTBOUND_ALLOW)"))


def alerts_router(watchlists: WatchlistService, store: AlertStore, delivery: AlertDelivery,
                  signed_in: Callable[[Request], User | None]) -> APIRouter:
    """`signed_in` re-reads who a request's credential belongs to now: a live stream asks it again and again."""
    router = APIRouter()

    def watchlist_or_404(watchlist_id: str) -> None:
        try:
            watchlists.get(watchlist_id)
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from exc

    @router.post("/watchlists", status_code=201, tags=["watchlists"])
    def create_watchlist(body: WatchlistIn) -> WatchlistOut:
        return WatchlistOut.from_record(watchlists.create(body.name, body.kind, body.description, body.created_by))

    @router.get("/watchlists", tags=["watchlists"])
    def list_watchlists() -> list[WatchlistOut]:
        return [WatchlistOut.from_record(w) for w in watchlists.all()]

    @router.delete("/watchlists/{watchlist_id}", status_code=204, tags=["watchlists"], responses=NOT_FOUND)
    def delete_watchlist(watchlist_id: str) -> None:
        if not watchlists.delete(watchlist_id):
            raise HTTPException(404, f"no watchlist {watchlist_id}")

    @router.post("/watchlists/{watchlist_id}/entries", status_code=201, tags=["watchlists"], responses=NOT_FOUND)
    def add_entries(watchlist_id: str, body: EntryIn | list[EntryIn]) -> list[WatchEntryOut]:
        watchlist_or_404(watchlist_id)
        items = body if isinstance(body, list) else [body]
        added = watchlists.add_entries(watchlist_id, [EntrySpec(**i.model_dump()) for i in items])
        return [WatchEntryOut.from_record(e) for e in added]

    @router.get("/watchlists/{watchlist_id}/entries", tags=["watchlists"], responses=NOT_FOUND)
    def list_entries(watchlist_id: str) -> list[WatchEntryOut]:
        watchlist_or_404(watchlist_id)
        return [WatchEntryOut.from_record(e) for e in watchlists.entries(watchlist_id)]

    @router.delete("/watchlists/{watchlist_id}/entries/{entry_id}", status_code=204, tags=["watchlists"],
                   responses=NOT_FOUND)
    def delete_entry(watchlist_id: str, entry_id: str) -> None:
        if not watchlists.delete_entry(entry_id):
            raise HTTPException(404, f"no entry {entry_id}")

    @router.post("/watchlists/{watchlist_id}/faces", status_code=201, tags=["watchlists"], responses=NOT_FOUND,
                 description=(
        "Enrol a person from one or more photos (each must show a face; the largest is taken). A later face "
        f"sighting alerts at {FACE_MATCH_RULE}"))
    def enrol_face(watchlist_id: str, files: Annotated[list[UploadFile], File()], reason: Annotated[str, Form()],
                   created_by: Annotated[str, Form()], label: Annotated[str, Form()] = "") -> WatchEntryOut:
        watchlist_or_404(watchlist_id)
        photos = [f.file.read() for f in files]
        return WatchEntryOut.from_record(watchlists.enrol_face(watchlist_id, photos, label, reason, created_by))

    @router.get("/watchlists/{watchlist_id}/export", response_class=PlainTextResponse, tags=["watchlists"],
                responses={200: {"description": "the entries as CSV: value,match,tolerance,reason,created_by"},
                           404: {"description": "no such watchlist",  # JSON, unlike the text/plain success
                                 "content": {"application/json": {"schema": ErrorOut.model_json_schema()}}}})
    def export_csv(watchlist_id: str) -> str:
        watchlist_or_404(watchlist_id)
        return entries_to_csv(watchlists.entries(watchlist_id))

    @router.post("/watchlists/{watchlist_id}/import", status_code=201, tags=["watchlists"], responses=NOT_FOUND)
    def import_csv(watchlist_id: str, file: Annotated[UploadFile, File()]) -> ImportOut:
        watchlist_or_404(watchlist_id)
        try:
            text = file.file.read().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputError("the CSV is not UTF-8 text") from exc
        return ImportOut(imported=len(watchlists.add_entries(watchlist_id, entries_from_csv(text))))

    @router.post("/rules", status_code=201, tags=["rules"])
    def put_rule(body: RuleIn) -> RuleOut:
        rule = watchlists.put_rule(Rule(id=uuid.uuid4().hex[:12], **body.model_dump()))
        return RuleOut.from_record(rule).model_copy(update={"time_from": body.time_from, "time_to": body.time_to})

    @router.get("/rules", tags=["rules"])
    def list_rules() -> list[RuleOut]:
        return [RuleOut.from_record(r) for r in watchlists.rules()]

    @router.delete("/rules/{rule_id}", status_code=204, tags=["rules"], responses=NOT_FOUND)
    def delete_rule(rule_id: str) -> None:
        if not watchlists.delete_rule(rule_id):
            raise HTTPException(404, f"no rule {rule_id}")

    @router.get("/alerts", tags=["alerts"])
    def list_alerts(rule_id: str | None = None, acked: bool | None = None, since: str | None = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                    offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> list[AlertOut]:
        found = store.alerts(rule_id, acked, parse_time(since) if since else None, limit, offset)
        return [AlertOut.from_record(a) for a in found]

    @router.post("/alerts/{alert_id}/ack", tags=["alerts"], responses={
        **NOT_FOUND, 409: {"model": ErrorOut, "description": "acknowledged already"}})
    def ack(alert_id: str, request: Request) -> AlertOut:
        """Acknowledged by whoever is signed in (a name in the body cannot stand in for them)."""
        if store.get_alert(alert_id) is None:
            raise HTTPException(404, f"no alert {alert_id}")
        if not store.ack(alert_id, request.state.caller.user.name):
            raise HTTPException(409, f"alert {alert_id} is acknowledged already")
        acked = store.get_alert(alert_id)
        if acked is None:
            raise HTTPException(404, f"no alert {alert_id}")
        return AlertOut.from_record(acked)

    @router.get("/alerts/stream", tags=["alerts"], response_class=StreamingResponse, responses={
        200: {"description": SSE_EVENTS, "content": {"text/event-stream": {"schema": {"type": "string"}}}}})
    async def stream(request: Request) -> StreamingResponse:
        """Server-Sent Events: one `alert` event per new alert, a comment every 15 s to keep proxies open. The
        caller's credential is checked again before every alert and every few seconds: a user disabled, or whose
        token was rotated or session ended, gets a `signed-out` event and the stream ends."""
        queue = delivery.broadcaster.subscribe()
        user = request.state.caller.user

        def still_signed_in() -> bool:
            now = signed_in(request)
            return now is not None and now.id == user.id and not now.disabled

        async def events() -> AsyncIterator[str]:
            try:
                yield ": connected\n\n"
                quiet = 0.0
                while not await request.is_disconnected():
                    try:
                        burst = [await asyncio.wait_for(queue.get(), timeout=RECHECK_S)]
                    except asyncio.TimeoutError:
                        burst = []
                    while not queue.empty():  # the alerts one sighting raised together: one check for all
                        burst.append(queue.get_nowait())
                    if not await asyncio.to_thread(still_signed_in):
                        yield "event: signed-out\ndata: {}\n\n"
                        return
                    if not burst:
                        quiet += RECHECK_S
                        if quiet >= KEEPALIVE_S:
                            quiet = 0.0
                            yield ": keep-alive\n\n"
                        continue
                    for payload in burst:
                        yield (f"event: alert\nid: {payload['id']}\n"
                               f"data: {json.dumps(payload, ensure_ascii=False)}\n\n")
            finally:
                delivery.broadcaster.unsubscribe(queue)

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @router.post("/webhooks", status_code=201, tags=["alerts"], responses={
        409: {"model": ErrorOut, "description": "a webhook with this URL exists already"}})
    def add_webhook(body: WebhookIn) -> WebhookOut:
        """Register a receiver. The answer holds its signing secret, shown this once: every delivery carries
        `X-Sightline-Signature: sha256=<hex HMAC-SHA256 of the raw body>` keyed with it."""
        url = delivery.policy.check(body.url, WEBHOOK_SCHEMES, "webhook").url
        webhook_id, secret = uuid.uuid4().hex[:12], new_secret()
        if not store.add_webhook(webhook_id, url, secret):
            raise HTTPException(409, "a webhook with this URL exists already")
        return WebhookOut(id=webhook_id, url=url, secret=secret)

    @router.get("/webhooks", tags=["alerts"])
    def list_webhooks() -> WebhooksOut:
        return WebhooksOut.model_validate({"webhooks": store.webhooks(), "dead_letters": store.deliveries("dead")})

    @router.delete("/webhooks/{webhook_id}", status_code=204, tags=["alerts"], responses=NOT_FOUND)
    def delete_webhook(webhook_id: str) -> None:
        """Stop delivering to a receiver; its pending deliveries are dropped."""
        if not store.delete_webhook(webhook_id):
            raise HTTPException(404, f"no webhook {webhook_id}")

    @router.post("/webhooks/retry-dead", tags=["alerts"])
    def retry_dead() -> RequeuedOut:
        requeued = store.retry_dead()
        delivery.webhooks.wake.set()
        return RequeuedOut(requeued=requeued)

    return router
