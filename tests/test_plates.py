"""Plate stack: pre/post-processing units, and the real models on the real eval images."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models.lprnet import BLANK, CHARS, LPRNet, ctc_greedy, preprocess
from models.plate_text import is_valid_plate, normalize_plate
from models.plates import (
    INTEL_TOKENS,
    Letterbox,
    PlateReader,
    PlateReading,
    RawReading,
    align,
    constrained_ctc,
    fuse,
    heard,
    intel_tokens_to_text,
    join_double_row,
    letterbox,
    nms,
    pad_corners,
    quick_readers_agree,
    split_rows,
)
from models.records import BBox, InputError
from services.bench.eval_plates import char_accuracy, cross_validate_fusion, evaluate_plates, looks_like_crop

REPO = Path(__file__).resolve().parents[1]
EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval" / "plates"
MODEL_DIR = Path(os.environ.get("SIGHTLINE_MODEL_DIR", REPO / "model_store"))


# --- units -------------------------------------------------------------------------------------


def logits_for(ids: list[int], steps: int = 18) -> np.ndarray:
    """(1, classes, steps) logits whose argmax per step is `ids` padded with blanks."""
    seq = ids + [BLANK] * (steps - len(ids))
    out = np.full((1, len(CHARS), steps), -5.0, np.float32)
    out[0, seq, np.arange(steps)] = 5.0
    return out


def test_ctc_greedy_collapses_repeats_and_drops_blanks():
    k = CHARS.index
    # 皖 皖 - A 1 1 - 1 6  ->  皖A116 : a run collapses, a blank separates two real 1s
    ids = [k("皖"), k("皖"), BLANK, k("A"), k("1"), k("1"), BLANK, k("1"), k("6")]
    (labels, confs), = ctc_greedy(logits_for(ids))
    assert "".join(CHARS[i] for i in labels) == "皖A116"
    assert len(confs) == len(labels) and all(0.9 < c <= 1.0 for c in confs)


def test_ctc_greedy_all_blank_is_empty():
    (labels, confs), = ctc_greedy(logits_for([]))
    assert labels == [] and confs == []


def test_class_list():
    assert len(CHARS) == 68 and CHARS[0] == "京" and CHARS[30] == "新" and CHARS[31] == "0"
    assert CHARS[-3:] == ("I", "O", "-")


def test_lprnet_shapes_and_batch_independence():
    net = LPRNet().eval()
    x = torch.randn(3, 3, 24, 94)
    with torch.inference_mode():
        batched = net(x)
        alone = net(x[1:2])
    assert batched.shape == (3, 68, 18)
    torch.testing.assert_close(batched[1:2], alone, rtol=1e-4, atol=1e-4)  # a batch reads as its crops alone


def test_nms_keeps_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 9]], np.float32)
    scores = np.array([0.8, 0.9, 0.5, 0.7], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.99).tolist() == [1, 0, 3, 2]
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).tolist() == []


@pytest.mark.parametrize(
    "text",
    ["京A12345", "皖AD11166", "皖A12345D", "粤B1234学", "沪A1234警", "苏E1234挂", "皖 A·12345", "京a12345",
     "皖1149885"],  # the last a farm vehicle's double-row plate: province and two digits over five digits
)
def test_valid_plates(text):
    assert is_valid_plate(text)


@pytest.mark.parametrize(
    "text",
    ["", "A12345", "京112345", "京A1234", "京A123456", "京AI2345", "京AO2345", "皖AX12345", "合肥城泊",
     "京A12D345", "皖114988", "皖11498851"],
)
def test_invalid_plates(text):
    assert not is_valid_plate(text)


def test_normalize_plate():
    assert normalize_plate(" 皖a·12345 ") == "皖A12345"
    assert normalize_plate("京Ａ-１２３４５") == "京A12345"


@pytest.mark.parametrize("shape", [(1160, 720), (240, 1000), (320, 320), (24, 94)])
def test_letterbox_round_trip(shape):
    img = np.full((*shape, 3), 200, np.uint8)
    boxed, box = letterbox(img, 320)
    assert boxed.shape == (320, 320, 3)
    points = np.array([[0, 0], [shape[1] - 1, shape[0] - 1], [shape[1] / 2, shape[0] / 3]], np.float32)
    np.testing.assert_allclose(box.to_source(box.to_input(points)), points, atol=1e-3)
    # the image sits centred: the padding on both sides differs by at most a pixel
    ys, xs = np.nonzero(boxed[..., 0])
    assert abs(ys.min() - (319 - ys.max())) <= 1 and abs(xs.min() - (319 - xs.max())) <= 1
    np.testing.assert_allclose(box.to_input(np.array([[0.0, 0.0]], np.float32)), [[xs.min(), ys.min()]], atol=1)


def test_letterbox_maps_detector_points_back():
    box = Letterbox(scale=0.25, left=70, top=0)
    np.testing.assert_allclose(box.to_source(np.array([[70.0, 0.0], [170.0, 100.0]])), [[0, 0], [400, 400]])


def test_pad_corners_moves_outwards_along_the_plate():
    corners = np.array([[10, 10], [110, 10], [110, 40], [10, 40]], np.float32)
    padded = pad_corners(corners, 0.1, 0.2)
    np.testing.assert_allclose(padded, [[0, 4], [120, 4], [120, 46], [0, 46]])


def test_double_row_split_shape():
    plate = np.zeros((120, 240, 3), np.uint8)
    joined = join_double_row(plate)
    bottom_h = 120 - int(120 * 0.33)
    assert joined.shape[0] == bottom_h
    assert joined.shape[1] > 240  # the upper row is laid before the full-width lower row
    assert joined.shape[1] / joined.shape[0] > 2.5  # it now reads as one long row


def test_intel_token_mapping():
    assert len(INTEL_TOKENS) == 70 and INTEL_TOKENS[10] == "<Anhui>" and INTEL_TOKENS[43] == "<police>"
    index = {t: i for i, t in enumerate(INTEL_TOKENS)}
    seq = [index["<Beijing>"], index["A"], 1, 2, 3, 4, 5, -1, 7, 7]
    assert intel_tokens_to_text(np.array(seq, np.float32)) == "京A12345"
    assert intel_tokens_to_text(np.array([index["<Anhui>"], index["<police>"], -1])) == "皖警"
    assert intel_tokens_to_text(np.array([-1, 3])) == ""


def test_align_prefers_a_trailing_gap():
    # an extra trailing character is skipped, the shared ones line up
    assert align("皖DFX886", "皖DFX8861") == [0, 1, 2, 3, 4, 5, 6]
    assert align("皖A12345", "皖A1345") == [0, 1, 2, None, 3, 4, 5]


def test_fusion_votes_characters_and_repairs_the_province():
    ppocr = RawReading("ppocr", "AG6512", [0.9, 0.9, 0.5, 0.9, 0.9, 0.9])  # lost province, unsure of one char
    lpr = RawReading("lprnet", "皖AGG512", [0.9] * 7)
    intel = RawReading("intel", "皖AGG512", [0.9] * 7)
    assert fuse([ppocr, lpr, intel], "blue").text == "皖AGG512"
    sure = RawReading("ppocr", "皖AG6512", [0.99] * 7)
    assert fuse([sure, RawReading("intel", "皖AGG512", [0.9] * 7)], "blue").text == "皖AG6512"
    assert fuse([RawReading("ppocr", "合肥城泊", [0.9] * 4)]).score < 0.5
    assert fuse([]).text is None


def test_fusion_uses_the_colour_for_the_length():
    ppocr = RawReading("ppocr", "皖DFX8861", [0.8] * 8)
    intel = RawReading("intel", "皖DFX886", [0.9] * 7)
    assert fuse([ppocr, intel], "blue").text == "皖DFX886"
    assert fuse([ppocr, intel], "green").text == "皖DFX8861"


def test_fusion_cross_validation_refits_on_training_parts_and_scores_the_rest():
    """Readings scripted so the answer is known: LPRNet and Intel's reader disagree on every plate (so PP-OCR is
    asked), PP-OCR is surely wrong on the last character and LPRNet right. The deployed bar and weights trust
    PP-OCR (none right in sample); every fold learns from its 4/5 never to take PP-OCR alone and that LPRNet is
    the one to trust (all 20 held out)."""
    def reading(raw: list[RawReading]) -> PlateReading:
        return PlateReading(None, 0.0, "blue", 1, [], BBox(0, 0, 1, 1), 1.0, {r.reader: r.text for r in raw}, raw)

    labels, every = [], []
    for i in range(20):
        truth = f"皖A{i:05d}"
        every.append(reading([RawReading("ppocr", truth[:-1] + "X", [0.99] * 7),
                              RawReading("lprnet", truth, [0.8] * 7),
                              RawReading("intel", truth[:-1] + "Y", [0.9] * 7)]))
        labels.append(truth)
    result = cross_validate_fusion(labels, every)
    assert result["images"] == 20 and result["folds"] == 5
    assert result["held_out"] == 1.0 and result["in_sample"] == 0.0
    assert result["sure_chosen_per_fold"] == {"1.01": 5}


def test_ppocr_is_asked_only_when_the_quick_readers_disagree_and_alone_when_sure():
    agree = [RawReading("lprnet", "皖A12345", [0.7] * 7), RawReading("intel", "皖A12345", [0.9] * 7)]
    assert quick_readers_agree(agree, "blue")
    assert not quick_readers_agree(agree, "green")  # a green plate has 8 characters: one was lost
    assert not quick_readers_agree([agree[0], RawReading("intel", "皖A12346", [0.9] * 7)], "blue")
    assert not quick_readers_agree([RawReading(r.reader, "A12345", r.char_conf) for r in agree], "blue")  # no province
    assert not quick_readers_agree(agree[:1], "blue")
    assert heard(agree, "blue") == agree
    sure, unsure = RawReading("ppocr", "皖A12346", [0.95] * 7), RawReading("ppocr", "皖A12346", [0.95] * 6 + [0.5])
    disputed = [agree[0], RawReading("intel", "皖A12346", [0.9] * 7)]
    assert heard([sure, *disputed], "blue") == [sure]
    assert heard([unsure, *disputed], "blue") == [unsure, *disputed]


def test_char_accuracy():
    assert char_accuracy("皖A12345", "皖A12345") == 1.0
    assert char_accuracy("皖AD11166", "皖AD1116") == pytest.approx(1 - 1 / 8)
    assert char_accuracy("皖A12345", "") == 0.0


def test_crop_or_photo():
    assert looks_like_crop(np.zeros((24, 94, 3), np.uint8))
    assert not looks_like_crop(np.zeros((1160, 720, 3), np.uint8))


def test_eval_input_errors(tmp_path):
    with pytest.raises(InputError, match="labels.tsv"):
        evaluate_plates(tmp_path, reader=None)  # type: ignore[arg-type]
    (tmp_path / "labels.tsv").write_text("file\tplate\nnope.jpg\t京A12345\n", encoding="utf-8")
    with pytest.raises(InputError, match="nope.jpg"):
        evaluate_plates(tmp_path, reader=None)  # type: ignore[arg-type]


def _line(steps: list[dict[int, float]], classes: int = 12) -> np.ndarray:
    """A CTC output (steps × classes): each step's given class probabilities, the rest of 1 on the blank (0)."""
    probs = np.zeros((len(steps), classes))
    for t, given in enumerate(steps):
        for c, p in given.items():
            probs[t, c] = p
        probs[t, 0] += 1 - probs[t].sum()
    return probs


