"""Float affine ops between an integer-grid tensor and a quantizer -> an exact fixed-point BatchNormalization.

A quantizer after ``BN(acc)`` only sees on which side of its rounding thresholds each
value falls. ``acc`` (a MAC output or a quantized activation) lies on a known grid in a
bounded range, so per channel the float affine chain (BatchNormalization, Mul, Div, Add,
Sub by constants, ReLU) followed by the quantizer is one monotone step function of ``acc``.
Its steps are located exactly, by binary search on the IR's own float32 execution, and
reproduced by a fixed-point scale and bias: hls4ml and the rewritten IR then give the
original quantized values for every reachable input. The result is checked at every step
boundary and at both ends of each channel's range (monotone functions that agree there
agree everywhere), never by sampling.

A ``BipolarQuant`` consumer becomes hls4ml's threshold compare (``x >= t``, positive
scale only): the scale is 1 and the threshold a grid point, and a channel whose output
falls with ``acc`` gets its weight column negated (when the weight quantizer is odd).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from codesign.backends.precision import exact_type, pow2_exponent, quant_type
from codesign.ir.model import Model
from codesign.ir.quant import execute_quant
from codesign.passes.base import Pass, PassResult

#: Ops a chain may hold: elementwise affine maps with per-channel constants.
AFFINE_OPS = frozenset({"BatchNormalization", "Mul", "Div", "Add", "Sub"})
#: float32 significand: every value of the rewritten affine must be exact in the IR's float32 too.
FLOAT32_BITS = 24
#: Finest output grid (``2**-G``) tried for the fixed-point scale and bias.
MAX_GRID = 48
#: Points per channel a float output tail is fitted on (every reachable value when fewer).
TAIL_POINTS = 4096


@dataclass
class Chain:
    """``source`` -> affine ``nodes`` -> ``quant``; ``frac``/``lo``/``hi``: the source's grid and per-channel range."""

    source: str
    nodes: list[onnx.NodeProto]
    quant: onnx.NodeProto | None  # None: the chain ends at a graph output
    frac: int
    lo: np.ndarray  # per channel, in grid units (integers)
    hi: np.ndarray
    rank: int


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def value_range(model: Model, tensor: str) -> tuple[int, float, float] | None:
    """(frac, lo, hi) of a quantized activation: a typed ``Quant`` or a power-of-two ``BipolarQuant`` output,
    or one minus a scalar on its grid (the centred codes ``q - z`` of an asymmetric quantizer)."""
    producer = model.producer(tensor)
    if producer is not None and producer.op_type == "Sub" and len(producer.input) == 2:
        inner, c = value_range(model, producer.input[0]), model.constant(producer.input[1])
        if inner is None or c is None or np.size(c) != 1:
            return None
        frac, lo, hi = inner
        c = float(np.asarray(c, dtype=np.float64).ravel()[0])
        return (frac, lo - c, hi - c) if c * 2.0**frac == round(c * 2.0**frac) else None
    if producer is not None and producer.op_type == "BipolarQuant":
        k = pow2_exponent(model.constant(producer.input[1]))
        return None if k is None else (-k, -(2.0**k), 2.0**k)
    if producer is not None and producer.op_type == "Quant":
        t = quant_type(model, producer)
        return None if t is None else (t.frac, t.lo, t.hi)
    return None


def source_range(model: Model, tensor: str) -> tuple[int, np.ndarray, np.ndarray] | None:
    """(frac, lo, hi): ``tensor`` on the ``2**-frac`` grid, channel c within [lo[c], hi[c]] grid steps.

    A MatMul/Conv output gets the exact worst case over its real weights per output
    channel; a quantized activation its quantizer's range.
    """
    producer = model.producer(tensor)
    if producer is None:
        return None
    if producer.op_type in ("Quant", "BipolarQuant"):
        found = value_range(model, tensor)
        shape = model.shape(tensor)
        if found is None or shape is None or len(shape) < 2:
            return None
        frac, lo, hi = found
        c = int(shape[1])
        return frac, np.full(c, np.floor(lo * 2.0**frac)), np.full(c, np.ceil(hi * 2.0**frac))
    if producer.op_type not in ("MatMul", "Conv") or len(producer.input) != 2:
        return None
    x = value_range(model, producer.input[0])
    w = model.constant(producer.input[1])
    if x is None or w is None:
        return None
    w_t = exact_type(w)
    if w_t is None:
        return None
    if producer.op_type == "MatMul":
        if w.ndim != 2:
            return None
        cols = w.astype(np.float64)
    else:
        if int(_attr(producer, "group", 1)) != 1:
            return None
        cols = w.reshape(w.shape[0], -1).T.astype(np.float64)  # (I*k, O); padding adds zeros
    x_frac, a, b = x
    zero = 0.0 if producer.op_type == "Conv" else None
    lo_terms, hi_terms = np.minimum(cols * a, cols * b), np.maximum(cols * a, cols * b)
    if zero is not None:
        lo_terms, hi_terms = np.minimum(lo_terms, 0.0), np.maximum(hi_terms, 0.0)
    frac = x_frac + w_t.frac
    lo, hi = lo_terms.sum(axis=0) * 2.0**frac, hi_terms.sum(axis=0) * 2.0**frac
    return frac, np.floor(lo), np.ceil(hi)


