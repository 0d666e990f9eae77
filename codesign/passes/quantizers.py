"""Quantizers at the door: one canonical spelling, spec defaults written out, parameters checked.

Exporters write Quant/BipolarQuant/Trunc in five domains (``qonnx``, ``onnx.brevitas``,
``finn``, ``""``, ``qonnx.custom_op.general``) and leave optional attributes out; qonnx's
own op code then falls back to defaults that differ from the QONNX spec (``narrow`` 1
instead of 0), and hls4ml dies on a missing ``rounding_mode``. Every default is written
explicitly here. Parameters are checked before anything computes with them: a bit width of
1e30 would make datatype inference build ``2**(1e30-1)``, a zero scale divides by zero.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper

from codesign.errors import UnsupportedModelError
from codesign.ir.model import Model
from codesign.passes.base import Pass, PassResult

#: QONNX spec defaults of optional attributes (docs/qonnx-custom-ops in the qonnx repo).
SPEC_DEFAULTS: dict[str, dict[str, int | str]] = {
    "Quant": {"signed": 1, "narrow": 0, "rounding_mode": "ROUND"},
    "IntQuant": {"signed": 1, "narrow": 0, "rounding_mode": "ROUND"},
    "Trunc": {"signed": 1, "narrow": 0, "rounding_mode": "FLOOR"},
    # qonnx marks these required but they only inform backends (its execution ignores them): its defaults
    "FloatQuant": {"rounding_mode": "ROUND", "has_inf": 0, "has_nan": 0, "has_subnormal": 0, "saturation": 1},
}
ROUNDING_MODES = frozenset({"ROUND", "HALF_EVEN", "CEIL", "FLOOR", "UP", "DOWN", "HALF_UP", "HALF_DOWN"})
MAX_BITS = 32


class QuantizerError(UnsupportedModelError):
    """A quantizer node whose parameters QONNX does not define."""


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def fill_defaults(node: onnx.NodeProto) -> bool:
    """Write the spec default of every missing optional attribute; True if any was added."""
    defaults = SPEC_DEFAULTS.get(node.op_type, {})
    have = {a.name for a in node.attribute}
    missing = [(k, v) for k, v in defaults.items() if k not in have]
    for key, value in missing:
        node.attribute.append(helper.make_attribute(key, value))
    return bool(missing)


def multithreshold_out_dtype(model: Model, node: onnx.NodeProto) -> str | None:
    """FINN's default ``out_dtype``: the smallest integer type holding bias .. bias + scale * T."""
    from qonnx.core.datatype import DataType

    thresholds = model.initializer(node.input[1]) if len(node.input) > 1 else None
    if thresholds is None or thresholds.ndim < 1:
        return None
    attrs = _attrs(node)
    scale, bias = float(attrs.get("out_scale", 1.0)), float(attrs.get("out_bias", 0.0))
    if scale != int(scale) or bias != int(bias):
        return "FLOAT32"
    lo, hi = sorted((bias, bias + scale * thresholds.shape[-1]))
    if (lo, hi) == (-1, 1) and thresholds.shape[-1] == 1:
        return "BIPOLAR"
    if lo >= 0:
        return DataType.get_smallest_possible(hi).name
    dt = DataType.get_smallest_possible(lo)
    return (dt if dt.allowed(hi) else DataType.get_smallest_possible(-hi - 1)).name


class FillQuantizerDefaults(Pass):
    """Spec defaults written on every Quant/Trunc; MultiThreshold gets FINN's ``out_dtype``; IntQuant is Quant.

    qonnx >= 0.4 names the integer quantizer IntQuant and keeps Quant as an alias of the same
    class (same inputs, attributes and execution): one spelling downstream, so no backend or pass
    meets an "unsupported op IntQuant".
    """

    def call(self, model: Model) -> PassResult:
        modified = False
        for node in model.graph.node:
            if node.op_type == "IntQuant":
                node.op_type, modified = "Quant", True
            if node.op_type in SPEC_DEFAULTS:
                modified |= fill_defaults(node)
            elif node.op_type == "MultiThreshold" and "out_dtype" not in {a.name for a in node.attribute}:
                dtype = multithreshold_out_dtype(model, node)
                if dtype is not None:
                    node.attribute.append(helper.make_attribute("out_dtype", dtype))
                    modified = True
        if modified:
            model.invalidate()
        return PassResult(model, modified)


# ---------------------------------------------------------------- validation
def _scalar_param(model: Model, node: onnx.NodeProto, idx: int, what: str) -> np.ndarray | None:
    if len(node.input) <= idx or not node.input[idx]:
        raise QuantizerError(f"node {node.name!r} ({node.op_type}): missing {what} input")
    return model.initializer(node.input[idx])


