"""`sightline eval attributes`: how often the attributes that attribute search runs on are right.

Each labelled image goes through the same pipeline ingestion uses; the main object (the largest
sighting of the kind) is compared with the hand label, field by field. The labelled images are tight
crops of one object, which the detectors sometimes miss (an object filling the frame): then the whole
image is described as that object, through the same path as a video track's best view, and counted in
`whole_image_used`. A label of `unknown` is left out of that field's figures; `confidence=high` rows
also get a figure of their own. An answer of "unknown" counts as wrong in `accuracy`; `coverage` (the
share answered) and `accuracy_answered` say how it errs; `balanced_accuracy` (the mean recall of the
labels) is what a skewed set cannot flatter. Colours are scored strictly and, for vehicles,
also with silver counted as white or gray.

The answers are the pipeline's: the learned heads where the model folder has them (`answered_by` names their
version; `--heads FILE` measures another, `--rules` none), else the rules. Beside them in one run: `rules`, the
rules on the same objects, and `model_alone`, the attribute models' own answers. Scores get their accuracy per
band and the expected calibration error (`ece`). The rules' constants were chosen looking at the eval/attributes
images, so `cross_validated` re-chooses them from a small grid with each identity (the reid folder) left out in
turn and scores the left-out images (the plate-width cue to vehicle type is left out there: `process` does not
hand back its plate boxes). The heads' own held-out figures come from `sightline train attributes`.
"""
from __future__ import annotations

import csv
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from models.attributes import (
    PersonAttributeClassifier,
    VehicleAttributeClassifier,
    VehicleVote,
    describe_person,
    describe_vehicle,
)
from models.colors import DEFAULT_RULES, PERSON_RULES, UNKNOWN, ColorRules, scene_lab, scene_lightness
from models.head_training import SCORE_BANDS, expected_calibration_error
from models.imageops import decode_image
from models.observations import Detection, FramePipeline, Observation
from models.records import BBox, InputError, PersonAttributes, SightingKind, VehicleAttributes
from models.tracking import Candidate, Track
from models.vehicle_type import DEFAULT_TYPE_RULES, TypeRules, two_wheeler_in_frame

VEHICLE_FIELDS = {"color": "vehicle_color", "type": "vehicle_type"}
PERSON_FIELDS = {name: name for name in ("gender", "upper_color", "lower_color", "bag", "backpack", "hat",
                                         "long_sleeves", "long_pants")}
NOT_DETECTED = "(none)"
# The grids the cross-validation re-chooses the rules' constants from (the defaults are among them).
TYPE_GRID = [TypeRules(model_trust=t) for t in (0.0, 0.25, 0.5, 0.75, 1.0)]
VEHICLE_COLOR_GRID = [replace(DEFAULT_RULES, black=b, gray=g, silver=s)
                      for b, g, s in itertools.product((0.4, 0.5, 0.6), (0.65, 0.72, 0.8), (0.9, 0.97, 1.05))]
PERSON_COLOR_GRID = [replace(PERSON_RULES, black=b, gray=g, silver=g, chroma=c, faint_cool=f)
                     for b, g, c, f in itertools.product((0.45, 0.55, 0.65), (0.75, 0.85, 0.95), (8.0, 12.0),
                                                         (float("inf"), 2.0, 3.0))]


