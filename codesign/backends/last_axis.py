"""Per-row statistics over the feature axis, in layers hls4ml has (a LayerNorm spelled out, ``x - x.mean(-1)``).

hls4ml merges equal shapes only and has no reduction. Over the last (feature) axis:
a ReduceMean/ReduceSum with keepdims is a MatMul by a constant column (1/F or 1: exact for a
power-of-two F); a binary op of a computed tensor and a computed per-row value (last dim 1)
gets that value copied across the row by a MatMul with a row of ones (exact); ``Pow(x, 2)`` is
``x * x``; dividing by a computed tensor is multiplying by its Reciprocal, a lookup table that
the table builder fuses with a Sqrt before it (``1 / sqrt(var + eps)`` in one table).
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from codesign.backends.lowering import replace_node
from codesign.backends.precision import _attr
from codesign.backends.reduce_as_pool import reduced_axes
from codesign.ir.model import Model
from codesign.passes.base import Pass, PassResult
from codesign.passes.graph_edit import add_initializer

_BINARY = ("Add", "Sub", "Mul", "Div", "Max", "Min")


class FeatureStatistics(Pass):
    """ReduceMean/Sum over the last axis (keepdims), row-value broadcasts, Pow 2 and Div by a computed tensor."""

    def call(self, model: Model) -> PassResult:
        done: list[str] = []
        for node in list(model.graph.node):
            if node.domain not in ("", "ai.onnx"):
                continue
            new = self._rewrite(model, node)
            if new is not None:
                replace_node(model, node, new)
                done.append(node.name)
        if done:
            from codesign.passes.shapes import infer_shapes

            infer_shapes(model)
        return PassResult(model, bool(done), {"feature_statistics": done})

    def _rewrite(self, model: Model, node) -> list | None:
        shape = model.shape(node.input[0]) if node.input else None
        if shape is None or len(shape) < 2 or not model.is_float(node.input[0]):
            return None
        op, name, y = node.op_type, node.name, node.output[0]
        if (
            op in ("ReduceMean", "ReduceSum")
            and _attr(node, "keepdims", 1)
            and reduced_axes(model, node) == [len(shape) - 1]
        ):
            f = int(shape[-1])
            col = add_initializer(model, f"{name}_column", np.full((f, 1), 1.0 / f if op == "ReduceMean" else 1.0,
                                                                   dtype=np.float32))  # fmt: skip
            return [helper.make_node("MatMul", [node.input[0], col], [y], name=name)]
        if op == "Pow" and len(node.input) == 2:
            e = model.constant(node.input[1])
            if e is not None and np.size(e) == 1 and float(np.asarray(e).ravel()[0]) == 2.0:
                return [helper.make_node("Mul", [node.input[0], node.input[0]], [y], name=name)]
            return None
        if op not in _BINARY or len(node.input) != 2 or any(model.constant(i) is not None for i in node.input):
            return None
        new, ins = [], list(node.input)
        if op == "Div":  # only x / sqrt(.) (a norm): a table gives 1 / sqrt in one lookup; other divisions stay refused
            producer = model.producer(node.input[1])
            if producer is None or producer.op_type != "Sqrt":
                return None
            ins[1], op = f"{y}_reciprocal", "Mul"
            new.append(helper.make_node("Reciprocal", [node.input[1]], [ins[1]], name=f"{name}_reciprocal"))
        a, b = model.shape(node.input[0]), model.shape(node.input[1])
        if a is None or b is None or len(a) != len(b):
            return None
        for k, (mine, other) in enumerate(((a, b), (b, a))):
            if mine[-1] == 1 and other[-1] > 1 and tuple(mine[:-1]) == tuple(other[:-1]):
                ones = add_initializer(model, f"{name}_row{k}", np.ones((1, int(other[-1])), dtype=np.float32))
                row = f"{y}_row{k}"
                new.append(helper.make_node("MatMul", [ins[k], ones], [row], name=f"{name}_row{k}"))
                ins[k] = row
        if not new:
            return None
        return [*new, helper.make_node(op, ins, [y], name=name)]


__all__ = ["FeatureStatistics"]
