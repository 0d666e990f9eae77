"""Elementwise activations: Relu, LeakyRelu, PRelu, Elu, Selu, Sigmoid, Tanh, Softmax, Clip (ReLU6/ReLU1/Hardtanh),
HardSigmoid (HardSwish arrives as HardSigmoid times its input: :mod:`codesign.backends.decompose`)."""

from __future__ import annotations

import numpy as np
import onnx

from codesign.backends.hls4ml_layers.base import Context, Layer, LayerRefused, attr, handles
from codesign.backends.precision import any_affine_types, exact_type, relu_type
from codesign.ir.model import Model

#: ONNX op -> hls4ml ``Activation`` function (nnet::<name>), table-based where hls4ml uses tables.
_PLAIN = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Selu": "selu", "Softplus": "softplus",
          "Softsign": "softsign"}  # fmt: skip
#: hls4ml's fixed-bound ReLUs: Clip(0, hi) for these ``hi``
_CLIPPED_RELU = {6.0: "relu6", 1.0: "relu1"}


#: Activations hls4ml computes by a table over a fixed input span (at most 16 wide), and the table's size cap.
_TABLED = ("Sigmoid", "Tanh", "Selu", "Elu", "Softplus", "Softsign")
MAX_TABLE_SIZE = 1 << 14
#: hls4ml's default ``table_t`` ``ap_fixed<18,8>`` keeps 10 fractional bits; its integer part covers every table.
_TABLE_INTEGER = 8


def _typed(ctx: Context, node: onnx.NodeProto, layer: Layer) -> list[Layer]:
    types = ctx.types(node.name)
    if types:
        ctx.set_precision(node.name, **types)
    if node.op_type in _TABLED:
        _table_resolves_input(ctx, node)
    return [layer]


#: SELU's constants (torch / ONNX defaults)
_SELU_ALPHA, _SELU_GAMMA = 1.6732632423543772, 1.0507009873554805


def _table_resolves_input(ctx: Context, node: onnx.NodeProto, layer: str | None = None) -> None:
    """Size the lookup table so one step is at most the input's LSB, and its entries as fine as the result.

    hls4ml's default 1024 entries over a span of 8-16 step 1/64-1/128: a typed model's finer
    inputs all land on one entry (conv2d_small_mp_keras' three Selus: C-sim top-1 99.3% where
    the typed IR gave 99.8%). Capped at :data:`MAX_TABLE_SIZE` entries. ``layer``: the hls4ml
    layer holding the table, when it is not named after the node.
    """
    x_t = ctx.precision.tensors.get(node.input[0])
    y_t = ctx.precision.tensors.get(node.output[0])
    if x_t is None:
        return
    size = 1024
    while size < MAX_TABLE_SIZE and 16.0 / size > 2.0**-x_t.frac:
        size *= 2
    name = layer or node.name
    ctx.config.setdefault(name, {})["TableSize"] = size
    frac = max(10, (y_t.frac if y_t is not None else 10) + 2)
    ctx.set_precision(name, table=f"fixed<{_TABLE_INTEGER + frac},{_TABLE_INTEGER}>")


def _streamed_selu(ctx: Context, node: onnx.NodeProto) -> list[Layer]:
    """SELU as ELU(alpha) then a scale by gamma, for io_stream: hls4ml's streamed selu casts gamma to the
    input's type (1.0507 -> 1.0 on a 3-fractional-bit input: the positive half off by 5%)."""
    elu = {"name": f"{node.name}_elu", "class_name": "ELU", "activation": "ELU", "activ_param": _SELU_ALPHA,
           "inputs": [ctx.src(node.input[0])], "outputs": [f"{node.name}_elu"]}  # fmt: skip
    shape = ctx.shape(node.input[0])
    scale = ctx.base(node, "ApplyAlpha", inputs=[], n_in=int(np.prod(shape)), n_filt=-1,
                     scale_data=np.full(shape, _SELU_GAMMA), bias_data=np.zeros(shape))  # fmt: skip
    scale["inputs"] = [elu["name"]]
    y_t = ctx.precision.tensors.get(node.output[0])
    if y_t is not None:  # the ELU's output: the result's range over gamma, with spare fractional bits
        ctx.set_precision(elu["name"], result=f"fixed<{y_t.width + 8},{y_t.integer}>")
        ctx.set_precision(node.name, scale="fixed<18,2>", bias="fixed<2,2>", result=y_t.hls())
    _table_resolves_input(ctx, node, elu["name"])
    return [elu, scale]


