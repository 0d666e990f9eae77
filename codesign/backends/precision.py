"""Fixed-point types for every layer, derived from the IR's quantizers and weights.

hls4ml falls back to one blanket default (``fixed<16,6>``) wherever its QONNX frontend
cannot infer a type: the model input, float biases, accumulators fed by them. Here the
types come from the IR instead: a power-of-two ``Quant`` is exactly ``fixed<b, b+log2 s>``,
an accumulator gets the fractional bits of input x weight and the integer bits of the
exact worst-case sum over its actual weights, so power-of-two models run bit-exact.

A float bias (off the accumulator grid) is typed so results stay bit-exact without
widening every accumulator by ~25 bits: where the MAC's output only reaches coarser
``Quant`` nodes (through ReLU, max-pool, reshapes, adds of on-grid tensors), one guard bit
and a nudged bias value suffice (:func:`nudge_bias`); elsewhere (model outputs) the bias
gets its exact type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper

from codesign.ir.model import Model

#: Extra fractional / integer bits of the model input beyond its first quantizer's grid.
INPUT_GUARD_FRAC = 8
INPUT_GUARD_INT = 2
#: Largest fractional width tried when typing a float constant exactly.
MAX_EXACT_FRAC = 24
MAX_WIDTH = 64
#: Widest accumulator an exactly-typed float bias may produce (C-sim outputs go through
#: ``double``: 53 significant bits).
MAX_EXACT_ACC = 52
#: Bits of a float weight/bias constant the IR gives no datatype for (hls4ml's default width).
FLOAT_CONST_WIDTH = 16

_ACTIVATIONS = frozenset({"Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Sigmoid", "Tanh", "Softplus", "HardSigmoid"})
_PASSTHROUGH = frozenset({"Flatten", "Reshape", "Transpose", "Identity", "Dropout", "MaxPool", "Squeeze", "Unsqueeze"})
#: Ops that keep every element inside its grid cell: monotone, and grid points map to grid points.
_CELL_PRESERVING = _PASSTHROUGH | {"Relu"}


@dataclass(frozen=True)
class Fixed:
    """An ``ap_fixed``/``ap_ufixed`` type: ``width`` bits, ``integer`` of them left of the point."""

    width: int
    integer: int
    signed: bool = True
    rounding: str | None = None
    saturation: str | None = None

    @property
    def frac(self) -> int:
        return self.width - self.integer

    @property
    def lo(self) -> float:
        return -(2.0 ** (self.integer - 1)) if self.signed else 0.0

    @property
    def hi(self) -> float:
        top = self.integer - 1 if self.signed else self.integer
        return 2.0**top - 2.0**-self.frac

    def hls(self) -> str:
        """hls4ml's spelling, e.g. ``fixed<8,1,RND_CONV,SAT>``."""
        base = "fixed" if self.signed else "ufixed"
        modes = [m for m in (self.rounding, self.saturation) if m]
        if self.saturation and not self.rounding:
            modes = ["TRN", self.saturation]
        return f"{base}<{self.width},{self.integer}{''.join(',' + m for m in modes)}>"

    def grid(self, x: np.ndarray) -> np.ndarray:
        """``x`` clipped to this type's range and rounded onto its grid (exactly representable)."""
        step = 2.0**-self.frac
        return np.clip(np.round(np.asarray(x, dtype=np.float64) / step) * step, self.lo, self.hi)

    def cast(self, x: np.ndarray) -> np.ndarray:
        """What assigning float ``x`` to this ``ap_fixed`` does: its rounding (default truncation) and
        overflow (default wrap-around) modes, so a port fed ``cast(x)`` computes as one fed ``x``."""
        step = 2.0**-self.frac
        v = np.asarray(x, dtype=np.float64) / step
        rounding = self.rounding or "TRN"
        rounders = {"TRN": np.floor, "RND_CONV": np.round, "RND": lambda u: np.floor(u + 0.5),
                    "RND_MIN_INF": lambda u: np.ceil(u - 0.5), "TRN_ZERO": np.trunc,
                    "RND_ZERO": lambda u: np.sign(u) * np.ceil(np.abs(u) - 0.5),
                    "RND_INF": lambda u: np.sign(u) * np.floor(np.abs(u) + 0.5)}  # fmt: skip
        q = rounders.get(rounding, np.floor)(v)
        lo, hi = self.lo / step, self.hi / step
        if self.saturation in ("SAT", "SAT_SYM"):
            q = np.clip(q, -hi if self.saturation == "SAT_SYM" and self.signed else lo, hi)
        elif self.saturation == "SAT_ZERO":
            q = np.where((q < lo) | (q > hi), 0.0, q)
        else:  # wrap-around: the low ``width`` bits
            q = np.mod(q - lo, 2.0**self.width) + lo
        return q * step


