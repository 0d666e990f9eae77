"""MaxPool/AveragePool (1-D/2-D, channels-last) and GlobalMaxPool/GlobalAveragePool."""

from __future__ import annotations

import math

import onnx

from codesign.backends.hls4ml_layers.base import Context, Layer, LayerRefused, attr, handles
from codesign.backends.hls4ml_layers.conv import spatial_rank, window
from codesign.backends.precision import avg_pool_types


def _average_types(ctx: Context, node: onnx.NodeProto, n: int) -> None:
    x_t = ctx.precision.tensors.get(node.input[0])
    if x_t is not None and node.op_type in ("AveragePool", "GlobalAveragePool"):
        accum, result = avg_pool_types(x_t, n)
        ctx.set_precision(node.name, accum=accum.hls(), result=result.hls())


@handles("MaxPool", "AveragePool")
def pool(ctx: Context, node: onnx.NodeProto) -> list[Layer]:
    nsp = spatial_rank(ctx, node)
    kernel = list(attr(node, "kernel_shape", []))
    if any(int(d) != 1 for d in attr(node, "dilations", [1] * nsp)):
        raise LayerRefused(node, "dilated pooling")
    if attr(node, "ceil_mode", 0):
        raise LayerRefused(node, "ceil_mode=1 pooling")
    geo = window(ctx, node, nsp, kernel)
    strides = [int(s) for s in attr(node, "strides", [1] * nsp)]
    if ctx.io == "stream" and nsp == 2 and strides != [int(k) for k in kernel]:
        raise LayerRefused(
            node, f"{'x'.join(map(str, kernel))} window with stride {'x'.join(map(str, strides))}: hls4ml's "
            "io_stream 2-D pools need the stride equal to the window (its C-simulation aborts otherwise)"
        )  # fmt: skip
    kind = "Max" if node.op_type == "MaxPool" else "Average"
    n_filt = int(ctx.shape(node.input[0])[-1])
    if nsp == 1:
        geo = {"n_in": geo["in_width"], "n_out": geo["out_width"], "pool_width": geo["filt_width"],
               "stride_width": geo["stride_width"], "pad_left": geo["pad_left"], "pad_right": geo["pad_right"]}  # fmt: skip
    else:
        geo["pool_height"], geo["pool_width"] = geo["filt_height"], geo["filt_width"]
    _average_types(ctx, node, math.prod(kernel))
    padding = _explicit_zero_padding(ctx, node, nsp, geo, n_filt)
    layer = ctx.base(node, f"{kind}Pooling{nsp}D", n_filt=n_filt, data_format="channels_last",
                     count_pad=bool(attr(node, "count_include_pad", 0)), **geo)  # fmt: skip
    if padding:
        layer["inputs"] = padding[0]["outputs"]
    return [*padding, layer]


def _explicit_zero_padding(ctx: Context, node: onnx.NodeProto, nsp: int, geo: dict, n_filt: int) -> list[Layer]:
    """A ZeroPadding layer before a padded pool where zeros are exact, the pool then unpadded.

    hls4ml pads max pools with the type's sign bit set, the most negative value of a signed
    type but the largest of an ``ap_ufixed`` (a ReLU's output: every border window took it);
    zeros are exact there (every value >= 0, each window holds one), and for an average that
    counts the padding. Its streamed pools take no padding at all (an assert): the other
    padded pools are refused in ``io_stream``.
    """
    x_t = ctx.precision.tensors.get(node.input[0])
    sides = ("pad_left", "pad_right") if nsp == 1 else ("pad_top", "pad_bottom", "pad_left", "pad_right")
    if not any(geo[k] for k in sides):
        return []
    unsigned_max = node.op_type == "MaxPool" and x_t is not None and not x_t.signed
    counted_average = node.op_type == "AveragePool" and bool(attr(node, "count_include_pad", 0))
    if not (unsigned_max or counted_average):
        if ctx.io == "stream":
            what = "a signed (or untyped) input" if node.op_type == "MaxPool" else "count_include_pad=0"
            raise LayerRefused(node, f"padded {node.op_type} with {what}: hls4ml's io_stream pools take no padding")
        return []
    pads = {k: geo[k] for k in sides}
    if nsp == 1:
        size = {"in_width": geo["n_in"], "out_width": geo["n_in"] + pads["pad_left"] + pads["pad_right"]}
    else:
        size = {"in_height": geo["in_height"], "in_width": geo["in_width"],
                "out_height": geo["in_height"] + pads["pad_top"] + pads["pad_bottom"],
                "out_width": geo["in_width"] + pads["pad_left"] + pads["pad_right"]}  # fmt: skip
    name = f"{node.name}_zero_pad"
    padding = {"name": name, "class_name": f"ZeroPadding{nsp}D", "inputs": [ctx.src(node.input[0])],
               "outputs": [f"{node.output[0]}_padded"], "data_format": "channels_last", "n_chan": n_filt,
               **size, **pads}  # fmt: skip
    if x_t is not None:
        ctx.set_precision(name, result=x_t.hls())
    for k in sides:
        geo[k] = 0
    if nsp == 1:
        geo["n_in"] = size["out_width"]
    else:
        geo["in_height"], geo["in_width"] = size["out_height"], size["out_width"]
    return [padding]


@handles("GlobalMaxPool", "GlobalAveragePool")
def global_pool(ctx: Context, node: onnx.NodeProto) -> list[Layer]:
    nsp = spatial_rank(ctx, node)
    x = ctx.shape(node.input[0])
    kind = "Max" if node.op_type == "GlobalMaxPool" else "Average"
    geo = {"n_in": x[0]} if nsp == 1 else {"in_height": x[0], "in_width": x[1]}
    _average_types(ctx, node, math.prod(x[:-1]))
    layer = ctx.base(node, f"Global{kind}Pooling{nsp}D", n_filt=int(x[-1]), data_format="channels_last", **geo)
    out = ctx.shape(node.output[0])
    if len(out) == 1:
        return [layer]
    # hls4ml's global pools output (C,); the IR keeps (1, 1, C): a reshape back, for spatial consumers
    layer["outputs"] = [f"{node.output[0]}_flat"]
    keep = {"name": f"{node.name}_keepdims", "class_name": "Reshape", "inputs": layer["outputs"],
            "outputs": [node.output[0]], "target_shape": out}  # fmt: skip
    return [layer, keep]


__all__ = ["global_pool", "pool"]
