"""Elasticsearch kNN vector index: one index per embedding space, `dense_vector` with HNSW, ids = the store's ids.

As with FAISS, the record store keeps every vector and this index is a cache of it: on open it catches up on
what the store holds past its highest id and drops what the store deleted. It lives in the cluster, so every
API replica and worker shares it; save() has nothing to write.

Search follows the FAISS backend's rules so that both pass one contract: up to `exact_limit` vectors, and for
any filter of at most EXACT_FILTER ids, an exact brute-force script_score query (true nearest, however narrow
the filter); past that, approximate kNN on the HNSW graph with the filter applied inside the graph search
(Elasticsearch's filtered kNN, which still returns k hits when k match). Either way the candidates come back as
ids, are read from the record store as float vectors and scored here as inner products, so scores are exact
cosines of unit vectors, not the index's (int8-quantised, (1+cos)/2-scaled) scores, and a few extra candidates
re-ranked this way recover what quantisation misorders. (The index's own `_source` is not read for vectors:
Elasticsearch 9.2 leaves dense vectors out of it by default.)
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
from elasticsearch import AuthorizationException, Elasticsearch

from indexer.es_common import MAX_TERMS, bulk, chunks, ensure_index, walk
from indexer.store import RecordStore
from indexer.vectors import EXACT_LIMIT, VectorIndex, rerank_on_store

EXACT_FILTER = 10_000  # a filter this narrow is searched exactly: brute force over it is cheap for the cluster
MAX_K = 10_000  # Elasticsearch's limit on k and num_candidates
HOLE_WINDOW = 1_000  # how far below the newest id a gap can be a writer still at work (ids taken before writes)
HOLE_TTL = 300.0  # seconds a gap is looked up again: longer than any commit takes (bulk back-off is ≤ 60 s)
HNSW = {"m": 16, "ef_construction": 100}  # Elasticsearch's defaults: good recall at modest build cost
# Candidates fetched per hit kept, re-ranked on the float vectors: the coarser the index's quantisation, the more
# (3 for BBQ is Elasticsearch's own default oversampling for it).
OVERSAMPLE = {"hnsw": 2, "int8_hnsw": 2, "bbq_hnsw": 3}
INT8_SINCE, BBQ_SINCE = (8, 12), (8, 18)  # the cluster versions that take int8_hnsw, and bbq_hnsw as GA
BBQ_MIN_DIM = 64  # below it binary quantisation keeps too little of a vector


def index_type(space: str, dim: int, version: tuple[int, int]) -> str:
    """The kNN index a space gets on a cluster of this version. bbq_hnsw keeps a bit per dimension in memory
    (32x less than float) and int8_hnsw a byte (4x less); recall is recovered by re-ranking oversampled candidates
    on the float vectors. The 128-d faces stay float: their match threshold (cosine 0.92, a narrow margin) is the
    least tolerant of quantisation, and they are small."""
    if space == "face":
        return "hnsw"
    if version >= BBQ_SINCE and dim >= BBQ_MIN_DIM:
        return "bbq_hnsw"
    return "int8_hnsw" if version >= INT8_SINCE else "hnsw"


def cluster_version(client: Elasticsearch) -> tuple[int, int]:
    """(major, minor) the cluster reports; (0, 0) when it does not say (no quantised index is then assumed). A
    key not allowed to ask (`monitor`) is taken as INT8_SINCE: older clusters then refuse the index by name."""
    try:
        number = str(client.info().get("version", {}).get("number", "0.0"))
    except AuthorizationException:
        return INT8_SINCE
    try:
        major, minor = (int(x) for x in number.split(".")[:2])
    except ValueError:
        return (0, 0)
    return (major, minor)


def knn_index_body(space: str, dim: int, replicas: int = 1, version: tuple[int, int] = BBQ_SINCE) -> dict[str, Any]:
    """The index of one space: `cosine` (Sightline's vectors are unit length, so cosine is their inner product,
    and unlike dot_product a vector a little off unit length is not refused)."""
    options = {"type": index_type(space, dim, version), **HNSW}
    return {"settings": {"number_of_shards": 1, "number_of_replicas": replicas},
            "mappings": {"dynamic": False, "properties": {
                "id": {"type": "long"},
                "vec": {"type": "dense_vector", "dims": dim, "index": True, "similarity": "cosine",
                        "index_options": options}}}}


def num_candidates(k: int) -> int:
    """HNSW candidates per shard: ten times the hits wanted (at least 100): recall ~0.95+ at HNSW's defaults."""
    return min(MAX_K, max(100, 10 * k))