#: The port type of an input the IR leaves float: hls4ml's default precision.
DEFAULT_INPUT = Fixed(16, 6, True)
#: Softmax/Sigmoid outputs (probabilities in [0, 1]): 16 fractional bits, saturating (their tables' type too).
PROBABILITY = Fixed(18, 2, True, "RND", "SAT")


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            v = helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


def pow2_exponent(value: np.ndarray | None) -> int | None:
    """``k`` when every element of ``value`` equals ``2**k``, else None."""
    if value is None:
        return None
    flat = np.unique(np.asarray(value, dtype=np.float64).ravel())
    if flat.size != 1 or flat[0] <= 0:
        return None
    mantissa, exp = np.frexp(flat[0])
    return int(exp) - 1 if mantissa == 0.5 else None


def quant_type(model: Model, node: onnx.NodeProto) -> Fixed | None:
    """The exact fixed type of a power-of-two, zero-offset ``Quant`` output (else None)."""
    if node.op_type != "Quant" or len(node.input) < 4:
        return None
    scale, zero, bits = (model.constant(i) for i in node.input[1:4])
    k = pow2_exponent(scale)
    if k is None or zero is None or bits is None or np.any(zero != 0) or np.asarray(bits).size != 1:
        return None
    b = math.ceil(float(np.asarray(bits).ravel()[0]))
    signed, narrow = bool(_attr(node, "signed", 1)), bool(_attr(node, "narrow", 0))
    if signed and b == 1:  # qonnx's 1-bit signed Quant is bipolar: {-s, +s}, which fixed<1,..> cannot hold
        return Fixed(2, 2 + k, True) if model.constant(node.output[0]) is not None else None
    rounding = {"ROUND": "RND_CONV", "FLOOR": "TRN"}.get(str(_attr(node, "rounding_mode", "ROUND")).upper())
    if rounding is None:
        return None
    return Fixed(b, b + k, signed, rounding, "SAT_SYM" if narrow and signed else "SAT")


def exact_type(values: np.ndarray, max_frac: int = MAX_EXACT_FRAC) -> Fixed | None:
    """Smallest signed fixed type holding every value of a constant exactly (None if none <= max_frac)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0 or not np.all(np.isfinite(v)):
        return None
    for f in range(-16, max_frac + 1):
        scaled = v * 2.0**f
        if np.all(scaled == np.round(scaled)):
            return _covering(float(v.min()), float(v.max()), f)
    return None


def range_type(values: np.ndarray, width: int = FLOAT_CONST_WIDTH) -> Fixed:
    """A ``width``-bit signed type sized to a float constant's range (rounded, saturating).

    For weights the IR leaves float: the most fractional bits that still hold the
    largest magnitude, instead of one fixed<16,6> for every layer.
    """
    v = np.asarray(values, dtype=np.float64)
    lo, hi = float(v.min(initial=0.0)), float(v.max(initial=0.0))
    integer = 1 - width
    while True:
        t = Fixed(width, integer, True, "RND", "SAT")
        if t.lo <= lo and hi <= t.hi:
            return t
        integer += 1


def _covering(lo: float, hi: float, frac: int, signed: bool = True) -> Fixed:
    """The narrowest type with ``frac`` fractional bits whose range holds [lo, hi]."""
    integer = 1 - frac if signed else -frac
    while True:
        t = Fixed(max(1, integer + frac), integer, signed)
        if t.width == integer + frac and t.lo <= lo and hi <= t.hi:
            return t
        integer += 1


def acc_type(x: Fixed, w: np.ndarray, w_t: Fixed, bias: np.ndarray | None, b_t: Fixed | None) -> Fixed:
    """Accumulator of ``sum_i x_i W_ij (+ b_j)``: exact grid, exact worst-case range over the real weights.

    ``w`` is (fan_in, n_out) as the MAC sees it.
    """
    frac = x.frac + w_t.frac
    if b_t is not None:
        frac = max(frac, b_t.frac)
    hi = np.maximum(w * x.lo, w * x.hi).sum(axis=0)
    lo = np.minimum(w * x.lo, w * x.hi).sum(axis=0)
    if bias is not None:
        b = (
            np.broadcast_to(np.asarray(bias, dtype=np.float64).ravel(), hi.shape)
            if np.size(bias) in (1, hi.size)
            else 0.0
        )
        hi, lo = hi + b, lo + b
    return _covering(float(np.min(lo, initial=0.0)), float(np.max(hi, initial=0.0)), frac)


def product_acc_type(a: Fixed, b: Fixed, n: int) -> Fixed:
    """Accumulator of ``n`` products ``a_i b_i`` of two computed tensors: exact grid, worst case of the types' ranges."""
    corners = [x * y for x in (a.lo, a.hi) for y in (b.lo, b.hi)]
    return _covering(n * min(corners), n * max(corners), a.frac + b.frac)