@handles(*_PLAIN)
def plain(ctx: Context, node: onnx.NodeProto) -> list[Layer]:
    if node.op_type == "Selu" and ctx.io == "stream":
        return _streamed_selu(ctx, node)
    return _typed(ctx, node, ctx.base(node, "Activation", activation=_PLAIN[node.op_type]))


@handles("LeakyRelu", "Elu")
def parametrized(ctx: Context, node: onnx.NodeProto) -> list[Layer]:
    """LeakyReLU(alpha) / ELU(alpha), as hls4ml's Keras converter spells them."""
    cls = {"LeakyRelu": "LeakyReLU", "Elu": "ELU"}[node.op_type]
    alpha = float(attr(node, "alpha", 0.01 if node.op_type == "LeakyRelu" else 1.0))
    return _typed(ctx, node, ctx.base(node, cls, activation=cls, activ_param=alpha))


@handles("ThresholdedRelu")
def thresholded_relu(ctx: Context, node: onnx.NodeProto) -> list[Layer]:
    """ThresholdedRelu(alpha): ``x if x > alpha else 0``, hls4ml's thresholded_relu; alpha typed exactly."""
    alpha = float(attr(node, "alpha", 1.0))
    layer = ctx.base(node, "ThresholdedReLU", activation="ThresholdedReLU", activ_param=alpha)
    exact = exact_type(np.array([alpha]))
    if exact is None:
        raise LayerRefused(node, f"alpha {alpha} has no exact fixed-point type (hls4ml compares in fixed point)")
    ctx.set_precision(node.name, param=exact.hls())
    return _typed(ctx, node, layer)


@handles("PRelu")
def prelu(ctx: Context, node: onnx.NodeProto) -> list[Layer]:
    """PReLU(x, slope): hls4ml's PReLU, one slope per element (ONNX broadcasts it: per channel or one)."""
    slope = ctx.const(node.input[1])
    if slope is None:
        raise LayerRefused(node, "the slope must be a constant")
    shape = ctx.shape(node.input[0])
    try:
        alpha = np.broadcast_to(np.asarray(slope, dtype=np.float32), [1, *shape]).reshape(-1).copy()
    except ValueError:
        raise LayerRefused(node, f"slope of shape {np.shape(slope)} does not broadcast onto {shape}") from None
    return _typed(ctx, node, ctx.base(node, "PReLU", activation="prelu", param_data=alpha))


@handles("HardSigmoid")
def hard_sigmoid(ctx: Context, node: onnx.NodeProto) -> list[Layer]:
    """HardSigmoid(alpha, beta) = clip(alpha x + beta, 0, 1): hls4ml's hard_sigmoid with slope alpha, shift beta."""
    alpha, beta = float(attr(node, "alpha", 0.2)), float(attr(node, "beta", 0.5))
    layer = ctx.base(node, "HardActivation", activation="hard_sigmoid", slope=alpha, shift=beta)
    return _typed(ctx, node, layer)


def softmax_code_scale(model: Model, quant: onnx.NodeProto | None) -> tuple[float, int] | None:
    """``(s, bits)`` when ``quant`` is a per-tensor non-power-of-two Quant read only by Softmaxes.

    Those Softmaxes read the Quant's integer codes and fold ``s`` into their exp table
    (hls4ml's ``exp_scale``): ``x_max - x`` is then an exact table index, where the rescaled
    value ``q * s`` in a fixed type lands between entries (a QDQ jet tagger: 92% top-1).
    """
    from codesign.backends.precision import quant_type

    if quant is None or quant.op_type != "Quant" or len(quant.input) < 4 or quant_type(model, quant) is not None:
        return None
    scale, zero, bits = (model.constant(i) for i in quant.input[1:4])
    if scale is None or zero is None or bits is None or np.size(scale) != 1 or np.size(zero) != 1:
        return None
    if np.size(bits) != 1 or quant.output[0] in model.outputs:
        return None
    readers = model.consumers(quant.output[0])
    if not readers or any(r.op_type != "Softmax" for r in readers):
        return None
    return float(np.asarray(scale).ravel()[0]), int(np.ceil(float(np.asarray(bits).ravel()[0])))


