"""The four ways investigators search: by plate, by attributes, by photo, by face — typed in, typed out."""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from geo.areas import cameras_inside
from geo.trajectories import check_range
from indexer.blobs import BlobStore
from indexer.plate_index import PlateDictionary
from indexer.store import AttributeFilter, RecordStore, SightingQuery
from indexer.vectors import VectorIndex
from models.imageops import crop, decode_image, decode_stored
from models.observations import FramePipeline, ObjectDescription
from models.plate_text import reader_distance
from models.records import UNKNOWN, BBox, InputError, Sighting, SightingKind
from models.rerank import LocalFeatures, Verifier, features_key
from models.spaces import FACE_MATCH_COSINE, QUERY_EXPANSION, expand_query

VERIFY_THREADS = 2  # the photo search's candidates are verified this many at once
CANDIDATE_LIMIT = 100_000  # a filter that keeps up to this many sightings is searched exactly among them


@dataclass
class Filters:
    """Time, cameras, area and attribute conditions shared by every search."""

    start: datetime | None = None
    end: datetime | None = None
    camera_ids: list[str] | None = None
    area: dict | None = None  # GeoJSON polygon
    attributes: AttributeFilter = field(default_factory=AttributeFilter)

    def query(self, store: RecordStore, kind: str | None, limit: int, offset: int = 0,
              newest_first: bool = True) -> SightingQuery:
        check_range(self.start, self.end)
        cameras = self.camera_ids
        if self.area is not None:
            inside = cameras_inside(store, self.area)
            cameras = [c for c in inside if cameras is None or c in cameras] or ["\0none"]
        return SightingQuery(kind=kind, camera_ids=cameras, start=self.start, end=self.end, limit=limit,
                             offset=offset, newest_first=newest_first, attributes=self.attributes)

    def active(self) -> bool:
        """Whether any condition is set (an unfiltered search may use the whole index)."""
        places = (self.start, self.end, self.camera_ids, self.area)
        return any(v is not None for v in places) or bool(self.attributes.items())


@dataclass
class PlateResult:
    """One matching plate, how close it is to the query, and its latest sightings."""

    plate: str
    score: float
    distance: float
    sightings_total: int
    sightings: list[Sighting]


@dataclass
class DetectedObject:
    """An object of the searched kind found in the query photo (largest first)."""

    index: int
    bbox: list[float]
    score: float
    label: str


@dataclass
class Probe:
    """The object of an uploaded photo that a search looks for."""

    kind: SightingKind
    bbox: BBox
    image: np.ndarray


@dataclass
class ProbeSummary:
    """What the search took the query object to be."""

    kind: str
    bbox: list[float]
    vehicle_color: str | None
    vehicle_type: str | None
    plate: str | None


@dataclass
class Hit:
    """A found sighting, its score, and the terms that made the score (appearance, colour, type, plate, local)."""

    sighting: Sighting
    score: float
    why: dict[str, float] = field(default_factory=dict)


@dataclass
class ImageSearchResult:
    objects: list[DetectedObject]
    probe: ProbeSummary
    results: list[Hit]


@dataclass
class FaceSearchResult:
    face: list[float]
    threshold: float
    results: list[Hit]


