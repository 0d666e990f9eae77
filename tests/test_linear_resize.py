"""Linear Resize/Upsample by 2 -> nearest + depthwise Conv per axis (backends/linear_resize.py)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hls4ml_graphs import Graph, assert_bit_exact, csim, layer_classes
from onnx import TensorProto, helper, numpy_helper

from codesign.backends.linear_resize import LinearResizeAsNearestAndConv
from codesign.backends.reference import execute
from codesign.frontends import load


def _resize(mode: str | None, opset: int, shape: list[int], scales: list[float], op: str = "Resize") -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.array(scales, np.float32), "sc")]
    if op == "Upsample" or opset == 10:
        node = helper.make_node(op, ["x", "sc"], ["y"], mode="linear", name="up")
    else:
        node = helper.make_node("Resize", ["x", "", "sc"], ["y"], mode="linear", name="up",
                                coordinate_transformation_mode=mode)  # fmt: skip
    out = [int(a * b) for a, b in zip(shape, scales)]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)], inits)  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize(
    "mode,opset,shape,scales,op",
    [
        ("half_pixel", 13, [1, 3, 5, 4], [1, 1, 2, 2], "Resize"),
        ("pytorch_half_pixel", 13, [1, 2, 4, 6], [1, 1, 2, 1], "Resize"),
        ("asymmetric", 13, [1, 2, 3, 5], [1, 1, 2, 2], "Resize"),
        (None, 10, [1, 2, 3, 5], [1, 1, 2, 2], "Resize"),
        (None, 9, [1, 2, 3, 5], [1, 1, 2, 2], "Upsample"),
        ("half_pixel", 13, [1, 3, 7], [1, 1, 2], "Resize"),
    ],
)
def test_decomposition_equals_onnxruntime_exactly(mode, opset, shape, scales, op):
    """On fixed-point inputs the nearest + conv + edge form is onnxruntime's linear Resize, bit for bit."""
    proto = _resize(mode, opset, shape, scales, op)
    x = (np.random.default_rng(0).integers(-64, 64, size=shape) / 8).astype(np.float32)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    expected = ort.InferenceSession(proto.SerializeToString(), opts).run(None, {"x": x})[0]
    result = LinearResizeAsNearestAndConv().call(load(proto))
    assert result.modified and "Conv" in {n.op_type for n in result.model.nodes}
    np.testing.assert_array_equal(execute(result.model, x)[result.model.outputs[0]], expected)


def test_align_corners_is_left_for_a_named_refusal():
    proto = _resize("align_corners", 13, [1, 2, 3, 3], [1, 1, 2, 2])
    assert not LinearResizeAsNearestAndConv().call(load(proto)).modified


@pytest.mark.parametrize("spatial", [(6, 5), (7,)], ids=["2d", "1d"])
def test_bilinear_upsampling_csim_bit_exact(tmp_path, spatial):
    pytest.importorskip("hls4ml")
    g = Graph((3, *spatial))
    x = g.quant("x", 6, -3)
    scales = g.const(np.array([1, 1, *[2] * len(spatial)], dtype=np.float32))
    y = g.node("Resize", [x, "", scales], name="up", mode="linear", coordinate_transformation_mode="half_pixel")
    y = g.quant(g.node("Relu", [y], name="relu"), 10, -5)
    report = csim(g.model(y, (3, *[2 * d for d in spatial])), tmp_path)
    assert_bit_exact(report)
    assert layer_classes(tmp_path)["up"] == "Resize"
