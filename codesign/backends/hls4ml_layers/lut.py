"""Elementwise functions hls4ml has no activation for (Exp, Log, Sqrt, Erf, Reciprocal, ...) -> its UnaryLUT.

hls4ml's UnaryLUT indexes a table with the raw bits of its fixed-point input: one entry per
input value. For an input type of at most :data:`MAX_LUT_BITS` bits the table holds what the IR
computes at every value (onnxruntime runs the node itself on the whole grid), with the Quant
that alone reads the result applied too, so a quantized model stays bit-exact. A float model's
typed IR quantizes these inputs first (``passes/precision.quantize_table_inputs``). Wider or
untyped inputs are refused naming the node.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from codesign.backends.hls4ml_layers.base import Context, Layer, LayerRefused, handles
from codesign.backends.precision import Fixed, quant_type, range_type
from codesign.frontends.door import default_opset
from codesign.ir.quant import execute_quant
from codesign.passes.precision import LUT_OPS

#: Elementwise ONNX ops built as a lookup table over their input's values.
UNARY_LUT_OPS = LUT_OPS
#: Widest input type a table is built for (2**12 entries).
MAX_LUT_BITS = 12
#: Width of a table's entries when no Quant reads them (1 / sqrt(var) spans 1e-1..1e3: 24 bits keep 14 fractional)
LUT_RESULT_WIDTH = 24


def grid(t: Fixed) -> np.ndarray:
    """Every value of type ``t`` in the order of its raw bits read as an unsigned index (hls4ml's table order)."""
    codes = np.arange(2**t.width, dtype=np.int64)
    if t.signed:
        codes = np.where(codes < 2 ** (t.width - 1), codes, codes - 2**t.width)
    return (codes * 2.0**-t.frac).astype(np.float32)


def run_node(node: onnx.NodeProto | list[onnx.NodeProto], values: np.ndarray, opset: int) -> np.ndarray:
    """The node (or a chain of them) alone on ``values`` through onnxruntime: the IR's own float32 results."""
    from codesign.backends.reference import ort_run, ort_session

    chain = node if isinstance(node, list) else [node]
    names = ["x", *(f"t{k}" for k in range(1, len(chain))), "y"]
    nodes = [helper.make_node(n.op_type, [names[k]], [names[k + 1]],
                              **{a.name: helper.get_attribute_value(a) for a in n.attribute})
             for k, n in enumerate(chain)]  # fmt: skip
    graph = helper.make_graph(nodes, "lut", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [len(values)])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [len(values)])])  # fmt: skip
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", max(opset, 13))])
    import onnxruntime as ort

    return ort_run(ort_session(proto, ort.SessionOptions()), ["y"], {"x": values})[0]


def _chain(ctx: Context, node: onnx.NodeProto) -> list[onnx.NodeProto]:
    """``node`` and the table ops that alone follow it (Sqrt -> Reciprocal: ``1 / sqrt`` in one table)."""
    chain = [node]
    while True:
        users = ctx.model.consumers(chain[-1].output[0])
        if len(users) != 1 or users[0].op_type not in LUT_OPS or chain[-1].output[0] in ctx.model.outputs:
            return chain
        chain.append(users[0])


def _lone_quant(ctx: Context, node: onnx.NodeProto) -> tuple[onnx.NodeProto, Fixed] | None:
    users = ctx.model.consumers(node.output[0])
    if len(users) != 1 or users[0].op_type != "Quant" or node.output[0] in ctx.model.outputs:
        return None
    t = quant_type(ctx.model, users[0])
    return (users[0], t) if t is not None else None


@handles(*UNARY_LUT_OPS)
def unary_lut(ctx: Context, node: onnx.NodeProto) -> list[Layer]:
    x_t = ctx.precision.tensors.get(node.input[0])
    if ctx.untyped:  # the type selection quantizes this input to LUT_INPUT_BITS before the real build
        return [ctx.base(node, "UnaryLUT", activation="unary_lut", table_data=np.zeros(1))]
    if x_t is None:
        raise LayerRefused(node, "its input has no fixed-point type for a lookup table (quantize it first)")
    if x_t.width > MAX_LUT_BITS:
        raise LayerRefused(node, f"its input type {x_t.hls()} has {x_t.width} bits: a lookup table takes at most "
                           f"{MAX_LUT_BITS} (2**{MAX_LUT_BITS} entries)")  # fmt: skip
    opset = default_opset(ctx.model.proto) or 13
    chain = _chain(ctx, node)
    table = run_node(chain, grid(x_t), opset).astype(np.float64)
    for later in chain[1:]:  # computed by this table
        ctx.fused.add(later.name)
        ctx.alias[later.output[0]] = node.output[0]
    found = _lone_quant(ctx, chain[-1])
    if found is not None:  # the Quant reading it, applied to every entry: exact
        quant, out_t = found
        table = execute_quant(quant, [table, *(ctx.const(p) for p in quant.input[1:4])]).astype(np.float64)
    else:
        finite = table[np.isfinite(table)]
        out_t = range_type(finite if finite.size else np.zeros(1), LUT_RESULT_WIDTH)
    table = np.clip(np.nan_to_num(table, nan=0.0), out_t.lo, out_t.hi)  # out of the function's domain: saturated
    ctx.set_precision(node.name, result=out_t.hls(), table=out_t.hls())
    return [ctx.base(node, "UnaryLUT", activation="unary_lut", table_data=table)]


__all__ = ["MAX_LUT_BITS", "UNARY_LUT_OPS", "grid", "run_node", "unary_lut"]