def is_activation_matmul(model: Model, node: onnx.NodeProto) -> bool:
    """A MatMul of two computed tensors (attention's q @ k^T, attn @ v): no weight to fold into a Dense."""
    return len(node.input) == 2 and all(model.constant(t) is None for t in node.input)


def _product_layer(model: Model, node: onnx.NodeProto, tensors: dict[str, Fixed]) -> LayerPrecision | None:
    """Exact accumulator/result of an activation MatMul (hls4ml's Einsum), when both operands are typed."""
    a, b = (tensors.get(t) for t in node.input)
    shape = model.shape(node.input[0])
    if a is None or b is None or not shape:
        return None
    acc = product_acc_type(a, b, int(shape[-1]))  # the inner dimension
    if acc.width > MAX_WIDTH:
        return None
    return LayerPrecision(node.name, node.op_type, {"accum": acc, "result": acc})


@dataclass
class LayerPrecision:
    """Precisions of one lowered node, keyed as in hls4ml's per-layer ``Precision`` config."""

    node: str
    op: str
    types: dict[str, Fixed]
    #: hls4ml cannot infer this MAC's result type (bipolar weights: it falls back to fixed<16,6> and wraps)
    pin_result: bool = False

    def config(self) -> dict[str, str]:
        return {k: t.hls() for k, t in self.types.items()}


@dataclass
class ModelPrecision:
    """The input type plus per-layer types for every node whose types the IR determines."""

    input: dict[str, Fixed]
    layers: dict[str, LayerPrecision]
    tensors: dict[str, Fixed]
    #: initializers whose values the types were derived for (nudged float biases): set before converting
    constants: dict[str, np.ndarray] = field(default_factory=dict)

    def apply_constants(self, model: Model) -> None:
        """Write :attr:`constants` into ``model`` (the lowered graph hls4ml converts)."""
        for name, value in self.constants.items():
            model.set_initializer(name, value)

    def to_dict(self) -> dict:
        return {
            "inputs": {k: t.hls() for k, t in self.input.items()},
            "layers": {k: {"op": v.op, **v.config()} for k, v in self.layers.items()},
        }


def input_type(model: Model, name: str) -> Fixed | None:
    """Type for model input ``name``: its integer datatype, or its first quantizer's grid with guard bits."""
    dt = model.dtype(name)
    if dt.is_integer() and dt.bitwidth() <= 32 and dt.name != "BIPOLAR":
        return Fixed(dt.bitwidth(), dt.bitwidth(), dt.signed())
    consumers = model.consumers(name)
    qs = [quant_type(model, c) for c in consumers if c.op_type == "Quant" and c.input[0] == name]
    if qs and all(q is not None for q in qs):
        integer = max(q.integer for q in qs) + INPUT_GUARD_INT
        frac = max(q.frac for q in qs) + INPUT_GUARD_FRAC
        return Fixed(integer + frac, integer, True)
    return None


#: fractional bits of the ApplyAlphas around a non-power-of-two Quant (its input / s and its output q * s)
ALPHA_FRAC = 18


def rescaled_quant_types(model: Model, node: onnx.NodeProto) -> dict[str, Fixed]:
    """Types for hls4ml's ``<quant>_scale`` (x / s + z) and ``<quant>_rescale`` ((q - z) * s) ApplyAlphas
    of a non-power-of-two Quant with constant parameters; {} otherwise.

    hls4ml gives both the Quant's own config; left ``auto`` they take the model default
    (fixed<16,6>), which saturates 1/s > 32 and x / s beyond +-32, so every 8-bit code above
    32 comes out wrong. One scale type holds s and 1/s; one saturating result type holds the
    integer codes (an input beyond them saturates, as the quantizer clips) and q * s.
    """
    params = [model.constant(p) for p in node.input[1:4]]
    if len(params) != 3 or any(p is None for p in params):
        return {}
    scale, zero, bits = (np.asarray(p, dtype=np.float64) for p in params)
    s = np.abs(scale.ravel())
    if not s.size or np.any(s == 0):
        return {}
    step = np.concatenate([s, 1.0 / s])
    offsets = np.concatenate([zero.ravel(), (zero * scale).ravel()])
    codes = 2.0 ** float(np.max(bits)) + float(np.max(np.abs(zero), initial=0.0))
    integer = int(np.ceil(np.log2(codes * max(1.0, float(s.max()))))) + 2
    return {
        "scale": range_type(step, 32),
        "bias": range_type(offsets, 32),
        "result": Fixed(integer + ALPHA_FRAC, integer, True, "RND", "SAT"),
    }


