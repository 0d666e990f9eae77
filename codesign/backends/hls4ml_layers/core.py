"""Quantizers, removed ops (Identity/Dropout) and MatMul -> Dense (bias Add fused)."""

from __future__ import annotations

import numpy as np
import onnx

from codesign.backends.hls4ml_layers.base import Context, Layer, LayerRefused, attr, handles
from codesign.backends.precision import _bias_after, quant_type, rescaled_quant_types


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

    Other scales go to hls4ml's own Quant layer, which its QONNX optimisers turn into
    scale -> integer cast -> rescale (ApplyAlpha around a linear activation).
    """
    from hls4ml.model.optimizer.passes.quant_opt import _calculate_precision_quantizer

    t = quant_type(ctx.model, node)
    if t is not None:
        mode = str(attr(node, "rounding_mode", "ROUND")).upper()
        precision, quantizer = _calculate_precision_quantizer(
            t.width, t.integer, t.signed, bool(attr(node, "narrow", 0)), mode
        )
        ctx.set_precision(node.name, result=str(precision))
        return [ctx.base(node, "Activation", activation="linear", quantizer=quantizer)]
    params = list(node.input[1:4])
    if any(ctx.const(p) is None for p in params):
        raise LayerRefused(node, "scale, zero point and bit width must be constants")
    types = {k: t.hls() for k, t in rescaled_quant_types(ctx.model, node).items()}
    ctx.set_precision(node.name, **types)
    layer = ctx.base(
        node, "Quant", inputs=[node.input[0], *params], narrow=bool(attr(node, "narrow", 0)),
        rounding_mode=str(attr(node, "rounding_mode", "ROUND")), signed=bool(attr(node, "signed", 1)),
    )  # fmt: skip
    return [*_constant_layers(ctx, params), layer, *_output_after_split(ctx, node, layer, types.get("result"))]


def _output_after_split(ctx: Context, node: onnx.NodeProto, layer: Layer, result: str | None) -> list[Layer]:
    """A linear layer after a model-output Quant that hls4ml splits into scale -> cast -> rescale.

    hls4ml 1.3 names the output layer's type ``result_t`` when it creates it and keeps that name
    on the cast once the rescale is inserted after it: the writer emits one ``result_t`` (the
    cast's integer codes) and the model output loses its fraction (QDQ models, which end in a
    quantizer, output zeros). Behind this layer the Quant is no longer the output.
    """
    out = node.output[0]
    if out not in ctx.model.outputs:
        return []
    layer["outputs"] = [f"{out}_dequantized"]
    name = f"{node.name}_output"
    if result is not None:
        ctx.set_precision(name, result=result)
    return [{"name": name, "class_name": "Activation", "activation": "linear", "inputs": layer["outputs"],
             "outputs": [out]}]  # fmt: skip


@handles("BipolarQuant")
def bipolar_quant(ctx: Context, node: onnx.NodeProto) -> list[Layer]:
    """hls4ml's BipolarQuant layer (its optimisers make it a 1-bit activation)."""
    return [*_constant_layers(ctx, [node.input[1]]), ctx.base(node, "BipolarQuant", inputs=list(node.input[:2]))]


@handles("MatMul", "Gemm")
def dense(ctx: Context, node: onnx.NodeProto) -> list[Layer]:
    """``x @ W (+ b)`` -> Dense; the constant bias Add right after is fused (hls4ml adds it in the accumulator)."""
    if node.op_type == "Gemm":
        raise LayerRefused(node, "Gemm should have been lowered to MatMul")
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
