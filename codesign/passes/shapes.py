"""Shape inference that also covers QONNX custom ops, without qonnx's slow path.

qonnx's ``InferShapes`` swaps each custom op for a shape-compatible standard op and
finds the originals again by ``str(node)``; for channels-last ``Conv`` the stand-in is
a ``Constant`` holding a random tensor of the full output size, so a 512x512 image model
takes ~30 s. Here stand-ins are restored by position, and channels-last convolutions
get a tiny ``ConstantOfShape`` stand-in computed from conv arithmetic.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnx.shape_inference as si
from onnx import helper, numpy_helper
from qonnx.custom_op.registry import getCustomOp, is_custom_op

from codesign.ir.model import Model
from codesign.passes.base import Pass, PassResult

CHANNELS_LAST = "qonnx.custom_op.channels_last"


def _conv_out(size: int, k: int, s: int, pad: int, d: int) -> int:
    return (size + pad - d * (k - 1) - 1) // s + 1


def _channels_last_conv_shape(model: Model, node: onnx.NodeProto) -> list[int] | None:
    ishape = model.wrapper.get_tensor_shape(node.input[0])
    wshape = model.wrapper.get_tensor_shape(node.input[1])
    if ishape is None or wshape is None:
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    nsp = len(ishape) - 2
    k = list(attrs.get("kernel_shape", wshape[1 : 1 + nsp]))
    strides = list(attrs.get("strides", [1] * nsp))
    dil = list(attrs.get("dilations", [1] * nsp))
    pads = list(attrs.get("pads", [0] * 2 * nsp))
    spatial = [_conv_out(ishape[1 + i], k[i], strides[i], pads[i] + pads[i + nsp], dil[i]) for i in range(nsp)]
    return [ishape[0], *spatial, wshape[0]]


def _channels_last_pool_shape(model: Model, node: onnx.NodeProto) -> list[int] | None:
    """qonnx's own MaxPool stand-in hard-codes batch 1; this keeps the real batch."""
    ishape = model.wrapper.get_tensor_shape(node.input[0])
    if ishape is None:
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    nsp = len(ishape) - 2
    k = list(attrs["kernel_shape"])
    strides = list(attrs.get("strides", [1] * nsp))
    pads = list(attrs.get("pads", [0] * 2 * nsp))
    spatial = [_conv_out(ishape[1 + i], k[i], strides[i], pads[i] + pads[i + nsp], 1) for i in range(nsp)]
    return [ishape[0], *spatial, ishape[-1]]


def _stand_in(model: Model, node: onnx.NodeProto, extra_inits: list[onnx.TensorProto]) -> onnx.NodeProto:
    if node.domain == CHANNELS_LAST and node.op_type in ("Conv", "MaxPool"):
        fn = _channels_last_conv_shape if node.op_type == "Conv" else _channels_last_pool_shape
        shape = fn(model, node)
        if shape is not None:
            shape_name = f"__codesign_shape_{len(extra_inits)}"
            extra_inits.append(numpy_helper.from_array(np.array(shape, dtype=np.int64), shape_name))
            return helper.make_node("ConstantOfShape", [shape_name], [node.output[0]], name=node.name)
    compat = getCustomOp(node).make_shape_compatible_op(model.wrapper)
    compat.name = node.name
    return compat


#: Initializers above this many elements reach onnx's inference as typed inputs: only
#: their shape matters there, and copying them would cost time and memory.
_SMALL_INIT = 4096


def _infer_round(model: Model) -> int:
    """One inference round; returns how many custom ops had no stand-in yet.

    A custom op whose input shapes are still unknown (a channels-last Conv fed by
    another one, after value_info was cleared) is left in place; onnx skips it, and the
    next round, with its inputs now known, builds its stand-in. Inference runs on a
    scratch graph (stand-ins in place of custom ops), so the model is never edited node
    by node (quadratic on protobuf lists).
    """
    graph = model.graph
    extra_inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []
    pending = 0
    for node in graph.node:
        if node.domain and is_custom_op(node.domain, node.op_type):
            try:
                nodes.append(_stand_in(model, node, extra_inits))
                continue
            except (TypeError, AttributeError, IndexError, KeyError):
                pending += 1
        nodes.append(node)
    small = [t for t in graph.initializer if math.prod(t.dims) <= _SMALL_INIT]
    large = [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
             for t in graph.initializer if math.prod(t.dims) > _SMALL_INIT]  # fmt: skip
    scratch_graph = helper.make_graph(
        nodes,
        graph.name or "g",
        list(graph.input) + large,
        list(graph.output),
        small + extra_inits,
        value_info=list(graph.value_info),
    )
    scratch = helper.make_model(
        scratch_graph, opset_imports=list(model.proto.opset_import), ir_version=model.proto.ir_version
    )
    inferred = si.infer_shapes(scratch)
    known = {vi.name: vi for vi in graph.value_info}
    known.update({vi.name: vi for vi in inferred.graph.value_info})
    _fill_outputs(graph, inferred.graph)
    model.proto.graph.ClearField("value_info")
    model.proto.graph.value_info.extend(vi for name, vi in known.items() if not name.startswith("__codesign_shape_"))
    model.invalidate()
    return pending


def _fill_outputs(graph: onnx.GraphProto, inferred: onnx.GraphProto) -> None:
    """Graph outputs declared without a shape or with symbolic dims (``Quant96_dim_0``) take the inferred one."""
    by_name = {vi.name: vi for vi in inferred.output}
    for vi in graph.output:
        new = by_name.get(vi.name)
        if new is None or not new.type.tensor_type.HasField("shape"):
            continue
        dims = new.type.tensor_type.shape.dim
        declared = vi.type.tensor_type
        open_dims = not declared.HasField("shape") or any(not d.HasField("dim_value") for d in declared.shape.dim)
        if all(d.HasField("dim_value") for d in dims) and open_dims:
            vi.type.tensor_type.shape.CopyFrom(new.type.tensor_type.shape)


def infer_shapes(model: Model) -> None:
    """Fill value_info for every tensor, in place (custom ops included)."""
    model.proto.graph.ClearField("value_info")
    model.invalidate()
    pending = _infer_round(model)
    while pending:
        still = _infer_round(model)
        if still >= pending:
            break
        pending = still
    _initializer_value_infos(model.graph)
    model.invalidate()


def _initializer_value_infos(graph: onnx.GraphProto) -> None:
    """qonnx's node-by-node execution needs a value_info for every initializer."""
    known = {vi.name for vi in graph.value_info} | {vi.name for vi in graph.input} | {vi.name for vi in graph.output}
    graph.value_info.extend(
        helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
        for t in graph.initializer
        if t.name not in known
    )


class InferShapes(Pass):
    """Shape inference for standard and QONNX custom ops (fast path for channels-last)."""

    def call(self, model: Model) -> PassResult:
        before = {vi.name for vi in model.graph.value_info}
        infer_shapes(model)
        after = {vi.name for vi in model.graph.value_info}
        return PassResult(model, after != before)


def activation_sizes(model: Model) -> dict[str, int]:
    """Elements per tensor of one sample, for every non-initializer tensor with a known shape (what running costs)."""
    inits = {t.name for t in model.graph.initializer}
    names = {x for n in model.graph.node for x in (*n.input, *n.output) if x} | set(model.inputs)
    return {x: math.prod(s) for x in names - inits if (s := model.shape(x)) is not None}
