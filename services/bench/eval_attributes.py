"""`sightline eval attributes`: how often the attributes that attribute search runs on are right.

Each labelled image goes through the same pipeline ingestion uses; the main object (the largest
sighting of the kind) is compared with the hand label, field by field. A label of `unknown` is left
out of that field's figures; `confidence=high` rows also get a figure of their own. Colours are
scored strictly and, for vehicles, also with silver counted as white or gray (the model has no silver).
"""
from __future__ import annotations

import csv
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.imageops import decode_image
from models.observations import FramePipeline, Observation
from models.records import InputError, SightingKind

VEHICLE_FIELDS = {"color": "vehicle_color", "type": "vehicle_type"}
PERSON_FIELDS = {name: name for name in ("gender", "upper_color", "lower_color", "bag", "backpack", "hat",
                                         "long_sleeves", "long_pants")}
NOT_DETECTED = "(none)"


@dataclass
class FieldScore:
    """One attribute's figures: accuracy overall and on high-confidence rows, recall per label, confusions."""

    n: int = 0
    correct: int = 0
    n_high: int = 0
    correct_high: int = 0
    confusion: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, label: str, predicted: str, high: bool, right: bool) -> None:
        self.n += 1
        self.correct += right
        if high:
            self.n_high += 1
            self.correct_high += right
        self.confusion.setdefault(label, Counter())[predicted] += 1

    def report(self) -> dict[str, object]:
        recall = {label: round(row[label] / sum(row.values()), 3) for label, row in sorted(self.confusion.items())}
        return {"n": self.n, "accuracy": round(self.correct / self.n, 3) if self.n else None,
                "n_high_confidence": self.n_high,
                "accuracy_high_confidence": round(self.correct_high / self.n_high, 3) if self.n_high else None,
                "recall": recall,
                "confusion": {label: dict(row.most_common()) for label, row in sorted(self.confusion.items())}}


def read_labels(path: Path, kind: str) -> list[dict[str, str]]:
    if not path.is_file():
        raise InputError(f"{path} does not exist")
    wanted = {"file", "confidence", *(VEHICLE_FIELDS if kind == SightingKind.VEHICLE else PERSON_FIELDS)}
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path} is not a UTF-8 tab-separated label file ({exc})") from exc
    missing = wanted - set(rows[0] if rows else {})
    if missing:
        raise InputError(f"{path} lacks the column(s) {sorted(missing)} for {kind} labels")
    return rows


def _text(value: object) -> str:
    if value is None:
        return NOT_DETECTED
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def main_object(observations: list[Observation], kind: str) -> Observation | None:
    """The object the image is about: the largest of its kind."""
    of_kind = [o for o in observations if o.kind == kind]
    return max(of_kind, key=lambda o: o.bbox.area) if of_kind else None


def evaluate_attributes(root: Path, labels: Path, kind: str, pipeline: FramePipeline,
                        batch: int = 8) -> dict[str, object]:
    """Per-field accuracy (all rows and high-confidence rows), recall per label and confusion matrices."""
    if kind not in (SightingKind.VEHICLE, SightingKind.PERSON):
        raise InputError("kind must be vehicle or person")
    rows = read_labels(labels, kind)
    fields = VEHICLE_FIELDS if kind == SightingKind.VEHICLE else PERSON_FIELDS
    scores = {name: FieldScore() for name in fields}
    lenient = FieldScore()  # vehicle colour with silver counted as white or gray
    detected, started = 0, time.perf_counter()
    for lo in range(0, len(rows), batch):
        chunk = rows[lo:lo + batch]
        frames = [_read(root / row["file"]) for row in chunk]
        for row, observations in zip(chunk, pipeline.process(frames), strict=True):
            found = main_object(observations, kind)
            detected += found is not None
            high = row["confidence"].strip() == "high"
            for name, attribute in fields.items():
                label = row[name].strip()
                if label in ("", "unknown"):
                    continue
                predicted = _text(getattr(found.attributes, attribute, None) if found else None)
                scores[name].add(label, predicted, high, predicted == label)
                if name == "color":
                    same = predicted == label or (label == "silver" and predicted in ("white", "gray"))
                    lenient.add(label, predicted, high, same)
    elapsed = time.perf_counter() - started
    out: dict[str, object] = {"kind": kind, "images": len(rows), "main_object_found": detected,
                              "fields": {name: score.report() for name, score in scores.items()},
                              "ms_per_image": round(1000 * elapsed / max(1, len(rows)), 1)}
    if kind == SightingKind.VEHICLE:
        out["color_silver_as_white_or_gray"] = {k: v for k, v in lenient.report().items() if k != "confusion"}
    return out


def _read(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{path} (named in the labels) does not exist")
    return decode_image(path.read_bytes())

