"""The ``da`` estimator: alkaid's constant-matrix-multiply optimiser on the exact weights.

alkaid is its authors' successor of alkaid (same distributed-arithmetic method, new IR).
For hls4ml's multiplier-free ``distributed_arithmetic`` strategy (and alkaid's own RTL)
every product with a constant weight becomes shift-adds that alkaid shares across a
whole layer, so the cost depends on the weight *values*, not just their count or width.
This module traces the IR through alkaid (``FVArray``) layer by layer and reads
alkaid's own cost model: LUTs = adder bits, FFs = pipeline register bits, latency =
pipeline stages at ``latency_cutoff`` adder delays per stage. alkaid is an optional
dependency (``pip install alkaid``; it needs only numpy).

Supported: power-of-two-scaled ``Quant``/``BipolarQuant`` on activations, ``MatMul``/
``Gemm`` with a constant operand, ``Conv`` (1d/2d, group 1, unrolled im2col: one
constant-matrix multiply per output pixel), ``Add``/``Sub``/``Mul`` by constants, ``Relu``,
``BatchNormalization`` and shape-only ops. Anything else raises
:class:`~codesign.errors.UnsupportedModelError` (the DA strategy cannot express it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx

from codesign.errors import UnsupportedModelError
from codesign.ir.datatypes import is_float
from codesign.ir.model import QUANT_OPS, Model
from codesign.passes.cost import _attr, _is_weight_quantizer
from codesign.passes.estimate import EstimateConfig, EstimateReport, Estimator, LayerEstimate

#: Ops that only move or relabel data: free in hardware, traced as reshapes.
SHAPE_OPS = frozenset({"Reshape", "Flatten", "Identity", "Squeeze", "Unsqueeze", "Dropout"})
#: Every op the tracer handles (anything else is refused by name before tracing starts).
TRACED_OPS = QUANT_OPS | SHAPE_OPS | {"Transpose", "MatMul", "Gemm", "Conv", "Relu", "Add", "Sub", "Mul", "Div",
                                      "BatchNormalization"}  # fmt: skip

#: alkaid (ALIR) opcodes grouped by what they become in LUTs: +/-, relu, constant add, MSB mux; the rest "other".
OP_CLASSES = {0: "add", 1: "add", 2: "relu", 4: "cadd", 6: "mux"}
#: LUTs per alkaid cost unit by op class. alkaid's cost counts every adder bit as one LUT;
#: yosys/ABC packs ReLUs into the adders and spends more on constant adds and muxes. Fitted by
#: non-negative least squares on relative error against ``yosys synth_xilinx -family xcup``
#: on benchmarks/data/estimator_synth.csv (benchmarks/estimator_accuracy.py refits them and
#: prints the in-sample and leave-one-out errors); ``calibrated=False`` gives alkaid's raw cost.
#: Fit (alkaid 0.8.2, yosys 0.23) on the 6 smallest of the 18 MLPs: ReLUs vanish into the adders' LUTs,
#: constant adds and MSB muxes (few, narrow) cost ~4.5x their alkaid cost; LOO MAPE 5.6 %.
LUT_WEIGHTS: dict[str, float] = {"add": 1.012, "relu": 0.0, "cadd": 4.741, "mux": 4.44, "other": 1.0}


def _alkaid() -> Any:
    try:
        from alkaid import trace
    except ImportError:
        raise UnsupportedModelError("the 'da' estimator needs alkaid: pip install alkaid") from None
    return trace


def variables(arr: Any) -> np.ndarray:
    """An alkaid ``FVArray``'s elements as a plain object array (one ``FVariable`` each)."""
    return np.asarray(arr).view(np.ndarray)


def is_unquantized(arr: Any) -> bool:
    """True for (reshaped) float graph inputs whose format the first quantizer sets."""
    if not (isinstance(arr, np.ndarray) and arr.dtype == object and arr.size > 0):
        return False
    return type(np.ravel(variables(arr))[0]).__name__ == "FVariableInput"


