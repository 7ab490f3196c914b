"""The HTTP API (FastAPI). Bad input is a 4xx with a message; OpenAPI docs at /docs."""
from __future__ import annotations

import json
import math
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import Annotated, AsyncIterator

from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from geo.trajectories import parse_range
from indexer.store import SightingQuery
from models.observations import FramePipeline
from models.plate_text import normalize_plate
from models.records import SIGHTING_KINDS, Camera, InputError, parse_time
from models.registry import ModelError
from services.api.alerts import alerts_router
from services.api.auth import auth_router
from services.api.cases import case_guard, cases_router
from services.api.geo import geo_router
from services.api.metrics import HealthQueueOut, health_of, metrics_router
from services.api.schemas import (
    NOT_FOUND,
    CameraOut,
    ErrorOut,
    FeatureCollectionOut,
    IngestOut,
    MapConfigOut,
    PurgeOut,
    SightingOut,
    SightingsOut,
    SourceOut,
    StoredOut,
    StreamOut,
)
from services.api.search import search_router
from services.api.security import (
    AuditMiddleware,
    Denials,
    SignInGuard,
    audited_upload,
    authorizer,
    caller_of,
    check_table,
)
from services.ingest import PhotoJob
from services.settings import Settings
from services.system import Sightline
from services.video import StreamManager

MAX_OFFSET = 10**9  # past any page a client can mean; SQLite's OFFSET overflows at 2^63


class CameraIn(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)  # JSON's NaN and Infinity are a 422, not a 500

    id: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1)
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    heading_deg: float | None = Field(default=None, ge=0, lt=360)
    kind: str = Field(default="checkpoint", pattern="^(checkpoint|surveillance)$")
    road: str | None = None
    tags: list[str] = []


class StreamIn(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)

    url: str = Field(min_length=1, max_length=2048,
                     description="rtsp(s):// or http(s):// (local files are ingested with the CLI, not the API)")
    camera_id: str = Field(min_length=1)
    sample_fps: float | None = Field(default=None, ge=0.1, le=60)


