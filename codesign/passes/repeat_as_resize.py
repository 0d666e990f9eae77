"""``repeat`` spelled Unsqueeze -> Tile -> [Transpose] -> Reshape becomes a nearest Resize (+ Transpose).

Keras 3's UpSampling2D (``ops.repeat``) reaches ONNX through tf2onnx as: insert an axis after
axis ``a``, tile it ``r`` times, merge it back into ``a`` (often with tf2onnx's NCHW <-> NHWC
Transpose pushed in between). That is each element of axis ``a`` repeated ``r`` times in place:
a nearest Resize by ``r`` on axis ``a``, followed by the Transpose without the inserted axis.
A Transpose -> Resize -> inverse Transpose sandwich then becomes one Resize with permuted scales.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from codesign.ir.model import Model
from codesign.passes.base import Pass, PassResult
from codesign.passes.graph_edit import add_initializer, replace_nodes


def _ints(model: Model, node, index: int, attr: str) -> list[int] | None:
    if len(node.input) > index and node.input[index]:
        value = model.constant(node.input[index])
        return None if value is None else [int(v) for v in np.asarray(value).ravel()]
    for a in node.attribute:
        if a.name == attr:
            return list(a.ints)
    return None


def _only_consumer(model: Model, tensor: str, op: str):
    users = model.consumers(tensor)
    return users[0] if len(users) == 1 and users[0].op_type == op and tensor not in model.outputs else None


def _resize(model: Model, x: str, y: str, scales: list[float], name: str):
    roi = add_initializer(model, f"{name}_roi", np.zeros(0, dtype=np.float32))
    sc = add_initializer(model, f"{name}_scales", np.asarray(scales, dtype=np.float32))
    return helper.make_node("Resize", [x, roi, sc], [y], name=name, mode="nearest",
                            coordinate_transformation_mode="asymmetric", nearest_mode="floor")  # fmt: skip


class RepeatAsResize(Pass):
    """Unsqueeze(k) -> Tile(r on k) -> [Transpose] -> Reshape(merge k-1, k) -> Resize(r on k-1) [-> Transpose]."""

    def call(self, model: Model) -> PassResult:
        done = []
        from codesign.frontends.door import default_opset  # frontends imports passes: not at module level

        opset = default_opset(model.proto) or 0
        for unsq in list(model.nodes_of(["Unsqueeze"]) if opset >= 11 else []):  # Resize(X, roi, scales)
            found = self._match(model, unsq)
            if found is None:
                continue
            tile, perm, reshape, axis, r = found
            shape = list(model.shape(unsq.input[0]))
            scales = [1.0] * len(shape)
            scales[axis] = float(r)
            name = f"{tile.name}_as_resize"
            new = []
            if perm is None:
                new.append(_resize(model, unsq.input[0], reshape.output[0], scales, name))
            else:
                up = f"{reshape.output[0]}_repeated"
                new.append(_resize(model, unsq.input[0], up, scales, name))
                new.append(
                    helper.make_node("Transpose", [up], [reshape.output[0]], name=f"{name}_transpose", perm=perm)
                )
            replace_nodes(model, [unsq, tile, reshape] + ([model.producer(reshape.input[0])] if perm is not None else []),
                          new)  # fmt: skip
            done.append(tile.name)
        if done:
            from codesign.passes.shapes import infer_shapes

            infer_shapes(model)
        return PassResult(model, bool(done), {"repeats": done})

    @staticmethod
    def _match(model: Model, unsq):
        shape = model.shape(unsq.input[0])
        axes = _ints(model, unsq, 1, "axes")
        if shape is None or axes is None or len(axes) != 1:
            return None
        rank = len(shape) + 1
        k = axes[0] % rank
        if k == 0:
            return None
        tile = _only_consumer(model, unsq.output[0], "Tile")
        reps = None if tile is None else _ints(model, tile, 1, "")
        if reps is None or len(reps) != rank or any(v != 1 for i, v in enumerate(reps) if i != k) or reps[k] < 2:
            return None
        nxt = _only_consumer(model, tile.output[0], "Transpose") or _only_consumer(model, tile.output[0], "Reshape")
        order = list(range(rank))
        if nxt is not None and nxt.op_type == "Transpose":
            order = next((list(a.ints) for a in nxt.attribute if a.name == "perm"), None)
            reshape = _only_consumer(model, nxt.output[0], "Reshape")
            if order is None or reshape is None:
                return None
        else:
            reshape = nxt
        if reshape is None or order.index(k) != order.index(k - 1) + 1:
            return None
        out = model.shape(reshape.output[0])
        permuted = [int(shape[a if a < k else a - 1]) if a != k else reps[k] for a in order]
        pos = order.index(k - 1)
        merged = permuted[:pos] + [permuted[pos] * reps[k]] + permuted[pos + 2 :]
        if out is None or [int(d) for d in out] != merged:
            return None
        if order == list(range(rank)):
            return tile, None, reshape, k - 1, reps[k]
        perm = [a if a < k else a - 1 for a in order if a != k]
        return tile, perm, reshape, k - 1, reps[k]


class TransposeSandwichedResize(Pass):
    """Transpose(P) -> Resize -> Transpose(P^-1) -> one Resize whose scales are permuted back."""

    def call(self, model: Model) -> PassResult:
        done = []
        for node in list(model.nodes_of(["Resize"])):
            first = model.producer(node.input[0])
            last = _only_consumer(model, node.output[0], "Transpose")
            if (
                first is None
                or first.op_type != "Transpose"
                or last is None
                or len(model.consumers(first.output[0])) != 1
            ):
                continue
            p = next((list(a.ints) for a in first.attribute if a.name == "perm"), None)
            q = next((list(a.ints) for a in last.attribute if a.name == "perm"), None)
            scales = model.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            if p is None or q is None or scales is None or [p[i] for i in q] != list(range(len(p))):
                continue
            if (len(node.input) > 3 and node.input[3]) or (node.input[1] and np.size(model.constant(node.input[1]))):
                continue
            back = np.empty(len(p), dtype=np.float32)
            back[p] = np.asarray(scales, dtype=np.float32).ravel()  # axis p[i] of the input is axis i of the Resize's
            sc = add_initializer(model, f"{node.name}_scales_back", back)
            node.input[0], node.input[2] = first.input[0], sc
            node.output[0] = last.output[0]
            model.graph.node.remove(first)
            model.graph.node.remove(last)
            model.invalidate()
            done.append(node.name)
        if done:
            from codesign.passes.shapes import infer_shapes

            infer_shapes(model)
        return PassResult(model, bool(done), {"transposes": done})


__all__ = ["RepeatAsResize", "TransposeSandwichedResize"]
