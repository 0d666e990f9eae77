"""Add/Sub/Mul/Div/Max/Min/Concat: two computed tensors -> Merge/Concatenate, one constant -> ApplyAlpha.

A constant operand broadcast over the other (bias, per-channel scale, ``c - x``, ``x / c``)
is an elementwise affine ``x * scale + bias``: hls4ml's ApplyAlpha (its BatchNormalization
kernel) with exact fixed-point types for scale, bias and result when the constants allow.
"""

from __future__ import annotations

import numpy as np
import onnx

from codesign.backends.hls4ml_layers.base import Context, Layer, LayerRefused, attr, handles
from codesign.backends.precision import affine, any_affine_types, range_type, union_type

_MERGE = {"Add": "add", "Sub": "subtract", "Mul": "multiply", "Max": "maximum", "Min": "minimum", "Sum": "add"}


@handles("Add", "Sub", "Mul", "Div", "Max", "Min", "Sum")
def merge(ctx: Context, node: onnx.NodeProto) -> list[Layer]:
    if len(node.input) > 2 and node.op_type in ("Sum", "Max", "Min"):
        if any(ctx.const(t) is not None for t in node.input):
            raise LayerRefused(node, f"{len(node.input)} operands with a constant")
        return _chain(ctx, node, "Merge", op=_MERGE[node.op_type])
    if len(node.input) != 2:
        raise LayerRefused(node, f"{len(node.input)} operands (hls4ml merges two tensors)")
    consts = [ctx.const(t) is not None for t in node.input]
    if any(consts):
        return [_apply_alpha(ctx, node)]
    a, b = ctx.shape(node.input[0]), ctx.shape(node.input[1])
    if a != b:
        raise LayerRefused(node, f"broadcasting two computed tensors ({a} with {b}) (hls4ml merges equal shapes)")
    if node.op_type not in _MERGE:
        raise LayerRefused(node, "division of two computed tensors")
    return [ctx.base(node, "Merge", inputs=list(node.input), op=_MERGE[node.op_type])]


def _apply_alpha(ctx: Context, node: onnx.NodeProto) -> Layer:
    found = affine(ctx.model, node)
    if found is None:
        raise LayerRefused(node, "the constant operand must broadcast onto the computed one (and be non-zero for Div)")
    x, scale, bias = found
    x_t = ctx.precision.tensors.get(x)
    if x_t is not None:
        s_t, b_t, out_t = any_affine_types(x_t, scale, bias)
        ctx.set_precision(node.name, scale=s_t.hls(), bias=b_t.hls(), result=out_t.hls())
    else:  # float constants (a QDQ weight scale, 0.0026): 16 bits where they are, not fixed<16,6>'s 10 fractional
        ctx.set_precision(node.name, scale=range_type(scale).hls(), bias=range_type(bias).hls())
    shape = ctx.shape(x)
    return ctx.base(
        node, "ApplyAlpha", inputs=[x], n_in=int(np.prod(shape)), n_filt=-1,
        scale_data=np.asarray(scale, dtype=np.float64).reshape(shape),
        bias_data=np.asarray(bias, dtype=np.float64).reshape(shape),
    )  # fmt: skip


@handles("Concat")
def concat(ctx: Context, node: onnx.NodeProto) -> list[Layer]:
    """Concatenate two tensors of rank <= 3 (batch excluded) along one axis."""
    if len(node.input) < 2:
        raise LayerRefused(node, "concatenating fewer than two tensors")
    if any(ctx.const(t) is not None for t in node.input):
        raise LayerRefused(node, "concatenating a constant")
    shape = ctx.shape(node.input[0])
    rank = len(shape)
    if rank > 3:
        raise LayerRefused(node, f"rank-{rank} concatenation (hls4ml: up to 3)")
    axis = int(attr(node, "axis", 1))
    axis = axis + rank + 1 if axis < 0 else axis
    if axis == 0:
        raise LayerRefused(node, "concatenation along the batch axis")
    # hls4ml's axis counts the batch (its layer subtracts one from a positive axis)
    return _chain(ctx, node, "Concatenate", op=f"concatenate{rank}d", axis=axis)


def _chain(ctx: Context, node: onnx.NodeProto, cls: str, **attrs) -> list[Layer]:
    """n operands as n-1 two-input layers (``<name>_part<k>``, the last one named after the node)."""
    layers: list[Layer] = []
    acc, acc_t = node.input[0], ctx.precision.tensors.get(node.input[0])
    for k, other in enumerate(node.input[1:], start=1):
        last = k == len(node.input) - 1
        layer = ctx.base(node, cls, inputs=[acc, other], **attrs)
        if not last:
            layer["name"], layer["outputs"] = f"{node.name}_part{k}", [f"{node.output[0]}_part{k}"]
        other_t = ctx.precision.tensors.get(other)
        if cls == "Concatenate" and acc_t is not None and other_t is not None:
            acc_t = union_type([acc_t, other_t])
            ctx.set_precision(layer["name"], result=acc_t.hls())
        else:
            acc_t = None  # merges: hls4ml infers from the typed inputs
        layers.append(layer)
        acc = layer["outputs"][0]
    return layers


__all__ = ["concat", "merge"]