def create_app(settings: Settings, pipeline: FramePipeline | None = None) -> FastAPI:
    """The HTTP adapter over one opened system; `pipeline` replaces the real models (tests)."""
    system = Sightline(settings, pipeline)
    store, ingestor, retention = system.store, system.ingestor, system.retention
    streams = StreamManager(ingestor, policy=system.outbound)
    guard, denials = SignInGuard(settings.failed_sign_in_limit), Denials(system.audit)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        system.start()  # webhook delivery, retention policy
        yield
        streams.stop_all()
        denials.flush()  # the counts of refusals still being folded
        system.close()  # persist the vector indexes on a clean shutdown

    app = FastAPI(title="Sightline", version="0.1.0", lifespan=lifespan,
                  dependencies=[Depends(authorizer(system.accounts, guard, system.audit)),
                                Depends(case_guard(system.cases))],
                  description="Vehicles, people and faces from camera frames, as searchable sightings.")
    app.state.system = system
    app.include_router(auth_router(system.accounts, system.audit, settings.secure_cookies, guard))
    app.include_router(alerts_router(system.watchlists, system.alert_store, system.delivery,
                                     lambda request: caller_of(request, system.accounts)))
    app.include_router(search_router(system.search))
    app.include_router(geo_router(store, system.search, system.plates))
    app.include_router(metrics_router(system))  # /metrics: Prometheus text
    app.include_router(cases_router(system.cases, system.evidence, system.exports, store, system.accounts))

    @app.exception_handler(InputError)
    async def input_error(_: Request, exc: InputError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    @app.exception_handler(ModelError)
    async def model_error(_: Request, exc: ModelError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's 422, with the offending input shown even where JSON cannot hold it (NaN, Infinity)."""
        return JSONResponse(status_code=422, content={"detail": json_safe(jsonable_encoder(exc.errors()))})

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/app/")

    @app.get("/map/config", tags=["map"])
    def map_config() -> MapConfigOut:
        """The base layer: offline roads (GeoJSON) by default, a tile server where one is configured."""
        return MapConfigOut(tile_url=settings.tile_url, roads=settings.roads_geojson is not None,
                            attribution="roads © OpenStreetMap contributors (ODbL)")

    @app.get("/map/roads", tags=["map"], responses=NOT_FOUND)
    def map_roads() -> FeatureCollectionOut:
        path = settings.roads_geojson
        if path is None or not path.is_file():
            raise HTTPException(404, "no road network is configured (SIGHTLINE_ROADS)")
        return road_lines(path)

    @app.get("/health")
    def health() -> HealthQueueOut:
        """Liveness and the store's size; with SIGHTLINE_QUEUE, the frame queue's figures too."""
        return health_of(system)

    @app.post("/cameras", status_code=201)
    def add_cameras(cameras: CameraIn | list[CameraIn]) -> StoredOut:
        items = cameras if isinstance(cameras, list) else [cameras]
        stored = store.upsert_cameras([Camera(**c.model_dump()) for c in items])
        system.watchlists.cameras_changed()
        return StoredOut(stored=stored)

    @app.get("/cameras")
    def list_cameras() -> list[CameraOut]:
        return [CameraOut.from_record(c) for c in store.list_cameras()]

    @app.post("/frames", status_code=201, responses={413: {"model": ErrorOut, "description": "too large an upload"}})
    def post_frame(
        request: Request,
        file: Annotated[UploadFile, File(description="a JPEG or PNG camera frame")],
        camera_id: Annotated[str, Form()],
        captured_at: Annotated[str, Form(description="ISO 8601 with a zone, e.g. 2026-11-22T08:30:00+08:00")],
    ) -> IngestOut:
        limit = settings.max_upload_bytes
        data = file.file.read(limit + 1)
        if len(data) > limit:
            raise HTTPException(413, f"upload exceeds the limit of {limit} bytes")
        audited_upload(request, data)
        result = ingestor.ingest_one(PhotoJob(file.filename or "upload", data, camera_id, parse_time(captured_at)))
        return IngestOut.from_record(result)

    @app.get("/sightings")
    def list_sightings(
        kind: str | None = None,
        camera_id: Annotated[list[str] | None, Query()] = None,
        start: str | None = None,
        end: str | None = None,
        plate: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> SightingsOut:
        if kind is not None and kind not in SIGHTING_KINDS:
            raise InputError(f"kind must be one of {SIGHTING_KINDS}")
        t0, t1 = parse_range(start, end)
        found = store.query(SightingQuery(kind=kind, camera_ids=camera_id, start=t0, end=t1,
                                                 plate=normalize_plate(plate) if plate else None,
                                                 limit=limit, offset=offset))
        return SightingsOut.of(found)

    @app.delete("/sightings")
    def delete_sightings(before: Annotated[str, Query(description="ISO 8601 with a zone: delete what is older")],
                         camera_id: Annotated[list[str] | None, Query()] = None) -> PurgeOut:
        """Retention by hand: sightings taken before `before` (at these cameras, or all) with their vectors,
        crops and frames. Set SIGHTLINE_RETENTION_DAYS to have the server do it hourly."""
        return PurgeOut.from_record(retention.purge(before=parse_time(before), camera_ids=camera_id))

    @app.delete("/sightings/{sighting_id}", responses=NOT_FOUND)
    def delete_sighting(sighting_id: str) -> PurgeOut:
        if store.get_sighting(sighting_id) is None:
            raise HTTPException(404, f"no sighting {sighting_id}")
        return PurgeOut.from_record(retention.purge(ids=[sighting_id]))

    @app.get("/sightings/{sighting_id}", responses=NOT_FOUND)
    def get_sighting(sighting_id: str) -> SightingOut:
        found = store.get_sighting(sighting_id)
        if found is None:
            raise HTTPException(404, f"no sighting {sighting_id}")
        return SightingOut.from_record(found)

    jpeg = {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}

    @app.get("/sightings/{sighting_id}/crop", response_class=Response,
             responses={200: {"description": "the evidence crop (JPEG)", "content": jpeg}, **NOT_FOUND})
    def get_crop(sighting_id: str) -> Response:
        found = store.get_sighting(sighting_id)
        if found is None or not found.crop:
            raise HTTPException(404, f"no sighting {sighting_id}")
        data = system.blobs.get(found.crop)
        if data is None:
            raise HTTPException(404, f"the evidence crop of {sighting_id} is missing")
        return Response(data, media_type="image/jpeg")

    @app.post("/streams", status_code=201)
    def add_stream(body: StreamIn) -> StreamOut:
        """Start reading a live RTSP/HTTP stream: sampled, tracked, one sighting per object; reconnects on drops."""
        return StreamOut.from_record(streams.add(body.url, body.camera_id, body.sample_fps))

    @app.get("/streams")
    def list_streams() -> list[StreamOut]:
        """Each stream's state (starting, running, reconnecting, stopped), frame rate and counts."""
        return [StreamOut.from_record(status) for status in streams.list()]

    @app.get("/sources")
    def list_sources() -> list[SourceOut]:
        """Every running source of frames besides uploads and streams (Frigate over MQTT): its state, counters, last
        error and lag."""
        return [SourceOut.from_record(source.status()) for source in system.sources]

    @app.delete("/streams/{stream_id}", status_code=204, responses=NOT_FOUND)
    def delete_stream(stream_id: str) -> None:
        if not streams.remove(stream_id):
            raise HTTPException(404, f"no stream {stream_id}")

    vendor = settings.web_dir / "node_modules" / "leaflet" / "dist"
    if vendor.is_dir():
        app.mount("/app/vendor/leaflet", StaticFiles(directory=vendor), name="leaflet")
    if settings.web_dir.is_dir():
        app.mount("/app", StaticFiles(directory=settings.web_dir, html=True), name="web")
    check_table(app)  # every route has its role, case binding and audit declared
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes + MULTIPART_SLACK)
    app.add_middleware(AuditMiddleware, audit=system.audit, denials=denials)  # outermost: it sees the 413 too
    return app


MULTIPART_SLACK = 65536  # form fields and multipart headers beside an upload of the largest allowed size


class BodyLimit:
    """Refuse a request body past `limit` bytes with a 413, counting the bytes as they arrive — with a
    Content-Length or chunked (Transfer-Encoding: chunked has none) — and reading nothing past the limit.

    A declared Content-Length over the limit is refused before a byte is read. Otherwise the app reads
    through a counting `receive`; the moment the count passes the limit it gets no more of the body
    (its parser fails, whatever it makes of that), and whatever it answers is replaced by the 413,
    which closes the connection so the rest of the body is never taken in.
    """

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(send, f"upload of {declared} bytes")
            return
        received = 0
        over = False
        started = False

        async def counting() -> Message:
            nonlocal received, over
            if over:
                raise _BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    over = True
                    raise _BodyTooLarge
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            if over and not started:
                return  # the app's answer to a body it could not finish reading: the 413 replaces it
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting, sending)
        except Exception:
            if not over or started:
                raise
        if over and not started:
            await self._refuse(send, "upload")

    async def _refuse(self, send: Send, what: str) -> None:
        detail = f"{what} exceeds the limit of {self.limit - MULTIPART_SLACK} bytes"
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    """Raised into the app's body reader when the body passes the limit."""


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers") or ():
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def json_safe(value: object) -> object:
    """A value fit for strict JSON: NaN and the infinities (which JSON's numbers cannot be) as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


@lru_cache(maxsize=4)
def road_lines(path: Path) -> FeatureCollectionOut:
    """The LineStrings of a road GeoJSON (the points are intersections, drawn as cameras instead)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    lines = [f for f in data.get("features", [])
             if (f.get("geometry") or {}).get("type") in ("LineString", "MultiLineString")]
    return FeatureCollectionOut(type="FeatureCollection", features=lines)