def test_constrained_ctc_holds_each_character_to_its_template():
    """Classes 1-3 stand for provinces, 4-6 letters, 7-9 digits. A province the line half-missed is still found in
    its place; a character whose best class is not allowed there takes the best allowed one; a repeated digit read
    as two runs stays two."""
    provinces, letters, digits = np.array([1, 2, 3]), np.array([4, 5, 6]), np.array([7, 8, 9])
    line = _line([{}, {2: 0.3, 10: 0.5}, {}, {5: 0.6, 8: 0.3}, {}])  # province weak, a stray class beside it
    classes, confs, _ = constrained_ctc(line, [provinces, letters])
    assert classes == [2, 5] and confs == [0.3, 0.6]
    farm = _line([{1: 0.9}, {}, {7: 0.8}, {}, {7: 0.9}, {}])
    as_farm = constrained_ctc(farm, [provinces, digits, digits])
    as_letter = constrained_ctc(farm, [provinces, np.concatenate([letters, digits])])
    assert as_farm[0] == [1, 7, 7] and as_farm[2] > as_letter[2]  # the template that explains the line wins
    assert constrained_ctc(_line([{}]), [provinces, letters, digits])[0] == []  # too short a line for 3 characters


def test_double_row_rows_follow_the_standards_proportions():
    plate = np.zeros((220, 440, 3), np.uint8)
    upper, lower = split_rows(plate)
    assert upper.shape[:2] == (96, 335) and lower.shape[:2] == (141, 440)  # the rows overlap at the 15 mm gap


