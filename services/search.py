"""The four ways investigators search: by plate, by attributes, by photo, by face."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import cv2
import numpy as np

from geo.areas import cameras_inside
from geo.trajectories import check_range
from indexer.plate_index import PlateDictionary, reader_distance
from indexer.store import AttributeFilter, SightingQuery
from models.imageops import crop, decode_image
from models.records import BBox, InputError, Sighting
from models.rerank import Verifier
from services.alerts import FACE_MATCH_COSINE
from services.system import Sightline

CANDIDATE_LIMIT = 100_000  # a filter that keeps up to this many sightings is searched exactly among them
VERIFIER = Verifier()


@dataclass
class Filters:
    """Time, cameras, area and attribute conditions shared by every search."""

    start: datetime | None = None
    end: datetime | None = None
    camera_ids: list[str] | None = None
    area: dict | None = None  # GeoJSON polygon
    attributes: AttributeFilter = field(default_factory=AttributeFilter)

    def query(self, system: Sightline, kind: str | None, limit: int, offset: int = 0,
              newest_first: bool = True) -> SightingQuery:
        check_range(self.start, self.end)
        cameras = self.camera_ids
        if self.area is not None:
            inside = cameras_inside(system.store, self.area)
            cameras = [c for c in inside if cameras is None or c in cameras] or ["\0none"]
        return SightingQuery(kind=kind, camera_ids=cameras, start=self.start, end=self.end, limit=limit,
                             offset=offset, newest_first=newest_first, attributes=self.attributes)

    def active(self) -> bool:
        return any(v is not None for v in (self.start, self.end, self.camera_ids, self.area)) or bool(self.attributes.items())


def plate_search(system: Sightline, plates: PlateDictionary, q: str, mode: str, filters: Filters,
                 limit: int = 50, per_plate: int = 20) -> list[dict]:
    """Matching plates ranked by closeness then by how often they were seen, each with its latest sightings."""
    matches = plates.search(q, mode, limit=limit)
    counts = system.store.plate_counts([m.plate for m in matches])
    results = []
    for m in sorted(matches, key=lambda m: (-m.score, -counts.get(m.plate, 0), m.plate)):
        if not counts.get(m.plate):
            continue  # every sighting of it was deleted (retention) since the dictionary learnt it
        query = filters.query(system, "vehicle", per_plate)
        query.plate = m.plate
        sightings = system.store.query(query)
        if sightings or not filters.active():
            results.append({"plate": m.plate, "score": m.score, "distance": m.distance,
                            "sightings_total": counts.get(m.plate, 0), "sightings": [s.to_json() for s in sightings]})
    return results


def attribute_search(system: Sightline, kind: str, filters: Filters, limit: int, offset: int,
                     newest_first: bool) -> list[Sighting]:
    return system.store.query(filters.query(system, kind, limit, offset, newest_first))


@dataclass
class Probe:
    """The object of an uploaded photo that a search looks for."""

    kind: str
    bbox: BBox
    vector: np.ndarray
    image: np.ndarray
    vehicle_color: str | None = None
    vehicle_type: str | None = None
    plate: str | None = None


def probe_from_photo(system: Sightline, data: bytes, kind: str, pick: int | None) -> tuple[Probe, list[dict]]:
    """Detect the objects of `kind`; take the one picked (largest first) or the largest; embed and describe it.

    A photo with no detection of that kind is taken as a crop of the object itself.
    """
    if kind not in ("vehicle", "person"):
        raise InputError("kind must be vehicle or person")
    frame = decode_image(data)
    pipeline = system.pipeline
    found = sorted((d for d in pipeline.detect([frame])[0] if d.kind == kind), key=lambda d: -d.bbox.area)
    objects = [{"index": i, "bbox": d.bbox.as_list(), "score": round(d.score, 3), "label": d.label}
               for i, d in enumerate(found)]
    if pick is not None and not 0 <= pick < len(found):
        raise InputError(f"pick must be between 0 and {len(found) - 1}: the photo shows {len(found)} {kind}(s)")
    h, w = frame.shape[:2]
    box = found[pick or 0].bbox if found else BBox(0, 0, w, h)
    image = crop(frame, box)
    embedder = pipeline.vehicle_embedder if kind == "vehicle" else pipeline.person_embedder
    probe = Probe(kind, box, embedder.embed([image])[0], image)
    if kind == "vehicle":
        attrs = pipeline.vehicle_attributes.classify([image])[0]
        probe.vehicle_color, probe.vehicle_type = attrs.vehicle_color, attrs.vehicle_type
        readings = [r for r in pipeline.plate_reader.read_frames([image])[0] if r.text]
        probe.plate = max(readings, key=lambda r: r.score).text if readings else None
    return probe, objects


def nearest(system: Sightline, space: str, vector: np.ndarray, k: int, filters: Filters, kind: str
            ) -> list[tuple[Sighting, float]]:
    """The k nearest sightings that pass the filters — exactly among the filtered ones when a filter is set."""
    index = system.indexes[space]
    if len(index) == 0:
        return []
    allowed = None
    if filters.active():
        candidates = system.store.query(filters.query(system, kind, CANDIDATE_LIMIT))
        allowed = np.array([s.vector_id for s in candidates if s.vector_id is not None and s.embedding_space == space])
        if len(allowed) == 0:
            return []
    scores, ids = index.search(vector[None, :], min(k, len(index)), allowed)
    hits = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
    by_vector = system.store.sighting_ids_for_vectors(space, [i for i, _ in hits])
    sightings = {s.id: s for s in system.store.get_sightings(list(by_vector.values()))}
    return [(sightings[by_vector[i]], score) for i, score in hits if by_vector.get(i) in sightings]


def rerank(probe: Probe, hits: list[tuple[Sighting, float]]) -> list[tuple[Sighting, float, dict]]:
    """Appearance first; then the structured attributes and, where both show one, the plate decide near-ties.

    A hidden or fake plate does not hurt (no plate, no term); a matching plate lifts the same car above
    look-alikes; colour and type agreement add a little, so a different car of the same look stays below.
    """
    out = []
    for s, cosine in hits:
        a = s.attributes
        parts = {"appearance": round(cosine, 4)}
        bonus = 0.0
        if probe.vehicle_color and getattr(a, "vehicle_color", None):
            parts["colour"] = 0.03 if a.vehicle_color == probe.vehicle_color else -0.03
            bonus += parts["colour"]
        if probe.vehicle_type and getattr(a, "vehicle_type", None):
            parts["type"] = 0.02 if a.vehicle_type == probe.vehicle_type else -0.02
            bonus += parts["type"]
        plate = getattr(a, "plate", None)
        if probe.plate and plate:
            parts["plate"] = round(0.15 * (1.0 - min(3.0, reader_distance(probe.plate, plate, 3.0)) / 3.0), 4)
            bonus += parts["plate"]
        out.append((s, cosine + bonus, parts))
    return sorted(out, key=lambda t: -t[1])


def verify(system: Sightline, probe: Probe, ranked: list[tuple[Sighting, float, dict]]
           ) -> list[tuple[Sighting, float, dict]]:
    """Geometric verification of the leading candidates against their evidence crops (models/rerank.py).

    Stickers, dents and ornaments matched under one homography lift the same vehicle above look-alikes;
    a candidate without a readable crop keeps its score.
    """
    query = VERIFIER.extract(probe.image)
    out = []
    for rank, (s, score, why) in enumerate(ranked):
        path = system.settings.crops_dir / s.crop if s.crop else None
        image = cv2.imread(str(path)) if rank < VERIFIER.top_k and path is not None and path.is_file() else None
        if image is not None:
            inliers = VERIFIER.inliers(query, VERIFIER.extract(image))
            why = {**why, "local_inliers": inliers, "local": round(float(VERIFIER.bonus(np.array([inliers]))[0]), 4)}
            score += why["local"]
        out.append((s, score, why))
    return sorted(out, key=lambda t: -t[1])


def image_search(system: Sightline, data: bytes, kind: str, k: int, filters: Filters, pick: int | None = None) -> dict:
    probe, objects = probe_from_photo(system, data, kind, pick)
    hits = nearest(system, kind, probe.vector, max(k * 5, 50), filters, kind)
    ranked = rerank(probe, hits)
    ranked = (verify(system, probe, ranked) if kind == "vehicle" else ranked)[:k]
    return {"objects": objects, "probe": {"kind": kind, "bbox": probe.bbox.as_list(), "vehicle_color": probe.vehicle_color,
                                          "vehicle_type": probe.vehicle_type, "plate": probe.plate},
            "results": [{"sighting": s.to_json(), "score": round(score, 4), "why": why} for s, score, why in ranked]}


def face_search(system: Sightline, data: bytes, k: int, filters: Filters, threshold: float = FACE_MATCH_COSINE) -> dict:
    frame = decode_image(data)
    pipeline = system.pipeline
    faces = pipeline.face_detector.detect(frame) if pipeline.face_detector else []
    if not faces:
        raise InputError("no face was found in the photo")
    best = max(faces, key=lambda f: f.bbox.area * f.score)
    vector = pipeline.face_embedder.embed_faces(frame, [best.bbox])[0]
    hits = nearest(system, "face", vector, max(k, 100), filters, "face")
    kept = [(s, score) for s, score in hits if score >= threshold][:k]
    return {"face": best.bbox.as_list(), "threshold": threshold,
            "results": [{"sighting": s.to_json(), "score": round(score, 4)} for s, score in kept]}