def _weight(model: Model, node: onnx.NodeProto) -> tuple[np.ndarray, Fixed] | None:
    """(weights as (fan_in, n_out), their type) for a MatMul/Conv with a typed constant weight."""
    wname = node.input[1]
    value = model.constant(wname)
    if value is None:
        return None
    producer = model.producer(wname)
    w_t = quant_type(model, producer) if producer is not None else None
    if producer is not None and producer.op_type == "BipolarQuant":  # +-2**k: hls4ml keeps its 1-bit encoding
        w_t = bipolar_type(model, producer)
    if w_t is None and producer is not None and producer.op_type == "Quant":
        w_t = range_type(value)  # a non-power-of-two scale: hls4ml holds the products W * s as floats
    if w_t is None and producer is None and value.dtype.kind == "f":
        exact = exact_type(value)  # a float initializer: exactly if 16 bits can, else 16 bits where its values are
        w_t = exact if exact is not None and exact.width <= FLOAT_CONST_WIDTH else range_type(value)
    if w_t is None:
        return None
    if node.op_type == "MatMul":
        return value.reshape(-1, value.shape[-1]).astype(np.float64), w_t
    group = int(_attr(node, "group", 1))
    window = math.prod(_attr(node, "kernel_shape", []) or [0])
    if group != 1 and not (group == value.shape[0] and value.size == group * window):
        return None  # grouped, not depthwise (one input channel per output: OIHW or channels-last OHWI)
    # Conv: (O, I*k) -> (I*k, O); depthwise: (O, k) -> (k, O), each output's own window
    return value.reshape(value.shape[0], -1).T.astype(np.float64), w_t


def _bias_after(model: Model, node: onnx.NodeProto) -> tuple[onnx.NodeProto, np.ndarray, Fixed | None] | None:
    """The ``Add`` of a constant right after a MatMul (hls4ml fuses it as the bias)."""
    cons = model.consumers(node.output[0])
    if len(cons) != 1 or cons[0].op_type != "Add":
        return None
    add = cons[0]
    other = add.input[1] if add.input[0] == node.output[0] else add.input[0]
    value = model.constant(other)
    if value is None:
        return None
    producer = model.producer(other)
    b_t = quant_type(model, producer) if producer is not None else None
    return add, value, b_t


