"""The one inference runtime: OpenVINO on the CPU, for ONNX, IR and TFLite files.

A model is compiled once and kept; `infer` takes a batch (N, ...) and runs it in
one call when the model accepts a dynamic batch, else in chunks the model accepts.
A model given `static_batches` is compiled once per listed batch size instead, and a
batch runs as chunks of those sizes: on this CPU YOLOX-nano runs a static batch of 4
in 8.6 ms a frame against 11.7 with a dynamic batch dimension. A model given `free_sides`
(a fully convolutional detector) takes images of any height and width: it is compiled once
per input shape, on the first call with it (~0.6 s), and the `MAX_SHAPES` most recently used
are kept beside the file's own shape, which is compiled at load and always kept; a dynamic
height and width would run every call ~20 % slower.

Several threads may infer with one model at once (ingest runs two batches through the models together):
each call takes an idle infer request of its own, made on first need, so there are never more than
the calls that ran at the same time (each costs its activations: 16 photos at once through every model
added 165 MB to the process; the API's 40 worker threads, anyio's default, bound them).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops

_CORE: ov.Core | None = None
# Input shapes a `free_sides` model keeps compiled besides its file's own (a camera's frames share one): each costs
# memory, ~20 MB for the 320 plate detector at batch 4 (~40 MB for YOLOX).
MAX_SHAPES = 8
_CORE_LOCK = threading.Lock()


def core() -> ov.Core:
    global _CORE
    with _CORE_LOCK:
        if _CORE is None:
            _CORE = ov.Core()
        return _CORE


class OpenVinoModel:
    """A compiled model with batched inference; one instance per model file, reused for every call."""

    def __init__(
        self,
        source: Path | str | ov.Model,
        dynamic_batch: bool = True,
        input_shape: list[int] | None = None,
        main_input: str | None = None,
        precision: str | None = None,
        static_batches: tuple[int, ...] | None = None,
        rewrite: Callable[[ov.Model], object] | None = None,
        free_sides: bool = False,
    ):
        # a model file, or a graph built in memory (LPRNet, converted from its PyTorch weights)
        model = source if isinstance(source, ov.Model) else core().read_model(str(source))
        if rewrite is not None:  # a graph change that keeps the model's answers (e.g. int8_pointwise_convolutions)
            rewrite(model)
        self.input_names = [inp.get_any_name() for inp in model.inputs]
        if main_input is not None:  # the image input goes first; others come through `extra`
            self.input_names.remove(main_input)
            self.input_names.insert(0, main_input)
        self.output_names = [out.get_any_name() for out in model.outputs]
        self.rt_info = model.get_rt_info()  # the file's metadata (e.g. an OCR model's alphabet), kept as read
        self.batched = False
        if input_shape is not None:
            model.reshape({self.input_names[0]: ov.PartialShape(input_shape)})
            self.batched = input_shape[0] == -1  # a dynamic batch given with the shape: a batch runs in one call
        elif dynamic_batch and not free_sides and len(model.inputs) == 1:
            shape = model.inputs[0].get_partial_shape()
            try:
                dims = [ov.Dimension(-1)] + [shape[i] for i in range(1, shape.rank.get_length())]
                model.reshape({self.input_names[0]: ov.PartialShape(dims)})
                self.batched = True
            except Exception:  # some graphs hard-code the batch; run those one by one
                self.batched = False
        self.input_shape = model.inputs[0].get_partial_shape()
        # Unpinned: OpenVINO pins a latency stream's threads to cores, and two threads inferring at once (ingest's
        # batches, a search beside an upload) then share the cores it picked: with one thread a model both were
        # pinned to core 0 (`cores_busy` 1.1 of 2).
        config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False}
        if precision is not None:  # e.g. "f32" where the CPU's default (bf16 with AMX) moves a model's answers
            config["INFERENCE_PRECISION_HINT"] = precision
        self._config = config
        self.batch_sizes = tuple(sorted({1, *static_batches}, reverse=True)) if static_batches else ()
        self.by_batch: dict[int, ov.CompiledModel] = {}  # batch size -> a model compiled for it alone
        self._lock = threading.Lock()
        self._model = model if free_sides else None  # kept to be compiled again for each new input shape
        self._by_shape: OrderedDict[tuple[int, ...], ov.CompiledModel] = OrderedDict()  # least recently used first
        self._compile_lock = threading.Lock()  # compiling reshapes the kept graph in place: one at a time
        self._pinned: dict[tuple[int, ...], ov.CompiledModel] = {}  # the file's own sides: compiled now, never dropped
        for size in self.batch_sizes or ((1,) if free_sides else ()):
            shape = (size, *[int(d.get_length()) for d in list(self.input_shape)[1:]])
            model.reshape({self.input_names[0]: ov.PartialShape(list(shape))})
            self.by_batch[size] = core().compile_model(model, "CPU", config)
            if free_sides:
                self._pinned[shape] = self.by_batch[size]
        self.compiled = self.by_batch[1] if self.by_batch else core().compile_model(model, "CPU", config)
        # Each compiled model kept -> its requests no call holds now. Keyed by the object, not its id: a dropped
        # shape's id could be reused by the next one compiled, which would then be handed the old one's requests.
        self._idle: dict[ov.CompiledModel, list[ov.InferRequest]] = {
            compiled: [] for compiled in {self.compiled, *self.by_batch.values()}}

    def infer(self, batch: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Run a batch; returns output name -> array with the batch as the first axis."""
        if len(batch) == 0:
            return {}
        # the batch sizes it runs in, largest first (1 always among them): the static sizes, or one frame at a time
        # for a graph that hard-codes its batch; none for a dynamic batch (one call)
        sizes = self.batch_sizes or (() if self.batched else (1,))
        if not sizes or len(batch) == 1:
            return self._run(batch, extra, self._compiled_for_batch(batch))
        parts, start = [], 0
        while start < len(batch):
            size = next(n for n in sizes if n <= len(batch) - start)
            part = batch[start : start + size]
            parts.append(self._run(part, extra, self._compiled_for_batch(part)))
            start += size
        return parts[0] if len(parts) == 1 else {n: np.concatenate([p[n] for p in parts]) for n in parts[0]}

    def _compiled_for_batch(self, batch: np.ndarray) -> ov.CompiledModel:
        if self._model is not None:
            return self._compiled_for(tuple(batch.shape))
        return self.by_batch.get(len(batch), self.compiled)

    def _compiled_for(self, shape: tuple[int, ...]) -> ov.CompiledModel:
        """The model compiled for this exact input shape (a `free_sides` model): the file's own, or compiled on first
        need and kept among the MAX_SHAPES most recently used."""
        assert self._model is not None
        pinned = self._pinned.get(shape)
        if pinned is not None:
            return pinned
        with self._lock:
            compiled = self._by_shape.get(shape)
            if compiled is not None:
                self._by_shape.move_to_end(shape)
                return compiled
        with self._compile_lock:
            with self._lock:
                compiled = self._by_shape.get(shape)  # another thread may have compiled it meanwhile
            if compiled is None:
                self._model.reshape({self.input_names[0]: ov.PartialShape(list(shape))})
                compiled = core().compile_model(self._model, "CPU", self._config)
            with self._lock:
                self._by_shape[shape] = compiled
                self._idle.setdefault(compiled, [])
                self._by_shape.move_to_end(shape)
                while len(self._by_shape) > MAX_SHAPES:
                    _, dropped = self._by_shape.popitem(last=False)
                    self._idle.pop(dropped, None)
            return compiled

    def _run(self, batch: np.ndarray, extra: dict[str, np.ndarray] | None,
             compiled: ov.CompiledModel | None = None) -> dict[str, np.ndarray]:
        compiled = compiled or self.compiled
        inputs: dict[str, np.ndarray] = {self.input_names[0]: batch}
        if extra:
            inputs.update(extra)
        with self._lock:  # an infer request is not re-entrant: each call holds one of its own
            # a shape dropped while this call held it: its request is used once, not kept (nor the model with it)
            idle = self._idle.get(compiled, [])
            request = idle.pop() if idle else compiled.create_infer_request()
        try:
            result = request.infer(inputs)  # outputs copied out of the request (share_outputs=False)
            return {name: np.asarray(result[compiled.output(name)]) for name in self.output_names}
        finally:
            with self._lock:
                idle.append(request)


