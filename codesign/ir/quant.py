"""Execute one QONNX quantizer node on constant inputs, through qonnx's own op code.

Used to see quantized weight values (sparsity, statistics) without folding the
``Quant`` node away: the canonical QONNX form keeps weight quantizers in the graph.
"""

from __future__ import annotations

import numpy as np
import onnx
from qonnx.custom_op.general.bipolar_quant import binary_quant
from qonnx.custom_op.general.intquant import int_quant
from qonnx.custom_op.registry import getCustomOp

QONNX_DOMAIN = "qonnx.custom_op.general"


def execute_quant(node: onnx.NodeProto, args: list[np.ndarray | None]) -> np.ndarray:
    """Run ``node`` (Quant/BipolarQuant/Trunc/FloatQuant) on numpy ``args``.

    Quant and BipolarQuant call qonnx's quantizer functions directly (no CustomOp
    instance: the search folds thousands of weight quantizers a minute).
    """
    if node.op_type == "Quant" and len(args) == 4:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        rounding = attrs.get("rounding_mode", b"ROUND")
        out = int_quant(args[0], args[1], args[2], args[3], int(attrs.get("signed", 1)), int(attrs.get("narrow", 0)),
                        rounding.decode() if isinstance(rounding, bytes) else rounding)  # fmt: skip
        return np.asarray(out, dtype=np.float32)
    if node.op_type == "BipolarQuant" and len(args) == 2:
        return np.asarray(binary_quant(args[0], args[1]), dtype=np.float32)
    if node.domain != QONNX_DOMAIN:
        node = _with_domain(node, QONNX_DOMAIN)
    context: dict[str, np.ndarray | None] = dict(zip(node.input, args))
    getCustomOp(node).execute_node(context, None)
    return np.asarray(context[node.output[0]], dtype=np.float32)


def _with_domain(node: onnx.NodeProto, domain: str) -> onnx.NodeProto:
    clone = onnx.NodeProto()
    clone.CopyFrom(node)
    clone.domain = domain
    return clone
