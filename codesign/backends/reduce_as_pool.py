"""ReduceMean/ReduceMax/ReduceSum over every axis but one -> global pools (hls4ml has pools, no reductions).

PyTorch's ``x.mean((2, 3))`` after a conv, and DeepSets' ``h.sum(1)`` / ``h.mean(1)`` / ``h.max(1)``
over the particles of per-particle dense layers (``(1, N, F)``), keep one axis: it becomes the
pool's channel axis (a Transpose brings it to position 1 when it is not there; the layout pass
cancels it against the channels-last layout the dense layers already have). Mean -> GlobalAveragePool,
Max -> GlobalMaxPool, Sum -> a depthwise Conv of ones over the reduced axes (exact: an integer
accumulator adds, where an average pool would divide and multiply back).
"""

from __future__ import annotations

import math

import numpy as np
from onnx import helper

from codesign.backends.lowering import replace_node
from codesign.backends.precision import _attr
from codesign.ir.model import Model
from codesign.passes.base import Pass, PassResult

_POOL = {"ReduceMean": "GlobalAveragePool", "ReduceMax": "GlobalMaxPool"}


def reduced_axes(model: Model, node) -> list[int] | None:
    """The node's reduced axes (attribute, or the opset-13/18 ``axes`` input), normalised; None if unknown."""
    shape = model.shape(node.input[0])
    axes = _attr(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        const = model.constant(node.input[1])
        axes = None if const is None else [int(a) for a in np.asarray(const).ravel()]
    if axes is None or shape is None:
        return None
    return sorted({int(a) % len(shape) for a in axes})


class ReduceAsGlobalPool(Pass):
    """A reduction keeping exactly one non-batch axis of a rank-3/4 tensor -> a global pool over the others."""

    def call(self, model: Model) -> PassResult:
        done = []
        for node in list(model.nodes_of(["ReduceMean", "ReduceMax", "ReduceSum"])):
            shape = model.shape(node.input[0])
            axes = reduced_axes(model, node)
            if node.domain not in ("", "ai.onnx") or shape is None or len(shape) not in (3, 4) or axes is None:
                continue
            if not model.is_float(node.input[0]):
                continue
            kept = [a for a in range(1, len(shape)) if a not in axes]
            if 0 in axes or len(kept) != 1:
                continue
            replace_node(model, node, self._pool(model, node, shape, kept[0]))
            done.append(node.name)
        if done:
            from codesign.passes.shapes import infer_shapes

            infer_shapes(model)
        return PassResult(model, bool(done), {"reductions": done})

    @staticmethod
    def _pool(model: Model, node, shape: list[int], channel: int) -> list:
        name, y = node.name, node.output[0]
        src, new = node.input[0], []
        if channel != 1:  # the kept axis becomes the pool's channel axis
            perm = [0, channel, *(a for a in range(1, len(shape)) if a != channel)]
            src = f"{y}_channels_first"
            new.append(helper.make_node("Transpose", [node.input[0]], [src], name=f"{name}_transpose", perm=perm))
        spatial = [int(shape[a]) for a in range(1, len(shape)) if a != channel]
        c = int(shape[channel])
        out_shape = [1, c] + [1] * len(spatial)
        final = y if _attr(node, "keepdims", 1) and channel == 1 else f"{y}_pooled"
        if node.op_type == "ReduceSum":
            ones = f"{name}_ones"
            model.set_initializer(ones, np.ones((c, 1, *spatial), dtype=np.float32))
            new.append(helper.make_node("Conv", [src, ones], [final], name=name, group=c, kernel_shape=spatial,
                                        pads=[0] * (2 * len(spatial)), strides=[1] * len(spatial)))  # fmt: skip
        else:
            new.append(helper.make_node(_POOL[node.op_type], [src], [final], name=name))
        if final != y:  # back to the reduction's own output shape
            target = model.shape(y) or ([1, c] if not _attr(node, "keepdims", 1) else None)
            if target is None or math.prod(target) != math.prod(out_shape):
                target = [1, c]
            if len(target) == 2:
                new.append(helper.make_node("Flatten", [final], [y], name=f"{name}_flatten", axis=1))
            else:
                shape_name = f"{name}_shape"
                model.set_initializer(shape_name, np.asarray(target, dtype=np.int64))
                new.append(helper.make_node("Reshape", [final, shape_name], [y], name=f"{name}_reshape"))
        return new


__all__ = ["ReduceAsGlobalPool", "reduced_axes"]
