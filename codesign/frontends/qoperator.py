"""onnxruntime's QOperator format (QLinearConv, QLinearMatMul, com.microsoft QGemm/QLinear*) -> QDQ.

``quantize_static(quant_format=QOperator)`` writes each quantized layer as one integer op
that dequantizes its inputs, computes in float and requantizes its output. Spelled out as
``DequantizeLinear -> float op -> QuantizeLinear`` it is the QDQ graph the same quantizer
writes in QDQ format (bit for bit: an int32 bias dequantizes with scale ``x_scale * w_scale``),
which ``passes/qdq.py`` then fuses into QONNX ``Quant``. Integer-only ops (ConvInteger,
MatMulInteger: dynamic quantization) are left for the backends to refuse by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from codesign.errors import UnsupportedModelError
from codesign.ir.names import uniquify

_MS = "com.microsoft"


@dataclass(frozen=True)
class _Spec:
    """A QLinear op: its float op, the (value, scale, zero point) input triples, the output's (scale, zp)."""

    float_op: str
    triples: tuple[tuple[int, int, int], ...]
    out: tuple[int, int] | None
    bias: int | None = None  # an int32 bias input, scaled by the first two triples' scales
    drop_attrs: tuple[str, ...] = ()


_SPECS: dict[tuple[str, str], _Spec] = {
    ("", "QLinearConv"): _Spec("Conv", ((0, 1, 2), (3, 4, 5)), (6, 7), bias=8),
    ("", "QLinearMatMul"): _Spec("MatMul", ((0, 1, 2), (3, 4, 5)), (6, 7)),
    (_MS, "QGemm"): _Spec("Gemm", ((0, 1, 2), (3, 4, 5)), (7, 8), bias=6),
    (_MS, "QLinearAdd"): _Spec("Add", ((0, 1, 2), (3, 4, 5)), (6, 7)),
    (_MS, "QLinearMul"): _Spec("Mul", ((0, 1, 2), (3, 4, 5)), (6, 7)),
    (_MS, "QLinearAveragePool"): _Spec("AveragePool", ((0, 1, 2),), (3, 4), drop_attrs=("channels_last",)),
    (_MS, "QLinearGlobalAveragePool"): _Spec("GlobalAveragePool", ((0, 1, 2),), (3, 4), drop_attrs=("channels_last",)),
    (_MS, "QLinearSoftmax"): _Spec("Softmax", ((0, 1, 2),), (3, 4), drop_attrs=("opset",)),
    (_MS, "QLinearSigmoid"): _Spec("Sigmoid", ((0, 1, 2),), (3, 4)),
    (_MS, "QLinearLeakyRelu"): _Spec("LeakyRelu", ((0, 1, 2),), (3, 4)),
}


def is_qoperator_node(node: onnx.NodeProto) -> bool:
    return (node.domain if node.domain != "ai.onnx" else "", node.op_type) in _SPECS or (
        node.domain == _MS and node.op_type == "QLinearConcat"
    )


def _input(node: onnx.NodeProto, i: int) -> str:
    return node.input[i] if i < len(node.input) else ""


def _spec(node: onnx.NodeProto) -> _Spec:
    if node.op_type == "QLinearConcat":  # Y_scale, Y_zp, then (X, X_scale, X_zp) per input
        n = (len(node.input) - 2) // 3
        return _Spec("Concat", tuple((2 + 3 * k, 3 + 3 * k, 4 + 3 * k) for k in range(n)), (0, 1))
    return _SPECS[(node.domain if node.domain != "ai.onnx" else "", node.op_type)]


def qoperator_to_qdq(proto: onnx.ModelProto) -> onnx.ModelProto:
    """``proto`` with every QOperator node spelled out as DequantizeLinear -> float op -> QuantizeLinear."""
    g = proto.graph
    if not any(is_qoperator_node(n) for n in g.node):
        return proto
    inits = {t.name: t for t in g.initializer}
    taken = {t.name for t in g.initializer} | {v.name for v in (*g.input, *g.output, *g.value_info)}
    for n in g.node:
        taken.update((n.name, *n.input, *n.output))
    new_nodes: list[onnx.NodeProto] = []
    for node in g.node:
        if not is_qoperator_node(node):
            new_nodes.append(node)
            continue
        new_nodes.extend(_expand(node, _spec(node), inits, taken, g))
    del g.node[:]
    g.node.extend(_requantize_movers(new_nodes, taken))
    if not any(n.domain == _MS for n in g.node):
        kept = [o for o in proto.opset_import if o.domain != _MS]
        del proto.opset_import[:]
        proto.opset_import.extend(kept)
    return proto


#: ops QOperator graphs apply to the integer codes themselves (data movement, order-preserving)
_MOVERS = frozenset({"Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "MaxPool", "Identity", "Resize",
                     "DepthToSpace", "SpaceToDepth", "Pad", "Slice", "Gather", "Split"})  # fmt: skip


