"""Vector indexes: one per embedding space, ids shared with the record store's vector ids.

The record store keeps every vector, so an index file is only a cache: on open it
catches up on vectors stored after its last save, and a lost or corrupt file is rebuilt.
"""
from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np

from indexer.store import RecordStore
from models.records import InputError


class VectorIndex(ABC):
    space: str

    @abstractmethod
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    @abstractmethod
    def remove(self, ids: np.ndarray) -> int:
        """Drop vectors (retention, deleted sightings); returns how many were present."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) per query, best first; scores are inner products of unit vectors (cosine).

        With `allowed`, only those ids are candidates: the true nearest among them, however few they are.
        """

    @abstractmethod
    def vector(self, vector_id: int) -> np.ndarray:
        """The stored vector of one id (KeyError when absent)."""

    @abstractmethod
    def catch_up(self) -> int:
        """Take in what the record store holds and the index does not yet; returns how many vectors."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def save(self) -> None: ...


EXACT_LIMIT = 20_000  # exact search up to this many vectors a space (SIGHTLINE_EXACT_LIMIT)
# Then an HNSW graph up to this many (SIGHTLINE_GRAPH_LIMIT), then a compressed IVF: a graph keeps every float in
# RAM (~1.3 GB here at 1,280 dimensions) and takes minutes to build past it; the IVF keeps PQ codes (a byte per
# 8 dimensions) and takes removals in place.
GRAPH_LIMIT = 250_000
# The graph: 16 links a node; 256 candidates followed a query. At 100k × 1,280 vehicle vectors of `bench photo-search`'s
# distribution, 98.5 % of the exact top 50 in 2.5 ms against 21 ms for the exact scan; built in 25 s on 2 cores,
# ~1 ms a vector added (M 32: 98.9 %, 4.3 ms, 42 s; ef 128: 94 %).
GRAPH_LINKS, GRAPH_EF_SEARCH, GRAPH_EF_BUILD = 16, 256, 40
REBUILD_SHARE = 0.25  # a graph cannot drop a node: it skips removed ids until they are this share, then is rebuilt
# Lists scanned per query at least (SIGHTLINE_NPROBE); more when more candidates are wanted (below). At 1M × 1024
# clustered vectors (2,048 lists) 16, 32 and 64 lists give the same recall; 32 cost ~1.2 ms, 64 ~2.
NPROBE = 32
# Candidates the compressed IVF hands to exact re-ranking on the record store's float vectors: RERANK_PER_HIT a hit
# wanted, RERANK at least; and a list probed for every CANDIDATES_PER_LIST of them (NPROBE at least). PQ scores
# misorder near neighbours, and on vectors with weak neighbourhoods (`bench photo-search`'s at 1M: 50 wanted) the
# true 50 nearest are spread over many lists: 32 lists and 200 candidates kept 60 % of them, 200 and 800 keep 95 %.
# At 1M × 1024 clustered vectors (10 wanted) recall@10 is 0.973 / 0.988 / 0.993 with 100 / 150 / 200 candidates,
# their floats read from SQLite in ~15 µs each.
RERANK, RERANK_PER_HIT, CANDIDATES_PER_LIST = 150, 16, 4
PQ_BITS, PQ_DIMS, PQ_MIN_BYTES = 8, 8, 16  # PQ codes: a byte for every 8 dimensions (1,280 → 160 bytes a vector)
FEW_QUERIES = 20  # below this many queries at once, a flat index is searched by numpy (FaissIndex._flat_search)
TRAIN_PER_LIST = 40  # k-means sample per list: faiss's lower bound for stable centroids, and fast to train
REPLAY_UNDER_LOCK = 8  # a build replays the changes logged meanwhile outside the lock until this few are left
GATHER_ROWS = 16_384  # rows copied out at a time by an exact search among allowed ids (bounds its memory)
BACKLOG = 10_000  # a catch-up that reads a full batch of the store checks whether it should index the store afresh
GET_BATCH = 10_000  # vectors read from the record store per request by re-ranking (SQLite binds at most 32,766)


def ivf_lists(n: int) -> int:
    """About 2√n lists (a power of two): NPROBE lists then hold ~16√n vectors, a few ms at 1M × 1024."""
    return int(2 ** np.clip(np.round(np.log2(2 * np.sqrt(max(n, 1)))), 6, 16))


def _lists(ivf: faiss.IndexIVF) -> faiss.InvertedLists:
    lists = ivf.invlists
    if lists is None:  # never for an index this module builds or reads: an IVFFlat owns its lists
        raise ValueError("IVF index without inverted lists")
    return lists


def index_kind(index: faiss.Index) -> str:
    """"flat", "hnsw" or "ivfpq": what `FaissIndex` builds and saves."""
    if isinstance(index, faiss.IndexIVFPQ):
        return "ivfpq"
    assert isinstance(index, faiss.IndexIDMap2)
    return "hnsw" if isinstance(faiss.downcast_index(index.index), faiss.IndexHNSWFlat) else "flat"


def _mapped_ids(index: faiss.IndexIDMap2) -> np.ndarray:
    """The id of each stored row of a flat index or graph, in row order (a view, not a copy)."""
    return faiss.rev_swig_ptr(index.id_map.data(), index.ntotal)


def _rows(index: faiss.IndexIDMap2) -> np.ndarray:
    """A flat index's or a graph's stored vectors, (ntotal, d) in row order (a view, not a copy)."""
    inner = faiss.downcast_index(index.index)
    flat = faiss.downcast_index(inner.storage) if isinstance(inner, faiss.IndexHNSWFlat) else inner
    assert isinstance(flat, faiss.IndexFlat)
    return faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * flat.d).reshape(flat.ntotal, flat.d)


def _row_of(index: faiss.IndexIDMap2, ids: np.ndarray) -> np.ndarray:
    """The row of each id in a flat index or graph; -1 where it holds none. Ids arrive in order, so the id map
    is nearly always sorted already: a check, not a sort."""
    held = _mapped_ids(index)
    order = None if np.all(held[1:] > held[:-1]) else np.argsort(held, kind="stable")
    ordered = held if order is None else held[order]
    at = np.minimum(np.searchsorted(ordered, ids), max(len(ordered) - 1, 0))
    found = (ordered[at] == ids) if len(ordered) else np.zeros(len(ids), bool)
    rows = at if order is None else order[at]
    return np.where(found, rows, -1)


def _removed_from(graph: faiss.IndexIDMap2, removed: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """A graph's removed ids with `ids` added, of those it holds only (its length is its rows less these)."""
    return np.union1d(removed, ids[_row_of(graph, ids) >= 0])


