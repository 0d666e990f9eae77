"""Dense (MatMul/Gemm + bias), Quant, Identity/Dropout: built by codesign, C-simulated bit-exact."""

from __future__ import annotations

import numpy as np
import pytest
from hls4ml_graphs import Graph, assert_bit_exact, csim, layer_classes

pytest.importorskip("hls4ml")


def test_dense_chain_with_identity_and_dropout_is_bit_exact(tmp_path):
    g = Graph((12,))
    x = g.quant("x", 8, -4)
    h = g.node("MatMul", [x, g.weight((12, 16))], name="fc1")
    h = g.node("Add", [h, g.bias(16)], name="fc1_bias")
    h = g.quant(g.node("Relu", [h], name="act1"), 6, -3, signed=False)
    h = g.node("Dropout", [g.node("Identity", [h], name="keep")], name="drop")
    w = g.rng.integers(-7, 8, size=(5, 16)) * 2.0**-3  # Gemm with transB, lowered to MatMul + Add
    y = g.node("Gemm", [h, g.quant(g.const(w), 4, -3, narrow=True), g.bias(5)], name="fc2", transB=1)
    report = csim(g.model(y, (5,)), tmp_path)
    assert_bit_exact(report)
    classes = layer_classes(tmp_path)
    assert classes["fc1"] == "Dense" and classes["fc2"] == "Dense"  # IR node names kept
    assert not {"keep", "drop", "fc1_bias"} & set(classes)  # removed / fused


@pytest.mark.slow
def test_non_power_of_two_activation_scale_is_scaled_and_rescaled(tmp_path):
    """A Quant with scale 0.3 goes through hls4ml's scale/rescale: close, not bit-exact."""
    g = Graph((8,))
    x = g.quant("x", 8, -4)
    h = g.node("MatMul", [x, g.weight((8, 4))], name="fc")
    s, z, b = g.const(0.3), g.const(0.0), g.const(6.0)
    g.nodes.append(__import__("onnx").helper.make_node(
        "Quant", [h, s, z, b], ["y"], name="q_np2", domain="qonnx.custom_op.general", signed=1, narrow=0,
        rounding_mode="ROUND"))  # fmt: skip
    report = csim(g.model("y", (4,)), tmp_path)
    assert report["max_abs_diff"] <= 0.3 + 1e-6  # at most one quantization step
    assert np.isfinite(report["max_abs_diff"])


def test_one_bit_signed_weight_quant_is_typed_to_hold_plus_and_minus_one():
    """qonnx's 1-bit signed narrow Quant yields {-1, +1} (QKeras binary weights): fixed<1,1> would zero every +1."""
    from codesign.backends.hls4ml_backend import lower_model
    from codesign.backends.precision import derive, quant_type
    from codesign.frontends import load

    g = Graph((6,))
    h = g.node("MatMul", [g.quant("x", 8, -4), g.weight((6, 3), bits=1, exp=0)], name="fc")
    lowered = lower_model(load(g.model(h, (3,))))
    wq = lowered.producer(lowered.node("fc").input[1])
    values = lowered.constant(wq.output[0])
    assert set(np.unique(values)) <= {-1.0, 1.0} and 1.0 in values
    t = quant_type(lowered, wq)
    assert t.lo <= -1.0 and t.hi >= 1.0
    assert derive(lowered).layers["fc"].types["weight"] == t


