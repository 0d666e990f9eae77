"""Every initializer read by one node input only (qonnx ``GiveUniqueParameterTensors``, linear time).

Lowering steps rewrite a weight or scale in place for the node that reads it; a tensor shared
by two nodes would change both. qonnx's own pass keeps a list of seen names and scans the
initializers per input: quadratic, minutes on a 2,000-node chain.
"""

from __future__ import annotations

import onnx

from codesign.ir.model import Model
from codesign.passes.base import Pass, PassResult

_DTYPE_KEY = "finn_datatype"


def unique_parameter_tensors(model: Model) -> bool:
    """Copy each initializer read a second time under a fresh name (its datatype too); True if any was."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    dtypes = {
        ann.tensor_name: kv.value
        for ann in g.quantization_annotation
        for kv in ann.quant_parameter_tensor_names
        if kv.key == _DTYPE_KEY
    }
    taken = set(inits) | {t for n in g.node for t in (*n.input, *n.output)} | {v.name for v in g.value_info}
    seen: set[str] = set()
    copies: list[onnx.TensorProto] = []
    annotations: list[onnx.TensorAnnotation] = []
    for node in g.node:
        for i, name in enumerate(node.input):
            if name not in inits:
                continue
            if name not in seen:
                seen.add(name)
                continue
            k = 1
            while f"{name}_{k}" in taken:
                k += 1
            fresh = f"{name}_{k}"
            taken.add(fresh)
            copy = onnx.TensorProto()
            copy.CopyFrom(inits[name])
            copy.name = fresh
            copies.append(copy)
            if name in dtypes:
                ann = onnx.TensorAnnotation(tensor_name=fresh)
                ann.quant_parameter_tensor_names.add(key=_DTYPE_KEY, value=dtypes[name])
                annotations.append(ann)
            node.input[i] = fresh
    if not copies:
        return False
    g.initializer.extend(copies)
    g.quantization_annotation.extend(annotations)
    model.invalidate()
    return True


class UniqueParameterTensors(Pass):
    """See the module docstring."""

    def call(self, model: Model) -> PassResult:
        return PassResult(model, unique_parameter_tensors(model))


__all__ = ["UniqueParameterTensors", "unique_parameter_tensors"]
