"""Small in-place graph edits shared by the clean, quantize and prune passes.

Each helper mutates ``model.proto`` and leaves cache invalidation to the caller's
final :func:`tidy` (one re-inference per pass instead of one per edit).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from codesign.ir.model import Model
from codesign.ir.names import uniquify
from codesign.passes.base import PassResult, Sequential


def fresh_name(model: Model, base: str) -> str:
    """A tensor/node name not used anywhere in the graph yet."""
    g = model.graph
    taken = {t.name for t in g.initializer} | {v.name for v in g.input} | {v.name for v in g.output}
    taken |= {v.name for v in g.value_info} | {n.name for n in g.node}
    for n in g.node:
        taken.update(n.input)
        taken.update(n.output)
    return uniquify(base, taken)


def add_initializer(model: Model, base: str, value: np.ndarray) -> str:
    """Add a float32 (or given dtype) initializer under a fresh name; returns the name."""
    name = fresh_name(model, base)
    model.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
    model.invalidate()
    return name


def replace_initializer(model: Model, name: str, value: np.ndarray) -> None:
    """Overwrite initializer ``name`` (shape may change); value_info is re-inferred later."""
    for k, t in enumerate(model.graph.initializer):
        if t.name == name:
            model.graph.initializer[k].CopyFrom(numpy_helper.from_array(np.asarray(value), name))
            break
    else:
        raise KeyError(name)
    for vi in list(model.graph.value_info):
        if vi.name == name:
            model.graph.value_info.remove(vi)
    model.invalidate()


def rename_tensor(model: Model, old: str, new: str) -> None:
    """Rename tensor ``old`` to ``new`` everywhere it appears (stale ``new`` facts dropped)."""
    g = model.graph
    for coll in (g.value_info, g.quantization_annotation):
        for item in list(coll):
            if getattr(item, "name", None) == new or getattr(item, "tensor_name", None) == new:
                coll.remove(item)
    for coll in (g.initializer, g.input, g.output, g.value_info):
        for item in coll:
            if item.name == old:
                item.name = new
    for ann in g.quantization_annotation:
        if ann.tensor_name == old:
            ann.tensor_name = new
    for n in g.node:
        for k, i in enumerate(n.input):
            if i == old:
                n.input[k] = new
        for k, o in enumerate(n.output):
            if o == old:
                n.output[k] = new
    model.invalidate()


def bypass(model: Model, node: onnx.NodeProto) -> bool:
    """Remove a one-in/one-out node whose output equals its input; False if impossible.

    When the output is a graph output the producer is renamed to write it directly, so
    graph output names never change.
    """
    src, dst = node.input[0], node.output[0]
    outputs = set(model.outputs)
    if dst in outputs:
        producer = model.producer(src)
        if producer is None or src in outputs or len(model.consumers(src)) > 1:
            return False
        model.graph.node.remove(node)
        model.invalidate()
        rename_tensor(model, src, dst)
        return True
    for consumer in model.consumers(dst):
        for k, i in enumerate(consumer.input):
            if i == dst:
                consumer.input[k] = src
    model.graph.node.remove(node)
    model.node_bypassed(node, src, dst)  # topology caches updated, not dropped: a run of bypasses stays linear
    return True


def replace_nodes(model: Model, old: list[onnx.NodeProto], new: list[onnx.NodeProto]) -> None:
    """``new`` where the first of ``old`` was (topological order kept), ``old`` removed; caches invalidated."""
    at = min(list(model.graph.node).index(n) for n in old)
    for n in old:
        model.graph.node.remove(n)
    for k, n in enumerate(new):
        model.graph.node.insert(at + k, n)
    model.invalidate()


def insert_after(model: Model, anchor: onnx.NodeProto | None, node: onnx.NodeProto) -> None:
    """Insert ``node`` right after ``anchor`` (or first when None); tidy() re-sorts anyway."""
    nodes = model.graph.node
    index = 0 if anchor is None else list(nodes).index(anchor) + 1
    nodes.insert(index, node)
    model.invalidate()


def make_node(model: Model, op: str, inputs: list[str], outputs: list[str], name: str, **attrs) -> onnx.NodeProto:
    """A node with a fresh, safe name (domain from ``attrs.pop('domain', '')``)."""
    domain = attrs.pop("domain", "")
    return helper.make_node(op, inputs, outputs, name=fresh_name(model, name), domain=domain, **attrs)


def channel_shape(ndim: int, channels: int, axis: int = 1) -> tuple[int, ...]:
    """Broadcast shape putting ``channels`` on ``axis`` of an ``ndim`` tensor."""
    shape = [1] * ndim
    shape[axis] = channels
    return tuple(shape)


def tidy() -> Sequential:
    """Names, order, unused tensors, shapes and datatypes: what every edit ends with."""
    from codesign.passes.normalize import CanonicalizeQuantDomains, InferDatatypes, NameNodesAndTensors
    from codesign.passes.shapes import InferShapes
    from codesign.passes.tidy import RemoveUnusedTensors, SortGraph

    return Sequential(
        CanonicalizeQuantDomains(),  # also imports the opset of every custom domain used
        NameNodesAndTensors(),
        RemoveUnusedTensors(),  # linear (qonnx's scan per tensor: quadratic)
        SortGraph(),
        InferShapes(),
        InferDatatypes(),
    )


def finish(model: Model, modified: bool, info=None) -> PassResult:
    """Tidy ``model`` if it changed and wrap it in a PassResult."""
    if modified:
        model = tidy()(model).model
    return PassResult(model, modified, info)


__all__ = [
    "add_initializer",
    "bypass",
    "channel_shape",
    "finish",
    "fresh_name",
    "insert_after",
    "make_node",
    "rename_tensor",
    "replace_initializer",
    "tidy",
]
