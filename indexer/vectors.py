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


class VectorIndex(ABC):
    space: str

    @abstractmethod
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    @abstractmethod
    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) per query, best first; scores are inner products of unit vectors (cosine).

        With `allowed`, only those ids are candidates: the true nearest among them, however few they are.
        """

    @abstractmethod
    def vector(self, vector_id: int) -> np.ndarray:
        """The stored vector of one id (KeyError when absent)."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def save(self) -> None: ...


EXACT_LIMIT = int(os.environ.get("SIGHTLINE_EXACT_LIMIT", "200000"))
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 128


class FaissIndex(VectorIndex):
    """FAISS inner-product search under an id map, persisted as `<space>.faiss`; the index type follows the size.

    Up to `exact_limit` vectors it is exact (IndexFlatIP: nothing to train, perfect recall, fast enough).
    Past that an HNSW graph is built in a background thread from a snapshot while the exact index keeps
    answering; vectors added meanwhile are replayed into it before it takes over. A filtered search is
    always exact over the allowed ids, so a filter that removes most candidates still returns the true
    nearest matching ones.
    """

    def __init__(self, directory: Path, space: str, dim: int, store: RecordStore, exact_limit: int = EXACT_LIMIT):
        self.directory, self.space, self.dim, self.exact_limit = directory, space, dim, exact_limit
        self.path = directory / f"{space}.faiss"
        self.lock = threading.RLock()
        self.index, self.last_id = self._load()
        self.builder: threading.Thread | None = None
        self._catch_up(store)

    def _load(self) -> tuple[faiss.IndexIDMap2, int]:
        if self.path.exists():
            try:
                index = faiss.read_index(str(self.path))
                if index.d == self.dim:
                    # The watermark is the largest id inside the file itself, so it can never disagree with it.
                    ids = faiss.vector_to_array(index.id_map)
                    return index, int(ids.max()) if len(ids) else 0
            except RuntimeError:
                pass  # a damaged cache: rebuild it from the record store below
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim)), 0

    def _catch_up(self, store: RecordStore) -> None:
        for ids, vectors in store.vectors_after(self.space, self.last_id):
            if vectors.shape[1] != self.dim:
                continue  # made by an earlier model of this space: those sightings need re-embedding
            self.add(ids, vectors)

    @property
    def kind(self) -> str:
        return "hnsw" if isinstance(faiss.downcast_index(self.index.index), faiss.IndexHNSWFlat) else "flat"

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        with self.lock:
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))
            self.last_id = max(self.last_id, int(np.max(ids)))
            grow = self.kind == "flat" and len(self) > self.exact_limit and self.builder is None
        if grow:
            self.builder = threading.Thread(target=self._build_hnsw, daemon=True, name=f"hnsw-{self.space}")
            self.builder.start()

    def _build_hnsw(self) -> None:
        with self.lock:
            n = len(self)
            ids = faiss.vector_to_array(self.index.id_map).copy()
            vectors = self.index.index.reconstruct_n(0, n)
        graph = faiss.IndexHNSWFlat(self.dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        built = faiss.IndexIDMap2(graph)
        built.add_with_ids(vectors, ids)
        with self.lock:  # replay what arrived during the build, then swap
            seen = set(ids.tolist())
            all_ids = faiss.vector_to_array(self.index.id_map)
            fresh = [i for i, vid in enumerate(all_ids.tolist()) if vid not in seen]
            if fresh:
                built.add_with_ids(np.stack([self.index.index.reconstruct(i) for i in fresh]), all_ids[fresh])
            self.index = built

    def vector(self, vector_id: int) -> np.ndarray:
        with self.lock:
            try:
                return self.index.reconstruct(vector_id)
            except RuntimeError as exc:
                raise KeyError(vector_id) from exc

    def wait_for_build(self, timeout: float | None = None) -> None:
        if self.builder is not None:
            self.builder.join(timeout)

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        with self.lock:
            if allowed is not None:
                return self._exact_among(queries, k, np.asarray(allowed, dtype=np.int64))
            if self.kind == "hnsw":
                params = faiss.SearchParametersHNSW(efSearch=max(HNSW_EF_SEARCH, 2 * k))
                return self.index.search(queries, k, params=params)
            return self.index.search(queries, k)

    def _exact_among(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Brute force over the allowed ids' own vectors (right for any filter, cheap for selective ones)."""
        kept, rows = [], []
        for vector_id in allowed.tolist():
            try:
                rows.append(self.index.reconstruct(vector_id))
                kept.append(vector_id)
            except RuntimeError:  # not in this index (another space, or not stored)
                continue
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        found = np.full((len(queries), k), -1, dtype=np.int64)
        if not kept:
            return scores, found
        present = np.array(kept, dtype=np.int64)
        sims = queries @ np.stack(rows).T
        order = np.argsort(-sims, axis=1)[:, :k]
        top = np.take_along_axis(sims, order, axis=1)
        scores[:, : top.shape[1]], found[:, : top.shape[1]] = top, present[order]
        return scores, found

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def save(self) -> None:
        """Write the index to a temporary file and rename it: a crash mid-save keeps the previous file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.lock:
            tmp = self.path.with_suffix(".faiss.tmp")
            faiss.write_index(self.index, str(tmp))
            os.replace(tmp, self.path)
