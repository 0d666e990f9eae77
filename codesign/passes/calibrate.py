"""Activation ranges for quantization: from data, or estimated from the weights alone.

Post-training quantization needs, per activation tensor, the interval its values live
in. With a calibration set the model runs once (reference execution, every
intermediate exposed) and min/max are recorded. Without data the ranges are
estimated: per-element means and variances are propagated from an assumed input
distribution through the linear layers (exact for sums of independent terms),
BatchNorm outputs take their trained shift/scale (the BN statistics), ReLU uses the
rectified-Gaussian moments, and each range is mean +- k standard deviations.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper

from codesign.errors import CodesignError, OnnxruntimeError
from codesign.ir.model import QUANT_OPS, Model

#: Ops whose output never leaves a fixed interval, whatever the input.
BOUNDED = {"Sigmoid": (0.0, 1.0), "Softmax": (0.0, 1.0), "Tanh": (-1.0, 1.0), "HardSigmoid": (0.0, 1.0)}
#: Ops that only move values around: applied to means and variances alike.
MOVE_OPS = frozenset(
    {
        "Reshape",
        "Flatten",
        "Transpose",
        "Identity",
        "Dropout",
        "Squeeze",
        "Unsqueeze",
        "Pad",
        "Concat",
        "Slice",
        "Gather",
    }
)


@dataclass
class Calibration:
    """Per-tensor ``(lo, hi)`` ranges and how they were obtained."""

    ranges: dict[str, tuple[float, float]]
    source: str
    samples: int = 0
    approximate_ops: list[str] = field(default_factory=list)
    #: a random subsample of each tensor's values (data calibration only), for MSE scale search
    values: dict[str, np.ndarray] = field(default_factory=dict)
    #: per-element mean of each tensor over the samples (batch axis dropped): bias correction
    means: dict[str, np.ndarray] = field(default_factory=dict)
    #: the first few whole samples of small tensors (data calibration only): output-error scale search
    rows: dict[str, np.ndarray] = field(default_factory=dict)

    def range(self, name: str) -> tuple[float, float] | None:
        return self.ranges.get(name)

    def sample(self, name: str) -> np.ndarray | None:
        return self.values.get(name)


# ------------------------------------------------------------------ from data
def _dynamic_tensors(model: Model) -> list[str]:
    names = list(model.inputs)
    for node in model.graph.node:
        names.extend(o for o in node.output if o and model.constant(o) is None)
    return list(dict.fromkeys(names))


def _exposed(model: Model, tensors: list[str]) -> Model:
    """A copy of ``model`` with every tensor in ``tensors`` also a graph output."""
    copy = model.copy()
    present = set(copy.outputs)
    exposed = {n for n in tensors if n not in present and n not in copy.inputs and model.shape(n) is not None}
    for vi in [v for v in copy.graph.value_info if v.name in exposed]:
        copy.graph.value_info.remove(vi)  # a tensor may not be both an output and a value_info
    for name in tensors:
        if name in present or name in copy.inputs:
            continue
        shape = model.shape(name)
        if shape is None:
            continue
        copy.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, list(shape)))
    copy.invalidate()
    return copy


def _batches(data: Any, batch: int) -> Iterable[Any]:
    """Chunks of a numpy array / dict of arrays, or the items of a data loader."""
    if isinstance(data, np.ndarray):
        for i in range(0, len(data), batch):
            yield data[i : i + batch]
    elif isinstance(data, Mapping):
        n = len(next(iter(data.values())))
        for i in range(0, n, batch):
            yield {k: np.asarray(v)[i : i + batch] for k, v in data.items()}
    else:  # a data loader: arrays, or (x, y) tuples whose first item is the input
        for item in data:
            x = item[0] if isinstance(item, (tuple, list)) else item
            yield np.asarray(x.numpy() if hasattr(x, "numpy") else x, dtype=np.float32)


def _run_chunk(executor: Any, chunk: Any) -> dict[str, np.ndarray]:
    """Run one batch; models whose graph pins batch 1 (keras Reshape targets) run per sample."""
    try:
        n = len(next(iter(chunk.values()))) if isinstance(chunk, Mapping) else len(chunk)
        try:
            return executor.run(chunk)
        except CodesignError as exc:
            if not isinstance(exc, OnnxruntimeError) or n == 1:
                raise
        except Exception:
            if n == 1:
                raise
        rows = [
            executor.run(
                {k: v[i : i + 1] for k, v in chunk.items()} if isinstance(chunk, Mapping) else chunk[i : i + 1]
            )
            for i in range(n)
        ]
        return {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    except CodesignError as exc:
        raise CodesignError(f"calibration data does not fit the model: {exc}") from None
    except Exception as exc:  # onnxruntime/qonnx internals: one line for the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CodesignError(f"cannot run the model on the calibration data: {first[:200]}") from exc


def calibrate(
    model: Model,
    data: Any,
    tensors: list[str] | None = None,
    batch: int = 512,
    keep: int = 20000,
    seed: int = 0,
    keep_rows: int = 512,
) -> Calibration:
    """Min/max of every dynamic tensor (or ``tensors``) over the calibration ``data``.

    ``data``: an array (N, ...) for the single model input, a dict of arrays, or an
    iterable of batches (a torch DataLoader works: tensors or (x, y) pairs).
    """
    from codesign.backends.reference import ReferenceExecutor
    from codesign.passes.workload import batch_size

    wanted = tensors if tensors is not None else _dynamic_tensors(model)
    exposed = _exposed(model, wanted)
    batch = batch_size(exposed, batch, copies=4.0)  # every tensor is an output; float64 sums and samples of it
    executor = ReferenceExecutor(exposed)
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    samples = 0
    rng = np.random.default_rng(seed)
    kept: dict[str, list[np.ndarray]] = {}
    sums: dict[str, np.ndarray] = {}
    rows: dict[str, list[np.ndarray]] = {}
    for chunk in _batches(data, batch):
        out = _run_chunk(executor, chunk)
        n = len(chunk) if not isinstance(chunk, Mapping) else len(next(iter(chunk.values())))
        samples += n
        feeds = chunk if isinstance(chunk, Mapping) else {model.inputs[0]: chunk}
        for name in wanted:
            value = out.get(name, feeds.get(name))
            if value is None:
                continue
            value = np.asarray(value)
            lo[name] = min(lo.get(name, math.inf), float(value.min()))
            hi[name] = max(hi.get(name, -math.inf), float(value.max()))
            sums[name] = sums.get(name, 0.0) + value.astype(np.float64).sum(axis=0)
            have = sum(len(r) for r in rows.get(name, []))
            if have < keep_rows and value[0].size <= 4096:
                rows.setdefault(name, []).append(value[: keep_rows - have])
            flat = value.reshape(-1)
            kept.setdefault(name, []).append(flat if flat.size <= keep else rng.choice(flat, keep, replace=False))
    if samples == 0:
        raise CodesignError("calibration data is empty")
    values = {}
    for name, parts in kept.items():
        flat = np.concatenate(parts)
        values[name] = flat if flat.size <= keep else rng.choice(flat, keep, replace=False)
    means = {k: v / samples for k, v in sums.items()}
    return Calibration(
        {k: (lo[k], hi[k]) for k in lo},
        f"calibration data ({samples} samples)",
        samples,
        values=values,
        means=means,
        rows={k: np.concatenate(v) for k, v in rows.items()},
    )


def quant_grid(model: Model, node: onnx.NodeProto) -> tuple[float, float] | None:
    """The interval an existing ``Quant`` node can output (its clipping range)."""
    from qonnx.custom_op.general.quant import max_int, min_int

    params = [model.constant(i) for i in node.input[1:4]]
    if any(p is None for p in params) or node.op_type != "Quant":
        return None
    scale, zeropt, bits = (np.asarray(p, dtype=np.float64) for p in params)
    signed, narrow = bool(_attr(node, "signed", 1)), bool(_attr(node, "narrow", 0))
    lo = (min_int(signed, narrow, float(bits.max())) - zeropt) * scale
    hi = (max_int(signed, narrow, float(bits.max())) - zeropt) * scale
    return float(np.min(lo)), float(np.max(hi))


# ------------------------------------------------------------------ without data
def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _phi(z: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def _Phi(z: np.ndarray) -> np.ndarray:
    from math import erf

    return 0.5 * (1.0 + np.vectorize(erf)(z / math.sqrt(2)))


def _relu_moments(m: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.sqrt(np.maximum(v, 1e-24))
    z = m / s
    cdf, pdf = _Phi(z), _phi(z)
    mean = m * cdf + s * pdf
    second = (m * m + v) * cdf + m * s * pdf
    return mean, np.maximum(second - mean * mean, 0.0)


def _run_node(node: onnx.NodeProto, inputs: list[np.ndarray | None], model: Model) -> np.ndarray:
    """Evaluate one standard node on numpy inputs (onnx's reference evaluator)."""
    from onnx.reference import ReferenceEvaluator

    names = [f"i{k}" if i else "" for k, i in enumerate(node.input)]
    clone = helper.make_node(
        node.op_type, names, ["o"], **{a.name: helper.get_attribute_value(a) for a in node.attribute}
    )
    feeds = {
        n: np.asarray(x, dtype=np.float32 if np.asarray(x).dtype.kind == "f" else np.asarray(x).dtype)
        for n, x in zip(names, inputs)
        if n
    }
    graph = helper.make_graph(
        [clone],
        "one",
        [
            helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape))
            for n, v in feeds.items()
        ],
        [helper.make_tensor_value_info("o", onnx.TensorProto.FLOAT, None)],
    )
    opset = next((o.version for o in model.proto.opset_import if o.domain in ("", "ai.onnx")), 13)
    ref = ReferenceEvaluator(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]))
    return np.asarray(ref.run(None, feeds)[0], dtype=np.float64)


