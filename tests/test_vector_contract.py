"""The vector-index contract: one suite, run over every backend in services.system.VECTOR_BACKENDS, each in a
small configuration (exact search) and past its exact limit (approximate search, built in the background: for FAISS an
HNSW graph, and past the graph limit an IVF).

Vectors enter the way ingestion puts them there: stored in the record store first, then taken in by the
index (on open, or by catch_up). Answers are checked against brute force over the same vectors.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from indexer.store import FrameRecord, RecordStore, StoredVector
from indexer.vectors import VectorIndex
from models.records import BBox, InputError, Sighting, VehicleAttributes
from services.settings import Settings
from services.system import STORE_BACKENDS, VECTOR_BACKENDS, WRITE_ONLY_VECTOR_BACKENDS
from tests.es_cluster import for_backend

DIM, N, K = 32, 2000, 10
SPACE = "vehicle"
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)
# (exact_limit, graph_limit); N vectors are stored
CONFIGS = {"exact": (100_000, 100_000), "past-exact-limit": (500, 100_000), "past-graph-limit": (500, 500)}


@dataclass
class Bench:
    settings: Settings
    backend: str
    store: RecordStore
    exact: bool

    def open(self) -> VectorIndex:
        index = VECTOR_BACKENDS[self.backend](self.settings, SPACE, DIM, self.store)
        settle(index)
        return index

    def store_vectors(self, frame: str, vectors: np.ndarray) -> np.ndarray:
        """Store vectors as one frame's sightings; returns the vector ids the store gave them."""
        rows = [Sighting(f"{frame}-{i}", "c1", T0, "vehicle", BBox(0, 0, 1, 1), 0.9, VehicleAttributes())
                for i in range(len(vectors))]
        self.store.add_frame(FrameRecord(frame, "c1", T0, "test"), rows,
                             [StoredVector(s.id, SPACE, v) for s, v in zip(rows, vectors, strict=True)])
        return np.array([s.vector_id for s in rows], np.int64)


def settle(index: VectorIndex) -> None:
    """Wait for a background (re)build where the backend has one."""
    wait = getattr(index, "wait_for_build", None)
    if wait is not None:
        wait(60)


def clustered(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit vectors in groups of five around random centres: real neighbourhoods, like appearance vectors."""
    centres = rng.standard_normal((n // 5, DIM)).astype(np.float32)
    vectors = np.repeat(centres, 5, axis=0) + rng.normal(scale=0.15, size=(n, DIM)).astype(np.float32)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


SEARCHABLE = sorted(set(VECTOR_BACKENDS) - WRITE_ONLY_VECTOR_BACKENDS)


@pytest.fixture(params=[(b, c) for b in SEARCHABLE for c in CONFIGS],
                ids=[f"{b}-{c}" for b in SEARCHABLE for c in CONFIGS])
def bench(request: pytest.FixtureRequest, tmp_path: Path):  # noqa: ANN201
    backend, config = request.param
    exact_limit, graph_limit = CONFIGS[config]
    with for_backend(backend, Settings(data_dir=tmp_path, roads_geojson=None, exact_limit=exact_limit,
                                       graph_limit=graph_limit)) as settings:
        store = STORE_BACKENDS[settings.store_backend](settings)
        yield Bench(settings, backend, store, exact=N <= exact_limit)
        store.close()


@pytest.fixture
def filled(bench: Bench) -> tuple[Bench, VectorIndex, np.ndarray, np.ndarray]:
    """N clustered vectors stored, and an index opened over them: (bench, index, ids, vectors)."""
    vectors = clustered(np.random.default_rng(0), N)
    ids = bench.store_vectors("f0", vectors)
    index = bench.open()
    if bench.backend == "faiss":  # the kind follows the size: exact, then a graph, then IVF
        s = bench.settings
        assert index.kind == ("flat" if N <= s.exact_limit else "hnsw" if N <= s.graph_limit else "ivfpq")
    return bench, index, ids, vectors


def brute(queries: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = queries @ vectors.T
    order = np.argsort(-sims, axis=1)[:, :k]
    return np.take_along_axis(sims, order, axis=1), ids[order]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's true k nearest that were found."""
    hits = [len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits)) / truth.shape[1]


