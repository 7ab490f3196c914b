"""Object detection (YOLOX-nano: vehicles and people) and face detection (YuNet)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from models.imageops import iou_matrix, letterbox, nms
from models.observations import Detection
from models.records import BBox
from models.runtime import OpenVinoModel

# COCO-80 class ids that Sightline keeps, and the sighting kind each becomes.
COCO_KEPT: dict[int, tuple[str, str]] = {
    0: ("person", "person"),
    1: ("vehicle", "bicycle"),
    2: ("vehicle", "car"),
    3: ("vehicle", "motorcycle"),
    5: ("vehicle", "bus"),
    7: ("vehicle", "truck"),
}


def yolox_grid(size: int, strides: tuple[int, ...] = (8, 16, 32)) -> tuple[np.ndarray, np.ndarray]:
    """Grid cell offsets and strides for every YOLOX output row, in output order."""
    grids, expanded = [], []
    for stride in strides:
        n = size // stride
        ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        grids.append(np.stack([xs, ys], -1).reshape(-1, 2))
        expanded.append(np.full((n * n, 1), stride))
    return np.concatenate(grids).astype(np.float32), np.concatenate(expanded).astype(np.float32)


def yolox_decode(raw: np.ndarray, grid: np.ndarray, strides: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw (rows, 85) → boxes x1y1x2y2 in network pixels, best class score, class id."""
    xy = (raw[:, :2] + grid) * strides
    wh = np.exp(np.clip(raw[:, 2:4], -10, 10)) * strides
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], axis=1)
    cls_scores = raw[:, 5:] * raw[:, 4:5]
    cls_ids = cls_scores.argmax(1)
    return boxes, cls_scores[np.arange(len(raw)), cls_ids], cls_ids


class ObjectDetector:
    """YOLOX-nano on 416×416 letterboxed BGR frames; several frames go through in one batch."""

    size = 416

    def __init__(self, model_path: Path, score_threshold: float = 0.35, iou_threshold: float = 0.45,
                 min_side: int = 24):
        self.model = OpenVinoModel(model_path, static_batches=(4,))  # ingest's batch: 4 frames
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.min_side = min_side
        self.grid, self.strides = yolox_grid(self.size)

    def detect(self, frames: list[np.ndarray], score_threshold: float | None = None) -> list[list[Detection]]:
        """Detections per frame; a tracker passes a lower threshold to see its weak second-stage boxes."""
        threshold = self.score_threshold if score_threshold is None else score_threshold
        boxes_in, scales = [], []
        for frame in frames:
            canvas, scale, _ = letterbox(frame, self.size, 114, centred=False)
            boxes_in.append(canvas.transpose(2, 0, 1))
            scales.append(scale)
        raw = next(iter(self.model.infer(np.stack(boxes_in).astype(np.float32)).values()))
        return [self._postprocess(raw[i], scales[i], frames[i].shape, threshold) for i in range(len(frames))]

    def _postprocess(self, raw: np.ndarray, scale: float, shape: tuple[int, ...], threshold: float) -> list[Detection]:
        boxes, scores, cls_ids = yolox_decode(raw, self.grid, self.strides)
        wanted = np.isin(cls_ids, list(COCO_KEPT)) & (scores >= threshold)
        boxes, scores, cls_ids = boxes[wanted] / scale, scores[wanted], cls_ids[wanted]
        h, w = shape[:2]
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        # Class-aware NMS: offset each class far apart so one call suppresses within a class only.
        # Vehicle classes share one group so that a car also scored as a truck becomes one box.
        group = np.where(cls_ids == 0, 0, 1).astype(np.float32)[:, None] * 10_000
        keep = nms(boxes + group, scores, self.iou_threshold)
        out = []
        for i in keep:
            x1, y1, x2, y2 = boxes[i]
            if min(x2 - x1, y2 - y1) < self.min_side:
                continue
            kind, label = COCO_KEPT[int(cls_ids[i])]
            out.append(Detection(kind, label, BBox(float(x1), float(y1), float(x2), float(y2)), float(scores[i])))
        return out


