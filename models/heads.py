"""Learned attribute heads: one small calibrated classifier per field, over features the pipeline already has.

Why: colour and type rules fitted to a few dozen crops failed on other cameras. A head is a multinomial logistic
regression learned from thousands of labelled crops (`sightline train attributes`, models/head_training.py), its
features and strength chosen by cross-validation over cameras or identities, and its scores calibrated by a
temperature fitted on groups it was not trained on, so that 0.9 means right about nine times in ten.

The features are four blocks, each as its model gives it (never a projection learned elsewhere, so improving
photo search cannot silently move an attribute):
- `color`: colour statistics of the body region(s) in CIELAB, relative to the scene's lightness (`color_features`);
- `model`: the attribute model's own outputs (vehicle: 7 colour and 4 type probabilities; person: 8 flags);
- `inner`: the attribute model's last shared layer, averaged (vehicle: 128 over the image; person: 256 over the
  upper and 256 over the lower half);
- `embedding`: the appearance vector of the object's embedding space.

A head file is a NumPy `.npz` (read with `allow_pickle=False`: no code in it) holding each field's arrays and one
JSON document: its version, the embedding it reads, its training sets with their sha256 and licence, and its
held-out figures. The active heads of a deployment are `<model dir>/heads/<kind>-attributes.npz`.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.colors import DEFAULT_RULES, lab
from models.records import UNKNOWN
from models.registry import ModelError

BLOCKS = ("color", "model", "inner", "embedding")
FEATURES = 2  # the version of what the blocks hold (2: colours with the scene's cast taken off); a head records it
HEADS_DIR = "heads"
FORMAT = 1
BINARY_LABELS = ("no", "yes")  # a yes/no field's two classes, in this order


class HeadError(ModelError):
    """A head file that cannot be read, or that reads other features than the pipeline gives."""


def active_head_path(model_dir: Path, kind: str) -> Path:
    return model_dir / HEADS_DIR / f"{kind}-attributes.npz"


# --- features ---------------------------------------------------------------------------------------------------

_CHROMA = DEFAULT_RULES.chroma  # L*a*b* chroma above which a pixel is "hued", as the rules name colours
_REL_EDGES = np.array([0.3, 0.5, 0.65, 0.8, 0.95, 1.1, 1.3])  # lightness / scene lightness, for unhued pixels
_ABS_EDGES = np.array([15.0, 30.0, 45.0, 60.0, 75.0])  # absolute L*, for unhued pixels
_HUE_BINS = 12
REGION_DIM = (len(_REL_EDGES) + 1) + (len(_ABS_EDGES) + 1) + 2 * _HUE_BINS + 6


def region_features(pixels: np.ndarray, reference: float) -> np.ndarray:
    """REGION_DIM numbers describing a region's colours: shares of unhued pixels by relative and absolute lightness,
    shares of hued pixels by hue (12 bins) and chroma (two levels), and the region's medians."""
    flat = pixels.reshape(-1, 3).astype(np.float32)
    out = np.zeros(REGION_DIM, np.float32)
    if len(flat) == 0:
        return out
    n = float(len(flat))
    lightness, a, b = flat[:, 0], flat[:, 1], flat[:, 2]
    chroma = np.hypot(a, b)
    hued = chroma >= _CHROMA
    grey_l = lightness[~hued]
    k = 0
    out[k:k + len(_REL_EDGES) + 1] = np.bincount(np.searchsorted(_REL_EDGES, grey_l / reference),
                                                 minlength=len(_REL_EDGES) + 1) / n
    k += len(_REL_EDGES) + 1
    out[k:k + len(_ABS_EDGES) + 1] = np.bincount(np.searchsorted(_ABS_EDGES, grey_l), minlength=len(_ABS_EDGES) + 1) / n
    k += len(_ABS_EDGES) + 1
    hue = (np.degrees(np.arctan2(b[hued], a[hued])) % 360.0) // (360.0 / _HUE_BINS)
    strong = chroma[hued] >= 2 * _CHROMA
    codes = hue.astype(np.int64) + _HUE_BINS * strong
    out[k:k + 2 * _HUE_BINS] = np.bincount(codes, minlength=2 * _HUE_BINS) / n
    k += 2 * _HUE_BINS
    med = np.median(flat, axis=0)
    out[k:] = (med[0] / 100.0, med[1] / 50.0, med[2] / 50.0, float(np.median(chroma)) / 50.0,
               med[0] / reference, hued.mean())
    return out


