"""Colour names a witness would use, from pixel statistics in CIELAB on small resized crops.

Why not the attribute models' colour vote alone: the vehicle model was trained on front views of cars and
says "red" for most motorcycles and trucks seen from above, it has no silver, and the person model only
points at two sample pixels. Here every pixel of the right region (a vehicle's body, a person's upper or
lower half) is named, the region takes the name most of its pixels carry, and the share of pixels that
agree is the confidence. Lightness is judged relative to the scene around the object (mostly road or
pavement): a white shirt in a dim corridor and a white car in sunlight are both "white".
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from models.records import UNKNOWN, BBox

# CIELAB hue angle (degrees) → name, for pixels with enough chroma; the first bin that holds the hue wins.
_HUES: tuple[tuple[float, str], ...] = ((40.0, "red"), (70.0, "orange"), (105.0, "yellow"), (200.0, "green"),
                                        (300.0, "blue"), (330.0, "purple"), (350.0, "pink"), (360.0, "red"))


@dataclass(frozen=True)
class ColorRules:
    """The few constants colour naming rests on, each with a physical meaning.

    Lightness boundaries are ratios of a pixel's L* to the scene's median L*: road and pavement sit near
    1.0, so a body well darker than the road is black and one as light as it is white or silver.
    """

    chroma: float = 12.0  # L*a*b* chroma above which a pixel has a hue a witness would name
    hued_share: float = 0.3  # share of hued pixels above which the region is named by its hue
    black: float = 0.5  # relative lightness below: black
    gray: float = 0.72  # below: gray
    silver: float = 0.97  # below: silver (vehicles; a person's light clothes are white); at or above: white
    min_share: float = 0.3  # below this share of agreeing pixels the answer is "unknown"
    faint_cool: float = float("inf")  # median chroma above which a blue or green cast names a grey-looking region


DEFAULT_RULES = ColorRules()
# No silver clothing: light grey reads as white. Dark denim and green fabrics keep only a faint cool cast in
# small, compressed crops (2–5 L*a*b* units), while neutral fabrics drift warm (skin, indoor light), not cool.
PERSON_RULES = ColorRules(black=0.55, gray=0.85, silver=0.85, faint_cool=2.0)


def lab(bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) float32 L* (0..100), a*, b* of an image resized to size=(w, h) by area averaging.

    Every k-th pixel first (k keeps at least 2 per output pixel a side): area averaging from a large crop costs
    a millisecond, from the strided one a few microseconds, and names the same colours.
    """
    step = max(1, int(min(bgr.shape[0] / size[1], bgr.shape[1] / size[0]) // 2))
    small = bgr[::step, ::step]
    small = cv2.resize(small, size, interpolation=cv2.INTER_AREA) if small.shape[1::-1] != size else small
    out = cv2.cvtColor(np.ascontiguousarray(small, np.uint8), cv2.COLOR_BGR2LAB).astype(np.float32)
    out[..., 0] *= 100.0 / 255.0
    out[..., 1:] -= 128.0
    return out


SCENE_SIZE = 64  # the scene is judged on the frame resized to 64×64: one small resize per frame


def scene_lab(frame: np.ndarray) -> np.ndarray:
    """The frame at SCENE_SIZE, in L*a*b*: computed once per frame, shared by every object in it."""
    return lab(frame, (SCENE_SIZE, SCENE_SIZE))


def scene_lightness(scene: np.ndarray, frame_shape: tuple[int, ...], box: BBox | None = None) -> float:
    """Median L* of the scene around an object (outside its box; the frame's corners when the box fills it).

    This is the exposure reference: clipped to 35..80 so a black backdrop or a blown-out sky cannot swing
    every name.
    """
    return float(np.clip(np.median(scene[..., 0][_around(scene, frame_shape, box)]), 35.0, 80.0))


CAST_LIMIT = 8.0  # a*, b* units: the most of a scene's colour cast taken off an object's pixels


def scene_cast(scene: np.ndarray, frame_shape: tuple[int, ...], box: BBox | None = None) -> np.ndarray:
    """Median a*, b* of the scene around an object (as scene_lightness): a camera's colour cast, mostly road and
    pavement, which are grey. Clipped to ±CAST_LIMIT so that a green lawn or a red wall is not taken for one."""
    around = _around(scene, frame_shape, box)
    return np.clip(np.median(scene[..., 1:][around], axis=0), -CAST_LIMIT, CAST_LIMIT).astype(np.float32)


def _around(scene: np.ndarray, frame_shape: tuple[int, ...], box: BBox | None) -> np.ndarray:
    """The scene's pixels outside the box; its four corners when the box fills the frame."""
    h, w = frame_shape[:2]
    size = scene.shape[0]
    outside = np.ones(scene.shape[:2], bool)
    if box is not None:
        sx, sy = size / w, size / h
        outside[int(box.y1 * sy):int(np.ceil(box.y2 * sy)), int(box.x1 * sx):int(np.ceil(box.x2 * sx))] = False
    if outside.sum() < outside.size // 20:  # the object fills the frame: its four corners are what shows of the scene
        corner = size // 6
        outside[:] = False
        for ys in (slice(0, corner), slice(-corner, None)):
            for xs in (slice(0, corner), slice(-corner, None)):
                outside[ys, xs] = True
    return outside


# Pixel names as small integers: the lightness ladder first (its order matters), then the hues.
NAMES = ("black", "gray", "silver", "white", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown")
_CODE = {name: i for i, name in enumerate(NAMES)}
_HUE_EDGES = np.array([edge for edge, _ in _HUES])
_HUE_CODES = np.array([_CODE[name] for _, name in _HUES])
_BROWN_FROM = np.array([_CODE["red"], _CODE["orange"], _CODE["yellow"]])


def name_pixels(pixels: np.ndarray, reference: float, rules: ColorRules, silver: bool) -> np.ndarray:
    """One colour code (an index into NAMES) per L*a*b* pixel, of the input's leading shape."""
    lightness, a, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    hue = np.degrees(np.arctan2(b, a)) % 360.0
    hued = _HUE_CODES[np.searchsorted(_HUE_EDGES, hue, side="right").clip(0, len(_HUES) - 1)]
    # Dark orange, red and yellow are what people call brown.
    hued = np.where(np.isin(hued, _BROWN_FROM) & (lightness < 45.0) & (hue > 30.0) & (hue < 90.0), _CODE["brown"], hued)
    relative = lightness / reference
    grey = np.select([relative < rules.black, relative < rules.gray, relative < rules.silver],
                     [_CODE["black"], _CODE["gray"], _CODE["silver" if silver else "white"]], _CODE["white"])
    return np.where(np.hypot(a, b) >= rules.chroma, hued, grey)


def region_color(pixels: np.ndarray, reference: float, rules: ColorRules, silver: bool) -> tuple[str, float]:
    """The name a region's pixels give, and the share of them that agree (its confidence).

    Hue first: when enough pixels are hued the region is named by its commonest hue, because glass, tyres
    and shadows are never hued but a blue bus has windows and a red jacket has folds.
    """
    flat = pixels.reshape(-1, 3)
    if len(flat) == 0:
        return UNKNOWN, 0.0
    codes = name_pixels(flat, reference, rules, silver)
    hued = np.hypot(flat[:, 1], flat[:, 2]) >= rules.chroma
    if hued.sum() >= rules.hued_share * len(flat):
        counts = np.bincount(codes[hued], minlength=len(NAMES))
        return NAMES[int(counts.argmax())], round(float(counts.max() / len(flat)), 3)
    # A faint cool cast over the whole region (its median a*, b*) is a dark blue or green fabric; desaturated
    # denim drifts towards cyan (hue ~180°), so the faint cast's blue starts at 170°, below the hued 200°.
    cast = np.median(flat[:, 1:], axis=0)
    cast_hue = float(np.degrees(np.arctan2(cast[1], cast[0])) % 360.0)
    if np.hypot(*cast) >= rules.faint_cool and 120.0 <= cast_hue < 300.0:
        agree = float(np.mean(flat[:, 1] * cast[0] + flat[:, 2] * cast[1] > 0))  # pixels cast the same way
        return ("blue" if cast_hue >= 170.0 else "green"), round(agree, 3)
    # No hue: the region's median lightness names it (glass, shadow and highlights fall on both sides of it).
    # Confidence: the share of the region's pixels at that lightness or one step either side of it.
    median = np.array([np.median(flat[~hued, 0]), 0.0, 0.0], np.float32)
    code = int(name_pixels(median, reference, rules, silver))
    ladder = [_CODE["black"], _CODE["gray"], _CODE["silver"], _CODE["white"]] if silver else \
        [_CODE["black"], _CODE["gray"], _CODE["white"]]
    step = ladder.index(code)
    share = float(np.isin(codes, ladder[max(0, step - 1):step + 2]).mean())
    return (NAMES[code], round(share, 3)) if share >= rules.min_share else (UNKNOWN, round(share, 3))


def vehicle_color(crop: np.ndarray, reference: float, two_wheeler: bool,
                  rules: ColorRules = DEFAULT_RULES) -> tuple[str, float]:
    """The body colour of a vehicle crop: the central panels of a car, van, truck or bus; the lower part of a
    two-wheeler, below its rider (who otherwise gives the colour of a jacket)."""
    pixels = lab(crop, (24, 24))
    region = pixels[14:23, 6:18] if two_wheeler else pixels[3:21, 4:20]
    return region_color(region, reference, rules, silver=True)


def clothing_colors(crop: np.ndarray, reference: float,
                    rules: ColorRules = PERSON_RULES) -> tuple[tuple[str, float], tuple[str, float]]:
    """(upper, lower) clothing colour of a person crop: torso and legs, central columns only (arms, background
    and the head's skin stay out); each with the share of agreeing pixels, "unknown" below rules.min_share."""
    pixels = lab(crop, (16, 32))
    upper, lower = _without_skin(pixels[6:15, 5:11]), _without_skin(pixels[18:28, 5:11])
    return (region_color(upper, reference, rules, silver=False), region_color(lower, reference, rules, silver=False))


def _without_skin(region: np.ndarray) -> np.ndarray:
    """The region's pixels less the skin-like ones (bare arms and legs: light, weakly saturated orange), unless
    nearly all are skin-like (then it is a beige garment)."""
    flat = region.reshape(-1, 3)
    hue = np.degrees(np.arctan2(flat[:, 2], flat[:, 1])) % 360.0
    skin = (hue > 25.0) & (hue < 75.0) & (np.hypot(flat[:, 1], flat[:, 2]) > 8.0) & (flat[:, 0] > 35.0)
    return flat[~skin] if (~skin).sum() >= len(flat) // 3 else flat
