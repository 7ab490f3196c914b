"""Multi-object tracking by motion + IoU, ByteTrack-style, and best-frame selection per track.

Detections of one kind are associated frame to frame: first the confident ones
against every live track's constant-velocity prediction, then the weak ones
against the tracks still unmatched (a weak detection only extends a track, never
starts one). A track ends after `max_lost` frames without a match.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from models.imageops import iou_matrix
from models.observations import Detection


def greedy_match(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs (row, col) taken in order of decreasing IoU, each row and column once, IoU ≥ threshold."""
    pairs: list[tuple[int, int]] = []
    if iou.size == 0:
        return pairs
    rows, cols = np.unravel_index(np.argsort(-iou, axis=None), iou.shape)
    used_r: set[int] = set()
    used_c: set[int] = set()
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        if iou[r, c] < threshold:
            break
        if r not in used_r and c not in used_c:
            pairs.append((r, c))
            used_r.add(r)
            used_c.add(c)
    return pairs


@dataclass
class Candidate:
    """One frame of a track kept as a possible best frame."""

    frame_index: int
    detection: Detection
    quality: float
    frame: np.ndarray  # the decoded frame itself (shared, not copied); the models crop it later


@dataclass
class Track:
    id: int
    kind: str
    label: str
    box: np.ndarray  # last matched x1y1x2y2
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))
    hits: int = 1
    lost: int = 0
    first_frame: int = 0
    last_frame: int = 0
    path: list[tuple[int, float, float]] = field(default_factory=list)  # (frame index, centre x, centre y)
    candidates: list[Candidate] = field(default_factory=list)

    def predicted(self) -> np.ndarray:
        return self.box + self.velocity * (self.lost + 1)

    def best(self, n: int = 1) -> list[Candidate]:
        return sorted(self.candidates, key=lambda c: -c.quality)[:n]


def crop_quality(crop: np.ndarray, det: Detection, frame_shape: tuple[int, ...]) -> float:
    """How good a crop is as evidence: size, sharpness, detector confidence, and not cut by the frame edge."""
    h, w = frame_shape[:2]
    b = det.bbox
    size = min(1.0, np.sqrt(b.area) / 200.0)
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    sharp = min(1.0, float(cv2.Laplacian(cv2.resize(gray, (96, 96)), cv2.CV_64F).var()) / 500.0)
    margin = 4
    cut = (b.x1 <= margin) + (b.y1 <= margin) + (b.x2 >= w - margin) + (b.y2 >= h - margin)
    return float(0.4 * size + 0.25 * sharp + 0.2 * det.score + 0.15 * (1.0 - min(cut, 2) / 2))


NEAR_MAX_LOST = 5  # sampled frames (1 s at 5 fps)
NEAR_REACH = 0.6  # track heights