# --- the real models on real images ----------------------------------------------------------------


@pytest.fixture(scope="module")
def reader() -> PlateReader:
    if not (MODEL_DIR / "lprnet.pth").exists() or not EVAL.exists():
        pytest.skip("model weights or eval data are not here (sightline models pull)")
    return PlateReader(MODEL_DIR)


@pytest.mark.models
def test_lprnet_loads_the_published_weights_strictly(reader):
    state = torch.load(MODEL_DIR / "lprnet.pth", map_location="cpu", weights_only=True)
    LPRNet().load_state_dict(state, strict=True)


@pytest.mark.models
def test_lprnet_on_openvino_gives_the_logits_pytorch_gives(reader):
    """The network is compiled by OpenVINO for speed: on real plate crops it must answer what PyTorch answers."""
    crops = [cv2.imread(str(p)) for p in sorted((EVAL / "crops").glob("*.jpg"))[:16]]
    lprnet = reader.quick[0].net
    batch = preprocess(crops)
    with torch.inference_mode():
        expected = lprnet.net(batch).numpy()
    got = lprnet.model.infer(batch.numpy())["logits"]
    assert np.abs(got - expected).max() < 1e-3
    assert [t for t, _ in ctc_greedy(got)] == [t for t, _ in ctc_greedy(expected)]


