"""Reductions keeping one axis -> global pools: DeepSets' sum/mean/max over particles, bit-exact in C-sim."""

from __future__ import annotations

import numpy as np
import pytest
from hls4ml_graphs import Graph, assert_bit_exact, csim, layer_classes
from onnx import numpy_helper

pytest.importorskip("hls4ml")


def _deepsets(op: str, **attrs):
    """(16 particles, 3 features) -> per-particle dense -> ReLU -> reduce over the particles -> dense."""
    g = Graph((16, 3))
    h = g.node("MatMul", [g.quant("x", 8, -4), g.weight((3, 8))], name="phi")
    h = g.quant(g.node("Relu", [h], name="relu"), 6, -3, signed=False)
    if op == "ReduceSum":  # opset 13: axes is an input
        g.inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"))
        h = g.node(op, [h, "axes"], name="pool", **attrs)
    else:
        h = g.node(op, [h], name="pool", axes=[1], **attrs)
    if attrs.get("keepdims", 1):
        h = g.node("Flatten", [h], name="flat")
    return g, g.node("MatMul", [h, g.weight((8, 5))], name="rho")


@pytest.mark.parametrize(("op", "keepdims", "cls"), [("ReduceSum", 0, "DepthwiseConv1D"),
                                                     ("ReduceMean", 1, "GlobalPooling1D"),
                                                     ("ReduceMax", 0, "GlobalPooling1D")])  # fmt: skip
def test_reductions_over_particles_bit_exact(tmp_path, op, keepdims, cls):
    g, y = _deepsets(op, keepdims=keepdims)
    assert_bit_exact(csim(g.model(y, (5,)), tmp_path))
    assert layer_classes(tmp_path)["pool"] == cls


def test_reductions_keeping_two_axes_stay_named_refusals():
    """A mean over one axis of a (C, H, W) tensor keeps two: no global pool says that; the refusal names it."""
    from codesign.backends.hls4ml_backend import lower_model
    from codesign.errors import UnsupportedModelError
    from codesign.frontends import load

    g = Graph((2, 4, 4))
    y = g.node("ReduceMean", [g.quant("x", 8, -4)], name="rowmean", axes=[2], keepdims=0)
    with pytest.raises(UnsupportedModelError, match="ReduceMean at rowmean"):
        lower_model(load(g.model(y, (2, 4))))
