"""The one inference runtime: OpenVINO on the CPU, for ONNX, IR and TFLite files.

A model is compiled once and kept; `infer` takes a batch (N, ...) and runs it in
one call when the model accepts a dynamic batch, else in chunks the model accepts.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import openvino as ov

_CORE: ov.Core | None = None
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
        path: Path | str,
        dynamic_batch: bool = True,
        input_shape: list[int] | None = None,
        main_input: str | None = None,
    ):
        self.path = Path(path)
        model = core().read_model(str(self.path))
        self.input_names = [inp.get_any_name() for inp in model.inputs]
        if main_input is not None:  # the image input goes first; others come through `extra`
            self.input_names.remove(main_input)
            self.input_names.insert(0, main_input)
        self.output_names = [out.get_any_name() for out in model.outputs]
        self.batched = False
        if input_shape is not None:
            model.reshape({self.input_names[0]: ov.PartialShape(input_shape)})
        elif dynamic_batch and len(model.inputs) == 1:
            shape = model.inputs[0].get_partial_shape()
            try:
                dims = [ov.Dimension(-1)] + [shape[i] for i in range(1, shape.rank.get_length())]
                model.reshape({self.input_names[0]: ov.PartialShape(dims)})
                self.batched = True
            except Exception:  # some graphs hard-code the batch; run those one by one
                self.batched = False
        self.input_shape = model.inputs[0].get_partial_shape()
        self.compiled = core().compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY"})
        self._lock = threading.Lock()

    def infer(self, batch: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Run a batch; returns output name -> array with the batch as the first axis."""
        if len(batch) == 0:
            return {}
        if self.batched or len(batch) == 1:
            return self._run(batch, extra)
        parts = [self._run(batch[i : i + 1], extra) for i in range(len(batch))]
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    def _run(self, batch: np.ndarray, extra: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        inputs: dict[str, np.ndarray] = {self.input_names[0]: batch}
        if extra:
            inputs.update(extra)
        with self._lock:  # a compiled model's infer request is not re-entrant
            result = self.compiled(inputs)
        return {name: np.asarray(result[self.compiled.output(name)]) for name in self.output_names}
