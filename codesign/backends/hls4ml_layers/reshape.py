"""Flatten/Reshape/Squeeze/Unsqueeze (a Reshape to the static output shape) and Transpose."""

from __future__ import annotations

import onnx

from codesign.backends.hls4ml_layers.base import Context, Layer, LayerRefused, attr, handles


@handles("Flatten", "Reshape", "Squeeze", "Unsqueeze")
def reshape(ctx: Context, node: onnx.NodeProto) -> list[Layer]:
    """Row-major data is unchanged: hls4ml's Reshape to the IR's static output shape (batch dropped)."""
    target = ctx.shape(node.output[0]) or [1]
    return [ctx.base(node, "Reshape", target_shape=target)]


@handles("Transpose")
def transpose(ctx: Context, node: onnx.NodeProto) -> list[Layer]:
    """A permutation of the non-batch axes; one that only moves size-1 axes is a Reshape."""
    shape = ctx.shape(node.input[0])
    perm = [int(p) for p in attr(node, "perm", list(reversed(range(len(shape) + 1))))]
    if perm[0] != 0:
        raise LayerRefused(node, f"perm {perm} moves the batch axis")
    inner = [p - 1 for p in perm[1:]]
    moved = [p for p in inner if shape[p] != 1]
    if moved == sorted(moved):  # data order unchanged
        return reshape(ctx, node)
    if len(inner) > 3:
        raise LayerRefused(node, f"rank-{len(inner)} transpose (hls4ml: up to 3 axes besides the batch)")
    return [ctx.base(node, "Transpose", perm=inner)]


__all__ = ["reshape", "transpose"]
