"""Training and honest measurement of the attribute heads (models/heads.py): `sightline train attributes`.

Every choice is made inside training folds only. Each labelled set is split by its groups (a camera or video, a
source, an identity: never by image, since consecutive frames and one person's crops are near copies): for each
held-out group (or fold of groups) a head is chosen and fitted on everything else — the feature blocks and the
regularisation by an inner cross-validation over the training groups, then the temperature and the "unknown"
threshold on that inner cross-validation's predictions — and scored on the held-out part. The shipped head is
chosen the same way on all the data. The report gives each set's held-out figures: accuracy, coverage, accuracy by
score band, calibration error, and the mean and worst fold.
"""
from __future__ import annotations

import csv
import hashlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from models.heads import BINARY_LABELS, BLOCKS, FEATURES, FieldHead, HeadSet, ObjectFeatures, stack
from models.imageops import decode_image
from models.records import UNKNOWN, InputError

FIELDS = {"vehicle": ("color", "type"),
          "person": ("gender", "upper_color", "lower_color", "bag", "backpack", "hat", "long_sleeves", "long_pants")}
BINARY = {"bag", "backpack", "hat", "long_sleeves", "long_pants"}
# Two-way fields are learned with balanced class weights: otherwise a rare "yes" (a hat, short sleeves) is never
# said, and a search for it finds nothing (on PETA's held-out sources: hat balanced accuracy 0.50 → 0.58, sleeves
# 0.51 → 0.71, accuracy the same or a little lower).
BALANCED = BINARY | {"gender"}
COLOR_FIELDS = {"color", "upper_color", "lower_color"}
# Labels learned as another: the training data's "car" (CCTV boxes, re-id folders) holds vans, SUVs and MPVs.
RELABEL = {"type": {"van": "car", "suv": "car"}}
MIN_CLASS = 8  # a label seen fewer times is left out of that field's training (too few to learn or to measure)
# Candidate feature blocks and strengths, chosen per field by the inner cross-validation.
CANDIDATES: tuple[tuple[str, ...], ...] = (("color", "model"), ("color", "model", "inner"),
                                           ("color", "model", "inner", "embedding"))
STRENGTHS = (0.005, 0.05)
SCORE_BANDS = ((0.5, "<0.5"), (0.7, "0.5-0.7"), (0.9, "0.7-0.9"), (float("inf"), ">=0.9"))
TARGET_ANSWERED = 0.85  # a colour head says "unknown" below the score where its answers reach this accuracy ...
MIN_COVERAGE = 0.8  # ... but keeps answering at least this share of the crops


@dataclass
class LabelledSet:
    """One folder of labelled crops: its label file (`eval attributes` columns) and how its rows are grouped."""

    root: Path
    labels: Path
    grouping: str = "folder"  # folder: the file's parent folder; prefix: the file name before its first "_"

    def name(self) -> str:
        return self.labels.parent.name + "/" + self.labels.name


@dataclass
class Rows:
    """Every usable labelled crop of the sets: where it came from and its labels (empty = not labelled)."""

    files: list[Path] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)  # "<set>:<group>"
    sets: list[str] = field(default_factory=list)
    labels: dict[str, list[str]] = field(default_factory=dict)


def read_rows(sets: list[LabelledSet], kind: str) -> Rows:
    if kind not in FIELDS:
        raise InputError("kind must be vehicle or person")
    rows = Rows(labels={f: [] for f in FIELDS[kind]})
    for s in sets:
        if not s.labels.is_file():
            raise InputError(f"{s.labels} does not exist")
        if s.grouping not in ("folder", "prefix"):
            raise InputError(f"grouping must be folder or prefix, not {s.grouping!r}")
        try:
            with s.labels.open(encoding="utf-8", newline="") as fh:
                table = list(csv.DictReader(fh, delimiter="\t"))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise InputError(f"{s.labels} is not a UTF-8 tab-separated label file ({exc})") from exc
        present = [f for f in FIELDS[kind] if table and f in table[0]]
        if not table or "file" not in table[0] or not present:
            raise InputError(f"{s.labels} needs a file column and at least one of {list(FIELDS[kind])}")
        for r in table:
            path = s.root / r["file"]
            group = path.parent.name if s.grouping == "folder" else path.name.split("_", 1)[0]
            values = {f: _label(f, r.get(f, "")) for f in FIELDS[kind]}
            if not any(values.values()):
                continue
            rows.files.append(path)
            rows.groups.append(f"{s.name()}:{group}")
            rows.sets.append(s.name())
            for f, v in values.items():
                rows.labels[f].append(v)
    if not rows.files:
        raise InputError("no labelled rows in the given label files")
    return rows