def _per_channel_constant(model: Model, name: str, channels: int, rank: int) -> bool:
    value = model.constant(name)
    if value is None:
        return False
    if value.size == 1:
        return True
    shape = (1,) * (rank - value.ndim) + tuple(value.shape)
    return len(shape) == rank and shape[1] == channels and all(d == 1 for i, d in enumerate(shape) if i != 1)


def _affine_step(model: Model, node: onnx.NodeProto, var: str, channels: int, rank: int) -> bool:
    """Whether ``node`` is an elementwise affine map of ``var`` with per-channel constants (or a ReLU)."""
    if node.op_type == "Relu":  # monotone: kept in the step function, gone from the rewritten chain
        return list(node.input) == [var] and len(node.output) == 1
    if node.op_type not in AFFINE_OPS or len(node.output) != 1 or node.domain not in ("", "ai.onnx"):
        return False
    if node.op_type == "BatchNormalization":
        return (
            node.input[0] == var and len(node.input) == 5 and not _attr(node, "training_mode", 0)
            and all(_per_channel_constant(model, i, channels, rank) for i in node.input[1:])
        )  # fmt: skip
    if len(node.input) != 2 or node.input[0] == node.input[1] or var not in node.input:
        return False
    if node.op_type == "Div" and node.input[0] != var:
        return False  # c / x is not affine
    other = node.input[1] if node.input[0] == var else node.input[0]
    return _per_channel_constant(model, other, channels, rank)


def _pow2_quantizer(model: Model, node: onnx.NodeProto) -> bool:
    """A typed (power-of-two, zero-offset, ROUND/FLOOR) Quant, or a power-of-two BipolarQuant."""
    if node.op_type == "BipolarQuant":
        return pow2_exponent(model.constant(node.input[1])) is not None
    return node.op_type == "Quant" and quant_type(model, node) is not None


def find_chains(model: Model) -> list[Chain]:
    """Every source -> affine chain -> quantizer in ``model`` that can be made exact."""
    chains = []
    for producer in model.graph.node:
        if producer.op_type not in ("MatMul", "Conv", "Quant", "BipolarQuant") or not producer.output:
            continue
        source = producer.output[0]
        shape = model.shape(source)
        if shape is None or len(shape) < 2 or source in model.outputs:
            continue
        channels, rank = int(shape[1]), len(shape)
        for first in model.consumers(source):
            nodes, var, node = [], source, first
            while node is not None and _affine_step(model, node, var, channels, rank):
                nodes.append(node)
                var = node.output[0]
                consumers = model.consumers(var)
                node = consumers[0] if len(consumers) == 1 and var not in model.outputs else None
            if all(n.op_type in ("Add", "Sub", "Relu") for n in nodes):
                continue  # a bias: precision.py types it exactly (or nudges it) inside the MAC
            if var in model.outputs:
                if any(n.op_type == "Relu" for n in nodes):
                    continue
                node = None  # a float output tail: typed as closely as fixed point allows (:func:`rewrite_tail`)
            elif node is None or node.input[0] != var or not _pow2_quantizer(model, node):
                continue
            found = source_range(model, source)
            if found is None:
                continue
            frac, lo, hi = found
            if lo.shape != (channels,) or max(np.abs(lo).max(), np.abs(hi).max()) >= 2.0**FLOAT32_BITS:
                continue  # grid values not all exact in float32: the IR's own arithmetic is inexact there
            chains.append(Chain(source, nodes, node, frac, lo.astype(np.int64), hi.astype(np.int64), rank))
    return chains


