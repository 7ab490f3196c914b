"""Elasticsearch record store: the scale-out backend behind the same RecordStore contract as SQLite.

Indices, all named from one prefix (`sightline` unless configured):

- `<prefix>-sightings-YYYY.MM`: sightings, one index per UTC month of their time, made from one index template,
  so that retention drops a whole month with one cheap index deletion instead of deleting documents one by one;
- `<prefix>-frames` (id = sha256: creating it is the claim that makes ingestion idempotent), `<prefix>-cameras`,
  `<prefix>-plates` (the distinct-plate dictionary with counts, where wildcard and fuzzy plate patterns run, as
  the in-memory PlateDictionary does over SQLite's plates table), `<prefix>-vectors` (every appearance vector,
  so that the kNN indexes can always be rebuilt) and `<prefix>-sequences` (vector and plate ids).

Elasticsearch has no transactions: a frame is first claimed (create, op_type=create, fails for a second writer),
then its sightings, vectors and plate counts are written in one bulk request, then the claim is marked committed.
A write that fails is undone. A worker that dies mid-frame leaves an uncommitted claim: until it is CLAIM_TIMEOUT
old a new delivery of the frame gets FrameBusy (tried again later, never lost), then takes the claim over.

Commit-path writes use refresh="wait_for": the call returns only when a search can see them, so a sighting the
API reports as stored is findable at once, without forcing a refresh per request (a new segment per write, which
would cost the cluster far more). The price is latency, at most one refresh interval (1 s) per frame written.
Queue workers open the store with visible_on_commit=False: a bulk that succeeded is durable (the translog),
which is all an acknowledgement needs, and its sightings become searchable within the refresh interval.
"""
from __future__ import annotations

import base64
import time
from collections import Counter
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import numpy as np
from elasticsearch import ConflictError, Elasticsearch, NotFoundError
from elasticsearch.helpers import BulkIndexError

from indexer.es_common import (
    MAX_TERMS,
    bulk,
    chunks,
    conflicts,
    drop_prefix,
    ensure_index,
    once,
    walk,
    written_ok,
)
from indexer.plate_index import PlateHit
from indexer.store import (
    SCORE_FIELDS,
    AttributeFilter,
    DuplicateFrame,
    FrameRecord,
    Purged,
    ReadColumns,
    RecordStore,
    SightingQuery,
    StoredVector,
    VehicleColumns,
    split_by_dimension,
)
from models.plate_text import CONFUSIONS, PlateMatch, plate_pattern, reader_distance
from models.records import (
    Attributes,
    BBox,
    Camera,
    FaceAttributes,
    PersonAttributes,
    Sighting,
    SightingKind,
    TrackInfo,
    VehicleAttributes,
    attributes_from_dict,
)

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
SETTLE_US = 120_000_000  # a writer commits the ids it took within this (bulk retries back off up to a minute)
# An uncommitted frame claim older than this belongs to a dead writer (a live one commits within a bulk request's
# retries, under a minute); shorter than the queue's re-delivery of a dead worker's frames times its tries.
CLAIM_TIMEOUT = timedelta(minutes=2)
CLAIM_WAIT_S = 30.0  # how long a writer waits for another writer's claim of the same frame to commit
RECOUNT_TRIES = 5  # a plate whose count changed while recounted is counted again, this many times at most
WINDOW = 10_000  # index.max_result_window: from + size beyond it is read with search_after
KEYWORD = {"type": "keyword"}
SCORE = {"type": "float"}
LONG_TEXT = {"type": "keyword", "ignore_above": 1024}  # a longer value is kept in _source, just not as a term
# Confusable plate characters folded to one (the PlateDictionary's _CANON): fuzzy plate search then spends its
# edit distance on real differences, not on 0/O or 8/B, and the candidates are verified with reader_distance.
FOLD_MAPPINGS = [f"{c} => {group[0]}" for group in CONFUSIONS for c in group[1:]]
_FOLD = str.maketrans({c: group[0] for group in CONFUSIONS for c in group[1:]})


class FrameBusy(RuntimeError):
    """Another writer holds the frame's claim and has neither committed nor given it up: try again later (the
    queue re-delivers; a claim older than CLAIM_TIMEOUT is then taken over)."""


def _attribute_properties() -> dict[str, Any]:
    """Explicit mappings of every typed attribute: keywords to filter, floats for scores, booleans."""
    props: dict[str, Any] = {}
    for cls in (VehicleAttributes, PersonAttributes, FaceAttributes):
        for name, f in cls.__dataclass_fields__.items():
            kind = str(f.type)
            props[name] = ({"type": "boolean"} if "bool" in kind else SCORE if "float" in kind and "list" not in kind
                           else {"type": "integer"} if "int" in kind else KEYWORD)
    props["landmarks"] = {"type": "float", "index": False, "doc_values": False}
    props["plate"] = plate_mapping()
    props["plate_raw"] = {"type": "keyword", "index": False}
    return props


def plate_mapping() -> dict[str, Any]:
    """A plate: keyword for exact terms and counts, `wild` (the wildcard field type, n-gram indexed) for `?`/`*`
    and suffix patterns, `folded` (confusions folded by a normalizer) for fuzzy search within an edit distance."""
    return {"type": "keyword", "fields": {"wild": {"type": "wildcard"},
                                          "folded": {"type": "keyword", "normalizer": "plate_fold"}}}


def analysis() -> dict[str, Any]:
    return {"char_filter": {"plate_confusions": {"type": "mapping", "mappings": FOLD_MAPPINGS}},
            "normalizer": {"plate_fold": {"type": "custom", "char_filter": ["plate_confusions"]}}}


def index_settings(shards: int, replicas: int) -> dict[str, Any]:
    return {"number_of_shards": shards, "number_of_replicas": replicas, "analysis": analysis()}


def sighting_mappings() -> dict[str, Any]:
    """dynamic false: an unknown field stays in _source but never grows the mapping (no mapping explosion)."""
    return {"dynamic": False, "properties": {
        "id": KEYWORD, "camera_id": KEYWORD, "kind": KEYWORD, "frame_sha256": KEYWORD, "embedding_space": KEYWORD,
        # date_nanos: microsecond times sort and filter exactly (a `date` keeps milliseconds only)
        "ts": {"type": "date_nanos"},
        "vector_id": {"type": "long"}, "det_score": SCORE,
        "bbox": {"type": "float", "index": False, "doc_values": False},
        "crop": {"type": "keyword", "index": False},
        "attributes": {"dynamic": False, "properties": _attribute_properties()},
        "model_versions": {"type": "object", "enabled": False},
        "track": {"type": "object", "enabled": False}}}