class SsdVehicleDetector:
    """vehicle-detection-0200 (SSD, 256×256 BGR): sees vehicles from above and behind, where YOLOX-nano misses."""

    size = 256

    def __init__(self, model_path: Path, score_threshold: float = 0.5, max_area_frac: float = 0.8):
        self.model = OpenVinoModel(model_path)  # dynamic: its output numbers images within one call
        self.score_threshold = score_threshold
        self.max_area_frac = max_area_frac  # a box filling the frame is the SSD's known false alarm, not a car

    def detect(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        batch = np.stack([cv2.resize(f, (self.size, self.size)).transpose(2, 0, 1) for f in frames]).astype(np.float32)
        rows = next(iter(self.model.infer(batch).values())).reshape(-1, 7)
        out: list[list[Detection]] = [[] for _ in frames]
        for image_id, _, score, x1, y1, x2, y2 in rows[rows[:, 2] >= self.score_threshold].tolist():
            i = int(image_id)
            if not 0 <= i < len(frames):
                continue  # SSD pads its output with image_id -1
            h, w = frames[i].shape[:2]
            box = BBox(max(0.0, x1 * w), max(0.0, y1 * h), min(float(w), x2 * w), min(float(h), y2 * h))
            if box.area > self.max_area_frac * w * h:
                continue
            out[i].append(Detection("vehicle", "vehicle", box, float(score)))
        return out


def merge_detections(primary: list[Detection], extra: list[Detection], iou_threshold: float = 0.5) -> list[Detection]:
    """Add the extra detector's boxes that no primary box of the same kind already covers."""
    kept = list(primary)
    for det in extra:
        same = np.array([d.bbox.as_list() for d in kept if d.kind == det.kind], np.float32).reshape(-1, 4)
        if len(same) == 0 or iou_matrix(np.array([det.bbox.as_list()], np.float32), same).max() < iou_threshold:
            kept.append(det)
    return kept


def subject_face(faces: list[Detection]) -> Detection | None:
    """The face a photo is about: the largest, surest one (enrolment, face search, evaluation)."""
    return max(faces, key=lambda f: f.bbox.area * f.score) if faces else None


class FaceDetector:
    """YuNet (boxes, 5 landmarks, a score per face), compiled by OpenVINO and decoded here.

    OpenCV's FaceDetectorYN ran the same ONNX file at 9 ms a 640 px frame on this CPU; OpenVINO
    in float32 runs it in 4. The decoding is OpenCV's (face_detect.cpp): per stride, the score is
    √(class × objectness), boxes and landmarks are offsets of the grid cell in stride units.
    """

    STRIDES = (8, 16, 32)

    def __init__(self, model_path: Path, score_threshold: float = 0.8, nms_threshold: float = 0.3,
                 max_side: int = 640):
        self.model = OpenVinoModel(model_path, precision="f32")
        self.score_threshold, self.nms_threshold, self.max_side = score_threshold, nms_threshold, max_side

    def detect(self, frame: np.ndarray) -> list[Detection]:
        h, w = frame.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        image = cv2.resize(frame, (int(w * scale), int(h * scale))) if scale < 1.0 else frame
        ih, iw = image.shape[:2]
        ph, pw = -(-ih // 32) * 32, -(-iw // 32) * 32  # the network wants sides divisible by 32; pad with black
        padded = np.zeros((ph, pw, 3), np.float32)
        padded[:ih, :iw] = image
        out = self.model.infer(padded.transpose(2, 0, 1)[None])
        boxes, marks, scores = [], [], []
        for stride in self.STRIDES:
            cols = pw // stride
            score = np.sqrt(np.clip(out[f"cls_{stride}"][0, :, 0], 0, 1) * np.clip(out[f"obj_{stride}"][0, :, 0], 0, 1))
            keep = np.flatnonzero(score >= self.score_threshold)
            cell = np.stack([keep % cols, keep // cols], axis=1).astype(np.float32)
            b = out[f"bbox_{stride}"][0, keep]
            centre, size = (cell + b[:, :2]) * stride, np.exp(b[:, 2:4]) * stride
            boxes.append(np.concatenate([centre - size / 2, centre + size / 2], axis=1))
            marks.append((out[f"kps_{stride}"][0, keep].reshape(-1, 5, 2) + cell[:, None]) * stride)
            scores.append(score[keep])
        all_boxes, all_marks, all_scores = np.concatenate(boxes), np.concatenate(marks), np.concatenate(scores)
        result = []
        for i in nms(all_boxes, all_scores, self.nms_threshold):
            x1, y1, x2, y2 = (all_boxes[i] / scale).tolist()
            box = BBox(max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2))
            marks = (all_marks[i] / scale).tolist()
            result.append(Detection("face", "face", box, float(all_scores[i]), landmarks=marks))
        return result