def int8_pointwise_convolutions(model: ov.Model) -> int:
    """Let OpenVINO run a uint8-quantised TFLite model's 1×1 convolutions in int8; returns how many it rewrote.

    Such a file's weights are uint8 with a per-tensor zero point zp, (w − zp) reaching −150..151: outside int8, so
    OpenVINO dequantises them and runs those convolutions in float32. The same sums, split:
    conv(x, w − zp) = conv(x, w − 128) + (128 − zp) · conv(x, 1), both int8 (the second one output channel of ones).
    On MobileNet v1 (`mobilenet_v1_embedding.tflite`): 8.8 → 4.1–4.6 ms a crop on 2 cores, outputs within a few
    quantisation steps of the original's (cosine ≥ 0.9997 on the eval vehicles). Compile it in float32: bfloat16
    in the correction would move the answers.
    """
    rewritten = 0
    for conv in [op for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]:
        kernel = list(conv.input(1).get_partial_shape().to_shape())
        chain = conv.input(1).get_source_output().get_node()  # weights: Constant → Convert → Subtract → Multiply
        scale_node = None
        while chain.get_type_name() in ("Transpose", "Reshape", "Multiply"):
            if chain.get_type_name() == "Multiply":
                scale_node = chain
            chain = chain.input(0).get_source_output().get_node()
        if kernel[2:] != [1, 1] or chain.get_type_name() != "Subtract" or scale_node is None:
            continue
        weights = _constant_behind(chain.input(0))
        zero_point, scale = _constant_behind(chain.input(1)), _constant_behind(scale_node.input(1))
        if weights is None or weights.dtype != np.uint8 or zero_point is None or scale is None:
            continue
        if zero_point.size != 1 or scale.size != 1:
            continue  # per-channel: not what this file holds
        shifted = ops.convert(ops.constant((weights.astype(np.int16) - 128).astype(np.int8)), ov.Type.f32)
        for target in list(chain.output(0).get_target_inputs()):
            target.replace_source_output(shifted.output(0))
        attrs = conv.get_attributes()
        ones = ops.multiply(ops.convert(ops.constant(np.ones((1, kernel[1], 1, 1), np.int8)), ov.Type.f32),
                            ops.constant(np.float32(1.0)))
        column_sums = ops.convolution(conv.input(0).get_source_output(), ones, attrs["strides"], attrs["pads_begin"],
                                      attrs["pads_end"], attrs["dilations"])
        share = float(scale.ravel()[0]) * (128.0 - float(zero_point.ravel()[0]))
        correction = ops.multiply(column_sums, ops.constant(np.float32(share)))
        consumers = list(conv.output(0).get_target_inputs())
        summed = ops.add(conv.output(0), correction)
        for target in consumers:
            target.replace_source_output(summed.output(0))
        rewritten += 1
    model.validate_nodes_and_infer_types()
    return rewritten


def _constant_behind(port: ov.Input) -> np.ndarray | None:
    """The constant feeding an input, looking through one Convert; None when it is computed."""
    node = port.get_source_output().get_node()
    if node.get_type_name() == "Convert":
        node = node.input(0).get_source_output().get_node()
    return node.get_data() if node.get_type_name() == "Constant" else None