def sightings_template(prefix: str, shards: int = 1, replicas: int = 1) -> dict[str, Any]:
    """The composable index template every monthly sightings index is created from (on its first write)."""
    return {"name": f"{prefix}-sightings", "index_patterns": [f"{prefix}-sightings-*"], "priority": 200,
            "template": {"settings": index_settings(shards, replicas), "mappings": sighting_mappings()},
            "meta": {"owner": "sightline", "why": "monthly sighting indices: retention drops whole months"}}


VECTOR_PROPERTIES: dict[str, Any] = {"space": KEYWORD, "id": {"type": "long"}, "sighting_id": KEYWORD,
                                     "dim": {"type": "integer"},
                                     "vector": {"type": "binary"}}  # float32 bytes: exact and compact


def vector_doc(space: str, vector_id: int, sighting_id: str, vector: np.ndarray) -> dict[str, Any]:
    return {"space": space, "id": vector_id, "sighting_id": sighting_id, "dim": int(vector.shape[-1]),
            "vector": encode_vector(vector)}


def other_indices(prefix: str, replicas: int = 1) -> dict[str, dict[str, Any]]:
    """The indices that are not split by time: name -> create body."""
    def body(properties: dict[str, Any]) -> dict[str, Any]:
        return {"settings": index_settings(1, replicas), "mappings": {"dynamic": False, "properties": properties}}

    return {
        f"{prefix}-cameras": body({"id": KEYWORD,
                                   "name": {"type": "text", "fields": {"raw": LONG_TEXT}},
                                   "location": {"type": "geo_point"}, "lon": {"type": "double"},
                                   "lat": {"type": "double"}, "heading_deg": SCORE, "kind": KEYWORD,
                                   "road": KEYWORD, "tags": KEYWORD}),
        f"{prefix}-frames": body({"camera_id": KEYWORD, "ts": {"type": "date_nanos"}, "source": KEYWORD,
                                  "n_sightings": {"type": "integer"}, "committed": {"type": "boolean"},
                                  "claimed_at": {"type": "date"}}),
        f"{prefix}-plates": body({"plate": plate_mapping(), "rowid": {"type": "long"},
                                  "sightings": {"type": "long"}, "first_us": {"type": "long"},
                                  "last_us": {"type": "long"}, "created_us": {"type": "long"}}),
        f"{prefix}-vectors": body(VECTOR_PROPERTIES),
        f"{prefix}-sequences": body({"value": {"type": "long"}}),
    }


