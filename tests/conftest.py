"""Shared fixtures: the eval data, the model directory, one loaded pipeline per test session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.settings import Settings
from services.system import Sightline

REPO = Path(__file__).resolve().parents[1]
EVAL = REPO.parent / "shared" / "eval"
MODEL_DIR = Path(os.environ.get("SIGHTLINE_MODEL_DIR", REPO / "model_store")).resolve()


@pytest.fixture(scope="session")
def eval_dir() -> Path:
    if not EVAL.is_dir():
        pytest.skip(f"the shared eval data is not at {EVAL}")
    return EVAL


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return MODEL_DIR


@pytest.fixture(scope="session")
def pipeline(model_dir: Path):  # noqa: ANN201
    """The real models, loaded once for the whole session (loading is the slow part)."""
    from models.pipeline import Pipeline

    return Pipeline(model_dir)


@pytest.fixture
def settings(tmp_path: Path, model_dir: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", model_dir=model_dir)


@pytest.fixture
def system(settings: Settings, pipeline) -> Sightline:  # noqa: ANN001
    """A fresh data directory with the session's loaded pipeline."""
    opened = Sightline(settings, pipeline)
    yield opened
    opened.close()


@pytest.fixture
def fake_pipeline():  # noqa: ANN201
    """A FakePipeline (tests/fakes.py): scripted observations, pixel-derived vectors, no weights."""
    from tests.fakes import FakePipeline

    return FakePipeline()


@pytest.fixture
def fake_system(tmp_path: Path, model_dir: Path, fake_pipeline) -> Sightline:  # noqa: ANN001
    """A fresh data directory whose models are the fake pipeline: store, search and alert tests without weights."""
    settings = Settings(data_dir=tmp_path / "fake-data", model_dir=model_dir, roads_geojson=None)
    opened = Sightline(settings, fake_pipeline)
    yield opened
    opened.close()
