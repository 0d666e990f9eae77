"""QONNX datatype inference in linear time (qonnx's own is quadratic in node count).

The per-node rules are qonnx's (``_infer_node_datatype``, custom ops'
``infer_node_datatype``), run over an :class:`~codesign.ir.indexed.IndexedWrapper` so that
every look-up is O(1). The graph is sorted, so one sweep reaches the fixed point; a
second sweep only confirms it.
"""

from __future__ import annotations

import numpy as np
import onnx
from qonnx.core.datatype import DataType
from qonnx.transformation.infer_datatypes import _infer_node_datatype

from codesign.ir.indexed import IndexedWrapper
from codesign.ir.model import Model
from codesign.passes.base import Pass, PassResult


def _offset_quant(view: IndexedWrapper, node: onnx.NodeProto) -> bool | None:
    """An asymmetric Quant (non-zero zero point, as int8/uint8 QDQ exports write) is
    ``SCALEDINT<bits>``, as qonnx labels a DequantizeLinear output; qonnx's Quant rule gives
    up (FLOAT32) on any non-zero zero point. None when the rule does not apply."""
    if node.op_type != "Quant" or len(node.input) < 4:
        return None
    zp, bits = view.get_initializer(node.input[2]), view.get_initializer(node.input[3])
    if zp is None or bits is None or not np.any(zp != 0) or bits.size != 1:
        return None
    new = DataType[f"SCALEDINT<{int(bits.reshape(-1)[0])}>"]
    old = view.get_tensor_datatype(node.output[0])
    view.set_tensor_datatype(node.output[0], new)
    return new != old


def infer_datatypes(model: Model, allow_scaledint: bool = True, max_sweeps: int = 3) -> bool:
    """Annotate every tensor's QONNX datatype in place; True if any annotation changed."""
    view = IndexedWrapper(model.wrapper)
    for _ in range(max_sweeps):
        changed = False
        for node in model.graph.node:
            offset = _offset_quant(view, node) if allow_scaledint else None
            changed |= bool(_infer_node_datatype(view, node, allow_scaledint) if offset is None else offset)
        if not changed:
            break
    modified = view.commit_datatypes()
    model.invalidate()
    return modified


class InferDatatypes(Pass):
    """qonnx ``InferDataTypes(allow_scaledint_dtypes=True)`` semantics, linear time."""

    def call(self, model: Model) -> PassResult:
        return PassResult(model, infer_datatypes(model))