def test_float_scale_quant_on_a_fanned_out_tensor_scales_only_its_own_branch(tmp_path):
    """Brevitas' QuantEltwiseAdd re-quantizes both residual operands with a float scale; the block input also
    feeds a Conv. hls4ml's Quant optimiser put the x / s ApplyAlpha before the Conv (top-1 26%, then a C++ build
    failure once its scale_down_add moved the rescale): codesign builds scale, cast and rescale itself."""
    g = Graph((2, 4, 4))
    x = g.quant("x", 4, 0)
    conv = g.node("Conv", [x, g.weight((2, 2, 3, 3))], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    y = g.quant(conv, 4, 0)
    a, b = g.quant_scaled(x, 0.0339), g.quant_scaled(y, 0.0339)
    s = g.quant_scaled(g.node("Add", [a, b], name="res_add"), 0.0511)
    report = csim(g.model(s, (2, 4, 4)), tmp_path)
    assert report["max_abs_diff"] <= 1e-5, report  # float32 rounding of codes * 0.0511 (one step: 0.05)
    classes = layer_classes(tmp_path)
    assert classes["conv"] == "Conv2D" and classes[f"{a}_scale"] == "ApplyAlpha" and classes["res_add"] == "Merge"


@pytest.mark.parametrize("version", [1, 2])
def test_trunc_after_average_pool_is_power_of_two_quants_bit_exact(tmp_path, version):
    """Brevitas' TruncAvgPool2d exports AveragePool + Trunc: v2 (x, scale, zeropt, in bits, out scale, out bits;
    the door read its output scale as the output bit width: "0.125 is not an integer") or v1 (no output scale:
    hls4ml had no Trunc)."""
    from onnx import helper

    g = Graph((2, 4, 4))
    x = g.quant("x", 4, -1, signed=False)
    conv = g.node("Conv", [x, g.weight((3, 2, 3, 3))], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    h = g.quant(g.node("Relu", [conv], name="relu"), 4, -3, signed=False)
    pooled = g.node("AveragePool", [h], name="pool", kernel_shape=[2, 2], strides=[2, 2])
    params = [g.const(2.0**-5), g.const(0.0), g.const(6.0), g.const(2.0**-3), g.const(4.0)]
    if version == 1:
        del params[3]
    attrs = {"signed": 0, "narrow": 0} if version == 2 else {}
    g.nodes.append(helper.make_node("Trunc", [pooled, *params], ["y"], name="trunc", domain="qonnx.custom_op.general",
                                    rounding_mode="floor", **attrs))  # fmt: skip
    proto = g.model("y", (3, 2, 2))
    proto.opset_import.append(helper.make_opsetid("qonnx.custom_op.general", version))
    report = csim(proto, tmp_path)
    assert_bit_exact(report)


def test_bipolar_weight_scale_moves_behind_the_matmul():
    """Brevitas' SignedBinaryWeightPerTensorConst is BipolarQuant(W, 0.1): hls4ml keeps only +-2**k weights
    (C-sim top-1 74%); the scale becomes a Mul after the MAC, same values in the lowered graph."""
    from onnx import helper

    from codesign.backends.hls4ml_backend import lower_model
    from codesign.backends.reference import ReferenceExecutor
    from codesign.frontends import load

    g = Graph((16,))
    x = g.quant("x", 6, -2)
    w = "wq"
    g.nodes.append(helper.make_node("BipolarQuant", [g.const(g.rng.normal(size=(16, 4))), g.const(0.1)], [w],
                                    name="wq", domain="qonnx.custom_op.general"))  # fmt: skip
    ir = load(g.model(g.node("MatMul", [x, w], name="fc"), (4,)))
    lowered = lower_model(ir)
    assert [n.op_type for n in lowered.graph.node][-2:] == ["MatMul", "BatchNormalization"]  # exact affine
    assert np.all(np.abs(lowered.constant(lowered.node("fc").input[1])) == 1.0)
    xs = g.rng.normal(size=(8, 16)).astype(np.float32)
    want, got = ReferenceExecutor(ir).run(xs)[ir.outputs[0]], ReferenceExecutor(lowered).run(xs)[lowered.outputs[0]]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def _qdq_dense_bn_model():
    """onnxruntime-style QDQ: Q/DQ input -> MatMul (int8 DQ weight) -> bias Add -> float BN -> Q/DQ output."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    f32 = np.float32
    inits = [
        numpy_helper.from_array(f32(0.0371), "sx"), numpy_helper.from_array(np.int8(0), "zx"),
        numpy_helper.from_array(rng.integers(-127, 128, (8, 6)).astype(np.int8), "wq"),
        numpy_helper.from_array(f32(0.0123), "sw"), numpy_helper.from_array(np.int8(0), "zw"),
        numpy_helper.from_array(rng.normal(0, 0.3, 6).astype(f32), "b"),
        numpy_helper.from_array(rng.uniform(0.8, 1.2, 6).astype(f32), "gamma"),
        numpy_helper.from_array(rng.normal(0, 0.2, 6).astype(f32), "beta"),
        numpy_helper.from_array(rng.normal(0, 0.2, 6).astype(f32), "mean"),
        numpy_helper.from_array(rng.uniform(0.2, 0.5, 6).astype(f32), "var"),
        numpy_helper.from_array(f32(0.0291), "sy"), numpy_helper.from_array(np.int8(0), "zy"),
    ]  # fmt: skip
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"], name="qx"),
        helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"], name="dqx"),
        helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["w"], name="dqw"),
        helper.make_node("MatMul", ["xd", "w"], ["m"], name="fc"),
        helper.make_node("Add", ["m", "b"], ["z"], name="fc_bias"),
        helper.make_node("BatchNormalization", ["z", "gamma", "beta", "mean", "var"], ["n"], name="bn"),
        helper.make_node("QuantizeLinear", ["n", "sy", "zy"], ["nq"], name="qy"),
        helper.make_node("DequantizeLinear", ["nq", "sy", "zy"], ["y"], name="dqy"),
    ]
    graph = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])], inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_qdq_dense_bn_with_quantized_output_matches_within_one_step(tmp_path):
    """Non-power-of-two QDQ: the output Quant keeps its fraction (was all zeros) and the float bias/BN are not
    fused into the next Quant's scale ApplyAlpha (their bias was lost: 15 codes off); within one output step."""
    report = csim(_qdq_dense_bn_model(), tmp_path, samples=40)
    assert report["reference_peak"] > 0.5
    assert report["max_abs_diff"] <= 0.0291 + 1e-6, report  # at most one code (rounding of s-scaled ties)
    assert report["argmax_agreement"] >= 0.95, report
    classes = layer_classes(tmp_path)
    assert classes["bn"] == "BatchNormalization"  # its own layer, not fused away