def color_features(crop: np.ndarray, kind: str, reference: float, cast: np.ndarray | None = None) -> np.ndarray:
    """The `color` block: a vehicle's body and its lower middle (a two-wheeler below its rider); a person's torso
    and legs (the central columns, as models.colors reads them). The scene's colour cast (models.colors.scene_cast)
    is taken off first: a checkpoint camera that tints everything blue must not make a silver car blue."""
    if kind == "vehicle":
        pixels = lab(crop, (32, 32))
        regions = [pixels[4:28, 5:27], pixels[18:31, 8:24]]
    else:
        pixels = lab(crop, (16, 32))
        regions = [pixels[6:15, 4:12], pixels[18:28, 4:12]]
    if cast is not None:
        regions = [r - np.array([0.0, cast[0], cast[1]], np.float32) for r in regions]
    return np.concatenate([region_features(r, reference) for r in regions])


@dataclass
class ObjectFeatures:
    """What a head reads of one object: each block as a 1-D float32 array."""

    color: np.ndarray
    model: np.ndarray
    inner: np.ndarray
    embedding: np.ndarray

    def block(self, name: str) -> np.ndarray:
        return getattr(self, name)


def stack(features: list[ObjectFeatures], blocks: tuple[str, ...]) -> np.ndarray:
    """(n, d) matrix of the named blocks, side by side."""
    return np.stack([np.concatenate([f.block(b) for b in blocks]).astype(np.float32) for f in features])


# --- heads --------------------------------------------------------------------------------------------------------

@dataclass
class FieldHead:
    """One field's classifier: standardise the chosen blocks, a linear layer, softmax at a fitted temperature.

    `unknown_below`: a calibrated top score under it is answered "unknown" (0: always answered).
    """

    name: str
    labels: tuple[str, ...]
    blocks: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray  # (d, k)
    bias: np.ndarray  # (k,)
    temperature: float = 1.0
    unknown_below: float = 0.0
    info: dict[str, object] = field(default_factory=dict)  # how it was chosen and its held-out figures

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(n, k) calibrated class probabilities for (n, d) features of this head's blocks."""
        logits = ((x - self.mean) / self.scale) @ self.weights + self.bias
        logits = logits / self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, features: list[ObjectFeatures]) -> list[tuple[str, float]]:
        """(label, calibrated score) per object; "unknown" where the top score is under `unknown_below`."""
        return self.answers(stack(features, self.blocks)) if features else []

    def answers(self, x: np.ndarray) -> list[tuple[str, float]]:
        """`predict` from the (n, d) matrix of this head's blocks."""
        p = self.probabilities(x)
        top = p.argmax(axis=1)
        return [(UNKNOWN if s < self.unknown_below else self.labels[i], round(float(s), 3))
                for i, s in zip(top, p[np.arange(len(p)), top], strict=True)]


