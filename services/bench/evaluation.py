"""`sightline eval faces|reid`: measure identification on a user's own labelled folders.

Faces: DIR/<identity>/<image>; leave-one-out rank-1 over the queries whose identity
has another photo (single-photo identities stay in the gallery as distractors), and
the ROC AUC of genuine vs impostor pair similarities.
Re-identification: DIR/<identity>/<camera>_<n>.jpg; each image queries the images of
the other cameras; rank-1 and mAP; query expansion and verification also cross-validated over identities.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from models.detectors import FaceDetector, subject_face
from models.embedders import ConcatEmbedder, CropEmbedder, FaceEmbedder
from models.imageops import IMAGE_SUFFIXES
from models.records import InputError
from models.rerank import Verifier
from models.spaces import QUERY_EXPANSION, expand_query

REID_FOLDS = 5
WEIGHT_GRID = (0.0025, 0.005, 0.01, 0.02, 0.04)  # the verifier's inlier weight, cross-validated by `eval reid`
CAP_GRID = (30, 60, 120)
SCALE_GRID = (1.0, 1.5, 2.0, 3.0)  # TEBLID's sampling scale (models/rerank.py), cross-validated with them


def labelled_images(directory: Path) -> list[tuple[str, Path]]:
    """(identity, path) for every image under DIR/<identity>/."""
    if not directory.is_dir():
        raise InputError(f"{directory} is not a folder")
    items = [(d.name, f) for d in sorted(directory.iterdir()) if d.is_dir()
             for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not items:
        raise InputError(f"{directory} holds no <identity>/<image> files")
    return items


def roc_auc(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """Probability that a genuine pair scores above an impostor pair (ties count half), by ranks."""
    scores = np.concatenate([genuine, impostor])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks of ties
        tie = scores == value
        ranks[tie] = ranks[tie].mean()
    n_g, n_i = len(genuine), len(impostor)
    return float((ranks[:n_g].sum() - n_g * (n_g + 1) / 2) / (n_g * n_i))


def average_precision(relevant_sorted: np.ndarray) -> float:
    hits = np.flatnonzero(relevant_sorted)
    if len(hits) == 0:
        return 0.0
    return float(np.mean((np.arange(len(hits)) + 1) / (hits + 1)))


def evaluate_faces(directory: Path, detector: FaceDetector, embedder: FaceEmbedder) -> dict:
    items = labelled_images(directory)
    labels, vectors, no_face = [], [], []
    start = time.perf_counter()
    for identity, path in items:
        frame = cv2.imread(str(path))
        best = subject_face(detector.detect(frame)) if frame is not None else None
        if frame is None or best is None:
            no_face.append(str(path.relative_to(directory)))
            continue
        vectors.append(embedder.embed_faces(frame, [best.bbox])[0])
        labels.append(identity)
    elapsed = time.perf_counter() - start
    labels_arr, mat = np.array(labels), np.array(vectors)
    sims = mat @ mat.T
    np.fill_diagonal(sims, -np.inf)
    same = labels_arr[:, None] == labels_arr[None, :]
    np.fill_diagonal(same, False)
    queries = np.flatnonzero(same.any(1))
    hits = same[queries, sims[queries].argmax(1)]
    upper = np.triu_indices(len(labels), 1)
    pair_sims, pair_same = sims[upper], same[upper]
    return {"identities": len(set(labels)), "images": len(items), "no_face": len(no_face), "queries": int(len(queries)),
            "rank1": round(float(hits.mean()), 4) if len(queries) else None,
            "auc": round(roc_auc(pair_sims[pair_same], pair_sims[~pair_same]), 4),
            "ms_per_image": round(1000 * elapsed / len(items), 1), "no_face_files": no_face,
            "misses": [labels[q] for q, h in zip(queries, hits, strict=True) if not h]}


def _per_query(sims: np.ndarray, labels: np.ndarray, cameras: np.ndarray, rows: Iterable[int]
               ) -> tuple[list[bool], list[float]]:
    """Rank-1 hit and average precision of each query row whose identity another camera saw."""
    hits, aps = [], []
    for q in rows:
        gallery = np.flatnonzero(cameras != cameras[q])
        relevant = labels[gallery] == labels[q]
        if not relevant.any():
            continue  # nothing of this identity under another camera: a distractor only
        order = np.argsort(-sims[q, gallery], kind="stable")
        hits.append(bool(relevant[order[0]]))
        aps.append(average_precision(relevant[order]))
    return hits, aps


def reid_metrics(sims: np.ndarray, labels: np.ndarray, cameras: np.ndarray) -> tuple[float, float, int]:
    """(rank-1, mAP, queries) where each query's gallery is the images of the other cameras."""
    rank1, aps = _per_query(sims, labels, cameras, range(len(labels)))
    if not rank1:
        raise InputError("no identity is seen by two cameras (<camera>_<n>.jpg names)")
    return round(float(np.mean(rank1)), 4), round(float(np.mean(aps)), 4), len(rank1)


