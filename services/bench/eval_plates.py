"""`sightline eval plates DIR`: plate reading accuracy on a labelled folder (labels.tsv: file, plate).

Works on full photos and on plate crops alike: a small image shaped like a plate is
read as a crop; any other image goes through detection, and one in which nothing is
detected is read as a crop too. Reports each recogniser's exact accuracy beside the
fused one, so that what the fusion adds is visible.
"""
from __future__ import annotations

import csv
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from models.plates import (
    READER_WEIGHT,
    SURE_CHAR_CONF,
    PlateReader,
    PlateReading,
    Weights,
    decide,
    edit_distance,
    normalize_plate,
    reader_weights,
)
from models.records import InputError

READERS = ("ppocr", "lprnet", "intel")
CROP_MAX_HEIGHT = 160  # a plate crop is small and wide; a photo or vehicle crop is neither
CROP_ASPECT = (1.5, 6.5)
BATCH = 16  # images per reader call: big enough to batch, small enough to keep memory flat


def load_labels(directory: Path) -> list[tuple[str, str]]:
    labels = directory / "labels.tsv"
    if not directory.is_dir():
        raise InputError(f"{directory} is not a directory")
    if not labels.is_file():
        raise InputError(f"{labels} is missing: give a tab-separated file with a header line and columns file, plate")
    with labels.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["file", "plate"]:
        raise InputError(f"{labels}: the first line must be the header 'file<TAB>plate'")
    pairs = [(r[0].strip(), normalize_plate(r[1])) for r in rows[1:] if r and r[0].strip()]
    if any(len(r) < 2 for r in rows[1:] if r and r[0].strip()):
        raise InputError(f"{labels}: every line needs a file and a plate")
    missing = [f for f, _ in pairs if not (directory / f).is_file()]
    if missing:
        raise InputError(f"{len(missing)} image(s) named in {labels} are missing, e.g. {', '.join(missing[:3])}")
    return pairs


def looks_like_crop(img: np.ndarray) -> bool:
    h, w = img.shape[:2]
    return h <= CROP_MAX_HEIGHT and CROP_ASPECT[0] <= w / h <= CROP_ASPECT[1]


def read_one_per_image(
    reader: PlateReader, images: list[np.ndarray], all_readers: bool = False
) -> list[PlateReading | None]:
    """The best plate per image: crops read directly, photos detected, photos without a plate read whole."""
    out: list[PlateReading | None] = [None] * len(images)
    crops = [i for i, img in enumerate(images) if looks_like_crop(img)]
    photos = [i for i, img in enumerate(images) if not looks_like_crop(img)]
    for i, reading in zip(crops, reader.read_crops([images[i] for i in crops], all_readers), strict=True):
        out[i] = reading
    undetected = []
    for i, plates in zip(photos, reader.read_frames([images[i] for i in photos], all_readers, tight=True), strict=True):
        if plates:
            out[i] = max(plates, key=lambda p: (p.text is not None, p.det_score))
        else:
            undetected.append(i)
    for i, reading in zip(undetected, reader.read_crops([images[i] for i in undetected], all_readers), strict=True):
        out[i] = reading
    return out


def char_accuracy(label: str, read: str) -> float:
    """1 − edit distance / the longer length (0 for an empty reading of a non-empty label)."""
    longest = max(len(label), len(read))
    return 1.0 - edit_distance(label, read) / longest if longest else 1.0


def read_all(
    directory: Path, pairs: list[tuple[str, str]], reader: PlateReader, all_readers: bool
) -> tuple[list[PlateReading | None], float]:
    """Readings for every labelled image, in batches, and the seconds spent reading (not decoding files)."""
    readings: list[PlateReading | None] = []
    elapsed = 0.0
    for start in range(0, len(pairs), BATCH):
        chunk = pairs[start : start + BATCH]
        read = [cv2.imread(str(directory / f)) for f, _ in chunk]
        unreadable = [f for (f, _), img in zip(chunk, read, strict=True) if img is None]
        images = [img for img in read if img is not None]
        if unreadable:
            raise InputError(f"cannot decode image(s) {', '.join(unreadable[:3])} in {directory}")
        t0 = time.perf_counter()
        readings.extend(read_one_per_image(reader, images, all_readers))
        elapsed += time.perf_counter() - t0
    return readings, elapsed


def warm_up(image: Path, reader: PlateReader) -> None:
    """One untimed read through every model, so that one-off graph set-up is not counted per image."""
    img = cv2.imread(str(image))
    if img is not None:
        read_one_per_image(reader, [img], all_readers=True)
        reader.read_frames([img], all_readers=True)


def plate_type(label: str) -> str:
    """The kind of plate a label is, by what the text alone tells: eight characters are the green new-energy
    plates (皖AD14488), seven the blue and yellow ones; the labels do not say which rows a plate has."""
    return {8: "new_energy_8", 7: "standard_7"}.get(len(label), f"other_{len(label)}")


def by_plate_type(labels: list[str], texts: list[str], readings: list[PlateReading | None]) -> dict[str, dict]:
    """Exact and character accuracy per plate type, with the colours and row counts the reader reported for it."""
    groups: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(plate_type(label), []).append(i)
    out = {}
    for kind, rows in sorted(groups.items()):
        read = [readings[i] for i in rows]
        colours = Counter((r.color if r else None) or "none" for r in read)
        layers = Counter(str(r.layers) if r else "none" for r in read)
        out[kind] = {"images": len(rows), "exact": round(float(np.mean([texts[i] == labels[i] for i in rows])), 3),
                     "char_accuracy": round(float(np.mean([char_accuracy(labels[i], texts[i]) for i in rows])), 3),
                     "colour_read": dict(colours.most_common()), "rows_read": dict(layers.most_common())}
    return out


