"""ConvTranspose with kernel == stride -> per-phase 1x1 Conv + nearest upsampling + 0/1 mask (backends/decompose.py)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from hls4ml_graphs import Graph, assert_bit_exact, csim
from onnx import TensorProto, helper, numpy_helper

from codesign.backends.decompose import ConvTransposeAsPhases
from codesign.backends.reference import execute
from codesign.frontends import load


def _deconv(spatial: tuple[int, ...], stride: int, bias: bool, pads: int = 0):
    rng = np.random.default_rng(0)
    w = (rng.integers(-8, 8, size=(3, 2, *[stride] * len(spatial))) / 8).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w")] + (
        [numpy_helper.from_array(np.array([0.5, -1, 0.25], np.float32)[:2], "b")] if bias else []
    )
    node = helper.make_node("ConvTranspose", ["x", "w", *(["b"] if bias else [])], ["y"], name="up",
                            strides=[stride] * len(spatial), pads=[pads] * (2 * len(spatial)))  # fmt: skip
    out = [(d - 1) * stride - 2 * pads + stride for d in spatial]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, *spatial])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, *out])], inits)  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("spatial,stride,bias", [((3, 4), 2, True), ((5,), 3, False), ((2, 3), 3, True)])
def test_phases_equal_onnxruntime_exactly(spatial, stride, bias):
    proto = _deconv(spatial, stride, bias)
    x = (np.random.default_rng(1).integers(-32, 32, size=(1, 3, *spatial)) / 4).astype(np.float32)
    expected = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[
        0
    ]
    result = ConvTransposeAsPhases().call(load(proto))
    assert result.modified and "ConvTranspose" not in {n.op_type for n in result.model.nodes}
    np.testing.assert_array_equal(execute(result.model, x)[result.model.outputs[0]], expected)


def test_overlapping_kernels_are_left_for_a_named_refusal():
    assert not ConvTransposeAsPhases().call(load(_deconv((3, 3), 2, False, pads=1))).modified


def test_unet_style_upsampling_csim_bit_exact(tmp_path):
    pytest.importorskip("hls4ml")
    g = Graph((4, 3, 3))
    w = g.const((g.rng.integers(-8, 8, size=(4, 3, 2, 2)) / 8).astype(np.float32))
    y = g.node("ConvTranspose", [g.quant("x", 6, -3), w], name="up", strides=[2, 2], kernel_shape=[2, 2])
    report = csim(g.model(g.quant(y, 12, -6), (3, 6, 6)), tmp_path)
    assert_bit_exact(report)
