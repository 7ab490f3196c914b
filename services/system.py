"""Configuration and assembly: which record store, which vector indexes, where the data lives.

A backend is chosen here, by name, from a table — nowhere else in the code.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from indexer.sqlite_store import SQLiteStore
from indexer.store import RecordStore
from indexer.vectors import FaissIndex, VectorIndex
from models.registry import default_model_dir

REPO = Path(__file__).resolve().parents[1]
EVAL_DIR = REPO.parent / "shared" / "eval"  # the shared eval data beside the checkout
ROADNET = EVAL_DIR / "roadnet" / "shanghai_intersections.geojson"


def _default_roads() -> Path | None:
    configured = os.environ.get("SIGHTLINE_ROADS")
    if configured:
        return Path(configured).resolve()
    return ROADNET if ROADNET.is_file() else None


SPACES: dict[str, int] = {"vehicle": 1024, "person": 768, "face": 128}

STORE_BACKENDS: dict[str, Callable[["Settings"], RecordStore]] = {
    "sqlite": lambda s: SQLiteStore(s.data_dir / "sightline.db"),
}


@dataclass
class Settings:
    data_dir: Path = field(default_factory=lambda: Path(os.environ.get("SIGHTLINE_DATA", "data")).resolve())
    model_dir: Path = field(default_factory=default_model_dir)
    store_backend: str = field(default_factory=lambda: os.environ.get("SIGHTLINE_STORE", "sqlite"))
    max_upload_bytes: int = field(default_factory=lambda: int(os.environ.get("SIGHTLINE_MAX_UPLOAD_MB", "50")) << 20)
    faces: bool = True
    # Keep this many days of sightings (None: keep everything); the API applies it hourly.
    retention_days: float | None = field(default_factory=lambda: float(os.environ["SIGHTLINE_RETENTION_DAYS"])
                                         if os.environ.get("SIGHTLINE_RETENTION_DAYS") else None)
    # The map's base layer: a GeoJSON of roads drawn offline, and optionally a tile server for online sites.
    roads_geojson: Path | None = field(default_factory=lambda: _default_roads())
    tile_url: str | None = field(default_factory=lambda: os.environ.get("SIGHTLINE_TILE_URL") or None)
    web_dir: Path = field(default_factory=lambda: Path(os.environ.get("SIGHTLINE_WEB_DIR", REPO / "web")).resolve())

    @classmethod
    def with_dirs(cls, data_dir: str | None, model_dir: str | None) -> Settings:
        """The defaults, with the data and model folders a command line named (None keeps the default)."""
        settings = cls()
        if data_dir:
            settings.data_dir = Path(data_dir).resolve()
        if model_dir:
            settings.model_dir = Path(model_dir).resolve()
        return settings

    @property
    def crops_dir(self) -> Path:
        return self.data_dir / "crops"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "vectors"


class Sightline:
    """The opened system: record store, one vector index per space, and (on first use) the model pipeline."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()
        if self.settings.store_backend not in STORE_BACKENDS:
            raise ValueError(f"unknown store backend {self.settings.store_backend!r}; "
                             f"choose one of {sorted(STORE_BACKENDS)}")
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = STORE_BACKENDS[self.settings.store_backend](self.settings)
        self.indexes: dict[str, VectorIndex] = {
            space: FaissIndex(self.settings.index_dir, space, dim, self.store) for space, dim in SPACES.items()
        }
        self._pipeline = None

    @property
    def pipeline(self):  # noqa: ANN201 - models load lazily so that queries never pay for them
        if self._pipeline is None:
            from models.pipeline import Pipeline

            self._pipeline = Pipeline(self.settings.model_dir, faces=self.settings.faces)
        return self._pipeline

    def save_indexes(self) -> None:
        for index in self.indexes.values():
            index.save()

    def close(self) -> None:
        self.save_indexes()
        self.store.close()

    def __enter__(self) -> Sightline:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
