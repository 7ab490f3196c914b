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
    def __len__(self) -> int: ...

    @abstractmethod
    def save(self) -> None: ...


class FaissIndex(VectorIndex):
    """Exact inner-product search (IndexFlatIP under an id map), persisted as `<space>.faiss`."""

    def __init__(self, directory: Path, space: str, dim: int, store: RecordStore):
        self.directory, self.space, self.dim = directory, space, dim
        self.path = directory / f"{space}.faiss"
        self.lock = threading.RLock()
        self.index, self.last_id = self._load()
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

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        with self.lock:
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))
            self.last_id = max(self.last_id, int(np.max(ids)))

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        params = None
        if allowed is not None:
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64)))
        with self.lock:
            return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def save(self) -> None:
        """Write the index to a temporary file and rename it: a crash mid-save keeps the previous file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.lock:
            tmp = self.path.with_suffix(".faiss.tmp")
            faiss.write_index(self.index, str(tmp))
            os.replace(tmp, self.path)
