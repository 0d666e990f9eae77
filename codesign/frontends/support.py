"""Which graphs codesign accepts, and one clear refusal for the rest.

Accepted: standard ONNX ops (any opset the onnx package knows) and QONNX custom ops.
Refused: FINN hardware-layer graphs (already lowered past QONNX), and unknown ops,
all listed in one message with the nodes that use them.
"""

from __future__ import annotations

import onnx
import onnx.defs
from qonnx.custom_op.registry import is_custom_op

from codesign.errors import UnsupportedModelError
from codesign.ir.quant import QONNX_DOMAIN
from codesign.passes.normalize import QONNX_GENERAL_OPS, QUANT_DOMAINS

_FINN_HW_MARKERS = ("fpgadataflow", ".hls", ".rtl")


def is_finn_hardware_node(node: onnx.NodeProto) -> bool:
    """A node of FINN's hardware layers (MVAU_hls, Thresholding_rtl, ...)."""
    dom = node.domain
    return any(m in dom for m in _FINN_HW_MARKERS) or node.op_type.endswith(("_hls", "_rtl"))


def is_supported_node(node: onnx.NodeProto) -> bool:
    if node.domain in ("", "ai.onnx") and onnx.defs.has(node.op_type):
        return True
    domain = QONNX_DOMAIN if node.op_type in QONNX_GENERAL_OPS and node.domain in QUANT_DOMAINS else node.domain
    if not domain:
        return False
    try:
        return is_custom_op(domain, node.op_type)
    except Exception:  # qonnx raises on domains it cannot import
        return False


def check_supported(proto: onnx.ModelProto) -> None:
    """Raise :class:`UnsupportedModelError` naming every op codesign cannot take."""
    hw = [n for n in proto.graph.node if is_finn_hardware_node(n)]
    if hw:
        kinds = sorted({n.op_type for n in hw})
        raise UnsupportedModelError(
            f"this is a FINN hardware-layer graph ({', '.join(kinds)} in {hw[0].domain!r}), already lowered by FINN; "
            "give codesign the QONNX model from before FINN's build"
        )
    bad: dict[str, list[str]] = {}
    for idx, node in enumerate(proto.graph.node):
        if not is_supported_node(node):
            key = f"{node.domain}.{node.op_type}" if node.domain else node.op_type
            bad.setdefault(key, []).append(node.name or f"#{idx}")
    if bad:
        parts = [
            f"{op} (node {', '.join(repr(n) for n in names[:5])}{' ...' if len(names) > 5 else ''})"
            for op, names in sorted(bad.items())
        ]
        raise UnsupportedModelError(f"unsupported op{'s' if len(bad) > 1 else ''}: {'; '.join(parts)}")
