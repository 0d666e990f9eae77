"""Attribute and rank sanity of convolution/pooling nodes, once shapes are known; annotated constants.

onnxruntime and the backends crash (or divide by zero) on a Conv whose ``group`` does not
divide its channels, a zero stride or a negative pad; here such a node is refused in one
line naming it. So is an initializer holding values its integer QONNX datatype annotation
cannot (a flipped BIPOLAR weight): qonnx's executor stops on it with a multi-line exception,
and backends would take the annotation for the truth.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from codesign.errors import UnsupportedModelError
from codesign.ir.model import Model
from codesign.passes.base import Pass, PassResult

WINDOW_OPS = frozenset({"Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool"})


def _refuse(node: onnx.NodeProto, problem: str) -> None:
    raise UnsupportedModelError(f"node {node.name!r} ({node.op_type}): {problem}")


def check_window_node(model: Model, node: onnx.NodeProto) -> None:
    """Refuse ``node`` if its window attributes or channel grouping cannot be valid."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    shape = model.shape(node.input[0]) if node.input else None
    channels_last = node.domain.endswith("channels_last")
    if shape is not None and len(shape) < 3:
        _refuse(node, f"input of rank {len(shape)}, needs N, C and at least one spatial axis")
    nsp = len(shape) - 2 if shape is not None else None
    for key, low in (("strides", 1), ("dilations", 1), ("pads", 0), ("kernel_shape", 1)):
        values = list(attrs.get(key, []))
        if any(v < low for v in values):
            _refuse(node, f"{key}={values}, each must be >= {low}")
        want = None if nsp is None else (2 * nsp if key == "pads" else nsp)
        if values and want is not None and len(values) != want:
            _refuse(node, f"{key} has {len(values)} values, input has {nsp} spatial axes")
    if node.op_type not in ("Conv", "ConvTranspose"):
        return
    group = int(attrs.get("group", 1))
    if group < 1:
        _refuse(node, f"group={group}, must be >= 1")
    w = model.shape(node.input[1]) if len(node.input) > 1 else None
    if shape is None or w is None:
        return
    cin = shape[-1] if channels_last else shape[1]
    if cin % group:
        _refuse(node, f"group={group} does not divide its {cin} input channels")
    if node.op_type == "Conv" and not channels_last and w[1] * group != cin:
        _refuse(node, f"weight shape {tuple(w)} with group={group} does not match {cin} input channels")


class CheckWindowNodes(Pass):
    """Analysis: every Conv/pool node passes :func:`check_window_node`."""

    in_place = True

    def call(self, model: Model) -> PassResult:
        for node in model.graph.node:
            if node.op_type in WINDOW_OPS:
                check_window_node(model, node)
        return PassResult(model, False)


def check_annotated_constants(model: Model) -> None:
    """Refuse, naming it, an initializer whose values are off its integer datatype annotation's grid or range."""
    from qonnx.util.basic import get_execution_error_thresh

    for ann in model.graph.quantization_annotation:
        name = ann.tensor_name
        dt = model.dtype(name)
        value = model.initializer(name) if dt.is_integer() else None
        if value is None or not value.size:
            continue
        value = np.asarray(value, dtype=np.float64)
        rounded = np.round(value)
        off = np.abs(value - rounded) > get_execution_error_thresh()
        bad = np.flatnonzero(off.ravel() | ~np.asarray(dt.allowed(rounded), dtype=bool).ravel())
        if bad.size:
            raise UnsupportedModelError(
                f"initializer {name!r} is annotated {dt.name} but holds {value.ravel()[bad[0]]:g} "
                f"({bad.size} of {value.size} values are not {dt.name})"
            )


class CheckAnnotatedConstants(Pass):
    """Analysis: every initializer passes :func:`check_annotated_constants`."""

    in_place = True

    def call(self, model: Model) -> PassResult:
        check_annotated_constants(model)
        return PassResult(model, False)