def derive(model: Model) -> ModelPrecision:
    """Walk the lowered graph in order, typing every tensor the IR pins down."""
    tensors: dict[str, Fixed] = {}
    inputs: dict[str, Fixed] = {}
    for name in model.inputs:
        t = input_type(model, name)
        if t is not None:
            inputs[name] = t
        tensors[name] = t or DEFAULT_INPUT  # what the hardware port carries either way
    layers: dict[str, LayerPrecision] = {}
    constants: dict[str, np.ndarray] = {}
    for node in model.graph.node:
        if not node.output:
            continue
        out = node.output[0]
        src = tensors.get(node.input[0]) if node.input else None
        if node.op_type == "Quant":
            t = quant_type(model, node)
            if t is None and model.constant(out) is None:  # hls4ml's rescale ApplyAlpha's output type
                t = rescaled_quant_types(model, node).get("result")
            if t is not None and model.constant(out) is None:
                tensors[out] = t
        elif node.op_type == "BipolarQuant" and model.constant(out) is None:
            t = bipolar_type(model, node)
            if t is not None:
                tensors[out] = t
        elif node.op_type in _PASSTHROUGH and src is not None:
            tensors[out] = src
        elif node.op_type in ("Relu", "ThresholdedRelu") and src is not None:  # x or 0: x's grid, sign dropped
            tensors[out] = relu_type(src) if float(_attr(node, "alpha", 1.0)) >= 0 else src
            cons = model.consumers(out)
            fused = len(cons) == 1 and quant_type(model, cons[0]) is not None  # hls4ml folds it into the cast
            if not (fused and out not in model.outputs):
                # hls4ml types an unquantized activation with its default (fixed<16,6>: truncates)
                layers[node.name] = LayerPrecision(node.name, node.op_type, {"result": tensors[out]})
        elif node.op_type in ("Softmax", "Sigmoid"):
            tensors[out] = PROBABILITY  # what activation_tables gives their tables and results
        elif node.op_type in _ACTIVATIONS:
            tensors[out] = DEFAULT_INPUT  # hls4ml types an unquantized activation's output with its default
        elif node.op_type == "Add" and len(node.input) == 2 and all(i in tensors for i in node.input):
            tensors[out] = sum_type(tensors[node.input[0]], tensors[node.input[1]])  # = hls4ml's Merge inference
        elif node.op_type in ("Add", "Sub", "Mul", "Div") and len(node.input) == 2 and out not in tensors:
            t = _binary_type(model, node, tensors)
            if t is not None:
                tensors[out] = t
        elif node.op_type == "Concat" and node.input and all(i in tensors for i in node.input):
            tensors[out] = union_type([tensors[i] for i in node.input])
        elif node.op_type in ("GlobalAveragePool", "AveragePool") and src is not None:
            n = _pool_window(model, node)
            if n is not None:
                tensors[out] = avg_pool_types(src, n)[1]
        elif node.op_type in ("GlobalMaxPool", "Pad") and src is not None:
            tensors[out] = src  # copies and zeros: on the input's grid and range (zero padding needs no bits)
        elif node.op_type == "Resize" and src is not None and _attr(node, "mode", "nearest") == "nearest":
            tensors[out] = src
        elif node.op_type == "BatchNormalization":
            lp = exact_affine_layer(model, node)
            if lp is not None:
                layers[node.name] = lp
                if "result" in lp.types:
                    tensors[out] = lp.types["result"]
            elif src is not None and (params := bn_affine(model, node)) is not None:
                tensors[out] = any_affine_types(src, *params)[2]
        elif node.op_type == "MatMul" and is_activation_matmul(model, node):
            lp = _product_layer(model, node, tensors)
            if lp is not None:
                layers[node.name] = lp
                tensors[out] = lp.types["result"]
        elif node.op_type in ("MatMul", "Conv") and src is not None and len(node.input) > 1:
            lp = _mac_layer(model, node, src, tensors, constants)
            if lp is not None:
                layers[node.name] = lp
                tensors[out] = lp.types["result"]
                bias = _bias_after(model, node)
                if bias is not None and "bias" in lp.types:
                    tensors[bias[0].output[0]] = lp.types["result"]
    return ModelPrecision(inputs, layers, tensors, constants)


def union_type(types: list[Fixed]) -> Fixed:
    """The narrowest type holding values of every one of ``types`` (a concatenation's)."""
    signed = any(t.signed for t in types)
    frac = max(t.frac for t in types)
    integer = max(t.integer + (signed and not t.signed) for t in types)
    return Fixed(integer + frac, integer, signed)


def affine(model: Model, node: onnx.NodeProto) -> tuple[str, np.ndarray, np.ndarray] | None:
    """(computed input, scale, bias) of an elementwise Add/Sub/Mul/Div with one constant operand.

    ``y = x * scale + bias`` with both broadcast to ``x``'s shape (batch dim dropped); None
    if neither or both operands are constant, or the constant does not broadcast onto ``x``.
    """
    a, b = node.input[0], node.input[1]
    ca, cb = model.constant(a), model.constant(b)
    if (ca is None) == (cb is None):
        return None
    x, c, const_first = (b, ca, True) if ca is not None else (a, cb, False)
    shape = model.shape(x)
    if shape is None:
        return None
    c = np.asarray(c, dtype=np.float64)
    try:
        full = np.broadcast_to(c, np.broadcast_shapes(c.shape, tuple(shape)))
    except ValueError:
        return None
    if full.shape != tuple(shape):
        return None  # the constant would enlarge x
    full = full.reshape(tuple(shape)[1:]) if len(shape) > 0 and shape[0] == 1 else full
    one, zero = np.ones_like(full), np.zeros_like(full)
    op = node.op_type
    if op == "Add":
        return x, one, full
    if op == "Mul":
        return x, full, zero
    if op == "Sub":
        return (x, -one, full) if const_first else (x, one, -full)
    if op == "Div" and not const_first and np.all(full != 0):
        return x, 1.0 / full, zero
    return None


def affine_types(x: Fixed, scale: np.ndarray, bias: np.ndarray) -> tuple[Fixed, Fixed, Fixed] | None:
    """(scale type, bias type, exact result type) of ``x * scale + bias``; None if a constant is not fixed-point."""
    s_t, b_t = exact_type(scale), exact_type(bias)
    if s_t is None or b_t is None:
        return None
    w = np.asarray(scale, dtype=np.float64).reshape(1, -1)
    out = acc_type(x, w, s_t, np.asarray(bias, dtype=np.float64).reshape(-1), b_t)
    return s_t, b_t, out


