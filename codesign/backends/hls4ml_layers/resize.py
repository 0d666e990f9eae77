"""Resize: nearest-neighbour upsampling by integer factors (hls4ml's Resize, channels-last).

Linear ones by 2 arrive here as nearest + depthwise Conv (:mod:`codesign.backends.linear_resize`).
"""

from __future__ import annotations

import onnx

from codesign.backends.hls4ml_layers.base import Context, Layer, LayerRefused, attr, handles


@handles("Resize", "Upsample")
def resize(ctx: Context, node: onnx.NodeProto) -> list[Layer]:
    mode = str(attr(node, "mode", "nearest"))
    x, y = ctx.shape(node.input[0]), ctx.shape(node.output[0])
    nsp = len(x) - 1
    if nsp not in (1, 2) or x[-1] != y[-1]:
        raise LayerRefused(node, f"resize of {x} to {y} (hls4ml: 1-D/2-D spatial, channels last, channels kept)")
    if mode != "nearest":
        raise LayerRefused(
            node, f"mode {mode!r} (hls4ml's Resize is nearest only; codesign lowers linear upsampling by exactly 2 "
            "with half_pixel/asymmetric coordinates)",
        )  # fmt: skip
    if str(attr(node, "coordinate_transformation_mode", "half_pixel")) == "align_corners":
        raise LayerRefused(node, "coordinate_transformation_mode 'align_corners'")
    if any(b % a for a, b in zip(x[:-1], y[:-1])):
        raise LayerRefused(node, f"non-integer upsampling {x[:-1]} -> {y[:-1]}")
    geo = {"in_width": x[-2], "out_width": y[-2], "n_chan": x[-1], "in_height": 1, "out_height": 1}  # 1-D: height 1
    if nsp == 2:
        geo.update(in_height=x[0], out_height=y[0])
    return [ctx.base(node, "Resize", algorithm="nearest", data_format="channels_last", **geo)]


__all__ = ["resize"]
