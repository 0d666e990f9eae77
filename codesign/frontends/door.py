"""Checks on a parsed ModelProto before anything else touches it.

Each refusal is one line naming the node or field: invalid UTF-8 in a string field
(protobuf hands it to Python as ``bytes`` and every later ``str`` operation crashes), no
graph output, an opset onnx does not define, a Conv ``group`` below 1. Checks that need
shapes or constant values live in passes (``passes/quantizers.py``, ``passes/sanity.py``).
"""

from __future__ import annotations

import onnx
import onnx.defs
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from codesign.errors import ModelLoadError, UnsupportedModelError

#: Oldest default-domain opset accepted before upgrade (onnx's version converter starts at 1).
MIN_OPSET = 1


def _bad_string(msg: Message, path: str) -> str | None:
    """Dotted path of the first string field holding invalid UTF-8, or None."""
    for field, value in msg.ListFields():
        repeated = field.is_repeated
        items = value if repeated else [value]
        if field.type == FieldDescriptor.TYPE_STRING:
            if any(isinstance(v, bytes) for v in items):
                return f"{path}.{field.name}"
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            for k, item in enumerate(items):
                found = _bad_string(item, f"{path}.{field.name}[{k}]" if repeated else f"{path}.{field.name}")
                if found:
                    return found
    return None


def default_opset(proto: onnx.ModelProto) -> int | None:
    """The default-domain opset version, or None if the model imports none."""
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


def check_door(proto: onnx.ModelProto, label: str = "model") -> None:
    """Raise a one-line :class:`CodesignError` for the first problem found (see module docstring)."""
    bad = _bad_string(proto, "model")
    if bad:
        raise ModelLoadError(f"{label}: invalid UTF-8 in string field {bad}")
    if not proto.graph.output:
        raise UnsupportedModelError(f"{label}: graph has no outputs")
    version = default_opset(proto)
    newest = onnx.defs.onnx_opset_version()
    if version is None:
        raise UnsupportedModelError(f"{label}: model imports no default-domain (ai.onnx) opset")
    if not MIN_OPSET <= version <= newest:
        raise UnsupportedModelError(
            f"{label}: opset {version} is not supported (onnx here knows opsets {MIN_OPSET}..{newest})"
        )
    for node in proto.graph.node:
        if node.op_type in ("Conv", "ConvTranspose", "ConvInteger", "QLinearConv"):
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            if group < 1:
                raise UnsupportedModelError(
                    f"{label}: node {node.name or node.op_type!r} ({node.op_type}): group={group}, must be >= 1"
                )
