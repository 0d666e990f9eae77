"""Graph housekeeping in linear time: the qonnx transformations normalisation needs.

qonnx's ``GiveUniqueParameterTensors``, ``SortGraph``, ``RemoveUnusedTensors`` and
``RemoveStaticGraphInputs`` look tensors up by scanning the graph (or remove from a
protobuf list while iterating it), so they grow quadratically with the node count. These
do the same with one index per call.
"""

from __future__ import annotations

import heapq

import onnx

from codesign.ir.model import Model
from codesign.passes.base import Pass, PassResult


class RemoveStaticGraphInputs(Pass):
    """Graph inputs that have an initializer move to ``value_info``."""

    def call(self, model: Model) -> PassResult:
        g = model.graph
        inits = {t.name for t in g.initializer}
        static = [vi for vi in g.input if vi.name in inits]
        if not static:
            return PassResult(model, False)
        dynamic = [vi for vi in g.input if vi.name not in inits]
        g.value_info.extend(static)
        g.ClearField("input")
        g.input.extend(dynamic)
        model.invalidate()
        return PassResult(model, True)


class UniqueParameterTensors(Pass):
    """An initializer read by several node inputs gets one copy per extra reader."""

    def call(self, model: Model) -> PassResult:
        g = model.graph
        inits = {t.name: t for t in g.initializer}
        taken = set(inits) | {o for n in g.node for o in n.output} | {vi.name for vi in g.input}
        seen: set[str] = set()
        copies: list[onnx.TensorProto] = []
        dtypes = {a.tensor_name: a for a in g.quantization_annotation}
        counter = 0
        for node in g.node:
            for k, name in enumerate(node.input):
                if name not in inits:
                    continue
                if name not in seen:
                    seen.add(name)
                    continue
                while f"{name}_{counter}" in taken:
                    counter += 1
                new = f"{name}_{counter}"
                taken.add(new)
                clone = onnx.TensorProto()
                clone.CopyFrom(inits[name])
                clone.name = new
                copies.append(clone)
                if name in dtypes:
                    ann = g.quantization_annotation.add()
                    ann.CopyFrom(dtypes[name])
                    ann.tensor_name = new
                node.input[k] = new
        g.initializer.extend(copies)
        if copies:
            model.invalidate()
        return PassResult(model, bool(copies))


class SortGraph(Pass):
    """Topological node order (Kahn's algorithm, stable: ties keep file order)."""

    def call(self, model: Model) -> PassResult:
        g = model.graph
        nodes = list(g.node)
        producer = {o: k for k, n in enumerate(nodes) for o in n.output if o}
        deps = [{producer[i] for i in n.input if i in producer and producer[i] != k} for k, n in enumerate(nodes)]
        users: list[list[int]] = [[] for _ in nodes]
        for k, d in enumerate(deps):
            for p in d:
                users[p].append(k)
        pending = [len(d) for d in deps]
        ready = [k for k, c in enumerate(pending) if c == 0]
        heapq.heapify(ready)
        order: list[int] = []
        while ready:
            k = heapq.heappop(ready)
            order.append(k)
            for u in users[k]:
                pending[u] -= 1
                if pending[u] == 0:
                    heapq.heappush(ready, u)
        if len(order) < len(nodes):  # a cycle: leave the rest in file order, validation names it
            placed = set(order)
            order += [k for k in range(len(nodes)) if k not in placed]
        if order == list(range(len(nodes))):
            return PassResult(model, False)
        g.ClearField("node")
        g.node.extend(nodes[k] for k in order)
        model.invalidate()
        return PassResult(model, True)


class RemoveUnusedTensors(Pass):
    """Initializers, value_info and annotations of tensors no node reads or writes go."""

    def call(self, model: Model) -> PassResult:
        g = model.graph
        used = {t for n in g.node for t in (*n.input, *n.output)} | {vi.name for vi in g.output}
        modified = False
        for field, key in (("initializer", "name"), ("value_info", "name"), ("quantization_annotation", "tensor_name")):
            items = list(getattr(g, field))
            keep = [x for x in items if getattr(x, key) in used]
            if len(keep) != len(items):
                g.ClearField(field)
                getattr(g, field).extend(keep)
                modified = True
        if modified:
            model.invalidate()
        return PassResult(model, modified)
