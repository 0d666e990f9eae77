"""BatchNormalization (inference form) -> hls4ml BatchNormalization: ``x * scale + bias`` per channel."""

from __future__ import annotations

import numpy as np
import onnx

from codesign.backends import precision
from codesign.backends.hls4ml_layers.base import Context, Layer, LayerRefused, handles
from codesign.backends.precision import affine_types, float_affine_types, range_type


def bn_affine(ctx: Context, node: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (scale, bias) of an inference BatchNormalization."""
    found = precision.bn_affine(ctx.model, node)
    if found is None:
        raise LayerRefused(node, "scale, bias, mean and variance must be constants")
    return found


@handles("BatchNormalization")
def batchnorm(ctx: Context, node: onnx.NodeProto) -> list[Layer]:
    shape = ctx.shape(node.input[0])
    scale, bias = bn_affine(ctx, node)
    n_filt = int(shape[-1])
    if scale.size != n_filt:
        raise LayerRefused(node, f"{scale.size} BN channels for a tensor of shape {shape} (channels last expected)")
    x_t = ctx.precision.tensors.get(node.input[0])
    reps = int(np.prod(shape)) // n_filt
    types = affine_types(x_t, np.tile(scale, reps), np.tile(bias, reps)) if x_t is not None else None
    exact = ctx.types(node.name)  # precision.exact_affine_layer: an exact fixed-point BN (result only if no Quant)
    if exact:
        if types is not None and "result" not in exact:
            exact["result"] = types[2].hls()
        ctx.set_precision(node.name, **exact)
    elif types is not None:
        s_t, b_t, out_t = types
        ctx.set_precision(node.name, scale=s_t.hls(), bias=b_t.hls(), result=out_t.hls())
    elif x_t is not None:  # float constants (Brevitas' BN between accumulator and quantizer): 24/32 bits
        s_t, b_t, out_t = float_affine_types(x_t, scale, bias)
        ctx.set_precision(node.name, scale=s_t.hls(), bias=b_t.hls(), result=out_t.hls())
    else:  # float constants, untyped input: 16 bits where their values are (the result type is hls4ml's inference)
        ctx.set_precision(node.name, scale=range_type(scale).hls(), bias=range_type(bias).hls())
    return [ctx.base(node, "BatchNormalization", n_in=int(np.prod(shape)), n_filt=n_filt if len(shape) > 1 else -1,
                     scale_data=scale, bias_data=bias, data_format="channels_last")]  # fmt: skip


__all__ = ["batchnorm", "bn_affine"]
