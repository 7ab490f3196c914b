"""The inference runtime and the detectors compiled by it, checked against the reference each replaced:
OpenCV's own YuNet decoding, and the same network compiled with a dynamic batch."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.detectors import FaceDetector, ObjectDetector
from models.plates import PpOcrReader
from models.registry import model_path
from models.runtime import OpenVinoModel


@pytest.mark.models
def test_yunet_on_openvino_finds_what_opencv_finds(model_dir: Path, eval_dir: Path) -> None:
    path = model_path("yunet_s_dynamic.onnx", model_dir)
    ours = FaceDetector(path)
    reference = cv2.FaceDetectorYN.create(str(path), "", (320, 320), 0.8, 0.3, 5000)
    images = sorted((eval_dir / "faces").rglob("*.jpg"))[:12] + sorted((eval_dir / "plates" / "full").glob("*.jpg"))[:3]
    found = 0
    for file in images:
        frame = cv2.imread(str(file))
        h, w = frame.shape[:2]
        scale = min(1.0, ours.max_side / max(h, w))
        small = cv2.resize(frame, (int(w * scale), int(h * scale))) if scale < 1 else frame
        reference.setInputSize((small.shape[1], small.shape[0]))
        rows = reference.detect(small)[1]
        rows = [] if rows is None else sorted(rows, key=lambda r: -r[14])
        faces = sorted(ours.detect(frame), key=lambda f: -f.score)
        assert len(faces) == len(rows), file.name
        for face, row in zip(faces, rows, strict=True):
            x, y, fw, fh = row[:4] / scale
            want = [max(0.0, x), max(0.0, y), min(float(w), x + fw), min(float(h), y + fh)]
            assert np.allclose(face.bbox.as_list(), want, atol=1.0) and abs(face.score - row[14]) < 1e-3
            assert np.allclose(face.landmarks, row[4:14].reshape(5, 2) / scale, atol=1.0)
        found += len(faces)
    assert found >= 12  # every eval face photo shows at least one face


@pytest.mark.models
def test_static_batches_answer_what_the_dynamic_batch_answers(model_dir: Path, eval_dir: Path) -> None:
    """YOLOX runs as chunks of statically compiled batch sizes (4, then 1): five frames go as 4 + 1, in order."""
    frames = [cv2.imread(str(p)) for p in sorted((eval_dir / "plates" / "full").glob("*.jpg"))[:5]]
    path = model_path("yolox_nano.onnx", model_dir)
    static = ObjectDetector(path)
    assert sorted(static.model.by_batch) == [1, 4]
    dynamic = ObjectDetector(path)
    dynamic.model = OpenVinoModel(path)
    for got, want in zip(static.detect(frames), dynamic.detect(frames), strict=True):
        assert [d.label for d in got] == [d.label for d in want]
        assert np.allclose([d.bbox.as_list() for d in got], [d.bbox.as_list() for d in want], atol=3.0)
    (single,) = static.detect(frames[:1])  # a batch below 4 runs too
    assert single


@pytest.mark.models
def test_a_shape_with_a_dynamic_batch_runs_a_batch_in_one_call(eval_dir: Path) -> None:
    """PP-OCR is given its input shape with a dynamic batch: a batch of plates is one inference, not one a plate,
    and reads what the plates read one by one."""
    reader = PpOcrReader()
    plates = [cv2.imread(str(p)) for p in sorted((eval_dir / "plates" / "crops").glob("*.jpg"))[:5]]
    calls = []
    run = reader.model._run
    reader.model._run = lambda batch, *rest: calls.append(len(batch)) or run(batch, *rest)  # type: ignore[method-assign]
    together = reader.read(plates)
    assert calls == [5]
    assert [r.text for r in together] == [reader.read([p])[0].text for p in plates]


@pytest.mark.models
def test_mobilenet_with_int8_pointwise_convolutions_gives_the_original_vectors(model_dir: Path, eval_dir: Path) -> None:
    """The rewrite only regroups the sums (the zero point's share apart): the same vectors on real vehicle crops,
    and OpenVINO now runs those convolutions in int8 (they ran in float32)."""
    from models.embedders import vehicle_embedder
    from models.imageops import blob
    from models.runtime import int8_pointwise_convolutions

    path = model_path("mobilenet_v1_embedding.tflite", model_dir)
    original = OpenVinoModel(path)
    rewritten_count: list[int] = []
    rewritten = OpenVinoModel(path, rewrite=lambda m: rewritten_count.append(int8_pointwise_convolutions(m)),
                              precision="f32")
    assert rewritten_count == [13]  # every 1×1 convolution of MobileNet v1
    crops = [cv2.imread(str(p)) for p in sorted((eval_dir / "reid" / "vehicle").rglob("*.jpg"))[:24]]
    batch = blob(crops, 224, 224, rgb=True, nchw=False, dtype=np.uint8)

    def vectors(model: OpenVinoModel) -> np.ndarray:
        out = next(iter(model.infer(batch).values())).reshape(len(crops), -1).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    assert (vectors(original) * vectors(rewritten)).sum(axis=1).min() >= 0.999

    def int8_convolutions(model: OpenVinoModel) -> int:
        infos = [op.get_rt_info() for op in model.compiled.get_runtime_model().get_ops()]
        return sum(i["layerType"].astype(str) == "Convolution" and i["runtimePrecision"].astype(str) in ("u8", "i8")
                   for i in infos)

    assert int8_convolutions(original) <= 1 and int8_convolutions(rewritten) >= 2 * 13  # each split in two, int8
    assert vehicle_embedder(model_dir).parts[0].version == "mobilenet_v1_embedding"  # the same vectors, the same name


@pytest.mark.models
def test_batches_at_once_give_what_each_gives_alone(pipeline, eval_dir: Path) -> None:  # noqa: ANN001
    """Ingest runs batches through the models together: each inference must hold a request of its own, or one
    batch's outputs (or their count) would come back to the other."""
    photos = sorted((eval_dir / "plates" / "full").glob("*.jpg"))
    batches = [[cv2.imread(str(p)) for p in photos[i : i + n]] for i, n in ((0, 4), (4, 3), (7, 2), (9, 4))]

    def summary(observations: list[list]) -> list:  # noqa: ANN001
        return [[(o.kind, o.bbox.as_list(), getattr(o.attributes, "plate", None), o.vector) for o in frame]
                for frame in observations]

    alone = [summary(pipeline.process(b)) for b in batches]
    with ThreadPoolExecutor(max_workers=3) as pool:
        together = list(pool.map(lambda b: summary(pipeline.process(b)), batches * 3))
    assert sum(len(frame) for got in alone for frame in got) > 10
    for got, want in zip(together, alone * 3, strict=True):
        assert [[o[:3] for o in frame] for frame in got] == [[o[:3] for o in frame] for frame in want]
        for frame_got, frame_want in zip(got, want, strict=True):
            for o_got, o_want in zip(frame_got, frame_want, strict=True):
                assert (o_got[3] is None) == (o_want[3] is None)
                if o_got[3] is not None:
                    assert float(np.dot(o_got[3], o_want[3])) > 0.999


@pytest.mark.models
def test_a_free_sides_model_compiles_each_shape_once_and_keeps_the_latest(model_dir: Path, eval_dir: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The plate detector runs a camera's frames at their own aspect (`tight`), compiled once for that shape; past
    MAX_SHAPES the least recently used shape is dropped, and compiled again if it comes back; the square the model
    was loaded with is always kept."""
    from models import runtime
    from models.plates import PlateDetector

    detector = PlateDetector(model_dir)
    model = detector.small
    photos = [cv2.imread(str(p)) for p in sorted((eval_dir / "plates" / "full").glob("*.jpg"))[:4]]
    assert all(detector.detect(photos, tight=True))  # a plate in each
    assert list(model._by_shape) == [(4, 3, 320, 256)]  # the photos' own shape, compiled when first seen
    assert sorted(model._pinned) == [(1, 3, 320, 320), (4, 3, 320, 320)]  # the square, compiled at load

    monkeypatch.setattr(runtime, "MAX_SHAPES", 3)
    frame = photos[0]
    (before,) = detector.detect([frame], small_only=True, tight=True)
    for width in (400, 300):  # 320 × 256 (the shape just compiled at batch 1, moved last), then a new one, 192
        detector.detect([cv2.resize(frame, (width, 600))], small_only=True, tight=True)
    assert list(model._by_shape) == [(4, 3, 320, 256), (1, 3, 320, 256), (1, 3, 320, 192)]
    detector.detect([cv2.resize(frame, (200, 600))], small_only=True, tight=True)  # a fourth: the oldest goes
    assert list(model._by_shape) == [(1, 3, 320, 256), (1, 3, 320, 192), (1, 3, 320, 128)]
    detector.detect([frame], small_only=True)  # the square is never dropped, whatever came since
    assert sorted(model._pinned) == [(1, 3, 320, 320), (4, 3, 320, 320)] and len(model._by_shape) == 3
    held = model._by_shape[(1, 3, 320, 256)]
    for width in (300, 200, 100):  # the photos' shape is pushed out, and comes back compiled again
        detector.detect([cv2.resize(frame, (width, 600))], small_only=True, tight=True)
    assert (1, 3, 320, 256) not in model._by_shape
    # requests are kept only for the compiled models still held; a call that held a dropped one runs, keeping nothing
    assert set(model._idle) == {*model._pinned.values(), *model._by_shape.values(), model.compiled}
    assert model._run(np.zeros((1, 3, 320, 256), np.float32), None, held) and held not in model._idle
    (again,) = detector.detect([frame], small_only=True, tight=True)
    assert [(d.bbox, d.score) for d in again] == [(d.bbox, d.score) for d in before]
