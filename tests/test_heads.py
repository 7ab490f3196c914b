"""The learned attribute heads (models/heads.py, models/head_training.py): their file format, their calibration and
threshold machinery, the group-wise held-out measurement, and training on real labelled crops with the real models."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from models.head_training import (
    LabelledSet,
    choose_unknown_below,
    expected_calibration_error,
    extract,
    fit_temperature,
    inner_folds,
    outer_folds,
    read_rows,
    train_heads,
)
from models.heads import (
    BINARY_LABELS,
    FEATURES,
    REGION_DIM,
    FieldHead,
    HeadError,
    HeadSet,
    ObjectFeatures,
    active_head_path,
    color_features,
    load_active,
    region_features,
)
from models.pipeline import apply_head_answer
from models.records import UNKNOWN, InputError, PersonAttributes, VehicleAttributes


def _features(n: int, rng: np.random.Generator) -> list[ObjectFeatures]:
    return [ObjectFeatures(rng.normal(size=4).astype(np.float32), rng.normal(size=2).astype(np.float32),
                           rng.normal(size=3).astype(np.float32), rng.normal(size=5).astype(np.float32))
            for _ in range(n)]


def _head(name: str = "color", labels: tuple[str, ...] = ("red", "blue", "white"), unknown_below: float = 0.0,
          blocks: tuple[str, ...] = ("color", "embedding")) -> FieldHead:
    rng = np.random.default_rng(1)
    d = 4 * ("color" in blocks) + 2 * ("model" in blocks) + 3 * ("inner" in blocks) + 5 * ("embedding" in blocks)
    return FieldHead(name, labels, blocks, np.zeros(d, np.float32), np.ones(d, np.float32),
                     rng.normal(size=(d, len(labels))).astype(np.float32), np.zeros(len(labels), np.float32),
                     1.5, unknown_below, {"note": "test"})


def test_a_head_file_round_trips_with_its_version_and_refuses_another_embedding(tmp_path: Path) -> None:
    heads = HeadSet("vehicle", {"color": _head()}, "emb-1", {"licence": "CC BY 4.0", "features": FEATURES})
    path = active_head_path(tmp_path, "vehicle")
    version = heads.save(path)
    assert version.startswith("vehicle-heads-") and heads.version == version
    loaded = HeadSet.load(path)
    assert loaded.version == version and loaded.licence == "CC BY 4.0" and loaded.embedding == "emb-1"
    features = _features(7, np.random.default_rng(0))
    assert loaded.predict(features) == heads.predict(features)
    again = HeadSet("vehicle", {"color": _head()}, "emb-1", {"licence": "CC BY 4.0", "features": FEATURES})
    assert again.save(tmp_path / "b.npz") == version
    assert load_active(tmp_path, "vehicle", "emb-1") is not None
    assert load_active(tmp_path, "person", "emb-1") is None  # none for that kind: the rules answer
    with pytest.raises(HeadError, match="trained on emb-1 vectors"):
        load_active(tmp_path, "vehicle", "emb-2")
    HeadSet("vehicle", {"color": _head()}, "emb-1", {"features": FEATURES - 1}).save(path)
    with pytest.raises(HeadError, match="version 1 of the features"):
        load_active(tmp_path, "vehicle", "emb-1")


def test_a_damaged_or_foreign_head_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(HeadError, match="not an attribute head file"):
        HeadSet.load(bad)
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    with pytest.raises(HeadError, match="not an attribute head file"):
        HeadSet.load(tmp_path / "other.npz")


def test_probabilities_are_calibrated_softmax_and_unsure_answers_are_unknown() -> None:
    head = _head(unknown_below=0.9)
    features = _features(50, np.random.default_rng(2))
    x = np.stack([np.concatenate([f.color, f.embedding]) for f in features])
    p = head.probabilities(x)
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
    answers = head.predict(features)
    for (label, score), row in zip(answers, p, strict=True):
        assert score == pytest.approx(row.max(), abs=1e-3)
        assert (label == UNKNOWN) == (row.max() < 0.9)
    assert {label for label, _ in answers} - {UNKNOWN} <= set(head.labels)


def test_fit_temperature_recovers_the_temperature_of_simulated_overconfident_logits() -> None:
    rng = np.random.default_rng(3)
    true_logits = rng.normal(scale=2.0, size=(4000, 5))
    p = np.exp(true_logits) / np.exp(true_logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(5, p=row) for row in p])
    fitted = fit_temperature(true_logits * 3.0, y)  # a model three times too sure
    assert fitted == pytest.approx(3.0, rel=0.15)


def test_expected_calibration_error() -> None:
    assert expected_calibration_error(np.full(10, 0.95), np.ones(10, bool)) == pytest.approx(0.05)
    assert expected_calibration_error(np.array([0.55] * 4 + [0.95] * 6), np.array([1, 0, 1, 0] + [1] * 6, bool)) \
        == pytest.approx(0.4 * 0.05 + 0.6 * 0.05)
    assert expected_calibration_error(np.array([]), np.array([], bool)) == 0.0


def test_the_unknown_threshold_reaches_the_target_without_giving_up_coverage() -> None:
    labels = ("black", "white", UNKNOWN)
    # 100 nameable crops: the 70 scored 0.9 are right, the 30 scored 0.5 are wrong.
    p = np.array([[0.9, 0.05, 0.05]] * 70 + [[0.5, 0.3, 0.2]] * 30)
    y = np.array([0] * 70 + [1] * 30)
    threshold = choose_unknown_below(p, y, labels, "color")
    assert threshold <= 0.5  # answering only the sure 70 would drop coverage under 0.8: all 100 stay answered
    p2 = np.array([[0.9, 0.05, 0.05]] * 90 + [[0.5, 0.3, 0.2]] * 10)
    y2 = np.array([0] * 80 + [1] * 10 + [1] * 10)  # 80 of the sure 90 right, the unsure 10 wrong
    assert 0.5 < choose_unknown_below(p2, y2, labels, "color") <= 0.9
    assert choose_unknown_below(p2, y2, labels, "bag") == 0.0  # yes/no fields are always answered


def test_outer_folds_hold_out_whole_groups_of_one_set_at_a_time() -> None:
    sets = np.array(["cctv"] * 6 + ["reid"] * 14)
    groups = np.array([f"cctv:v{i % 3}" for i in range(6)] + [f"reid:id{i // 2}" for i in range(14)])
    folds = outer_folds(sets, groups)
    assert [s for s, _ in folds].count("cctv") == 3 and [s for s, _ in folds].count("reid") == 5
    for set_name, held in folds:
        assert set(sets[held]) == {set_name}
        assert not set(groups[held]) & set(groups[~held])  # a group is never split between train and test
    reid_held = np.zeros(len(sets), int)
    for set_name, held in folds:
        if set_name == "reid":
            reid_held += held
    assert (reid_held[sets == "reid"] == 1).all()  # every identity held out exactly once


def test_inner_folds_split_each_set_on_its_own_so_every_fold_trains_on_every_set() -> None:
    """Two big CCTV videos beside many small identities: each inner fold holds part of each set out, never a whole
    set, and a set of one group always trains."""
    sets = np.array(["cctv"] * 400 + ["reid"] * 60 + ["one"] * 5)
    groups = np.array(["v1"] * 200 + ["v2"] * 200 + [f"id{i // 2}" for i in range(60)] + ["g"] * 5)
    fold = inner_folds(sets, groups)
    assert set(fold[sets == "one"].tolist()) == {-1}
    for k in range(int(fold.max()) + 1):
        trains = fold != k
        assert trains[sets == "reid"].any() and trains[sets == "cctv"].any() and trains[sets == "one"].all()
        assert not set(groups[fold == k].tolist()) & set(groups[trains].tolist())


def test_region_features_describe_colour_patches() -> None:
    grey = np.zeros((4, 4, 3), np.float32)
    grey[..., 0] = 50.0
    red = grey.copy()
    red[..., 1], red[..., 2] = 40.0, 20.0
    g, r = region_features(grey, 50.0), region_features(red, 50.0)
    assert g.shape == r.shape == (REGION_DIM,)
    assert g[-1] == 0.0 and r[-1] == 1.0  # the hued share
    assert region_features(np.zeros((0, 3), np.float32), 50.0).sum() == 0.0
    crop = np.full((64, 32, 3), (40, 40, 200), np.uint8)
    for kind in ("vehicle", "person"):
        assert color_features(crop, kind, 50.0).shape == (2 * REGION_DIM,)


def test_head_answers_write_labels_scores_and_yes_no_fields() -> None:
    vehicle = VehicleAttributes(plate="皖AY766D", vehicle_color="blue", vehicle_color_score=0.9)
    apply_head_answer(vehicle, "color", ("silver", 0.62))
    apply_head_answer(vehicle, "type", ("car", 0.97))
    assert (vehicle.vehicle_color, vehicle.vehicle_color_score, vehicle.vehicle_type) == ("silver", 0.62, "car")
    assert vehicle.plate == "皖AY766D"
    person = PersonAttributes(bag=True)
    apply_head_answer(person, "bag", ("no", 0.8))
    apply_head_answer(person, "hat", (BINARY_LABELS[1], 0.7))
    apply_head_answer(person, "upper_color", (UNKNOWN, 0.3))
    assert (person.bag, person.bag_score, person.hat, person.hat_score) == (False, 0.8, True, 0.7)
    assert (person.upper_color, person.upper_color_score) == (UNKNOWN, 0.3)


def test_labels_are_read_with_their_groups_and_bad_files_are_refused(tmp_path: Path) -> None:
    labels = tmp_path / "labels.tsv"
    labels.write_text("file\tcolor\ttype\tconfidence\n"
                      "crops/car/adit_1_a.jpg\twhite\tcar\thigh\n"
                      "crops/car/pagi_2_b.jpg\t\tvan\thigh\n"
                      "crops/bus/adit_3_c.jpg\tother\t\tlow\n", encoding="utf-8")
    rows = read_rows([LabelledSet(tmp_path, labels, "prefix")], "vehicle")
    assert rows.groups == [f"{tmp_path.name}/labels.tsv:adit", f"{tmp_path.name}/labels.tsv:pagi"]
    assert rows.labels == {"color": ["white", ""], "type": ["car", "car"]}  # van is learned as car; other skipped
    assert read_rows([LabelledSet(tmp_path, labels, "folder")], "vehicle").groups[0].endswith(":car")
    with pytest.raises(InputError, match="does not exist"):
        read_rows([LabelledSet(tmp_path, tmp_path / "none.tsv")], "vehicle")
    (tmp_path / "wrong.tsv").write_text("file\tshape\nx.jpg\tround\n", encoding="utf-8")
    with pytest.raises(InputError, match="needs a file column"):
        read_rows([LabelledSet(tmp_path, tmp_path / "wrong.tsv")], "vehicle")


def _cctv_sample(eval_dir: Path, out: Path, per: int) -> Path:
    """A label file of `per` CCTV crops per video and type: small real training data (few have a colour)."""
    with (eval_dir / "traffic_cctv" / "attributes.tsv").open(encoding="utf-8") as fh:
        table = list(csv.DictReader(fh, delimiter="\t"))
    picked: dict[tuple[str, str], list[dict[str, str]]] = {}
    for row in table:
        key = (Path(row["file"]).name.split("_")[0], row["type"])
        if len(picked.setdefault(key, [])) < per:
            picked[key].append(row)
    with out.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, ["file", "color", "type", "confidence"], delimiter="\t", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(r for rows in picked.values() for r in rows)
    return out


@pytest.mark.models
def test_heads_trained_on_real_crops_score_held_out_videos_and_feed_the_pipeline(pipeline, eval_dir: Path,
                                                                                 tmp_path: Path) -> None:
    """20 CCTV crops per video and type, trained on two videos and measured on the third, with the real models."""
    root = eval_dir / "traffic_cctv"
    labels = _cctv_sample(eval_dir, tmp_path / "labels.tsv", 20)
    rows = read_rows([LabelledSet(root, labels, "prefix")], "vehicle")
    assert len({g for g in rows.groups}) == 3
    features = extract(rows, lambda crops: pipeline.crop_features(crops, "vehicle"), cache=tmp_path / "cache",
                       key=pipeline.embedding_version("vehicle"))
    assert len(features) == len(rows.files) and list(tmp_path.joinpath("cache").glob("*.npz"))
    heads, report = train_heads(rows, features, "vehicle", pipeline.embedding_version("vehicle"), "CC BY 4.0",
                                [{"labels": str(labels)}])
    held = report["fields"]["type"]["held_out"][f"{tmp_path.name}/labels.tsv"]
    assert held["folds"] == 3 and held["n"] == len(rows.files)
    assert held["accuracy"] > 0.6  # three types, 40 crops a type to learn from, a video never seen
    assert 0 <= held["ece"] <= 1 and held["accuracy_by_score"]
    path = tmp_path / "heads.npz"
    heads.save(path)
    loaded = pipeline.checked_heads(HeadSet.load(path), "vehicle")
    crop = features[0]
    (label, score), = loaded.fields["type"].predict([crop])
    assert label in ("car", "truck", "bus") and 0 < score <= 1
    assert json.loads(json.dumps(loaded.meta["trained_on"])) == [{"labels": str(labels)}]


def test_reattribute_gives_stored_sightings_todays_answers_batch_by_batch(fake_system, eval_dir: Path) -> None:  # noqa: ANN001
    """The use-case over a real store and blob store (the fake pipeline stands in for the models): every stale
    sighting is redescribed from its crop, its plate kept, the version recorded; a rerun finds nothing."""
    from datetime import datetime, timedelta, timezone

    from models.records import Camera
    from services.ingest import PhotoJob
    from tests.fakes import FAKE_HEADS

    fake_system.store.upsert_cameras([Camera("cam1", "Camera 1", 121.30, 31.20)])
    folders = sorted(d for d in (eval_dir / "reid" / "vehicle").iterdir() if d.is_dir())[:3]
    t0 = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)
    report = fake_system.ingestor.ingest([PhotoJob(str(d / "cam1_01.jpg"), (d / "cam1_01.jpg").read_bytes(), "cam1",
                                                   t0 + timedelta(minutes=i)) for i, d in enumerate(folders)])
    sightings = [s for r in report.results for s in r.sightings]
    assert len(sightings) == 3 and all("attributes" not in s.model_versions for s in sightings)
    fake_system.blobs.delete(sightings[2].crop)  # purged by hand: nothing to describe it from

    done = fake_system.ingestor.reattribute("vehicle", batch=2)
    assert (done.stale, done.replaced, done.without_crop, done.heads) == (3, 2, 1, FAKE_HEADS)
    for s in fake_system.store.get_sightings([s.id for s in sightings[:2]]):
        assert s.model_versions["attributes"] == FAKE_HEADS and s.attributes.vehicle_color_score == 0.5
    again = fake_system.ingestor.reattribute("vehicle")
    assert (again.stale, again.replaced) == (1, 0)  # only the one without a crop is left
    for kind, batch in (("face", 8), ("vehicle", 0)):
        with pytest.raises(InputError):
            fake_system.ingestor.reattribute(kind, batch)


@pytest.mark.models
def test_train_use_and_measure_heads_from_the_command_line(tmp_path: Path, eval_dir: Path, model_dir: Path) -> None:
    """What a deployment does with its own labels: train (held-out figures printed, a versioned file written, not
    yet active), measure it with `eval attributes --heads`, make it active; bad input is a message and exit 2."""
    import shutil

    from tests.test_cli_and_eval import sightline

    models = tmp_path / "models"
    shutil.copytree(model_dir, models, ignore=shutil.ignore_patterns("heads"))
    labels = _cctv_sample(eval_dir, tmp_path / "labels.tsv", 8)
    trained = sightline("train", "attributes", str(eval_dir / "traffic_cctv"), "--labels", str(labels),
                        "--kind", "vehicle", "--group", "prefix", "--licence", "CC BY 4.0", models=models)
    assert trained.returncode == 0, trained.stderr
    report = json.loads(trained.stdout)
    held = report["fields"]["type"]["held_out"][f"{tmp_path.name}/labels.tsv"]
    assert held["folds"] == 3 and set(held) >= {"accuracy", "coverage", "accuracy_by_score", "ece", "fold_worst"}
    head = Path(report["file"])
    assert head.parent == models / "heads" and head.name == f"{report['version']}.npz"
    assert not active_head_path(models, "vehicle").exists()  # trained is not switched on

    measured = sightline("eval", "attributes", str(eval_dir / "traffic_cctv"), "--labels", str(labels),
                         "--kind", "vehicle", "--heads", str(head), models=models)
    assert measured.returncode == 0, measured.stderr
    result = json.loads(measured.stdout)
    assert result["answered_by"] == report["version"] and result["fields"]["type"]["n"] == 72
    assert "rules" in result and result["fields"]["type"]["ece"] is not None

    used = sightline("models", "use-heads", str(head), models=models)
    assert used.returncode == 0 and report["version"] in used.stdout
    assert HeadSet.load(active_head_path(models, "vehicle")).version == report["version"]
    listed = sightline("models", "list", models=models)
    assert f"{report['version']}: CC BY 4.0" in listed.stdout

    for bad in (("--labels", str(tmp_path / "none.tsv")), ("--labels", str(labels), "--group", "video")):
        refused = sightline("train", "attributes", str(eval_dir), *bad, "--kind", "vehicle", models=models)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK not really")
    refused = sightline("models", "use-heads", str(broken), models=models)
    assert refused.returncode == 2 and "not an attribute head file" in refused.stderr


def test_pull_installs_the_shipped_heads_and_replaces_only_unusable_ones(tmp_path: Path) -> None:
    from models.registry import SHIPPED_HEADS, install_shipped_heads

    shipped = sorted(p.name for p in SHIPPED_HEADS.glob("*-attributes.npz"))
    assert shipped == ["person-attributes.npz", "vehicle-attributes.npz"]
    assert install_shipped_heads(tmp_path) == [f"heads/{name}" for name in shipped]
    vehicle = active_head_path(tmp_path, "vehicle")
    assert vehicle.read_bytes() == (SHIPPED_HEADS / vehicle.name).read_bytes()
    own = HeadSet("vehicle", {"color": _head()}, "emb-1", {"features": FEATURES, "licence": "ours"})
    own.save(vehicle)  # a deployment's retrained heads: kept
    install_shipped_heads(tmp_path)
    assert HeadSet.load(vehicle).licence == "ours"
    HeadSet("vehicle", {"color": _head()}, "emb-1", {"features": FEATURES - 1}).save(vehicle)  # unusable: set aside
    install_shipped_heads(tmp_path)
    assert vehicle.read_bytes() == (SHIPPED_HEADS / vehicle.name).read_bytes()
    assert (vehicle.parent / "unusable-vehicle-attributes.npz").is_file()
