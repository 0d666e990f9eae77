"""Execute one QONNX quantizer node on constant inputs, through qonnx's own op code.

Used to see quantized weight values (sparsity, statistics) without folding the
``Quant`` node away: the canonical QONNX form keeps weight quantizers in the graph.
"""

from __future__ import annotations

import numpy as np
import onnx
from qonnx.custom_op.registry import getCustomOp

QONNX_DOMAIN = "qonnx.custom_op.general"


def execute_quant(node: onnx.NodeProto, args: list[np.ndarray | None]) -> np.ndarray:
    """Run ``node`` (Quant/BipolarQuant/Trunc/FloatQuant) on numpy ``args``."""
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
