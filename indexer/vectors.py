"""Vector indexes: one per embedding space, ids shared with the record store's vector ids.

The record store keeps every vector, so an index file is only a cache: on open it
catches up on vectors stored after its last save, and a lost or corrupt file is rebuilt.
"""
from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
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


EXACT_LIMIT = 200_000  # exact search up to this many vectors a space (SIGHTLINE_EXACT_LIMIT)
# Lists scanned per query: recall@10 1.00 on clustered 1024-d data at 1M in 2.4 ms (bench search); raise it
# to trade speed for recall on data with weak neighbourhoods (SIGHTLINE_NPROBE).
NPROBE = 32
FEW_QUERIES = 20  # below this many queries at once, a flat index is searched by numpy (FaissIndex._flat_search)
TRAIN_PER_LIST = 40  # k-means sample per list: faiss's lower bound for stable centroids, and fast to train


def ivf_lists(n: int) -> int:
    """About 2√n lists (a power of two): NPROBE lists then hold ~16√n vectors, a few ms at 1M × 1024."""
    return int(2 ** np.clip(np.round(np.log2(2 * np.sqrt(max(n, 1)))), 6, 16))


def _lists(ivf: faiss.IndexIVFFlat) -> faiss.InvertedLists:
    lists = ivf.invlists
    if lists is None:  # never for an index this module builds or reads: an IVFFlat owns its lists
        raise ValueError("IVF index without inverted lists")
    return lists


def _held_ids(index: faiss.IndexIVFFlat | faiss.IndexIDMap2) -> np.ndarray:
    """Every id an index holds, without copying its vectors (an IVF's in list order)."""
    if not isinstance(index, faiss.IndexIVFFlat):
        return faiss.vector_to_array(index.id_map)
    lists = _lists(index)
    ids = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
           for i in range(index.nlist) if lists.list_size(i)]
    return np.concatenate(ids) if ids else np.zeros(0, np.int64)


def _ivf_contents(ivf: faiss.IndexIVFFlat) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of every vector in an IVF's inverted lists, copied out."""
    lists, vectors = _lists(ivf), []
    for i in range(ivf.nlist):
        size = lists.list_size(i)
        if size:
            codes = faiss.rev_swig_ptr(lists.get_codes(i), size * ivf.code_size)
            vectors.append(np.frombuffer(codes, dtype=np.float32).reshape(size, ivf.d).copy())
    return _held_ids(ivf), np.concatenate(vectors) if vectors else np.zeros((0, ivf.d), np.float32)


def _id_array(ids: np.ndarray) -> faiss.IDSelectorArray:
    """The selector that removal accepts everywhere (an IVF's hashtable direct map takes no other).

    The selector only points at the array; built from the array itself, faiss keeps a reference to it.
    """
    return faiss.IDSelectorArray(ids)


def _flat_contents(index: faiss.IndexIDMap2) -> tuple[np.ndarray, np.ndarray]:
    return faiss.vector_to_array(index.id_map).copy(), index.index.reconstruct_n(0, index.ntotal)


def _train_ivf(ids: np.ndarray, vectors: np.ndarray, nprobe: int = NPROBE, seed: int = 0) -> faiss.IndexIVFFlat:
    dim, nlist = vectors.shape[1], ivf_lists(len(vectors))
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.max_points_per_centroid, ivf.cp.niter, ivf.cp.seed = TRAIN_PER_LIST, 10, seed
    sample = np.random.default_rng(seed).choice(len(vectors), min(len(vectors), TRAIN_PER_LIST * nlist), replace=False)
    ivf.train(vectors[np.sort(sample)])
    # reconstruct and remove by arbitrary id (faiss's stubs lack the DirectMap enum)
    ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]
    ivf.add_with_ids(vectors, ids)
    ivf.nprobe, ivf.parallel_mode = nprobe, 1  # one query at a time: split its lists over the threads
    return ivf


