"""MaxPool/AveragePool (1-D/2-D, channels-last) and GlobalMaxPool/GlobalAveragePool."""

from __future__ import annotations

import math

import numpy as np
import onnx

from codesign.backends.hls4ml_layers.base import Context, Layer, LayerRefused, attr, handles
from codesign.backends.hls4ml_layers.conv import spatial_rank, window
from codesign.backends.precision import Fixed, avg_pool_types

#: the one-hot taps of a streamed overlapping max pool: 0 and 1 exactly
_TAP_WEIGHT = Fixed(2, 2)


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
    overlapping = ctx.io == "stream" and nsp == 2 and strides != [int(k) for k in kernel]
    if overlapping and node.op_type != "MaxPool":
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
    if overlapping:
        return [*padding, *_max_of_taps(ctx, node, geo, n_filt, padding[0]["outputs"][0] if padding else None)]
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


def _max_of_taps(ctx: Context, node: onnx.NodeProto, geo: dict, n_filt: int, padded: str | None) -> list[Layer]:
    """A 2-D max pool whose stride is not its window, for io_stream: per axis, one-hot depthwise convs and maxima.

    hls4ml's streamed 2-D pools assert stride == window. Over the width, tap ``j`` of the window
    is a depthwise conv (1 x k, the pool's stride) whose kernel is 1 at ``j``: it reads exactly
    ``x[:, s*o + j]``; the taps' elementwise Maximum (hls4ml Merge) is the row pool, and the same
    over the height finishes it. Two stages keep each stream's copies under hls4ml's clone limit
    (7). Every step is exact on the input's type, so the IR's MaxPool stays the reference.
    """
    x_t = ctx.precision.tensors.get(node.input[0])
    src = padded or ctx.src(node.input[0])
    height, width = geo["in_height"], geo["in_width"]
    layers: list[Layer] = []
    for axis in ("width", "height"):
        k, s = geo[f"pool_{axis}"], geo[f"stride_{axis}"]
        last = axis == "height"
        out_h = geo["out_height"] if last else height
        out_w = geo["out_width"]
        if k == 1 and s == 1:
            continue
        taps = []
        for j in range(k):
            kernel = np.zeros((k, 1, n_filt, 1) if last else (1, k, n_filt, 1), dtype=np.float32)
            kernel[(j, 0) if last else (0, j)] = 1.0
            name = f"{node.name}_{axis}_tap{j}"
            layers.append({
                "name": name, "class_name": "DepthwiseConv2D", "inputs": [src], "outputs": [name],
                "data_format": "channels_last", "in_height": height, "in_width": width,
                "out_height": out_h, "out_width": out_w, "filt_height": k if last else 1,
                "filt_width": 1 if last else k, "stride_height": s if last else 1, "stride_width": 1 if last else s,
                "pad_top": 0, "pad_bottom": 0, "pad_left": 0, "pad_right": 0, "n_chan": n_filt, "n_filt": n_filt,
                "depth_multiplier": 1, "depthwise_data": kernel, "bias_data": np.zeros(n_filt, np.float32),
                "use_bias": False,
            })  # fmt: skip
            if x_t is not None:
                ctx.set_precision(name, weight=_TAP_WEIGHT.hls(), bias=_TAP_WEIGHT.hls(), accum=x_t.hls(),
                                  result=x_t.hls())  # fmt: skip
            taps.append(name)
        acc = taps[0]
        for j, tap in enumerate(taps[1:], start=1):
            final = last and j == len(taps) - 1
            name = node.name if final else f"{node.name}_{axis}_max{j}"
            layers.append({"name": name, "class_name": "Merge", "inputs": [acc, tap],
                           "outputs": [node.output[0] if final else name], "op": "maximum"})  # fmt: skip
            if x_t is not None:
                ctx.set_precision(name, result=x_t.hls())
            acc = name
        src, height, width = acc, out_h, out_w
    tail = layers[-1]
    if tail["name"] != node.name:  # a 1-tap last stage (window 1, stride s): that tap is the pool's output
        if tail["name"] in ctx.config:
            ctx.config[node.name] = ctx.config.pop(tail["name"])
        tail["name"], tail["outputs"] = node.name, [node.output[0]]
    return layers


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
