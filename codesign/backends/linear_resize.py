"""Linear (bilinear) upsampling by 2 -> nearest upsampling and one small depthwise Conv per axis.

hls4ml's Resize templates implement nearest only. Along one axis, ``half_pixel`` linear
interpolation by 2 is ``0.25 u[j-1] + 0.5 u[j] + 0.25 u[j+1]`` of the nearest-upsampled ``u``
(``u[2i] = u[2i+1] = x[i]``) with the edge replicated; ``asymmetric`` (opset 9 Upsample, opset
10 Resize) is ``0.5 u[j] + 0.5 u[j+1]``. The Conv pads with zeros, so the replicated edge
comes back as ``u`` times a constant mask that is non-zero at the border only, added to the
Conv's output. Every weight is a power of two: exact in fixed point, and the same float32
arithmetic as onnxruntime's Resize on quantized inputs.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from codesign.backends.precision import _attr
from codesign.frontends.door import default_opset
from codesign.ir.model import Model
from codesign.passes.base import Pass, PassResult

#: Per-axis taps (at offsets -1, 0, +1 of the nearest-upsampled tensor) and the edge mask's weight at the
#: first and last position, by coordinate transformation mode.
TAPS = {
    "half_pixel": ((0.25, 0.5, 0.25), (0.25, 0.25)),
    "pytorch_half_pixel": ((0.25, 0.5, 0.25), (0.25, 0.25)),
    "asymmetric": ((0.0, 0.5, 0.5), (0.0, 0.5)),
}


def _coordinate_mode(model: Model, node: onnx.NodeProto) -> str:
    """The node's coordinate transformation (opset 9 Upsample and opset 10 Resize are ``asymmetric``)."""
    if node.op_type == "Upsample" or (default_opset(model.proto) or 1) < 11:
        return "asymmetric"
    return str(_attr(node, "coordinate_transformation_mode", "half_pixel"))


def doubled_axes(model: Model, node: onnx.NodeProto) -> list[int] | None:
    """Spatial axes a linear Resize/Upsample doubles (the others kept); None when it is not one of those."""
    if node.op_type not in ("Resize", "Upsample") or node.domain not in ("", "ai.onnx"):
        return None
    if str(_attr(node, "mode", "nearest")) not in ("linear", "bilinear") or _coordinate_mode(model, node) not in TAPS:
        return None
    x, y = model.shape(node.input[0]), model.shape(node.output[0])
    if x is None or y is None or len(x) not in (3, 4) or len(x) != len(y) or tuple(x[:2]) != tuple(y[:2]):
        return None
    factors = [b / a if a else 0 for a, b in zip(x[2:], y[2:])]
    if any(f not in (1.0, 2.0) for f in factors) or 2.0 not in factors:
        return None
    return [2 + k for k, f in enumerate(factors) if f == 2.0]


class LinearResizeAsNearestAndConv(Pass):
    """Linear Resize/Upsample by 2 (half_pixel, pytorch_half_pixel, asymmetric) -> nearest + depthwise Conv per axis."""

    def call(self, model: Model) -> PassResult:
        done = []
        for node in list(model.nodes_of(["Resize", "Upsample"])):
            axes = doubled_axes(model, node)
            if axes is None:
                continue
            mode = _coordinate_mode(model, node)
            y = model.shape(node.output[0])
            out = node.output[0]
            _make_nearest(model, node)
            src = node.output[0] = f"{out}_nearest"
            new: list[onnx.NodeProto] = []
            for k, axis in enumerate(axes):
                dst = out if k == len(axes) - 1 else f"{out}_axis{axis}"
                new += _axis_filter(model, node.name, src, dst, y, axis, mode)
                src = dst
            idx = list(model.graph.node).index(node)
            for j, n in enumerate(new):
                model.graph.node.insert(idx + 1 + j, n)
            model.invalidate()
            done.append(node.name)
        if done:
            from codesign.passes.shapes import infer_shapes

            infer_shapes(model)
        return PassResult(model, bool(done), {"linear_resizes": done})


def _make_nearest(model: Model, node: onnx.NodeProto) -> None:
    """The node itself becomes nearest upsampling (``u[j] = x[floor(j / 2)]`` in every opset)."""
    keep = [a for a in node.attribute if a.name not in ("mode", "coordinate_transformation_mode", "nearest_mode",
                                                          "cubic_coeff_a", "exclude_outside", "antialias")]  # fmt: skip
    node.ClearField("attribute")
    node.attribute.extend(keep)
    node.attribute.append(helper.make_attribute("mode", "nearest"))
    if node.op_type == "Resize" and (default_opset(model.proto) or 1) >= 11:
        node.attribute.append(helper.make_attribute("coordinate_transformation_mode", "asymmetric"))
        node.attribute.append(helper.make_attribute("nearest_mode", "floor"))


def _axis_filter(
    model: Model, base: str, src: str, dst: str, shape: tuple[int, ...], axis: int, mode: str
) -> list[onnx.NodeProto]:
    """``dst = DepthwiseConv(src, taps along axis) + src * edge_mask``: one axis of the interpolation."""
    taps, (first, last) = TAPS[mode]
    channels, rank = int(shape[1]), len(shape)
    kernel = [1] * (rank - 2)
    kernel[axis - 2] = 3
    weight = np.asarray(taps, dtype=np.float32).reshape([1, 1, *kernel])
    w_name = f"{base}_axis{axis}_taps"
    model.set_initializer(w_name, np.broadcast_to(weight, (channels, 1, *kernel)).copy())
    pads = [0] * (2 * (rank - 2))
    pads[axis - 2] = pads[axis - 2 + rank - 2] = 1
    mask = np.zeros([1, 1, *[int(d) for d in shape[2:]]], dtype=np.float32)
    edge = [slice(None)] * rank
    edge[axis] = 0
    mask[tuple(edge)] += first
    edge[axis] = -1
    mask[tuple(edge)] += last
    m_name = f"{base}_axis{axis}_edge_mask"
    model.set_initializer(m_name, mask)
    conv, border = f"{dst}_interior", f"{dst}_edge"
    return [
        helper.make_node("Conv", [src, w_name], [conv], name=f"{base}_axis{axis}_interp", group=channels,
                         kernel_shape=kernel, pads=pads, strides=[1] * len(kernel), dilations=[1] * len(kernel)),
        helper.make_node("Mul", [src, m_name], [border], name=f"{base}_axis{axis}_edge"),
        helper.make_node("Add", [conv, border], [dst], name=f"{base}_axis{axis}_sum"),
    ]  # fmt: skip


__all__ = ["TAPS", "LinearResizeAsNearestAndConv", "doubled_axes"]