def _requantize_movers(nodes: list[onnx.NodeProto], taken: set[str]) -> list[onnx.NodeProto]:
    """A data-movement op on an integer tensor becomes DequantizeLinear -> op -> QuantizeLinear (same scale, zp).

    Exact: moving codes and moving their dequantized values agree, and the requantization of an
    on-grid value is the identity. The QDQ fusion needs every QuantizeLinear paired with a dequantizer.
    """
    params: dict[str, list[str]] = {}  # integer tensor -> [scale, zero point]
    out: list[onnx.NodeProto] = []
    for node in nodes:
        if node.op_type == "QuantizeLinear" and node.domain in ("", "ai.onnx"):
            params[node.output[0]] = list(node.input[1:3])
        if node.op_type in _MOVERS and node.domain in ("", "ai.onnx") and node.input and node.input[0] in params:
            qp = params[node.input[0]]
            base = node.name or node.output[0]
            deq = uniquify(f"{base}_dq", taken)
            out.append(helper.make_node("DequantizeLinear", [node.input[0], *qp], [deq],
                                        name=uniquify(f"{base}_DequantizeLinear", taken)))  # fmt: skip
            y = node.output[0]
            node.input[0] = deq
            node.output[0] = uniquify(f"{base}_float", taken)
            out.append(node)
            out.append(helper.make_node("QuantizeLinear", [node.output[0], *qp], [y],
                                        name=uniquify(f"{base}_QuantizeLinear", taken)))  # fmt: skip
            params[y] = qp
            continue
        out.append(node)
    return out


def _const(inits: dict, name: str, node: onnx.NodeProto, what: str) -> np.ndarray:
    if name not in inits:
        raise UnsupportedModelError(f"node {node.name!r} ({node.op_type}): {what} {name!r} is not a constant")
    return numpy_helper.to_array(inits[name])


def _expand(
    node: onnx.NodeProto, spec: _Spec, inits: dict, taken: set[str], g: onnx.GraphProto
) -> list[onnx.NodeProto]:
    base = node.name or node.output[0]
    out: list[onnx.NodeProto] = []
    attrs = [a for a in node.attribute if a.name not in spec.drop_attrs]
    if any(a.name == "channels_last" and a.i for a in node.attribute):
        raise UnsupportedModelError(f"node {node.name!r} ({node.op_type}): channels_last=1 is not supported")
    float_inputs = []
    for k, (v, s, z) in enumerate(spec.triples):
        scale = _const(inits, _input(node, s), node, "scale")
        deq = uniquify(f"{base}_in{k}_dq", taken)
        dq_attrs = {}
        if scale.size > 1:  # per-channel weight: the output-channel axis
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            dq_attrs["axis"] = {"Conv": 0, "Gemm": 0 if trans_b else 1}.get(spec.float_op, 1)
        zp = _input(node, z)
        out.append(helper.make_node("DequantizeLinear", [_input(node, v), _input(node, s), *([zp] if zp else [])],
                                    [deq], name=uniquify(f"{base}_in{k}_DequantizeLinear", taken), **dq_attrs))  # fmt: skip
        float_inputs.append(deq)
    if spec.bias is not None and _input(node, spec.bias):
        sx = _const(inits, _input(node, spec.triples[0][1]), node, "scale")
        sw = _const(inits, _input(node, spec.triples[1][1]), node, "scale")
        bias_scale = (sx.astype(np.float32) * sw.astype(np.float32)).reshape(-1)
        bs_name = uniquify(f"{base}_bias_scale", taken)
        t = numpy_helper.from_array(bias_scale if bias_scale.size > 1 else bias_scale.reshape(()), bs_name)
        g.initializer.append(t)
        inits[bs_name] = t
        deq = uniquify(f"{base}_bias_dq", taken)
        out.append(helper.make_node("DequantizeLinear", [_input(node, spec.bias), bs_name], [deq],
                                    name=uniquify(f"{base}_bias_DequantizeLinear", taken),
                                    **({"axis": 0} if bias_scale.size > 1 else {})))  # fmt: skip
        float_inputs.append(deq)
    has_out = spec.out is not None and _input(node, spec.out[0])
    y = uniquify(f"{base}_float", taken) if has_out else node.output[0]
    op = helper.make_node(spec.float_op, float_inputs, [y], name=uniquify(f"{base}_{spec.float_op}", taken))
    op.attribute.extend(attrs)
    out.append(op)
    if has_out:
        zp = _input(node, spec.out[1])
        out.append(helper.make_node("QuantizeLinear", [y, _input(node, spec.out[0]), *([zp] if zp else [])],
                                    [node.output[0]], name=uniquify(f"{base}_QuantizeLinear", taken)))  # fmt: skip
    return out
