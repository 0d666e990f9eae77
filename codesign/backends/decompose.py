"""Ops hls4ml has no layer for, spelled with ops it has (exactly the same function)."""

from __future__ import annotations

import numpy as np
from onnx import helper

from codesign.backends.lowering import replace_node
from codesign.backends.precision import _attr
from codesign.ir.model import Model
from codesign.passes.base import Pass, PassResult


class HardSwishAsHardSigmoidMul(Pass):
    """HardSwish(x) = x * HardSigmoid(x; 1/6, 1/2) (MobileNetV3's activation): a HardSigmoid and a two-input Mul."""

    def call(self, model: Model) -> PassResult:
        done = []
        for node in list(model.nodes_of(["HardSwish"])):
            if node.domain not in ("", "ai.onnx"):
                continue
            x, y = node.input[0], node.output[0]
            gate = f"{y}_gate"
            new = [
                helper.make_node("HardSigmoid", [x], [gate], name=f"{node.name}_gate", alpha=1.0 / 6.0, beta=0.5),
                helper.make_node("Mul", [x, gate], [y], name=node.name),
            ]
            replace_node(model, node, new)
            done.append(node.name)
        return PassResult(model, bool(done), {"hard_swish": done})


class ConvTransposeAsPhases(Pass):
    """ConvTranspose with kernel == stride (no padding, no overlap: UNet/autoencoder upsampling) -> per output
    phase a 1x1 Conv, nearest-upsampled, masked to its phase and summed.

    Output pixel ``s*i + a`` is ``W[:, :, a] . x[i]`` alone, so each of the ``s**d`` phases is a 1x1
    Conv of ``x``; nearest upsampling by ``s`` puts it on every pixel and a 0/1 mask keeps its own.
    hls4ml has no ConvTranspose; the same MACs, all in layers it has, exact (0/1 masks, adds).
    """

    def call(self, model: Model) -> PassResult:
        done = []
        for node in list(model.nodes_of(["ConvTranspose"])):
            plan = _phase_plan(model, node)
            if plan is None:
                continue
            replace_node(model, node, _phases(model, node, *plan))
            done.append(node.name)
        if done:
            from codesign.passes.shapes import infer_shapes

            infer_shapes(model)
        return PassResult(model, bool(done), {"conv_transpose": done})