def bipolar_port(model: Model, name: str) -> bool:
    """True when float graph input ``name`` reaches only ``BipolarQuant``s (through shape ops).

    The tracer then makes each element a one-bit port ``b`` (``BipolarQuant`` of the input
    is ``2*b - 1``), so port value ``b`` stands for the model input ``2*b - 1``, not ``b``.
    """
    if not is_float(model.dtype(name)):
        return False
    todo, seen = [name], False
    while todo:
        for node in model.consumers(todo.pop()):
            if node.op_type in SHAPE_OPS | {"Transpose"}:
                todo.append(node.output[0])
            elif node.op_type == "BipolarQuant" and node.input[0] != "":
                seen = True
            else:
                return False
    return seen


def _pow2_exponent(scale: np.ndarray, what: str) -> np.ndarray:
    """-log2(scale) as integers; DA needs fixed-point (power-of-two) scales."""
    exp = -np.log2(np.asarray(scale, dtype=np.float64))
    if not np.all(np.isfinite(exp)) or not np.allclose(exp, np.round(exp)):
        raise UnsupportedModelError(f"{what}: the 'da' estimator needs power-of-two quantizer scales")
    return np.round(exp).astype(np.int64)


#: QONNX rounding modes the RTL reproduces exactly (HALF_EVEN is ROUND's alias in qonnx).
EXACT_ROUNDING = ("ROUND", "HALF_EVEN", "HALF_UP", "FLOOR")


def round_exact(x: Any, k: np.ndarray, i: np.ndarray, f: np.ndarray, overflow: str, mode: str) -> Any:
    """QONNX's ROUND (half to even) or HALF_UP (half away from zero) in alkaid, which only truncates.

    Per element with more fraction bits ``fx`` than the target ``f``: add
    ``2^-(f+1) - 2^-fx``, plus ``2^-fx`` when a tie should go up, then truncate. Below
    half stays below one step, above half reaches it, and an exact half reaches it only
    with that extra LSB: the target LSB of ``x`` (odd -> up: half to even) or ``x >= 0``
    (half away from zero). Two adders per element. Elements on the target grid are only saturated.
    """
    trace = _alkaid()
    out = []
    for v, kk, ii, ff in zip(np.ravel(variables(x)), np.ravel(k), np.ravel(i), np.ravel(f)):
        vk, vi, vf = (int(t) for t in v.kif)
        if vf <= ff:
            out.append(v.quantize(kk, ii, ff, overflow, "TRN"))
            continue
        if mode == "HALF_UP":
            up = (v >= 0) * 2.0**-vf if vk else 2.0**-vf  # unsigned: always non-negative
        else:  # the target LSB (0 or 2^-ff), moved down to the input's LSB
            up = (v.quantize(vk, vi, ff, "WRAP", "TRN") - v.quantize(vk, vi, ff - 1, "WRAP", "TRN")) * 2.0 ** (ff - vf)
        adj = v + (2.0 ** (-ff - 1) - 2.0**-vf) + up
        out.append(adj.quantize(kk, ii, ff, overflow, "TRN"))
    return trace.FVArray(np.array(out).reshape(x.shape), x.solver_options, hwconf=x.hwconf)


#: Work one trace may unroll: constant multiplies (each Conv output pixel its own) plus traced tensor elements.
#: alkaid solves them in Python, ~2-10 ms per multiply on the 2-core development machine: the 16-64-32-32-5
#: jet tagger (4.3k) takes seconds, a 3x3x3->32 conv on 111x111 pixels (10.6M) hours. ``CODESIGN_RTL_MAX_UNROLLED``.
MAX_UNROLLED = 1 << 15


def unrolled_work(model: Model) -> tuple[int, str, int]:
    """(multiplies + traced elements of the whole model, the costliest node, its share) as alkaid unrolls them."""
    from codesign.passes.cost import dense_macs_by_node

    per = {k: int(v) for k, v in dense_macs_by_node(model).items()}
    for name in model.inputs:
        per[name] = math.prod(model.shape(name) or (1,))
    for node in model.graph.node:
        if node.name not in per and not _is_weight_quantizer(model, node):
            per[node.name] = math.prod(model.shape(node.output[0]) or (1,))
    worst = max(per, key=per.__getitem__, default="")
    return sum(per.values()), worst, per.get(worst, 0)


def check_supported(model: Model) -> None:
    """Refuse, naming node and op, the first op the tracer does not handle."""
    for node in model.graph.node:
        if node.op_type not in TRACED_OPS and not _is_weight_quantizer(model, node):
            raise UnsupportedModelError(f"{node.name}: the 'da' estimator does not support {node.op_type}")