# names and times -------------------------------------------------------------------------------------------
def iso(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def to_us(ts: datetime) -> int:
    return int(round(ts.timestamp() * 1_000_000))


def sighting_index(prefix: str, ts: datetime) -> str:
    """The monthly index a sighting lives in, by its UTC time."""
    return f"{prefix}-sightings-{ts.astimezone(timezone.utc):%Y.%m}"


def month_of(prefix: str, name: str) -> datetime | None:
    """The first instant of the month a sightings index holds, or None for a name that is not one."""
    head = f"{prefix}-sightings-"
    if not name.startswith(head):
        return None
    try:
        return datetime.strptime(name[len(head):], "%Y.%m").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def indices_fully_before(prefix: str, names: list[str], before: datetime) -> list[str]:
    """The monthly indices whose whole month ends at or before `before`: retention deletes them whole."""
    out = []
    for name in names:
        start = month_of(prefix, name)
        if start is None:
            continue
        end = (start + timedelta(days=32)).replace(day=1)
        if end <= before:
            out.append(name)
    return sorted(out)


# documents -------------------------------------------------------------------------------------------------
def sighting_doc(s: Sighting) -> dict[str, Any]:
    return {"id": s.id, "camera_id": s.camera_id, "ts": iso(s.ts), "kind": str(s.kind), "bbox": s.bbox.as_list(),
            "det_score": s.det_score, "crop": s.crop, "frame_sha256": s.frame_sha256,
            "attributes": asdict(s.attributes), "embedding_space": s.embedding_space, "vector_id": s.vector_id,
            "model_versions": s.model_versions, "track": s.track.to_json() if s.track else None}


def sighting_from_doc(src: dict[str, Any]) -> Sighting:
    return Sighting(id=src["id"], camera_id=src["camera_id"], ts=from_iso(src["ts"]), kind=src["kind"],
                    bbox=BBox(*src["bbox"]), det_score=src["det_score"], crop=src.get("crop"),
                    frame_sha256=src.get("frame_sha256"),
                    attributes=attributes_from_dict(src["kind"], src.get("attributes") or {}),
                    embedding_space=src.get("embedding_space"), vector_id=src.get("vector_id"),
                    model_versions=src.get("model_versions") or {},
                    track=TrackInfo.from_json(src["track"]) if src.get("track") else None)


def camera_doc(c: Camera) -> dict[str, Any]:
    return {"id": c.id, "name": c.name, "location": {"lon": c.lon, "lat": c.lat}, "lon": c.lon, "lat": c.lat,
            "heading_deg": c.heading_deg, "kind": str(c.kind), "road": c.road, "tags": c.tags}


def camera_from_doc(src: dict[str, Any]) -> Camera:
    return Camera(id=src["id"], name=src["name"], lon=src["lon"], lat=src["lat"], heading_deg=src.get("heading_deg"),
                  kind=src["kind"], road=src.get("road"), tags=src.get("tags") or [])


def encode_vector(v: np.ndarray) -> str:
    return base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode("ascii")


def decode_vector(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


# queries ---------------------------------------------------------------------------------------------------
def attribute_clauses(f: AttributeFilter) -> list[dict[str, Any]]:
    """Filter clauses of attribute conditions: a tuple of colours is any of them (terms; empty matches nothing),
    and min_confidence asks each filtered attribute's score for at least that (a missing score fails a range)."""
    out: list[dict[str, Any]] = []
    for name, value in f.items():
        field = f"attributes.{name}"
        out.append({"terms": {field: list(value)}} if isinstance(value, tuple) else {"term": {field: value}})
    for name, _ in f.items():
        if f.min_confidence is not None and name in SCORE_FIELDS:
            out.append({"range": {f"attributes.{SCORE_FIELDS[name]}": {"gte": f.min_confidence}}})
    return out


def sighting_filter(q: SightingQuery) -> dict[str, Any]:
    """The bool filter of a sighting query (filter context: no scoring, cacheable)."""
    clauses: list[dict[str, Any]] = []
    if q.kind:
        clauses.append({"term": {"kind": str(q.kind)}})
    if q.camera_ids:
        clauses.append({"terms": {"camera_id": list(q.camera_ids)}})
    if q.start or q.end:
        span: dict[str, str] = {}
        if q.start:
            span["gte"] = iso(q.start)  # start inclusive,
        if q.end:
            span["lt"] = iso(q.end)  # end exclusive, as SQLite
        clauses.append({"range": {"ts": span}})
    if q.plate:
        clauses.append({"term": {"attributes.plate": q.plate}})
    if q.frame_sha256:
        clauses.append({"term": {"frame_sha256": q.frame_sha256}})
    if q.ids is not None:
        clauses.append({"terms": {"id": list(q.ids)}})
    clauses.extend(attribute_clauses(q.attributes))
    return {"bool": {"filter": clauses}}


def sighting_sort(newest_first: bool) -> list[Any]:
    return [{"ts": {"order": "desc" if newest_first else "asc"}}, {"id": {"order": "asc"}}]


def plate_query(text: str, mode: str, max_distance: float = 2.0) -> dict[str, Any]:
    """The query over the plates index for one plate search mode (the pattern normalised as PlateDictionary does)."""
    pattern = plate_pattern(text, mode)
    if mode == PlateMatch.EXACT:
        return {"term": {"plate": pattern}}
    if mode == PlateMatch.SUFFIX:
        return {"wildcard": {"plate.wild": {"value": "*" + _escape_wildcard(pattern)}}}
    if mode == PlateMatch.WILDCARD:  # `?` and `*` mean the same in Elasticsearch; everything else is escaped
        return {"wildcard": {"plate.wild": {"value": "".join(c if c in "?*" else _escape_wildcard(c)
                                                             for c in pattern)}}}
    # fuzzy: folded confusions first, then Levenshtein on the folded keyword; reader_distance verifies after
    return {"fuzzy": {"plate.folded": {"value": pattern.translate(_FOLD), "fuzziness": min(2, int(max_distance)),
                                       "prefix_length": 0, "max_expansions": 1000, "transpositions": True}}}


def _escape_wildcard(text: str) -> str:
    return "".join("\\" + c if c in "\\?*" else c for c in text)


def plate_count_update(index: str, plate: str, n: int, first_us: int, last_us: int, rowid: int,
                       created_us: int = 0) -> dict[str, Any]:
    """A bulk update that counts sightings of a plate, inserting it (with a fresh row id) when it is new."""
    return {"_op_type": "update", "_index": index, "_id": plate, "retry_on_conflict": 10,
            "script": {"lang": "painless", "params": {"n": n, "first": first_us, "last": last_us},
                       "source": "ctx._source.sightings += params.n; "
                                 "ctx._source.first_us = Math.min(ctx._source.first_us, params.first); "
                                 "ctx._source.last_us = Math.max(ctx._source.last_us, params.last)"},
            "upsert": {"plate": plate, "rowid": rowid, "sightings": n, "first_us": first_us, "last_us": last_us,
                       "created_us": created_us}}


def settled_prefix(after: int, ids: list[int], created_us: list[int], now_us: int) -> int:
    """How many of these increasing ids a reader may take: all, up to the first gap that a writer may still fill.

    A gap's ids were taken before any later id. Once a later row is older than SETTLE, whoever took the gap's
    ids has had SETTLE to write them: they are written (and listed), or never will be (a failed or dead writer).
    """
    settled = max((i for i, c in zip(ids, created_us, strict=True) if c < now_us - SETTLE_US), default=after)
    prev = after
    for n, i in enumerate(ids):
        if i > prev + 1 and i - 1 > settled:
            return n
        prev = i
    return len(ids)


def recount_action(index: str, plate: str, n: int, seq_no: int, primary_term: int) -> dict[str, Any]:
    """A plate's recounted sightings (deleted at none), applied only if the document is unchanged since read."""
    guard = {"_index": index, "_id": plate, "if_seq_no": seq_no, "if_primary_term": primary_term}
    return {**guard, "_op_type": "update", "doc": {"sightings": n}} if n else {**guard, "_op_type": "delete"}


def plate_uncount_update(index: str, plate: str, n: int) -> dict[str, Any]:
    """A bulk update that takes deleted sightings off a plate's count and drops the plate at zero."""
    return {"_op_type": "update", "_index": index, "_id": plate, "retry_on_conflict": 10,
            "script": {"lang": "painless", "params": {"n": n},
                       "source": "ctx._source.sightings -= params.n; "
                                 "if (ctx._source.sightings <= 0) { ctx.op = 'delete' }"}}


class ElasticsearchStore(RecordStore):
    """Sightings, frames, cameras, plates and vectors in an Elasticsearch cluster (see the module's notes)."""

    def __init__(self, client: Elasticsearch, prefix: str = "sightline", shards: int = 1, replicas: int = 1,
                 visible_on_commit: bool = True):
        self.client, self.prefix = client, prefix
        # A queue worker answers nobody: its commits need to be durable (the bulk's success), not searchable at
        # once, so it skips the refresh wait that would cap it at about one frame per refresh interval.
        self.commit_refresh: str | bool = "wait_for" if visible_on_commit else False
        self.sightings = f"{prefix}-sightings-*"
        self.frames, self.cameras = f"{prefix}-frames", f"{prefix}-cameras"
        self.plates, self.vectors, self.sequences = f"{prefix}-plates", f"{prefix}-vectors", f"{prefix}-sequences"
        self.client.indices.put_index_template(**sightings_template(prefix, shards, replicas))
        for name, body in other_indices(prefix, replicas).items():
            if not ensure_index(client, name, body) and name == self.vectors:
                # an index made by an earlier release: map the fields added since (adding fields is allowed)
                client.indices.put_mapping(index=name, properties=VECTOR_PROPERTIES)

    # ids -----------------------------------------------------------------------------------------------------
    def _allocate(self, name: str, n: int) -> int:
        """Take n numbers of a sequence and return the last: an atomic scripted update on one document, so two
        writers never get the same number, and numbers are never given twice (deletions never lower it)."""
        resp = once(self.client).update(index=self.sequences, id=name, retry_on_conflict=20, source=True,
                                        script={"source": "ctx._source.value += params.n", "params": {"n": n}},
                                        upsert={"value": n})
        got = (resp.get("get") or {}).get("_source")
        if got is not None:
            return int(got["value"])
        if resp.get("result") == "created":  # the upsert made the sequence: it starts at n
            return n
        raise RuntimeError(f"sequence {name}: the update returned no value ({resp.get('result')})")

    # cameras -------------------------------------------------------------------------------------------------
    def upsert_cameras(self, cameras: list[Camera]) -> int:
        bulk(self.client, ({"_index": self.cameras, "_id": c.id, "_source": camera_doc(c)} for c in cameras),
             refresh="wait_for")
        return len(cameras)

    def get_camera(self, camera_id: str) -> Camera | None:
        try:
            return camera_from_doc(self.client.get(index=self.cameras, id=camera_id)["_source"])
        except NotFoundError:
            return None

    def list_cameras(self) -> list[Camera]:
        return [camera_from_doc(h["_source"]) for h in walk(self.client, self.cameras, {"match_all": {}},
                                                            [{"id": "asc"}])]

    # frames and sightings ------------------------------------------------------------------------------------
    def has_frame(self, sha256: str) -> bool:
        try:
            return bool(self.client.get(index=self.frames, id=sha256)["_source"].get("committed"))
        except NotFoundError:
            return False

    def _claim(self, frame: FrameRecord, n: int) -> None:
        """Create the frame's document, uncommitted. Another writer's committed frame is a DuplicateFrame; its
        claim still being written is waited for (as SQLite waits for its write lock); a claim older than
        CLAIM_TIMEOUT belonged to a writer that died, and is taken over."""
        doc = {"camera_id": frame.camera_id, "ts": iso(frame.ts), "source": frame.source, "n_sightings": n,
               "committed": False, "claimed_at": iso(datetime.now(timezone.utc))}
        deadline = time.monotonic() + CLAIM_WAIT_S
        while True:
            try:
                self.client.create(index=self.frames, id=frame.sha256, document=doc)
                return
            except ConflictError:
                pass
            try:
                held = self.client.get(index=self.frames, id=frame.sha256)
            except NotFoundError:
                continue  # its writer gave it up meanwhile: claim it again
            src = held["_source"]
            if src.get("committed"):
                raise DuplicateFrame(frame.sha256)
            if from_iso(src["claimed_at"]) < datetime.now(timezone.utc) - CLAIM_TIMEOUT:
                try:  # a dead writer's claim: take it over, unless another writer just did
                    self.client.index(index=self.frames, id=frame.sha256, document=doc, if_seq_no=held["_seq_no"],
                                      if_primary_term=held["_primary_term"])
                    return
                except ConflictError:
                    continue
            if time.monotonic() > deadline:
                raise FrameBusy(f"frame {frame.sha256} is being written by another writer since {src['claimed_at']}; "
                                "try again later")
            time.sleep(0.2)

    def add_frame(self, frame: FrameRecord, sightings: list[Sighting], vectors: list[StoredVector]) -> None:
        """Claim the frame, then write its vectors, sightings and plate counts in one bulk request that waits for
        a refresh (one wait per frame), then mark the claim committed (read by id, so it needs no refresh)."""
        if len({s.id for s in sightings}) != len(sightings):
            raise ValueError(f"frame {frame.sha256}: two of its sightings share an id")
        self._claim(frame, len(sightings))
        by_id = {s.id: s for s in sightings}
        spans = _plate_spans(sightings)
        written: list[tuple[str, str, str]] = []
        in_doubt: list[dict[str, Any]] = []
        try:
            actions: list[dict[str, Any]] = []
            for space, count in Counter(v.space for v in vectors).items():
                next_id = self._allocate(f"vectors-{space}", count) - count + 1
                for v in (v for v in vectors if v.space == space):
                    by_id[v.sighting_id].vector_id, by_id[v.sighting_id].embedding_space = next_id, space
                    actions.append({"_op_type": "create", "_index": self.vectors, "_id": f"{space}:{next_id}",
                                    "_source": vector_doc(space, next_id, v.sighting_id, v.vector)})
                    next_id += 1
            actions += self._sighting_actions(sightings) + self._plate_actions(spans)
            self._commit(actions, written, in_doubt, self.commit_refresh)
            self.client.update(index=self.frames, id=frame.sha256, doc={"committed": True})
        except BaseException:
            self._undo(written, spans, claim=frame.sha256, in_doubt=in_doubt)
            raise

    def _commit(self, actions: list[dict[str, Any]], written: list[tuple[str, str, str]],
                in_doubt: list[dict[str, Any]], refresh: bool | str) -> None:
        """Send a commit's actions once (plate counts are increments: es_common.once). When no answer came (a
        timeout), every action goes to `in_doubt`: any of them may have been applied."""
        try:
            written_ok(once(self.client), actions, written, refresh=refresh)
        except BulkIndexError:
            raise  # every action answered: `written` is exact
        except BaseException:
            in_doubt.extend(actions)
            raise

    def _undo(self, written: list[tuple[str, str, str]], spans: dict[str, list[int]], claim: str | None,
              in_doubt: list[dict[str, Any]] | None = None) -> None:
        """Best effort after a failed write: remove the documents it created, take back the plate counts it
        added, then release the frame's claim. When the outcome of some actions is unknown (`in_doubt`), their
        documents are deleted all the same (each has an id this writer made: a random sighting id, a vector id
        it allocated) and the plates are recounted, never decremented (an increment may not have happened)."""
        undo: list[dict[str, Any]] = []
        for op, index, doc_id in written:
            if op in ("index", "create"):
                undo.append({"_op_type": "delete", "_index": index, "_id": doc_id})
            elif op == "update" and index == self.plates and not in_doubt:
                undo.append(plate_uncount_update(self.plates, doc_id, spans[doc_id][0]))
        undo += [{"_op_type": "delete", "_index": a["_index"], "_id": a["_id"]} for a in in_doubt or ()
                 if a["_op_type"] == "create"]
        try:
            bulk(once(self.client), undo, refresh="wait_for", ignore_status=(404,))
            if in_doubt:
                self._recount_plates(sorted(spans))
            if claim is not None:
                self.client.options(ignore_status=404).delete(index=self.frames, id=claim, refresh="wait_for")
        except Exception:  # noqa: BLE001 - the original error is the one to report; the claim then times out
            pass

    def _sighting_actions(self, sightings: list[Sighting]) -> list[dict[str, Any]]:
        """Create actions (a sighting id stored already is refused, as SQLite's primary key does)."""
        return [{"_op_type": "create", "_index": sighting_index(self.prefix, s.ts), "_id": s.id,
                 "_source": sighting_doc(s)} for s in sightings]

    def _plate_actions(self, plates: dict[str, list[int]]) -> list[dict[str, Any]]:
        """Count updates; row ids are taken for the plates not stored yet only, so that ids rarely go unused
        (plates_after reads a gap as a writer still at work). A plate purged between this look-up and the update
        comes back with row id 0, which plates_after never offers: its count stays right, the dictionary of a
        process started later misses it until it is seen again after another purge."""
        if not plates:
            return []
        docs = self.client.mget(index=self.plates, ids=sorted(plates), source=False)["docs"]
        new = sorted(d["_id"] for d in docs if not d.get("found"))
        rowids = dict.fromkeys(plates, 0)
        if new:
            last = self._allocate("plates", len(new))
            rowids.update({plate: last - len(new) + 1 + i for i, plate in enumerate(new)})
        now = to_us(datetime.now(timezone.utc))
        return [plate_count_update(self.plates, plate, n, first, latest, rowids[plate], now)
                for plate, (n, first, latest) in sorted(plates.items())]

    def add_sightings(self, sightings: list[Sighting]) -> None:
        spans = _plate_spans(sightings)
        written: list[tuple[str, str, str]] = []
        in_doubt: list[dict[str, Any]] = []
        try:
            self._commit(self._sighting_actions(sightings) + self._plate_actions(spans), written, in_doubt,
                         "wait_for")
        except BaseException:
            self._undo(written, spans, claim=None, in_doubt=in_doubt)
            raise

    def add_vehicle_columns(self, columns: VehicleColumns) -> None:
        """A bulk load: no refresh per chunk (the cluster would make a segment each time), one at the end."""
        c = columns

        def sightings() -> Iterator[Sighting]:
            for sid, cam, ts, plate, score, color, vtype in zip(
                    c.ids, c.camera_ids, c.ts_us.tolist(), c.plates, c.plate_scores.tolist(), c.vehicle_colors,
                    c.vehicle_types, strict=True):
                yield Sighting(sid, cam, EPOCH + timedelta(microseconds=ts), SightingKind.VEHICLE,
                               BBox(0, 0, 0, 0), 1.0, VehicleAttributes(plate=plate, plate_score=score,
                                                                        vehicle_type=vtype, vehicle_color=color))

        plates: dict[str, list[int]] = {}
        for plate, ts in zip(c.plates, c.ts_us.tolist(), strict=True):
            _span(plates, plate, ts)
        actions = ({"_op_type": "create", "_index": sighting_index(self.prefix, s.ts), "_id": s.id,
                    "_source": sighting_doc(s)} for s in sightings())
        bulk(once(self.client), actions)
        bulk(once(self.client), self._plate_actions(plates))
        self.client.indices.refresh(index=[self.sightings, self.plates], ignore_unavailable=True)

    # plates --------------------------------------------------------------------------------------------------
    def plates_after(self, after_rowid: int) -> list[tuple[int, str, int]]:
        """The plates past a row id, stopping before a gap that a writer may still fill: row ids are taken before
        the write, so with several writers id 7 can land after id 8, and a caller's watermark must not pass 7."""
        hits = [h["_source"] for h in walk(self.client, self.plates, {"range": {"rowid": {"gt": after_rowid}}},
                                           [{"rowid": "asc"}], source=["rowid", "plate", "sightings", "created_us"])]
        rows = [(int(h["rowid"]), h["plate"], int(h["sightings"])) for h in hits]
        return rows[:settled_prefix(after_rowid, [r[0] for r in rows], [int(h.get("created_us", 0)) for h in hits],
                                    to_us(datetime.now(timezone.utc)))]

    def plate_counts(self, plates: list[str]) -> dict[str, int]:
        if not plates:
            return {}
        docs = self.client.mget(index=self.plates, ids=list(plates))["docs"]
        return {d["_id"]: int(d["_source"]["sightings"]) for d in docs if d.get("found")}

    def search_plates(self, text: str, mode: str, limit: int = 50, max_distance: float = 2.0) -> list[PlateHit]:
        """Plate patterns answered by the cluster over the distinct plates (not yet used by SearchService, which
        keeps its in-memory dictionary fed by plates_after); fuzzy candidates are verified as PlateDictionary does."""
        query = plate_query(text, mode, max_distance)
        if mode != PlateMatch.FUZZY:
            hits = self.client.search(index=self.plates, query=query, size=limit, sort=[{"plate": "asc"}],
                                      source_includes=["plate"])["hits"]["hits"]
            return [PlateHit(h["_source"]["plate"], 1.0) for h in hits]
        # Every fuzzy candidate is verified before any is cut: sorted by plate, a cut would keep the plates
        # that sort first, not the nearest (the query's expansions bound how many there are).
        plates = [h["_source"]["plate"] for h in walk(self.client, self.plates, query, [{"plate": "asc"}],
                                                      source=["plate"])]
        pattern = plate_pattern(text, mode)
        found = []
        for p in plates:
            d = reader_distance(pattern, p, max_distance)
            if d <= max_distance:
                found.append(PlateHit(p, round(1.0 - d / (max_distance + 1), 3), d))
        return sorted(found, key=lambda m: (m.distance, m.plate))[:limit]

    def plate_names(self, plate_ids: list[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        for part in chunks([int(p) for p in plate_ids], WINDOW):
            for h in walk(self.client, self.plates, {"terms": {"rowid": list(part)}}, [{"rowid": "asc"}],
                          source=["rowid", "plate"]):
                out[int(h["_source"]["rowid"])] = h["_source"]["plate"]
        return out

    # reads ---------------------------------------------------------------------------------------------------
    def get_sighting(self, sighting_id: str) -> Sighting | None:
        found = self.get_sightings([sighting_id])
        return found[0] if found else None

    def get_sightings(self, ids: list[str]) -> list[Sighting]:
        by_id: dict[str, Sighting] = {}
        for part in chunks(list(ids), WINDOW):
            for h in walk(self.client, self.sightings, {"ids": {"values": list(part)}}, [{"id": "asc"}]):
                by_id[h["_source"]["id"]] = sighting_from_doc(h["_source"])
        return [by_id[i] for i in ids if i in by_id]

    def query(self, q: SightingQuery) -> list[Sighting]:
        query, sort = sighting_filter(q), sighting_sort(q.newest_first)
        if q.offset + q.limit <= WINDOW:
            hits = self.client.search(index=self.sightings, query=query, sort=sort, from_=q.offset, size=q.limit,
                                      ignore_unavailable=True, allow_no_indices=True)["hits"]["hits"]
        else:  # deep pages: walk past the offset with search_after
            hits = []
            for i, h in enumerate(walk(self.client, self.sightings, query, sort)):
                if i >= q.offset + q.limit:
                    break
                if i >= q.offset:
                    hits.append(h)
        return [sighting_from_doc(h["_source"]) for h in hits]

    def count(self, kind: str | None = None) -> int:
        query = {"term": {"kind": kind}} if kind else {"match_all": {}}
        return int(self.client.count(index=self.sightings, query=query, ignore_unavailable=True,
                                     allow_no_indices=True)["count"])

    def camera_window(self, camera_id: str, start: datetime, end: datetime, kind: str = "vehicle"
                      ) -> list[tuple[str, str | None, datetime]]:
        query = {"bool": {"filter": [{"term": {"camera_id": camera_id}}, {"term": {"kind": kind}},
                                     {"range": {"ts": {"gte": iso(start), "lte": iso(end)}}}]}}
        return [(h["_source"]["id"], (h["_source"].get("attributes") or {}).get("plate"), from_iso(h["_source"]["ts"]))
                for h in walk(self.client, self.sightings, query, sighting_sort(False),
                              source=["id", "ts", "attributes.plate"])]

    def plate_read_columns(self, start: datetime | None, end: datetime | None, min_score: float,
                           batch: int = 1_000_000) -> Iterator[ReadColumns]:
        """Plate reads in time order, read with search_after (no snapshot: reads committed meanwhile may join)."""
        clauses: list[dict[str, Any]] = [{"exists": {"field": "attributes.plate"}},
                                         {"range": {"attributes.plate_score": {"gte": min_score}}}]
        if start or end:
            span = {**({"gte": iso(start)} if start else {}), **({"lt": iso(end)} if end else {})}
            clauses.append({"range": {"ts": span}})
        plate_ids = {h["_source"]["plate"]: int(h["_source"]["rowid"])
                     for h in walk(self.client, self.plates, {"match_all": {}}, [{"rowid": "asc"}])}
        cameras = {c.id: (c.lon, c.lat) for c in self.list_cameras()}
        rows: list[tuple[int, float, float, int]] = []
        for h in walk(self.client, self.sightings, {"bool": {"filter": clauses}}, sighting_sort(False),
                      source=["camera_id", "ts", "attributes.plate"]):
            src = h["_source"]
            pid, where = plate_ids.get(src["attributes"]["plate"]), cameras.get(src["camera_id"])
            if pid is not None and where is not None:
                rows.append((pid, where[0], where[1], to_us(from_iso(src["ts"]))))
            if len(rows) >= batch:
                yield _columns(rows)
                rows = []
        if rows:
            yield _columns(rows)

    # vectors -------------------------------------------------------------------------------------------------
    def vectors_after(self, space: str, after_id: int, batch: int = 10_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        query = {"bool": {"filter": [{"term": {"space": space}}, {"range": {"id": {"gt": after_id}}}]}}
        ids: list[int] = []
        vectors: list[np.ndarray] = []
        for h in walk(self.client, self.vectors, query, [{"id": "asc"}], source=["id", "vector"],
                      page=min(batch, WINDOW)):
            ids.append(int(h["_source"]["id"]))
            vectors.append(decode_vector(h["_source"]["vector"]))
            if len(ids) == batch:
                yield from split_by_dimension(np.array(ids, np.int64), vectors)
                ids, vectors = [], []
        if ids:
            yield from split_by_dimension(np.array(ids, np.int64), vectors)

    def replace_vectors(self, vectors: list[StoredVector], model: str) -> int:
        """New vector documents and the sightings pointed at them first, the old documents deleted after: a crash
        between the two leaves an old vector no sighting points at, which a purge of its sighting never finds but
        which no index of the new dimension takes in either."""
        held: dict[str, dict[str, Any]] = {}
        for part in chunks([v.sighting_id for v in vectors], WINDOW):
            for h in walk(self.client, self.sightings, {"ids": {"values": list(part)}}, [{"id": "asc"}],
                          source=["id", "embedding_space", "vector_id"]):
                held[h["_source"]["id"]] = h
        todo = [v for v in vectors if v.sighting_id in held]
        actions: list[dict[str, Any]] = []
        for space, count in Counter(v.space for v in todo).items():
            next_id = self._allocate(f"vectors-{space}", count) - count + 1
            for v in (v for v in todo if v.space == space):
                actions.append({"_op_type": "create", "_index": self.vectors, "_id": f"{space}:{next_id}",
                                "_source": vector_doc(space, next_id, v.sighting_id, v.vector)})
                hit = held[v.sighting_id]
                actions.append({"_op_type": "update", "_index": hit["_index"], "_id": hit["_id"],
                                "doc": {"embedding_space": space, "vector_id": next_id,
                                        "model_versions": {"embedding": model}}})  # merged into the object
                next_id += 1
        bulk(once(self.client), actions, refresh="wait_for")  # creates: a replay would be refused
        old = [(src["embedding_space"], src["vector_id"]) for h in held.values()
               if (src := h["_source"]).get("embedding_space") and src.get("vector_id") is not None]
        bulk(self.client, [{"_op_type": "delete", "_index": self.vectors, "_id": f"{space}:{i}"} for space, i in old],
             refresh="wait_for", ignore_status=(404,))
        return len(todo)

    def stale_vectors(self, space: str, model: str, batch: int = 10_000) -> Iterator[list[int]]:
        # model_versions is not indexed (an object kept in _source only): the space's sightings are walked with
        # that small part of their source, never their vectors
        stale: list[int] = []
        for h in walk(self.client, self.sightings, {"term": {"embedding_space": space}}, [{"id": "asc"}],
                      source=["vector_id", "model_versions"], page=min(batch, WINDOW)):
            src = h["_source"]
            if src.get("vector_id") is not None and (src.get("model_versions") or {}).get("embedding") != model:
                stale.append(int(src["vector_id"]))
                if len(stale) >= batch:
                    yield stale
                    stale = []
        if stale:
            yield stale

    def stale_attributes(self, kind: str, version: str, batch: int = 1_000) -> Iterator[list[str]]:
        # model_versions is not indexed (as in stale_vectors): the kind's sightings are walked with it alone
        stale: list[str] = []
        for h in walk(self.client, self.sightings, {"term": {"kind": kind}}, [{"id": "asc"}],
                      source=["id", "model_versions"], page=min(batch, WINDOW)):
            src = h["_source"]
            if (src.get("model_versions") or {}).get("attributes") != version:
                stale.append(src["id"])
                if len(stale) >= batch:
                    yield stale
                    stale = []
        if stale:
            yield stale

    def replace_attributes(self, updates: list[tuple[str, Attributes]], version: str) -> int:
        """One partial update per sighting: the attributes object replaced field by field (every field is sent,
        None included), `model_versions.attributes` merged in beside the embedding's."""
        held: dict[str, dict[str, Any]] = {}
        for part in chunks([sid for sid, _ in updates], WINDOW):
            for h in walk(self.client, self.sightings, {"ids": {"values": list(part)}}, [{"id": "asc"}], source=["id"]):
                held[h["_source"]["id"]] = h
        actions = [{"_op_type": "update", "_index": held[sid]["_index"], "_id": held[sid]["_id"],
                    "doc": {"attributes": asdict(attributes), "model_versions": {"attributes": version}}}
                   for sid, attributes in updates if sid in held]
        bulk(self.client, actions, refresh="wait_for")
        return len(actions)

    def _vector_docs(self, space: str, vector_ids: list[int]) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = []
        for part in chunks([int(i) for i in vector_ids], WINDOW):
            resp = self.client.mget(index=self.vectors, ids=[f"{space}:{i}" for i in part])
            docs += [d["_source"] for d in resp["docs"] if d.get("found")]
        return docs

    def sighting_ids_for_vectors(self, space: str, vector_ids: list[int]) -> dict[int, str]:
        return {int(d["id"]): d["sighting_id"] for d in self._vector_docs(space, vector_ids)}

    def get_vectors(self, space: str, vector_ids: list[int]) -> dict[int, np.ndarray]:
        return {int(d["id"]): decode_vector(d["vector"]) for d in self._vector_docs(space, vector_ids)}

    def vector_ids(self, space: str) -> np.ndarray:
        return np.array([int(h["_source"]["id"]) for h in walk(self.client, self.vectors,
                                                                {"term": {"space": space}}, [{"id": "asc"}],
                                                                source=["id"])], dtype=np.int64)

    def vector_count(self, space: str, dim: int | None = None) -> int:
        """Of one dimension: the documents that record it (those written before `dim` was stored count as
        another dimension, so an index opening compares ids in full rather than miss a deletion)."""
        query: dict[str, Any] = {"term": {"space": space}}
        if dim is not None:
            query = {"bool": {"filter": [query, {"term": {"dim": dim}}]}}
        return int(self.client.count(index=self.vectors, query=query)["count"])

    # deletion ------------------------------------------------------------------------------------------------
    def delete_sightings(self, before: datetime | None = None, camera_ids: list[str] | None = None,
                         ids: list[str] | None = None, batch: int = 10_000) -> Purged:
        """By ids, or by time: months wholly before `before` are read for what retention must clean up and then
        dropped as whole indices; the month at the edge is deleted in batches (delete by id after a search)."""
        if (before is None) == (ids is None):
            raise ValueError("delete by time (before) or by ids, one of the two")
        total = Purged()
        if ids is not None:
            for part in chunks(list(ids), min(batch, WINDOW)):
                total.merge(self._delete_hits(list(walk(self.client, self.sightings, {"ids": {"values": list(part)}},
                                                        [{"id": "asc"}]))))
            return total
        assert before is not None
        if not camera_ids:
            names = list(self.client.indices.get(index=self.sightings, allow_no_indices=True,
                                                 ignore_unavailable=True))
            for name in indices_fully_before(self.prefix, names, before):
                total.merge(self._drop_month(name, batch))
        query = sighting_filter(SightingQuery(camera_ids=camera_ids, end=before))
        while True:
            hits = self.client.search(index=self.sightings, query=query, size=min(batch, WINDOW),
                                      sort=sighting_sort(False), ignore_unavailable=True,
                                      allow_no_indices=True)["hits"]["hits"]
            if not hits:
                break
            total.merge(self._delete_hits(hits))
        empty = [{"range": {"ts": {"lt": iso(before)}}}, {"term": {"n_sightings": 0}}]
        if camera_ids:
            empty.append({"terms": {"camera_id": list(camera_ids)}})
        total.frames += int(self.client.delete_by_query(index=self.frames, query={"bool": {"filter": empty}},
                                                        refresh=True, conflicts="proceed")["deleted"])
        return total

    def _drop_month(self, name: str, batch: int) -> Purged:
        """Read a whole month for what retention must clean up (crops, vectors, frames), delete its vectors and
        the frames it leaves empty, recount its plates from the other months, then drop the index. Every step can
        be repeated after a crash (a recount, unlike a decrement, is never applied twice), and the month stays
        until its plates are recounted: dropped first, a crash would lose the list of plates to recount."""
        done, plates, hits = Purged(), set(), []
        for h in walk(self.client, name, {"match_all": {}}, [{"id": "asc"}]):
            hits.append(h)
            if len(hits) >= batch:
                done.merge(self._delete_hits(hits, documents=False))
                plates |= _plates_of(hits)
                hits = []
        done.merge(self._delete_hits(hits, documents=False))
        plates |= _plates_of(hits)
        self._recount_plates(sorted(plates), without=name)
        self.client.indices.delete(index=name)
        return done

    def _recount_plates(self, plates: list[str], without: str | None = None) -> None:
        """Set each plate's count to the sightings that remain (outside the index `without`, about to be dropped);
        drop the plates none remain of.

        Each plate document is read (its sequence number) before the sightings are counted and written only if
        unchanged since: a sighting counted in meanwhile by another writer makes the write a conflict, and that
        plate is counted again, rather than the recount overwriting the increment."""
        todo = list(plates)
        for _ in range(RECOUNT_TRIES):
            if not todo:
                return
            changed: list[str] = []
            for part in chunks(todo, WINDOW):
                seen = {d["_id"]: (d["_seq_no"], d["_primary_term"])
                        for d in self.client.mget(index=self.plates, ids=list(part), source=False)["docs"]
                        if d.get("found")}
                if not seen:
                    continue
                self.client.indices.refresh(index=self.sightings, ignore_unavailable=True, allow_no_indices=True)
                counts = self._plate_counts(sorted(seen), without)
                changed += conflicts(self.client, (recount_action(self.plates, p, counts.get(p, 0), *seen[p])
                                                   for p in sorted(seen)))
            todo = changed
        raise RuntimeError(f"plate counts kept changing while recounted: {todo[:5]}")

    def _plate_counts(self, plates: list[str], without: str | None) -> dict[str, int]:
        """Sightings per plate in the sightings indices (but `without`)."""
        query: dict[str, Any] = {"terms": {"attributes.plate": plates}}
        if without is not None:
            query = {"bool": {"filter": [query], "must_not": [{"term": {"_index": without}}]}}
        resp = self.client.search(index=self.sightings, size=0, ignore_unavailable=True, allow_no_indices=True,
                                  query=query,
                                  aggs={"plates": {"terms": {"field": "attributes.plate", "size": len(plates)}}})
        buckets = resp.get("aggregations", {}).get("plates", {}).get("buckets", [])
        return {b["key"]: int(b["doc_count"]) for b in buckets}

    def _delete_hits(self, hits: list[dict[str, Any]], documents: bool = True) -> Purged:
        """Delete sightings (unless their whole index goes next) with their vectors and plate counts, then the
        frames they leave empty; returns what retention must clean up outside the store."""
        if not hits:
            return Purged()
        sources = [h["_source"] for h in hits]
        done = Purged(sightings=len(hits), crops=[s["crop"] for s in sources if s.get("crop")])
        for s in sources:
            if s.get("embedding_space") and s.get("vector_id") is not None:
                done.vectors.setdefault(s["embedding_space"], []).append(int(s["vector_id"]))
        actions: list[dict[str, Any]] = [{"_op_type": "delete", "_index": self.vectors, "_id": f"{space}:{i}"}
                                         for space, vids in done.vectors.items() for i in vids]
        if documents:  # (a month dropped whole has its plates recounted instead)
            plates = Counter(p for s in sources if (p := (s.get("attributes") or {}).get("plate")))
            actions += [plate_uncount_update(self.plates, p, n) for p, n in sorted(plates.items())]
            actions += [{"_op_type": "delete", "_index": h["_index"], "_id": h["_id"]} for h in hits]
        bulk(once(self.client), actions, refresh="wait_for", ignore_status=(404,))
        frames = sorted({s["frame_sha256"] for s in sources if s.get("frame_sha256")})
        if frames:
            remaining = self._frames_with_sightings(frames, skip_index=None if documents else hits[0]["_index"])
            gone = [f for f in frames if f not in remaining]
            for part in chunks(gone, MAX_TERMS):
                done.frames += int(self.client.delete_by_query(index=self.frames, query={"ids": {"values": list(part)}},
                                                               refresh=True, conflicts="proceed")["deleted"])
        return done

    def _frames_with_sightings(self, frames: list[str], skip_index: str | None) -> set[str]:
        """The frames that still hold a sighting (outside `skip_index`, an index about to be dropped whole)."""
        found: set[str] = set()
        for part in chunks(frames, WINDOW):
            clauses: dict[str, Any] = {"filter": [{"terms": {"frame_sha256": list(part)}}]}
            if skip_index:
                clauses["must_not"] = [{"term": {"_index": skip_index}}]
            resp = self.client.search(index=self.sightings, query={"bool": clauses}, size=0,
                                      aggs={"frames": {"terms": {"field": "frame_sha256", "size": len(part)}}},
                                      ignore_unavailable=True, allow_no_indices=True)
            found |= {b["key"] for b in resp.get("aggregations", {}).get("frames", {}).get("buckets", [])}
        return found

    def drop(self) -> None:
        """Delete every index and the template of this prefix (the tests' clean-up). By name: Elasticsearch 8
        refuses wildcard deletions (action.destructive_requires_name)."""
        drop_prefix(self.client, self.prefix)
        self.client.options(ignore_status=404).indices.delete_index_template(name=f"{self.prefix}-sightings")

    def close(self) -> None:
        self.client.close()


def _columns(rows: list[tuple[int, float, float, int]]) -> ReadColumns:
    pid, lon, lat, ts = zip(*rows, strict=True)
    return ReadColumns(np.array(pid, np.int64), np.array(lon), np.array(lat), np.array(ts, np.int64))


def _plates_of(hits: list[dict[str, Any]]) -> set[str]:
    return {p for h in hits if (p := (h["_source"].get("attributes") or {}).get("plate"))}


def _span(plates: dict[str, list[int]], plate: str, us: int) -> None:
    """Count one read of a plate into [sightings, first_us, last_us]."""
    seen = plates.setdefault(plate, [0, us, us])
    seen[0], seen[1], seen[2] = seen[0] + 1, min(seen[1], us), max(seen[2], us)


def _plate_spans(sightings: list[Sighting]) -> dict[str, list[int]]:
    plates: dict[str, list[int]] = {}
    for s in sightings:
        plate = getattr(s.attributes, "plate", None)
        if plate:
            _span(plates, plate, to_us(s.ts))
    return plates
