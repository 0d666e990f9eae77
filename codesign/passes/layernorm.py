"""ONNX's LayerNormalization (opset 17) spelled out as the ops torch's older exports write.

``(x - mean) / sqrt(var + eps) * scale + bias`` over the last axis, as ReduceMean, Sub, Pow,
ReduceMean, Add, Sqrt, Div, Mul, Add: one spelling for both exports, and the one the hls4ml
lowering builds from layers it has (``backends/last_axis.py``: means as MatMuls, ``1 / sqrt`` as one
lookup table whose input the float type selection quantizes). Same function; float32 rounding
of the intermediate steps may differ from onnxruntime's fused kernel in the last bits.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from codesign.ir.model import Model
from codesign.passes.base import Pass, PassResult
from codesign.passes.graph_edit import add_initializer, replace_nodes


def _attr(node, name: str, default):
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


class SpellOutLayerNormalization(Pass):
    """LayerNormalization over the last axis (float input, constant scale/bias) -> standard elementwise ops."""

    def call(self, model: Model) -> PassResult:
        done = []
        from codesign.frontends.door import default_opset  # frontends imports passes: not at module level

        opset = default_opset(model.proto) or 0
        for node in list(model.nodes_of(["LayerNormalization"])):
            shape = model.shape(node.input[0])
            if node.domain not in ("", "ai.onnx") or shape is None or not model.is_float(node.input[0]):
                continue
            if int(_attr(node, "axis", -1)) % len(shape) != len(shape) - 1 or (
                len(node.output) > 1 and any(node.output[1:])
            ):
                continue
            scale = model.constant(node.input[1])
            bias = model.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            if scale is None or (len(node.input) > 2 and node.input[2] and bias is None):
                continue
            replace_nodes(model, [node], self._spelled(model, node, float(_attr(node, "epsilon", 1e-5)), opset))
            done.append(node.name)
        if done:
            from codesign.passes.shapes import infer_shapes

            infer_shapes(model)
        return PassResult(model, bool(done), {"layer_norms": done})

    @staticmethod
    def _spelled(model: Model, node, eps: float, opset: int) -> list:
        x, y, n = node.input[0], node.output[0], node.name

        def t(s: str) -> str:
            return f"{y}_{s}"

        def reduce(src: str, out: str, tag: str):
            if opset >= 18:
                axes = add_initializer(model, f"{n}_axes", np.array([-1], dtype=np.int64))
                return helper.make_node("ReduceMean", [src, axes], [out], name=f"{n}_{tag}", keepdims=1)
            return helper.make_node("ReduceMean", [src], [out], name=f"{n}_{tag}", axes=[-1], keepdims=1)

        two = add_initializer(model, f"{n}_two", np.float32(2.0))
        e = add_initializer(model, f"{n}_eps", np.float32(eps))
        nodes = [
            reduce(x, t("mean"), "mean"),
            helper.make_node("Sub", [x, t("mean")], [t("centred")], name=f"{n}_centre"),
            helper.make_node("Pow", [t("centred"), two], [t("square")], name=f"{n}_square"),
            reduce(t("square"), t("var"), "var"),
            helper.make_node("Add", [t("var"), e], [t("var_eps")], name=f"{n}_eps"),
            helper.make_node("Sqrt", [t("var_eps")], [t("std")], name=f"{n}_std"),
            helper.make_node("Div", [t("centred"), t("std")], [t("normed")], name=f"{n}_normalise"),
        ]
        last = t("normed")
        if len(node.input) > 2 and node.input[2]:
            nodes.append(helper.make_node("Mul", [last, node.input[1]], [t("scaled")], name=f"{n}_scale"))
            nodes.append(helper.make_node("Add", [t("scaled"), node.input[2]], [y], name=n))
        else:
            nodes.append(helper.make_node("Mul", [last, node.input[1]], [y], name=n))
        return nodes


__all__ = ["SpellOutLayerNormalization"]