@pytest.mark.models
def test_reads_a_known_crop(reader):
    crop = cv2.imread(str(EVAL / "crops" / "0000.jpg"))
    (reading,) = reader.read_crops([crop])
    assert reading.text == "京PL3N67"
    assert 0.0 <= reading.score <= 1.0 and reading.color == "blue"


@pytest.mark.models
def test_reads_a_known_green_photo(reader):
    frame = cv2.imread(str(EVAL / "full" / "0017.jpg"))  # an 8-character green plate with a 111 run
    (plates,) = reader.read_frames([frame])
    best = max(plates, key=lambda p: p.det_score)
    assert best.text == "皖AD11166" and best.color == "green" and best.layers == 1
    xs, ys = np.array(best.corners).T
    assert best.bbox.x1 - 2 <= xs.min() and xs.max() <= best.bbox.x2 + 2
    assert 0 <= ys.min() and ys.max() < frame.shape[0]


@pytest.mark.models
def test_a_real_double_row_plate_keeps_its_colour(reader):
    """The one real double-row plate in the eval data: a truck's yellow plate, 22 × 13 px. It is found as double-row
    and its colour is told from the plate as it looks (from the joined rows it was "green"); its text is unreadable
    at that size, to the eye too, so it is not asserted."""
    frame = cv2.imread(str(EVAL / "unlabeled" / "hyperlpr_1.jpg"))
    (plate,) = reader.read_frames([frame])[0]
    assert (plate.layers, plate.color) == (2, "yellow")


@pytest.mark.models
def test_frames_batch_with_and_without_plates(reader):
    photo = cv2.imread(str(EVAL / "full" / "0000.jpg"))
    blank = np.zeros((480, 640, 3), np.uint8)
    with_plate, without = reader.read_frames([photo, blank])
    assert [p.text for p in with_plate][:1] == ["皖AYL375"] and without == []


@pytest.mark.models
def test_crops_accuracy(reader):
    result = evaluate_plates(EVAL / "crops", reader)
    assert result["exact"] >= 0.97, result["misses"]
    assert result["readers_exact"]["fused"] >= max(result["readers_exact"][r] for r in ("ppocr", "lprnet", "intel"))


