"""QDQ/QCDQ graphs become QONNX Quant; the IR computes what onnxruntime computes on the original."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import shared_path
from onnx import TensorProto, helper, numpy_helper

import codesign
from codesign.backends.reference import execute
from codesign.passes.cost import cost_report


def ort_run(proto_or_path, x: np.ndarray, unfused: bool = False) -> np.ndarray:
    """onnxruntime's first output on ``x`` (``unfused``: the spec's node-by-node semantics, not its fused int kernels)."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if unfused:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    src = proto_or_path.SerializeToString() if isinstance(proto_or_path, onnx.ModelProto) else str(proto_or_path)
    sess = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def qdq_proto(clip: bool = False, zero_point_inputs: bool = True, per_channel: bool = True) -> onnx.ModelProto:
    """x -(uint8 Q/DQ, zp 7)-> MatMul(DQ(int8 W, per-channel axis 1)) -> (int8 Q [Clip] DQ) -> y."""
    rng = np.random.default_rng(3)
    wq = rng.integers(-128, 128, size=(6, 5)).astype(np.int8)
    w_scale = (rng.uniform(0.5, 2.0, size=5) / 64).astype(np.float32) if per_channel else np.float32(1 / 64)
    inits = [
        numpy_helper.from_array(np.float32(0.05), "xs"), numpy_helper.from_array(np.uint8(7), "xz"),
        numpy_helper.from_array(wq, "wq"), numpy_helper.from_array(np.asarray(w_scale), "ws"),
        numpy_helper.from_array(np.zeros(np.shape(w_scale), dtype=np.int8), "wz"),
        numpy_helper.from_array(np.float32(0.25), "ys"), numpy_helper.from_array(np.int8(-3), "yz"),
    ]  # fmt: skip
    z = (lambda name: [name]) if zero_point_inputs else (lambda name: [])
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", *z("xz")], ["xq"], name="qx"),
        helper.make_node("DequantizeLinear", ["xq", "xs", *z("xz")], ["xd"], name="dqx"),
        helper.make_node(
            "DequantizeLinear", ["wq", "ws", "wz"], ["wd"], name="dqw", **({"axis": 1} if per_channel else {})
        ),
        helper.make_node("MatMul", ["xd", "wd"], ["mm"], name="mm"),
        helper.make_node("QuantizeLinear", ["mm", "ys", "yz"], ["yq"], name="qy"),
    ]
    if clip:
        inits += [numpy_helper.from_array(np.int8(-100), "lo"), numpy_helper.from_array(np.int8(100), "hi")]
        nodes.append(helper.make_node("Clip", ["yq", "lo", "hi"], ["yc"], name="clip"))
    nodes.append(helper.make_node("DequantizeLinear", ["yc" if clip else "yq", "ys", "yz"], ["y"], name="dqy"))
    if not zero_point_inputs:  # the spec's default zero point: uint8 zero
        inits = [t for t in inits if t.name != "xz"]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits)  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("zero_point_inputs", [True, False])
@pytest.mark.parametrize("per_channel", [True, False])
def test_qdq_becomes_quant_and_matches_onnxruntime(clip, zero_point_inputs, per_channel):
    proto = qdq_proto(clip, zero_point_inputs, per_channel)
    model = codesign.load(proto)
    ops = [n.op_type for n in model.nodes]
    assert "QuantizeLinear" not in ops and "DequantizeLinear" not in ops
    assert ops.count("Quant") == 3 and ops.count("Clip") == int(
        clip
    )  # Clip(-100, 100) is no Quant range: kept, in floats
    x = np.random.default_rng(0).uniform(-2, 15, size=(64, 6)).astype(np.float32)
    expected = np.concatenate([ort_run(proto, x[i : i + 1]) for i in range(len(x))])
    got = execute(model, x)[model.outputs[0]]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    quants = [n for n in model.nodes if n.op_type == "Quant"]
    assert [int(model.initializer(n.input[3])) for n in quants] == [8, 8, 8]
    signed = [int(next(a.i for a in n.attribute if a.name == "signed")) for n in quants]
    assert sorted(signed) == [0, 1, 1]  # uint8 activations, int8 weights and outputs
    assert model.dtype("xd").name == "SCALEDINT<8>" and model.dtype("wd").name == "SCALEDINT<8>"
    row = next(r for r in cost_report(model).layers if r.op == "MatMul")
    assert row.macs == 30 and row.bops == 30 * 8 * 8