class ByteTracker:
    """Tracks one kind of object through frames; finished tracks are handed back by `update` and `finish`."""

    def __init__(self, high: float = 0.5, low: float = 0.2, match_iou: float = 0.3, max_lost: int = 15,
                 min_hits: int = 3, keep_candidates: int = 4):
        self.high, self.low, self.match_iou = high, low, match_iou
        self.max_lost, self.min_hits, self.keep = max_lost, min_hits, keep_candidates
        self.live: list[Track] = []
        self._next_id = 1

    def update(self, frame_index: int, frame: np.ndarray, detections: list[Detection]) -> list[Track]:
        """Associate this frame's detections; returns the tracks that ended (confirmed ones only)."""
        boxes = np.array([d.bbox.as_list() for d in detections], np.float32).reshape(-1, 4)
        scores = np.array([d.score for d in detections], np.float32)
        strong, weak = np.flatnonzero(scores >= self.high), np.flatnonzero((scores >= self.low) & (scores < self.high))
        predicted = np.array([t.predicted() for t in self.live], np.float32).reshape(-1, 4)
        unmatched_tracks = list(range(len(self.live)))
        matched: dict[int, int] = {}
        for pool in (strong, weak):
            if not len(pool) or not unmatched_tracks:
                continue
            iou = iou_matrix(predicted[unmatched_tracks], boxes[pool])
            for r, c in greedy_match(iou, self.match_iou):
                matched[unmatched_tracks[r]] = int(pool[c])
            unmatched_tracks = [t for t in unmatched_tracks if t not in matched]
        used = set(matched.values())
        leftover = [int(d) for d in strong if int(d) not in used]
        if leftover and unmatched_tracks:
            # Third chance, for objects that reappear after an occlusion or move fast between sampled frames:
            # centre distance (in track heights, growing with frames lost) with a similar size.
            for r, c in self._near_pairs(predicted[unmatched_tracks], boxes[leftover],
                                         [self.live[t].lost for t in unmatched_tracks]):
                matched[unmatched_tracks[r]] = leftover[c]
            unmatched_tracks = [t for t in unmatched_tracks if t not in matched]
        for t_index, d_index in matched.items():
            self._extend(self.live[t_index], frame_index, frame, detections[d_index], boxes[d_index])
        used = set(matched.values())
        for strong_index in strong:
            if int(strong_index) not in used:
                self._start(frame_index, frame, detections[int(strong_index)], boxes[int(strong_index)])
        for t_index in unmatched_tracks:
            self.live[t_index].lost += 1
        ended = [t for t in self.live if t.lost > self.max_lost]
        self.live = [t for t in self.live if t.lost <= self.max_lost]
        return [t for t in ended if t.hits >= self.min_hits]

    @staticmethod
    def _near_pairs(tracks: np.ndarray, dets: np.ndarray, lost: list[int]) -> list[tuple[int, int]]:
        centre = lambda b: (b[:, :2] + b[:, 2:]) / 2  # noqa: E731
        height = lambda b: np.maximum(b[:, 3] - b[:, 1], 1.0)  # noqa: E731
        dist = np.linalg.norm(centre(tracks)[:, None] - centre(dets)[None], axis=2) / height(tracks)[:, None]
        ratio = height(dets)[None] / height(tracks)[:, None]
        lost_arr = np.asarray(lost, np.float32)[:, None]
        reach = np.where(lost_arr <= NEAR_MAX_LOST, NEAR_REACH, 0.0)  # only bridge short gaps: long ones swap people
        score = np.where((dist < reach) & (ratio > 0.7) & (ratio < 1.4), 1.0 / (1.0 + dist), 0.0)
        return greedy_match(score, 1e-6)

    def finish(self) -> list[Track]:
        """End every live track (end of the video or stream)."""
        ended, self.live = self.live, []
        return [t for t in ended if t.hits >= self.min_hits]

    def _start(self, frame_index: int, frame: np.ndarray, det: Detection, box: np.ndarray) -> None:
        track = Track(self._next_id, det.kind, det.label, box.copy(), first_frame=frame_index, last_frame=frame_index)
        self._next_id += 1
        self._remember(track, frame_index, frame, det)
        self.live.append(track)

    def _extend(self, track: Track, frame_index: int, frame: np.ndarray, det: Detection, box: np.ndarray) -> None:
        gap = max(1, frame_index - track.last_frame)
        track.velocity = 0.6 * track.velocity + 0.4 * (box - track.box) / gap  # smoothed constant velocity
        track.box, track.hits, track.lost, track.last_frame = box.copy(), track.hits + 1, 0, frame_index
        self._remember(track, frame_index, frame, det)

    def _remember(self, track: Track, frame_index: int, frame: np.ndarray, det: Detection) -> None:
        b = det.bbox
        track.path.append((frame_index, round((b.x1 + b.x2) / 2, 1), round((b.y1 + b.y2) / 2, 1)))
        x1, y1, x2, y2 = int(b.x1), int(b.y1), int(b.x2), int(b.y2)
        crop = frame[max(0, y1):max(y1 + 1, y2), max(0, x1):max(x1 + 1, x2)]
        quality = crop_quality(crop, det, frame.shape)
        if len(track.candidates) < self.keep or quality > min(c.quality for c in track.candidates):
            track.candidates.append(Candidate(frame_index, det, quality, frame))
            if len(track.candidates) > self.keep:
                track.candidates.remove(min(track.candidates, key=lambda c: c.quality))
