"""Conv 1-D/2-D (channels-last, OHWI weights): Conv1D/Conv2D, depthwise as DepthwiseConv1D/2D."""

from __future__ import annotations

import numpy as np
import onnx

from codesign.backends.hls4ml_layers.base import Context, Layer, LayerRefused, attr, handles

CHANNELS_LAST = "qonnx.custom_op.channels_last"


def window(ctx: Context, node: onnx.NodeProto, nsp: int, kernel: list[int]) -> dict[str, int]:
    """hls4ml's spatial attributes (sizes, kernel, strides, pads) of a channels-last Conv/pool node."""
    x, y = ctx.shape(node.input[0]), ctx.shape(node.output[0])
    strides = list(attr(node, "strides", [1] * nsp))
    pads = list(attr(node, "pads", [0] * (2 * nsp)))
    names = ["width"] if nsp == 1 else ["height", "width"]
    out: dict[str, int] = {}
    for i, n in enumerate(names):
        out[f"in_{n}"], out[f"out_{n}"] = int(x[i]), int(y[i])
        out[f"filt_{n}"], out[f"stride_{n}"] = int(kernel[i]), int(strides[i])
    if nsp == 1:
        out["pad_left"], out["pad_right"] = int(pads[0]), int(pads[1])
    else:
        out["pad_top"], out["pad_left"], out["pad_bottom"], out["pad_right"] = (int(p) for p in pads)
    return out


def spatial_rank(ctx: Context, node: onnx.NodeProto) -> int:
    """1 or 2 spatial dims of a channels-last node's input, refused otherwise (or if not channels-last)."""
    nsp = len(ctx.shape(node.input[0])) - 1
    if node.domain != CHANNELS_LAST:
        raise LayerRefused(node, "a channels-first spatial op survived the channels-last lowering")
    if nsp not in (1, 2):
        raise LayerRefused(node, f"{nsp}-D spatial op (hls4ml: 1-D and 2-D)")
    return nsp


@handles("Conv")
def conv(ctx: Context, node: onnx.NodeProto) -> list[Layer]:
    nsp = spatial_rank(ctx, node)
    w = ctx.const(node.input[1])
    if w is None:
        raise LayerRefused(node, "the weight must be a constant")
    if any(int(d) != 1 for d in attr(node, "dilations", [1] * nsp)):
        raise LayerRefused(node, f"dilations {list(attr(node, 'dilations'))} (hls4ml: 1 only)")
    n_filt, n_chan = int(w.shape[0]), int(ctx.shape(node.input[0])[-1])
    group = int(attr(node, "group", 1))
    bias_name = node.input[2] if len(node.input) > 2 and node.input[2] else ""
    bias = ctx.const(bias_name) if bias_name else np.zeros(n_filt, dtype=np.float32)
    if bias is None:
        raise LayerRefused(node, "the bias must be a constant")
    common = {
        **window(ctx, node, nsp, list(w.shape[1:-1])), "n_chan": n_chan, "n_filt": n_filt,
        "data_format": "channels_last", "bias_data": np.asarray(bias, dtype=np.float32).reshape(n_filt),
        "use_bias": bool(bias_name),
    }  # fmt: skip
    perm = (1, 2, 0) if nsp == 1 else (1, 2, 3, 0)  # OHWI -> HWIO (keras' kernel layout)
    if group == 1:
        cls = f"Conv{nsp}D"
        common["weight_data"] = np.transpose(np.asarray(w, dtype=np.float32), perm)
    elif group == n_chan:
        cls = f"DepthwiseConv{nsp}D"
        common["depth_multiplier"] = n_filt // n_chan
        common["depthwise_data"] = np.transpose(np.asarray(w, dtype=np.float32), perm)
    else:
        raise LayerRefused(node, f"grouped convolution ({group} groups of {n_chan} channels; hls4ml: 1 or depthwise)")
    types = ctx.types(node.name)
    if types:
        ctx.set_precision(node.name, **types)
    return [ctx.base(node, cls, **common)]


__all__ = ["conv", "spatial_rank", "window"]
