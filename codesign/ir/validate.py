"""IR invariants: what every pass may assume and must leave true.

1. ``onnx.checker`` accepts the model.
2. Node names are unique, non-empty and safe for generated code.
3. Every node input is a graph input, an initializer, or an earlier node's output
   (the node list is topologically sorted).
4. QONNX quantizers live in the one canonical domain ``qonnx.custom_op.general``.
5. Every graph input and output has a fully static shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import onnx

from codesign.errors import ValidationError
from codesign.ir.names import is_safe_name
from codesign.ir.quant import QONNX_DOMAIN

if TYPE_CHECKING:
    from codesign.ir.model import Model

QONNX_OPS = frozenset({"Quant", "BipolarQuant", "Trunc", "FloatQuant", "IntQuant", "MultiThreshold"})


def problems(model: Model) -> list[str]:
    """Every broken invariant, as one short line each (empty list: valid)."""
    found: list[str] = []
    try:
        onnx.checker.check_model(model.proto)
    except onnx.checker.ValidationError as exc:
        found.append(f"onnx.checker: {str(exc).splitlines()[0]}")
    seen_names: set[str] = set()
    available = set(model.inputs) | {t.name for t in model.graph.initializer} | {""}
    for node in model.graph.node:
        if not node.name:
            found.append(f"unnamed {node.op_type} node")
        elif node.name in seen_names:
            found.append(f"duplicate node name {node.name!r}")
        elif not is_safe_name(node.name):
            found.append(f"unsafe node name {node.name!r}")
        seen_names.add(node.name)
        missing = [i for i in node.input if i not in available]
        if missing:
            found.append(f"node {node.name!r} reads {missing[0]!r} before it is produced")
        if node.op_type in QONNX_OPS and node.domain not in (QONNX_DOMAIN,) and node.domain != "":
            found.append(f"node {node.name!r}: {node.op_type} in non-canonical domain {node.domain!r}")
        elif node.op_type in QONNX_OPS and node.domain == "":
            found.append(f"node {node.name!r}: {node.op_type} in the default domain")
        available.update(node.output)
    for name in model.inputs + model.outputs:
        if model.shape(name) is None:
            found.append(f"tensor {name!r} has no static shape")
    return found


def validate(model: Model) -> None:
    """Raise :class:`ValidationError` naming the first broken invariant."""
    found = problems(model)
    if found:
        more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
        raise ValidationError(f"invalid IR: {found[0]}{more}")
