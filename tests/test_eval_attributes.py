"""`sightline eval attributes`: scoring rules on small records, and the real models on the labelled eval images."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.observations import Observation
from models.records import BBox, SightingKind, VehicleAttributes
from services.bench.eval_attributes import FieldScore, main_object, read_labels
from services.cli.main import main as sightline


def test_a_field_score_counts_accuracy_recall_and_confusions() -> None:
    score = FieldScore()
    for label, predicted, high in [("white", "white", True), ("white", "gray", False), ("black", "black", True),
                                   ("black", "(none)", False)]:
        score.add(label, predicted, high, label == predicted)
    report = score.report()
    assert report["accuracy"] == 0.5 and report["accuracy_high_confidence"] == 1.0
    assert report["recall"] == {"black": 0.5, "white": 0.5}
    assert report["confusion"] == {"black": {"black": 1, "(none)": 1}, "white": {"white": 1, "gray": 1}}


def test_the_main_object_is_the_largest_of_its_kind() -> None:
    def ob(kind: SightingKind, side: float) -> Observation:
        return Observation(kind, BBox(0, 0, side, side), 0.9, VehicleAttributes(), np.zeros((1, 1, 3), np.uint8))

    small, large, person = ob(SightingKind.VEHICLE, 10), ob(SightingKind.VEHICLE, 50), ob(SightingKind.PERSON, 99)
    assert main_object([small, person, large], "vehicle") is large and main_object([person], "vehicle") is None


def test_bad_label_files_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "labels.tsv").write_text("file\tcolor\nx.jpg\tred\n", encoding="utf-8")
    with pytest.raises(ValueError, match="lacks the column"):
        read_labels(tmp_path / "labels.tsv", "vehicle")
    code = sightline(["eval", "attributes", str(tmp_path), "--kind", "vehicle", "--labels", str(tmp_path / "no.tsv")])
    assert code == 2 and "does not exist" in capsys.readouterr().err


@pytest.mark.models
def test_vehicle_attributes_are_measured_on_the_labelled_eval_images(eval_dir: Path, model_dir: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code = sightline(["--models", str(model_dir), "eval", "attributes", str(eval_dir), "--kind", "vehicle"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 70 and result["main_object_found"] >= 65
    fields = result["fields"]
    # Floors at today's measured figures (colour 0.37, type 0.49): the attributes issue raises them.
    assert fields["color"]["accuracy"] >= 0.3 and fields["type"]["accuracy"] >= 0.4
    assert fields["type"]["recall"]["motorcycle"] >= 0.6  # YOLOX's motorcycle class reaches the record
    assert result["color_silver_as_white_or_gray"]["accuracy"] >= fields["color"]["accuracy"]