def check_unrolled(model: Model, limit: int | None = None) -> None:
    """Refuse, in one line naming the costliest node, a model too large for alkaid to unroll in minutes."""
    import os

    from codesign.errors import CodesignError

    if limit is None:
        env = os.environ.get("CODESIGN_RTL_MAX_UNROLLED")
        try:
            limit = int(float(env)) if env else MAX_UNROLLED
        except ValueError:
            raise CodesignError(f"CODESIGN_RTL_MAX_UNROLLED={env!r}: expected a number") from None
    total, worst, share = unrolled_work(model)
    if total > limit:
        raise UnsupportedModelError(
            f"{worst}: alkaid would unroll {total:,} multiplies and values ({share:,} in {worst}), over the "
            f"{limit:,} it traces in minutes; use the hls4ml backend (io_stream), or raise CODESIGN_RTL_MAX_UNROLLED"
        )


class _Tracer:
    """Walks the IR in topological order, keeping a alkaid array per dynamic tensor."""

    def __init__(self, model: Model, latency_cutoff: float, exact_rounding: bool = False):
        self.model = model
        #: True: reproduce QONNX rounding bit for bit (half-to-even ROUND; see round_exact) for RTL
        #: that must equal the reference; False: alkaid's half-up rounding, as hls4ml's DA strategy builds it.
        self.exact_rounding = exact_rounding
        self.trace = _alkaid()
        self.hw = self.trace.HWConfig(1, -1, -1)
        self.latency_cutoff = latency_cutoff
        self.env: dict[str, Any] = {}
        check_supported(model)  # refuse before tracing anything (tracing big layers takes seconds)

    # ------------------------------------------------------------- inputs
    def input_array(self, name: str) -> Any:
        """A graph input as a alkaid array: fixed-point from its dtype, else precision set by the first Quant."""
        shape = self.model.shape(name)
        dt = self.model.dtype(name)
        if shape is None:
            raise UnsupportedModelError(f"input {name!r} has no static shape")
        if is_float(dt):
            return self.trace.FVArrayInput(shape, hwconf=self.hw)
        step = float(dt.scale_factor()) if dt.is_fixed_point() else 1.0
        low, high = float(dt.min()), float(dt.max())
        full = np.ones(shape)
        return self.trace.FVArray.from_lhs(full * low, full * high, full * step, hwconf=self.hw)

    def value(self, name: str) -> Any:
        """A dynamic tensor's alkaid array, or a constant's numpy value."""
        if name in self.env:
            return self.env[name]
        const = self.model.constant(name)
        if const is not None:
            return np.asarray(const, dtype=np.float64)
        raise UnsupportedModelError(f"tensor {name!r} is neither traced nor constant")

    # ------------------------------------------------------------- ops
    def quant(self, node: onnx.NodeProto, x: Any) -> Any:
        if node.op_type == "BipolarQuant":
            # sign(x) in {-1, +1} = 2*b - 1 with b one bit: the input port bit, or the comparator x >= 0.
            bit = x.quantize(0, 1, 0) if is_unquantized(x) else (x >= 0)
            scale = np.asarray(self.value(node.input[1]), dtype=np.float64)
            _pow2_exponent(scale, node.name)  # a power-of-two scale is a shift: exact in fixed point
            return (bit * 2 - 1) * scale
        if node.op_type != "Quant":
            raise UnsupportedModelError(f"{node.name}: the 'da' estimator does not support {node.op_type}")
        scale, zp, bits = (self.value(i) for i in node.input[1:4])
        if np.any(np.asarray(zp) != 0):
            raise UnsupportedModelError(f"{node.name}: the 'da' estimator needs zero-point 0")
        f = _pow2_exponent(scale, node.name)
        b = int(np.asarray(bits).max())
        signed = int(_attr(node, "signed", 1))
        mode = _attr(node, "rounding_mode", "ROUND")
        mode = (mode.decode() if isinstance(mode, bytes) else str(mode)).upper()
        rnd = "TRN" if mode in ("FLOOR", "TRUNC") else "RND"
        narrow = int(_attr(node, "narrow", 0))
        if narrow and not signed:
            raise UnsupportedModelError(f"{node.name}: alkaid cannot express an unsigned narrow-range Quant")
        overflow = "SAT_SYM" if narrow else "SAT"  # narrow signed range [-(2^(b-1)-1), 2^(b-1)-1] is symmetric
        shape = x.shape
        k = np.broadcast_to(signed, shape)
        i = np.broadcast_to(b - signed - f, shape)
        ff = np.broadcast_to(f, shape)
        if is_unquantized(x):
            # Quantizer of a float graph input: it declares the input port's format (done upstream).
            return x.quantize(k, i, ff)
        if self.exact_rounding:
            if mode not in EXACT_ROUNDING:
                raise UnsupportedModelError(
                    f"{node.name}: rounding_mode {mode} has no exact RTL ({', '.join(EXACT_ROUNDING)})"
                )
            if mode != "FLOOR":
                return round_exact(x, k, i, ff, overflow, mode)
        return x.quantize(k, i, ff, overflow_mode=overflow, round_mode=rnd)

    def matmul(self, node: onnx.NodeProto, a: Any, b: Any) -> Any:
        if node.op_type == "Gemm":
            if _attr(node, "transA", 0):
                a = a.T
            if _attr(node, "transB", 0):
                b = b.T
            alpha, beta = float(_attr(node, "alpha", 1.0)), float(_attr(node, "beta", 1.0))
            if alpha != 1.0:
                b = b * alpha
            y = a @ b
            if len(node.input) > 2 and node.input[2]:
                c = self.value(node.input[2]) * beta
                if np.any(c != 0):
                    y = y + c
            return y
        return a @ b

    def conv(self, node: onnx.NodeProto, x: Any, w: Any, bias: Any) -> Any:
        """Conv1d/2d as im2col: every output pixel is one constant-matrix multiply of its patch (fully unrolled)."""
        if not isinstance(w, np.ndarray):
            raise UnsupportedModelError(f"{node.name}: Conv needs constant weights")
        if int(_attr(node, "group", 1)) != 1:
            raise UnsupportedModelError(f"{node.name}: grouped/depthwise Conv is not supported")
        auto_pad = _attr(node, "auto_pad", b"NOTSET")
        if (auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)) not in ("NOTSET", "VALID"):
            raise UnsupportedModelError(f"{node.name}: Conv auto_pad {auto_pad!r} is not supported (use explicit pads)")
        if x.shape[0] != 1:
            raise UnsupportedModelError(f"{node.name}: Conv needs batch 1")
        nd = w.ndim - 2
        ks = w.shape[2:]
        strides = list(_attr(node, "strides", [1] * nd))
        dil = list(_attr(node, "dilations", [1] * nd))
        pads = list(_attr(node, "pads", [0] * 2 * nd))
        src = variables(x)[0]  # (C, *spatial)
        zero = self.trace.FVariable.from_const(0.0, hwconf=self.hw)
        padded = np.full((src.shape[0], *(s + pads[d] + pads[d + nd] for d, s in enumerate(src.shape[1:]))), zero)
        padded[(slice(None), *(slice(pads[d], pads[d] + s) for d, s in enumerate(src.shape[1:])))] = src
        out_sp = [(padded.shape[d + 1] - dil[d] * (ks[d] - 1) - 1) // strides[d] + 1 for d in range(nd)]
        rows = []
        for pos in np.ndindex(*out_sp):
            idx = tuple(slice(p * st, p * st + dl * (k - 1) + 1, dl) for p, st, dl, k in zip(pos, strides, dil, ks))
            rows.append(padded[(slice(None), *idx)].ravel())
        patches = self.trace.FVArray(np.array(rows), x.solver_options, hwconf=self.hw)
        y = patches @ w.reshape(w.shape[0], -1).T  # (pixels, C_out)
        if bias is not None and np.any(bias != 0):
            y = y + bias
        return y.T.reshape(1, w.shape[0], *out_sp)

    def run_node(self, node: onnx.NodeProto) -> Any:
        """Trace one node; alkaid's own refusals become one-line UnsupportedModelErrors."""
        if node.op_type not in QUANT_OPS | SHAPE_OPS | {"Transpose"} and any(
            is_unquantized(self.env.get(i)) for i in node.input
        ):
            raise UnsupportedModelError(f"{node.name}: the 'da' estimator needs a quantized (fixed-point) input")
        try:
            return self._run(node)
        except (ValueError, AssertionError, TypeError, RuntimeError) as exc:
            raise UnsupportedModelError(f"{node.name}: alkaid cannot trace {node.op_type}: {exc}") from None

    def _run(self, node: onnx.NodeProto) -> Any:
        op = node.op_type
        args = [self.value(i) if i else None for i in node.input]
        x = args[0]
        if op in QUANT_OPS:
            return self.quant(node, x)
        if op in ("MatMul", "Gemm"):
            return self.matmul(node, x, args[1])
        if op == "Conv":
            return self.conv(node, x, args[1], args[2] if len(args) > 2 else None)
        if op == "Relu":
            return x.relu()
        if op in ("Add", "Sub", "Mul"):
            fn: Callable[[Any, Any], Any] = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}[op]
            return fn(args[0], args[1])
        if op == "Div" and not hasattr(args[1], "kif"):
            return x * (1.0 / args[1])
        if op == "BatchNormalization":
            scale, bias, mean, var = args[1:5]
            eps = float(_attr(node, "epsilon", 1e-5))
            mul = scale / np.sqrt(var + eps)
            shape = (1, -1) + (1,) * (len(x.shape) - 2)
            return x * mul.reshape(shape) + (bias - mean * mul).reshape(shape)
        if op == "Transpose":
            perm = _attr(node, "perm", None)
            return x.transpose(tuple(perm) if perm else None)
        if op in SHAPE_OPS:
            out_shape = self.model.shape(node.output[0])
            if out_shape is None:
                raise UnsupportedModelError(f"{node.name}: output shape unknown")
            return x.reshape(*out_shape)
        raise UnsupportedModelError(f"{node.name}: the 'da' estimator does not support {op}")