#: Significant bits of the float constants and of the result of an affine that no fixed-point type holds exactly.
AFFINE_CONST_WIDTH = 24
AFFINE_RESULT_WIDTH = 32


def float_affine_types(x: Fixed, scale: np.ndarray, bias: np.ndarray) -> tuple[Fixed, Fixed, Fixed]:
    """(scale, bias, result) types of ``x * scale + bias`` with float constants (a non-power-of-two weight
    scale moved behind its MAC, a float bias, Brevitas' float BatchNorm): rounded to 24/32 significant bits.

    hls4ml's default ``fixed<16,6>`` rounded a weight scale of 0.002 to 2**-9 (top-1 93%).
    """
    s, b = np.asarray(scale, dtype=np.float64), np.asarray(bias, dtype=np.float64)
    s_t, b_t = range_type(s, AFFINE_CONST_WIDTH), range_type(b, AFFINE_CONST_WIDTH)
    peak = max(abs(x.lo), abs(x.hi)) * float(np.max(np.abs(s), initial=0.0)) + float(np.max(np.abs(b), initial=0.0))
    out = range_type(np.array([-peak, peak]), AFFINE_RESULT_WIDTH)
    return s_t, b_t, Fixed(out.width, out.integer, True, "RND", "SAT")


def any_affine_types(x: Fixed, scale: np.ndarray, bias: np.ndarray) -> tuple[Fixed, Fixed, Fixed]:
    """Exact types when the constants are fixed-point numbers and the result fits, else :func:`float_affine_types`."""
    types = affine_types(x, scale, bias)
    if types is not None and types[2].width <= MAX_WIDTH:
        return types
    return float_affine_types(x, scale, bias)


def _binary_type(model: Model, node: onnx.NodeProto, tensors: dict[str, Fixed]) -> Fixed | None:
    """Exact output type of Sub/Mul of two typed tensors (hls4ml's Merge inference) or of an affine op."""
    a, b = node.input[0], node.input[1]
    if a in tensors and b in tensors:
        ta, tb = tensors[a], tensors[b]
        if node.op_type == "Sub":
            t = sum_type(ta, tb)
            return Fixed(t.width, t.integer, True)
        if node.op_type == "Mul":
            return Fixed(ta.width + tb.width, ta.integer + tb.integer, ta.signed or tb.signed)
        return None
    found = affine(model, node)
    if found is None or found[0] not in tensors:
        return None
    return any_affine_types(tensors[found[0]], found[1], found[2])[2]


#: Extra fractional bits of an average over a window that is not a power of two (1/n is inexact).
AVG_GUARD_FRAC = 8


def avg_pool_types(x: Fixed, n: int) -> tuple[Fixed, Fixed]:
    """(accumulator, result) of an average of ``n`` values of type ``x``: exact when ``n`` is a power of two.

    hls4ml sums in the accumulator type and divides there (truncating): the sum needs
    ``log2 n`` more integer bits, the quotient ``log2 n`` more fractional bits.
    """
    k = max(0, math.ceil(math.log2(max(n, 1))))
    frac = x.frac + k + (0 if n == 2**k else AVG_GUARD_FRAC)
    accum = Fixed(x.integer + k + frac, x.integer + k, x.signed)
    return accum, Fixed(x.integer + frac, x.integer, x.signed)


def _pool_window(model: Model, node: onnx.NodeProto) -> int | None:
    if node.op_type == "AveragePool":
        kernel = _attr(node, "kernel_shape")
        return math.prod(kernel) if kernel else None
    shape = model.shape(node.input[0])
    if shape is None or len(shape) < 3:
        return None
    spatial = shape[1:-1] if node.domain == "qonnx.custom_op.channels_last" else shape[2:]
    return math.prod(spatial)


def bipolar_type(model: Model, node: onnx.NodeProto) -> Fixed | None:
    """Type holding a BipolarQuant's values +-2**k (``fixed<2, 2+k>``); None for a scale that is no power of two.

    hls4ml stores them as 1-bit codes (0 -> -2**k) and multiplies accordingly; this is the
    range the accumulators derived downstream must cover.
    """
    k = pow2_exponent(model.constant(node.input[1]))
    return Fixed(2, 2 + k) if k is not None else None


