"""The embedding spaces: one per sighting kind, their dimensions, and the face match threshold.

Light to import (no models): the vector indexes, the searches and the alert rules all size
and judge vectors by these numbers.
"""
from __future__ import annotations

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