def _fresh_like(trace: Any, arr: Any, hw: Any) -> Any:
    """A new alkaid input array with exactly ``arr``'s value ranges (cuts the trace at a layer boundary)."""
    if is_unquantized(arr) or not hasattr(arr, "lhs"):
        return arr
    flat = np.ravel(variables(arr))  # exact ranges (the ``lhs`` property rounds them to float32)
    low, high, step = (
        np.array([float(getattr(v, k)) for v in flat]).reshape(arr.shape) for k in ("low", "high", "step")
    )
    return trace.FVArray.from_lhs(low, high, step, hwconf=hw)


def op_class_costs(comb: Any) -> dict[str, float]:
    """alkaid cost of a CombLogic split by op class (see :data:`OP_CLASSES`)."""
    out = dict.fromkeys(LUT_WEIGHTS, 0.0)
    for op in comb.ops:
        out[OP_CLASSES.get(op.opcode, "other")] += float(op.cost)
    return out


def calibrated_luts(costs: dict[str, float], weights: dict[str, float] | None = None) -> float:
    """LUTs predicted from per-class alkaid costs."""
    w = LUT_WEIGHTS if weights is None else weights
    return float(sum(w.get(k, 1.0) * v for k, v in costs.items()))


def _layer_cost(trace: Any, inp: Any, out: Any, latency_cutoff: float, calibrated: bool) -> tuple[float, float, float]:
    """(LUT, FF, critical path in adder delays) of the logic between ``inp`` and ``out`` (alkaid's cost model)."""
    comb = trace.trace(inp, out)
    if float(comb.cost) == 0:
        return 0.0, 0.0, 0.0
    lut = calibrated_luts(op_class_costs(comb)) if calibrated else float(comb.cost)
    return lut, float(reg_bits(pipeline(comb, latency_cutoff))), float(comb.latency[1])


