"""Exact Hamming k-NN of binary descriptors on FAISS: the photo-search verifier's matcher (models/rerank.py).

FAISS's binary flat index answers the same two nearest neighbours as OpenCV's brute-force matcher, about 3×
faster on 1500 × 1500 ORB descriptors; it lives here, with the vector indexes, because models/ does not depend
on FAISS (ARCHITECTURE.md).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import faiss
import numpy as np


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """FAISS in this thread only, for one small search: OpenMP workers spinning beside other busy processes cost
    far more than they save on 1500 × 1500 descriptors (measured 8× slower on a loaded 2-core machine)."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # per calling thread (an OpenMP ICV): other threads' searches keep theirs
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def faiss_two_nearest(queries: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each query descriptor's two nearest gallery descriptors: (distances, indices), index -1 where missing."""
    index = faiss.IndexBinaryFlat(8 * gallery.shape[1])
    index.add(np.ascontiguousarray(gallery))
    with _one_thread():
        distances, indices = index.search(np.ascontiguousarray(queries), 2)
    return distances, indices
