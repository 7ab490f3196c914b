"""Great-circle distances: vectorised for scans over millions of reads, scalar for one streaming check."""
from __future__ import annotations

import math
from typing import overload

import numpy as np

EARTH_RADIUS_M = 6_371_008.8


@overload
def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float: ...
@overload
def haversine_m(lon1: np.ndarray, lat1: np.ndarray, lon2: np.ndarray, lat2: np.ndarray) -> np.ndarray: ...
def haversine_m(lon1: np.ndarray | float, lat1: np.ndarray | float, lon2: np.ndarray | float,
                lat2: np.ndarray | float) -> np.ndarray | float:
    """Great-circle distance in metres, vectorised over arrays of degrees (scalars give a numpy float)."""
    lon1, lat1, lon2, lat2 = (np.radians(np.asarray(v, dtype=np.float64)) for v in (lon1, lat1, lon2, lat2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def haversine_one_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """The same for two points, with math: numpy's per-call overhead would dominate a per-sighting check."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, max(0.0, a))))