# ------------------------------------------------------------------ the IR's own execution of a chain
def _run(
    model: Model, nodes: list[onnx.NodeProto], source: str, x: np.ndarray, extra: dict | None = None
) -> np.ndarray:
    """The chain's float32 output on ``x``, by onnxruntime's kernels node by node (as the reference runs them)."""
    import onnxruntime as ort

    extra = extra or {}

    def const(name: str) -> np.ndarray | None:
        return extra[name] if name in extra else model.constant(name)

    names = sorted({i for n in nodes for i in n.input if i and i != source and const(i) is not None})
    inits = [numpy_helper.from_array(np.asarray(const(i), dtype=np.float32), i) for i in names]
    out = nodes[-1].output[0]
    graph = helper.make_graph(
        [_clone(n) for n in nodes], "chain",
        [helper.make_tensor_value_info(source, onnx.TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None)], inits,
    )  # fmt: skip
    opset = next((o.version for o in model.proto.opset_import if o.domain in ("", "ai.onnx")), 13)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = model.proto.ir_version
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # no fusion: each node's own kernel
    opts.log_severity_level = 4  # fatal only: errors arrive as exceptions
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run([out], {source: x.astype(np.float32)})[0]


def _clone(node: onnx.NodeProto) -> onnx.NodeProto:
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    return copy


def levels(
    model: Model,
    chain: Chain,
    x_units: np.ndarray,
    nodes: list[onnx.NodeProto] | None = None,
    extra: dict | None = None,
) -> np.ndarray:
    """Quantizer level per element for source values ``x_units * 2**-frac`` (``x_units``: (K, C) integers)."""
    x = (x_units.astype(np.float64) * 2.0**-chain.frac).reshape(*x_units.shape, *([1] * (chain.rank - 2)))
    y = _run(model, nodes or chain.nodes, chain.source, x, extra)
    q = chain.quant
    out = execute_quant(q, [y] + [model.constant(i) for i in q.input[1:]]).astype(np.float64).reshape(x_units.shape)
    if q.op_type == "BipolarQuant":
        return (out > 0).astype(np.int64)
    scale = float(np.asarray(model.constant(q.input[1])).ravel()[0])
    return np.round(out / scale).astype(np.int64)


@dataclass
class Steps:
    """Per channel: direction (the output rises with ``d * x``), level at the low end, and the step positions.

    Positions are in ``m`` (source value ``d * m`` grid steps, ``m`` in [m_lo, m_hi]):
    ``at[k, c]`` is the first ``m`` where channel c reaches level ``first[c] + k + 1``
    (for ``k < count[c]``).
    """

    d: np.ndarray
    m_lo: np.ndarray
    m_hi: np.ndarray
    first: np.ndarray
    count: np.ndarray
    at: np.ndarray