def _sorted_contains(values: np.ndarray, value: int) -> bool:
    at = int(np.searchsorted(values, value))
    return at < len(values) and int(values[at]) == value


def _held_ids(index: faiss.IndexIVF | faiss.IndexIDMap2) -> np.ndarray:
    """Every id an index holds (a graph's removed ones too), without copying its vectors (an IVF's in list order)."""
    if not isinstance(index, faiss.IndexIVF):
        return _mapped_ids(index).copy()
    lists = _lists(index)
    ids = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
           for i in range(index.nlist) if lists.list_size(i)]
    return np.concatenate(ids) if ids else np.zeros(0, np.int64)


def _id_array(ids: np.ndarray) -> faiss.IDSelectorArray:
    """The selector that removal accepts everywhere (an IVF's hashtable direct map takes no other).

    The selector only points at the array; built from the array itself, faiss keeps a reference to it.
    """
    return faiss.IDSelectorArray(ids)


def _top_k(sims: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best columns of each row of `sims`, best first, as (scores, ids); padded with (-inf, -1) like faiss."""
    n = sims.shape[1]
    if n > k:
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        sims, cols = np.take_along_axis(sims, top, 1), top
    else:
        cols = np.broadcast_to(np.arange(n), sims.shape)
    order = np.argsort(-sims, axis=1, kind="stable")
    scores, found = np.take_along_axis(sims, order, 1), ids[np.take_along_axis(cols, order, 1)].astype(np.int64)
    if n < k:
        pad = ((0, 0), (0, k - n))
        scores, found = np.pad(scores, pad, constant_values=-np.inf), np.pad(found, pad, constant_values=-1)
    return scores.astype(np.float32), found


def rerank_on_store(store: RecordStore, space: str, dim: int, queries: np.ndarray, candidates: np.ndarray, k: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """rerank_exact on the record store's float vectors of the candidates (of this dimension only), read GET_BATCH
    at a time: how an index that keeps no exact float (the compressed IVF, Elasticsearch's kNN) scores its hits."""
    wanted = np.unique(candidates[candidates >= 0]).tolist()
    found: dict[int, np.ndarray] = {}
    for lo in range(0, len(wanted), GET_BATCH):
        found |= store.get_vectors(space, wanted[lo:lo + GET_BATCH])
    return rerank_exact(queries, candidates, {i: v for i, v in found.items() if len(v) == dim}, k)


def rerank_exact(queries: np.ndarray, candidates: np.ndarray, floats: dict[int, np.ndarray], k: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The k best candidates of each query (a row of ids, -1 for none) by the exact inner product of their float
    vectors; a candidate without one (deleted meanwhile) is dropped. Padded with (-inf, -1), best first."""
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    scores = np.full((len(queries), max(k, 0)), -np.inf, dtype=np.float32)
    ids = np.full((len(queries), max(k, 0)), -1, dtype=np.int64)
    held = np.array(sorted(floats), dtype=np.int64)
    if not len(held) or k <= 0:
        return scores, ids
    sims = queries @ np.stack([floats[int(i)] for i in held]).T  # (queries, held)
    at = np.minimum(np.searchsorted(held, candidates), len(held) - 1)
    ranked = np.where((candidates >= 0) & (held[at] == candidates), np.take_along_axis(sims, at, 1), -np.inf)
    order = np.argsort(-ranked, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(ranked, order, 1)
    n = best.shape[1]
    scores[:, :n] = best
    ids[:, :n] = np.where(np.isfinite(best), np.take_along_axis(candidates, order, 1), -1)
    return scores, ids


def _build_graph(ids: np.ndarray, vectors: np.ndarray) -> faiss.IndexIDMap2:
    graph = faiss.IndexHNSWFlat(vectors.shape[1], GRAPH_LINKS, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction, graph.hnsw.efSearch = GRAPH_EF_BUILD, GRAPH_EF_SEARCH
    mapped = faiss.IndexIDMap2(graph)
    mapped.add_with_ids(vectors, ids)
    return mapped


def _replay(built: faiss.IndexIDMap2 | faiss.IndexIVFPQ, kind: str, removed: np.ndarray,
            ops: list[tuple[str, np.ndarray, np.ndarray | None]]) -> np.ndarray:
    """Apply logged adds and removals to a new index; returns its removed ids (a graph's; none for the others)."""
    for op, op_ids, op_vectors in ops:
        if op == "add":
            assert op_vectors is not None  # an add always logs its vectors
            built.add_with_ids(op_vectors, op_ids)
        elif isinstance(built, faiss.IndexIDMap2) and kind == "hnsw":
            removed = _removed_from(built, removed, op_ids)
        else:
            built.remove_ids(_id_array(op_ids))
    return removed


def candidate_plan(k: int, nlist: int, nprobe: int = NPROBE) -> tuple[int, int]:
    """(candidates re-ranked, lists probed) of a compressed IVF's search for k hits."""
    depth = max(RERANK, RERANK_PER_HIT * k)
    return depth, min(nlist, max(nprobe, depth // CANDIDATES_PER_LIST))


def pq_bytes(dim: int) -> int:
    """Sub-quantisers of a vector's PQ code: a byte per PQ_DIMS dimensions, at least PQ_MIN_BYTES (a short vector
    coded coarser picks poor candidates); the largest divisor of dim at most that."""
    return max(m for m in range(1, max(min(dim, PQ_MIN_BYTES), dim // PQ_DIMS) + 1) if dim % m == 0)


def _untrained_ivfpq(dim: int, n: int, nprobe: int, seed: int = 0) -> faiss.IndexIVFPQ:
    """Coarse lists by k-means, residuals coded by PQ, both trained on one sample of TRAIN_PER_LIST a list (10
    iterations each: the codes only choose candidates, which exact re-ranking then orders)."""
    ivf = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, ivf_lists(n), pq_bytes(dim), PQ_BITS,
                           faiss.METRIC_INNER_PRODUCT)
    ivf.cp.max_points_per_centroid, ivf.cp.niter, ivf.cp.seed = TRAIN_PER_LIST, 10, seed
    ivf.pq.cp.max_points_per_centroid, ivf.pq.cp.niter, ivf.pq.cp.seed = 64, 10, seed
    # reconstruct and remove by arbitrary id (faiss's stubs lack the DirectMap enum)
    ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]
    ivf.nprobe, ivf.parallel_mode = nprobe, 1  # one query at a time: split its lists over the threads
    return ivf


def _train_ivfpq(ids: np.ndarray, vectors: np.ndarray, nprobe: int = NPROBE, seed: int = 0) -> faiss.IndexIVFPQ:
    ivf = _untrained_ivfpq(vectors.shape[1], len(vectors), nprobe, seed)
    sample = np.random.default_rng(seed).choice(len(vectors), min(len(vectors), TRAIN_PER_LIST * ivf.nlist),
                                                replace=False)
    ivf.train(vectors[np.sort(sample)])
    ivf.add_with_ids(vectors, ids)
    return ivf


class FaissIndex(VectorIndex):
    """FAISS inner-product search persisted as `<space>.faiss`; the index type follows the size.

    Up to `exact_limit` vectors it is exact (IndexFlatIP under an id map: nothing to train, perfect
    recall, fast enough). Past it an HNSW graph, up to `graph_limit`; past that a compressed IVF (~√n lists,
    NPROBE scanned per query, residuals PQ-coded), trained again whenever the data has doubled since: it holds
    no float vector, and its best RERANK candidates are scored exactly on the record store's floats. Each is
    built in a background thread from a snapshot while the current index keeps answering; adds and
    removals that arrive during a build are logged and replayed into the new index before it takes over.
    A graph cannot drop a node: removed ids are skipped at search time (`removed`) and the graph is
    rebuilt once they are REBUILD_SHARE of it; a reopened graph learns them again from the record store.

    Filtered search: a filter that keeps no more vectors than one query scans anyway is searched
    exactly over the allowed ids (an IVF: every list probed, the others skipped by an id selector, then
    re-ranked; a graph: the allowed rows scored directly), so a filter that removes most candidates still returns the
    true nearest matching ones; a wide filter is searched like an unfiltered query restricted to the
    allowed ids (an IVF probing more lists until k survive; a graph falling back to scoring them all).
    """

    def __init__(self, directory: Path, space: str, dim: int, store: RecordStore, exact_limit: int = EXACT_LIMIT,
                 nprobe: int = NPROBE, graph_limit: int = GRAPH_LIMIT):
        self.directory, self.space, self.dim, self.exact_limit, self.nprobe = directory, space, dim, exact_limit, nprobe
        self.graph_limit = graph_limit
        self.store = store
        self.path = directory / f"{space}.faiss"
        self.lock = threading.RLock()
        self.builder: threading.Thread | None = None
        self.pending: list[tuple[str, np.ndarray, np.ndarray | None]] | None = None  # ops logged during a build
        self.removed = np.zeros(0, np.int64)  # a graph's removed ids, sorted: skipped by every search
        self.index, self.last_id = self._load()
        self.kind = index_kind(self.index)
        self.trained_size = len(self) if self.kind == "ivfpq" else 0
        self.catch_up()
        self._drop_deleted()

    def _load(self) -> tuple[faiss.IndexIVFPQ | faiss.IndexIDMap2, int]:
        if self.path.exists():
            try:
                index = faiss.read_index(str(self.path))
                # save() writes only these kinds; anything else is not this cache's file: rebuilt below
                if isinstance(index, (faiss.IndexIVFPQ, faiss.IndexIDMap2)) and index.d == self.dim:
                    # The watermark is the largest id inside the file itself, so it can never disagree with it.
                    if isinstance(index, faiss.IndexIVFPQ):
                        index.nprobe, index.parallel_mode = self.nprobe, 1
                    elif isinstance(graph := faiss.downcast_index(index.index), faiss.IndexHNSWFlat):
                        graph.hnsw.efSearch = GRAPH_EF_SEARCH
                    ids = _held_ids(index)
                    return index, int(ids.max()) if len(ids) else 0
            except RuntimeError:
                pass  # a damaged cache: rebuild it from the record store below
        if n := self._count_past(self.graph_limit):
            return self._ivfpq_from_store(n)
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim)), 0  # catch_up() fills it

    def _count_past(self, limit: int) -> int:
        """How many vectors of this dimension the store holds, when more than `limit` (else 0). Counting one
        dimension reads every vector's row, so the count of them all (from the store's id index) goes first."""
        if self.store.vector_count(self.space) <= limit:
            return 0
        n = self.store.vector_count(self.space, self.dim)
        return n if n > limit else 0

    def _ivfpq_from_store(self, n: int, only: np.ndarray | None = None) -> tuple[faiss.IndexIVFPQ, int]:
        """A compressed IVF of the store's n vectors of this dimension (those of the sorted ids `only`, when given),
        trained on an even sample of them and filled batch by batch: two reads of the store, never every float in
        memory at once (a flat index filled first would need 51 GB at 10M × 1,280). Returns it and the largest id
        read."""
        def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for ids, vectors in self.store.vectors_after(self.space, 0):
                keep = np.full(len(ids), vectors.shape[1] == self.dim)
                if only is not None:
                    keep &= np.isin(ids, only)
                yield ids[keep], vectors[keep]

        ivf = _untrained_ivfpq(self.dim, n, self.nprobe)
        step, taken, sample = max(1, n // (TRAIN_PER_LIST * ivf.nlist)), 0, []
        for _, vectors in batches():
            sample.append(vectors[(-taken) % step::step])
            taken += len(vectors)
        ivf.train(np.concatenate(sample))
        del sample
        last = 0
        for ids, vectors in batches():
            if len(ids):
                ivf.add_with_ids(vectors, ids)
                last = max(last, int(ids.max()))
        return ivf, last

    def catch_up(self) -> int:
        """Add every vector the store holds past this index's last id; returns how many.

        The one way vectors enter the index: after ingestion commits (this process's) and before a query
        (another process's, sharing the data folder). Ids are given in commit order under the store's write
        lock, so "past the last id" misses nothing; costs one indexed look-up when nothing is new.
        """
        added = 0
        with self.lock:
            for ids, vectors in self.store.vectors_after(self.space, self.last_id):
                if not added and len(ids) >= BACKLOG and (n := self._outgrown()):
                    return self._index_the_store(n)
                self.last_id = max(self.last_id, int(ids.max()))
                if vectors.shape[1] != self.dim:
                    continue  # made by an earlier model of this space: those sightings need re-embedding
                self.add(ids, vectors)
                added += len(ids)
        return added

    def _outgrown(self) -> int:
        """The store's vectors of this dimension when a backlog takes them past the graph limit while this index is
        not yet the compressed IVF (else 0)."""
        return 0 if self.kind == "ivfpq" or self.builder is not None else self._count_past(self.graph_limit)

    def _index_the_store(self, n: int) -> int:
        """Replace this index by a compressed IVF streamed from the store's n vectors (rather than adding a large
        backlog to a flat index or graph first); returns how many vectors it gained."""
        before = len(self)
        self.index, self.last_id = self._ivfpq_from_store(n)
        self.kind, self.removed, self.trained_size = "ivfpq", np.zeros(0, np.int64), int(self.index.ntotal)
        return len(self) - before

    def _drop_deleted(self) -> None:
        """Drop what the store no longer holds (a deletion whose index save a crash cut off, or a graph's removals).
        Compared by id, from the store's id index: a comparison of counts misses as many deletions as there are
        vectors of an earlier model waiting for re-embedding, and counting one dimension reads every vector's row."""
        with self.lock:
            held = _held_ids(self.index)
        gone = np.setdiff1d(held, self.store.vector_ids(self.space))
        if len(gone):
            self.remove(gone)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(ids) == 0:
            return
        with self.lock:
            self.index.add_with_ids(vectors, ids)
            if self.pending is not None:
                self.pending.append(("add", ids, vectors))
            self.last_id = max(self.last_id, int(ids.max()))
            n = len(self)
            self._rebuild_if((self.kind == "flat" and n > self.exact_limit)
                             or (self.kind == "hnsw" and n > self.graph_limit)
                             or (self.kind == "ivfpq" and n > 2 * self.trained_size))

    def remove(self, ids: np.ndarray) -> int:
        ids = np.asarray(ids, dtype=np.int64)
        with self.lock:
            if isinstance(self.index, faiss.IndexIDMap2) and self.kind == "hnsw":
                removed_before = len(self.removed)
                self.removed = _removed_from(self.index, self.removed, ids)
                count = len(self.removed) - removed_before
                self._rebuild_if(len(self.removed) > REBUILD_SHARE * self.index.ntotal)
            else:
                count = int(self.index.remove_ids(_id_array(ids)))
            if self.pending is not None:
                self.pending.append(("remove", ids, None))
            return count

    def _rebuild_if(self, needed: bool) -> None:
        if needed and self.builder is None:
            self.builder = threading.Thread(target=self._build, daemon=True, name=f"index-{self.space}")
            self.builder.start()

    def _contents(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every vector a flat index or graph holds and has not removed, copied out."""
        index = self.index
        assert isinstance(index, faiss.IndexIDMap2)  # a compressed IVF holds no float: see _build
        ids, rows = _mapped_ids(index), _rows(index)
        if not len(self.removed):
            return ids.copy(), rows.copy()
        live = ~np.isin(ids, self.removed)
        return ids[live], rows[live]

    def _new_index(self, ids: np.ndarray, vectors: np.ndarray) -> faiss.IndexIDMap2 | faiss.IndexIVFPQ:
        """The kind of index this many vectors call for, holding them."""
        if len(ids) > self.graph_limit:
            return _train_ivfpq(ids, vectors, self.nprobe)
        if len(ids) > self.exact_limit:
            return _build_graph(ids, vectors)
        flat = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))  # a graph mostly removed: exact again
        flat.add_with_ids(vectors, ids)
        return flat

    def _build(self) -> None:
        """Build a graph or train an IVF (by size) from a snapshot, replay what happened meanwhile, swap it in.

        The replay runs outside the lock while much is logged (a backlog taken in on open can be most of the
        data), then under it for the last few changes, so searches wait only for those.
        Should the build fail, the current index simply stays (the next add or removal tries again). A compressed
        IVF grown past twice its training is retrained from a stream of the store's floats, not a copy of them all.
        """
        try:
            with self.lock:
                if self.kind == "ivfpq":
                    ids, vectors = np.sort(_held_ids(self.index)), None
                else:
                    ids, vectors = self._contents()
                self.pending = []  # from this snapshot on, every change is logged for the replay
            built = self._ivfpq_from_store(len(ids), ids)[0] if vectors is None else self._new_index(ids, vectors)
            del vectors
            kind, removed, replayed = index_kind(built), np.zeros(0, np.int64), 0
            while True:
                with self.lock:
                    ops = (self.pending or [])[replayed:]
                    if len(ops) <= REPLAY_UNDER_LOCK:
                        removed = _replay(built, kind, removed, ops)
                        self.index, self.kind, self.removed, self.trained_size = built, kind, removed, len(ids)
                        return
                removed = _replay(built, kind, removed, ops)  # the new index is this thread's alone until swapped
                replayed += len(ops)
        finally:
            with self.lock:
                self.pending, self.builder = None, None

    def wait_for_build(self, timeout: float | None = None) -> None:
        builder = self.builder
        if builder is not None:
            builder.join(timeout)

    def vector(self, vector_id: int) -> np.ndarray:
        with self.lock:
            if self.kind == "hnsw" and _sorted_contains(self.removed, vector_id):
                raise KeyError(vector_id)
            try:
                # faiss's stubs resolve reconstruct() without a buffer to its torch overload
                held: np.ndarray = self.index.reconstruct(vector_id)  # type: ignore[assignment]
            except RuntimeError as exc:
                raise KeyError(vector_id) from exc
            if self.kind != "ivfpq":
                return held
        stored = self.store.get_vectors(self.space, [int(vector_id)]).get(int(vector_id))
        if stored is None or len(stored) != self.dim:  # a PQ code is not the vector: the store's float is
            raise KeyError(vector_id)
        return stored

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        with self.lock:
            if self.kind == "hnsw":
                return self._graph_search(queries, k, allowed)
            if self.kind == "ivfpq":
                candidates = self._ivf_candidates(queries, k, allowed)
            elif allowed is None and len(queries) < FEW_QUERIES and 0 < k <= len(self):
                return self._flat_search(queries, k)
            elif allowed is None:
                return self.index.search(queries, k)
            else:
                params = faiss.SearchParameters()
                params.sel = faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))  # faiss keeps a reference
                return self.index.search(queries, k, params=params)
        # the store's reads outside the lock
        return rerank_on_store(self.store, self.space, self.dim, queries, candidates, k)

    def _ivf_candidates(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> np.ndarray:
        """The compressed IVF's best candidates for k hits per query (-1 where fewer), within `allowed`. A filter no
        larger than what the probed lists hold scans every list (all its ids can be candidates); a wider one grows
        the probe until k survive."""
        index = self.index
        assert isinstance(index, faiss.IndexIVFPQ)
        nlist = index.nlist
        depth, nprobe = candidate_plan(k, nlist, self.nprobe)
        selector = None if allowed is None else faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
        if allowed is not None and len(allowed) * nlist <= len(self) * nprobe:
            nprobe = nlist
        while True:
            params = faiss.SearchParametersIVF()
            params.nprobe = nprobe
            if selector is not None:
                params.sel = selector  # faiss keeps a reference to it
            found = index.search(queries, depth, params=params)[1]
            if allowed is None or nprobe >= nlist or (found >= 0).sum(axis=1).min() >= min(k, len(allowed)):
                return found
            nprobe = min(nlist, nprobe * 4)

    def _graph_search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The graph's answer, removed ids skipped; a filter keeping no more than the exact limit (or an eighth
        of the graph) is scored exactly, as is a wide one the graph cannot fill k from."""
        if allowed is not None:
            allowed = np.setdiff1d(np.asarray(allowed, dtype=np.int64), self.removed)
            if len(allowed) <= max(self.exact_limit, self.index.ntotal // 8):
                return self._exact_among(queries, k, allowed)
            selector: faiss.IDSelector | None = faiss.IDSelectorBatch(allowed)
        elif len(self.removed):
            skipped = faiss.IDSelectorBatch(self.removed)  # held here: IDSelectorNot only points at it
            selector = faiss.IDSelectorNot(skipped)
        else:
            selector = None
        params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # missing from faiss's stubs
        params.efSearch = max(GRAPH_EF_SEARCH, k)
        if selector is not None:
            params.sel = selector
        scores, found = self.index.search(queries, k, params=params)
        if allowed is not None and (found >= 0).sum(axis=1).min() < min(k, len(allowed)):
            return self._exact_among(queries, k, allowed)
        return scores, found

    def _exact_among(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores of the allowed ids a flat index or graph holds, their rows copied out a chunk at a time."""
        assert isinstance(self.index, faiss.IndexIDMap2)
        rows = _row_of(self.index, allowed)
        ids, rows = allowed[rows >= 0], rows[rows >= 0]
        stored = _rows(self.index)
        sims = np.concatenate([queries @ stored[rows[lo:lo + GATHER_ROWS]].T for lo in range(0, len(rows), GATHER_ROWS)]
                              + [np.zeros((len(queries), 0), np.float32)], axis=1)
        return _top_k(sims, ids, k)

    def _flat_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact search of a few queries as one numpy product over the flat index's own storage (no copy).

        FAISS scans for a single query on one thread (42 ms at 100k × 1024 on this CPU); numpy's BLAS
        does the same product on every core (12 ms), with the same hits and scores.
        """
        assert isinstance(self.index, faiss.IndexIDMap2)
        return _top_k(queries @ _rows(self.index).T, _mapped_ids(self.index), k)

    def __len__(self) -> int:
        return int(self.index.ntotal) - len(self.removed)

    def save(self) -> None:
        """Write the index to a temporary file and rename it: a crash mid-save keeps the previous file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.lock:
            tmp = self.path.with_suffix(f".faiss.{os.getpid()}.tmp")  # processes sharing the folder never clash
            faiss.write_index(self.index, str(tmp))
            os.replace(tmp, self.path)


class StoreOnlyIndex(VectorIndex):
    """No index at all, for processes that only write (queue workers): the record store keeps every vector and
    the processes that search catch up from it, so a worker neither holds the vectors nor writes index files."""

    def __init__(self, space: str):
        self.space = space

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        pass

    def remove(self, ids: np.ndarray) -> int:
        return 0

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        raise InputError("this process keeps no vector index (SIGHTLINE_VECTORS=store-only): search through the API")

    def vector(self, vector_id: int) -> np.ndarray:
        raise KeyError(vector_id)

    def catch_up(self) -> int:
        return 0

    def __len__(self) -> int:
        return 0

    def save(self) -> None:
        pass