class _Moments:
    """Per-element mean/variance of every dynamic tensor, propagated node by node."""

    def __init__(self, model: Model):
        self.model = model
        self.mean: dict[str, np.ndarray] = {}
        self.var: dict[str, np.ndarray] = {}
        self.bounds: dict[str, tuple[float, float]] = {}
        self.approximate: list[str] = []

    def const(self, name: str) -> np.ndarray | None:
        value = self.model.constant(name) if name else None
        return None if value is None else np.asarray(value, dtype=np.float64)

    def moments(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        if name in self.mean:
            return self.mean[name], self.var[name]
        c = self.const(name)
        return (c, np.zeros_like(c)) if c is not None else None

    def visit(self, node: onnx.NodeProto) -> None:
        out = node.output[0]
        if self.model.constant(out) is not None:
            return
        handler = getattr(self, f"_op_{node.op_type}", None)
        if node.op_type in QUANT_OPS:
            handler = self._op_pass
        result = handler(node) if handler is not None and not node.domain.endswith("channels_last") else None
        if result is None:
            result = self._fallback(node)
        if result is None:
            return
        m, v = result
        self.mean[out], self.var[out] = m, np.maximum(v, 0.0)
        if node.op_type in BOUNDED:
            self.bounds[out] = BOUNDED[node.op_type]
        elif node.op_type in MOVE_OPS and node.op_type != "Concat" and node.input[0] in self.bounds:
            self.bounds[out] = self.bounds[node.input[0]]
        elif node.op_type == "Quant":
            grid = quant_grid(self.model, node)
            if grid is not None:
                self.bounds[out] = grid

    # --- handlers: each returns (mean, var) or None
    def _op_pass(self, node):
        return self.moments(node.input[0])

    def _op_MatMul(self, node):
        a, b = self.moments(node.input[0]), self.moments(node.input[1])
        if a is None or b is None:
            return None
        (ma, va), (mb, vb) = a, b
        mean = ma @ mb
        var = va @ (mb * mb) + (ma * ma) @ vb + va @ vb
        return mean, var

    def _op_Gemm(self, node):
        a, b = self.moments(node.input[0]), self.moments(node.input[1])
        if a is None or b is None:
            return None
        (ma, va), (mb, vb) = a, b
        if _attr(node, "transA", 0):
            ma, va = ma.T, va.T
        if _attr(node, "transB", 0):
            mb, vb = mb.T, vb.T
        alpha, beta = float(_attr(node, "alpha", 1.0)), float(_attr(node, "beta", 1.0))
        mean = alpha * (ma @ mb)
        var = alpha**2 * (va @ (mb * mb) + (ma * ma) @ vb + va @ vb)
        if len(node.input) > 2 and node.input[2]:
            c = self.moments(node.input[2])
            if c is None:
                return None
            mean, var = mean + beta * c[0], var + beta**2 * c[1]
        return mean, var

    def _op_Conv(self, node):
        x, w = self.moments(node.input[0]), self.const(node.input[1])
        if x is None or w is None:
            return None
        bias = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        mean = _run_node(node, [x[0], w] + ([bias] if bias is not None else []), self.model)
        var = _run_node(node, [x[1], w * w] + ([np.zeros_like(bias)] if bias is not None else []), self.model)
        return mean, var

    def _elementwise(self, node, sign: float):
        a, b = self.moments(node.input[0]), self.moments(node.input[1])
        if a is None or b is None:
            return None
        return a[0] + sign * b[0], a[1] + b[1]

    def _op_Add(self, node):
        return self._elementwise(node, 1.0)

    def _op_Sub(self, node):
        return self._elementwise(node, -1.0)

    def _op_Mul(self, node):
        a, b = self.moments(node.input[0]), self.moments(node.input[1])
        if a is None or b is None:
            return None
        (ma, va), (mb, vb) = a, b
        return ma * mb, va * mb * mb + vb * ma * ma + va * vb

    def _op_Div(self, node):
        a, c = self.moments(node.input[0]), self.const(node.input[1])
        if a is None or c is None:
            return None
        return a[0] / c, a[1] / (c * c)

    def _op_Relu(self, node):
        a = self.moments(node.input[0])
        return None if a is None else _relu_moments(*a)

    def _op_BatchNormalization(self, node):
        """The BN statistics: the output is distributed as N(bias, scale^2) per channel."""
        shape = self.model.shape(node.output[0])
        scale, bias = self.const(node.input[1]), self.const(node.input[2])
        if shape is None or scale is None or bias is None or len(shape) < 2 or scale.size != shape[1]:
            return None
        bshape = [1] * len(shape)
        bshape[1] = shape[1]
        mean = np.broadcast_to(bias.reshape(bshape), shape).astype(np.float64)
        return mean, np.broadcast_to((scale * scale).reshape(bshape), shape).astype(np.float64)

    def _fallback(self, node):
        """Moving ops: apply to both moments. Others: evaluate on the mean, keep variance."""
        ins = [self.moments(i) if i else None for i in node.input]
        if not ins or ins[0] is None or node.domain:
            return None
        raw = [self.model.constant(i) if i else None for i in node.input]  # shapes/indices keep their dtype
        ins = [(r, r) if (k > 0 and r is not None) else x for k, (x, r) in enumerate(zip(ins, raw))]
        try:
            mean = _run_node(node, [x[0] if x is not None else None for x in ins], self.model)
            if node.op_type in MOVE_OPS:
                var = _run_node(
                    node, [x[1] if k == 0 or node.op_type == "Concat" else x[0] for k, x in enumerate(ins)], self.model
                )
            else:
                self.approximate.append(node.op_type)
                v = ins[0][1]
                var = np.broadcast_to(v.mean(), mean.shape) if v.shape != mean.shape else v
        except Exception:
            self.approximate.append(node.op_type)
            return None
        return mean, var


def estimate_ranges(
    model: Model,
    input_range: tuple[float, float] | None = None,
    k: float = 4.0,
) -> Calibration:
    """Ranges without data: inputs ~ N(0, 1) per element (standardised features), or
    uniform on ``input_range``; every range is mean +- ``k`` standard deviations."""
    mom = _Moments(model)
    for name in model.inputs:
        shape = model.shape(name)
        if input_range is None:
            mom.mean[name], mom.var[name] = np.zeros(shape), np.ones(shape)
        else:
            lo, hi = input_range
            mom.mean[name] = np.full(shape, (lo + hi) / 2.0)
            mom.var[name] = np.full(shape, (hi - lo) ** 2 / 12.0)
            mom.bounds[name] = (float(lo), float(hi))
    for node in model.graph.node:
        mom.visit(node)
    ranges: dict[str, tuple[float, float]] = {}
    relu_out = {n.output[0] for n in model.graph.node if n.op_type == "Relu"}
    for name, m in mom.mean.items():
        if name in mom.bounds:
            ranges[name] = mom.bounds[name]
            continue
        s = np.sqrt(mom.var[name])
        lo, hi = float(np.min(m - k * s)), float(np.max(m + k * s))
        if name in relu_out:
            lo = max(lo, 0.0)
        ranges[name] = (lo, hi)
    assumed = f"uniform on [{input_range[0]}, {input_range[1]}]" if input_range else "N(0, 1) per element"
    source = f"estimated from weight/BN statistics without data (inputs assumed {assumed}, ranges mean +- {k:g} std)"
    means = {name: m[0] for name, m in mom.mean.items() if m.ndim >= 1 and m.shape[0] == 1}
    return Calibration(ranges, source, 0, sorted(set(mom.approximate)), means=means)


__all__ = ["Calibration", "calibrate", "estimate_ranges"]
