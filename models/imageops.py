"""Small, vectorised image helpers shared by detectors and classifiers: decode, letterbox, NMS, crops, colour names."""
from __future__ import annotations

import io
import threading
import warnings

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from models.records import BBox, InputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
# The most pixels a decoded photo may have: 40 MP is past any camera frame (8K is 33 MP) and costs 120 MB as BGR.
# A small file can claim far more (a 1.8 MB PNG of 25000×25000 takes ~3.6 GB to decode): the header is read first.
MAX_PIXELS = 40_000_000
_PILLOW_LIMIT = threading.Lock()  # Pillow's own bomb limit is a global: lifted under this lock only


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the image's header, without decoding its pixels; an unreadable header is an InputError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:  # lazy: reads the header only
                return int(image.width), int(image.height)
    except Image.DecompressionBombError:
        # Pillow's own guard (over twice its 89 MP default) refuses before it tells the size: read it without it.
        with _PILLOW_LIMIT:
            limit = Image.MAX_IMAGE_PIXELS
            try:
                Image.MAX_IMAGE_PIXELS = None
                with Image.open(io.BytesIO(data)) as image:
                    return int(image.width), int(image.height)
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
                raise InputError("the file is not a readable image (corrupt or unsupported format)") from exc
            finally:
                Image.MAX_IMAGE_PIXELS = limit
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputError("the file is not a readable image (corrupt or unsupported format)") from exc


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode JPEG/PNG/... bytes into a BGR frame; anything else is an InputError, and so is an image of more than
    `max_pixels` pixels — checked from its header, before a byte of pixels is decoded."""
    if not data:
        raise InputError("the image is empty")
    width, height = image_size(data)
    if width * height > max_pixels:
        raise InputError(f"the image is {width}×{height} pixels, over the limit of {max_pixels:,} pixels")
    frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if frame is None or frame.size == 0:
        raise InputError("the file is not a readable image (corrupt or unsupported format)")
    return frame


def decode_stored(data: bytes | None) -> np.ndarray | None:
    """An image the system stored itself (an evidence crop) as a BGR frame; None when it is missing or unreadable.
    No size check: what ingest wrote was bounded when it came in."""
    frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    return frame if frame is not None and frame.size else None


def letterbox(image: np.ndarray, size: int, pad_value: int, centred: bool,
              canvas: tuple[int, int] | None = None) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resize keeping aspect ratio, the long side `size`, into a size×size canvas (or `canvas`, (height, width), from
    `tight_canvas`); returns canvas, scale and (dx, dy) offset."""
    h, w = image.shape[:2]
    scale = min(size / h, size / w)
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    ch, cw = canvas or (size, size)
    padded = np.full((ch, cw, 3), pad_value, dtype=np.uint8)
    dx, dy = ((cw - nw) // 2, (ch - nh) // 2) if centred else (0, 0)
    padded[dy : dy + nh, dx : dx + nw] = resized
    return padded, scale, (dx, dy)


def tight_canvas(shape: tuple[int, ...], size: int, quantum: int = 64) -> tuple[int, int]:
    """The smallest (height, width), in multiples of `quantum`, that holds an image of this shape letterboxed to
    `size` (its long side): a fully convolutional detector then spends little on the square's padding.

    A camera's frames share one shape, so a detector compiled for it once serves them all (models/runtime.py). The
    quantum, twice the plate detector's stride, bounds the shapes a mixed set of photos makes it compile (5 a side at
    320) for ~7 % more padding on average than 32 would: at 320, 1160×720 photos take 320×256 instead of 320×320,
    16:9 frames 192×320.
    """
    h, w = shape[:2]
    scale = min(size / h, size / w)
    tall, wide = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    return min(size, -(-tall // quantum) * quantum), min(size, -(-wide // quantum) * quantum)


def by_canvas(frames: list[np.ndarray], size: int, tight: bool) -> dict[tuple[int, int], list[int]]:
    """The frames' indices grouped by the canvas each is letterboxed into: size×size for all, or each its
    `tight_canvas`, so that a frame's detections never depend on the shapes of the frames batched with it."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, frame in enumerate(frames):
        groups.setdefault(tight_canvas(frame.shape, size) if tight else (size, size), []).append(i)
    return groups


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression over x1,y1,x2,y2 boxes; returns kept indices, best first."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    x1, y1, x2, y2 = boxes.T
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    order = np.argsort(-scores)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N,4) and (M,4) x1y1x2y2 boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def crop(frame: np.ndarray, box: BBox, margin: float = 0.0) -> np.ndarray:
    """Crop a box (optionally grown by a margin fraction) clipped to the frame."""
    h, w = frame.shape[:2]
    mx, my = box.width * margin, box.height * margin
    x1, y1 = int(max(0, box.x1 - mx)), int(max(0, box.y1 - my))
    x2, y2 = int(min(w, box.x2 + mx)), int(min(h, box.y2 + my))
    return frame[y1:max(y1 + 1, y2), x1:max(x1 + 1, x2)]


def blob(crops: list[np.ndarray], width: int, height: int, rgb: bool = False, nchw: bool = True,
         dtype: type = np.float32) -> np.ndarray:
    """Resize crops into one batch array (N,3,H,W) or (N,H,W,3) without scaling values."""
    arr = np.stack([cv2.resize(c, (width, height), interpolation=cv2.INTER_LINEAR) for c in crops])
    if rgb:
        arr = arr[..., ::-1]
    if nchw:
        arr = arr.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(arr, dtype=dtype)


# Reference colours in Lab space; names are what an investigator types in a search form.
_COLOR_NAMES = ["black", "white", "gray", "red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "brown"]


def color_name(bgr: np.ndarray) -> str:
    """Name the colour of a BGR pixel (or mean of a patch) with hue/saturation/value rules."""
    pixel = np.asarray(bgr, dtype=np.uint8).reshape(1, 1, 3)
    h, s, v = (int(x) for x in cv2.cvtColor(pixel, cv2.COLOR_BGR2HSV)[0, 0])
    if v < 50:
        return "black"
    if s < 40:
        return "white" if v > 190 else "gray"
    hue = h * 2  # OpenCV hue is 0..180
    if hue < 15 or hue >= 340:
        return "red" if v > 100 or s > 120 else "brown"
    if hue < 40:
        return "orange" if v > 150 else "brown"
    if hue < 70:
        return "yellow"
    if hue < 165:
        return "green"
    if hue < 195:
        return "cyan"
    if hue < 260:
        return "blue"
    if hue < 300:
        return "purple"
    return "pink"


COLOR_NAMES = tuple(_COLOR_NAMES)
