"""Non-power-of-two quantized activations travel between layers as integer codes.

``Quant(x, s)`` with a non-power-of-two per-tensor scale is ``Div(x, s) -> Quant(., 1) -> Mul(s)``;
the rescale ``Mul(s)`` then sinks past ops that commute with a positive scalar (ReLU, max
pools, reshapes, nearest resizes) and past the next MatMul/Conv. The MAC then multiplies
integer codes by integer weights, exactly and at their own width (it multiplied ``q * s`` held
in a 28-bit fixed-point type before), and ``s`` joins the float affine chain before the next
quantizer, which :class:`~codesign.backends.exact_affine.ExactAffineBeforeQuant` turns into one
exact step function: the C-simulation then lands on the IR's codes, not one LSB beside them
at every rounding boundary a chain of inexact fixed-point rescales crosses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import onnx
from onnx import helper

from codesign.backends.exact_affine import AFFINE_OPS
from codesign.backends.hls4ml_layers.activation import softmax_code_scale
from codesign.backends.precision import _attr, quant_type
from codesign.ir.model import Model
from codesign.passes.base import Pass, PassResult

#: Ops with one data input through which ``Mul(x, s)`` (s > 0, scalar) commutes unchanged.
COMMUTING = frozenset(
    {"Relu", "MaxPool", "GlobalMaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity",
     "DepthToSpace", "SpaceToDepth"}
)  # fmt: skip


def _commutes(model: Model, node: onnx.NodeProto, tensor: str) -> bool:
    """Whether ``node(tensor * s) == node(tensor) * s`` for a positive scalar ``s``."""
    if not node.input or node.input[0] != tensor or len(node.output) != 1 or node.output[0] in model.outputs:
        return False
    if any(i == tensor for i in node.input[1:]):
        return False
    if node.op_type == "Resize":
        return _attr(node, "mode", "nearest") == "nearest"
    return node.op_type in COMMUTING and node.domain in ("", "ai.onnx")


def _linear(model: Model, node: onnx.NodeProto, tensor: str) -> bool:
    """A MatMul/Conv reading ``tensor`` as its data input with a constant weight (and bias)."""
    if node.op_type not in ("MatMul", "Conv") or len(node.input) < 2 or node.input[0] != tensor:
        return False
    if node.input[1] == tensor or model.constant(node.input[1]) is None:
        return False
    return not (len(node.input) > 2 and node.input[2] and model.constant(node.input[2]) is None)


def _reaches_linear(model: Model, tensor: str, depth: int = 0) -> bool:
    """Whether some consumer path of ``tensor`` through commuting ops ends in a MatMul/Conv."""
    if depth > 16 or tensor in model.outputs:
        return False
    for node in model.consumers(tensor):
        if _linear(model, node, tensor):
            return True
        if _commutes(model, node, tensor) and _reaches_linear(model, node.output[0], depth + 1):
            return True
    return False


def _from_integer_chain(model: Model, tensor: str, depth: int = 0) -> bool:
    """Whether ``tensor`` is a float affine chain (with ReLUs) of a MatMul/Conv/Quant output."""
    producer = model.producer(tensor)
    if producer is None or depth > 16:
        return False
    if producer.op_type in ("MatMul", "Conv", "Quant", "BipolarQuant"):
        return depth > 0 or producer.op_type in ("MatMul", "Conv")
    if producer.op_type in AFFINE_OPS or producer.op_type == "Relu":
        return _from_integer_chain(model, producer.input[0], depth + 1)
    return False


def scalar_params(model: Model, quant: onnx.NodeProto) -> tuple[float, float] | None:
    """``(s, z)`` of a Quant with a constant positive finite non-power-of-two per-tensor scale and an integer
    per-tensor zero point (0 for symmetric quantizers, any for onnxruntime's asymmetric QDQ)."""
    if quant.op_type != "Quant" or len(quant.input) < 4 or quant_type(model, quant) is not None:
        return None
    scale, zero, bits = (model.constant(i) for i in quant.input[1:4])
    if scale is None or zero is None or bits is None or np.size(scale) != 1 or np.size(zero) != 1:
        return None
    s, z = (float(np.asarray(v, dtype=np.float64).ravel()[0]) for v in (scale, zero))
    if not (np.isfinite(s) and s > 0 and np.isfinite(z) and z == round(z)):
        return None
    return s, z


@dataclass(frozen=True)
class Rescale:
    """``real = (codes - z) * s``: the map the codes still owe their consumers."""

    s_name: str
    s: float
    z: float
    z_name: str


class IntegerCodes(Pass):
    """Split each non-power-of-two per-tensor Quant into scale -> codes -> rescale and sink the rescale."""

    def call(self, model: Model) -> PassResult:
        modified = []
        for quant in list(model.nodes_of(["Quant"])):
            params = scalar_params(model, quant)
            out = quant.output[0]
            if params is None or out in model.outputs or softmax_code_scale(model, quant) is not None:
                continue
            if not (_reaches_linear(model, out) or _from_integer_chain(model, quant.input[0])):
                continue
            self._split(model, quant, *params)
            modified.append(quant.name)
        if modified:
            from codesign.passes.shapes import infer_shapes

            infer_shapes(model)
        return PassResult(model, bool(modified), {"integer_codes": modified})

    @staticmethod
    def _split(model: Model, quant: onnx.NodeProto, s: float, z: float) -> None:
        """``Quant(x, s, z)`` -> ``Div(x, s) [-> Add(z)] -> Quant(., 1, 0) -> codes``; the rescale sunk from there.

        The same float32 operations, in the same order, as qonnx's ``x / s + z`` before rounding.
        """
        name, out = quant.name, quant.output[0]
        one, zero = f"{name}_unit_scale", f"{name}_no_zeropt"
        model.set_initializer(one, np.ones((), dtype=np.float32))
        model.set_initializer(zero, np.zeros((), dtype=np.float32))
        rescale = Rescale(quant.input[1], s, z, quant.input[2])
        new = [helper.make_node("Div", [quant.input[0], rescale.s_name], [f"{out}_over_scale"], name=f"{name}_divide")]
        if z != 0:
            new.append(
                helper.make_node("Add", [f"{out}_over_scale", rescale.z_name], [f"{out}_offset"], name=f"{name}_offset")
            )
        quant.input[0], quant.input[1], quant.input[2] = new[-1].output[0], one, zero
        codes = quant.output[0] = f"{out}_codes"
        idx = list(model.graph.node).index(quant)
        for k, node in enumerate(new):
            model.graph.node.insert(idx + k, node)
        model.invalidate()
        _sink(model, codes, out, rescale, set())
        model.invalidate()


def _unpadded(node: onnx.NodeProto) -> bool:
    """No implicit zero padding: a code offset commutes with the window sum."""
    pads = _attr(node, "pads", None) or []
    return not any(pads) and _attr(node, "auto_pad", "NOTSET") in ("NOTSET", "VALID")


def _offset_commutes(node: onnx.NodeProto) -> bool:
    """Whether subtracting a scalar commutes with ``node`` (Relu does not; max pools pad with -inf)."""
    return node.op_type != "Relu"


def _offset_through_linear(node: onnx.NodeProto) -> bool:
    """A MatMul, or a Conv without zero padding (padding adds real zeros, which are codes ``z``)."""
    return node.op_type == "MatMul" or _unpadded(node)


def _after(model: Model, node: onnx.NodeProto, op: str, const: str, suffix: str) -> None:
    """``node``'s output ``y`` -> ``op(y_<suffix>, const)`` named ``y`` (consumers untouched)."""
    y = node.output[0]
    node.output[0] = f"{y}_{suffix}"
    new = helper.make_node(op, [f"{y}_{suffix}", const], [y], name=f"{node.name}_{suffix}")
    model.graph.node.insert(list(model.graph.node).index(node) + 1, new)
    model.invalidate()


def _sink(model: Model, codes: str, real: str, r: Rescale, made: set[str]) -> None:
    """Rewire the consumers of ``real`` (= ``(codes - z) * s``, not materialised) to read ``codes``.

    Commuting ops take the codes and pass the rescale on; a MatMul/Conv takes the codes and gets
    ``Mul(s)`` after it (its bias divided by ``s``, the zero point's share of each output folded in);
    where a zero point cannot pass (ReLU, a zero-padded Conv) the centred codes ``codes - z`` (integers,
    one bit wider) go on instead; any other consumer reads one materialised ``(codes - z) * s``.
    """
    for node in list(model.consumers(real)):
        offset_stuck = (_commutes(model, node, real) and not _offset_commutes(node)) or (
            _linear(model, node, real) and not _offset_through_linear(node)
        )
        if r.z != 0 and offset_stuck:
            _sink_one(model, node, _centred(model, codes, real, r), real, replace(r, z=0.0), made)
        else:
            _sink_one(model, node, codes, real, r, made)


def _centred(model: Model, codes: str, real: str, r: Rescale) -> str:
    """``codes - z`` (one Sub per tensor), placed right after the codes' producer."""
    name = f"{real}_centred"
    if model.producer(name) is None:
        producer = model.producer(codes)
        idx = list(model.graph.node).index(producer) + 1 if producer is not None else 0
        model.graph.node.insert(idx, helper.make_node("Sub", [codes, r.z_name], [name], name=f"{real}_centre"))
        model.invalidate()
    return name


def _sink_one(model: Model, node: onnx.NodeProto, codes: str, real: str, r: Rescale, made: set[str]) -> None:
    """One consumer ``node`` of ``real``: see :func:`_sink`."""
    if _commutes(model, node, real) and (r.z == 0 or _offset_commutes(node)):
        node.input[0] = codes
        y = node.output[0]
        node.output[0] = f"{y}_codes"
        model.invalidate()
        _sink(model, f"{y}_codes", y, r, made)
    elif _linear(model, node, real) and (r.z == 0 or _offset_through_linear(node)):
        node.input[0] = codes
        _after(model, node, "Mul", r.s_name, "codes")
        _fold_bias(model, node, r)  # after: a MatMul's zero-point Add goes between it and the Mul
    elif real not in made:  # the consumer keeps reading ``real``, now computed from the codes
        src = _centred(model, codes, real, r) if r.z != 0 else codes
        producer = model.producer(src)
        idx = list(model.graph.node).index(producer) + 1 if producer is not None else 0
        model.graph.node.insert(idx, helper.make_node("Mul", [src, r.s_name], [real], name=f"{real}_rescale"))
        made.add(real)
        model.invalidate()


def _fold_bias(model: Model, node: onnx.NodeProto, r: Rescale) -> None:
    """The bias a MatMul/Conv reading codes needs: its own divided by ``s``, minus ``z`` times its weight sums."""
    w = np.asarray(model.constant(node.input[1]), dtype=np.float64)
    own = np.asarray(model.constant(node.input[2]), dtype=np.float64) if len(node.input) > 2 and node.input[2] else None
    if own is None and r.z == 0:
        return
    if node.op_type == "MatMul":  # no bias input: an Add of the zero point's share
        name = f"{node.name}_zero_point_share"
        model.set_initializer(name, (-r.z * w.sum(axis=0)).astype(np.float32))
        _after(model, node, "Add", name, "uncentred")
        return
    sums = w.reshape(w.shape[0], -1).sum(axis=1)
    bias = -r.z * sums + (own / r.s if own is not None else 0.0)
    name = f"{node.name}_bias_in_codes"
    model.set_initializer(name, np.asarray(bias, dtype=np.float64).astype(np.float32))
    if len(node.input) > 2:
        node.input[2] = name
    else:
        node.input.append(name)


__all__ = ["COMMUTING", "IntegerCodes", "Rescale", "scalar_params"]
