"""The IR's reference execution: what every backend is verified against.

Graphs of standard ONNX ops run in onnxruntime as a whole; graphs with QONNX custom
ops (Quant, MultiThreshold, channels-last ...) run with qonnx's ``execute_onnx``
semantics, the QONNX reference, one session per run of standard nodes
(``segments.SegmentedExecutor``). A batch of N samples runs as one
call on a copy of the model re-batched to N (the IR itself is normalised to batch 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from codesign.errors import CodesignError, OnnxruntimeError
from codesign.ir.model import Model


def _rebatched(model: Model, n: int) -> Model:
    """A copy of ``model`` whose leading (batch) dimension is ``n``."""
    from codesign.passes.shapes import infer_shapes

    copy = model.copy()
    g = copy.graph
    for vi in list(g.input) + list(g.output):
        if vi.name in copy.inputs or vi.name in copy.outputs:
            vi.type.tensor_type.shape.dim[0].dim_value = n
    g.ClearField("value_info")
    for node in copy.nodes_of(["Reshape"]):
        target = copy.initializer(node.input[1])
        if target is not None and target.size and int(target[0]) == 1:
            fixed = target.copy()
            fixed[0] = n
            copy.set_initializer(node.input[1], fixed)
    for node in copy.nodes_of(["Flatten"]):  # keras exports Flatten(axis=0): same as axis=1 at batch 1 only
        for a in node.attribute:
            if a.name == "axis" and a.i == 0:
                a.i = 1
    infer_shapes(copy)
    return copy


def _is_standard(model: Model) -> bool:
    return all(n.domain in ("", "ai.onnx") for n in model.graph.node)


def _onnxruntime_error(exc: Exception, doing: str) -> OnnxruntimeError | None:
    """onnxruntime's own exception (a type error in the graph, a Reshape that cannot be) as one line, else None."""
    if not type(exc).__module__.startswith("onnxruntime"):
        return None
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return OnnxruntimeError(f"onnxruntime {doing} the model: {first[:300]}")


def ort_session(proto: Any, opts: Any) -> Any:
    """A CPU onnxruntime session of ``proto``; onnxruntime rejecting the graph is refused in one line."""
    import onnxruntime as ort

    try:
        return ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise (_onnxruntime_error(exc, "cannot load") or exc) from exc


def ort_run(session: Any, outputs: list[str], feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """``session.run``; onnxruntime failing on the model's own values or shapes is refused in one line."""
    try:
        return session.run(outputs, feeds)
    except Exception as exc:
        raise (_onnxruntime_error(exc, "failed running") or exc) from exc


class ReferenceExecutor:
    """Runs a model on numpy inputs; reuses sessions/re-batched copies across calls."""

    def __init__(self, model: Model):
        self.model = model
        self.standard = _is_standard(model)
        self._sessions: dict[int, object] = {}
        self._models: dict[int, Model] = {}
        self._segmented: dict[int, Any] = {}

    def _batch_model(self, n: int) -> Model:
        if n not in self._models:
            self._models[n] = self.model if n == 1 else _rebatched(self.model, n)
        return self._models[n]

    def _ort(self, n: int):
        import onnxruntime as ort

        if n not in self._sessions:
            opts = ort.SessionOptions()
            opts.log_severity_level = 4  # fatal only: errors arrive as exceptions
            opts.intra_op_num_threads = 1
            self._sessions[n] = ort_session(self._batch_model(n).proto, opts)
        return self._sessions[n]

    def run(self, inputs: Mapping[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        """Outputs by name for ``inputs`` (an array feeds the single model input)."""
        feeds = self._feeds(inputs)
        n = next(iter(feeds.values())).shape[0] if feeds else 1
        if self.standard:
            sess = self._ort(n)
            names = [o.name for o in sess.get_outputs()]
            return dict(zip(names, ort_run(sess, names, feeds)))
        from codesign.backends.segments import SegmentedExecutor

        if n not in self._segmented:
            self._segmented[n] = SegmentedExecutor(self._batch_model(n))
        out = self._segmented[n].run(feeds)
        return {name: out[name] for name in self.model.outputs}

    def _feeds(self, inputs: Mapping[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        names = self.model.inputs
        if not isinstance(inputs, Mapping):
            if len(names) != 1:
                raise CodesignError(f"model has {len(names)} inputs ({', '.join(names)}); pass a dict")
            inputs = {names[0]: inputs}
        feeds = {}
        for name in names:
            if name not in inputs:
                raise CodesignError(f"missing input {name!r}")
            x = np.asarray(inputs[name], dtype=np.float32)
            expected = self.model.shape(name)
            if expected is not None and tuple(x.shape[1:]) != tuple(expected[1:]):
                raise CodesignError(
                    f"input {name!r} has shape {tuple(x.shape)}, model expects (N, {', '.join(map(str, expected[1:]))})"
                )
            feeds[name] = x
        return feeds


def execute(model: Model, inputs: Mapping[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
    """One-shot reference execution (see :class:`ReferenceExecutor`)."""
    return ReferenceExecutor(model).run(inputs)


#: Samples: one array (N, ...) per model input name, every input first-class.
Samples = dict[str, np.ndarray]


def as_samples(model: Model, x: Mapping[str, np.ndarray] | np.ndarray) -> Samples:
    """``x`` by input name: an array is wrapped for a single-input model, a mapping checked once."""
    names = model.inputs
    if not isinstance(x, Mapping):
        if len(names) != 1:
            raise CodesignError(f"model has {len(names)} inputs ({', '.join(names)}); give one array per input name")
        return {names[0]: np.asarray(x, dtype=np.float32)}
    missing = [n for n in names if n not in x]
    if missing:
        raise CodesignError(f"no samples for input(s) {', '.join(missing)} (have {', '.join(x) or 'none'})")
    out = {n: np.asarray(x[n], dtype=np.float32) for n in names}
    counts = {len(v) if v.ndim else 0 for v in out.values()}
    if len(counts) != 1 or 0 in counts:
        raise CodesignError(f"inputs need the same, non-zero number of samples; got {[len(v) for v in out.values()]}")
    return out


def n_samples(x: Samples) -> int:
    """How many samples ``x`` holds (every input has as many)."""
    return len(next(iter(x.values())))


def take(x: Samples, index: Any) -> Samples:
    """The same samples (a slice or index array) of every input."""
    return {k: v[index] for k, v in x.items()}


def predict(model: Model, x: Mapping[str, np.ndarray] | np.ndarray, batch: int = 1000) -> np.ndarray:
    """First output for a whole set of samples, in chunks of ``batch`` (cut to the activation budget)."""
    from codesign.passes.workload import batch_size

    batch = batch_size(model, batch)
    x = as_samples(model, x)
    executor = ReferenceExecutor(model)
    out_name = model.outputs[0]
    parts = [executor.run(take(x, slice(i, i + batch)))[out_name] for i in range(0, n_samples(x), batch)]
    return np.concatenate(parts, axis=0)


__all__ = ["ReferenceExecutor", "Samples", "as_samples", "execute", "n_samples", "predict", "take"]
