"""A model exported with a static batch of N > 1 becomes a one-sample model, when it provably is one.

``torch.onnx.export(model, torch.randn(32, ...))`` bakes the dummy batch into every shape; the
hardware (and the cost passes) compute one sample. The rewrite sets the ports' leading dims
to 1 (and Reshape targets that spelled N) and is kept only if onnxruntime gives, sample by
sample, what the original gives on the whole batch: a model that mixes samples (training-mode
BatchNorm, attention over the batch axis, a constant shaped by N) keeps its batch and is
refused later naming it.
"""

from __future__ import annotations

import numpy as np
import onnx

from codesign.ir.model import Model
from codesign.passes.base import Pass, PassResult

#: Largest static batch considered (one onnxruntime run of it checks the rewrite), the samples compared one by
#: one, and the most weight elements a model may have for the check to run.
MAX_BATCH = 256
CHECKED_SAMPLES = 4
MAX_CHECK_WEIGHTS = 20_000_000
#: Outputs must agree this closely (relative to their peak) sample by sample.
RTOL = 1e-4


def _leading(vi: onnx.ValueInfoProto) -> int | None:
    dims = vi.type.tensor_type.shape.dim if vi.type.tensor_type.HasField("shape") else []
    return dims[0].dim_value if dims and dims[0].HasField("dim_value") else None


def _standard(model: Model) -> bool:
    return all(n.domain in ("", "ai.onnx") for n in model.graph.node)


def _run(proto: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _samples(model: Model, n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    inits = {t.name for t in model.graph.initializer}
    feeds = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dtype = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            feeds[vi.name] = rng.integers(max(info.min, -128), min(info.max, 127) + 1, size=shape).astype(dtype)
        else:
            feeds[vi.name] = rng.normal(size=shape).astype(dtype)
    return feeds


def _unbatch_target(model: Model, name: str, n: int) -> None:
    """A Reshape target (initializer or Constant node) that spells the batch ``n`` first -> 1."""
    target = model.initializer(name)
    producer = model.producer(name)
    if target is None and producer is not None and producer.op_type == "Constant":
        attr = next((a for a in producer.attribute if a.name == "value"), None)
        target = onnx.numpy_helper.to_array(attr.t) if attr is not None else None
    if target is None or target.ndim != 1 or not target.size or int(target[0]) != n:
        return
    fixed = target.copy()
    fixed[0] = 1
    if model.initializer(name) is not None:
        model.set_initializer(name, fixed.astype(np.int64))
    else:
        attr.t.CopyFrom(onnx.numpy_helper.from_array(fixed.astype(np.int64), attr.t.name))
        model.invalidate()


class StaticBatchToOne(Pass):
    """Ports that all lead with the same static batch N (2..256) -> batch 1, if sample-by-sample equal."""

    def call(self, model: Model) -> PassResult:
        g = model.graph
        inits = {t.name for t in g.initializer}
        ports = [vi for vi in g.input if vi.name not in inits] + list(g.output)
        leads = {_leading(vi) for vi in ports}
        if len(leads) != 1 or not ports:
            return PassResult(model, False)
        n = leads.pop()
        if n is None or not 2 <= n <= MAX_BATCH or not _standard(model):
            return PassResult(model, False)
        if sum(int(np.prod(t.dims)) for t in g.initializer) > MAX_CHECK_WEIGHTS:
            return PassResult(model, False)
        candidate = onnx.ModelProto()
        candidate.CopyFrom(model.proto)
        for vi in [v for v in candidate.graph.input if v.name not in inits] + list(candidate.graph.output):
            vi.type.tensor_type.shape.dim[0].dim_value = 1
        candidate.graph.ClearField("value_info")
        trial = Model(candidate)
        for node in trial.nodes_of(["Reshape"]):
            if len(node.input) > 1 and len(trial.consumers(node.input[1])) == 1:
                _unbatch_target(trial, node.input[1], n)
        if not self._same_per_sample(model, trial, n):
            return PassResult(model, False)
        model.proto.CopyFrom(trial.proto)
        model.invalidate()
        return PassResult(model, True, {"batch": n})

    @staticmethod
    def _same_per_sample(model: Model, trial: Model, n: int) -> bool:
        """The original on the batch equals the rewrite on its first samples, one by one (onnxruntime, unoptimised).

        A model that mixes samples (a statistic over the batch) differs there on random inputs.
        """
        try:
            feeds = _samples(model, n)
            whole = _run(model.proto, feeds)
            k = min(n, CHECKED_SAMPLES)
            rows = [_run(trial.proto, {name: v[i : i + 1] for name, v in feeds.items()}) for i in range(k)]
        except Exception:  # any failure (shape inference, a kernel): not provably batch-independent
            return False
        for j, full in enumerate(whole):
            full = np.asarray(full, dtype=np.float64)[:k]
            per = np.concatenate([np.asarray(r[j], dtype=np.float64) for r in rows])
            if per.shape != full.shape:
                return False
            tol = RTOL * max(float(np.abs(full).max(initial=0.0)), 1e-6)
            if not np.all(np.abs(per - full) <= tol):
                return False
        return True


__all__ = ["MAX_BATCH", "StaticBatchToOne"]
