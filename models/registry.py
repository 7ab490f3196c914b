"""Model registry: the manifest of weights, and pulling them from a mirror folder or their source URL.

Nothing is ever loaded without its sha256 matching the manifest, so a truncated
or swapped file is an error, never a silently wrong model.
"""
from __future__ import annotations

import csv
import hashlib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

MANIFEST = Path(__file__).with_name("manifest.tsv")


class ModelError(RuntimeError):
    """A model file is missing or does not match the manifest."""


@dataclass(frozen=True)
class ModelEntry:
    file: str
    sha256: str
    bytes: int
    url: str
    licence: str


def manifest() -> dict[str, ModelEntry]:
    with MANIFEST.open(encoding="utf-8") as fh:
        rows = csv.DictReader(fh, delimiter="\t")
        return {r["file"]: ModelEntry(r["file"], r["sha256"], int(r["bytes"]), r["url"], r["licence"]) for r in rows}


def default_model_dir() -> Path:
    """./model_store; the deployment names another through Settings (SIGHTLINE_MODEL_DIR, --models)."""
    return Path("model_store").resolve()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(entry: ModelEntry, path: Path) -> None:
    got = sha256_of(path)
    if got != entry.sha256:
        raise ModelError(f"{entry.file}: sha256 {got} does not match the manifest's {entry.sha256}")


def pull(model_dir: Path, mirror: Path | None = None) -> list[str]:
    """Fill model_dir from a mirror folder (air-gapped sites) or the source URLs; verify every file.

    A file is written under a temporary name and renamed only after its checksum
    matches, so an interrupted pull never leaves a half-written model behind.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for entry in manifest().values():
        target = model_dir / entry.file
        if target.exists():
            try:
                _verify(entry, target)
                done.append(entry.file)
                continue
            except ModelError:
                target.unlink()
        fd, tmp_name = tempfile.mkstemp(dir=model_dir, prefix=".pull-")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            if mirror is not None:
                source = mirror / entry.file
                if not source.exists():
                    raise ModelError(f"{entry.file} is not in the mirror {mirror}")
                shutil.copyfile(source, tmp)
            else:
                with urllib.request.urlopen(entry.url, timeout=60) as resp, tmp.open("wb") as out:
                    shutil.copyfileobj(resp, out)
            _verify(entry, tmp)
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
        done.append(entry.file)
    done.extend(install_shipped_heads(model_dir))
    return done


SHIPPED_HEADS = Path(__file__).with_name("trained")  # the attribute heads this release ships (models/heads.py)


def install_shipped_heads(model_dir: Path) -> list[str]:
    """Make the shipped heads the active ones where the model folder has none of its own that this release can read
    (a deployment's retrained heads, put in place with `sightline models use-heads`, are never overwritten; heads
    of another feature version, which the pipeline would refuse, are)."""
    from models.heads import FEATURES, HEADS_DIR, HeadError, HeadSet  # light, but only pulling needs it

    installed = []
    for shipped in sorted(SHIPPED_HEADS.glob("*-attributes.npz")):
        target = model_dir / HEADS_DIR / shipped.name
        try:
            usable = target.exists() and HeadSet.load(target).meta.get("features") == FEATURES
        except HeadError:
            usable = False
        if not usable:
            if target.exists():  # kept aside: retrain on its data, or delete it
                target.replace(target.with_name(f"unusable-{target.name}"))
            place(shipped, target)
        installed.append(f"{HEADS_DIR}/{shipped.name}")
    return installed


def place(source: Path, target: Path) -> None:
    """Copy a file into place whole: through a temporary file beside the target, renamed over it, so a process
    that opens the target meanwhile reads the old file or the new one, never half of one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, tmp)
    tmp.replace(target)


def status(model_dir: Path) -> list[dict[str, str]]:
    """What is present, missing or corrupt in model_dir (for `sightline models list`)."""
    out = []
    for entry in manifest().values():
        path = model_dir / entry.file
        if not path.exists():
            state = "missing"
        else:
            state = "ok" if path.stat().st_size == entry.bytes and sha256_of(path) == entry.sha256 else "corrupt"
        out.append({"file": entry.file, "state": state, "licence": entry.licence})
    return out + heads_status(model_dir)


def heads_status(model_dir: Path) -> list[dict[str, str]]:
    """The active attribute heads: their version and the licence of the data they were trained on."""
    from models.heads import HEADS_DIR, HeadError, HeadSet  # light, but only `models list` needs it

    out = []
    for path in sorted((model_dir / HEADS_DIR).glob("*-attributes.npz")):
        try:
            heads = HeadSet.load(path)
            out.append({"file": f"{HEADS_DIR}/{path.name}", "state": "ok",
                        "licence": f"{heads.version}: {heads.licence}"})
        except HeadError as exc:
            out.append({"file": f"{HEADS_DIR}/{path.name}", "state": "corrupt", "licence": str(exc)})
    return out


def model_path(file: str, model_dir: Path | None = None) -> Path:
    """The verified path of one model file; a missing or altered file is a ModelError."""
    entries = manifest()
    if file not in entries:
        raise ModelError(f"{file} is not in the model manifest")
    path = (model_dir or default_model_dir()) / file
    if not path.exists():
        raise ModelError(f"model {file} is missing from {path.parent}; run `sightline models pull --mirror DIR`")
    if path.stat().st_size != entries[file].bytes:
        raise ModelError(f"model {path} has the wrong size; run `sightline models pull` again")
    _verify(entries[file], path)
    return path
