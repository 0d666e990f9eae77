"""Cost analysis on the IR: params, sparsity, MACs, BOPs and memory, per layer and total.

Two BOPs definitions, selected by name:

``qonnx`` (default)
    ``BOPs = MACs * b_in * b_w``, with MACs discounted by weight density. Identical to
    qonnx ``inference_cost(..., discount_sparsity=True)['total_bops']``.
``nac``
    The NAC / SNAC-Pack (Hawks et al. 2021, after Baskin et al.) form, which also
    charges the accumulator: ``BOPs = m * n * ((1 - f_p) * b_a * b_w + b_a + b_w +
    log2(n))`` with ``n`` the fan-in of one output, ``m`` the number of outputs and
    ``f_p`` the share of pruned (zero) weights.

The pass reads only cached facts of the IR (shapes, datatypes, quantized weights), so
costing a small MLP takes tens of microseconds, not the ~30 ms of qonnx's analysis.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import onnx

from codesign.ir.datatypes import bitwidth
from codesign.ir.model import QUANT_OPS, Model
from codesign.passes.base import Pass, PassResult

BOPS_DEFINITIONS = ("qonnx", "nac")

#: Ops whose constant inputs are learned parameters (not shapes, scales or indices).
PARAM_OPS = frozenset(
    {
        "MatMul",
        "Gemm",
        "Conv",
        "ConvTranspose",
        "Add",
        "Sub",
        "Mul",
        "Div",
        "BatchNormalization",
        "PRelu",
        "MultiThreshold",
    }
)
MAC_OPS = frozenset({"MatMul", "Gemm", "Conv"})


@dataclass
class LayerCost:
    """Cost of one node of the IR (the estimator schema's per-layer row)."""

    name: str
    op: str
    in_shape: tuple[int, ...] | None
    out_shape: tuple[int, ...] | None
    weight_dtype: str | None
    act_dtype: str
    out_dtype: str
    params: int = 0
    nonzero_params: int = 0
    macs: float = 0.0
    bops: float = 0.0
    weight_bits: float = 0.0
    act_bits: float = 0.0

    @property
    def sparsity(self) -> float:
        return 0.0 if self.params == 0 else 1.0 - self.nonzero_params / self.params

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sparsity"] = self.sparsity
        return d


@dataclass
class CostReport:
    """Per-layer costs plus totals; ``bops_definition`` says which BOPs formula."""

    layers: list[LayerCost]
    bops_definition: str = "qonnx"
    unsupported: list[str] = field(default_factory=list)

    def total(self, key: str) -> float:
        return float(sum(getattr(layer, key) for layer in self.layers))

    @property
    def totals(self) -> dict[str, float]:
        keys = ("params", "nonzero_params", "macs", "bops", "weight_bits", "act_bits")
        out = {k: self.total(k) for k in keys}
        out["sparsity"] = 0.0 if out["params"] == 0 else 1.0 - out["nonzero_params"] / out["params"]
        return out

    @property
    def bops(self) -> float:
        return self.total("bops")

    @property
    def macs(self) -> float:
        return self.total("macs")

    def to_dict(self) -> dict[str, Any]:
        return {
            "bops_definition": self.bops_definition,
            "layers": [layer.to_dict() for layer in self.layers],
            "totals": self.totals,
            "unsupported": list(self.unsupported),
        }


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _prod(shape: Iterable[int] | None) -> int:
    return math.prod(shape) if shape is not None else 0


def _is_weight_quantizer(model: Model, node: onnx.NodeProto) -> bool:
    return node.op_type in QUANT_OPS and model.constant(node.input[0]) is not None


def _mac_geometry(model: Model, node: onnx.NodeProto) -> tuple[float, int, str | None]:
    """(MACs before sparsity, fan-in n, name of the static weight input or None)."""
    o_shape = model.shape(node.output[0])
    if node.op_type == "Conv":
        i_shape, w_shape = model.shape(node.input[0]), model.shape(node.input[1])
        group = int(_attr(node, "group", 1))
        k_prod = _prod(_attr(node, "kernel_shape", None) or (w_shape[2:] if node.domain == "" else w_shape[1:-1]))
        if node.domain == "":  # NC(H)(W)
            bsize, ifm, ofm, pix = i_shape[0], i_shape[1], o_shape[1], _prod(o_shape[2:])
        else:  # qonnx channels-last: N(H)(W)C
            bsize, ifm, ofm, pix = i_shape[0], i_shape[-1], o_shape[-1], _prod(o_shape[1:-1])
        macs = bsize * (ofm // group) * ifm * k_prod * pix
        w = node.input[1] if model.constant(node.input[1]) is not None else None
        return float(macs), max(1, ifm // group * k_prod), w
    i_shape, w_shape = model.shape(node.input[0]), model.shape(node.input[1])
    if node.op_type == "Gemm" and _attr(node, "transA", 0):
        i_shape = tuple(reversed(i_shape))
    fan_in = i_shape[-1]
    macs = fan_in * _prod(o_shape)
    c0, c1 = model.constant(node.input[0]) is not None, model.constant(node.input[1]) is not None
    w = node.input[1] if c1 and not c0 else node.input[0] if c0 and not c1 else None
    return float(macs), int(fan_in), w


def dense_macs_by_node(model: Model) -> dict[str, float]:
    """MACs per MAC node before sparsity (what a simulation or an unrolled circuit executes)."""
    return {
        n.name: _mac_geometry(model, n)[0]
        for n in model.nodes_of(list(MAC_OPS))
        if len(n.input) > 1 and all(model.shape(t) is not None for t in (n.input[0], n.input[1], n.output[0]))
    }


def dense_macs(model: Model) -> float:
    """MACs of one forward pass before sparsity."""
    return sum(dense_macs_by_node(model).values())


def _params(model: Model, node: onnx.NodeProto) -> tuple[int, int]:
    if node.op_type not in PARAM_OPS:
        return 0, 0
    total = nonzero = 0
    for i in node.input:
        value = model.constant(i) if i else None
        if value is not None and value.dtype.kind == "f":
            total += value.size
            nonzero += model.nonzero(i)
    return total, nonzero


def layer_cost(model: Model, node: onnx.NodeProto, definition: str = "qonnx") -> LayerCost:
    """Cost of one node; MAC layers get MACs/BOPs/weight memory, all get params."""
    out = node.output[0]
    in_name = next((i for i in node.input if i and model.constant(i) is None), node.input[0] if node.input else "")
    params, nonzero = _params(model, node)
    row = LayerCost(
        name=node.name,
        op=node.op_type,
        in_shape=model.shape(in_name) if in_name else None,
        out_shape=model.shape(out),
        weight_dtype=None,
        act_dtype=model.dtype(in_name).name if in_name else "-",
        out_dtype=model.dtype(out).name,
        params=params,
        nonzero_params=nonzero,
        act_bits=float(_prod(model.shape(out)) * bitwidth(model.dtype(out))),
    )
    if node.op_type not in MAC_OPS or len(node.input) < 2:
        return row
    unknown = next((t for t in (node.input[0], node.input[1], out) if model.shape(t) is None), None)
    if unknown is not None:
        from codesign.errors import UnsupportedModelError

        raise UnsupportedModelError(
            f"node {node.name!r} ({node.op_type}): shape of tensor {unknown!r} is unknown; cannot count its MACs"
        )
    macs, fan_in, w_name = _mac_geometry(model, node)
    i_dt, w_dt = model.dtype(node.input[0]), model.dtype(node.input[1])
    b_i, b_w = bitwidth(i_dt), bitwidth(w_dt)
    row.weight_dtype = w_dt.name
    density = 1.0
    w_elems = 0
    if w_name is not None:
        w_elems = model.constant(w_name).size
        density = model.nonzero(w_name) / w_elems if w_elems else 1.0
    row.macs = macs * density
    row.weight_bits = w_elems * density * b_w
    if definition == "qonnx":
        row.bops = row.macs * b_i * b_w
    elif definition == "nac":
        m = macs / fan_in
        row.bops = m * fan_in * (density * b_i * b_w + b_i + b_w + math.log2(fan_in))
    else:
        raise ValueError(f"unknown BOPs definition {definition!r}; choose from {BOPS_DEFINITIONS}")
    return row


#: Ops that cost nothing to count (data movement, elementwise, quantizers): qonnx's list.
ZERO_COST_OPS = frozenset(
    {
        "MaxPool", "AveragePool", "Quant", "QuantizeLinear", "DequantizeLinear", "Reshape", "Concat", "Transpose",
        "Div", "Mul", "Add", "Sub", "BatchNormalization", "Relu", "Elu", "Selu", "Sigmoid", "Identity", "Flatten",
        "Pad", "Clip", "Trunc",
    }
)  # fmt: skip


def cost_report(model: Model, definition: str = "qonnx") -> CostReport:
    """Per-layer costs of every node except weight quantizers."""
    if definition not in BOPS_DEFINITIONS:
        raise ValueError(f"unknown BOPs definition {definition!r}; choose from {BOPS_DEFINITIONS}")
    layers = [layer_cost(model, n, definition) for n in model.graph.node if not _is_weight_quantizer(model, n)]
    unsupported = sorted({n.op_type for n in model.graph.node if n.op_type not in MAC_OPS | ZERO_COST_OPS})
    return CostReport(layers, definition, unsupported)


class CostAnalysis(Pass):
    """Analysis pass: ``PassResult.info`` is the :class:`CostReport`."""

    in_place = True

    def __init__(self, bops: str = "qonnx"):
        if bops not in BOPS_DEFINITIONS:
            raise ValueError(f"unknown BOPs definition {bops!r}; choose from {BOPS_DEFINITIONS}")
        self.bops = bops

    def call(self, model: Model) -> PassResult:
        return PassResult(model, False, cost_report(ensure_analysable(model), self.bops))


def ensure_analysable(model: Model) -> Model:
    """Models from plain qonnx/ONNX flows may lack names, shapes or datatypes: add them.

    A model that already has them (every IR model) is returned as is, at no cost.
    """
    g = model.graph
    complete = all(n.name for n in g.node) and all(model.shape(o) is not None for n in g.node for o in n.output if o)
    if complete and g.quantization_annotation:
        return model
    from codesign.passes.normalize import normalize

    return normalize()(model).model
