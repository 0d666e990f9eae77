"""onnxruntime QOperator graphs (QLinearConv, com.microsoft QGemm/QLinearSoftmax, int8 Flatten/MaxPool) load as QDQ -> Quant."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import codesign
from codesign.backends.reference import predict

ort = pytest.importorskip("onnxruntime")
quantization = pytest.importorskip("onnxruntime.quantization")


def _float_convnet(path) -> None:
    """Conv(1->4) Relu MaxPool Flatten Gemm(64->5) Softmax on 1x1x8x8, as quantize_static's input."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.5, (4, 1, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(0, 0.1, (4,)).astype(np.float32), "b"),
        numpy_helper.from_array(rng.normal(0, 0.2, (5, 64)).astype(np.float32), "w2"),
        numpy_helper.from_array(rng.normal(0, 0.1, (5,)).astype(np.float32), "b2"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["g"], name="fc", transB=1),
        helper.make_node("Softmax", ["g"], ["y"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "convnet", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits,
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


@pytest.mark.parametrize("per_channel", [False, True])
def test_qoperator_model_loads_and_matches_onnxruntime_bit_exactly(tmp_path, per_channel):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(1)
            self.it = iter([{"x": rng.normal(size=(1, 1, 8, 8)).astype(np.float32)} for _ in range(16)])

        def get_next(self):
            return next(self.it, None)

    _float_convnet(tmp_path / "f.onnx")
    path = tmp_path / "q.onnx"
    quantize_static(str(tmp_path / "f.onnx"), str(path), Reader(), quant_format=QuantFormat.QOperator,
                    per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)  # fmt: skip
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert {"QLinearConv", "QGemm", "QLinearSoftmax"} <= ops and "MaxPool" in ops  # MaxPool on uint8 codes
    model = codesign.load(path)
    assert not any(n.op_type.startswith("QLinear") or n.op_type == "QGemm" for n in model.graph.node)
    assert sum(n.op_type == "Quant" for n in model.graph.node) >= 4
    x = np.random.default_rng(2).normal(size=(40, 1, 8, 8)).astype(np.float32)
    sess = ort.InferenceSession(str(path))
    want = np.concatenate([sess.run(None, {"x": xi[None]})[0] for xi in x])
    got = np.asarray(predict(model, x)).reshape(want.shape)
    np.testing.assert_array_equal(got, want)