def find_steps(model: Model, chain: Chain) -> Steps:
    """Where the IR's quantized output changes, per channel: exact, by bisection on its float32 execution."""
    lvl_lo = levels(model, chain, chain.lo[None, :])[0]
    lvl_hi = levels(model, chain, chain.hi[None, :])[0]
    d = np.where(lvl_hi >= lvl_lo, 1, -1)
    m_lo, m_hi = np.where(d > 0, chain.lo, -chain.hi), np.where(d > 0, chain.hi, -chain.lo)
    first, count = np.minimum(lvl_lo, lvl_hi), np.abs(lvl_hi - lvl_lo)
    k_max = int(count.max(initial=0))
    at = np.zeros((k_max, len(d)), dtype=np.int64)
    if k_max:
        target = first[None, :] + 1 + np.arange(k_max)[:, None]
        active = np.arange(k_max)[:, None] < count[None, :]
        lo = np.broadcast_to(m_lo, at.shape).copy()  # invariant: level(lo) < target <= level(hi)
        hi = np.broadcast_to(m_hi, at.shape).copy()
        while True:
            open_ = active & (hi - lo > 1)
            if not open_.any():
                break
            mid = np.where(open_, (lo + hi) // 2, lo)
            up = open_ & (levels(model, chain, mid * d[None, :]) >= target)
            hi, lo = np.where(up, mid, hi), np.where(open_ & ~up, mid, lo)
        at = np.where(active, hi, m_lo[None, :])
    return Steps(d, m_lo, m_hi, first, count, at)


def probe_points(steps: Steps) -> np.ndarray:
    """(K, C) values of ``m``: both ends and both sides of every step (padded with the low end)."""
    rows = [steps.m_lo, steps.m_hi]
    for k in range(steps.at.shape[0]):
        used = k < steps.count
        rows += [np.where(used, steps.at[k] - 1, steps.m_lo), np.where(used, steps.at[k], steps.m_lo)]
    return np.stack(rows)


# ------------------------------------------------------------------ fixed-point solution
def _thresholds(model: Model, quant: onnx.NodeProto, v: np.ndarray) -> np.ndarray:
    """Real value where the quantizer goes from level ``v - 1`` to ``v`` (-inf / +inf beyond its range)."""
    t = quant_type(model, quant)
    step = 2.0 ** (t.integer - t.width)
    q_min = round(t.lo / step) + (1 if t.saturation == "SAT_SYM" else 0)
    q_max = round(t.hi / step)
    edge = (v - 0.5) * step if t.rounding == "RND_CONV" else v * step
    return np.where(v <= q_min, -np.inf, np.where(v > q_max, np.inf, edge))


def solve_channel(m: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> tuple[int, int, int] | None:
    """Integers (G, S, B): ``lower < (S*m + B) / 2**G < upper`` at every point, smallest G; None if none.

    Strict both ways, so no value ever sits on a rounding tie. ``S*m`` and ``S*m + B``
    stay below ``2**24`` in magnitude: exact in the IR's float32 as in hls4ml's fixed point.
    """
    m = m.astype(np.float64)
    fl, fu = np.isfinite(lower), np.isfinite(upper)
    dm = m[fl][:, None] - m[fu][None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (lower[fl][:, None] - upper[fu][None, :]) / dm
    s_lo = float(np.max(ratio[dm > 0], initial=-np.inf))  # S/2**G must exceed every pair's bound ...
    s_hi = float(np.min(ratio[dm < 0], initial=np.inf))  # ... and stay below these
    if not s_lo < s_hi:
        return None
    span = float(np.max(np.abs(m), initial=1.0))
    for g in range(-8, MAX_GRID + 1):
        unit = 2.0**g
        k_lo = np.floor(s_lo * unit) + 1 if np.isfinite(s_lo) else -np.inf
        k_hi = np.ceil(s_hi * unit) - 1 if np.isfinite(s_hi) else np.inf
        if k_lo > k_hi:
            continue
        mid = np.clip(0.0, k_lo, k_hi) if not (np.isfinite(k_lo) and np.isfinite(k_hi)) else np.floor((k_lo + k_hi) / 2)
        for s_int in sorted({float(np.clip(mid + o, k_lo, k_hi)) for o in (0, 1, -1)}, key=lambda c: abs(c - mid)):
            if abs(s_int) * span >= 2.0**FLOAT32_BITS:
                return None  # finer grids only need more bits
            sm = s_int * m
            b_lo = np.max(np.where(fl, lower * unit - sm, -np.inf))
            b_hi = np.min(np.where(fu, upper * unit - sm, np.inf))
            lo_b = np.floor(b_lo) + 1 if np.isfinite(b_lo) else -np.inf
            hi_b = np.ceil(b_hi) - 1 if np.isfinite(b_hi) else np.inf
            if lo_b > hi_b:
                continue
            b_int = (
                float(np.floor((lo_b + hi_b) / 2))
                if np.isfinite(lo_b) and np.isfinite(hi_b)
                else float(np.clip(0.0, lo_b, hi_b))
            )
            ys = sm + b_int
            if float(np.max(np.abs(ys))) >= 2.0**FLOAT32_BITS:
                return None
            if np.all(ys > np.where(fl, lower * unit, -np.inf)) and np.all(ys < np.where(fu, upper * unit, np.inf)):
                return g, int(s_int), int(b_int)
    return None


def solve_quant(model: Model, chain: Chain, steps: Steps) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-channel fixed-point (scale, bias) whose ``Quant`` levels equal the IR's on the whole range."""
    channels = len(steps.d)
    scale, bias = np.zeros(channels), np.zeros(channels)
    for c in range(channels):
        at = np.sort(steps.at[: steps.count[c], c])
        m = np.unique(np.concatenate([[steps.m_lo[c], steps.m_hi[c]], at - 1, at]))
        m = m[(m >= steps.m_lo[c]) & (m <= steps.m_hi[c])]
        lv = steps.first[c] + np.searchsorted(at, m, side="right")  # several steps may share one m
        lower = _thresholds(model, chain.quant, lv)
        upper = _thresholds(model, chain.quant, lv + 1)
        found = solve_channel(m, lower, upper)
        if found is None:
            return None
        g, s_int, b_int = found
        scale[c] = steps.d[c] * s_int * 2.0 ** (chain.frac - g)  # y = S*m + B, m = d * x * 2**frac
        bias[c] = b_int * 2.0**-g
    return scale, bias


def solve_bipolar(chain: Chain, steps: Steps) -> tuple[np.ndarray, np.ndarray]:
    """Scale 1 (in grid steps) and a grid-point threshold: hls4ml's ``x >= t`` compare, exact.

    Channels that fall with ``x`` are solved for ``-x`` (the caller negates their weights).
    """
    m_first_one = np.where(steps.first >= 1, steps.m_lo, np.where(steps.count > 0, steps.at[0], steps.m_hi + 1))
    scale = np.full(len(steps.d), 2.0**chain.frac)
    return scale, -m_first_one.astype(np.float64)


# ------------------------------------------------------------------ graph surgery
def _negate_channels(model: Model, chain: Chain, mask: np.ndarray) -> bool:
    """Negate the producing MatMul/Conv's output channels in ``mask`` (weights stay on their grid); False if unsafe."""
    producer = model.producer(chain.source)
    if producer is None or producer.op_type not in ("MatMul", "Conv") or len(model.consumers(chain.source)) != 1:
        return False
    wq = model.producer(producer.input[1])
    raw = producer.input[1] if wq is None else wq.input[0]
    value = model.initializer(raw)
    if (
        value is None
        or len(model.consumers(raw)) != 1
        or (wq is not None and wq.op_type not in ("Quant", "BipolarQuant"))
    ):
        return False
    axis = 1 if producer.op_type == "MatMul" else 0
    before = np.asarray(model.constant(producer.input[1]), dtype=np.float64)
    flip = np.where(mask, -1.0, 1.0).reshape([-1 if i == axis else 1 for i in range(value.ndim)])
    model.set_initializer(raw, (value * flip).astype(value.dtype))
    model.invalidate()
    after = np.asarray(model.constant(producer.input[1]), dtype=np.float64)
    if not np.array_equal(after, before * flip):  # the weight quantizer is not odd there (e.g. sign(0))
        model.set_initializer(raw, value)
        model.invalidate()
        return False
    return True


def _replace(model: Model, chain: Chain, bn: onnx.NodeProto, params: dict[str, np.ndarray]) -> None:
    index = min(list(model.graph.node).index(n) for n in chain.nodes)
    for n in chain.nodes:
        model.graph.node.remove(n)
    for key, value in params.items():
        model.set_initializer(key, value)
    model.graph.node.insert(index, bn)
    model.invalidate()


def _affine_node(chain: Chain, scale: np.ndarray, bias: np.ndarray) -> tuple[onnx.NodeProto, dict[str, np.ndarray]]:
    """``x * scale + bias`` as a BatchNormalization (mean 0, variance 1, epsilon 0), named after the chain's BN."""
    name = next((n.name for n in chain.nodes if n.op_type == "BatchNormalization"), f"{chain.nodes[-1].name}_affine")
    params = {
        f"{name}_exact_scale": scale.astype(np.float32), f"{name}_exact_bias": bias.astype(np.float32),
        f"{name}_exact_mean": np.zeros(len(scale), dtype=np.float32), f"{name}_exact_var": np.ones(len(scale), dtype=np.float32),
    }  # fmt: skip
    bn = helper.make_node(
        "BatchNormalization", [chain.source, *params], [chain.nodes[-1].output[0]], name=name, epsilon=0.0
    )
    return bn, params


def rewrite_tail(model: Model, chain: Chain) -> float | None:
    """A float affine chain ending at a graph output -> one BatchNormalization with float32 constants.

    hls4ml then types it exactly (scale, bias and result: no rounding inside), so the
    output differs from the IR's float32 chain only by float rounding: a chain of several
    float ops (a division above all) is reproduced by no fixed-point affine. Returns the
    largest difference over the fitted values (every reachable one when at most
    ``TAIL_POINTS``), in float32 ulps of the channel's largest value; None if not rewritten.
    """
    width = chain.hi - chain.lo + 1
    k = int(min(width.max(), TAIL_POINTS))
    m = np.stack([np.linspace(lo, hi, k).round().astype(np.int64) for lo, hi in zip(chain.lo, chain.hi)], axis=1)
    x = m.astype(np.float64) * 2.0**-chain.frac
    shaped = x.reshape(*x.shape, *([1] * (chain.rank - 2)))
    y = _run(model, chain.nodes, chain.source, shaped).reshape(x.shape).astype(np.float64)
    if not np.all(np.isfinite(y)):
        return None
    scale, bias = np.zeros(x.shape[1]), np.zeros(x.shape[1])
    for c in range(x.shape[1]):
        if np.ptp(x[:, c]) > 0:
            scale[c], bias[c] = np.polyfit(x[:, c], y[:, c], 1)
        else:
            bias[c] = y[0, c]
    scale, bias = scale.astype(np.float32).astype(np.float64), bias.astype(np.float32).astype(np.float64)
    got = (x * scale + bias).astype(np.float32).astype(np.float64)
    ulp = np.spacing(np.abs(y).max(axis=0).astype(np.float32)).astype(np.float64)  # of each channel's largest value
    bn, params = _affine_node(chain, scale, bias)
    _replace(model, chain, bn, params)
    return float(np.max(np.abs(got - y) / ulp))


def rewrite(model: Model, chain: Chain) -> bool:
    """Replace ``chain.nodes`` by one exact BatchNormalization; True if done (checked at every step boundary)."""
    steps = find_steps(model, chain)
    flipped = np.zeros(len(steps.d), dtype=bool)
    if chain.quant.op_type == "BipolarQuant":
        scale, bias = solve_bipolar(chain, steps)
        flipped = (steps.d < 0) & (steps.count > 0)
    else:
        solved = solve_quant(model, chain, steps)
        if solved is None:
            return False
        scale, bias = solved
    bn, params = _affine_node(chain, scale, bias)
    if not all(np.array_equal(v.astype(np.float64), ref) for v, ref in zip(list(params.values())[:2], (scale, bias))):
        return False
    # the proof: at both ends and both sides of every step, the new node's levels equal the IR's
    m = probe_points(steps)
    x = m * steps.d[None, :]
    expected = levels(model, chain, x)
    got = levels(model, chain, np.where(flipped[None, :], -x, x), nodes=[bn], extra=params)
    if not np.array_equal(expected, got):
        return False
    if flipped.any() and not _negate_channels(model, chain, flipped):
        return False
    _replace(model, chain, bn, params)
    return True


class ExactAffineBeforeQuant(Pass):
    """Float affine chains between an integer-grid tensor and a power-of-two quantizer -> exact fixed-point BatchNormalization.

    A chain ending at a graph output becomes the same node with float32 constants
    (:func:`rewrite_tail`), as does a chain to a quantizer that no float32-exact fixed-point affine
    reproduces. ``info``: {"exact": rewritten layers, "collapsed": those, "output_ulps": {layer: ulps}}.
    """

    def call(self, model: Model) -> PassResult:
        done: list[str] = []
        collapsed: list[str] = []
        tails: dict[str, float] = {}
        for chain in find_chains(model):
            name = chain.nodes[-1].name
            if chain.quant is None:
                ulps = rewrite_tail(model, chain)
                if ulps is not None:
                    tails[name] = ulps
            elif rewrite(model, chain):
                done.append(name)
            elif len(chain.nodes) > 1 and not any(n.op_type == "Relu" for n in chain.nodes):
                # no exact step function (an accumulator too wide for float32-exact constants): one float32
                # affine instead, typed exactly and rounded once by the quantizer, not once per op
                if rewrite_tail(model, chain) is not None:
                    collapsed.append(name)
        if done or tails or collapsed:
            from codesign.passes.shapes import infer_shapes

            infer_shapes(model)
        return PassResult(
            model, bool(done or tails or collapsed), {"exact": done, "collapsed": collapsed, "output_ulps": tails}
        )


__all__ = [
    "Chain",
    "ExactAffineBeforeQuant",
    "Steps",
    "find_chains",
    "find_steps",
    "rewrite",
    "rewrite_tail",
    "solve_channel",
]
