"""The geometry of the evidence report's maps, as small pure functions the tests check without reading a PDF.

Page coordinates are millimetres, y downwards (fpdf2's). Everything drawn is computed here first: lines are cut at
the map's frame (a road leaving the map stops at its edge), a route is one line per trip (separate trips are not
joined by a line the vehicle never drove), and stop labels at one place are merged ("1, 4, 7") and placed so that
they do not cover each other.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Point = tuple[float, float]
MAX_NUMBERS = 6  # numbers one merged label shows before "…" (the stop list below the map has them all)


@dataclass(frozen=True)
class Frame:
    x: float
    y: float
    w: float
    h: float

    def holds(self, p: Point, eps: float = 1e-6) -> bool:
        return self.x - eps <= p[0] <= self.x + self.w + eps and self.y - eps <= p[1] <= self.y + self.h + eps

    def clamp(self, p: Point) -> Point:
        """A point computed on the frame's edge, put exactly on it (not a rounding error outside)."""
        return min(max(p[0], self.x), self.x + self.w), min(max(p[1], self.y), self.y + self.h)

    def holds_box(self, x: float, y: float, w: float, h: float) -> bool:
        return self.holds((x, y)) and self.holds((x + w, y + h))


@dataclass(frozen=True)
class Projection:
    """Longitude/latitude to the page: equirectangular (east-west shrunk by cos(latitude)), fitted to a frame."""

    west: float
    south: float
    kx: float
    scale: float
    left: float  # page x of `west`
    bottom: float  # page y of `south`

    def __call__(self, lon: float, lat: float) -> Point:
        return self.left + (lon - self.west) * self.kx * self.scale, self.bottom - (lat - self.south) * self.scale

    def lonlat(self, x: float, y: float) -> Point:
        return self.west + (x - self.left) / (self.kx * self.scale), self.south + (self.bottom - y) / self.scale


def fit(points: Sequence[Point], frame: Frame, pad: float = 0.1) -> Projection:
    """The projection that shows every (lon, lat) of `points` inside the frame, a margin around, centred."""
    lons, lats = [p[0] for p in points], [p[1] for p in points]
    margin = max(max(lons) - min(lons), max(lats) - min(lats), 0.002) * pad
    west, east, south, north = min(lons) - margin, max(lons) + margin, min(lats) - margin, max(lats) + margin
    kx = math.cos(math.radians((south + north) / 2))
    scale = min(frame.w / ((east - west) * kx), frame.h / (north - south))
    left = frame.x + (frame.w - (east - west) * kx * scale) / 2
    bottom = frame.y + frame.h - (frame.h - (north - south) * scale) / 2
    return Projection(west, south, kx, scale, left, bottom)


def clip_segment(a: Point, b: Point, frame: Frame) -> tuple[Point, Point] | None:
    """The part of segment a–b inside the frame (Liang–Barsky), or None; an end inside is returned unchanged."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    t0, t1 = 0.0, 1.0
    for p, q in ((-dx, a[0] - frame.x), (dx, frame.x + frame.w - a[0]), (-dy, a[1] - frame.y),
                 (dy, frame.y + frame.h - a[1])):
        if p == 0:
            if q < 0:
                return None
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return None
    start = a if t0 == 0 else frame.clamp((a[0] + t0 * dx, a[1] + t0 * dy))
    end = b if t1 == 1 else frame.clamp((a[0] + t1 * dx, a[1] + t1 * dy))
    return start, end


def clip_polyline(line: Sequence[Point], frame: Frame) -> list[list[Point]]:
    """The pieces of a polyline inside the frame: a line that leaves and comes back is two pieces."""
    pieces: list[list[Point]] = []
    current: list[Point] = []
    for a, b in zip(line, line[1:], strict=False):
        part = clip_segment(a, b, frame)
        if part is None:
            current = []
            continue
        start, end = part
        if not current or current[-1] != start:
            current = [start]
            pieces.append(current)
        current.append(end)
        if end != b:  # it left the frame here
            current = []
    return [p for p in pieces if len(p) > 1]


def route_lines(points: Sequence[Point], trips: Sequence[Sequence[int]], frame: Frame) -> list[list[Point]]:
    """A route's lines: one per trip (indices into `points`, as geo.trajectories cuts them), clipped; the gap
    between two trips is never drawn as if driven."""
    return [piece for trip in trips for piece in clip_polyline([points[i] for i in trip], frame)]


@dataclass
class Label:
    x: float  # the text's left end and baseline
    y: float
    text: str
    route: int  # which route's colour it takes
    w: float
    h: float

    def box(self) -> tuple[float, float, float, float]:
        return self.x, self.y - self.h, self.w, self.h


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def numbered(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:MAX_NUMBERS])
    return shown + (", …" if len(numbers) > MAX_NUMBERS else "")


def stop_labels(routes: Sequence[Sequence[Point]], frame: Frame, char_w: float = 1.1, h: float = 2.0,
                merge_mm: float = 1.0, gap: float = 1.0, dot: float = 0.9) -> list[Label]:
    """The stop numbers of each route (its points in order, 1-based): one label per place (points closer than
    `merge_mm` on the page, e.g. the same camera), tried at the point's four corners for one that stays in the
    frame and covers no stop's dot (of radius `dot`) and no label placed before; if none does, the first that stays
    in the frame."""
    labels: list[Label] = []
    dots = [(x - dot, y - dot, 2 * dot, 2 * dot) for points in routes for x, y in points]
    for r, points in enumerate(routes):
        places: list[tuple[Point, list[int]]] = []
        for n, p in enumerate(points, 1):
            place = next((pl for pl in places if math.dist(pl[0], p) <= merge_mm), None)
            if place is None:
                places.append((p, [n]))
            else:
                place[1].append(n)
        for (x, y), numbers in places:
            text = numbered(numbers)
            w = len(text) * char_w
            corners = [(x + gap, y - gap), (x + gap, y + gap + h), (x - gap - w, y - gap), (x - gap - w, y + gap + h)]
            tries = [Label(cx, cy, text, r, w, h) for cx, cy in corners]
            inside = [t for t in tries if frame.holds_box(*t.box())] or tries
            taken = dots + [o.box() for o in labels]
            labels.append(next((t for t in inside if not any(_overlap(t.box(), o) for o in taken)), inside[0]))
    return labels
