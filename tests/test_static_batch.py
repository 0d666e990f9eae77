"""A static export batch of N > 1 becomes one sample only when the model provably is per-sample (passes/batch.py)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from codesign.backends.reference import execute
from codesign.frontends import load


def _model(mix_batch: bool) -> bytes:
    """x (8, 4) -> MatMul -> Relu -> Reshape to a Constant (8, -1) [-> minus the batch mean] -> y (8, 3)."""
    w = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Constant", [], ["target"], name="shape", value=numpy_helper.from_array(np.array([8, -1], np.int64))),
        helper.make_node("Reshape", ["r", "target"], ["y" if not mix_batch else "f"], name="flat"),
    ]  # fmt: skip
    if mix_batch:  # a statistic over the batch: not a per-sample model
        nodes += [helper.make_node("ReduceMean", ["f"], ["m"], name="mean", axes=[0], keepdims=1),
                  helper.make_node("Sub", ["f", "m"], ["y"], name="centre")]  # fmt: skip
    graph = helper.make_graph(nodes, "b8", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 3])],
                              [numpy_helper.from_array(w, "w")])  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def test_a_per_sample_model_exported_with_batch_8_loads_as_one_sample():
    proto = _model(mix_batch=False)
    model = load(proto)
    assert model.shape(model.inputs[0]) == (1, 4) and model.shape(model.outputs[0]) == (1, 3)
    x = np.random.default_rng(1).normal(size=(8, 4)).astype(np.float32)
    expected = ort.InferenceSession(proto, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(execute(model, x)[model.outputs[0]], expected, rtol=1e-6, atol=1e-6)


def test_a_model_that_mixes_the_batch_keeps_it():
    model = load(_model(mix_batch=True))
    assert model.shape(model.inputs[0]) == (8, 4)
