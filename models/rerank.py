"""Re-identification re-ranking by local features with geometric verification.

A global embedding says "a white SUV"; stickers, dents, roof racks and ornaments say "this white SUV".
Local features (ORB's keypoints, described by TEBLID) matched between two crops and kept only where one
homography explains them (MAGSAC inliers) measure that: two photos of the same car share tens of geometrically
consistent matches, look-alikes share a handful of chance ones. The top candidates of the embedding are verified
and their similarity raised by the inlier count, so the embedding still decides everything outside them.

The descriptor is TEBLID (OpenCV contrib's learned binary descriptor, 256 bits like ORB's own) on ORB's keypoints,
sampling twice the keypoint's size (`descriptor_scale`). On the 35 cam2 → cam1 pairs of ../shared/eval/reid/vehicle
it separates true pairs from others far better than ORB's own descriptor: ROC AUC of the inlier count 0.957 →
0.991, chance inliers median 9 → 4 (p99 18 → 10), true pairs median 56 → 68, rank-1 by inliers alone 0.886 → 0.943;
the scale was chosen there among 1, 1.5, 2 and 3 (and ORB), and choosing again by AUC on 4/5 of the identities
picked 2 in 4 folds of 5 (3 in one), held-out rank-1 by inliers 0.943. Where it matters is a large gallery:
`bench photo-search --sightings 100000` rank-1 0.629 → 0.771, each query lifted whenever its vehicle was among
the verified, since look-alike distractors no longer reach 20–60 chance inliers. On the 35-vehicle gallery alone,
`eval reid --rerank` gives 0.971 against ORB's 0.986 (one query of 70); its cross-validation chooses the scale
again with the weight and cap: 0.971 held out, the deployed three in 5 folds of 5 (2026-11-29).

Measured on ../shared/eval/reid/vehicle (35 vehicles × 2 cameras, `sightline eval reid DIR --rerank`): with
MobileNet beside retail-0288 as the embedding, rank-1 0.857 → 0.971, mAP 0.915 → 0.986. That set is the only vehicle
set there is, so be wary: the scale, weight and cap are chosen on it, and `eval reid --rerank` cross-validates that
choice (`cross_validated`: the three chosen again on 4/5 of the identities, scored on the rest against the whole
gallery: 0.971, the deployed ones picked in 5 folds of 5; 0.957 at 320 px and 1,500 keypoints; an earlier 2-fold
split with half-size galleries, MobileNet alone: 0.891 with ORB, 0.863 with SIFT); the homography estimator
(MAGSAC) was then chosen for speed —
RANSAC, USAC and MAGSAC scored 0.957-0.986, one or two queries apart. Flip test-time augmentation (0.729), α-query
expansion (0.757) and k-reciprocal re-ranking (≤ 0.63) did not help MobileNet alone, nor (2026-11-29) the pair
(docs/performance.md): with one true match in a 35-image gallery there is no neighbourhood for them to exploit.
People are not rigid: on ../shared/eval/reid/person it lowers rank-1 0.751 → 0.705, so only vehicle searches are
verified.

Crops are matched at 256 px on their longer side with at most 1,000 keypoints (320 px and 1,500 until 2026-11-29):
~600 keypoints on an ingest crop instead of ~830, so extracting them (at ingest, once per vehicle; one thread) takes
3.5–4.1 instead of 4.1–7.4 ms and a match about half. Verification quality did not move: on the 35 pairs above, AUC
0.991 → 0.998, chance inliers p99 10 → 8, true pairs median 68 → 58; against the real vehicles behind `bench
photo-search`'s distractors, chance inliers max 15 → 10, true pairs at or under that max 5 → 2; `eval reid --rerank`
0.971 both, cross-validated 0.957 → 0.971. Across sides 224–320 and 800–1,500 keypoints (16 settings) `eval reid
--rerank` moved between 0.943 and 1.000 with no trend (4 queries of 70), so the setting was chosen for its cost, not
fitted: at 100k rank-1 stayed 0.771 in 3 runs alternated, p50 88–94 → 79–86 ms. Features stored at the old side read
as absent (`decode`), so `sightline reembed --space vehicle` rewrites them.

A query verifies 20 candidates: extracting their features from JPEG crops at query time cost ~10 ms each,
so each vehicle's features are extracted once at ingest and stored beside its crop (`features_key`) in the
compact format of `encode`/`decode`; a query then extracts only its own and matches (`inliers`, with the exact
Hamming kernel of models/hamming.py: 3× faster than FAISS's binary flat index, 8× cv2.BFMatcher, the same
answers). Candidates stored without them (older data, or ORB descriptors of format version 1) fall back to their
crop.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np

from models.hamming import two_nearest

# The stored-features format, version 2 (little-endian): a 12-byte header — magic b"SLOF", version u16, the side
# the crop was resized to (u16), the keypoint count n (u32) — then n (x, y) uint16 pairs in 1/64 px at that side,
# then n × 32 bytes of TEBLID descriptors. ~36 bytes a keypoint: ≤ 36 KB for 1,000. Version 1 held ORB's own
# descriptors: the same layout, but not comparable with TEBLID's, so such a blob reads as absent (re-extracted).
FEATURES_MAGIC, FEATURES_VERSION = b"SLOF", 2
_HEADER = struct.Struct("<4sHHI")
_FIXED = 64.0  # keypoint coordinates in 1/64 px: 256 px × 64 fits a uint16, and the error (≤ 1/128 px) is nothing
_DESCRIPTOR_BYTES = 32


def features_key(crop_key: str) -> str:
    """The blob key of a sighting's stored local features: its crop's key with `.orb` for the suffix.

    Beside the crop, so the date-partitioned folders stay small, and whatever removes a crop by its key
    (retention's purge and orphan sweep) finds the features from the same key.
    """
    folder, slash, name = crop_key.rpartition("/")
    return f"{folder}{slash}{name.rpartition('.')[0] or name}.orb"


def evidence_keys(crop_key: str) -> tuple[str, str]:
    """Every blob a sighting's evidence is kept in: its crop and the local features beside it (which a person's
    or face's sighting does not have). What removes a sighting's crop removes both; what keeps it keeps both."""
    return crop_key, features_key(crop_key)


@dataclass(frozen=True)
class LocalFeatures:
    """Keypoint positions and binary descriptors of one crop (resized so its longer side is `side`)."""

    points: np.ndarray  # (n, 2) float32
    descriptors: np.ndarray | None  # (n, 32) uint8, None when no keypoint was found

    def encode(self, side: int) -> bytes:
        """The stored format (module header): what ingest writes once per vehicle."""
        if not 0 < side * _FIXED <= 65535:
            raise ValueError(f"side {side} does not fit the format's uint16 coordinates")
        n = len(self.points) if self.descriptors is not None else 0
        points = np.clip(np.rint(self.points[:n] * _FIXED), 0, 65535).astype("<u2")
        descriptors = self.descriptors if self.descriptors is not None else np.zeros((0, _DESCRIPTOR_BYTES), np.uint8)
        return (_HEADER.pack(FEATURES_MAGIC, FEATURES_VERSION, side, n) + points.tobytes()
                + np.ascontiguousarray(descriptors, np.uint8).tobytes())

    @staticmethod
    def decode(data: bytes, side: int) -> LocalFeatures | None:
        """Features stored by `encode`; None when the blob is not that format, another version, truncated, or
        made at another side (its coordinates would not match this verifier's scale): the caller re-extracts."""
        if len(data) < _HEADER.size:
            return None
        magic, version, stored_side, n = _HEADER.unpack_from(data)
        if magic != FEATURES_MAGIC or version != FEATURES_VERSION or stored_side != side:
            return None
        if len(data) != _HEADER.size + n * (4 + _DESCRIPTOR_BYTES):
            return None
        points = np.frombuffer(data, "<u2", 2 * n, _HEADER.size).reshape(n, 2).astype(np.float32) / _FIXED
        descriptors = np.frombuffer(data, np.uint8, n * _DESCRIPTOR_BYTES, _HEADER.size + 4 * n)
        return LocalFeatures(points, descriptors.reshape(n, _DESCRIPTOR_BYTES) if n else None)


@dataclass(frozen=True)
class Verifier:
    """ORB keypoints, TEBLID descriptors, ratio test, homography (MAGSAC); similarity bonus = weight ×
    min(inliers, cap) on the top_k."""

    side: int = 256  # crops from different cameras differ in size: match at one scale
    features: int = 1000
    ratio: float = 0.8  # Lowe's ratio test
    reprojection_px: float = 8.0
    weight: float = 0.02  # chosen on eval/reid/vehicle: picked by every fold of `eval reid`'s cross-validation
    cap: int = 60  # past this many inliers it is the same object anyway; no runaway scores
    descriptor_scale: float = 2.0  # TEBLID's sampling region, in ORB keypoint sizes (module docstring)
    top_k: int = 20

    def __post_init__(self) -> None:
        # told at start-up, not at the first vehicle; a contrib build older than TEBLID (4.8) lacks it too
        if not hasattr(getattr(cv2, "xfeatures2d", None), "TEBLID_create"):
            raise RuntimeError("this OpenCV lacks its contrib modules (TEBLID, for photo-search verification): "
                               "run scripts/opencv_contrib.sh with this Python")

    def extract(self, image: np.ndarray) -> LocalFeatures:
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        scale = self.side / max(gray.shape[:2])
        gray = cv2.resize(gray, None, fx=scale, fy=scale,
                          interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        orb = cv2.ORB.create(nfeatures=self.features, edgeThreshold=15, patchSize=15)  # small patches: small crops
        keypoints = orb.detect(gray, None)
        contrib: Any = cv2.xfeatures2d  # contrib's stubs do not list TEBLID
        describer = contrib.TEBLID_create(self.descriptor_scale, contrib.TEBLID_SIZE_256_BITS)
        keypoints, descriptors = describer.compute(gray, keypoints)
        points = np.array([k.pt for k in keypoints], dtype=np.float32).reshape(-1, 2)
        return LocalFeatures(points, descriptors)

    def encode(self, image: np.ndarray) -> bytes:
        """The local features of a crop in the stored format (at ingest, once per vehicle)."""
        return self.extract(image).encode(self.side)

    def decode(self, data: bytes) -> LocalFeatures | None:
        """Stored features, or None when they must be re-extracted from the crop (see LocalFeatures.decode)."""
        return LocalFeatures.decode(data, self.side)

    def inliers(self, a: LocalFeatures, b: LocalFeatures) -> int:
        """Matches between a and b that one homography explains."""
        if a.descriptors is None or b.descriptors is None or len(a.points) < 4 or len(b.points) < 4:
            return 0
        # Each of a's descriptors: its two nearest in b (exact Hamming), kept when the nearest is clearly nearer
        # (a tie for first place fails the test, so which of the tied is returned does not matter)
        distances, nearest = two_nearest(a.descriptors, b.descriptors)
        good = np.flatnonzero(distances[:, 0] < self.ratio * distances[:, 1])
        if len(good) < 4:
            return 0
        src, dst = a.points[good], b.points[nearest[good]]
        # USAC_MAGSAC: 100× faster than RANSAC on junk pairs
        _, mask = cv2.findHomography(src, dst, cv2.USAC_MAGSAC, self.reprojection_px)
        return int(mask.sum()) if mask is not None else 0

    def bonus(self, inliers: np.ndarray) -> np.ndarray:
        return self.weight * np.minimum(np.asarray(inliers, dtype=np.float32), self.cap)

    def inlier_matrix(self, sims: np.ndarray, queries: Callable[[int], np.ndarray],
                      gallery: Callable[[int], np.ndarray], valid: np.ndarray | None = None) -> np.ndarray:
        """Inliers of each row's top_k valid entries by similarity, 0 elsewhere (no bonus): `sims + bonus(...)` is
        the re-ranked matrix, and an evaluation can weigh the inliers again without matching again.

        `queries(i)` / `gallery(j)` load images on demand: only the verified ones are read, each once.
        """
        counts = np.zeros(np.shape(sims), np.float32)
        valid = np.ones_like(counts, dtype=bool) if valid is None else valid
        cache: dict[tuple[str, int], LocalFeatures] = {}

        def features(side: str, i: int) -> LocalFeatures:
            if (side, i) not in cache:
                cache[side, i] = self.extract((queries if side == "q" else gallery)(i))
            return cache[side, i]

        masked = np.where(valid, sims, -np.inf)
        for q in range(len(counts)):
            top = np.argsort(-masked[q], kind="stable")[: self.top_k]
            top = top[np.isfinite(masked[q, top])]
            counts[q, top] = [self.inliers(features("q", q), features("g", int(j))) for j in top]
        return counts