def queries_near(rng: np.random.Generator, vectors: np.ndarray, n: int = 30) -> np.ndarray:
    picked = vectors[rng.choice(len(vectors), n, replace=False)]
    q = picked + rng.normal(scale=0.05, size=picked.shape).astype(np.float32)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def test_search_agrees_with_brute_force(filled) -> None:  # noqa: ANN001
    bench, index, ids, vectors = filled
    assert len(index) == N
    queries = queries_near(np.random.default_rng(1), vectors)
    scores, found = index.search(queries, K)
    assert scores.shape == found.shape == (len(queries), K)
    want_scores, want = brute(queries, ids, vectors, K)
    if bench.exact:
        assert (found == want).all()
        assert np.allclose(scores, want_scores, atol=1e-5)
    else:
        assert recall(found, want) >= 0.9
    # scores are honest cosines of the ids returned, best first
    by_id = dict(zip(ids.tolist(), vectors, strict=True))
    for q, row_scores, row_ids in zip(queries, scores, found, strict=True):
        assert np.all(np.diff(row_scores) <= 1e-6)
        assert np.allclose(row_scores, [q @ by_id[int(i)] for i in row_ids], atol=1e-5)
    # one query at a time (the photo search's case, which a flat index answers with numpy): the same answers
    for q, want_row, want_row_scores in zip(queries[:5], want[:5], want_scores[:5], strict=True):
        one_scores, one = index.search(q[None], K)
        if bench.exact:
            assert (one[0] == want_row).all() and np.allclose(one_scores[0], want_row_scores, atol=1e-5)
        assert np.all(np.diff(one_scores[0]) <= 1e-6)
    # a stored vector finds itself first
    own_scores, own = index.search(vectors[:20], 1)
    assert (own[:, 0] == ids[:20]).all() and np.allclose(own_scores[:, 0], 1.0, atol=1e-5)


