"""codesign's channels-last layout pass: every spatial tensor stored (N, *spatial, C).

hls4ml computes convolutions, pools and upsampling on channels-last data. The IR is
ONNX's channels-first. This pass decides the layout of every tensor in one walk in
graph order, so branches, residual adds, concatenations and upsampling come out right by
construction: spatial ops make their outputs channels-last; elementwise ops and
concatenations follow their inputs (constants are permuted to match, Concat/Softmax axes
remapped); ops that read a layout (Flatten, Reshape, MatMul, ...) get a Transpose back
to channels-first, or nothing when only size-1 axes would move. Conv/pool/BN/Resize/Pad
nodes move to qonnx's channels-last domain (weights OHWI, as qonnx stores them); the
model input becomes channels-last, a spatial model output stays channels-last.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from codesign.backends.precision import _attr
from codesign.ir.model import Model
from codesign.passes.base import Pass, PassResult
from codesign.passes.graph_edit import add_initializer, fresh_name

CHANNELS_LAST = "qonnx.custom_op.channels_last"
#: metadata key: the graph inputs/outputs stored channels-last (a 3x3x3 input's shape cannot tell)
CHANNELS_LAST_PORTS = "codesign.channels_last_ports"
#: Ops computed on channels-last data (their inputs are made channels-last first).
SPATIAL = frozenset({"Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization",
                     "Resize", "Upsample", "Pad"})  # fmt: skip
#: Ops that do not care about the layout of their (one computed) input.
ELEMENTWISE = frozenset({"Quant", "BipolarQuant", "Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "Elu", "Selu",
                         "Softplus", "Softsign", "Identity", "Dropout", "Add", "Sub", "Mul", "Div", "Max", "Min",
                         "Sum", "Trunc", "PRelu", "HardSigmoid", "ThresholdedRelu", "Exp", "Log", "Sqrt", "Reciprocal",
                         "Erf", "Abs", "Neg", "Sin", "Cos", "Floor", "Ceil", "Round", "Sign"})  # fmt: skip


def to_last(rank: int) -> list[int]:
    """perm taking channels-first (N, C, *S) to channels-last (N, *S, C)."""
    return [0, *range(2, rank), 1]


def to_first(rank: int) -> list[int]:
    """perm taking channels-last back to channels-first."""
    return [0, rank - 1, *range(1, rank - 1)]


def cl_axis(axis: int, rank: int) -> int:
    """A channels-first axis' position in the channels-last tensor."""
    axis = axis + rank if axis < 0 else axis
    return 0 if axis == 0 else rank - 1 if axis == 1 else axis - 1


def _trivial(shape: tuple[int, ...], perm: list[int]) -> bool:
    """Whether transposing ``shape`` by ``perm`` keeps row-major data order (moves only size-1 axes)."""
    moved = [p for p in perm if shape[p] != 1]
    return moved == sorted(moved)


