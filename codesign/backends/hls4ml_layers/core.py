"""Quantizers, removed ops (Identity/Dropout) and MatMul -> Dense (bias Add fused) or, two computed operands, Einsum."""

from __future__ import annotations

import numpy as np
import onnx

from codesign.backends.hls4ml_layers.activation import softmax_code_scale
from codesign.backends.hls4ml_layers.base import Context, Layer, LayerRefused, attr, handles
from codesign.backends.hls4ml_layers.einsum import activation_matmul
from codesign.backends.precision import _bias_after, is_activation_matmul, quant_type, rescaled_quant_types


@handles("Identity", "Dropout")
def skip(ctx: Context, node: onnx.NodeProto) -> list[Layer]:
    """No layer: the output is the input (Dropout is the identity at inference)."""
    for out in node.output[:1]:
        ctx.alias[out] = ctx.src(node.input[0])
    return []


def _constant_layers(ctx: Context, tensors: list[str]) -> list[Layer]:
    return [{"name": t, "class_name": "Constant", "value": np.asarray(ctx.const(t))} for t in tensors]


@handles("Quant")
def quant(ctx: Context, node: onnx.NodeProto) -> list[Layer]:
    """A power-of-two Quant is a cast to ``fixed<b, b+log2 s>`` (a linear activation with that result type).

    Other scales become scale -> integer cast -> rescale (ApplyAlpha, linear activation, ApplyAlpha),
    built here: hls4ml's own Quant optimiser inserts its scale ApplyAlpha before the *first* consumer
    of the Quant's input, so a tensor that also feeds a residual branch reached the wrong layer scaled.
    """
    from hls4ml.model.optimizer.passes.quant_opt import _calculate_precision_quantizer

    t = quant_type(ctx.model, node)
    mode = str(attr(node, "rounding_mode", "ROUND")).upper()
    narrow, signed = bool(attr(node, "narrow", 0)), bool(attr(node, "signed", 1))
    if t is not None:
        precision, quantizer = _calculate_precision_quantizer(t.width, t.integer, t.signed, narrow, mode)
        ctx.set_precision(node.name, result=str(precision))
        return [ctx.base(node, "Activation", activation="linear", quantizer=quantizer)]
    scale, zero, bits = (ctx.const(p) for p in node.input[1:4])
    if scale is None or zero is None or bits is None or np.size(bits) != 1:
        raise LayerRefused(node, "scale, zero point and bit width must be constants (one bit width)")
    shape = ctx.shape(node.input[0])
    try:
        s = np.broadcast_to(np.asarray(scale, dtype=np.float64), [1, *shape]).reshape(shape)
        z = np.broadcast_to(np.asarray(zero, dtype=np.float64), [1, *shape]).reshape(shape)
    except ValueError:
        raise LayerRefused(node, f"scale/zero point of shape {np.shape(scale)} do not broadcast onto {shape}") from None
    b = int(np.ceil(float(np.asarray(bits).ravel()[0])))
    precision, quantizer = _calculate_precision_quantizer(b, b, signed, narrow, mode)
    types = {k: t.hls() for k, t in rescaled_quant_types(ctx.model, node).items()}
    out = node.output[0]
    n_in = int(np.prod(shape))
    scaled = ctx.base(node, "ApplyAlpha", n_in=n_in, n_filt=-1, scale_data=1.0 / s, bias_data=z)
    scaled["name"], scaled["outputs"] = f"{node.name}_scale", [f"{out}_scaled"]
    cast = {"name": f"{node.name}_act", "class_name": "Activation", "inputs": [f"{out}_scaled"],
            "outputs": [f"{out}_codes"], "activation": "linear", "quantizer": quantizer}  # fmt: skip
    rescaled = ctx.base(node, "ApplyAlpha", inputs=[], n_in=n_in, n_filt=-1, scale_data=s, bias_data=-z * s)
    rescaled["name"], rescaled["inputs"] = f"{node.name}_rescale", [f"{out}_codes"]
    for layer in (scaled, rescaled):
        ctx.set_precision(layer["name"], **types)
    ctx.set_precision(cast["name"], result=str(precision))
    if softmax_code_scale(ctx.model, node) is not None:  # its Softmaxes read the codes, scaled in their table
        ctx.alias[out] = f"{out}_codes"
        return [scaled, cast]
    return [scaled, cast, rescaled]


@handles("BipolarQuant")
def bipolar_quant(ctx: Context, node: onnx.NodeProto) -> list[Layer]:
    """hls4ml's BipolarQuant layer (its optimisers make it a 1-bit activation)."""
    return [*_constant_layers(ctx, [node.input[1]]), ctx.base(node, "BipolarQuant", inputs=list(node.input[:2]))]


@handles("MatMul", "Gemm")
def dense(ctx: Context, node: onnx.NodeProto) -> list[Layer]:
    """``x @ W (+ b)`` -> Dense; the constant bias Add right after is fused (hls4ml adds it in the accumulator).

    Two computed operands (attention) are an Einsum instead (:mod:`einsum`).
    """
    if node.op_type == "Gemm":
        raise LayerRefused(node, "Gemm should have been lowered to MatMul")
    if is_activation_matmul(ctx.model, node):
        return activation_matmul(ctx, node)
    w = ctx.const(node.input[1])
    if w is None or w.ndim != 2:
        raise LayerRefused(node, "only a constant 2-D weight (x @ W) maps to a Dense layer")
    n_in, n_out = (int(d) for d in w.shape)
    bias = np.zeros(n_out, dtype=np.float32)
    out = node.output[0]
    found = _bias_after(ctx.model, node)
    if found is not None and np.size(found[1]) in (1, n_out) and out not in ctx.model.outputs:
        add, value, _ = found
        bias = np.broadcast_to(np.asarray(value, dtype=np.float32).ravel(), (n_out,)).copy()
        ctx.fused.add(add.name)
        out = add.output[0]
    types = ctx.types(node.name)
    if types:
        ctx.set_precision(node.name, **types)
    layer = ctx.base(node, "Dense", n_in=n_in, n_out=n_out, weight_data=np.asarray(w, dtype=np.float32),
                     bias_data=bias, use_bias=found is not None)  # fmt: skip
    layer["outputs"] = [out]
    return [layer]


__all__ = ["bipolar_quant", "dense", "quant", "skip"]