class SearchService:
    """Plate, attribute, photo and face search over the record store and the vector indexes."""

    def __init__(self, store: RecordStore, indexes: dict[str, VectorIndex], plates: PlateDictionary,
                 blobs: BlobStore, pipeline: Callable[[], FramePipeline], verifier: Verifier | None = None):
        self.store, self.indexes, self.plates, self.blobs, self.get_pipeline = store, indexes, plates, blobs, pipeline
        self.verifier = verifier or Verifier()  # the ingestor's (see Ingestor.verifier)

    def plates_like(self, q: str, mode: str, filters: Filters, limit: int = 50, per_plate: int = 20
                    ) -> list[PlateResult]:
        """Matching plates ranked by closeness then by how often they were seen, each with its latest sightings."""
        matches = self.plates.search(q, mode, limit=limit)
        counts = self.store.plate_counts([m.plate for m in matches])
        results = []
        for m in sorted(matches, key=lambda m: (-m.score, -counts.get(m.plate, 0), m.plate)):
            if not counts.get(m.plate):
                continue  # every sighting of it was deleted (retention) since the dictionary learnt it
            query = filters.query(self.store, SightingKind.VEHICLE, per_plate)
            query.plate = m.plate
            sightings = self.store.query(query)
            if sightings or not filters.active():
                results.append(PlateResult(m.plate, m.score, m.distance, counts.get(m.plate, 0), sightings))
        return results

    def attributes(self, kind: str, filters: Filters, limit: int, offset: int, newest_first: bool
                   ) -> list[Sighting]:
        return self.store.query(filters.query(self.store, kind, limit, offset, newest_first))

    def probe(self, data: bytes, kind: str, pick: int | None) -> tuple[Probe, list[DetectedObject]]:
        """Detect the objects of `kind`; take the one picked (largest first) or the largest.

        A photo with no detection of that kind is taken as a crop of the object itself.
        """
        if kind not in (SightingKind.VEHICLE, SightingKind.PERSON):
            raise InputError("kind must be vehicle or person")
        frame = decode_image(data)
        pipeline = self.get_pipeline()
        found = sorted((d for d in pipeline.detect([frame])[0] if d.kind == kind), key=lambda d: -d.bbox.area)
        objects = [DetectedObject(i, d.bbox.as_list(), round(d.score, 3), d.label) for i, d in enumerate(found)]
        if pick is not None and not 0 <= pick < len(found):
            raise InputError(f"pick must be between 0 and {len(found) - 1}: the photo shows {len(found)} {kind}(s)")
        h, w = frame.shape[:2]
        box = found[pick or 0].bbox if found else BBox(0, 0, w, h)
        image = crop(frame, box)
        return Probe(SightingKind(kind), box, image), objects

    def nearest(self, space: str, vector: np.ndarray, k: int, filters: Filters, kind: str
                ) -> list[tuple[Sighting, float]]:
        """The k nearest sightings that pass the filters — exactly among the filtered ones when a filter is set.

        The index first catches up with the store, so what another process sharing the data folder stored
        is found too.
        """
        index = self.indexes[space]
        index.catch_up()
        if len(index) == 0:
            return []
        allowed = None
        if filters.active():
            candidates = self.store.query(filters.query(self.store, kind, CANDIDATE_LIMIT))
            allowed = np.array([s.vector_id for s in candidates
                                if s.vector_id is not None and s.embedding_space == space])
            if len(allowed) == 0:
                return []
        scores, ids = index.search(vector[None, :], min(k, len(index)), allowed)
        hits = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        by_vector = self.store.sighting_ids_for_vectors(space, [i for i, _ in hits])
        sightings = {s.id: s for s in self.store.get_sightings(list(by_vector.values()))}
        # Only a sighting's own vector finds it: one it was re-embedded from (still in an index this process opened
        # before, or left by a crash between an Elasticsearch replace's two requests) names it but is not its own.
        return [(found, score) for i, score in hits
                if (found := sightings.get(by_vector.get(i, ""))) is not None and found.vector_id == i]

    def like_sighting(self, sighting_id: str, k: int, filters: Filters, min_similarity: float
                      ) -> list[tuple[Sighting, float]]:
        """Sightings that look like a stored one (its own vector as the query), above a cosine similarity, each with
        its similarity."""
        seed = self.store.get_sighting(sighting_id)
        if seed is None or seed.vector_id is None or seed.embedding_space is None:
            raise LookupError(f"no sighting {sighting_id} with an appearance vector")
        vector = self.store.get_vectors(seed.embedding_space, [int(seed.vector_id)]).get(int(seed.vector_id))
        if vector is None:
            raise LookupError(f"the appearance vector of {sighting_id} is gone")
        hits = self.nearest(seed.embedding_space, vector, k, filters, seed.kind)
        return [(s, score) for s, score in hits if score >= min_similarity]

    def verify(self, query: LocalFeatures, ranked: list[Hit]) -> list[Hit]:
        """Geometric verification of the leading candidates against the probe's local features (models/rerank.py).

        Stickers, dents and ornaments matched under one homography lift the same vehicle above look-alikes;
        a candidate with neither stored features nor a readable crop keeps its score. `why` says how many
        inliers, the bonus, and whether the candidate's features were stored at ingest (1) or re-extracted (0).
        """
        leading = ranked[: self.verifier.top_k]

        def inliers(hit: Hit) -> tuple[int, bool] | None:
            features, stored = self.local_features(hit.sighting)
            return (self.verifier.inliers(query, features), stored) if features is not None else None

        # Reading, matching and the homography release the GIL: on 2 cores, 2 threads took verify 74 → 54 ms at 100k.
        with ThreadPoolExecutor(max_workers=VERIFY_THREADS, thread_name_prefix="verify") as pool:
            found = list(pool.map(inliers, leading))
        out = []
        for hit, result in zip(leading, found, strict=True):
            if result is not None:
                count, stored = result
                local = round(float(self.verifier.bonus(np.array([count]))[0]), 4)
                why = {**hit.why, "local_inliers": count, "local": local, "local_stored": float(stored)}
                hit = Hit(hit.sighting, hit.score + local, why)
            out.append(hit)
        return sorted(out + ranked[self.verifier.top_k :], key=lambda h: -h.score)

    def local_features(self, sighting: Sighting) -> tuple[LocalFeatures | None, bool]:
        """A sighting's local features and whether they were stored at ingest; sightings stored before features
        were (or whose blob is of another format) fall back to extracting them from their crop."""
        if not sighting.crop:
            return None, False
        blob = self.blobs.get(features_key(sighting.crop))
        stored = self.verifier.decode(blob) if blob else None
        if stored is not None:
            return stored, True
        return self.crop_features(sighting), False

    def crop_features(self, sighting: Sighting) -> LocalFeatures | None:
        """Local features extracted from the sighting's stored crop (None without a readable one)."""
        image = decode_stored(self.blobs.get(sighting.crop)) if sighting.crop else None
        return self.verifier.extract(image) if image is not None else None

    def image(self, data: bytes, kind: str, k: int, filters: Filters, pick: int | None = None) -> ImageSearchResult:
        probe, objects = self.probe(data, kind, pick)
        pipeline = self.get_pipeline()
        # The colour, type and plate are read in a thread beside the vector, the index search and the local features:
        # at batch 1 neither side keeps both cores busy once OpenVINO no longer pins its threads (models/runtime.py).
        # `bench photo-search` at 100k, 6 runs alternated: p50 median 100 → 95 ms, faster in 5 of 6 (83–106 vs 84–119).
        # (Beside the exact scan, before unpinning, it only moved the time: 123 / 106 / 101 against 105 / 110 / 115 ms.)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="describe") as pool:
            described = pool.submit(pipeline.describe_object, probe.image, kind)
            vector = pipeline.embed_crops([probe.image], kind)[0]
            hits = self.expanded(kind, vector, self.nearest(kind, vector, max(k * 5, 50), filters, kind), filters)
            features = self.verifier.extract(probe.image) if kind == SightingKind.VEHICLE else None
            seen = described.result()
        ranked = rerank(seen, hits)
        if features is not None:
            ranked = self.verify(features, ranked)
        summary = ProbeSummary(kind, probe.bbox.as_list(), seen.vehicle_color, seen.vehicle_type, seen.plate)
        return ImageSearchResult(objects, summary, [Hit(h.sighting, round(h.score, 4), h.why) for h in ranked[:k]])

    def expanded(self, space: str, probe: np.ndarray, hits: list[tuple[Sighting, float]], filters: Filters
                 ) -> list[tuple[Sighting, float]]:
        """For a space that expands its queries (models/spaces.py: QUERY_EXPANSION), as many hits again, nearest to
        the probe averaged with the leading hits' stored vectors, scored by their cosines to that average; else
        the hits themselves."""
        leading = [int(s.vector_id) for s, _ in hits[: QUERY_EXPANSION.get(space, 0)] if s.vector_id is not None]
        stored = self.store.get_vectors(space, leading) if leading else {}
        if not stored:
            return hits
        return self.nearest(space, expand_query(probe, np.stack(list(stored.values()))), len(hits), filters, space)

    def face(self, data: bytes, k: int, filters: Filters, threshold: float = FACE_MATCH_COSINE) -> FaceSearchResult:
        face = self.get_pipeline().subject_face(decode_image(data))
        if face is None:
            raise InputError("no face was found in the photo")
        hits = self.nearest(SightingKind.FACE, face.vector, max(k, 100), filters, SightingKind.FACE)
        kept = [Hit(s, round(score, 4)) for s, score in hits if score >= threshold][:k]
        return FaceSearchResult(face.bbox.as_list(), threshold, kept)


