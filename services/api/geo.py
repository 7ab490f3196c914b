"""The geo analytics over HTTP: trajectories, stay points, cloned plates, co-travel and area/time search.

Bad input (a naive or inverted time range, a malformed polygon) raises InputError,
which the app maps to 400; an unknown plate is an empty result, not an error.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from geo import areas, clones, cotravel, trajectories
from indexer.plate_index import PlateDictionary
from indexer.store import RecordStore
from models.plate_text import normalize_plate
from services.api.schemas import AreaSearchOut, ClonesOut, CoTravelOut, ErrorOut, StaysOut, TrajectoryOut
from services.search import Filters, SearchService


class AreaIn(BaseModel):
    polygon: dict = Field(description="GeoJSON Polygon or MultiPolygon in lon/lat")
    start: str | None = Field(default=None, description="ISO 8601 with a zone")
    end: str | None = None


class AreasIn(BaseModel):
    areas: list[AreaIn] = Field(min_length=1, max_length=10)
    kind: str = Field(default="vehicle", pattern="^(vehicle|person|face)$")
    limit: int = Field(default=500, ge=1, le=10_000)


def geo_router(store: RecordStore, search: SearchService, plates: PlateDictionary) -> APIRouter:
    """`plates` is the app's one in-memory plate dictionary (fuzzy routes use it)."""
    router = APIRouter(tags=["analytics"])

    @router.get("/trajectories/{plate}")
    def get_trajectory(plate: str, start: str | None = None, end: str | None = None, fuzzy: bool = False
                       ) -> TrajectoryOut:
        """Time-ordered sightings of a plate with legs (distance, time, implied speed), trips, stay points and
        GeoJSON. With fuzzy=true, plates one reader confusion or one edit away (its misreads) join the route."""
        t0, t1 = trajectories.parse_range(start, end)
        text = normalize_plate(plate)
        also = [m.plate for m in plates.search(text, "fuzzy", max_distance=1.0) if m.plate != text] if fuzzy else []
        return TrajectoryOut.from_record(trajectories.trajectory(store, text, t0, t1, also=also))

    @router.get("/trajectories/by-sighting/{sighting_id}", responses={
        404: {"model": ErrorOut, "description": "no such sighting, or it has no appearance vector"}})
    def get_trajectory_by_appearance(sighting_id: str, start: str | None = None, end: str | None = None,
                                     min_similarity: Annotated[float, Query(ge=0.5, le=1.0, allow_inf_nan=False)] = 0.9,
                                     k: Annotated[int, Query(ge=1, le=2000)] = 200,
                                     max_speed_kmh: Annotated[float, Query(gt=0, le=2000, allow_inf_nan=False)] = 150.0
                                     ) -> TrajectoryOut:
        """The route of the vehicle in a chosen sighting found by appearance alone (a hidden or fake plate): its
        nearest sightings above min_similarity (cosine), in time order, kept only where one vehicle could have
        driven from each to the next (straight line at max_speed_kmh); the look-alikes no such route keeps are
        listed apart (`rejected`)."""
        t0, t1 = trajectories.parse_range(start, end)
        try:
            found = search.like_sighting(sighting_id, k, Filters(start=t0, end=t1), min_similarity)
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from exc
        cameras = {c.id: c for c in store.list_cameras()}
        kept, rejected = trajectories.feasible_chain(sighting_id, found, cameras, max_speed_kmh)
        route = TrajectoryOut.from_record(trajectories.trajectory_of_sightings(store, f"like {sighting_id}", kept))
        return route.model_copy(update={"rejected": [s.id for s in rejected]})

    @router.get("/stays/{plate}")
    def get_stays(plate: str, start: str | None = None, end: str | None = None) -> StaysOut:
        """Where the vehicle stops: long gaps at nearby cameras, by place, ranked by visits and dwell time."""
        t0, t1 = trajectories.parse_range(start, end)
        return StaysOut.from_record(trajectories.trajectory(store, normalize_plate(plate), t0, t1))

    @router.get("/clones")
    def get_clones(start: str | None = None, end: str | None = None,
                   max_speed_kmh: Annotated[float, Query(gt=0, le=2000, allow_inf_nan=False)] = 150.0,
                   min_plate_score: Annotated[float, Query(ge=0, le=1, allow_inf_nan=False)] = 0.8,
                   min_distance_m: Annotated[float, Query(ge=0, le=50_000_000, allow_inf_nan=False)] = 1000.0
                   ) -> ClonesOut:
        """Cloned-plate cases: consecutive reads of one plate whose implied straight-line speed is impossible,
        with the conflicting sightings, their crops, appearance evidence and which read belongs to which car."""
        t0, t1 = trajectories.parse_range(start, end)
        found = clones.scan(store, t0, t1, clones.CloneSettings(max_speed_kmh, min_plate_score, min_distance_m))
        return ClonesOut.of(found)

    @router.get("/co-travel/{plate}")
    def get_co_travel(plate: str, start: str | None = None, end: str | None = None,
                      window_s: Annotated[float, Query(gt=0, le=3600, allow_inf_nan=False)] = 60.0,
                      min_cameras: Annotated[int, Query(ge=1, le=100)] = 3) -> CoTravelOut:
        """Vehicles passing the same cameras as the target within ±window_s at ≥ min_cameras distinct cameras,
        ranked by shared cameras and by how steady their lag is."""
        t0, t1 = trajectories.parse_range(start, end)
        text = normalize_plate(plate)
        found = cotravel.co_travellers(store, text, t0, t1, window_s, min_cameras)
        return CoTravelOut.of(text, found)

    @router.post("/search/areas")
    def search_areas(body: AreasIn) -> AreaSearchOut:
        """Seen in area A during its window — and in B during its window, and so on (vehicles join by plate)."""
        windows = [areas.AreaWindow(a.polygon, *trajectories.parse_range(a.start, a.end)) for a in body.areas]
        found = areas.seen_in_all(store, windows, body.kind, body.limit)
        return AreaSearchOut.of(found, body.kind)

    return router
