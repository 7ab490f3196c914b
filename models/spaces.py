"""The embedding spaces: one per sighting kind, their dimensions, the face match threshold and query expansion.

Light to import (no models): the vector indexes, the searches and the alert rules all size
and judge vectors by these numbers.
"""
from __future__ import annotations

import numpy as np

# A space whose model changes dimension keeps its older vectors until `sightline reembed` replaces them: the
# indexes skip them meanwhile (vehicle was 1024 — MobileNet alone — until 2026-11-28).
SPACES: dict[str, int] = {"vehicle": 1280, "person": 768, "face": 128}

# dlib's published rule is "same person below Euclidean 0.6" on its raw descriptors, whose norms are about
# 1.3–1.6 (mean ≈1.45). Sightline stores unit vectors: 0.6 / 1.45 ≈ 0.41 there, i.e. cosine ≈ 1 - 0.41²/2 ≈ 0.915.
# Measured on ../shared/eval/faces: genuine pairs ≥ 0.928, impostor pairs ≤ 0.918 — a narrow margin.
FACE_MATCH_COSINE = 0.92
FACE_MATCH_RULE = (
    f"cosine similarity ≥ {FACE_MATCH_COSINE}: dlib's published same-person rule (Euclidean distance below 0.6 on "
    "its raw descriptors, norm ≈1.45) on the unit vectors Sightline stores. On the project's eval faces genuine "
    "pairs scored ≥ 0.928 and impostors ≤ 0.918, so a tighter threshold trades missed matches for fewer false ones.")

# A photo search for a person averages the probe's vector with that of its nearest stored person and searches
# again (average query expansion): the nearest is usually the same person seen by another camera, and that view
# pulls in the person's other views the probe alone ranks low. On ../shared/eval/reid/person, each image against
# the other camera's (`sightline eval reid --kind person`): mAP 0.707 → 0.789, rank-1 0.751 unchanged; choosing
# among 0, 1, 2, 3 and 5 neighbours again on 4/5 of the identities picked 1 in all 5 folds, mAP 0.789 held out.
# Vehicles are not expanded: with one photo a vehicle a camera it never helped (mAP 0.915 → 0.902 with one
# neighbour, rank-1 0.857 → 0.771 with three; docs/performance.md).
QUERY_EXPANSION: dict[str, int] = {"person": 1}


def expand_query(probe: np.ndarray, nearest: np.ndarray) -> np.ndarray:
    """The probe's unit vector averaged with the vectors of its nearest stored sightings (rows), unit length."""
    total = np.asarray(probe, np.float32) + np.asarray(nearest, np.float32).reshape(-1, len(probe)).sum(axis=0)
    return total / max(float(np.linalg.norm(total)), 1e-12)