@handles("Softmax")
def softmax(ctx: Context, node: onnx.NodeProto) -> list[Layer]:
    """Softmax over the last axis (hls4ml's only axis; the channels-last graph puts channels there).

    io_parallel: one softmax per row (``n_outer`` rows; attention's (positions, positions) scores);
    without it hls4ml normalised the whole tensor as one vector. io_stream normalises each pixel's channels.
    """
    shape = ctx.shape(node.input[0])
    rank = len(shape) + 1
    axis = int(attr(node, "axis", -1))
    if axis not in (-1, rank - 1) and not all(d == 1 for d in shape[axis:-1]):
        raise LayerRefused(node, f"softmax over axis {axis} of a rank-{rank} tensor (hls4ml: last axis only)")
    layer = ctx.base(node, "Softmax", activation="softmax", axis=-1)
    rows = int(np.prod(shape[:-1], dtype=np.int64))
    if ctx.io == "parallel" and rows > 1:
        layer["n_outer"], layer["n_inner"] = rows, 1
    coded = softmax_code_scale(ctx.model, ctx.model.producer(node.input[0]))
    if coded is not None:
        layer["exp_scale"] = coded[0]  # the input is the Quant's codes (see the Quant handler)
    return _typed(ctx, node, layer)


@handles("Clip")
def clip(ctx: Context, node: onnx.NodeProto) -> list[Layer]:
    """Clip(0, 6) -> relu6, Clip(0, 1) -> relu1 (hls4ml's clipped ReLUs); Clip(-1, 1) (Hardtanh) -> hard_tanh.

    hls4ml's hard_tanh is ``2 * clip(slope * x + shift, 0, 1) - 1``: slope = shift = 1/2 is exactly
    clip(x, -1, 1) in fixed point (a one-bit shift and an add).
    """
    lo, hi = attr(node, "min"), attr(node, "max")
    if len(node.input) > 1 and node.input[1]:
        v = ctx.const(node.input[1])
        lo = None if v is None else float(v.ravel()[0])
    if len(node.input) > 2 and node.input[2]:
        v = ctx.const(node.input[2])
        hi = None if v is None else float(v.ravel()[0])
    if lo is not None and hi is not None and (float(lo), float(hi)) == (-1.0, 1.0):
        layer = ctx.base(node, "HardActivation", activation="hard_tanh", slope=0.5, shift=0.5)
        return _typed(ctx, node, layer)
    if lo is None or hi is None or float(lo) != 0.0 or float(hi) not in _CLIPPED_RELU:
        raise LayerRefused(node, f"only Clip(0, 6), Clip(0, 1) and Clip(-1, 1) map to hls4ml (got min={lo}, max={hi})")
    if ctx.io == "stream":
        return _streamed_clipped_relu(ctx, node, float(hi))
    return _typed(ctx, node, ctx.base(node, "Activation", activation=_CLIPPED_RELU[float(hi)]))


def _streamed_clipped_relu(ctx: Context, node: onnx.NodeProto, hi: float) -> list[Layer]:
    """Clip(x, 0, hi) as ``relu(x) - relu(x - hi)`` for io_stream, where hls4ml has no relu6/relu1 (g++ fails).

    Exact in fixed point: each step is typed to hold its value (the shift one integer bit wider),
    and the difference is cast once, to the Clip's own result type, as relu6's result was.
    """
    x_t = ctx.precision.tensors.get(node.input[0])
    name, src = node.name, ctx.src(node.input[0])
    shift = {"name": f"{name}_minus_max", "class_name": "ApplyAlpha", "inputs": [src], "outputs": [f"{name}_minus_max"],
             "n_in": int(np.prod(ctx.shape(node.input[0]))), "n_filt": -1,
             "scale_data": np.ones(ctx.shape(node.input[0])), "bias_data": np.full(ctx.shape(node.input[0]), -hi)}  # fmt: skip
    below = {"name": f"{name}_relu", "class_name": "Activation", "activation": "relu", "inputs": [src],
             "outputs": [f"{name}_relu"]}  # fmt: skip
    over = {"name": f"{name}_over", "class_name": "Activation", "activation": "relu", "inputs": [shift["name"]],
            "outputs": [f"{name}_over"]}  # fmt: skip
    diff = ctx.base(node, "Merge", inputs=[], op="subtract")
    diff["inputs"] = [below["name"], over["name"]]
    if x_t is not None:
        s_t, b_t, shifted = any_affine_types(x_t, shift["scale_data"], shift["bias_data"])
        ctx.set_precision(shift["name"], scale=s_t.hls(), bias=b_t.hls(), result=shifted.hls())
        ctx.set_precision(below["name"], result=relu_type(x_t).hls())
        ctx.set_precision(over["name"], result=relu_type(shifted).hls())
    types = ctx.types(node.name)
    if types:
        ctx.set_precision(node.name, **types)
    return [below, shift, over, diff]


__all__ = ["clip", "hard_sigmoid", "parametrized", "plain", "softmax", "softmax_code_scale", "thresholded_relu"]