def cross_validate_choice(choices: dict[str, np.ndarray], deployed: str, labels: np.ndarray, cameras: np.ndarray,
                          map_first: bool = False, seed: int = 0) -> dict:
    """A setting chosen on the eval set, chosen again among `choices` (name -> similarity matrix) on the queries of
    4/5 of the identities (best rank-1 then mAP, or mAP then rank-1; ties keep the deployed one) and scored on the
    other fifth's queries, each still searching the whole other-camera gallery; the five parts pooled."""
    identities = np.random.default_rng(seed).permutation(np.unique(labels))

    def fit(rows: np.ndarray, name: str) -> tuple[float, float, bool]:
        h, a = _per_query(choices[name], labels, cameras, rows)
        r1, m = float(np.mean(h)), float(np.mean(a))
        return (m, r1, name == deployed) if map_first else (r1, m, name == deployed)

    hits, aps, chosen = [], [], Counter[str]()
    for fold in np.array_split(identities, REID_FOLDS):
        best = max(choices, key=partial(fit, np.flatnonzero(~np.isin(labels, fold))))
        chosen[best] += 1
        h, a = _per_query(choices[best], labels, cameras, np.flatnonzero(np.isin(labels, fold)))
        hits += h
        aps += a
    return {"folds": REID_FOLDS, "split": "identities", "rank1": round(float(np.mean(hits)), 4),
            "mAP": round(float(np.mean(aps)), 4), "chosen_per_fold": dict(chosen)}


def cross_validate_verifier(sims: np.ndarray, inliers: dict[float, np.ndarray], labels: np.ndarray,
                            cameras: np.ndarray, verifier: Verifier, seed: int = 0) -> dict:
    """The verifier's descriptor scale, weight and cap — chosen on ../shared/eval/reid/vehicle — chosen again from a
    grid (cross_validate_choice). `inliers`: descriptor scale -> the verifier's inlier matrix at that scale (the top
    candidates do not depend on the weight); the scales given are the ones tried."""
    def name(v: Verifier) -> str:
        return f"scale {v.descriptor_scale} weight {v.weight} cap {v.cap}"

    grid = [replace(verifier, descriptor_scale=s, weight=w, cap=c) for s in inliers for w in WEIGHT_GRID
            for c in CAP_GRID]
    choices = {name(v): sims + v.bonus(inliers[v.descriptor_scale]) for v in grid}
    return cross_validate_choice(choices, name(verifier), labels, cameras, seed=seed)


def expanded_similarities(vectors: np.ndarray, cameras: np.ndarray, neighbours: int) -> np.ndarray:
    """Each image's similarities to all, its vector first averaged with those of its `neighbours` nearest images of
    the other cameras (expand_query, as the photo search does: models/spaces.py)."""
    sims = vectors @ vectors.T
    if neighbours == 0:
        return sims
    out = np.empty_like(sims)
    for q in range(len(vectors)):
        gallery = np.flatnonzero(cameras != cameras[q])
        nearest = gallery[np.argsort(-sims[q, gallery], kind="stable")[:neighbours]]
        out[q] = vectors @ expand_query(vectors[q], vectors[nearest])
    return out


def query_expansion(vectors: np.ndarray, labels: np.ndarray, cameras: np.ndarray, space: str) -> dict:
    """Rank-1 and mAP for each number of neighbours averaged into the query (0: none), the deployed number for this
    space, and that choice made again under cross-validation over identities (by mAP: what expansion is for)."""
    deployed = QUERY_EXPANSION.get(space, 0)
    choices = {str(n): expanded_similarities(vectors, cameras, n) for n in sorted({0, 1, 2, 3, 5, deployed})}
    return {"deployed": deployed,
            "by_neighbours": {n: dict(zip(("rank1", "mAP"), reid_metrics(sims, labels, cameras)[:2], strict=True))
                              for n, sims in choices.items()},
            "cross_validated": cross_validate_choice(choices, str(deployed), labels, cameras, map_first=True)}


