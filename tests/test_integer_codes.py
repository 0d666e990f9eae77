"""Non-power-of-two quantized activations reach MatMul/Conv as integer codes (backends/integer_codes.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hls4ml_graphs import Graph, csim

from codesign.frontends import load

pytest.importorskip("hls4ml")


def _per_channel_weight(g: Graph, shape: tuple[int, ...], axis: int) -> str:
    """int8 weights times one non-power-of-two scale per output channel (``axis``), as QDQ exporters write them."""
    codes = g.rng.integers(-127, 128, size=shape).astype(np.float64)
    scale_shape = [1] * len(shape)
    scale_shape[axis] = shape[axis]
    scale = (0.004 + 0.003 * g.rng.random(shape[axis])).reshape(scale_shape)
    s, z, b = g.const(scale, "ws"), g.const(0.0, "wz"), g.const(8.0, "wb")
    name = g._name("wq")
    from onnx import helper

    g.nodes.append(helper.make_node("Quant", [g.const(codes * scale, "w"), s, z, b], [name], name=name,
                                    domain="qonnx.custom_op.general", signed=1, narrow=1, rounding_mode="ROUND"))  # fmt: skip
    return name


def _qdq_cnn(zero: float = 0.0) -> Graph:
    """Quant -> Conv(+bias) -> Quant -> ReLU -> MaxPool -> Flatten -> MatMul -> Add -> Quant: every scale float."""
    g = Graph((2, 6, 6))
    x = g.quant_scaled("x", 0.0213, zero=zero)
    c = g.node("Conv", [x, _per_channel_weight(g, (4, 2, 3, 3), 0), g.const(g.rng.normal(size=4) * 0.3)],
               name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])  # fmt: skip
    h = g.quant_scaled(c, 0.0377)
    h = g.node("Relu", [h], name="relu")
    h = g.node("MaxPool", [h], name="pool", kernel_shape=[2, 2], strides=[2, 2])
    h = g.node("Flatten", [h], name="flat", axis=1)
    d = g.node("MatMul", [h, _per_channel_weight(g, (36, 5), 1)], name="dense")
    d = g.node("Add", [d, g.const(g.rng.normal(size=5) * 0.2)], name="dense_bias")
    g.out = g.quant_scaled(d, 0.0291)
    return g


def test_the_macs_read_integer_codes():
    """Both MACs' data inputs come from a unit-scale Quant; the scales moved behind them."""
    from codesign.backends.hls4ml_backend import lower_model
    from codesign.backends.precision import quant_type
    from codesign.frontends import load

    g = _qdq_cnn()
    lowered = lower_model(load(g.model(g.out, (5,))))
    for mac in lowered.nodes_of(["Conv", "MatMul"]):
        src = mac.input[0]
        while lowered.producer(src).op_type in ("Relu", "MaxPool", "Flatten", "Reshape", "Transpose"):
            src = lowered.producer(src).input[0]
        quant = lowered.producer(src)
        assert quant.op_type == "Quant" and float(lowered.constant(quant.input[1])) == 1.0
        assert quant_type(lowered, quant).width == 8  # int8 codes in, not a 28-bit rescaled value


@pytest.mark.parametrize("zero", [0.0, 5.0], ids=["symmetric", "asymmetric-padded"])
def test_qdq_cnn_csim_lands_on_the_reference_codes(tmp_path, zero):
    """C-sim outputs on the IR's codes of the output quantizer for every sample (were 1 LSB off at boundaries).

    A padded Conv reads the centred codes ``q - z`` (its padding adds real zeros, not codes ``z``)."""
    g = _qdq_cnn(zero)
    report = csim(g.model(g.out, (5,)), tmp_path, samples=200)
    assert report["same_code_share"] == 1.0, report
    assert report["max_abs_diff"] < 0.0291 / 2, report  # q * s in fixed point: within half a step of the float value


def _qdq_mlp(zero: float = 0.0) -> Graph:
    """Three int8 QDQ Dense layers (64-128-128-16) with per-channel weight scales and float biases."""
    g = Graph((64,), seed=3)
    h = g.quant_scaled("x", 0.0213, zero=zero)
    for k, (n_in, n_out, s) in enumerate([(64, 128, 0.0377), (128, 128, 0.0519), (128, 16, 0.0291)]):
        d = g.node("MatMul", [h, _per_channel_weight(g, (n_in, n_out), 1)], name=f"dense{k}")
        d = g.node("Add", [d, g.const(g.rng.normal(size=n_out) * 0.2)], name=f"bias{k}")
        h = g.quant_scaled(d, s, zero=zero)
        if k < 2:
            h = g.quant_scaled(g.node("Relu", [h], name=f"relu{k}"), s, signed=False)
    g.out = h
    return g


@pytest.mark.parametrize("zero", [0.0, -7.0], ids=["symmetric", "asymmetric"])
def test_qdq_mlp_csim_lands_on_the_reference_codes(tmp_path, zero):
    """Wide int8 layers: every output code equal to the IR's (rescaled 28-bit activations flipped ~1% of them)."""
    g = _qdq_mlp(zero)
    report = csim(g.model(g.out, (16,)), tmp_path, samples=200)
    assert report["same_code_share"] == 1.0, report


def test_a_zero_point_reaches_the_mac_as_a_bias():
    """Asymmetric codes: the MatMul reads the raw codes; ``-z * column sums`` is an Add between it and its Mul(s)."""
    from codesign.backends.integer_codes import IntegerCodes
    from codesign.backends.lowering import ExtractWeightScale, QonnxCleanup
    from codesign.frontends import load
    from codesign.passes.base import Sequential

    g = _qdq_mlp(-7.0)
    model = Sequential(QonnxCleanup(), ExtractWeightScale(), IntegerCodes()).call(load(g.model(g.out, (16,)))).model
    first = next(n for n in model.nodes_of(["MatMul"]) if n.name == "dense0")
    assert model.producer(first.input[0]).op_type == "Quant"
    add = model.consumers(first.output[0])[0]
    w = model.constant(first.input[1])
    assert add.op_type == "Add" and model.consumers(add.output[0])[0].op_type == "Mul"
    np.testing.assert_allclose(model.constant(add.input[1]), 7.0 * w.sum(axis=0), rtol=1e-6)


def test_a_padded_conv_reads_centred_codes():
    """Zero point 5 before a 3x3 pad-1 Conv: Sub(codes, 5) feeds it, the scale moved behind it."""
    from codesign.backends.integer_codes import IntegerCodes
    from codesign.backends.lowering import ExtractWeightScale, QonnxCleanup
    from codesign.passes.base import Sequential

    g = _qdq_cnn(5.0)
    model = Sequential(QonnxCleanup(), ExtractWeightScale(), IntegerCodes()).call(load(g.model(g.out, (5,)))).model
    conv = next(iter(model.nodes_of(["Conv"])))
    sub = model.producer(conv.input[0])
    assert sub.op_type == "Sub" and float(model.constant(sub.input[1])) == 5.0
    assert model.producer(sub.input[0]).op_type == "Quant"
    assert {n.op_type for n in model.consumers(conv.output[0])} == {"Mul"}