def _label(name: str, raw: str | None) -> str:
    value = (raw or "").strip().lower()
    if value in ("", "other") or (value == UNKNOWN and name not in COLOR_FIELDS):
        return ""
    return RELABEL.get(name, {}).get(value, value)


def dataset_hash(rows: Rows) -> str:
    """sha256 over every crop's bytes and labels, in order: names the exact training data in the head file."""
    digest = hashlib.sha256()
    for i, path in enumerate(rows.files):
        digest.update(hashlib.sha256(path.read_bytes()).digest())
        digest.update("|".join(rows.labels[f][i] for f in sorted(rows.labels)).encode())
    return digest.hexdigest()


def extract(rows: Rows, featurize: Callable[[list[np.ndarray]], list[ObjectFeatures]], batch: int = 32,
            cache: Path | None = None, key: str = "") -> list[ObjectFeatures]:
    """Features of every row's crop, batch by batch; kept in `cache` (one .npz per data + feature version)."""
    digest = hashlib.sha256(f"{key}|{FEATURES}|{dataset_hash(rows)}".encode()).hexdigest()[:16]
    cached = cache / f"features-{digest}.npz" \
        if cache is not None else None
    if cached is not None and cached.is_file():
        with np.load(cached, allow_pickle=False) as data:
            return [ObjectFeatures(*parts) for parts in zip(*(data[b] for b in BLOCKS), strict=True)]
    out: list[ObjectFeatures] = []
    for lo in range(0, len(rows.files), batch):
        crops = []
        for path in rows.files[lo:lo + batch]:
            if not path.is_file():
                raise InputError(f"{path} (named in the labels) does not exist")
            crops.append(decode_image(path.read_bytes()))
        out.extend(featurize(crops))
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cached, **{b: np.stack([f.block(b) for f in out]) for b in BLOCKS})  # type: ignore[arg-type]
    return out


# --- one field ----------------------------------------------------------------------------------------------------

@dataclass
class Choice:
    blocks: tuple[str, ...]
    strength: float
    temperature: float
    unknown_below: float
    inner_accuracy: float


