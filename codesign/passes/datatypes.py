"""QONNX datatype inference in linear time (qonnx's own is quadratic in node count).

The per-node rules are qonnx's (``_infer_node_datatype``, custom ops'
``infer_node_datatype``), run over an :class:`~codesign.ir.indexed.IndexedWrapper` so that
every look-up is O(1). The graph is sorted, so one sweep reaches the fixed point; a
second sweep only confirms it.
"""

from __future__ import annotations

from qonnx.transformation.infer_datatypes import _infer_node_datatype

from codesign.ir.indexed import IndexedWrapper
from codesign.ir.model import Model
from codesign.passes.base import Pass, PassResult


def infer_datatypes(model: Model, allow_scaledint: bool = True, max_sweeps: int = 3) -> bool:
    """Annotate every tensor's QONNX datatype in place; True if any annotation changed."""
    view = IndexedWrapper(model.wrapper)
    for _ in range(max_sweeps):
        changed = False
        for node in model.graph.node:
            changed |= bool(_infer_node_datatype(view, node, allow_scaledint))
        if not changed:
            break
    modified = view.commit_datatypes()
    model.invalidate()
    return modified


class InferDatatypes(Pass):
    """qonnx ``InferDataTypes(allow_scaledint_dtypes=True)`` semantics, linear time."""

    def call(self, model: Model) -> PassResult:
        return PassResult(model, infer_datatypes(model))
