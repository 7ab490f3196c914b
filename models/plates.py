"""Chinese licence plates: detect, rectify, read with three recognisers, fuse, and classify the colour.

The pipeline per frame: the 320 detector (the 640 one only where the 320 finds
nothing) gives 4 corners per plate; the corners are pushed outwards a little and
warped to an upright rectangle (a double-row plate has its rows laid side by side);
PP-OCR, LPRNet and Intel's LPR read every crop of every frame in one batch each;
the readings are fused by format validity and character-level voting.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import openvino as ov
import openvino.opset13 as ops
import rapidocr_onnxruntime

from models.imageops import by_canvas, nms
from models.imageops import letterbox as fit_square
from models.lprnet import LPRNetReader, resize_to
from models.plate_text import LETTERS, PLATE_PATTERN, PROVINCES, edit_distance, is_valid_plate, normalize_plate  # noqa: F401
from models.records import BBox
from models.registry import model_path
from models.runtime import OpenVinoModel

# --- detection --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Letterbox:
    """How an image was scaled and centred into a square input, to map points back."""

    scale: float
    left: int
    top: int

    def to_source(self, points: np.ndarray) -> np.ndarray:
        """(..., 2) input-space points -> source-image points."""
        return (points - np.array([self.left, self.top], np.float32)) / self.scale

    def to_input(self, points: np.ndarray) -> np.ndarray:
        return points * self.scale + np.array([self.left, self.top], np.float32)


def letterbox(img: np.ndarray, size: int, canvas: tuple[int, int] | None = None) -> tuple[np.ndarray, Letterbox]:
    """Fit the image into size×size (or `canvas`) keeping its aspect, centred, padded with 0 (the detector's
    training)."""
    padded, scale, (left, top) = fit_square(img, size, pad_value=0, centred=True, canvas=canvas)
    return padded, Letterbox(scale, left, top)


@dataclass
class PlateDetection:
    corners: np.ndarray  # (4, 2) tl, tr, br, bl in source pixels
    bbox: BBox
    score: float
    layers: int  # 1 single-row, 2 double-row


def decode_detections(
    rows: np.ndarray, box: Letterbox, shape: tuple[int, int], conf: float, iou: float
) -> list[PlateDetection]:
    """Rows of (cx, cy, w, h, obj, 8 corner values, single, double) -> plates in source pixels."""
    layer_scores = rows[:, 13:15]
    scores = rows[:, 4] * layer_scores.max(axis=1)
    rows, scores, layers = rows[scores >= conf], scores[scores >= conf], layer_scores[scores >= conf].argmax(1) + 1
    if not len(rows):
        return []
    xyxy = np.concatenate([rows[:, :2] - rows[:, 2:4] / 2, rows[:, :2] + rows[:, 2:4] / 2], axis=1)
    keep = nms(xyxy, scores, iou)
    h, w = shape
    limit = np.array([w - 1, h - 1], np.float32)
    out = []
    for i in keep:
        corners = np.clip(box.to_source(rows[i, 5:13].reshape(4, 2)), 0, limit)
        (x1, y1), (x2, y2) = np.clip(box.to_source(xyxy[i].reshape(2, 2)), 0, limit)
        bbox = BBox(float(x1), float(y1), float(x2), float(y2))
        out.append(PlateDetection(corners, bbox, float(scores[i]), int(layers[i])))
    return out


# YOLOv5-face's anchors (width, height in input pixels), three a level, by stride: the constants of both files
PLATE_ANCHORS = {8: ((4, 5), (8, 10), (13, 16)), 16: ((23, 29), (43, 55), (73, 105)),
                 32: ((146, 217), (231, 300), (335, 433))}
PLATE_ROW = 15  # per anchor and cell: cx, cy, w, h, objectness, 4 corners (x, y), single-row, double-row


def plate_detector_heads(model: ov.Model) -> None:
    """Cut the plate detector's graph at its three head convolutions, and let every reshape in it follow the input's
    height and width.

    The files decode their boxes in the graph with grids of constants for one input size, and their channel
    shuffles reshape to constant sides, so they ran square only: a 1160×720 photo spent 38 % of the 320
    model's work on padding. The heads' raw outputs are decoded by `decode_plate_heads` instead, for any sides.
    """
    heads = []
    for node in model.get_ordered_ops():
        if node.get_type_name() != "Reshape":
            continue
        source, target = node.input(0).get_source_output(), node.input(1).get_source_output().get_node()
        rank = source.get_partial_shape().rank.get_length()
        if target.get_type_name() != "Constant" or rank < 4 or source.get_node().get_type_name() == "Constant":
            continue
        wanted = target.get_data().astype(np.int64)
        if len(wanted) == 5 and wanted[2] == PLATE_ROW:  # a head: (1, 45, h, w) -> (1, 3, 15, h, w), then decoding
            heads.append(source)
        elif list(wanted[-2:]) == list(source.get_partial_shape().to_shape()[-2:]):  # a shuffle keeping (h, w)
            shape = ops.shape_of(source, "i64")
            batch = ops.gather(shape, ops.constant(np.array([0])), ops.constant(0))
            sides = ops.gather(shape, ops.constant(np.array([rank - 2, rank - 1])), ops.constant(0))
            node.input(1).replace_source_output(ops.concat([batch, ops.constant(wanted[1:-2]), sides], 0).output(0))
    for result in list(model.get_results()):
        model.remove_result(result)
    for stride, head in zip(PLATE_ANCHORS, sorted(heads, key=lambda h: -h.get_partial_shape()[2].get_length()),
                            strict=True):
        head.get_tensor().set_names({f"head_{stride}"})
        model.add_results([ops.result(head)])
    model.validate_nodes_and_infer_types()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def decode_plate_heads(heads: dict[int, np.ndarray], min_score: float = 0.0) -> np.ndarray:
    """Stride -> one image's raw head (45, rows, cols) => (n, 15) rows as the original graph gave them, in input
    pixels (the centre and size as YOLOv5 decodes them, the corners as offsets of the cell in anchor units), only
    those scored (objectness × the likelier row count) at least `min_score`, in the graph's order."""
    out = []
    for stride, raw in heads.items():
        rows, cols = raw.shape[1:]
        x = raw.reshape(3, PLATE_ROW, rows, cols).transpose(0, 2, 3, 1)  # (anchor, y, x, 15)
        kept = _sigmoid(x[..., 4]) * _sigmoid(x[..., 13:].max(-1)) >= min_score
        anchor_i, ys, xs = np.nonzero(kept)
        x = x[kept]  # (n, 15)
        cell = np.stack([xs, ys], -1).astype(np.float32)  # (n, 2)
        anchor = np.array(PLATE_ANCHORS[stride], np.float32)[anchor_i]  # (n, 2)
        box = _sigmoid(x[:, :5])
        decoded = np.empty_like(x)
        decoded[:, :2] = (box[:, :2] * 2 - 0.5 + cell) * stride
        decoded[:, 2:4] = (box[:, 2:4] * 2) ** 2 * anchor
        decoded[:, 4] = box[:, 4]
        decoded[:, 5:13] = (x[:, 5:13].reshape(-1, 4, 2) * anchor[:, None] + cell[:, None] * stride).reshape(-1, 8)
        decoded[:, 13:] = _sigmoid(x[:, 13:])
        out.append(decoded)
    return np.concatenate(out)