def labelled_colours(directory: Path) -> dict[str, str]:
    """The plate colour each image is labelled with, where labels.tsv has a `colour` column."""
    with (directory / "labels.tsv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if "colour" not in header:
        return {}
    at = header.index("colour")
    return {r[0].strip(): r[at].strip().lower() for r in rows[1:] if len(r) > at and r[0].strip()}


def by_layout_and_colour(files: list[str], labels: list[str], texts: list[str], readings: list[PlateReading | None],
                         colours: dict[str, str]) -> dict[str, dict]:
    """Exact and character accuracy per layout (single or double row, as detected) and colour (as labelled, else as
    read): the small groups say where a set's misses are."""
    groups: dict[str, list[int]] = {}
    for i, (name, r) in enumerate(zip(files, readings, strict=True)):
        layout = "double" if r is not None and r.layers == 2 else "single" if r is not None else "none"
        groups.setdefault(f"{layout}/{colours.get(name) or (r.color if r else None) or 'unknown'}", []).append(i)
    return {key: {"images": len(rows), "exact": round(float(np.mean([texts[i] == labels[i] for i in rows])), 3),
                  "char_accuracy": round(float(np.mean([char_accuracy(labels[i], texts[i]) for i in rows])), 3)}
            for key, rows in sorted(groups.items())}


SURE_GRID = (0.8, 0.85, 0.9, 0.95, 1.01)  # PP-OCR's "sure" bar tried under cross-validation (1.01: never sure)
FOLDS = 5


def fused_text(reading: PlateReading, weights: Weights, sure: float) -> str:
    """What the deployed rules would read from an all-readers reading, under other weights and another sure bar."""
    return decide(reading.raw, reading.color, reading.rows, weights, sure).text or ""


def cross_validate_fusion(labels: list[str], every: list[PlateReading | None], seed: int = 0) -> dict:
    """The fusion's two fitted choices — each reader's vote weight (from its accuracy) and the bar above which
    PP-OCR alone is trusted — made again on 4/5 of the images and scored on the other fifth.

    The weights are refitted on each training part from the readers' own exact accuracies there, the bar is the
    grid value with the best training exact; the held-out figure pools the five test parts. (Whether PP-OCR is
    asked at all has no fitted part: it is asked when LPRNet and Intel's reader disagree.)
    """
    readings = {i: r for i, r in enumerate(every) if r is not None and r.raw}
    usable = list(readings)
    order = np.random.default_rng(seed).permutation(usable)
    folds = np.array_split(order, FOLDS)
    right, chosen = 0, Counter[str]()
    for k, test in enumerate(folds):
        train = np.concatenate([f for j, f in enumerate(folds) if j != k])
        accuracy = {name: float(np.mean([readings[i].readers.get(name) == labels[i] for i in train]))
                    for name in READERS}
        weights = reader_weights(accuracy)
        sure = max(SURE_GRID, key=lambda bar: (sum(fused_text(readings[i], weights, bar) == labels[i] for i in train),
                                               bar == SURE_CHAR_CONF))  # ties: the deployed bar
        chosen[str(sure)] += 1
        right += sum(fused_text(readings[i], weights, sure) == labels[i] for i in test)
    in_sample = float(np.mean([fused_text(readings[i], READER_WEIGHT, SURE_CHAR_CONF) == labels[i] for i in usable]))
    return {"images": len(usable), "folds": FOLDS, "in_sample": round(in_sample, 4),
            "held_out": round(right / max(1, len(usable)), 4), "sure_chosen_per_fold": dict(chosen)}


def evaluate_plates(directory: Path, reader: PlateReader) -> dict:
    """Exact and character accuracy, time per image and misses of the reader as deployed.

    A second pass runs every recogniser on every plate to give each one's exact accuracy
    beside the fusion's (`readers_exact`), so the fusion gain is visible, and the fusion's
    choices made on these images are cross-validated (`cross_validated`).
    """
    directory = Path(directory)
    pairs = load_labels(directory)
    if not pairs:
        raise InputError(f"{directory / 'labels.tsv'} lists no images")
    labels = [label for _, label in pairs]
    warm_up(directory / pairs[0][0], reader)
    readings, elapsed = read_all(directory, pairs, reader, all_readers=False)
    texts = [(r.text or "") if r else "" for r in readings]
    every, elapsed_all = read_all(directory, pairs, reader, all_readers=True)
    readers_exact = {
        name: float(np.mean([r is not None and r.readers.get(name) == label
                             for r, label in zip(every, labels, strict=True)]))
        for name in READERS
    }
    fused = [r is not None and r.text == label for r, label in zip(every, labels, strict=True)]
    readers_exact["fused"] = float(np.mean(fused))
    return {
        "images": len(pairs),
        "by_type": by_plate_type(labels, texts, readings),
        "by_layout_and_colour": by_layout_and_colour([f for f, _ in pairs], labels, texts, readings,
                                                     labelled_colours(directory)),
        "exact": float(np.mean([t == label for t, label in zip(texts, labels, strict=True)])),
        "char_accuracy": float(np.mean([char_accuracy(label, t) for label, t in zip(labels, texts, strict=True)])),
        "ms_per_image": 1000.0 * elapsed / len(pairs),
        "ms_per_image_all_readers": 1000.0 * elapsed_all / len(pairs),
        "readers_exact": readers_exact,
        "cross_validated": cross_validate_fusion(labels, every),
        "misses": [
            {"file": f, "label": label, "read": t, "readers": r.readers if r else {},
             "rows_detected": r.layers if r else None, "colour_read": r.color if r else None}
            for (f, label), t, r in zip(pairs, texts, readings, strict=True)
            if t != label
        ],
    }
