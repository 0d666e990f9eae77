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
        kernel = next((list(a.ints) for a in node.attribute if a.name == "kernel_shape"), [])
        if any(not 1 <= k <= MAX_KERNEL for k in kernel):
            raise UnsupportedModelError(
                f"{label}: node {node.name or node.op_type!r} ({node.op_type}): kernel_shape={kernel}, each must be "
                f"in 1..{MAX_KERNEL}"
            )
    _check_input_dims(proto, label)
    _check_acyclic(proto.graph, label)


#: Larger conv windows than this exist in no real model; a mutated one would size huge weight tensors.
MAX_KERNEL = 4096


def _check_input_dims(proto: onnx.ModelProto, label: str) -> None:
    """Declared input dims: never negative, never 0 past the batch axis (the batch is re-batched to 1 anyway)."""
    inits = {t.name for t in proto.graph.initializer}
    for vi in proto.graph.input:
        if vi.name in inits or not vi.type.tensor_type.HasField("shape"):
            continue
        for axis, dim in enumerate(vi.type.tensor_type.shape.dim):
            if dim.HasField("dim_value") and (dim.dim_value < 0 or (dim.dim_value == 0 and axis > 0)):
                raise UnsupportedModelError(f"{label}: input {vi.name!r} has dimension {dim.dim_value} at axis {axis}")


def _check_acyclic(graph: onnx.GraphProto, label: str) -> None:
    """Refuse a graph whose nodes feed each other in a loop (ONNX graphs are DAGs; sorting would hide it)."""
    producer = {o: k for k, n in enumerate(graph.node) for o in n.output if o}
    state = [0] * len(graph.node)  # 0 new, 1 on the current path, 2 done
    for start in range(len(graph.node)):
        if state[start]:
            continue
        stack = [(start, iter(graph.node[start].input))]
        state[start] = 1
        while stack:
            k, inputs = stack[-1]
            nxt = next((producer[i] for i in inputs if i in producer), None)
            if nxt is None:
                state[k] = 2
                stack.pop()
            elif state[nxt] == 1:
                n = graph.node[nxt]
                raise UnsupportedModelError(f"{label}: graph has a cycle through node {n.name or n.op_type!r}")
            elif state[nxt] == 0:
                state[nxt] = 1
                stack.append((nxt, iter(graph.node[nxt].input)))