class PlateDetector:
    """YOLOv5-face style plate detector; the 640 model runs only on frames where the 320 one found nothing."""

    def __init__(self, model_dir: Path, conf: float = 0.4, iou: float = 0.5):
        # the 320 model reads every frame, 4 at a time; the 640 one only frames where it found nothing, one at a time
        # (compiled at batch 4 too it would cost ~100 MB and 0.5 s of loading for a rare call)
        self.small = OpenVinoModel(model_path("plate_detect_y5fu_320.onnx", model_dir), rewrite=plate_detector_heads,
                                   static_batches=(4,), free_sides=True)
        self.large = OpenVinoModel(model_path("plate_detect_y5fu_640.onnx", model_dir), rewrite=plate_detector_heads,
                                   free_sides=True)
        self.conf, self.iou = conf, iou

    def detect(self, frames: list[np.ndarray], small_only: bool = False, tight: bool = False
               ) -> list[list[PlateDetection]]:
        """Plates per frame; `small_only` skips the 640 model (a vehicle crop: its plate is not small in it).

        `tight`: the frames are a camera's, whose shape recurs: each model runs on their own aspect (1160×720
        photos: 320×256 instead of 320×320), compiled once a shape; a probe photo or a crop of any shape runs on the
        square, compiled at load, and never waits for a compile.
        """
        found = self._run(self.small, 320, frames, tight)
        empty = [] if small_only else [i for i, dets in enumerate(found) if not dets]
        for i, dets in zip(empty, self._run(self.large, 640, [frames[i] for i in empty], tight), strict=True):
            found[i] = dets
        return found

    def _run(self, model: OpenVinoModel, size: int, frames: list[np.ndarray], tight: bool
             ) -> list[list[PlateDetection]]:
        found: list[list[PlateDetection]] = [[] for _ in frames]
        for sides, members in by_canvas(frames, size, tight).items():
            boxed = [letterbox(frames[i], size, sides) for i in members]
            batch = np.stack([img[:, :, ::-1].transpose(2, 0, 1) for img, _ in boxed]).astype(np.float32) / 255.0
            out = model.infer(batch)
            for k, (i, (_, box)) in enumerate(zip(members, boxed, strict=True)):
                rows = decode_plate_heads({stride: out[f"head_{stride}"][k] for stride in PLATE_ANCHORS}, self.conf)
                found[i] = decode_detections(rows, box, frames[i].shape[:2], self.conf, self.iou)
        return found