def test_clip_with_a_quant_range_narrows_the_quantizer():
    """Clip(-8, 7) on int8 between Q and DQ is a 4-bit Quant (qonnx's fusion, kept)."""
    proto = qdq_proto(clip=True)
    for t in proto.graph.initializer:
        if t.name in ("lo", "hi"):
            t.CopyFrom(numpy_helper.from_array(np.int8(-8 if t.name == "lo" else 7), t.name))
    model = codesign.load(proto)
    assert "Clip" not in [n.op_type for n in model.nodes]
    out_q = model.producer(model.outputs[0])
    assert int(model.initializer(out_q.input[3])) == 4 and model.dtype(model.outputs[0]).name == "SCALEDINT<4>"
    x = np.random.default_rng(1).uniform(-2, 15, size=(32, 6)).astype(np.float32)
    expected = np.concatenate([ort_run(proto, x[i : i + 1]) for i in range(len(x))])
    np.testing.assert_allclose(execute(model, x)[model.outputs[0]], expected, rtol=0, atol=1e-6)


def test_mlperf_tiny_int8_resnet_matches_onnxruntime_exactly():
    path = shared_path("models", "mlcommons+tiny_results_v1.3", "closed", "kai_jiang", "code", "ic", "K1_BOARD_V1.0",
                       "models", "resnet.onnx")  # fmt: skip
    model = codesign.load(path)
    ops = {n.op_type for n in model.nodes}
    assert "QuantizeLinear" not in ops and "DequantizeLinear" not in ops
    assert sum(n.op_type == "Quant" for n in model.nodes) == 35
    x = np.random.default_rng(0).uniform(0, 1, size=(8, 32, 32, 3)).astype(np.float32)
    expected = np.concatenate([ort_run(path, x[i : i + 1]) for i in range(len(x))])
    got = np.concatenate([execute(model, x[i : i + 1])[model.outputs[0]] for i in range(len(x))])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert (got.argmax(1) == expected.argmax(1)).all()
    report = cost_report(model)
    mac_rows = [r for r in report.layers if r.macs]
    assert len(mac_rows) == 10  # 9 Conv + 1 Gemm
    assert all(r.weight_dtype == "SCALEDINT<8>" and r.act_dtype == "SCALEDINT<8>" for r in mac_rows)
    assert report.macs == pytest.approx(12349178) and report.bops == pytest.approx(64 * 12349178)