def pipeline(comb: Any, latency_cutoff: float) -> Any:
    """alkaid's pipelined design (an ``FSM``) of ``comb``, one register stage per ``latency_cutoff`` adder delays."""
    return _alkaid().to_pipeline(comb, latency_cutoff=latency_cutoff, verbose=False)


def reg_bits(fsm: Any) -> int:
    """Register bits of a pipelined design (what alkaid's ``RTLModel.reg_bits`` counts)."""
    return int(sum(sig.width for sig in fsm.signals.values() if sig.reg))


class DaEstimator(Estimator):
    """Analysis pass: per-layer LUT/FF/latency from alkaid's CMVM solutions (no DSP, no BRAM)."""

    key = "da"

    def __init__(
        self,
        config: EstimateConfig | None = None,
        *,
        latency_cutoff: float = 5.0,
        calibrated: bool = True,
        **options: Any,
    ):
        super().__init__(config, **options)
        self.latency_cutoff = latency_cutoff
        self.calibrated = calibrated

    def _rescale_to_whole_model(self, model: Model, rows: list[LayerEstimate]) -> None:
        """Per-layer traces cannot see bits a later quantizer drops; the whole-model trace can.

        Rows keep their shares, totals become the whole-model trace's (LUT, FF).
        """
        comb = trace_model(model, self.latency_cutoff)
        lut = calibrated_luts(op_class_costs(comb)) if self.calibrated else float(comb.cost)
        _scale(rows, "LUT", lut)
        _scale(rows, "FF", float(reg_bits(pipeline(comb, self.latency_cutoff))))

    def estimate(self, model: Model) -> EstimateReport:
        tracer = _Tracer(model, self.latency_cutoff)
        trace = tracer.trace
        for name in model.inputs:
            tracer.env[name] = tracer.input_array(name)
        rows: list[LayerEstimate] = []
        # Accumulated critical path (adder delays) per tensor: alkaid cuts a pipeline stage every
        # ``latency_cutoff`` delays, so a layer's cycles are the stage boundaries it crosses.
        delay: dict[str, float] = dict.fromkeys(model.inputs, 0.0)
        cut = self.latency_cutoff
        for node in model.graph.node:
            if _is_weight_quantizer(model, node):
                continue
            dyn = [i for i in node.input if i in tracer.env]
            if not dyn:
                continue
            # Cut the trace at this layer: fresh inputs with the same ranges, so the cost is this layer's.
            saved = {i: tracer.env[i] for i in dyn}
            fresh = {i: _fresh_like(trace, a, tracer.hw) for i, a in saved.items()}
            tracer.env.update(fresh)
            out = tracer.run_node(node)
            tracer.env.update(saved)
            tracer.env[node.output[0]] = out
            d_in = max(delay.get(i, 0.0) for i in dyn)
            if node.op_type in SHAPE_OPS | {"Transpose"} or any(is_unquantized(a) for a in fresh.values()):
                delay[node.output[0]] = d_in
                rows.append(LayerEstimate(node.name, node.op_type))
                continue
            inputs = np.concatenate([np.ravel(variables(a)) for a in fresh.values()])
            lut, ff, path = _layer_cost(trace, list(inputs), np.ravel(variables(out)), cut, self.calibrated)
            delay[node.output[0]] = d_out = d_in + path
            cycles = math.ceil(d_out / cut) - math.ceil(d_in / cut)
            rows.append(LayerEstimate(node.name, node.op_type, LUT=lut, FF=ff, latency_cycles=cycles, ii=1))
        self._rescale_to_whole_model(model, rows)
        first = next((r for r in rows if r.LUT > 0), None)
        if first is not None:  # alkaid registers the design's input: one more cycle
            first.latency_cycles += 1
            first.note = "incl. input register"
        return EstimateReport(self.key, self.config, rows)


def _scale(rows: list[LayerEstimate], key: str, total: float) -> None:
    current = sum(getattr(r, key) for r in rows)
    if current > 0:
        for r in rows:
            setattr(r, key, getattr(r, key) * total / current)


def trace_model(model: Model, latency_cutoff: float = 5.0, exact_rounding: bool = False) -> Any:
    """The whole model as one alkaid ``CombLogic`` (for RTL generation by a backend or benchmark).

    ``exact_rounding``: QONNX's rounding bit for bit instead of alkaid's half-up (see :func:`round_exact`).
    """
    tracer = _Tracer(model, latency_cutoff, exact_rounding)
    inputs = []
    for name in model.inputs:
        arr = tracer.input_array(name)
        tracer.env[name] = arr
        inputs.extend(np.ravel(variables(arr)))
    for node in model.graph.node:
        if _is_weight_quantizer(model, node) or not any(i in tracer.env for i in node.input):
            continue
        tracer.env[node.output[0]] = tracer.run_node(node)
    outputs = np.concatenate([np.ravel(variables(tracer.env[o])) for o in model.outputs])
    return tracer.trace.trace(inputs, list(outputs))
