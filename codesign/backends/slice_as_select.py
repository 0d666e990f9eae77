"""Slice/Split along the feature or channel axis -> one-hot selections hls4ml has layers for.

hls4ml has no Slice or Split. Taking features ``start:end`` of the last axis is a MatMul with a
0/1 matrix (a Dense, GLU's ``x.chunk(2, -1)``); taking channels of a conv tensor (axis 1 of
N, C, ...) is a 1x1 Conv with 0/1 weights. Both are exact (one product by 1 per output, zeros
are folded away by HLS). A slice of a spatial axis (a UNet crop, Keras' Cropping2D via tf2onnx)
is a Pad with negative pads, hls4ml's Cropping1D/2D. Stepped slices stay named refusals.
"""

from __future__ import annotations

import itertools

import numpy as np
from onnx import helper

from codesign.backends.lowering import replace_node
from codesign.backends.precision import _attr
from codesign.frontends.door import default_opset
from codesign.ir.model import Model
from codesign.passes.base import Pass, PassResult


def _ints(model: Model, node, index: int, attr: str) -> list[int] | None:
    """An int list from input ``index`` (a constant) or, for old opsets, attribute ``attr``."""
    if len(node.input) > index and node.input[index]:
        value = model.constant(node.input[index])
        return None if value is None else [int(v) for v in np.asarray(value).ravel()]
    value = _attr(node, attr)
    return None if value is None else [int(v) for v in value]


def slice_cuts(model: Model, node) -> list[tuple[int, int, int]] | None:
    """(axis, start, stop) per axis a unit-step Slice with constant bounds cuts, normalised ([]: it cuts nothing,
    as tf2onnx's Conv1DTranspose output slice); None otherwise."""
    shape = model.shape(node.input[0])
    starts, ends = _ints(model, node, 1, "starts"), _ints(model, node, 2, "ends")
    axes = _ints(model, node, 3, "axes") or (list(range(len(starts))) if starts else None)
    steps = _ints(model, node, 4, "steps") or [1] * len(starts or [])
    if shape is None or not starts or ends is None or axes is None or len({len(starts), len(ends), len(axes)}) != 1:
        return None
    kept = [(a % len(shape), s, e) for a, s, e, st in zip(axes, starts, ends, steps, strict=False) if st == 1]
    cut = [(a, s, e) for a, s, e in kept if slice(s, e).indices(int(shape[a]))[:2] != (0, int(shape[a]))]
    if len(kept) != len(axes):
        return None
    bounds = [(a, *slice(s, e).indices(int(shape[a]))[:2]) for a, s, e in cut]
    return bounds if all(hi > lo for _, lo, hi in bounds) else None


def slice_range(model: Model, node) -> tuple[int, int, int] | None:
    """(axis, start, stop) of a Slice that cuts one axis (see :func:`slice_cuts`); None otherwise."""
    cuts = slice_cuts(model, node)
    return cuts[0] if cuts is not None and len(cuts) == 1 else None


def split_ranges(model: Model, node) -> tuple[int, list[tuple[int, int]]] | None:
    """(axis, [(start, stop) per output]) of a Split with static sizes."""
    shape = model.shape(node.input[0])
    if shape is None:
        return None
    axis = int(_attr(node, "axis", 0)) % len(shape)
    n = int(shape[axis])
    sizes = _ints(model, node, 1, "split")
    if sizes is None:
        parts = int(_attr(node, "num_outputs", len(node.output)))
        step = -(-n // parts)
        sizes = [min(step, n - k * step) for k in range(parts)]
    if sum(sizes) != n or len(sizes) != len(node.output):
        return None
    bounds = np.cumsum([0, *sizes])
    return axis, [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]


class SliceAsOneHotSelect(Pass):
    """Slice/Split of the last axis -> MatMul by a 0/1 matrix; of axis 1 of a conv tensor -> a 0/1 1x1 Conv."""

    def call(self, model: Model) -> PassResult:
        done = []
        for node in list(model.nodes_of(["Slice", "Split"])):
            shape = model.shape(node.input[0])
            if (
                node.domain not in ("", "ai.onnx")
                or shape is None
                or len(shape) < 2
                or not model.is_float(node.input[0])
            ):
                continue  # integer slices are shape arithmetic, not data
            if node.op_type == "Slice":
                found = slice_range(model, node)
                parts = None if found is None else (found[0], [found[1:]])
            else:
                parts = split_ranges(model, node)
            cuts = slice_cuts(model, node) if node.op_type == "Slice" else None
            if cuts == []:  # takes everything
                replace_node(
                    model, node, [helper.make_node("Identity", node.input[:1], node.output[:1], name=node.name)]
                )
                done.append(node.name)
                continue
            if cuts is not None and len(shape) in (3, 4) and all(a >= 2 for a, _, _ in cuts):
                replace_node(model, node, [self._crop(model, node, shape, cuts)])
                done.append(node.name)
                continue
            if parts is None or not self._selectable(shape, parts[0]):
                continue
            axis, ranges = parts
            new = [self._select(model, node, shape, axis, lo, hi, out, k)
                   for k, ((lo, hi), out) in enumerate(zip(ranges, node.output, strict=True)) if out]  # fmt: skip
            replace_node(model, node, new)
            done.append(node.name)
        return PassResult(model, bool(done), {"selections": done})

    @staticmethod
    def _crop(model: Model, node, shape: tuple[int, ...], cuts: list[tuple[int, int, int]]):
        """A spatial slice as a Pad with negative pads (ONNX's cropping), which hls4ml takes as Cropping1D/2D."""
        rank = len(shape)
        pads = [0] * (2 * rank)
        for axis, lo, hi in cuts:
            pads[axis], pads[rank + axis] = -lo, -(int(shape[axis]) - hi)
        opset = default_opset(model.proto) or 13
        if opset < 11:
            return helper.make_node("Pad", [node.input[0]], [node.output[0]], name=node.name, pads=pads)
        pname = f"{node.name}_pads"
        model.set_initializer(pname, np.asarray(pads, dtype=np.int64))
        return helper.make_node("Pad", [node.input[0], pname], [node.output[0]], name=node.name)

    @staticmethod
    def _selectable(shape: tuple[int, ...], axis: int) -> bool:
        return axis == len(shape) - 1 or (axis == 1 and len(shape) in (3, 4))

    @staticmethod
    def _select(model: Model, node, shape: tuple[int, ...], axis: int, lo: int, hi: int, out: str, k: int):
        n = int(shape[axis])
        pick = np.zeros((n, hi - lo), dtype=np.float32)
        pick[np.arange(lo, hi), np.arange(hi - lo)] = 1.0
        name = node.name if k == 0 else f"{node.name}_{k}"
        wname = f"{name}_select"
        if not (axis == 1 and len(shape) in (3, 4)):  # the last axis: features
            model.set_initializer(wname, pick)
            return helper.make_node("MatMul", [node.input[0], wname], [out], name=name)
        nsp = len(shape) - 2
        model.set_initializer(wname, pick.T.reshape(hi - lo, n, *([1] * nsp)).copy())
        return helper.make_node("Conv", [node.input[0], wname], [out], name=name, kernel_shape=[1] * nsp,
                                pads=[0] * (2 * nsp), strides=[1] * nsp)  # fmt: skip


__all__ = ["SliceAsOneHotSelect", "slice_cuts", "slice_range", "split_ranges"]
