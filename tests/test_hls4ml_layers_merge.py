"""Add/Sub/Mul (two branches, and a broadcast constant) and Concat, C-simulated bit-exact."""

from __future__ import annotations

import numpy as np
import pytest
from hls4ml_graphs import Graph, assert_bit_exact, csim, layer_classes

pytest.importorskip("hls4ml")


def test_residual_merges_broadcast_constants_and_concat_bit_exact(tmp_path):
    """Two conv branches joined by Add/Sub/Mul, per-channel constant scale and shift, a 3-way channel Concat."""
    g = Graph((2, 5, 5))  # 6 output channels != 5: verify tells the layouts apart by shape
    x = g.quant("x", 6, -3)
    a = g.quant(
        g.node("Conv", [x, g.weight((3, 2, 3, 3))], name="conv_a", kernel_shape=[3, 3], pads=[1, 1, 1, 1]), 6, -2
    )
    b = g.quant(g.node("Conv", [x, g.weight((3, 2, 1, 1))], name="conv_b", kernel_shape=[1, 1]), 6, -2)
    s = g.quant(g.node("Add", [a, b], name="res_add"), 7, -2)
    d = g.quant(g.node("Sub", [a, b], name="res_sub"), 7, -2)
    m = g.quant(g.node("Mul", [s, d], name="res_mul"), 8, 0)
    scale = g.const(np.array([0.5, 2.0, -1.0]).reshape(3, 1, 1))  # (C, 1, 1): broadcast over H, W
    shift = g.const(np.array([0.25, -0.5, 1.0]).reshape(1, 3, 1, 1))
    m = g.node("Add", [g.node("Mul", [m, scale], name="chan_scale"), shift], name="chan_shift")
    m = g.quant(m, 8, -1)
    y = g.node("Concat", [m, s, b], name="cat", axis=1)  # three inputs: a chain of two
    report = csim(g.model(y, (9, 5, 5)), tmp_path)
    assert_bit_exact(report)
    classes = layer_classes(tmp_path)
    assert classes["res_add"] == "Merge" and classes["cat"] == "Concatenate"
    # scale and shift hit rounding ties (no strict fixed-point step function): one exactly typed affine
    assert classes["chan_shift_affine"] == "BatchNormalization" and "chan_scale" not in classes


def test_broadcasting_two_computed_tensors_is_refused_naming_the_node():
    from codesign.backends import hls4ml_layers
    from codesign.backends.hls4ml_backend import lower_model
    from codesign.backends.precision import derive
    from codesign.errors import UnsupportedModelError
    from codesign.frontends import load

    g = Graph((3, 4, 4))
    x = g.quant("x")
    pooled = g.node("GlobalAveragePool", [x], name="gap")
    y = g.node("Mul", [x, pooled], name="excite")  # squeeze-and-excitation style
    lowered = lower_model(load(g.model(y, (3, 4, 4))))
    with pytest.raises(UnsupportedModelError, match="Mul excite: broadcasting two computed tensors"):
        hls4ml_layers.build(lowered, derive(lowered))


def test_float_scale_affines_keep_their_precision(tmp_path):
    """Brevitas' defaults: Quant(W, 0.002) moved behind the MAC, float bias and BatchNorm, a float-scale ReLU
    quantizer; hls4ml's fixed<16,6> default rounded the weight scale to 2**-9 (top-1 93% on a jet tagger)."""
    g = Graph((16,), seed=3)
    x = g.quant_scaled("x", 0.0308)
    w1 = g.quant_scaled(g.const(g.rng.normal(size=(16, 32)) * 0.1), 0.00198, narrow=True)
    h = g.node("Add", [g.node("MatMul", [x, w1], name="fc1"), g.const(g.rng.normal(size=32) * 0.1)], name="fc1_bias")
    bn = [g.const(v) for v in (g.rng.uniform(0.8, 1.2, 32), g.rng.normal(size=32) * 0.1,
                                g.rng.normal(size=32) * 0.1, g.rng.uniform(0.5, 1.0, 32))]  # fmt: skip
    h = g.node("BatchNormalization", [h, *bn], name="bn1")
    h = g.quant_scaled(g.node("Relu", [h], name="relu1"), 0.0148, signed=False)
    w2 = g.quant_scaled(g.const(g.rng.normal(size=(32, 5)) * 0.1), 0.00105, narrow=True)
    y = g.node("Add", [g.node("MatMul", [h, w2], name="fc2"), g.const(g.rng.normal(size=5) * 0.05)], name="fc2_bias")
    report = csim(g.model(y, (5,)), tmp_path, samples=100)
    assert report["argmax_agreement"] == 1.0, report
    assert report["max_abs_diff"] < 2e-3, report  # fixed<16,6> constants: 0.03