class ChannelsLastLayout(Pass):
    """Spatial tensors channels-last (see the module doc); models without spatial ops are left alone."""

    def call(self, model: Model) -> PassResult:
        if not any(n.op_type in SPATIAL and n.domain in ("", "ai.onnx") for n in model.graph.node):
            return PassResult(model, False)
        cf_shape = {vi.name: model.shape(vi.name) for vi in [*model.graph.value_info, *model.graph.input,
                                                             *model.graph.output]}  # fmt: skip
        last: set[str] = set()  # tensors now stored channels-last
        for inp in model.graph.input:
            shape = model.shape(inp.name)
            consumers = model.consumers(inp.name)
            if not consumers or not all(c.op_type in SPATIAL | ELEMENTWISE for c in consumers):
                continue  # read as laid out (an exporter's own Transpose/Reshape of a Keras NHWC input)
            if shape is not None and len(shape) >= 3 and model.initializer(inp.name) is None:
                last.add(inp.name)
        new_nodes: list[onnx.NodeProto] = []
        for node in list(model.graph.node):
            new_nodes.extend(self._node(model, node, last, cf_shape, new_nodes))
        del model.graph.node[:]
        model.graph.node.extend(new_nodes)
        _rewrite_shapes(model, last, cf_shape)
        ports = [t.name for t in [*model.graph.input, *model.graph.output] if t.name in last]
        helper.set_model_props(model.proto, {**{p.key: p.value for p in model.proto.metadata_props},
                                             CHANNELS_LAST_PORTS: ",".join(ports)})  # fmt: skip
        _import_channels_last_opset(model)
        model.invalidate()
        return PassResult(model, True)

    # ---------------------------------------------------------------- per node
    def _node(self, model: Model, node: onnx.NodeProto, last: set[str], cf: dict, out: list) -> list[onnx.NodeProto]:
        computed = [i for i in node.input if i and model.initializer(i) is None and not _is_weight(model, i)]
        op = node.op_type
        if op in SPATIAL and node.domain in ("", "ai.onnx") and len(cf.get(node.input[0]) or ()) >= 3:
            pre = self._ensure(model, node, 0, True, last, cf)
            self._to_channels_last(model, node)
            last.update(node.output[:1])
            return [*pre, node]
        if op in ELEMENTWISE and any(i in last for i in computed):
            pre: list[onnx.NodeProto] = []
            for k, name in enumerate(node.input):
                if not name:
                    continue
                if name in computed:
                    pre += self._ensure(model, node, k, True, last, cf)
                else:
                    self._permute_constant(model, node, k, len(cf[node.output[0]]))
            last.update(node.output[:1])
            return [*pre, node]
        if op in ("Concat", "Softmax") and node.input[0] in last:
            rank = len(cf[node.input[0]])
            pre = [p for k in range(len(node.input)) for p in self._ensure(model, node, k, True, last, cf)]
            axis = int(_attr(node, "axis", 1 if op == "Concat" else -1))
            _set(node, "axis", cl_axis(axis, rank))
            last.update(node.output[:1])
            return [*pre, node]
        if op == "Transpose" and node.input[0] in last:
            rank = len(cf[node.input[0]])
            perm = list(_attr(node, "perm", list(reversed(range(rank)))))
            _set(node, "perm", [to_first(rank)[p] for p in perm])
            return [node]
        # anything else reads channels-first data
        pre = [p for k in range(len(node.input)) for p in self._ensure(model, node, k, False, last, cf)]
        return [*pre, node]

    def _ensure(self, model: Model, node: onnx.NodeProto, k: int, want_last: bool, last: set[str], cf: dict):
        """Make input ``k`` of ``node`` the wanted layout (a Transpose, or nothing if data order is the same)."""
        name = node.input[k]
        shape = cf.get(name)
        if not name or shape is None or len(shape) < 3 or (name in last) == want_last:
            return []
        if model.initializer(name) is not None or _is_weight(model, name):
            return []
        rank = len(shape)
        producer = model.producer(name)
        if (
            want_last and producer is not None and producer.op_type == "Transpose"
            and len(model.consumers(name)) == 1 and name not in model.outputs
        ):  # fmt: skip
            first = list(_attr(producer, "perm", list(reversed(range(rank)))))
            _set(producer, "perm", [first[p] for p in to_last(rank)])  # one Transpose straight to channels-last
            last.add(name)
            return []
        if want_last:
            perm, new_shape = to_last(rank), tuple(shape[p] for p in to_last(rank))
        else:
            stored = tuple(shape[p] for p in to_last(rank))
            perm, new_shape = to_first(rank), tuple(shape)
            if _trivial(stored, perm) and node.op_type in ("Flatten", "Reshape"):
                return []  # same data order; these ops only read the element count
            if node.op_type in ("Flatten", "Reshape") and _absorb_into_matmuls(model, node, stored):
                return []  # the flattened order is folded into the next MatMul's weight rows
        out = fresh_name(model, f"{name}_{'cl' if want_last else 'cf'}")
        t = helper.make_node("Transpose", [name], [out], name=fresh_name(model, f"{node.name}_in{k}_layout"), perm=perm)
        model.graph.value_info.append(helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, list(new_shape)))
        cf[out] = tuple(shape)
        if want_last:
            last.add(out)
        node.input[k] = out
        model.graph.node.append(t)  # so fresh_name sees it; the pass rebuilds the node list anyway
        return [t]

    def _to_channels_last(self, model: Model, node: onnx.NodeProto) -> None:
        node.domain = CHANNELS_LAST
        if node.op_type == "Conv":
            _permute_weight(model, node.input[1])
        elif node.op_type == "Resize":
            rank = len(model.shape(node.input[0]))
            for k in (1, 2, 3):  # roi, scales, sizes: per-axis vectors
                if len(node.input) > k and node.input[k]:
                    v = model.initializer(node.input[k])
                    if v is not None and v.size in (rank, 2 * rank):
                        parts = v.reshape(-1, rank)[:, to_last(rank)].reshape(v.shape)
                        node.input[k] = add_initializer(model, f"{node.input[k]}_cl", parts.astype(v.dtype))
        elif node.op_type == "Pad":
            rank = len(model.shape(node.input[0]))
            pads = model.initializer(node.input[1]) if len(node.input) > 1 else None
            if pads is not None and pads.size == 2 * rank:
                p = pads.reshape(2, rank)[:, to_last(rank)].reshape(-1)
                node.input[1] = add_initializer(model, f"{node.input[1]}_cl", p.astype(pads.dtype))
            attr_pads = _attr(node, "pads")
            if attr_pads is not None and len(attr_pads) == 2 * rank:  # opset < 11: pads as an attribute
                _set(node, "pads", [int(v) for v in np.reshape(attr_pads, (2, rank))[:, to_last(rank)].ravel()])

    def _permute_constant(self, model: Model, node: onnx.NodeProto, k: int, rank: int) -> None:
        """A broadcast constant operand of an elementwise op, permuted like the channels-last tensor."""
        name = node.input[k]
        value = model.initializer(name)
        if value is None:
            value = model.constant(name)
            if value is None or value.size == 1:
                return
        if value.ndim == 0 or value.size == 1:
            return
        full = value.reshape((1,) * (rank - value.ndim) + value.shape) if value.ndim < rank else value
        node.input[k] = add_initializer(model, f"{name}_cl", np.ascontiguousarray(full.transpose(to_last(rank))))