@pytest.mark.models
def test_full_photo_accuracy(reader):
    result = evaluate_plates(EVAL / "full", reader)
    assert result["exact"] >= 0.94, result["misses"]
    green_short = [m for m in result["misses"] if len(m["label"]) == 8 and len(m["read"]) < 8]
    assert not green_short
    green = result["by_type"]["new_energy_8"]  # the green plates, reported apart
    assert green["images"] == 3 and green["exact"] == 1.0 and green["colour_read"].get("green") == 3
    assert sum(t["images"] for t in result["by_type"].values()) == result["images"]


@pytest.mark.models
def test_double_row_photos_read_row_by_row(reader):
    """The six labelled double-row photos (yellow: van, motorcycle, car, two trucks; green: a farm light truck), each
    plate reported with what the detector and each reader gave."""
    result = evaluate_plates(EVAL / "double_row", reader)
    assert result["exact"] >= 5 / 6, result["misses"]
    assert result["by_layout_and_colour"]["double/yellow"]["images"] == 5
    assert result["by_layout_and_colour"]["double/green"]["images"] == 1
    assert all("ppocr_rows" in m["readers"] and m["rows_detected"] == 2 for m in result["misses"])


@pytest.mark.models
def test_ppocr_on_openvino_reads_what_rapidocr_reads(reader):
    """PP-OCR runs compiled by OpenVINO for speed: on real crops it must give rapidocr's own texts and confidences."""
    from rapidocr_onnxruntime import RapidOCR

    crops = [cv2.imread(str(p)) for p in sorted((EVAL / "crops").glob("*.jpg"))[:24]]
    ours = reader.ppocr.read(crops)
    theirs, _ = RapidOCR().text_rec([reader.ppocr._canonical(c) for c in crops], return_word_box=True)
    assert [r.text for r in ours] == [normalize_plate(text) for text, _, _ in theirs]
    for r, (text, _, extra) in zip(ours, theirs, strict=True):
        if len(r.text) == len(text):  # nothing was dropped by normalising: the confidences line up one to one
            assert np.allclose(r.char_conf, extra[4], atol=1e-3)


@pytest.mark.models
def test_the_cut_plate_detector_finds_what_the_original_graph_found(reader):
    """The detector's graph is cut at its heads and decoded in numpy (`decode_plate_heads`), so that it can run at
    any sides: on the square it was exported for, the same plates, corners and scores as the file's own decoding."""
    from models.plates import decode_detections
    from models.runtime import OpenVinoModel

    original = OpenVinoModel(MODEL_DIR / "plate_detect_y5fu_320.onnx", dynamic_batch=False)
    images = [cv2.imread(str(p)) for p in sorted((EVAL / "full").glob("*.jpg"))[:8]]
    images += [cv2.imread(str(p)) for p in sorted((EVAL.parent / "reid" / "vehicle").rglob("*.jpg"))[:12]]
    found = 0
    for image in images:
        boxed, box = letterbox(image, 320)
        batch = boxed[None, :, :, ::-1].transpose(0, 3, 1, 2).astype(np.float32) / 255
        rows = next(iter(original.infer(batch).values()))
        want = decode_detections(rows[0], box, image.shape[:2], reader.detector.conf, reader.detector.iou)
        got = reader.detector.detect([image], small_only=True)[0]
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            assert a.layers == b.layers and abs(a.score - b.score) < 1e-3
            np.testing.assert_allclose(a.corners, b.corners, atol=0.1)
        found += len(got)
    assert found >= 8


@pytest.mark.models
def test_photos_at_their_own_aspect_read_the_same_plates(reader):
    """`tight` (a camera's frames): 1160×720 photos run at 320×256 instead of 320×320 and read the same plates."""
    photos = [cv2.imread(str(p)) for p in sorted((EVAL / "full").glob("*.jpg"))]
    square, tight = reader.read_frames(photos), reader.read_frames(photos, tight=True)
    for want, got in zip(square, tight, strict=True):
        assert [p.text for p in got if p.text and is_valid_plate(p.text)] == \
            [p.text for p in want if p.text and is_valid_plate(p.text)]
        for a, b in zip(got, want, strict=False):
            np.testing.assert_allclose(a.corners, b.corners, atol=3.0)
    assert (4, 3, 320, 256) in reader.detector.small._by_shape
