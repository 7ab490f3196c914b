"""`sightline eval attributes`: scoring rules on small records, and the real models on the labelled eval images."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.observations import Observation
from models.records import BBox, SightingKind, VehicleAttributes
from services.bench.eval_attributes import FieldScore, _cv_report, main_object, read_labels
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
    assert report["coverage"] == 0.75 and report["accuracy_answered"] == round(2 / 3, 3)  # "(none)" is not an answer


def test_balanced_accuracy_is_not_flattered_by_a_skewed_set() -> None:
    score = FieldScore()  # three men to one woman, answered "male" every time
    for label in ("male", "male", "male", "female"):
        score.add(label, "male", False, label == "male")
    report = score.report()
    assert (report["accuracy"], report["balanced_accuracy"]) == (0.75, 0.5)


def test_unknown_counts_as_wrong_but_not_as_answered() -> None:
    score = FieldScore()
    for label, predicted in [("white", "white"), ("gray", "unknown"), ("black", "gray"), ("red", "red")]:
        score.add(label, predicted, False, label == predicted)
    report = score.report()
    assert (report["accuracy"], report["coverage"], report["accuracy_answered"]) == (0.5, 0.75, 0.667)


def test_cross_validation_leaves_each_identity_out_when_it_chooses() -> None:
    # Two rule settings, three identities of two images; setting 1 is better only on identity "c".
    right = np.array([[1, 1, 1, 1, 0, 0], [0, 1, 0, 1, 1, 1]], float)
    report = _cv_report(["a", "a", "b", "b", "c", "c"], right, 0, ["default", "other"])
    assert report["in_sample_default"] == round(4 / 6, 3) and report["in_sample_best_of_grid"] == round(4 / 6, 3)
    # Leaving a (or b) out, "other" wins on the rest (3 to 2) and scores 1 of 2 there; leaving c out, the default
    # wins (4 to 2) and scores 0 on c: 2 of 6, below the in-sample figure, as an honest estimate should be.
    assert report["leave_one_identity_out"] == round(2 / 6, 3)
    assert report["chosen_per_fold"] == {"other": 2, "default": 1}
    nan = float("nan")  # unknown labels are left out of n
    assert _cv_report(["a", "b"], np.array([[1, nan]]), 0, ["only"])["n"] == 1


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
def test_the_shipped_heads_answer_by_default_with_calibrated_scores(eval_dir: Path, model_dir: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The active heads describe the eval crops (the person heads never saw these CUHK03 crops; the vehicle heads
    were trained on these images too, so theirs is an in-sample figure); the rules are reported beside them."""
    code = sightline(["--models", str(model_dir), "eval", "attributes", str(eval_dir), "--kind", "person"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["answered_by"].startswith("person-heads-")
    fields, rules = result["fields"], result["rules"]
    # Floors below the measured figures (gender 0.717, bag 0.732, trousers 0.925; the rules 0.736, 0.732, 0.887).
    # The bag head ties the rules, and a host's arithmetic (bfloat16 on AMX hosts, 2026-12-08: 0.714) moves one of
    # the 56 crops: the floor is the rules less that one crop.
    assert fields["gender"]["accuracy"] >= 0.7 and fields["gender"]["ece"] is not None
    assert fields["bag"]["accuracy"] >= rules["bag"]["accuracy"] - 1 / fields["bag"]["n"] - 0.001  # 3 places
    assert fields["long_pants"]["accuracy"] >= 0.85
    code = sightline(["--models", str(model_dir), "eval", "attributes", str(eval_dir), "--kind", "vehicle"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["answered_by"].startswith("vehicle-heads-")
    colour = result["fields"]["color"]
    assert colour["accuracy"] >= 0.8 and colour["accuracy"] > result["rules"]["color"]["accuracy"]  # in-sample
    assert result["fields"]["type"]["accuracy"] == result["rules"]["type"]["accuracy"]  # the rules keep the type
    assert result["color_silver_as_white_or_gray"]["accuracy"] >= colour["accuracy"]


@pytest.mark.models
def test_vehicle_attributes_are_measured_on_the_labelled_eval_images(eval_dir: Path, model_dir: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code = sightline(["--models", str(model_dir), "eval", "attributes", str(eval_dir), "--kind", "vehicle", "--rules"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["answered_by"] == "rules"
    assert result["images"] == 70 and result["main_object_found"] >= 65
    assert result["main_object_found"] + result["whole_image_used"] == 70
    fields = result["fields"]
    # Floors below the measured figures (colour 0.70, type 0.76; the models alone 0.37 and 0.33).
    assert fields["color"]["accuracy"] >= 0.6 and fields["type"]["accuracy"] >= 0.7
    assert fields["color"]["accuracy_answered"] >= 0.75 and fields["color"]["coverage"] < 1.0  # trucks: unknown
    assert fields["type"]["recall"]["motorcycle"] >= 0.85  # riders and YOLOX's two-wheeler boxes reach the record
    assert fields["color"]["recall"]["silver"] >= 0.6  # silver is its own colour
    alone = result["model_alone"]
    assert alone["color"]["accuracy"] < fields["color"]["accuracy"]
    assert alone["type"]["accuracy"] < fields["type"]["accuracy"]
    cv = result["cross_validated"]
    assert cv["type"]["in_sample_default"] == fields["type"]["accuracy"]
    assert cv["color"]["in_sample_default"] == fields["color"]["accuracy"]
    assert 0.5 <= cv["type"]["leave_one_identity_out"] <= cv["type"]["in_sample_best_of_grid"]
    assert 0.5 <= cv["color"]["leave_one_identity_out"] <= cv["color"]["in_sample_best_of_grid"]
    assert result["color_silver_as_white_or_gray"]["accuracy"] >= fields["color"]["accuracy"]


@pytest.mark.models
def test_person_attributes_are_measured_on_the_labelled_eval_crops(eval_dir: Path, model_dir: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code = sightline(["--models", str(model_dir), "eval", "attributes", str(eval_dir), "--kind", "person", "--rules"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["answered_by"] == "rules"
    assert result["images"] == 56 and result["main_object_found"] + result["whole_image_used"] == 56
    fields, alone = result["fields"], result["model_alone"]
    # Floors below the measured figures (upper/lower 0.70/0.62, bag 0.68; the model alone 0.34/0.38, 0.50).
    assert fields["upper_color"]["accuracy"] >= 0.6 and fields["lower_color"]["accuracy"] >= 0.55
    assert fields["lower_color"]["recall"]["blue"] >= 0.4  # desaturated denim is blue, not black
    assert fields["bag"]["accuracy"] > alone["bag"]["accuracy"]  # a backpack is a bag
    assert fields["upper_color"]["accuracy"] > alone["upper_color"]["accuracy"]
    assert "leave_one_identity_out" in result["cross_validated"]["upper_and_lower_color"]
