"""Shapes resolve whenever graph inputs are static; old opsets are upgraded first.

Each tiny graph is checked three ways: every tensor gets a static shape, the output shape is
the expected one, and the IR's execution equals onnxruntime's on the original file.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import shared_path
from onnx import TensorProto, helper, numpy_helper

import codesign
from codesign.backends.reference import execute


def ort_run(proto_or_path, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    src = proto_or_path.SerializeToString() if isinstance(proto_or_path, onnx.ModelProto) else str(proto_or_path)
    sess = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def one_input(nodes, inits, in_shape, opset=13, out_name="y"):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, None)], inits)  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    if opset < 8:
        model.ir_version = 3
    return model


def const(name, value, dtype=np.int64):
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def shape_subgraph():
    """x(1,2,3,4) -> Shape -> Gather(0) -> Unsqueeze -> Concat(-1) -> Reshape: the old pytorch flatten."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "i0"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
        helper.make_node("Concat", ["n1", "m1"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    return one_input(nodes, [const("i0", 0), const("ax0", [0]), const("m1", [-1])], [1, 2, 3, 4]), (1, 24)


CASES = {
    "shape_subgraph": shape_subgraph,
    "resize_scales_empty_roi": lambda: (one_input(
        [helper.make_node("Resize", ["x", "roi", "sc"], ["y"], mode="nearest")],
        [const("roi", [], np.float32), const("sc", [1, 1, 2, 3], np.float32)], [1, 2, 3, 4], opset=11), (1, 2, 6, 12)),
    "resize_sizes": lambda: (one_input(
        [helper.make_node("Resize", ["x", "", "", "sz"], ["y"], mode="nearest")], [const("sz", [1, 2, 6, 8])],
        [1, 2, 3, 4]), (1, 2, 6, 8)),
    "upsample_opset9": lambda: (one_input(
        [helper.make_node("Upsample", ["x", "sc"], ["y"], mode="nearest")], [const("sc", [1, 1, 2, 2], np.float32)],
        [1, 2, 3, 4], opset=9), (1, 2, 6, 8)),
    "depth_to_space": lambda: (one_input(
        [helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2, mode="CRD")], [], [1, 8, 3, 4]), (1, 2, 6, 8)),
    "squeeze_unsqueeze_attr": lambda: (one_input(
        [helper.make_node("Unsqueeze", ["x"], ["u"], axes=[0]), helper.make_node("Squeeze", ["u"], ["y"], axes=[0, 2])],
        [], [1, 1, 5], opset=11), (1, 5)),
    "squeeze_unsqueeze_input": lambda: (one_input(
        [helper.make_node("Unsqueeze", ["x", "a0"], ["u"]), helper.make_node("Squeeze", ["u", "a02"], ["y"])],
        [const("a0", [0]), const("a02", [0, 2])], [1, 1, 5]), (1, 5)),
    "flatten_expand": lambda: (one_input(
        [helper.make_node("Flatten", ["x"], ["f"], axis=1), helper.make_node("Expand", ["f", "es"], ["y"])],
        [const("es", [3, 1, 12])], [1, 3, 4]), (3, 1, 12)),
    "constant_of_shape_from_shape": lambda: (one_input(
        [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("ConstantOfShape", ["s"], ["c"],
         value=numpy_helper.from_array(np.array([0.5], dtype=np.float32))), helper.make_node("Add", ["x", "c"], ["y"])],
        [], [1, 3, 4]), (1, 3, 4)),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_shapes_static_and_execution_matches_onnxruntime(name):
    proto, expected_shape = CASES[name]()
    model = codesign.load(proto)
    for node in model.nodes:
        for out in node.output:
            assert model.shape(out) is not None, (name, node.op_type, out)
    assert model.shape(model.outputs[0]) == expected_shape
    in_shape = model.shape(model.inputs[0])
    x = np.random.default_rng(0).normal(size=in_shape).astype(np.float32)
    np.testing.assert_allclose(execute(model, x)[model.outputs[0]], ort_run(proto, x), rtol=0, atol=0)


@pytest.mark.parametrize("opset", [6, 7])
def test_old_opset_gemm_and_batchnorm_are_upgraded(opset):
    rng = np.random.default_rng(0)
    attrs = {"broadcast": 1} if opset < 7 else {}
    bn_attrs = {"is_test": 1} if opset < 7 else {}
    nodes = [
        helper.make_node("Gemm", ["x", "W", "B"], ["g"], **attrs),
        helper.make_node("BatchNormalization", ["g", "sc", "bi", "mu", "var"], ["y"], **bn_attrs),
    ]
    inits = [numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n)
             for n, s in [("W", (3, 4)), ("B", (4,)), ("sc", (4,)), ("bi", (4,)), ("mu", (4,))]]  # fmt: skip
    inits.append(numpy_helper.from_array(rng.uniform(0.5, 2, size=4).astype(np.float32), "var"))
    proto = one_input(nodes, inits, [1, 3], opset=opset)
    model = codesign.load(proto)
    from codesign.frontends.door import default_opset

    assert default_opset(model.proto) == (11 if opset < 7 else 7)
    assert model.shape(model.outputs[0]) == (1, 4)
    x = rng.normal(size=(1, 3)).astype(np.float32)
    g = x @ numpy_helper.to_array(inits[0]) + numpy_helper.to_array(inits[1])
    sc, bi, mu, var = (numpy_helper.to_array(t) for t in inits[2:])
    expected = (g - mu) / np.sqrt(var + 1e-5) * sc + bi
    np.testing.assert_allclose(execute(model, x)[model.outputs[0]], expected, rtol=1e-5, atol=1e-5)


ESPCN = ("models", "fastmachinelearning+qonnx", "src", "qonnx", "data", "onnx", "bsd300x3-espcn", "nn_resize")


def test_espcn_float_model_static_shapes_matches_onnxruntime():
    path = shared_path(*ESPCN, "float_model.onnx")
    model = codesign.load(path)
    assert all(model.shape(o) is not None for n in model.nodes for o in n.output)
    assert model.shape(model.outputs[0]) == (1, 3, 256, 256)
    x = np.random.default_rng(0).uniform(0, 1, size=(1, 3, 128, 128)).astype(np.float32)
    np.testing.assert_allclose(execute(model, x)[model.outputs[0]], ort_run(path, x), rtol=1e-5, atol=1e-5)


def test_espcn_quant_model_static_shapes_matches_qonnx():
    """Its graph output is declared with symbolic dims (Quant96_dim_0...): resolved to (1, 3, 256, 256)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    path = shared_path(*ESPCN, "quant_model.onnx")
    model = codesign.load(path)
    assert all(model.shape(o) is not None for n in model.nodes for o in n.output)
    assert model.shape(model.outputs[0]) == (1, 3, 256, 256)
    assert model.dtype(model.outputs[0]).name.startswith(("UINT", "SCALEDINT"))
    x = np.random.default_rng(0).uniform(0, 1, size=(1, 3, 128, 128)).astype(np.float32)
    ref = ModelWrapper(str(path))
    ref.temporary_fix_oldstyle_domain() if hasattr(ref, "temporary_fix_oldstyle_domain") else None
    ref = ref.transform(InferShapes())
    expected = execute_onnx(ref, {ref.graph.input[0].name: x})[ref.graph.output[0].name]
    np.testing.assert_allclose(execute(model, x)[model.outputs[0]], expected, rtol=0, atol=1e-6)


def test_channels_last_window_nodes_get_onnx_defaults():
    """A qonnx channels-last Conv/MaxPool without strides/pads/dilations/group (ONNX lets the original omit
    them; qonnx's wrappers require them): loaded with ONNX's defaults, shapes inferred."""
    from codesign.frontends import load

    cl = "qonnx.custom_op.channels_last"
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), dtype=np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", domain=cl, kernel_shape=[3, 3]),
             helper.make_node("MaxPool", ["c"], ["y"], name="pool", domain=cl, kernel_shape=[2, 2], strides=[2, 2])]  # fmt: skip
    graph = helper.make_graph(nodes, "cl", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 3, 4])], [w])  # fmt: skip
    model = load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    assert model.shape("c") == (1, 6, 6, 4) and model.shape("y") == (1, 3, 3, 4)
    attrs = {a.name: helper.get_attribute_value(a) for a in model.node("conv").attribute}
    assert attrs["pads"] == [0, 0, 0, 0] and attrs["strides"] == [1, 1] and attrs["group"] == 1