def _fit(x: np.ndarray, y: np.ndarray, labels: tuple[str, ...], strength: float, balanced: bool = False
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Standardise and fit a logistic regression; (mean, scale, weights (d, k), bias (k,)) over all `labels`."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-6
    model = LogisticRegression(C=strength, max_iter=300, tol=1e-3, class_weight="balanced" if balanced else None)
    model.fit((x - mean) / scale, y)
    k = len(labels)
    weights, bias = np.zeros((x.shape[1], k), np.float32), np.full(k, -30.0, np.float32)
    cols = [int(c) for c in model.classes_]  # y holds indices into labels
    if len(cols) == 2 and model.coef_.shape[0] == 1:  # binary: one logit, class 1 against class 0
        weights[:, cols[1]], bias[cols[1]] = model.coef_[0], model.intercept_[0]
        bias[cols[0]] = 0.0
    else:
        weights[:, cols], bias[cols] = model.coef_.T, model.intercept_
    return mean, scale, weights, bias


def _logits(x: np.ndarray, fitted: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    mean, scale, weights, bias = fitted
    return ((x - mean) / scale) @ weights + bias


def _softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood of held-out predictions (a 1-D search)."""
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 60))
    losses = [-np.log(_softmax(logits, t)[np.arange(len(y)), y] + 1e-12).mean() for t in grid]
    return float(grid[int(np.argmin(losses))])


def choose_unknown_below(p: np.ndarray, y: np.ndarray, labels: tuple[str, ...], name: str) -> float:
    """Colours: the lowest score at which the answers reach TARGET_ANSWERED; where none does, the highest that
    still answers MIN_COVERAGE of the crops a person can name. Other fields are always answered (0)."""
    if name not in COLOR_FIELDS:
        return 0.0
    nameable = np.array([labels[i] != UNKNOWN for i in y])
    top, best = p.max(axis=1), p.argmax(axis=1)
    said = np.array([labels[i] != UNKNOWN for i in best])
    for threshold in np.arange(0.0, 0.95, 0.05):
        answered = said & (top >= threshold) & nameable
        if answered.sum() < MIN_COVERAGE * nameable.sum():
            return float(max(0.0, threshold - 0.05))
        if (best[answered] == y[answered]).mean() >= TARGET_ANSWERED:
            return float(threshold)
    return 0.0


def inner_folds(sets: np.ndarray, groups: np.ndarray, folds: int = 3) -> np.ndarray:
    """A fold number per row: each set's groups split into `folds` parts on their own (fewer where a set has fewer
    groups), so that every inner fold trains on part of every set. Split over all rows at once, a fold could hold
    one whole large group (a CCTV video) while another held all of a small set, and a class only one set has (a
    re-id set's motorcycles) would be missing from training: the fitted temperature would then mean nothing."""
    fold = np.zeros(len(groups), np.int64)
    for s in set(sets.tolist()):
        index = np.flatnonzero(sets == s)
        n = min(folds, len(set(groups[index].tolist())))
        if n < 2:
            fold[index] = -1  # one group: never held out, always trains
            continue
        for k, (_, test) in enumerate(GroupKFold(n).split(index, groups=groups[index])):
            fold[index[test]] = k
    return fold


def choose(x_of: Callable[[tuple[str, ...]], np.ndarray], y: np.ndarray, groups: np.ndarray, sets: np.ndarray,
           labels: tuple[str, ...], name: str, folds: int = 3) -> tuple[Choice, FieldHead]:
    """Inner cross-validation over the training groups (`inner_folds`): blocks and strength, then temperature and
    threshold on the chosen candidate's out-of-fold predictions; the head refitted on every training row."""
    fold = inner_folds(sets, groups, folds)
    held = fold >= 0
    n_folds = int(fold.max()) + 1
    best: tuple[float, tuple[str, ...], float, np.ndarray] | None = None
    for blocks in CANDIDATES:
        x = x_of(blocks)
        for strength in STRENGTHS:
            oof = np.zeros((len(y), len(labels)), np.float32)
            for k in range(n_folds):
                test, train = fold == k, fold != k
                if len(set(y[train].tolist())) >= 2 and test.any():
                    oof[test] = _logits(x[test], _fit(x[train], y[train], labels, strength, name in BALANCED))
            accuracy = float((oof[held].argmax(axis=1) == y[held]).mean()) if held.any() else 0.0
            if best is None or accuracy > best[0] + 1e-9:
                best = (accuracy, blocks, strength, oof)
    assert best is not None
    accuracy, blocks, strength, oof = best
    temperature = fit_temperature(oof[held], y[held]) if n_folds >= 2 else 1.0
    threshold = choose_unknown_below(_softmax(oof[held], temperature), y[held], labels, name) if n_folds >= 2 else 0.0
    mean, scale, weights, bias = _fit(x_of(blocks), y, labels, strength, name in BALANCED)
    head = FieldHead(name, labels, blocks, mean, scale, weights, bias, temperature, threshold,
                     {"strength": strength, "inner_cv_accuracy": round(accuracy, 3)})
    return Choice(blocks, strength, temperature, threshold, accuracy), head


# --- scores ---------------------------------------------------------------------------------------------------------

def field_report(labels: tuple[str, ...], y: np.ndarray, p: np.ndarray, unknown_below: np.ndarray,
                 folds: np.ndarray) -> dict[str, object]:
    """Held-out figures of one field over the crops a person can name (label not "unknown")."""
    nameable = np.array([labels[i] != UNKNOWN for i in y])
    y, p, unknown_below, folds = y[nameable], p[nameable], unknown_below[nameable], folds[nameable]
    if len(y) == 0:
        return {"n": 0}
    best, top = p.argmax(axis=1), p.max(axis=1)
    answered = np.array([labels[b] != UNKNOWN for b in best]) & (top >= unknown_below)
    right = answered & (best == y)
    recalls = {labels[c]: round(float(right[y == c].mean()), 3) for c in sorted(set(y.tolist()))}
    bands = {}
    for lo, (edge, band) in zip((0.0, 0.5, 0.7, 0.9), SCORE_BANDS, strict=True):
        inside = answered & (top >= lo) & (top < edge)
        if inside.any():
            bands[band] = {"n": int(inside.sum()), "accuracy": round(float(right[inside].mean()), 3)}
    per_fold = {f: float(right[folds == f].mean()) for f in sorted(set(folds.tolist()))}
    return {"n": int(len(y)), "accuracy": round(float(right.mean()), 3),
            "coverage": round(float(answered.mean()), 3),
            "accuracy_answered": round(float(right[answered].mean()), 3) if answered.any() else None,
            "balanced_accuracy": round(float(np.mean(list(recalls.values()))), 3),
            "fold_mean": round(float(np.mean(list(per_fold.values()))), 3),
            "fold_worst": round(float(min(per_fold.values())), 3), "folds": len(per_fold),
            "accuracy_by_score": bands,
            "ece": round(expected_calibration_error(top[answered], (best == y)[answered]), 3),
            "recall": recalls}


def expected_calibration_error(scores: np.ndarray, right: np.ndarray, bins: int = 10) -> float:
    """The mean gap between score and accuracy over 10 equal-width score bins, weighted by their counts."""
    if len(scores) == 0:
        return 0.0
    edges = np.minimum((scores * bins).astype(int), bins - 1)
    return float(sum(abs(scores[edges == b].mean() - right[edges == b].mean()) * (edges == b).mean()
                     for b in range(bins) if (edges == b).any()))


# --- the whole kind -----------------------------------------------------------------------------------------------

def outer_folds(sets: np.ndarray, groups: np.ndarray, max_folds: int = 5) -> list[tuple[str, np.ndarray]]:
    """Per set: each group held out in turn where a set has at most `max_folds` groups (a source, a video), else
    `max_folds` folds of its groups (identities). Rows of the other sets always train."""
    out: list[tuple[str, np.ndarray]] = []
    for s in sorted(set(sets.tolist())):
        mine = sets == s
        names = sorted(set(groups[mine].tolist()))
        if len(names) < 2:
            continue
        if len(names) <= max_folds:
            out.extend((s, groups == g) for g in names)
        else:
            index = np.flatnonzero(mine)
            for _, test in GroupKFold(max_folds).split(index, groups=groups[index]):
                held = np.zeros(len(groups), bool)
                held[index[test]] = True
                out.append((s, held))
    return out


def train_heads(rows: Rows, features: list[ObjectFeatures], kind: str, embedding: str, licence: str,
                sources: list[dict[str, str]], evaluate: bool = True, fields: tuple[str, ...] | None = None,
                log: Callable[[str], None] = lambda _: None) -> tuple[HeadSet, dict[str, object]]:
    """Fit each field's head (all of the kind's, or `fields`) on all rows (choices by inner cross-validation) and,
    with `evaluate`, measure the same procedure on each set's held-out groups. Returns the heads and the report."""
    unknown = set(fields or ()) - set(FIELDS[kind])
    if unknown:
        raise InputError(f"{kind} heads have the fields {list(FIELDS[kind])}, not {sorted(unknown)}")
    started = time.perf_counter()
    groups, sets = np.array(rows.groups), np.array(rows.sets)
    cache: dict[tuple[str, ...], np.ndarray] = {}

    def x_all(blocks: tuple[str, ...]) -> np.ndarray:
        if blocks not in cache:
            cache[blocks] = stack(features, blocks)
        return cache[blocks]

    heads: dict[str, FieldHead] = {}
    report: dict[str, object] = {}
    for name in fields or FIELDS[kind]:
        raw = np.array(rows.labels[name])
        counts = Counter(v for v in raw if v)
        labels = tuple(sorted(c for c, n in counts.items() if n >= MIN_CLASS))
        if name in BINARY:
            labels = BINARY_LABELS if set(labels) == set(BINARY_LABELS) else ()
        if len(labels) < 2:
            log(f"{name}: too few labelled crops to learn ({dict(counts)})")
            continue
        keep = np.isin(raw, labels)
        y = np.array([labels.index(v) for v in raw[keep]])
        g, s = groups[keep], sets[keep]

        def x_of(blocks: tuple[str, ...], mask: np.ndarray = keep) -> np.ndarray:
            return x_all(blocks)[mask]

        entry: dict[str, object] = {"labels": list(labels), "rows": int(keep.sum()),
                                    "left_out": {c: n for c, n in counts.items() if c not in labels}}
        if evaluate:
            held: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray, int]]] = {}
            chosen = Counter[str]()
            for fold, (set_name, test) in enumerate(outer_folds(s, g)):
                train = ~test

                def x_train(blocks: tuple[str, ...], t: np.ndarray = train) -> np.ndarray:
                    return x_of(blocks)[t]

                choice, head = choose(x_train, y[train], g[train], s[train], labels, name)
                chosen[f"{'+'.join(choice.blocks)} C={choice.strength}"] += 1
                p = head.probabilities(x_of(head.blocks)[test])
                held.setdefault(set_name, []).append((y[test], p, np.full(int(test.sum()), head.unknown_below), fold))
            entry["held_out"] = {
                set_name: field_report(labels, np.concatenate([h[0] for h in parts]),
                                       np.concatenate([h[1] for h in parts]), np.concatenate([h[2] for h in parts]),
                                       np.concatenate([np.full(len(h[0]), h[3]) for h in parts]))
                for set_name, parts in held.items()}
            entry["chosen_per_fold"] = dict(chosen)
        choice, head = choose(x_of, y, g, s, labels, name)
        entry["deployed"] = {"blocks": list(choice.blocks), "strength": choice.strength,
                             "temperature": round(choice.temperature, 3), "unknown_below": choice.unknown_below}
        head.info = {**head.info, "held_out": entry.get("held_out", {})}
        heads[name] = head
        report[name] = entry
        log(f"{name}: done in {time.perf_counter() - started:.0f} s")
    if not heads:
        raise InputError("no field had enough labelled crops to learn a head")
    meta = {"licence": licence, "trained_on": sources, "features": FEATURES,
            "trained_at": datetime.now(timezone.utc).isoformat(), "dataset_sha256": dataset_hash(rows),
            "rows": len(rows.files)}
    result: dict[str, object] = {"kind": kind, "rows": len(rows.files), "fields": report}
    if kind == "person" and evaluate:
        result["label_based_mA"] = label_based_mean_accuracy(report)
    return HeadSet(kind, heads, embedding, meta), result


def label_based_mean_accuracy(report: dict[str, object]) -> dict[str, object]:
    """PETA's mA over the yes/no fields learned here (gender as male/female): per held-out set, the mean over
    fields of (recall of positives + recall of negatives) / 2."""
    per_set: dict[str, list[float]] = {}
    for entry in report.values():
        if not isinstance(entry, dict) or len(entry.get("labels", [])) != 2:
            continue
        for set_name, figures in entry.get("held_out", {}).items():
            recall = figures.get("recall", {})
            if len(recall) == 2:
                per_set.setdefault(set_name, []).append(float(np.mean(list(recall.values()))))
    return {s: {"mA": round(100 * float(np.mean(v)), 2), "attributes": len(v)} for s, v in per_set.items()}