#: Ops between a Flatten and its MatMul that act per element with scalar parameters.
_PER_ELEMENT = frozenset(
    {"Quant", "Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "Identity", "Dropout", "ThresholdedRelu"}
)


def _absorb_into_matmuls(model: Model, flatten: onnx.NodeProto, stored: tuple[int, ...]) -> bool:
    """Flatten a channels-last tensor directly, permuting the rows of the MatMul weights it reaches.

    Only when the flattened tensor (through per-element ops with scalar parameters) reaches
    nothing but MatMuls with constant, unshared weights.
    """
    out_shape = model.shape(flatten.output[0])
    if out_shape is None or len(out_shape) != 2 or flatten.output[0] in model.outputs:
        return False
    matmuls, frontier = [], [flatten.output[0]]
    while frontier:
        tensor = frontier.pop()
        if tensor in model.outputs:
            return False
        for c in model.consumers(tensor):
            if c.op_type == "MatMul" and c.input[0] == tensor and model.constant(c.input[1]) is not None:
                matmuls.append(c)
            elif (
                c.op_type in _PER_ELEMENT
                and c.input[0] == tensor
                and all(model.constant(i) is not None and model.constant(i).size == 1 for i in c.input[1:] if i)
            ):
                frontier.append(c.output[0])
            else:
                return False
    rank = len(stored)
    cf_dims = [stored[p] for p in to_first(rank)][1:]  # (C, *S)
    for mm in matmuls:
        producer = model.producer(mm.input[1])
        name = mm.input[1] if producer is None else producer.input[0]
        w = model.initializer(name)
        if w is None or w.ndim != 2 or w.shape[0] != int(np.prod(cf_dims)) or len(model.consumers(name)) != 1:
            return False
    for mm in matmuls:
        producer = model.producer(mm.input[1])
        name = mm.input[1] if producer is None else producer.input[0]
        w = model.initializer(name)
        rows = w.reshape(*cf_dims, w.shape[1])
        moved = np.moveaxis(rows, 0, rank - 2).reshape(w.shape)  # (C, *S, n) -> (*S, C, n)
        model.set_initializer(name, np.ascontiguousarray(moved))
    return True


def _is_weight(model: Model, name: str) -> bool:
    return model.constant(name) is not None


def _permute_weight(model: Model, name: str) -> None:
    """OIHW -> OHWI for a Conv weight (an initializer, or a Quant of one: params permuted alike)."""
    producer = model.producer(name)
    targets = [name] if producer is None else [i for i in producer.input if model.initializer(i) is not None]
    for t in targets:
        v = model.initializer(t)
        if v is not None and v.ndim >= 3:
            model.set_initializer(t, np.ascontiguousarray(np.moveaxis(v, 1, -1)))
    if producer is not None:  # the Quant's output takes its weight's new (OHWI) shape: qonnx needs it to run
        for vi in list(model.graph.value_info):
            if vi.name == name:
                model.graph.value_info.remove(vi)
        w = model.initializer(producer.input[0])
        if w is not None:
            model.graph.value_info.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, list(w.shape)))


def _import_channels_last_opset(model: Model) -> None:
    """qonnx executes a channels-last node with the ONNX op of its domain's opset: the model's own."""
    onnx_version = next((o.version for o in model.proto.opset_import if o.domain in ("", "ai.onnx")), 13)
    for o in model.proto.opset_import:
        if o.domain == CHANNELS_LAST:
            o.version = max(o.version, onnx_version)
            return
    model.proto.opset_import.append(helper.make_opsetid(CHANNELS_LAST, onnx_version))


def _set(node: onnx.NodeProto, key: str, value) -> None:
    for a in list(node.attribute):
        if a.name == key:
            node.attribute.remove(a)
    node.attribute.append(helper.make_attribute(key, value))


def _rewrite_shapes(model: Model, last: set[str], cf: dict) -> None:
    """value_info/input/output shapes of channels-last tensors permuted (the rest keep theirs)."""
    g = model.graph
    for vi in [*g.value_info, *g.input, *g.output]:
        shape = cf.get(vi.name)
        if vi.name in last and shape is not None and len(shape) >= 3:
            new = [shape[p] for p in to_last(len(shape))]
            dims = vi.type.tensor_type.shape.dim
            for d, v in zip(dims, new):
                d.ClearField("dim_param")
                d.dim_value = int(v)


def channels_last_ports(model: Model) -> set[str] | None:
    """The graph inputs/outputs :class:`ChannelsLastLayout` stored channels-last; None if it never ran on ``model``."""
    for prop in model.proto.metadata_props:
        if prop.key == CHANNELS_LAST_PORTS:
            return {name for name in prop.value.split(",") if name}
    return None


__all__ = ["CHANNELS_LAST_PORTS", "ChannelsLastLayout", "channels_last_ports", "cl_axis", "to_first", "to_last"]