# --- rectification ----------------------------------------------------------------------------

# how far each side is pushed outwards, as a fraction of the plate's width / height: the
# detector's corners sit on the characters' edges, and an 8-character green plate's last
# character is lost without some margin
PAD_X, PAD_Y = 0.06, 0.12


def pad_corners(corners: np.ndarray, pad_x: float = PAD_X, pad_y: float = PAD_Y) -> np.ndarray:
    """Move tl, tr, br, bl outwards along the plate's own axes (works for tilted plates too)."""
    tl, tr, br, bl = corners.astype(np.float32)
    across = ((tr - tl) + (br - bl)) / 2
    down = ((bl - tl) + (br - tr)) / 2
    dx, dy = across * pad_x, down * pad_y
    return np.stack([tl - dx - dy, tr + dx - dy, br + dx + dy, bl - dx + dy])


def warp_plate(frame: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Perspective-warp a quadrilateral to an upright rectangle at its own resolution."""
    tl, tr, br, bl = corners
    w = max(float(np.linalg.norm(tr - tl)), float(np.linalg.norm(br - bl)), 8.0)
    h = max(float(np.linalg.norm(bl - tl)), float(np.linalg.norm(br - tr)), 4.0)
    dst = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float32)
    m = cv2.getPerspectiveTransform(corners.astype(np.float32), dst)
    size = (int(round(w)), int(round(h)))
    return cv2.warpPerspective(frame, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def join_double_row(plate: np.ndarray) -> np.ndarray:
    """A double-row plate (province + letter above, the rest below) as one row, top then bottom.

    The upper row is short and centred; the rows overlap slightly so no stroke is cut.
    """
    h, w = plate.shape[:2]
    top = plate[: int(h * 0.42), int(w * 0.15) : int(w * 0.85)]
    bottom = plate[int(h * 0.33) :]
    scale = bottom.shape[0] / top.shape[0]
    top = cv2.resize(top, (max(1, round(top.shape[1] * scale)), bottom.shape[0]))
    return np.hstack([top, bottom])


# A double-row plate after GA 36 (440 × 220 mm): a 15 mm margin, the upper row's 60 mm characters (province and
# letter, centred), a 15 mm gap, the lower row's 110 mm characters, a 20 mm margin. The rows are cut at the gap,
# with a margin each way for a corner a little off; the upper row's sides hold no character.
UPPER_ROW = (0.0, 0.44, 0.12, 0.88)  # top, bottom, left, right, as fractions of the plate
LOWER_ROW = (0.36, 1.0, 0.0, 1.0)


def split_rows(plate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The upper and the lower row of an upright double-row plate."""
    h, w = plate.shape[:2]

    def cut(box: tuple[float, float, float, float]) -> np.ndarray:
        top, bottom, left, right = box
        return plate[int(h * top): max(int(h * bottom), int(h * top) + 1), int(w * left): max(int(w * right), 1)]

    return cut(UPPER_ROW), cut(LOWER_ROW)


def rectify(frame: np.ndarray, detection: PlateDetection) -> tuple[np.ndarray, np.ndarray]:
    """(the plate warped upright, the plate as the readers read it: one row, a double-row plate's rows joined).

    The colour classifier takes the first: it was trained on plates as they look, and on the one real double-row
    plate of the eval data (`plates/unlabeled/hyperlpr_1.jpg`, yellow) it says yellow for that and green for the
    joined rows.
    """
    plate = warp_plate(frame, pad_corners(detection.corners))
    return plate, (join_double_row(plate) if detection.layers == 2 else plate)


# --- colour -------------------------------------------------------------------------------------

PLATE_COLORS = ("blue", "green", "yellow")


class PlateColorClassifier:
    """Blue / green / yellow; the model has exactly these three outputs (softmax)."""

    def __init__(self, model_dir: Path):
        self.model = OpenVinoModel(model_path("plate_color_cls_96.onnx", model_dir))

    def classify(self, crops: list[np.ndarray]) -> list[str]:
        if not crops:
            return []
        batch = np.stack([resize_to(c, (96, 96)).transpose(2, 0, 1) for c in crops]).astype(np.float32) / 255.0
        probs = self.model.infer(batch)[self.model.output_names[0]]
        return [PLATE_COLORS[i] for i in probs.argmax(axis=1)]


# --- recognisers ----------------------------------------------------------------------------------


@dataclass
class RawReading:
    """One recogniser's text for one crop, with a confidence per character (same length)."""

    reader: str
    text: str
    char_conf: list[float] = field(default_factory=list)


def clean_reading(reader: str, text: str, confs: list[float]) -> RawReading:
    """Normalise a reader's text, keeping each surviving character's confidence."""
    kept = [(normalize_plate(ch), c) for ch, c in zip(text, confs, strict=True)]
    kept = [(ch, c) for ch, c in kept if ch]
    return RawReading(reader, "".join(ch for ch, _ in kept), [float(c) for _, c in kept])


class PpOcrReader:
    """PP-OCRv4 recognition (the model file of the rapidocr wheel) compiled by OpenVINO, all plates in one batch.

    Every plate is first resized to PP-OCR's 48 px height and 3.5× as wide (a plate's own
    proportions, 440 or 480 × 140 mm, with a margin): a narrow or low-resolution crop
    otherwise gets too few CTC steps, and repeated characters (the 111 of 皖AD11166) collapse,
    which is how 8-character green plates used to lose a character. The network sees the
    plate padded to INPUT_WIDTH, as rapidocr fed it (its default 320 px); OpenVINO in float32
    gives rapidocr's onnxruntime readings (584 of 584 eval crops alike), 2.4× faster. Measured
    and refused: no padding (168 px) cost PP-OCR 0.983 → 0.933 exact, bfloat16 one plate.
    """

    SIZE = (168, 48)
    INPUT_WIDTH = 320
    PRECISION = "f32"
    CHUNK = 16  # plates per inference call: a bigger batch runs no faster a plate on 2 cores

    def __init__(self) -> None:
        path = Path(rapidocr_onnxruntime.__file__).parent / "models" / "ch_PP-OCRv4_rec_infer.onnx"
        self.model = OpenVinoModel(path, input_shape=[-1, 3, self.SIZE[1], self.INPUT_WIDTH], precision=self.PRECISION)
        characters = self.model.rt_info["framework"]["character"].astype(str)
        self.alphabet = ["", *characters.split("\n"), " "]  # CTC blank first, a space last (PaddleOCR's layout)

    def probabilities(self, crops: list[np.ndarray]) -> np.ndarray:
        """(N, steps, classes): each step's softmaxed class probabilities, class 0 the CTC blank."""
        batch = np.zeros((len(crops), 3, self.SIZE[1], self.INPUT_WIDTH), np.float32)  # 0 is mid-grey once normalised
        for i, c in enumerate(crops):
            batch[i, :, :, : self.SIZE[0]] = self._canonical(c).transpose(2, 0, 1) / 127.5 - 1.0
        return np.concatenate([next(iter(self.model.infer(batch[i : i + self.CHUNK]).values()))
                               for i in range(0, len(batch), self.CHUNK)])

    def classes(self, characters: str) -> np.ndarray:
        """The class indices of these characters (those the model knows)."""
        index = {ch: i for i, ch in enumerate(self.alphabet) if ch}
        return np.array([index[c] for c in characters if c in index])

    def read(self, crops: list[np.ndarray]) -> list[RawReading]:
        if not crops:
            return []
        probs = self.probabilities(crops)
        out = []
        for ids, ps in zip(probs.argmax(axis=2), probs.max(axis=2), strict=True):
            first = np.r_[True, ids[1:] != ids[:-1]] & (ids != 0)  # a run's first step; blanks dropped
            text = "".join(self.alphabet[i] for i in ids[first])
            out.append(clean_reading("ppocr", text, ps[first].tolist()))
        return out

    def _canonical(self, crop: np.ndarray) -> np.ndarray:
        enlarging = crop.shape[0] < self.SIZE[1]
        return cv2.resize(crop, self.SIZE, interpolation=cv2.INTER_CUBIC if enlarging else cv2.INTER_AREA)


def constrained_ctc(probs: np.ndarray, template: list[np.ndarray]) -> tuple[list[int], list[float], float]:
    """The best reading of one text line that fits `template` (one array of allowed classes per character): a
    Viterbi path over CTC's states (blank, character 1, blank, character 2, ...), each character's step scored by
    its best allowed class; then each character is the allowed class with the most probability over its steps.
    Returns the classes, each one's highest step probability, and the path's log-likelihood (to compare templates
    of different lengths on the same line)."""
    steps, k = probs.shape[0], len(template)
    logp = np.log(probs + 1e-9)
    emit = np.empty((steps, 2 * k + 1))
    emit[:, 0::2] = logp[:, :1]  # the blanks before, between and after the characters
    for j, allowed in enumerate(template):
        emit[:, 2 * j + 1] = logp[:, allowed].max(axis=1)
    states = 2 * k + 1
    score = np.full((steps, states), -np.inf)
    back = np.zeros((steps, states), np.int64)
    score[0, :2] = emit[0, :2]
    for t in range(1, steps):
        for s in range(states):
            options = [(score[t - 1, s], s)]
            if s >= 1:
                options.append((score[t - 1, s - 1], s - 1))
            if s % 2 == 1 and s >= 3:  # one character straight after another (no blank between)
                options.append((score[t - 1, s - 2], s - 2))
            best, back[t, s] = max(options)
            score[t, s] = best + emit[t, s]
    state = states - 1 if score[-1, states - 1] >= score[-1, states - 2] else states - 2
    total = float(score[-1, state])
    path = [state]
    for t in range(steps - 1, 0, -1):
        state = int(back[t, state])
        path.append(state)
    path.reverse()
    classes, confs = [], []
    for j, allowed in enumerate(template):
        mine = [t for t, s in enumerate(path) if s == 2 * j + 1]
        if not mine:
            return [], [], -np.inf
        best_class = int(allowed[probs[mine][:, allowed].sum(axis=0).argmax()])
        classes.append(best_class)
        confs.append(float(probs[mine, best_class].max()))
    return classes, confs, total


class DoubleRowReader:
    """Reads a double-row plate row by row, each row held to the format GA 36 gives it: above, the province and a
    letter (or, on farm and low-speed vehicles, the province and two digits); below, five letters or digits (or
    four and 挂, a trailer). PP-OCR reads text lines; the two rows joined side by side (as the quick readers take
    them) gave it spurious and lost characters at the join. Asked only where the detector found a double-row
    plate."""

    def __init__(self, ppocr: PpOcrReader):
        self.ppocr = ppocr
        province, letter, digit = (ppocr.classes(s) for s in (PROVINCES, LETTERS, "0123456789"))
        either = np.concatenate([letter, digit])
        self.upper = ([province, either], [province, digit, digit])
        self.lower = ([either] * 5, [either] * 4 + [ppocr.classes("挂")])

    def read(self, plates: list[np.ndarray]) -> list[RawReading]:
        """One reading per upright double-row plate (reader "ppocr_rows")."""
        if not plates:
            return []
        rows = [row for plate in plates for row in split_rows(plate)]
        probs = self.ppocr.probabilities(rows)
        out = []
        for upper, lower in zip(probs[0::2], probs[1::2], strict=True):
            parts = [max((constrained_ctc(p, template) for template in templates), key=lambda r: r[2])
                     for p, templates in ((upper, self.upper), (lower, self.lower))]
            classes = [c for found, _, _ in parts for c in found]
            confs = [c for _, found, _ in parts for c in found]
            out.append(RawReading("ppocr_rows", "".join(self.ppocr.alphabet[c] for c in classes), confs))
        return out


class LprnetPlateReader:
    def __init__(self, model_dir: Path):
        self.net = LPRNetReader(model_path("lprnet.pth", model_dir))

    def read(self, crops: list[np.ndarray]) -> list[RawReading]:
        return [RawReading("lprnet", text, confs) for text, confs in self.net.read(crops)]


INTEL_TOKENS: tuple[str, ...] = (
    tuple("0123456789")
    + (
        "<Anhui>", "<Beijing>", "<Chongqing>", "<Fujian>", "<Gansu>", "<Guangdong>", "<Guangxi>",
        "<Guizhou>", "<Hainan>", "<Hebei>", "<Heilongjiang>", "<Henan>", "<HongKong>", "<Hubei>",
        "<Hunan>", "<InnerMongolia>", "<Jiangsu>", "<Jiangxi>", "<Jilin>", "<Liaoning>", "<Macau>",
        "<Ningxia>", "<Qinghai>", "<Shaanxi>", "<Shandong>", "<Shanghai>", "<Shanxi>", "<Sichuan>",
        "<Tianjin>", "<Tibet>", "<Xinjiang>", "<Yunnan>", "<Zhejiang>", "<police>",
    )
    + tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
)
PROVINCE_OF_TOKEN = {
    "<Anhui>": "皖", "<Beijing>": "京", "<Chongqing>": "渝", "<Fujian>": "闽", "<Gansu>": "甘",
    "<Guangdong>": "粤", "<Guangxi>": "桂", "<Guizhou>": "贵", "<Hainan>": "琼", "<Hebei>": "冀",
    "<Heilongjiang>": "黑", "<Henan>": "豫", "<HongKong>": "港", "<Hubei>": "鄂", "<Hunan>": "湘",
    "<InnerMongolia>": "蒙", "<Jiangsu>": "苏", "<Jiangxi>": "赣", "<Jilin>": "吉", "<Liaoning>": "辽",
    "<Macau>": "澳", "<Ningxia>": "宁", "<Qinghai>": "青", "<Shaanxi>": "陕", "<Shandong>": "鲁",
    "<Shanghai>": "沪", "<Shanxi>": "晋", "<Sichuan>": "川", "<Tianjin>": "津", "<Tibet>": "藏",
    "<Xinjiang>": "新", "<Yunnan>": "云", "<Zhejiang>": "浙", "<police>": "警",
}


def intel_tokens_to_text(indices: np.ndarray) -> str:
    """Token indices up to the first −1 -> plate text with provinces as Chinese characters."""
    out = []
    for i in np.asarray(indices).astype(np.int64).ravel():
        if i < 0 or i >= len(INTEL_TOKENS):
            break
        token = INTEL_TOKENS[i]
        out.append(PROVINCE_OF_TOKEN.get(token, token))
    return "".join(out)


class IntelPlateReader:
    """Open Model Zoo license-plate-recognition-barrier-0001 (no confidences: it emits indices)."""

    CONFIDENCE = 0.9  # a flat per-character confidence, so its votes weigh like a fairly sure reader's

    def __init__(self, model_dir: Path):
        path = model_path("license-plate-recognition-barrier-0001.xml", model_dir)
        self.model = OpenVinoModel(path, main_input="data")
        self.seq_ind = np.ones((88, 1), np.float32)

    def read(self, crops: list[np.ndarray]) -> list[RawReading]:
        if not crops:
            return []
        batch = np.stack([resize_to(c, (94, 24)).transpose(2, 0, 1) for c in crops]).astype(np.float32)
        out = self.model.infer(batch, {"seq_ind": self.seq_ind})[self.model.output_names[0]]
        texts = [normalize_plate(intel_tokens_to_text(row)) for row in out.reshape(len(crops), -1)]
        return [RawReading("intel", t, [self.CONFIDENCE] * len(t)) for t in texts]


# --- fusion ---------------------------------------------------------------------------------------

# prior weight of each reader's vote: the log-odds of its single-reader plate accuracy as
# published / measured on plate crops (PP-OCR ≈ 0.97, LPRNet ≈ 0.88, Intel ≈ 0.81)
READER_ACCURACY = {"ppocr": 0.97, "lprnet": 0.88, "intel": 0.81}
Weights = dict[str, float]  # reader name -> the weight of its votes (log-odds of its plate accuracy)


def reader_weights(accuracy: dict[str, float]) -> Weights:
    """Each reader's vote weight from its exact plate accuracy (clipped: no reader is certain or useless)."""
    clipped = {name: min(0.995, max(0.55, p)) for name, p in accuracy.items()}
    return {name: float(np.log(p / (1 - p))) for name, p in clipped.items()}


READER_WEIGHT = reader_weights(READER_ACCURACY)


@dataclass
class FusedReading:
    text: str | None
    score: float


def _province_votes(readings: list[RawReading], weights: Weights) -> dict[str, float]:
    """Each province character the readers put first, with its votes (weight × confidence)."""
    votes: dict[str, float] = {}
    for r in readings:
        if r.text and r.text[0] in PROVINCES:
            votes[r.text[0]] = votes.get(r.text[0], 0.0) + weights[r.reader] * r.char_conf[0]
    return votes


def _province_vote(readings: list[RawReading], weights: Weights) -> str | None:
    """The province character most readers (by weight × confidence) put first."""
    votes = _province_votes(readings, weights)
    return max(votes, key=votes.__getitem__) if votes else None


def repair_province(reading: RawReading, province: str | None) -> RawReading:
    """Put the voted province on a reading that lost or misread it (the hardest character for OCR)."""
    if province is None or not reading.text:
        return reading
    if reading.text[0] in PROVINCES or reading.text[0] in "学警":
        return RawReading(reading.reader, province + reading.text[1:], reading.char_conf)
    if is_valid_plate(province + reading.text):
        return RawReading(reading.reader, province + reading.text, [0.5] + reading.char_conf)
    if is_valid_plate(province + reading.text[1:]):  # province read as a Latin letter
        return RawReading(reading.reader, province + reading.text[1:], [0.5] + reading.char_conf[1:])
    return reading


# the number of characters a plate of each colour carries: green is the 8-character new-energy plate
LENGTH_OF_COLOR = {"blue": 7, "yellow": 7, "green": 8}


def align(anchor: str, other: str) -> list[int | None]:
    """For each anchor position, the index of the `other` character aligned to it (None if deleted).

    Levenshtein alignment, so a reading with one inserted or dropped character still votes
    on every position it does cover (ROVER-style voting). Ties prefer a gap to a
    substitution: an extra character at a plate's edge is the common CTC failure.
    """
    n, m = len(anchor), len(other)
    cost = np.zeros((n + 1, m + 1), np.int32)
    cost[:, 0], cost[0, :] = np.arange(n + 1), np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            substitute = cost[i - 1, j - 1] + (anchor[i - 1] != other[j - 1])
            cost[i, j] = min(cost[i - 1, j] + 1, cost[i, j - 1] + 1, substitute)
    pairs: list[int | None] = [None] * n
    i, j = n, m
    while i > 0 and j > 0:  # on ties: a match, then a gap, then a substitution
        same = anchor[i - 1] == other[j - 1]
        if same and cost[i, j] == cost[i - 1, j - 1]:
            pairs[i - 1] = j - 1
            i, j = i - 1, j - 1
        elif cost[i, j] == cost[i, j - 1] + 1:
            j -= 1
        elif cost[i, j] == cost[i - 1, j] + 1:
            i -= 1
        else:
            pairs[i - 1] = j - 1
            i, j = i - 1, j - 1
    return pairs


def _choose_anchor(valid: list[RawReading], color: str | None, weights: Weights) -> RawReading:
    """The strongest valid reading, of the length the plate colour implies when one such exists."""
    def strength(r: RawReading) -> float:
        return weights[r.reader] * float(np.mean(r.char_conf))

    expected = [r for r in valid if len(r.text) == LENGTH_OF_COLOR.get(color or "", -1)]
    if expected:
        return max(expected, key=strength)
    by_length: dict[int, float] = {}
    for r in valid:
        by_length[len(r.text)] = by_length.get(len(r.text), 0.0) + strength(r)
    length = max(by_length, key=by_length.__getitem__)
    return max((r for r in valid if len(r.text) == length), key=strength)


def fuse(readings: list[RawReading], color: str | None = None, weights: Weights = READER_WEIGHT) -> FusedReading:
    """Weighted character vote of every reading, aligned to the strongest format-valid one.

    A character's vote weighs reader prior × its confidence. The anchor fixes the length
    (the plate colour says 7 or 8), the others vote position by position through an edit
    alignment. A plate no reader gives in a valid format falls back to the most trusted
    reader's text at half its score.
    """
    province = _province_vote(readings, weights)
    fixed = [r for r in (repair_province(r, province) for r in readings) if r.text]
    valid = [r for r in fixed if is_valid_plate(r.text)]
    if not valid:
        best = max(fixed, key=lambda r: weights[r.reader], default=None)
        return FusedReading(best.text, 0.5 * float(np.mean(best.char_conf))) if best else FusedReading(None, 0.0)
    anchor = _choose_anchor(valid, color, weights)
    votes: list[dict[str, float]] = [{} for _ in anchor.text]
    for r in fixed:
        for pos, j in enumerate(align(anchor.text, r.text)):
            if j is not None:
                votes[pos][r.text[j]] = votes[pos].get(r.text[j], 0.0) + weights[r.reader] * r.char_conf[j]
    text = "".join(max(v, key=v.__getitem__) for v in votes)
    if not is_valid_plate(text):  # a per-position mix can break the format; keep the anchor whole
        return FusedReading(anchor.text, float(np.mean(anchor.char_conf)))
    total = sum(weights[r.reader] for r in fixed)
    share = min(v[ch] for v, ch in zip(votes, text, strict=True)) / total
    return FusedReading(text, float(np.clip(share, 0.0, 1.0)))


# --- the reader ---------------------------------------------------------------------------------


@dataclass
class PlateReading:
    text: str | None
    score: float
    color: str | None
    layers: int
    corners: list[list[float]]
    bbox: BBox
    det_score: float
    readers: dict[str, str] = field(default_factory=dict)  # each recogniser's own text, for audit and eval
    raw: list[RawReading] = field(default_factory=list, repr=False)  # every reader's reading (eval re-fuses them)
    rows: RawReading | None = field(default=None, repr=False)  # a double-row plate's row-by-row reading


def valid_for_color(text: str, color: str | None) -> bool:
    """A format-valid plate of the length its colour implies (any length when the colour is unknown)."""
    return is_valid_plate(text) and len(text) == LENGTH_OF_COLOR.get(color or "", len(text))


def quick_readers_agree(quick: list[RawReading], color: str | None) -> bool:
    """LPRNet and Intel's reader give the same format-valid plate, of the length the colour implies.

    Then PP-OCR is not asked: on the 584 eval crops and 17 photos (445 such plates) it never overturned that
    text, and there is no threshold in the rule to have been fitted on them.
    """
    texts = {r.text for r in quick}
    if len(quick) < 2 or len(texts) != 1:
        return False
    return valid_for_color(texts.pop(), color)


# PP-OCR alone is right on ~98% of plates; when it is sure of every character, the quick readers' votes
# only blur its score (on the eval crops they never overturned such a reading)
SURE_CHAR_CONF = 0.9


def ppocr_is_sure(reading: RawReading, color: str | None, sure: float = SURE_CHAR_CONF) -> bool:
    """A PP-OCR reading that needs no other vote: valid format, the colour's length, every character sure."""
    return valid_for_color(reading.text, color) and min(reading.char_conf, default=0.0) >= sure


def heard(raw: list[RawReading], color: str | None, sure: float = SURE_CHAR_CONF) -> list[RawReading]:
    """The readings the fusion weighs: the quick readers' when they agree; else PP-OCR's alone when it is sure;
    else every one."""
    quick = [r for r in raw if r.reader != "ppocr"]
    if quick_readers_agree(quick, color):
        return quick
    first = next((r for r in raw if r.reader == "ppocr"), None)
    return [first] if first is not None and ppocr_is_sure(first, color, sure) else raw


class PlateReader:
    """Every plate model, loaded once; reads whole frames or ready-made plate crops, all batched.

    LPRNet and Intel's reader (2 ms a plate together) and the colour classifier read every plate; PP-OCR (the
    most accurate alone, ~10 ms a plate) reads, in one batch, only those on which the two do not agree
    (`quick_readers_agree`); then its reading stands alone when it is sure, else all three are fused (`heard`).
    `all_readers` (for eval) asks PP-OCR on every plate; the rule is the same.
    """

    def __init__(self, model_dir: Path):
        self.detector = PlateDetector(model_dir)
        self.colors = PlateColorClassifier(model_dir)
        self.quick = (LprnetPlateReader(model_dir), IntelPlateReader(model_dir))
        self.ppocr = PpOcrReader()
        self.rows = DoubleRowReader(self.ppocr)

    def read_frames(self, frames: list[np.ndarray], all_readers: bool = False, vehicle_crops: bool = False,
                    tight: bool = False) -> list[list[PlateReading]]:
        """Detect every plate in each BGR frame (photo or vehicle crop), rectify and read them.

        `vehicle_crops`: each frame is one vehicle, so the 320 detector alone is asked (on the 70
        `eval/reid/vehicle` crops the 640 one, run on the 40 where the 320 found nothing, found no readable
        plate, and it cost a photo search 7 ms). `tight`: a camera's frames (PlateDetector.detect).
        """
        detections = self.detector.detect(frames, small_only=vehicle_crops, tight=tight)
        owners = [(i, d) for i, dets in enumerate(detections) for d in dets]
        pairs = [rectify(frames[i], d) for i, d in owners]
        readings = self._read([read for _, read in pairs], [d for _, d in owners], all_readers,
                              [upright for upright, _ in pairs])
        out: list[list[PlateReading]] = [[] for _ in frames]
        for (i, _), reading in zip(owners, readings, strict=True):
            out[i].append(reading)
        return out

    def read_crops(self, crops: list[np.ndarray], all_readers: bool = False) -> list[PlateReading]:
        """Read already-cropped plate images (no detection); corners are the crop's own corners."""
        return self._read(crops, [whole_image(c) for c in crops], all_readers)

    def _read(self, crops: list[np.ndarray], detections: list[PlateDetection], all_readers: bool,
              upright: list[np.ndarray] | None = None) -> list[PlateReading]:
        """Read the crops (one row each); the colour from `upright`, the plates as they look (default: the crops)."""
        colors = self.colors.classify(crops if upright is None else upright)
        raw = [list(quick) for quick in zip(*(reader.read(crops) for reader in self.quick), strict=True)]
        double = [k for k, det in enumerate(detections) if det.layers == 2 and upright is not None]
        disputed = [k for k in range(len(crops))
                    if all_readers or k in double or not quick_readers_agree(raw[k], colors[k])]
        for k, r in zip(disputed, self.ppocr.read([crops[k] for k in disputed]), strict=True):
            raw[k].insert(0, r)  # PP-OCR's first: the fusion breaks ties in the order it hears
        by_rows = dict(zip(double, self.rows.read([upright[k] for k in double] if upright else []), strict=True))
        out = []
        for k, det in enumerate(detections):
            fused = decide(raw[k], colors[k], by_rows.get(k))
            out.append(
                PlateReading(
                    text=fused.text,
                    score=fused.score,
                    color=colors[k],
                    layers=det.layers,
                    corners=det.corners.round(1).tolist(),
                    bbox=det.bbox,
                    det_score=det.score,
                    readers={r.reader: r.text for r in [*raw[k], *([by_rows[k]] if k in by_rows else [])]},
                    raw=raw[k],
                    rows=by_rows.get(k),
                )
            )
        return out


def decide(raw: list[RawReading], color: str | None, rows: RawReading | None = None,
           weights: Weights = READER_WEIGHT, sure: float = SURE_CHAR_CONF) -> FusedReading:
    """The plate's text from its readings: the fusion of what the readers heard (`heard`, `fuse`), and for a
    double-row plate its rows' reading first (`rows_first`)."""
    fused = fuse(heard(raw, color, sure), color, weights)
    return rows_first(rows, raw, fused, weights) if rows is not None else fused


def rows_first(rows: RawReading, joined: list[RawReading], fused: FusedReading,
               weights: Weights = READER_WEIGHT) -> FusedReading:
    """A double-row plate's reading: its rows', read in their format, with the province voted by every reader
    (the rows' upper row is small; the joined rows' readers often see its province better); the fusion of the
    joined rows where the rows' reading is not a plate."""
    if not rows.text:
        return fused
    votes = _province_votes([rows, *joined], {rows.reader: weights["ppocr"], **weights})  # the rows: PP-OCR's weight
    province = max(votes, key=votes.__getitem__) if votes else rows.text[0]
    text = province + rows.text[1:]
    if not is_valid_plate(text):
        return fused
    first = rows.char_conf[0] if province == rows.text[0] else votes[province] / sum(votes.values())
    return FusedReading(text, round(float(np.mean([first, *rows.char_conf[1:]])), 3))


def whole_image(crop: np.ndarray) -> PlateDetection:
    """A crop stands for its own detection: corners at the image corners, one row, certain."""
    h, w = crop.shape[:2]
    corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float32)
    return PlateDetection(corners, BBox(0.0, 0.0, float(w - 1), float(h - 1)), 1.0, 1)