@dataclass
class HeadSet:
    """A kind's heads, one per field, with the facts a user needs to trust or replace them."""

    kind: str
    fields: dict[str, FieldHead]
    embedding: str  # the embedder version whose vectors the `embedding` block is
    meta: dict[str, object] = field(default_factory=dict)  # training sets, licence, figures, when

    @property
    def version(self) -> str:
        return str(self.meta.get("version", "unversioned"))

    @property
    def licence(self) -> str:
        return str(self.meta.get("licence", ""))

    def predict(self, features: list[ObjectFeatures]) -> dict[str, list[tuple[str, float]]]:
        """Every field's answers; the fields that read the same blocks share one matrix."""
        if not features:
            return {name: [] for name in self.fields}
        matrices: dict[tuple[str, ...], np.ndarray] = {}
        for head in self.fields.values():
            if head.blocks not in matrices:
                matrices[head.blocks] = stack(features, head.blocks)
        return {name: head.answers(matrices[head.blocks]) for name, head in self.fields.items()}

    def save(self, path: Path) -> str:
        """Write the heads (atomically) and return their version: the sha256 of the arrays and settings, short."""
        arrays: dict[str, np.ndarray] = {}
        described = {}
        for name, h in self.fields.items():
            for part in ("mean", "scale", "weights", "bias"):
                arrays[f"{name}.{part}"] = np.asarray(getattr(h, part), np.float32)
            described[name] = {"labels": list(h.labels), "blocks": list(h.blocks), "temperature": h.temperature,
                               "unknown_below": h.unknown_below, "info": h.info}
        digest = hashlib.sha256()
        for key in sorted(arrays):
            digest.update(key.encode())
            digest.update(arrays[key].tobytes())
        digest.update(json.dumps(described, sort_keys=True).encode())
        version = f"{self.kind}-heads-{digest.hexdigest()[:12]}"
        self.meta["version"] = version
        doc = {"format": FORMAT, "kind": self.kind, "embedding": self.embedding, "fields": described, **self.meta}
        arrays["meta"] = np.array(json.dumps(doc, ensure_ascii=False))
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(buffer.getvalue())
        tmp.replace(path)
        return version

    @staticmethod
    def load(path: Path) -> "HeadSet":
        try:
            with np.load(path, allow_pickle=False) as data:
                doc = json.loads(str(data["meta"]))
                if doc.get("format") != FORMAT:
                    raise HeadError(f"{path}: head format {doc.get('format')!r}, this version reads {FORMAT}")
                fields = {name: FieldHead(name, tuple(d["labels"]), tuple(d["blocks"]),
                                          data[f"{name}.mean"], data[f"{name}.scale"], data[f"{name}.weights"],
                                          data[f"{name}.bias"], float(d["temperature"]), float(d["unknown_below"]),
                                          d.get("info", {}))
                          for name, d in doc["fields"].items()}
        except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
            if isinstance(exc, HeadError):
                raise
            raise HeadError(f"{path} is not an attribute head file ({exc})") from exc
        meta = {k: v for k, v in doc.items() if k not in ("format", "kind", "embedding", "fields")}
        return HeadSet(doc["kind"], fields, doc["embedding"], meta)


def load_active(model_dir: Path, kind: str, embedding: str) -> HeadSet | None:
    """The deployment's active heads for a kind, or None (then the rules of models.colors and vehicle_type answer)."""
    path = active_head_path(model_dir, kind)
    return check(HeadSet.load(path), kind, embedding, path) if path.is_file() else None


def check(heads: HeadSet, kind: str, embedding: str, path: Path | str = "the head file") -> HeadSet:
    """Heads of another kind, or trained on another embedding's vectors (numbers that mean something else), are
    refused by name."""
    if heads.kind != kind:
        raise HeadError(f"{path} holds {heads.kind} heads, not {kind}")
    if heads.meta.get("features") != FEATURES:
        raise HeadError(f"{path} reads version {heads.meta.get('features')} of the features, this release computes "
                        f"version {FEATURES}: retrain it (sightline train attributes) or remove it to use the rules")
    if any("embedding" in h.blocks for h in heads.fields.values()) and heads.embedding != embedding:
        raise HeadError(f"{path} was trained on {heads.embedding} vectors but the pipeline embeds with {embedding}: "
                        "retrain it (sightline train attributes) or remove it to use the rules")
    return heads
