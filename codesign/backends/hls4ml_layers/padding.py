"""Pad (constant zero, spatial axes only, channels-last) -> ZeroPadding1D/2D; negative pads -> Cropping1D/2D."""

from __future__ import annotations

import numpy as np
import onnx

from codesign.backends.hls4ml_layers.base import Context, Layer, LayerRefused, attr, handles


@handles("Pad")
def pad(ctx: Context, node: onnx.NodeProto) -> list[Layer]:
    x, y = ctx.shape(node.input[0]), ctx.shape(node.output[0])
    nsp = len(x) - 1
    mode = str(attr(node, "mode", "constant"))
    value = ctx.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    pads = ctx.const(node.input[1]) if len(node.input) > 1 and node.input[1] else np.asarray(attr(node, "pads", []))
    if mode != "constant" or (value is not None and np.any(value != 0)):
        raise LayerRefused(node, f"{mode} padding with value {value} (hls4ml: zero padding)")
    if pads is None or nsp not in (1, 2) or len(node.input) > 3:
        raise LayerRefused(node, "padding needs constant pads on a 1-D/2-D channels-last tensor")
    rank = len(x) + 1
    begin, end = [int(p) for p in np.asarray(pads).ravel()[:rank]], [int(p) for p in np.asarray(pads).ravel()[rank:]]
    if begin[0] or end[0] or begin[-1] or end[-1]:
        raise LayerRefused(node, "padding the batch or channel axis")
    if all(p <= 0 for p in begin + end):  # ONNX's cropping: hls4ml's Cropping layers
        geo = {"in_width": x[-2], "out_width": y[-2], "n_chan": x[-1], "crop_left": -begin[-2], "crop_right": -end[-2]}
        if nsp == 2:
            geo.update(in_height=x[0], out_height=y[0], crop_top=-begin[1], crop_bottom=-end[1])
        return [ctx.base(node, f"Cropping{nsp}D", data_format="channels_last", **geo)]
    if any(p < 0 for p in begin + end):
        raise LayerRefused(node, "padding some sides and cropping others (hls4ml: one or the other)")
    geo = {"in_width": x[-2], "out_width": y[-2], "n_chan": x[-1], "pad_left": begin[-2], "pad_right": end[-2]}
    if nsp == 2:
        geo.update(in_height=x[0], out_height=y[0], pad_top=begin[1], pad_bottom=end[1])
    return [ctx.base(node, f"ZeroPadding{nsp}D", data_format="channels_last", **geo)]


__all__ = ["pad"]
