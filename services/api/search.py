"""Search over HTTP: by plate, by attributes, by photo, by face."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from pydantic import BaseModel, Field, ValidationError

from geo.trajectories import parse_range
from indexer.store import AttributeFilter
from models.records import InputError
from models.spaces import FACE_MATCH_RULE
from services.api.schemas import (
    FaceSearchOut,
    ImageSearchOut,
    ParsedQueryOut,
    PlateMatchOut,
    PlateSearchOut,
    SightingsOut,
    VocabularyOut,
)
from services.api.security import audited_upload
from services.freetext import MAX_TEXT, parse, zone
from services.search import Filters, SearchService
from services.vocabulary import color_scope, vocabulary


class FiltersIn(BaseModel):
    start: str | None = Field(default=None, description="ISO 8601 with a zone")
    end: str | None = None
    camera_ids: list[str] | None = None
    area: dict | None = Field(default=None, description="GeoJSON Polygon (lon/lat): only cameras inside")
    vehicle_type: str | None = None
    vehicle_color: str | None = None
    plate_color: str | None = None
    gender: str | None = None
    upper_color: str | None = None
    lower_color: str | None = None
    bag: bool | None = None
    backpack: bool | None = None
    hat: bool | None = None
    long_sleeves: bool | None = None
    long_pants: bool | None = None
    min_confidence: float | None = Field(default=None, ge=0, le=1, description=(
        "keep only sightings whose filtered colours, type and gender were classified at least this sure"))
    near_colors: bool = Field(default=False, description="a colour also matches all its near colours (red ≈ orange)")
    exact_colors: bool = Field(default=False, description=(
        "a colour matches only itself; by default white, silver and gray also match each other"))

    def filters(self) -> Filters:
        attributes = AttributeFilter(**self.model_dump(include=set(AttributeFilter.__dataclass_fields__)))
        return Filters(*parse_range(self.start, self.end), self.camera_ids, self.area,
                       color_scope(attributes, self.near_colors, self.exact_colors))


class AttributeSearchIn(FiltersIn):
    kind: str = Field(default="vehicle", pattern="^(vehicle|person|face)$")
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=10**9)  # SQLite's OFFSET overflows at 2^63
    newest_first: bool = True


def _filters_form(filters: str | None) -> Filters:
    """The `filters` form field (JSON text): malformed or mistyped, it is the user's error (400), not ours."""
    if not filters:
        return Filters()
    try:
        return FiltersIn.model_validate_json(filters).filters()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'JSON'}: {e['msg']}" for e in exc.errors())
        raise InputError(f"filters: {problems}") from exc


def search_router(search: SearchService) -> APIRouter:
    router = APIRouter(prefix="/search", tags=["search"])

    @router.get("/vocabulary")
    def vocabulary_endpoint() -> VocabularyOut:
        """The colours, types and genders attribute search and the free-text parser understand."""
        return VocabularyOut.model_validate(vocabulary())

    @router.get("/parse")
    def parse_endpoint(q: Annotated[str, Query(min_length=1, max_length=MAX_TEXT)],
                       tz: Annotated[str, Query(max_length=64, description="IANA zone the times are meant in")] = "UTC"
                       ) -> ParsedQueryOut:
        """Free text (Chinese or English) → the filters it asks for, as chips to show and edit before searching:
        "白色SUV 皖A 昨天8点到10点 宝安公路", "man in black with a backpack". Nothing is searched here."""
        now = datetime.now(zone(tz))
        return ParsedQueryOut.model_validate(parse(q, now, search.store.list_cameras()).to_json())

    @router.get("/plates")
    def plates_endpoint(q: str, mode: str = "exact", limit: Annotated[int, Query(ge=1, le=500)] = 50,
                        start: str | None = None, end: str | None = None,
                        camera_id: Annotated[list[str] | None, Query()] = None) -> PlateSearchOut:
        """exact; wildcard (`?` one character, `*` any run: 京A?23*); fuzzy (edit distance ≤ 2, the confusions
        0/O/D/Q, 1/I/L, 8/B, 2/Z, 5/S, 6/G costing half); suffix (a known end of the plate).
        A malformed pattern is a 400."""
        filters = Filters(*parse_range(start, end), camera_id)
        found = search.plates_like(q, mode, filters, limit)
        return PlateSearchOut(query=q, mode=mode, results=[PlateMatchOut.from_record(p) for p in found])

    @router.post("/attributes")
    def attributes_endpoint(body: AttributeSearchIn) -> SightingsOut:
        return SightingsOut.of(search.attributes(body.kind, body.filters(), body.limit, body.offset, body.newest_first))

    @router.post("/image")
    def image_endpoint(request: Request, file: Annotated[UploadFile, File()], kind: Annotated[str, Form()] = "vehicle",
                       k: Annotated[int, Form(ge=1, le=200)] = 20,
                       pick: Annotated[int | None, Form(ge=0, le=1000)] = None,
                       filters: Annotated[str | None, Form(description="JSON of the attribute-search filters")] = None
                       ) -> ImageSearchOut:
        """The photo's objects of `kind` are listed (largest first); `pick` chooses one (default the largest).
        Results are the nearest sightings by appearance, re-ranked by colour, type and, where both show one, plate;
        for vehicles the leading 20 are then verified against their evidence crops with local features under one
        homography (`why.local_inliers`), which puts the same vehicle above look-alikes."""
        photo = audited_upload(request, file.file.read())
        return ImageSearchOut.from_record(search.image(photo, kind, k, _filters_form(filters), pick))

    @router.post("/face", description=f"Sightings of the uploaded face: {FACE_MATCH_RULE}")
    def face_endpoint(request: Request, file: Annotated[UploadFile, File()], k: Annotated[int, Form(ge=1, le=200)] = 20,
                      filters: Annotated[str | None, Form()] = None) -> FaceSearchOut:
        photo = audited_upload(request, file.file.read())
        return FaceSearchOut.from_record(search.face(photo, k, _filters_form(filters)))

    return router