def rerank(probe: ObjectDescription, hits: list[tuple[Sighting, float]]) -> list[Hit]:
    """Appearance first; then the structured attributes and, where both show one, the plate decide near-ties.

    A hidden or fake plate does not hurt (no plate, no term); a matching plate lifts the same car above
    look-alikes; colour and type agreement add a little, so a different car of the same look stays below.
    """
    out = []
    for s, cosine in hits:
        a = s.attributes
        parts = {"appearance": round(cosine, 4)}
        bonus = 0.0
        color, vtype, plate = (getattr(a, name, None) for name in ("vehicle_color", "vehicle_type", "plate"))
        if probe.vehicle_color and color and UNKNOWN not in (color, probe.vehicle_color):  # unknown says nothing
            parts["colour"] = 0.03 if color == probe.vehicle_color else -0.03
            bonus += parts["colour"]
        if probe.vehicle_type and vtype:
            parts["type"] = 0.02 if vtype == probe.vehicle_type else -0.02
            bonus += parts["type"]
        if probe.plate and plate:
            parts["plate"] = round(0.15 * (1.0 - min(3.0, reader_distance(probe.plate, plate, 3.0)) / 3.0), 4)
            bonus += parts["plate"]
        out.append(Hit(s, cosine + bonus, parts))
    return sorted(out, key=lambda h: -h.score)