class FaissIndex(VectorIndex):
    """FAISS inner-product search persisted as `<space>.faiss`; the index type follows the size.

    Up to `exact_limit` vectors it is exact (IndexFlatIP under an id map: nothing to train, perfect
    recall, fast enough). Past it an IVF index (flat lists, ~√n of them, NPROBE scanned per query) is
    trained in a background thread from a snapshot while the current index keeps answering; it is
    trained again whenever the data has doubled since. Adds and removals that arrive during a build
    are logged and replayed into the new index before it takes over.

    Filtered search: a filter that keeps no more vectors than one query scans anyway is searched
    exactly over the allowed ids (every list probed, the others skipped by an id selector), so a filter
    that removes most candidates still returns the true nearest matching ones; a wide filter is searched
    like an unfiltered query restricted to the allowed ids, probing more lists until k survive.
    """

    def __init__(self, directory: Path, space: str, dim: int, store: RecordStore, exact_limit: int = EXACT_LIMIT,
                 nprobe: int = NPROBE):
        self.directory, self.space, self.dim, self.exact_limit, self.nprobe = directory, space, dim, exact_limit, nprobe
        self.store = store
        self.path = directory / f"{space}.faiss"
        self.lock = threading.RLock()
        self.builder: threading.Thread | None = None
        self.pending: list[tuple[str, np.ndarray, np.ndarray | None]] | None = None  # ops logged during a build
        self.index, self.last_id = self._load()
        self.trained_size = len(self) if self.kind == "ivf" else 0
        self.catch_up()
        self._drop_deleted()

    def _load(self) -> tuple[faiss.IndexIVFFlat | faiss.IndexIDMap2, int]:
        if self.path.exists():
            try:
                index = faiss.read_index(str(self.path))
                # save() writes only these two kinds; anything else is not this cache's file: rebuilt below
                if isinstance(index, (faiss.IndexIVFFlat, faiss.IndexIDMap2)) and index.d == self.dim:
                    # The watermark is the largest id inside the file itself, so it can never disagree with it.
                    if isinstance(index, faiss.IndexIVFFlat):
                        index.nprobe, index.parallel_mode = self.nprobe, 1
                    ids = _held_ids(index)
                    return index, int(ids.max()) if len(ids) else 0
            except RuntimeError:
                pass  # a damaged cache: rebuild it from the record store below
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim)), 0

    def catch_up(self) -> int:
        """Add every vector the store holds past this index's last id; returns how many.

        The one way vectors enter the index: after ingestion commits (this process's) and before a query
        (another process's, sharing the data folder). Ids are given in commit order under the store's write
        lock, so "past the last id" misses nothing; costs one indexed look-up when nothing is new.
        """
        added = 0
        with self.lock:
            for ids, vectors in self.store.vectors_after(self.space, self.last_id):
                self.last_id = max(self.last_id, int(ids.max()))
                if vectors.shape[1] != self.dim:
                    continue  # made by an earlier model of this space: those sightings need re-embedding
                self.add(ids, vectors)
                added += len(ids)
        return added

    def _drop_deleted(self) -> None:
        """Drop what the store no longer holds (a deletion whose index save a crash cut off)."""
        if self.store.vector_count(self.space) < len(self):
            with self.lock:
                held = _held_ids(self.index)
            self.remove(np.setdiff1d(held, self.store.vector_ids(self.space)))

    @property
    def kind(self) -> str:
        return "ivf" if isinstance(self.index, faiss.IndexIVFFlat) else "flat"

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
            grow = self.builder is None and (
                (self.kind == "flat" and n > self.exact_limit) or (self.kind == "ivf" and n > 2 * self.trained_size))
            if grow:
                self.builder = threading.Thread(target=self._build, daemon=True, name=f"ivf-{self.space}")
                self.builder.start()

    def remove(self, ids: np.ndarray) -> int:
        ids = np.asarray(ids, dtype=np.int64)
        with self.lock:
            removed = int(self.index.remove_ids(_id_array(ids)))
            if self.pending is not None:
                self.pending.append(("remove", ids, None))
            return removed

    def _build(self) -> None:
        """Train a fresh IVF from a snapshot, replay what happened meanwhile, swap it in.

        Should the build fail, the current index simply stays (the next add tries again).
        """
        try:
            with self.lock:
                index = self.index
                ids, vectors = _ivf_contents(index) if isinstance(index, faiss.IndexIVFFlat) else _flat_contents(index)
                self.pending = []  # from this snapshot on, every change is logged for the replay
            built = _train_ivf(ids, vectors, self.nprobe)
            del vectors
            with self.lock:
                for op, op_ids, op_vectors in self.pending or []:
                    if op == "add":
                        assert op_vectors is not None  # an add always logs its vectors
                        built.add_with_ids(op_vectors, op_ids)
                    else:
                        built.remove_ids(_id_array(op_ids))
                self.index, self.trained_size = built, len(ids)
        finally:
            with self.lock:
                self.pending, self.builder = None, None

    def wait_for_build(self, timeout: float | None = None) -> None:
        builder = self.builder
        if builder is not None:
            builder.join(timeout)

    def vector(self, vector_id: int) -> np.ndarray:
        with self.lock:
            try:
                # faiss's stubs resolve reconstruct() without a buffer to its torch overload
                return self.index.reconstruct(vector_id)  # type: ignore[return-value]
            except RuntimeError as exc:
                raise KeyError(vector_id) from exc

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        with self.lock:
            if allowed is None and self.kind == "flat" and len(queries) < FEW_QUERIES and 0 < k <= len(self):
                return self._flat_search(queries, k)
            if allowed is None:
                return self.index.search(queries, k)
            selector = faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
            index = self.index
            if not isinstance(index, faiss.IndexIVFFlat):
                params = faiss.SearchParameters()
                params.sel = selector  # the same as the keyword form: faiss keeps a reference either way
                return index.search(queries, k, params=params)
            nlist = index.nlist
            # No larger than what NPROBE lists hold: scan every list (exact); else grow the probe until k survive.
            nprobe = nlist if len(allowed) * nlist <= len(self) * self.nprobe else self.nprobe
            while True:
                ivf_params = faiss.SearchParametersIVF()
                ivf_params.sel, ivf_params.nprobe = selector, nprobe
                scores, found = index.search(queries, k, params=ivf_params)
                if nprobe >= nlist or (found >= 0).sum(axis=1).min() >= min(k, len(allowed)):
                    return scores, found
                nprobe = min(nlist, nprobe * 4)

    def _flat_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact search of a few queries as one numpy product over the flat index's own storage (no copy).

        FAISS scans for a single query on one thread (42 ms at 100k × 1024 on this CPU); numpy's BLAS
        does the same product on every core (12 ms), with the same hits and scores.
        """
        mapped = self.index
        assert isinstance(mapped, faiss.IndexIDMap2)
        flat = faiss.downcast_index(mapped.index)
        assert isinstance(flat, faiss.IndexFlat)
        n = flat.ntotal
        stored = faiss.rev_swig_ptr(flat.get_xb(), n * self.dim).reshape(n, self.dim)
        sims = queries @ stored.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        scores = np.take_along_axis(sims, top, 1)
        order = np.argsort(-scores, axis=1, kind="stable")
        ids = faiss.rev_swig_ptr(mapped.id_map.data(), n)
        return np.take_along_axis(scores, order, 1), ids[np.take_along_axis(top, order, 1)].astype(np.int64)

    def __len__(self) -> int:
        return int(self.index.ntotal)

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