def _check_bits(node: onnx.NodeProto, value: np.ndarray | None, what: str, low: int = 1) -> None:
    if value is None:
        raise QuantizerError(f"node {node.name!r} ({node.op_type}): {what} must be a constant")
    flat = np.asarray(value, dtype=np.float64).reshape(-1)
    if flat.size != 1:
        raise QuantizerError(
            f"node {node.name!r} ({node.op_type}): {what} must be a scalar, got shape {tuple(value.shape)}"
        )
    bits = float(flat[0])
    if not math.isfinite(bits) or bits != int(bits) or not low <= bits <= MAX_BITS:
        raise QuantizerError(
            f"node {node.name!r} ({node.op_type}): {what} {bits:g} is not an integer in {low}..{MAX_BITS}"
        )


def _check_scale(
    node: onnx.NodeProto, value: np.ndarray | None, shape: tuple[int, ...] | None, what: str = "scale"
) -> None:
    if value is None:
        return
    v = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(v)) or not np.all(v > 0):
        bad = v[~(np.isfinite(v) & (v > 0))].reshape(-1)[0]
        raise QuantizerError(f"node {node.name!r} ({node.op_type}): {what} must be finite and > 0, got {bad:g}")
    _check_broadcast(node, value, shape, what)


def _check_broadcast(node: onnx.NodeProto, value: np.ndarray, shape: tuple[int, ...] | None, what: str) -> None:
    if shape is None or value.ndim == 0:
        return
    try:
        ok = np.broadcast_shapes(tuple(value.shape), tuple(shape)) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise QuantizerError(
            f"node {node.name!r} ({node.op_type}): {what} of shape {tuple(value.shape)} does not broadcast to input {tuple(shape)}"
        )


def _check_zero_point(node: onnx.NodeProto, value: np.ndarray | None, shape: tuple[int, ...] | None) -> None:
    if value is None:
        return
    v = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(v)) or not np.all(v == np.round(v)):
        raise QuantizerError(f"node {node.name!r} ({node.op_type}): zero point must be finite and integral")
    _check_broadcast(node, value, shape, "zero point")


def _check_flags(node: onnx.NodeProto) -> None:
    attrs = _attrs(node)
    for key in ("signed", "narrow"):
        if key in attrs and attrs[key] not in (0, 1):
            raise QuantizerError(f"node {node.name!r} ({node.op_type}): {key}={attrs[key]!r}, must be 0 or 1")
    mode = attrs.get("rounding_mode")
    if mode is not None:
        try:
            text = mode.decode("utf-8") if isinstance(mode, bytes) else str(mode)
        except UnicodeDecodeError:
            text = repr(mode)
        if text.upper() not in ROUNDING_MODES:
            raise QuantizerError(
                f"node {node.name!r} ({node.op_type}): unknown rounding_mode {text[:40]!r} (known: {', '.join(sorted(ROUNDING_MODES))})"
            )


def check_quantizer(model: Model, node: onnx.NodeProto) -> None:
    """Raise :class:`QuantizerError` naming ``node`` if its parameters are not QONNX-valid."""
    op, shape = node.op_type, model.shape(node.input[0]) if node.input else None
    if op in ("Quant", "IntQuant"):
        _check_bits(node, _scalar_param(model, node, 3, "bit width"), "bit width")
        _check_scale(node, _scalar_param(model, node, 1, "scale"), shape)
        _check_zero_point(node, _scalar_param(model, node, 2, "zero point"), shape)
        _check_flags(node)
    elif op == "BipolarQuant":
        _check_scale(node, _scalar_param(model, node, 1, "scale"), shape)
    elif op == "Trunc":
        _check_scale(node, _scalar_param(model, node, 1, "scale"), shape)
        _check_zero_point(node, _scalar_param(model, node, 2, "zero point"), shape)
        _check_bits(node, _scalar_param(model, node, 3, "input bit width"), "input bit width")
        if len(node.input) >= 6:  # Trunc v2 (Brevitas >= 0.11): x, scale, zeropt, in bits, out scale, out bits
            _check_scale(node, _scalar_param(model, node, 4, "output scale"), shape, "output scale")
        out_bits = 5 if len(node.input) >= 6 else 4
        _check_bits(node, _scalar_param(model, node, out_bits, "output bit width"), "output bit width")
        _check_flags(node)
    elif op == "FloatQuant":
        _check_scale(node, _scalar_param(model, node, 1, "scale"), shape)
        _check_bits(node, _scalar_param(model, node, 2, "exponent bit width"), "exponent bit width")
        _check_bits(node, _scalar_param(model, node, 3, "mantissa bit width"), "mantissa bit width", low=0)


class CheckQuantizers(Pass):
    """Analysis: every quantizer's parameters are QONNX-valid (else one-line refusal)."""

    in_place = True

    def call(self, model: Model) -> PassResult:
        for node in model.graph.node:
            if node.op_type in ("Quant", "IntQuant", "BipolarQuant", "Trunc", "FloatQuant"):
                check_quantizer(model, node)
        return PassResult(model, False)