def _phase_plan(model: Model, node) -> tuple[np.ndarray, np.ndarray | None, list[int]] | None:
    """(weight, bias, strides) when ``node`` is a kernel == stride ConvTranspose this pass rewrites."""
    w = model.constant(node.input[1]) if len(node.input) > 1 else None
    bias = model.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if node.domain not in ("", "ai.onnx") or w is None or w.ndim not in (3, 4):
        return None
    if len(node.input) > 2 and node.input[2] and bias is None:
        return None
    kernel = list(w.shape[2:])
    strides = [int(v) for v in _attr(node, "strides", [1] * len(kernel))]
    if strides != kernel or int(_attr(node, "group", 1)) != 1 or any(_attr(node, "pads", []) or []):
        return None
    if any(int(v) != 1 for v in _attr(node, "dilations", []) or []) or any(_attr(node, "output_padding", []) or []):
        return None
    if _attr(node, "output_shape") is not None or _attr(node, "auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return None
    shape = model.shape(node.input[0])
    if shape is None or len(shape) != w.ndim:
        return None
    return np.asarray(w, dtype=np.float32), bias, strides


def _phases(model: Model, node, w: np.ndarray, bias: np.ndarray | None, strides: list[int]) -> list:
    """The nodes: per phase Conv1x1 -> Resize(nearest, s) -> Mul(mask); their sum (+ bias)."""
    x, y, base = node.input[0], node.output[0], node.name
    shape = model.shape(x)
    out_spatial = [int(d) * s for d, s in zip(shape[2:], strides)]
    d = len(strides)
    scales = f"{base}_phase_scales"
    model.set_initializer(scales, np.array([1.0, 1.0, *strides], dtype=np.float32))
    nodes, terms = [], []
    for phase in np.ndindex(*strides):
        tag = "_".join(str(p) for p in phase)
        kernel = w[(slice(None), slice(None), *phase)].T.reshape(w.shape[1], w.shape[0], *([1] * d))  # (O, C, 1..)
        w_name = f"{base}_phase{tag}_weight"
        model.set_initializer(w_name, np.ascontiguousarray(kernel, dtype=np.float32))
        mask = np.zeros([1, 1, *out_spatial], dtype=np.float32)
        mask[(0, 0, *[slice(p, None, s) for p, s in zip(phase, strides)])] = 1.0
        m_name = f"{base}_phase{tag}_mask"
        model.set_initializer(m_name, mask)
        conv, up, kept = (f"{y}_phase{tag}_{s}" for s in ("conv", "up", "kept"))
        nodes += [
            helper.make_node("Conv", [x, w_name], [conv], name=f"{base}_phase{tag}", kernel_shape=[1] * d,
                             pads=[0] * (2 * d), strides=[1] * d, dilations=[1] * d),
            helper.make_node("Resize", [conv, "", scales], [up], name=f"{base}_phase{tag}_up", mode="nearest",
                             coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
            helper.make_node("Mul", [up, m_name], [kept], name=f"{base}_phase{tag}_keep"),
        ]  # fmt: skip
        terms.append(kept)
    acc = terms[0]
    for k, term in enumerate(terms[1:], start=1):
        last = k == len(terms) - 1 and bias is None
        out = y if last else f"{y}_sum{k}"
        nodes.append(helper.make_node("Add", [acc, term], [out], name=f"{base}_sum{k}"))
        acc = out
    if bias is not None:
        b_name = f"{base}_bias"
        model.set_initializer(b_name, np.asarray(bias, dtype=np.float32).reshape(1, -1, *([1] * d)))
        nodes.append(helper.make_node("Add", [acc, b_name], [y], name=f"{base}_bias"))
    return nodes


class GroupedConvAsDense(Pass):
    """A grouped Conv (1 < group < channels: ResNeXt, ShuffleNet) -> an ungrouped Conv with block-diagonal weights.

    hls4ml has dense and depthwise convs only. Output channel ``o`` of group ``g`` reads only
    group ``g``'s input channels: zeros elsewhere give the same sums exactly (and HLS folds the
    constant-zero products away). A quantized weight is expanded before its Quant (zeros stay
    zeros), whose per-output-channel scale keeps its shape.
    """

    def call(self, model: Model) -> PassResult:
        done = []
        for node in list(model.nodes_of(["Conv"])):
            group = int(_attr(node, "group", 1))
            shape = model.shape(node.input[0])
            if node.domain not in ("", "ai.onnx") or group == 1 or shape is None or group == int(shape[1]):
                continue
            source = self._weight_source(model, node.input[1])
            if source is None:
                continue
            w = model.constant(source)
            o, cg = int(w.shape[0]), int(w.shape[1])
            if cg * group != int(shape[1]) or o % group:
                continue
            dense = np.zeros((o, cg * group, *w.shape[2:]), dtype=np.float32)
            per = o // group
            for g in range(group):
                dense[g * per : (g + 1) * per, g * cg : (g + 1) * cg] = w[g * per : (g + 1) * per]
            model.set_initializer(source, dense)
            for a in node.attribute:
                if a.name == "group":
                    a.i = 1
            model.invalidate()
            done.append(node.name)
        if done:
            from codesign.passes.shapes import infer_shapes

            infer_shapes(model)
        return PassResult(model, bool(done), {"grouped_conv": done})

    @staticmethod
    def _weight_source(model: Model, weight: str) -> str | None:
        """The initializer holding the weight's values: itself, or a Quant's input with a per-output scale."""
        producer = model.producer(weight)
        if producer is None:
            return weight if model.constant(weight) is not None and len(model.consumers(weight)) == 1 else None
        if producer.op_type != "Quant" or model.producer(producer.input[0]) is not None:
            return None
        value, scale = model.constant(producer.input[0]), model.constant(producer.input[1])
        zero = model.constant(producer.input[2])
        if value is None or scale is None or zero is None or len(model.consumers(producer.input[0])) != 1:
            return None
        per_output = all(d == 1 for d in np.shape(scale)[1:]) and all(d == 1 for d in np.shape(zero)[1:])
        return producer.input[0] if per_output else None


__all__ = ["ConvTransposeAsPhases", "GroupedConvAsDense", "HardSwishAsHardSigmoidMul"]