def bn_affine(model: Model, node: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-channel (scale, bias) of an inference BatchNormalization; None unless its parameters are constants."""
    params = [model.constant(t) for t in node.input[1:5]]
    if len(params) != 4 or any(p is None for p in params):
        return None
    gamma, beta, mean, var = (np.asarray(p, dtype=np.float64).ravel() for p in params)
    scale = gamma / np.sqrt(var + float(_attr(node, "epsilon", 1e-5)))
    return scale, beta - mean * scale


def exact_affine_layer(model: Model, node: onnx.NodeProto) -> LayerPrecision | None:
    """Exact scale/bias types of a BatchNormalization that is a fixed-point affine (mean 0, variance 1, epsilon 0).

    What ``exact_affine.ExactAffineBeforeQuant`` writes; hls4ml would type them ``fixed<16,6>``.
    Unless a Quant follows (which sets the result type), the result gets the exact type too.
    """
    if len(node.input) != 5 or float(_attr(node, "epsilon", 1e-5)) != 0.0:
        return None
    gamma, beta, mean, var = (model.constant(i) for i in node.input[1:])
    if any(v is None for v in (gamma, beta, mean, var)) or np.any(mean != 0) or np.any(var != 1):
        return None
    s_t, b_t = exact_type(gamma, MAX_EXACT_ACC), exact_type(beta, MAX_EXACT_ACC)
    if s_t is None or b_t is None:
        return None
    types = {"scale": s_t, "bias": b_t}
    consumers = model.consumers(node.output[0])
    if node.output[0] in model.outputs or not all(c.op_type in ("Quant", "BipolarQuant") for c in consumers):
        from codesign.backends.exact_affine import source_range  # (imports this module)

        found = source_range(model, node.input[0])
        if found is not None:
            frac, lo, hi = found
            s = np.asarray(gamma, dtype=np.float64).ravel()
            x_lo, x_hi = lo * 2.0**-frac, hi * 2.0**-frac
            b = np.asarray(beta, dtype=np.float64).ravel()
            y_lo, y_hi = np.minimum(s * x_lo, s * x_hi) + b, np.maximum(s * x_lo, s * x_hi) + b
            t = _covering(float(y_lo.min(initial=0.0)), float(y_hi.max(initial=0.0)), max(frac + s_t.frac, b_t.frac))
            if t.width <= MAX_EXACT_ACC:
                types["result"] = t
    return LayerPrecision(node.name, node.op_type, types)


def relu_type(x: Fixed) -> Fixed:
    """ReLU's exact output type: the non-negative half of ``x``."""
    if not x.signed or x.width < 2:
        return Fixed(x.width, x.integer, x.signed)
    return Fixed(x.width - 1, x.integer - 1, False)


def sum_type(a: Fixed, b: Fixed) -> Fixed:
    """Exact type of ``a + b`` (hls4ml's Merge-add inference)."""
    signed = a.signed or b.signed
    integer = max(a.integer + (b.signed and not a.signed), b.integer + (a.signed and not b.signed)) + 1
    return Fixed(integer + max(a.frac, b.frac), integer, signed)


def _bias_of(model: Model, node: onnx.NodeProto) -> tuple[str | None, str | None, np.ndarray | None, Fixed | None]:
    """(bias tensor, tensor after the bias, value, type) of a MatMul/Conv; Nones without a bias."""
    if node.op_type == "Conv" and len(node.input) > 2 and node.input[2]:
        producer = model.producer(node.input[2])
        b_t = quant_type(model, producer) if producer is not None else None
        return node.input[2], node.output[0], model.constant(node.input[2]), b_t
    found = _bias_after(model, node)
    if found is None:
        return None, None, None, None
    add, value, b_t = found
    name = add.input[1] if add.input[0] == node.output[0] else add.input[0]
    return name, add.output[0], value, b_t


def cell_preserved(model: Model, tensor: str, frac: int, tensors: dict[str, Fixed], depth: int = 0) -> bool:
    """Whether ``tensor`` only reaches Quant nodes that round it at grid points of ``2**-frac``.

    Then any value in the same open grid cell gives the same quantized outputs: a float
    bias can be replaced by a value in its cell with one more fractional bit
    (:func:`nudge_bias`). The path may pass ReLU, max-pool and reshapes (cells map to
    cells) and adds of tensors already on the ``2**-frac`` grid.
    """
    if tensor in model.outputs or depth > 32:
        return False
    consumers = model.consumers(tensor)
    if not consumers:
        return False
    for c in consumers:
        if c.op_type == "Quant":
            q = quant_type(model, c)
            # ROUND decides at odd multiples of half a step, FLOOR at the steps themselves
            if q is None or c.input[0] != tensor or q.frac > frac - (1 if q.rounding == "RND_CONV" else 0):
                return False
        elif c.op_type in _CELL_PRESERVING and c.input[0] == tensor:
            if not cell_preserved(model, c.output[0], frac, tensors, depth + 1):
                return False
        elif c.op_type == "Add" and len(c.input) == 2 and c.input[0] != c.input[1]:
            other = tensors.get(c.input[1] if c.input[0] == tensor else c.input[0])
            if other is None or other.frac > frac or not cell_preserved(model, c.output[0], frac, tensors, depth + 1):
                return False
        else:
            return False
    return True


def nudge_bias(value: np.ndarray, frac: int) -> np.ndarray | None:
    """Each off-grid value moved to the midpoint of its ``2**-frac`` cell (on-grid values kept).

    ``acc + b`` (``acc`` on the grid) then lies in the same cell as with the exact ``b``,
    never on a rounding tie: exactly the quantized results of the float bias. None when a
    midpoint is not a float32 (absurd grids).
    """
    v = np.asarray(value, dtype=np.float64)
    scaled = v * 2.0**frac
    on_grid = scaled == np.floor(scaled)
    nudged = np.where(on_grid, v, (np.floor(scaled) + 0.5) * 2.0**-frac)
    out = nudged.astype(np.float32)
    return out if np.array_equal(out.astype(np.float64), nudged) else None


def _float_bias_type(
    model: Model, node: onnx.NodeProto, x: Fixed, w: np.ndarray, w_t: Fixed,
    value: np.ndarray, after: str | None, tensors: dict[str, Fixed],
) -> tuple[Fixed, np.ndarray | None]:  # fmt: skip
    """Type for a float bias (and its nudged value, if any): on-grid, nudged, exact, else rounded."""
    grid = x.frac + w_t.frac
    exact = exact_type(value, max_frac=grid)
    if exact is not None:
        return exact, None
    if after is not None and cell_preserved(model, after, grid, tensors):
        nudged = nudge_bias(value, grid)
        if nudged is not None:
            return _covering(float(np.min(nudged)), float(np.max(nudged)), grid + 1), nudged
    exact = exact_type(value, max_frac=MAX_EXACT_ACC)
    if exact is not None and acc_type(x, w, w_t, value, exact).width <= MAX_EXACT_ACC:
        return exact, None  # a model output: the float bias exactly, however many bits
    t = _covering(float(np.min(value)), float(np.max(value)), grid)  # round onto the grid (reported by --verify)
    return Fixed(t.width + 1, t.integer + 1, True, "RND", "SAT"), None  # + 1 bit: rounding up cannot overflow


def _mac_layer(
    model: Model, node: onnx.NodeProto, x: Fixed, tensors: dict[str, Fixed], constants: dict[str, np.ndarray]
) -> LayerPrecision | None:
    wt = _weight(model, node)
    if wt is None:
        return None
    w, w_t = wt
    producer = model.producer(node.input[1])
    binary = producer is not None and producer.op_type == "BipolarQuant"
    types: dict[str, Fixed] = {"weight": w_t}  # bipolar: +-2**k (hls4ml's ONNX path keeps its own 1-bit type)
    bias_name, after, bias_value, b_t = _bias_of(model, node)
    nudged = None
    if bias_value is not None and b_t is None:
        b_t, nudged = _float_bias_type(model, node, x, w, w_t, bias_value, after, tensors)
        if nudged is not None and model.initializer(bias_name) is None:
            b_t, nudged = _float_bias_type(model, node, x, w, w_t, bias_value, None, tensors)
    acc = acc_type(x, w, w_t, bias_value if nudged is None else nudged, b_t)
    if acc.width > MAX_WIDTH:
        return None
    if nudged is not None:
        constants[bias_name] = nudged
    if b_t is not None:
        types["bias"] = b_t
    types["accum"] = acc
    types["result"] = acc
    return LayerPrecision(node.name, node.op_type, types, pin_result=binary)


__all__ = [
    "DEFAULT_INPUT",
    "Fixed",
    "LayerPrecision",
    "ModelPrecision",
    "acc_type",
    "affine",
    "affine_types",
    "any_affine_types",
    "avg_pool_types",
    "bipolar_type",
    "bn_affine",
    "cell_preserved",
    "derive",
    "exact_affine_layer",
    "exact_type",
    "float_affine_types",
    "input_type",
    "is_activation_matmul",
    "nudge_bias",
    "product_acc_type",
    "quant_type",
    "range_type",
    "relu_type",
    "sum_type",
    "union_type",
]