def test_filtered_search_is_brute_force_among_the_allowed(filled) -> None:  # noqa: ANN001
    bench, index, ids, vectors = filled
    rng = np.random.default_rng(2)
    queries = queries_near(rng, vectors, 20)
    for size in (3, 15, 150):  # narrow filters: the true nearest among the allowed, for every configuration
        pick = rng.choice(N, size, replace=False)
        scores, found = index.search(queries, K, ids[pick])
        want_scores, want = brute(queries, ids[pick], vectors[pick], K)
        n = min(K, size)
        assert (found[:, :n] == want).all()
        assert np.allclose(scores[:, :n], want_scores, atol=1e-5)
        assert (found[:, n:] == -1).all()  # fewer allowed than k: the rest is empty, never an outsider
    wide = rng.choice(N, N // 2, replace=False)  # a wide filter: never outside it; exact when the index is
    _, found = index.search(queries, K, ids[wide])
    assert np.isin(found, ids[wide]).all()
    _, want = brute(queries, ids[wide], vectors[wide], K)
    assert (found == want).all() if bench.exact else recall(found, want) >= 0.9


def test_remove_and_vector(filled) -> None:  # noqa: ANN001
    bench, index, ids, vectors = filled
    assert np.allclose(index.vector(int(ids[7])), vectors[7], atol=1e-6)
    with pytest.raises(KeyError):
        index.vector(10**9)
    gone = ids[:10]
    assert index.remove(gone) == 10
    assert index.remove(gone) == 0  # how many were present
    assert len(index) == N - 10
    with pytest.raises(KeyError):
        index.vector(int(gone[3]))
    _, found = index.search(vectors[:10], K)
    assert not np.isin(found, gone).any()
    _, found = index.search(vectors[:10], K, ids[:20])  # nor when the filter allows them
    assert not np.isin(found, gone).any() and (found[:, :10] >= 0).all()


def test_catch_up_takes_in_what_the_store_holds_once(filled) -> None:  # noqa: ANN001
    bench, index, ids, vectors = filled
    assert index.catch_up() == 0  # it opened with everything
    fresh = clustered(np.random.default_rng(3), 10)
    new_ids = bench.store_vectors("f1", fresh)
    assert len(index) == N  # stored after the index opened: not in it yet
    assert index.catch_up() == 10
    assert index.catch_up() == 0  # and only once
    settle(index)
    assert len(index) == N + 10
    scores, found = index.search(fresh, 1)
    assert (found[:, 0] == new_ids).all() and np.allclose(scores[:, 0], 1.0, atol=1e-5)
    assert np.allclose(index.vector(int(new_ids[4])), fresh[4], atol=1e-6)


def test_vectors_of_an_earlier_model_are_skipped_not_fatal(bench: Bench) -> None:
    """A space's model changed dimension: the store still holds the older vectors (until re-embedded) before
    and among the new ones; the index opens and catches up with the new ones only."""
    rng = np.random.default_rng(4)
    older = rng.standard_normal((6, DIM + 4)).astype(np.float32)
    bench.store_vectors("old", older / np.linalg.norm(older, axis=1, keepdims=True))
    current = clustered(rng, 10)
    first = bench.store_vectors("new", current[:5])
    bench.store_vectors("old-again", older[:2] / np.linalg.norm(older[:2], axis=1, keepdims=True))
    index = bench.open()
    assert len(index) == 5
    second = bench.store_vectors("new-again", current[5:])
    assert index.catch_up() == 5
    settle(index)
    _, found = index.search(current, 1)
    assert found[:, 0].tolist() == np.concatenate([first, second]).tolist()


def test_deletions_are_dropped_on_open_beside_vectors_of_an_earlier_model(bench: Bench) -> None:
    """Issue #31, defect 6: a deletion the index missed (a crash before its save, another process) is found on
    open by comparing the store's count with the index's; the count must be of the index's dimension only, or
    the earlier model's vectors still waiting for re-embedding hide as many deletions."""
    rng = np.random.default_rng(5)
    older = rng.standard_normal((6, DIM + 4)).astype(np.float32)
    bench.store_vectors("old", older / np.linalg.norm(older, axis=1, keepdims=True))
    current = clustered(rng, 10)
    ids = bench.store_vectors("new", current)
    index = bench.open()
    index.save()
    bench.store.delete_sightings(ids=[f"new-{i}" for i in range(3)])  # the store only: the index never hears
    reopened = bench.open()
    assert len(reopened) == 7
    _, found = reopened.search(current, 1)
    assert not np.isin(found, ids[:3]).any()


def test_save_and_reopen_keeps_the_contents(filled) -> None:  # noqa: ANN001
    bench, index, ids, vectors = filled
    index.remove(ids[:5])
    bench.store.delete_sightings(ids=[f"f0-{i}" for i in range(5)])  # retention: the store first, then the index
    queries = queries_near(np.random.default_rng(4), vectors, 20)
    before = index.search(queries, K)
    index.save()
    reopened = bench.open()
    assert len(reopened) == N - 5
    after = reopened.search(queries, K)
    assert (after[1] == before[1]).all() and np.allclose(after[0], before[0], atol=1e-5)
    assert np.allclose(reopened.vector(int(ids[100])), vectors[100], atol=1e-6)
    with pytest.raises(KeyError):
        reopened.vector(int(ids[2]))
    if hasattr(index, "kind"):
        assert reopened.kind == index.kind

    # What happened after the last save is repaired on open: vectors stored since are taken in, vectors the
    # store deleted since (a crash between the store's commit and the index's save) are dropped.
    late_vectors = clustered(np.random.default_rng(5), 5)
    late = bench.store_vectors("f1", late_vectors)
    bench.store.delete_sightings(ids=[f"f0-{i}" for i in range(5, 8)])
    repaired = bench.open()
    assert len(repaired) == N - 8 + 5
    assert not np.isin(ids[5:8], repaired.search(vectors[5:8], K)[1]).any()
    assert (repaired.search(late_vectors, 1)[1][:, 0] == late).all()


def test_a_lost_or_damaged_index_file_is_rebuilt_from_the_store(filled) -> None:  # noqa: ANN001
    bench, index, ids, vectors = filled
    if bench.backend == "elasticsearch":  # the index lives in the cluster, not in files: it is lost there
        index.client.indices.delete(index=index.name)
        rebuilt = bench.open()
        assert len(rebuilt) == N and (rebuilt.search(vectors[:5], 1)[1][:, 0] == ids[:5]).all()
        return
    index.save()
    files = [p for p in bench.settings.index_dir.rglob("*") if p.is_file()]
    assert files, "save() should write under settings.index_dir"
    for p in files:
        p.write_bytes(b"not an index")
    rebuilt = bench.open()
    assert len(rebuilt) == N
    _, found = rebuilt.search(vectors[:5], 1)
    assert (found[:, 0] == ids[:5]).all()
    for p in files:
        p.unlink()
    assert len(bench.open()) == N


@pytest.mark.parametrize("backend", sorted(WRITE_ONLY_VECTOR_BACKENDS))
def test_a_write_only_backend_says_where_to_search(tmp_path: Path, backend: str) -> None:
    """A queue worker's index keeps nothing; asked to search, it says so instead of answering empty."""
    settings = Settings(data_dir=tmp_path, roads_geojson=None)
    store = STORE_BACKENDS["sqlite"](settings)
    try:
        index = VECTOR_BACKENDS[backend](settings, SPACE, DIM, store)
        index.add(np.array([1]), np.ones((1, DIM), np.float32))
        assert len(index) == 0 and index.catch_up() == 0
        with pytest.raises(InputError, match="search through the API"):
            index.search(np.ones((1, DIM), np.float32), 5)
    finally:
        store.close()
