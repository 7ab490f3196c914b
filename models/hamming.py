"""Exact two-nearest-neighbour search of binary descriptors by Hamming distance: the photo-search verifier's matcher.

Verification (models/rerank.py) matches a probe's binary descriptors (up to 1,000; 1,500 until 2026-11-29) against
each of 20 candidates': up to 20 M distances a query (45 M before), the largest single cost of a photo search.
FAISS's binary flat index keeps a heap per query and scores one descriptor at a time (3.3 ms a pair here); OpenCV's
brute force is 3× slower still. This kernel computes one query row's distances to the whole gallery in a loop LLVM
vectorises (AVX-512 VPOPCNTQ where the CPU has it), two rows at a time so each gallery word is loaded once for both,
then takes the two smallest in two more vectorised passes: ~1.1 ms a 1,500 × 1,500 pair, the same distances as both
libraries.

Numba compiles it on first use (under a second; not cached on disk, so a read-only install works) and it
releases the GIL, so the verifier's threads run it in parallel.
"""
# mypy: disable-error-code="call-arg, var-annotated"
# (numba's decorators hide the kernel's and the intrinsic's signatures from mypy)
from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

_INDEX_BITS = 22  # a distance (≤ 256, 9 bits) and a gallery index (< 2²²) packed in one int32: one min finds both
MAX_GALLERY = 1 << _INDEX_BITS
_NONE = np.int32(0x7FFFFFFF)


@intrinsic
def _popcount(typingctx, x):
    """LLVM's ctpop on a uint64: one instruction, vectorised with the loop around it."""
    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])
    return types.uint64(types.uint64), codegen


@njit(nogil=True, boundscheck=False)
def _two_nearest(queries, g0, g1, g2, g3, distances, nearest):
    """queries: (n, 4) uint64; g0..g3: the gallery's four 64-bit words, one array each (m,)."""
    m = g0.shape[0]
    n = queries.shape[0]
    index = np.arange(m).astype(np.int32)
    key_a = np.empty(m, np.int32)
    key_b = np.empty(m, np.int32)
    for i in range(0, n, 2):
        j = min(i + 1, n - 1)  # an odd count: the last row is computed twice, harmlessly
        a0, a1, a2, a3 = queries[i, 0], queries[i, 1], queries[i, 2], queries[i, 3]
        b0, b1, b2, b3 = queries[j, 0], queries[j, 1], queries[j, 2], queries[j, 3]
        for k in range(m):
            c0, c1, c2, c3 = g0[k], g1[k], g2[k], g3[k]
            da = _popcount(a0 ^ c0) + _popcount(a1 ^ c1) + _popcount(a2 ^ c2) + _popcount(a3 ^ c3)
            db = _popcount(b0 ^ c0) + _popcount(b1 ^ c1) + _popcount(b2 ^ c2) + _popcount(b3 ^ c3)
            key_a[k] = (np.int32(da) << _INDEX_BITS) | index[k]
            key_b[k] = (np.int32(db) << _INDEX_BITS) | index[k]
        for row, key in ((i, key_a), (j, key_b)):
            first = _NONE
            for k in range(m):
                first = min(first, key[k])
            second = _NONE  # the smallest key but the first: the second-nearest descriptor, ties included
            for k in range(m):
                x = key[k]
                second = min(second, _NONE if x == first else x)
            distances[row, 0] = first >> _INDEX_BITS
            distances[row, 1] = second >> _INDEX_BITS if second != _NONE else _NONE
            nearest[row] = first & (MAX_GALLERY - 1)


def two_nearest(queries: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query descriptor (rows of 32 bytes), its two smallest Hamming distances to the gallery's, (n, 2)
    int32, and the index of its nearest, (n,) int64. With one gallery descriptor the second distance is int32's
    maximum; of several at the same least distance, the first is named and the second distance equals the first.
    """
    if queries.ndim != 2 or gallery.ndim != 2 or queries.shape[1] != 32 or gallery.shape[1] != 32:
        raise ValueError("descriptors must be rows of 32 bytes (256-bit binary descriptors)")
    if not 0 < len(gallery) < MAX_GALLERY:
        raise ValueError(f"the gallery must hold between 1 and {MAX_GALLERY - 1} descriptors")
    words = np.ascontiguousarray(gallery, np.uint8).view(np.uint64)
    distances = np.empty((len(queries), 2), np.int32)
    nearest = np.empty(len(queries), np.int64)
    if len(queries):
        _two_nearest(np.ascontiguousarray(queries, np.uint8).view(np.uint64),
                     *(np.ascontiguousarray(words[:, w]) for w in range(4)), distances, nearest)
    return distances, nearest