def identity_kind(identity: str) -> str:
    """The kind an identity's folder names before its first "_" (motorcycle_0055 → motorcycle); "" without one."""
    return identity.split("_", 1)[0] if "_" in identity else ""


def rank1_by_kind(named_sims: dict[str, np.ndarray], labels: np.ndarray, cameras: np.ndarray) -> dict | None:
    """Rank-1 of each kind of identity (the folder name's prefix: motorcycle_0055 → motorcycle), for each named
    similarity matrix, each query still searching the whole other-camera gallery: where re-identification fails
    (look-alike motorcycles, say). None unless every identity is named <kind>_<n> and there are two kinds."""
    kinds = np.array([identity_kind(label) for label in labels])
    if "" in kinds or len(set(kinds)) < 2:
        return None
    out: dict[str, dict[str, float | int]] = {}
    for kind in sorted(set(kinds)):
        rows = np.flatnonzero(kinds == kind)
        entry: dict[str, float | int] = {}
        for name, sims in named_sims.items():
            hits, _ = _per_query(sims, labels, cameras, rows)
            entry["queries"], entry[name] = len(hits), round(float(np.mean(hits)), 4) if hits else float("nan")
        if entry["queries"]:
            out[kind] = entry
    return out


def evaluate_reid(directory: Path, embedder: CropEmbedder | ConcatEmbedder, verifier: Verifier | None = None) -> dict:
    """Each image queries the other cameras' images, expanded as the photo search expands that space's queries
    (`query_expansion` has the figures for 0 to 5 neighbours). With a verifier, the leading candidates are re-ranked
    by local features (models/rerank.py) and `rank1_plain` / `mAP_plain` keep the figures before it."""
    items = labelled_images(directory)
    read = [cv2.imread(str(p)) for _, p in items]
    images = [im for im in read if im is not None]
    if len(images) < len(read):
        raise InputError(f"{directory}: some images cannot be read")
    start = time.perf_counter()
    vectors = np.concatenate([embedder.embed(images[i:i + 32]) for i in range(0, len(images), 32)])
    labels = np.array([identity for identity, _ in items])
    cameras = np.array([p.name.split("_", 1)[0] for _, p in items])
    expansion = query_expansion(vectors, labels, cameras, embedder.space)
    sims = expanded_similarities(vectors, cameras, expansion["deployed"])  # what the photo search ranks by
    rank1, mean_ap, queries = reid_metrics(sims, labels, cameras)
    # With expansion deployed, its by_neighbours["0"] has the figures without.
    model = embedder.version + (f"+query-expansion-{expansion['deployed']}" if expansion["deployed"] else "")
    result = {"identities": int(len(set(labels))), "images": len(items), "queries": queries, "rank1": rank1,
              "mAP": mean_ap, "space": embedder.space, "model": model, "query_expansion": expansion}
    named = {"rank1": sims}
    if verifier is not None:
        by_scale = {scale: replace(verifier, descriptor_scale=scale).inlier_matrix(
            sims, lambda i: images[i], lambda i: images[i], cameras[:, None] != cameras[None, :])
            for scale in sorted({verifier.descriptor_scale, *SCALE_GRID})}
        inliers = by_scale[verifier.descriptor_scale]
        named = {"rank1": sims + verifier.bonus(inliers), "rank1_plain": sims}
        result["rank1"], result["mAP"], _ = reid_metrics(named["rank1"], labels, cameras)
        result.update(rank1_plain=rank1, mAP_plain=mean_ap,
                      model=f"{model}+orb-teblid-homography-top{verifier.top_k}",
                      cross_validated=cross_validate_verifier(sims, by_scale, labels, cameras, verifier))
    if (kinds := rank1_by_kind(named, labels, cameras)) is not None:
        result["by_kind"] = kinds
    result["ms_per_image"] = round(1000 * (time.perf_counter() - start) / len(items), 2)
    return result