def knn_body(query: np.ndarray, k: int, allowed: np.ndarray | None = None, oversample: int = 2) -> dict[str, Any]:
    """Approximate kNN, filtered inside the graph search when `allowed` is given; `k` oversampled for re-ranking."""
    fetch = min(MAX_K, k * oversample)
    knn: dict[str, Any] = {"field": "vec", "query_vector": [float(x) for x in query], "k": fetch,
                           "num_candidates": max(fetch, num_candidates(fetch))}
    if allowed is not None:
        knn["filter"] = {"terms": {"id": [int(i) for i in allowed]}}
    return {"knn": knn, "size": fetch, "_source": ["id"]}


def exact_body(query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> dict[str, Any]:
    """Brute force over every vector (or the allowed ones, at most MAX_TERMS): script_score with the cosine, +1 to
    stay positive."""
    within = {"terms": {"id": [int(i) for i in allowed]}} if allowed is not None else {"match_all": {}}
    return {"size": k, "_source": ["id"],
            "query": {"script_score": {"query": within, "script": {
                "source": "cosineSimilarity(params.q, 'vec') + 1.0", "params": {"q": [float(x) for x in query]}}}}}


def hit_ids(hits: list[dict[str, Any]]) -> list[int]:
    return [int(h["_source"]["id"]) for h in hits]


def candidate_rows(rows: list[list[int]]) -> np.ndarray:
    """Ragged lists of candidate ids as one (queries, longest) array, -1 where a row is shorter."""
    out = np.full((len(rows), max((len(r) for r in rows), default=0)), -1, dtype=np.int64)
    for n, row in enumerate(rows):
        out[n, :len(row)] = row
    return out


class ElasticsearchVectorIndex(VectorIndex):
    """One space's vectors in `<prefix>-knn-<space>` (document id = vector id); see the module's notes."""

    def __init__(self, client: Elasticsearch, prefix: str, space: str, dim: int, store: RecordStore,
                 exact_limit: int = EXACT_LIMIT, replicas: int = 1):
        self.client, self.space, self.dim, self.store, self.exact_limit = client, space, dim, store, exact_limit
        self.name = f"{prefix}-knn-{space}"
        self.oversample = OVERSAMPLE.get(self._open(replicas), max(OVERSAMPLE.values()))
        self.last_id = self._max_id()
        self.holes: dict[int, float] = {}  # ids skipped past by catch_up that a writer may still store
        self.catch_up()
        self._drop_deleted()

    def _open(self, replicas: int) -> str:
        """Create the index (its type chosen for the cluster's version); one made for another dimension (an earlier
        model) is a stale cache: rebuilt. Returns the index type it has."""
        if self.client.indices.exists(index=self.name):
            mapping = self.client.indices.get_mapping(index=self.name)[self.name]["mappings"]
            vec = mapping.get("properties", {}).get("vec", {})
            if vec.get("dims") == self.dim:
                return str(vec.get("index_options", {}).get("type", "hnsw"))
            self.client.indices.delete(index=self.name)
        body = knn_index_body(self.space, self.dim, replicas, cluster_version(self.client))
        ensure_index(self.client, self.name, body)
        return str(body["mappings"]["properties"]["vec"]["index_options"]["type"])

    def _max_id(self) -> int:
        resp = self.client.search(index=self.name, size=0, aggs={"top": {"max": {"field": "id"}}})
        value = resp["aggregations"]["top"]["value"]
        return int(value) if value is not None else 0

    def catch_up(self) -> int:
        """Take in the vectors stored past the last id, and those of earlier gaps that have been filled since.

        With several writers, ids are taken before the write: id 7 may be stored after id 8 was read, so a
        recent gap is remembered (HOLE_WINDOW ids below the newest, for HOLE_TTL seconds) and looked up again."""
        added = self._fill_holes()
        for ids, vectors in self.store.vectors_after(self.space, self.last_id):
            self._note_holes(ids)
            self.last_id = max(self.last_id, int(ids.max()))
            added += self._take(ids, vectors)
        return added

    def _take(self, ids: np.ndarray, vectors: np.ndarray) -> int:
        if vectors.shape[1] != self.dim:
            return 0  # made by an earlier model of this space: those sightings need re-embedding
        self.add(ids, vectors)
        return len(ids)

    def _note_holes(self, ids: np.ndarray) -> None:
        top = int(ids.max())
        expected = np.arange(max(self.last_id + 1, top - HOLE_WINDOW), top + 1, dtype=np.int64)
        now = time.monotonic()
        for hole in np.setdiff1d(expected, ids).tolist():
            self.holes[int(hole)] = now

    def _fill_holes(self) -> int:
        if not self.holes:
            return 0
        now = time.monotonic()
        self.holes = {i: t for i, t in self.holes.items() if now - t < HOLE_TTL}
        found = self.store.get_vectors(self.space, sorted(self.holes)[-HOLE_WINDOW:])
        for i in found:
            self.holes.pop(i, None)
        if not found:
            return 0
        ids = np.array(sorted(found), dtype=np.int64)
        return self._take(ids, np.stack([found[int(i)] for i in ids]))

    def _drop_deleted(self) -> None:
        """Drop what the store no longer holds; the store's count is of this index's dimension only (vectors of an
        earlier model, waiting for re-embedding, would otherwise hide as many deletions)."""
        if self.store.vector_count(self.space, self.dim) < len(self):
            held = np.array([int(h["_id"]) for h in walk(self.client, self.name, {"match_all": {}},
                                                         [{"id": "asc"}], source=False)], dtype=np.int64)
            self.remove(np.setdiff1d(held, self.store.vector_ids(self.space)))

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(ids) == 0:
            return
        bulk(self.client, ({"_index": self.name, "_id": str(int(i)), "_source": {"id": int(i), "vec": v.tolist()}}
                           for i, v in zip(ids, vectors, strict=True)), refresh="wait_for")
        self.last_id = max(self.last_id, int(ids.max()))

    def remove(self, ids: np.ndarray) -> int:
        removed = 0
        for part in chunks([int(i) for i in np.asarray(ids, dtype=np.int64)], MAX_TERMS):
            removed += int(self.client.delete_by_query(index=self.name, query={"terms": {"id": list(part)}},
                                                       refresh=True, conflicts="proceed")["deleted"])
        return removed

    def vector(self, vector_id: int) -> np.ndarray:
        found = self.store.get_vectors(self.space, [int(vector_id)]).get(int(vector_id))
        if found is None or len(found) != self.dim or not self.client.exists(index=self.name, id=str(int(vector_id))):
            raise KeyError(vector_id)
        return found

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        k = max(0, min(int(k), MAX_K))
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        if k == 0 or (allowed is not None and len(allowed) == 0):
            return out_scores, out_ids
        allowed_ids = None if allowed is None else np.unique(np.asarray(allowed, dtype=np.int64))
        exact = (allowed_ids is not None and len(allowed_ids) <= EXACT_FILTER) or len(self) <= self.exact_limit
        if allowed_ids is not None and len(allowed_ids) > MAX_TERMS and not exact:
            return self._search_post_filtered(queries, k, allowed_ids)
        if exact:  # a filter past MAX_TERMS ids is sent in parts, one brute-force query each, merged here
            parts: list[np.ndarray | None] = [None] if allowed_ids is None else [
                allowed_ids[i:i + MAX_TERMS] for i in range(0, len(allowed_ids), MAX_TERMS)]
            bodies = [exact_body(q, k, part) for q in queries for part in parts]
        else:
            parts, bodies = [None], [knn_body(q, k, allowed_ids, self.oversample) for q in queries]
        found = self._msearch(bodies)
        candidates = candidate_rows([[i for hits in found[row * len(parts):(row + 1) * len(parts)]
                                      for i in hit_ids(hits)] for row in range(len(queries))])
        return rerank_on_store(self.store, self.space, self.dim, queries, candidates, k)

    def _search_post_filtered(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A filter too wide to send as terms: unfiltered kNN, growing k until k allowed hits survive."""
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        for row, q in enumerate(queries):
            fetch = k
            while True:
                hits = hit_ids(self._msearch([knn_body(q, fetch, oversample=self.oversample)])[0])
                kept = [i for i, ok in zip(hits, np.isin(hits, allowed), strict=True) if ok]
                wanted = fetch * self.oversample
                if len(kept) >= k or wanted >= MAX_K or len(hits) < wanted:
                    scores, ids = rerank_on_store(self.store, self.space, self.dim, q, candidate_rows([kept]), k)
                    out_scores[row], out_ids[row] = scores[0], ids[0]
                    break
                fetch *= 4
        return out_scores, out_ids

    def _msearch(self, bodies: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """All queries of a call in one round trip."""
        searches: list[dict[str, Any]] = []
        for body in bodies:
            searches += [{"index": self.name}, body]
        out = []
        for resp in self.client.msearch(searches=searches)["responses"]:
            if "error" in resp:
                raise RuntimeError(f"vector search failed: {resp['error']}")
            out.append(resp["hits"]["hits"])
        return out

    def __len__(self) -> int:
        return int(self.client.count(index=self.name)["count"])

    def save(self) -> None:
        """Nothing to write: every add and remove is in the cluster when it returns."""