def int8_port_proto() -> onnx.ModelProto:
    """A fully integer model (TFLite int8 through tf2onnx): int8 input -> DQ -> Dense(+int32 bias) -> ReLU -> Q -> int8 output."""
    rng = np.random.default_rng(5)
    inits = [
        numpy_helper.from_array(rng.integers(-127, 128, size=(16, 8)).astype(np.int8), "wq"),
        numpy_helper.from_array((rng.uniform(0.5, 2.0, size=8) / 80).astype(np.float32), "ws"),
        numpy_helper.from_array(np.zeros(8, np.int8), "wz"),
        numpy_helper.from_array(rng.integers(-500, 500, size=8).astype(np.int32), "bq"),
        numpy_helper.from_array(np.float32(0.0371 / 80), "bs"),
        numpy_helper.from_array(np.float32(0.0371), "xs"), numpy_helper.from_array(np.int8(-3), "xz"),
        numpy_helper.from_array(np.float32(0.0519), "ys"), numpy_helper.from_array(np.int8(-128), "yz"),
    ]  # fmt: skip
    nodes = [
        helper.make_node("DequantizeLinear", ["x", "xs", "xz"], ["xd"], name="dqx"),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], name="dqw", axis=1),
        helper.make_node("DequantizeLinear", ["bq", "bs"], ["bd"], name="dqb"),
        helper.make_node("MatMul", ["xd", "wd"], ["mm"], name="mm"),
        helper.make_node("Add", ["mm", "bd"], ["acc"], name="bias"),
        helper.make_node("Relu", ["acc"], ["r"], name="relu"),
        helper.make_node("QuantizeLinear", ["r", "ys", "yz"], ["y"], name="qy"),
    ]
    graph = helper.make_graph(nodes, "int8_ports", [helper.make_tensor_value_info("x", TensorProto.INT8, [1, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.INT8, [1, 8])], inits)  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_int8_ports_become_float_ports_of_the_same_codes():
    """The IR takes and returns the int8 codes as floats and computes exactly what onnxruntime computes."""
    proto = int8_port_proto()
    model = codesign.load(proto)
    assert not {"QuantizeLinear", "DequantizeLinear"} & {n.op_type for n in model.nodes}
    x = np.random.default_rng(1).integers(-128, 128, size=(200, 16)).astype(np.int8)
    expected = np.concatenate([ort_run(proto, x[i : i + 1], unfused=True) for i in range(len(x))]).astype(np.float32)
    got = execute(model, x.astype(np.float32))[model.outputs[0]]
    np.testing.assert_array_equal(got, expected)
    assert model.dtype(model.inputs[0]).name == "FLOAT32" and len(np.unique(expected)) > 20


def test_int8_ports_compile_bit_exact(tmp_path):
    pytest.importorskip("hls4ml")
    from codesign.backends.compile import compile_hls4ml

    result = compile_hls4ml(codesign.load(int8_port_proto()), "vu13p", tmp_path / "prj", verify=True, samples=100)
    assert result.verify["bit_exact"] is True and result.verify["max_abs_diff"] == 0.0


def tf2onnx_tflite_proto() -> onnx.ModelProto:
    """What tf2onnx writes for a TFLite int8 conv net: NHWC int8 input -> Transpose -> DQ, a Q -> Squeeze -> DQ
    pair (its transpose optimiser), node names of several hundred characters."""
    rng = np.random.default_rng(2)
    long = "functional_1/re_lu_1/Relu;functional_1/batch_normalization_1/batchnorm/add_1;" * 4
    inits = [
        numpy_helper.from_array(rng.integers(-127, 128, size=(3, 2, 1, 1)).astype(np.int8), "wq"),
        numpy_helper.from_array(np.full(3, 0.0123, np.float32), "ws"), numpy_helper.from_array(np.zeros(3, np.int8), "wz"),
        numpy_helper.from_array(np.float32(0.05), "xs"), numpy_helper.from_array(np.int8(4), "xz"),
        numpy_helper.from_array(np.float32(0.07), "ys"), numpy_helper.from_array(np.int8(-2), "yz"),
        numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
    ]  # fmt: skip
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 3, 1, 2], name=long + "a"),
        helper.make_node("DequantizeLinear", ["xt", "xs", "xz"], ["xd"], name=long + "b"),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0, name=long + "c"),
        helper.make_node("Conv", ["xd", "wd"], ["c"], kernel_shape=[1, 1], name=long + "d"),
        helper.make_node("QuantizeLinear", ["c", "ys", "yz"], ["cq"], name=long + "e"),
        helper.make_node("Squeeze", ["cq", "axes"], ["sq"], name=long + "f"),
        helper.make_node("DequantizeLinear", ["sq", "ys", "yz"], ["y"], name=long + "g"),
    ]
    graph = helper.make_graph(nodes, "tflite", [helper.make_tensor_value_info("x", TensorProto.INT8, [1, 1, 1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_tf2onnx_tflite_patterns_load_and_match_onnxruntime():
    proto = tf2onnx_tflite_proto()
    model = codesign.load(proto)
    assert not {"QuantizeLinear", "DequantizeLinear"} & {n.op_type for n in model.nodes}
    assert all(len(n.name) <= 200 for n in model.nodes)
    x = np.random.default_rng(3).integers(-128, 128, size=(50, 1, 1, 2)).astype(np.int8)
    expected = np.concatenate([ort_run(proto, x[i : i + 1], unfused=True) for i in range(len(x))])
    got = execute(model, x.astype(np.float32))[model.outputs[0]]
    np.testing.assert_array_equal(got, expected)


def test_a_long_name_stays_safe_when_made_unique():
    from codesign.ir.names import MAX_NAME, is_safe_name, uniquify

    taken: set[str] = set()
    names = [uniquify("n" * 300, taken) for _ in range(3)]
    assert len(set(names)) == 3 and all(len(n) <= MAX_NAME and is_safe_name(n) for n in names)


def test_long_names_that_differ_only_past_the_cap_stay_different():
    """``<5000 a>_scale`` and ``<5000 a>_zero`` taken before either enters the graph: cutting the tail made them
    one name, and a conv weight was overwritten by a scalar scale (fuzz seed 13, `all-nodes` on a conv net)."""
    from codesign.frontends import load
    from codesign.ir.names import MAX_NAME, shorten, uniquify
    from codesign.passes.graph_edit import fresh_name

    long = "a" * 5000
    assert shorten(f"{long}_scale") != shorten(f"{long}_zero") and len(shorten(f"{long}_zero")) == MAX_NAME
    assert shorten("short") == "short" and uniquify(f"{long}_scale", set()) == shorten(f"{long}_scale")
    from helpers import mlp_proto

    model = load(mlp_proto())
    assert fresh_name(model, f"{long}_scale") != fresh_name(model, f"{long}_zero")