@dataclass
class FieldScore:
    """One attribute's figures: accuracy overall and on high-confidence rows, recall per label, confusions."""

    n: int = 0
    correct: int = 0
    n_high: int = 0
    correct_high: int = 0
    confusion: dict[str, Counter[str]] = field(default_factory=dict)

    answered: int = 0
    correct_answered: int = 0
    by_score: dict[str, list[int]] = field(default_factory=dict)  # score band → [n, right]: is the confidence honest?
    scored: list[tuple[float, bool]] = field(default_factory=list)  # (score, right) of every scored answer

    def add(self, label: str, predicted: str, high: bool, right: bool, score: float | None = None) -> None:
        self.n += 1
        self.correct += right
        if score is not None and predicted not in (UNKNOWN, NOT_DETECTED):
            band = next(name for edge, name in SCORE_BANDS if score < edge)
            counts = self.by_score.setdefault(band, [0, 0])
            counts[0] += 1
            counts[1] += right
            self.scored.append((float(score), bool(right)))
        if predicted not in (UNKNOWN, NOT_DETECTED):
            self.answered += 1
            self.correct_answered += right
        if high:
            self.n_high += 1
            self.correct_high += right
        self.confusion.setdefault(label, Counter())[predicted] += 1

    def report(self) -> dict[str, object]:
        recalls = {label: row[label] / sum(row.values()) for label, row in sorted(self.confusion.items())}
        recall = {label: round(r, 3) for label, r in recalls.items()}
        return {"n": self.n, "accuracy": round(self.correct / self.n, 3) if self.n else None,
                # The mean of the labels' recalls: what a constant answer cannot inflate (always "male" scores
                # 0.74 accuracy on a set of 3 men to 1 woman, and 0.5 here).
                "balanced_accuracy": round(float(np.mean(list(recalls.values()))), 3) if recalls else None,
                "coverage": round(self.answered / self.n, 3) if self.n else None,
                "accuracy_answered": round(self.correct_answered / self.answered, 3) if self.answered else None,
                "n_high_confidence": self.n_high,
                "accuracy_high_confidence": round(self.correct_high / self.n_high, 3) if self.n_high else None,
                "recall": recall,
                "accuracy_by_score": {band: {"n": n, "accuracy": round(r / n, 3)}
                                      for _, band in SCORE_BANDS if band in self.by_score
                                      for n, r in [self.by_score[band]]},
                # The answers' mean gap between score and accuracy (10 score bins): 0 is a score that means what it
                # says. Only meaningful for calibrated scores (the learned heads'); the rules' are shares of pixels.
                "ece": round(expected_calibration_error(np.array([s for s, _ in self.scored]),
                                                        np.array([r for _, r in self.scored])), 3)
                if self.scored else None,
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


@dataclass
class Sample:
    """One labelled image's main object, and what the rules need to decide its attributes again."""

    identity: str  # the reid folder: the unit the cross-validation leaves out
    row: dict[str, str]
    found: Observation
    scene_light: float
    two_wheeler: str | None


def evaluate_attributes(root: Path, labels: Path, kind: str, pipeline: FramePipeline,
                        batch: int = 8) -> dict[str, object]:
    """Per-field accuracy (all rows and high-confidence rows), coverage, recall per label and confusion matrices;
    with the real models also the models' own answers and the cross-validated figures."""
    if kind not in (SightingKind.VEHICLE, SightingKind.PERSON):
        raise InputError("kind must be vehicle or person")
    rows = read_labels(labels, kind)
    fields = VEHICLE_FIELDS if kind == SightingKind.VEHICLE else PERSON_FIELDS
    samples: list[Sample] = []
    detected, started = 0, time.perf_counter()
    for lo in range(0, len(rows), batch):
        chunk = rows[lo:lo + batch]
        frames = [_read(root / row["file"]) for row in chunk]
        for row, frame, observations in zip(chunk, frames, pipeline.process(frames), strict=True):
            found = main_object(observations, kind)
            detected += found is not None
            two_wheeler = two_wheeler_in_frame(found, observations) if found is not None else None
            if found is None:
                found = whole_image(pipeline, frame, kind)
            light = scene_lightness(scene_lab(frame), frame.shape, found.bbox)
            samples.append(Sample(Path(row["file"]).parent.name, row, found, light, two_wheeler))
    elapsed = time.perf_counter() - started
    scores = score_fields(samples, fields, [s.found.attributes for s in samples])
    out: dict[str, object] = {"kind": kind, "images": len(rows), "main_object_found": detected,
                              "whole_image_used": len(rows) - detected,
                              "fields": {name: score.report() for name, score in scores.items()},
                              "ms_per_image": round(1000 * elapsed / max(1, len(rows)), 1)}
    if kind == SightingKind.VEHICLE:
        out["color_silver_as_white_or_gray"] = {k: v for k, v in _lenient(samples).report().items() if k != "confusion"}
    vehicle_model = getattr(pipeline, "vehicle_attributes", None)
    person_model = getattr(pipeline, "person_attributes", None)
    crops = [s.found.crop for s in samples]
    if kind == SightingKind.VEHICLE and isinstance(vehicle_model, VehicleAttributeClassifier):
        alone = score_fields(samples, fields, list(vehicle_model.classify(crops)))
        out["model_alone"] = _brief(alone)
        out["cross_validated"] = _vehicle_cv(samples, vehicle_model.votes(crops))
    heads = getattr(pipeline, "heads", {}).get(kind)
    out["answered_by"] = heads.version if heads is not None else "rules"
    if heads is not None and isinstance(vehicle_model, VehicleAttributeClassifier) \
            and isinstance(person_model, PersonAttributeClassifier):  # the rules on the same objects, beside them
        out["rules"] = _brief(score_fields(samples, fields, _rules_answers(samples, kind, vehicle_model, person_model)))
    if kind == SightingKind.PERSON and isinstance(person_model, PersonAttributeClassifier):
        alone = score_fields(samples, fields, list(person_model.classify(crops)))
        out["model_alone"] = _brief(alone)
        out["cross_validated"] = _person_cv(samples, alone)
    return out


def _rules_answers(samples: list[Sample], kind: str, vehicle_model: VehicleAttributeClassifier,
                   person_model: PersonAttributeClassifier) -> list[object]:
    """What the rules (models.colors, models.vehicle_type) answer for the samples, without the learned heads."""
    crops = [s.found.crop for s in samples]
    if kind == SightingKind.VEHICLE:
        answers: list[object] = []
        for sample, vote in zip(samples, vehicle_model.votes(crops), strict=True):
            attrs = VehicleAttributes(coco_class=getattr(sample.found.attributes, "coco_class", None))
            describe_vehicle(attrs, vote, sample.found.crop, sample.scene_light, sample.two_wheeler, None)
            answers.append(attrs)
        return answers
    people = person_model.classify(crops)
    for sample, person in zip(samples, people, strict=True):
        describe_person(person, sample.found.crop, sample.scene_light)
    return list(people)


def whole_image(pipeline: FramePipeline, frame: np.ndarray, kind: str) -> Observation:
    """The whole image described as one object of the kind, through the path a video track's best view takes."""
    h, w = frame.shape[:2]
    det = Detection(kind, kind, BBox(0.0, 0.0, float(w), float(h)), 0.0)
    track = Track(0, kind, kind, np.array(det.bbox.as_list(), np.float32), candidates=[Candidate(0, det, 1.0, frame)])
    return pipeline.describe_tracks([track])[0]


def score_fields(samples: list[Sample], fields: dict[str, str], answers: list[object]) -> dict[str, FieldScore]:
    """Each field's figures for one set of answers (attribute records), one per sample."""
    scores = {name: FieldScore() for name in fields}
    for sample, attrs in zip(samples, answers, strict=True):
        high = sample.row["confidence"].strip() == "high"
        for name, attribute in fields.items():
            label = sample.row[name].strip()
            if label in ("", "unknown"):
                continue
            predicted = _text(getattr(attrs, attribute, None))
            scores[name].add(label, predicted, high, predicted == label, getattr(attrs, f"{attribute}_score", None))
    return scores


def _lenient(samples: list[Sample]) -> FieldScore:
    """Vehicle colour with silver counted as white or gray."""
    score = FieldScore()
    for s in samples:
        label, predicted = s.row["color"].strip(), _text(getattr(s.found.attributes, "vehicle_color", None))
        if label not in ("", "unknown"):
            same = predicted == label or (label == "silver" and predicted in ("white", "gray"))
            score.add(label, predicted, s.row["confidence"].strip() == "high", same)
    return score


def _brief(scores: dict[str, FieldScore]) -> dict[str, object]:
    return {name: {k: v for k, v in s.report().items() if k in ("accuracy", "balanced_accuracy", "recall",
                                                                          "accuracy_by_score")}
            for name, s in scores.items()}


def _vehicle_cv(samples: list[Sample], votes: list[VehicleVote]) -> dict[str, object]:
    """Type over TYPE_GRID, colour over VEHICLE_COLOR_GRID, each re-chosen leaving one identity out."""
    def answer(sample: Sample, vote: VehicleVote, type_rules: TypeRules, color_rules: ColorRules) -> VehicleAttributes:
        attrs = VehicleAttributes(coco_class=getattr(sample.found.attributes, "coco_class", None))
        describe_vehicle(attrs, vote, sample.found.crop, sample.scene_light, sample.two_wheeler, None,
                         type_rules, color_rules)
        return attrs

    pairs = list(zip(samples, votes, strict=True))
    type_right = np.array([[_is_right(s, "type", answer(s, v, r, DEFAULT_RULES).vehicle_type) for s, v in pairs]
                           for r in TYPE_GRID])
    color_right = np.array([[_is_right(s, "color", answer(s, v, DEFAULT_TYPE_RULES, r).vehicle_color)
                             for s, v in pairs] for r in VEHICLE_COLOR_GRID])
    identities = [s.identity for s in samples]
    return {"type": _cv_report(identities, type_right, TYPE_GRID.index(DEFAULT_TYPE_RULES),
                               [f"model_trust={r.model_trust}" for r in TYPE_GRID]),
            "color": _cv_report(identities, color_right, VEHICLE_COLOR_GRID.index(DEFAULT_RULES),
                                [f"black={r.black},gray={r.gray},silver={r.silver}" for r in VEHICLE_COLOR_GRID])}


def _person_cv(samples: list[Sample], alone: dict[str, FieldScore]) -> dict[str, object]:
    """Clothing colours (upper and lower together) over PERSON_COLOR_GRID, re-chosen leaving one identity out."""
    def answer(sample: Sample, rules: ColorRules) -> PersonAttributes:
        attrs = PersonAttributes()
        describe_person(attrs, sample.found.crop, sample.scene_light, rules)
        return attrs

    right = np.array([[_is_right(s, "upper_color", answer(s, r).upper_color) for s in samples] +
                      [_is_right(s, "lower_color", answer(s, r).lower_color) for s in samples]
                      for r in PERSON_COLOR_GRID])
    identities = [s.identity for s in samples] * 2
    return {"upper_and_lower_color": _cv_report(identities, right, PERSON_COLOR_GRID.index(PERSON_RULES),
                                                [f"black={r.black},white={r.gray},chroma={r.chroma},"
                                                 f"faint_cool={r.faint_cool}" for r in PERSON_COLOR_GRID])}


def _is_right(sample: Sample, name: str, predicted: object) -> float:
    label = sample.row[name].strip()
    return float("nan") if label in ("", "unknown") else float(_text(predicted) == label)


def _cv_report(identities: list[str], right: np.ndarray, default: int, names: list[str]) -> dict[str, object]:
    """In-sample accuracy of the default rules and of the best grid point, and leave-one-identity-out accuracy:
    for each identity the grid point best on all the others (the default when it ties) scores that identity."""
    labelled = ~np.isnan(right[0])
    ids = np.array(identities)
    held_right, chosen = 0.0, Counter[str]()
    for identity in sorted(set(identities)):
        held = ids == identity
        train = np.nansum(np.where(held[None, :], np.nan, right), axis=1)
        best = default if train[default] >= train.max() else int(train.argmax())
        held_right += float(np.nansum(right[best, held]))
        chosen[names[best]] += 1
    in_sample = np.nansum(right, axis=1) / labelled.sum()
    return {"n": int(labelled.sum()), "in_sample_default": round(float(in_sample[default]), 3),
            "in_sample_best_of_grid": round(float(in_sample.max()), 3), "default": names[default],
            "leave_one_identity_out": round(float(held_right / labelled.sum()), 3),
            "chosen_per_fold": dict(chosen.most_common())}


def _read(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{path} (named in the labels) does not exist")
    return decode_image(path.read_bytes())

