"""Several processes share one data folder: the API server runs while the CLI, in another process, ingests
a real eval photo into the same folder; the server then finds that sighting by plate, by photo and by
appearance (its vector indexes catch up from the record store before a query)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.api.app import create_app
from services.api.localserver import serving
from tests.conftest import client

pytestmark = pytest.mark.models
REPO = Path(__file__).resolve().parents[1]
CAMERA = {"id": "gate-1", "name": "Gate 1", "lon": 121.29, "lat": 31.21}
PHOTO, PLATE = "0001.jpg", "皖AY766D"  # plates/full/labels.tsv


def test_a_photo_ingested_by_the_cli_is_found_by_the_running_server(settings, pipeline, model_dir: Path,
                                                                    eval_dir: Path) -> None:
    photo = eval_dir / "plates" / "full" / PHOTO
    app = create_app(settings, pipeline)
    with serving(app) as url, client(app, url, timeout=120) as api:
        assert api.post("/cameras", json=CAMERA).status_code == 201
        # The server has searched once already (its indexes are loaded and empty) before the other process writes.
        assert api.get("/search/plates", params={"q": PLATE}).json()["results"] == []
        empty = api.post("/search/image", files={"file": (photo.name, photo.read_bytes(), "image/jpeg")},
                         data={"kind": "vehicle"})
        assert empty.status_code == 200 and empty.json()["results"] == []

        ingested = subprocess.run(
            [sys.executable, "-m", "services.cli.main", "--data", str(settings.data_dir), "--models", str(model_dir),
             "ingest", str(photo), "--camera", CAMERA["id"], "--time", "2026-11-02T08:00:00+08:00"],
            capture_output=True, text=True, cwd=REPO, timeout=600)
        assert ingested.returncode == 0, ingested.stderr
        summary = json.loads(ingested.stdout)
        assert summary["new"] == 1 and summary["sightings"] >= 1 and not summary["errors"]

        listed = api.get("/sightings", params={"plate": PLATE}).json()
        assert listed["count"] == 1
        sighting = listed["sightings"][0]
        assert sighting["camera_id"] == CAMERA["id"] and sighting["ts"] == "2026-11-02T00:00:00+00:00"

        plates = api.get("/search/plates", params={"q": PLATE})
        assert plates.status_code == 200, plates.text
        results = plates.json()["results"]
        assert [r["plate"] for r in results] == [PLATE]
        assert sighting["id"] in {s["id"] for s in results[0]["sightings"]}

        by_photo = api.post("/search/image", files={"file": (photo.name, photo.read_bytes(), "image/jpeg")},
                            data={"kind": "vehicle", "k": "5"})
        assert by_photo.status_code == 200, by_photo.text
        hits = [h["sighting"]["id"] for h in by_photo.json()["results"]]
        assert sighting["id"] in hits

        route = api.get(f"/trajectories/by-sighting/{sighting['id']}")
        assert route.status_code == 200, route.text
        assert sighting["id"] in [p["sighting_id"] for p in route.json()["points"]]
