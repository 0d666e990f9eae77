"""Flatten/Reshape/Squeeze/Unsqueeze/Transpose and nearest Resize, C-simulated bit-exact."""

from __future__ import annotations

import numpy as np
import pytest
from hls4ml_graphs import Graph, assert_bit_exact, csim

pytest.importorskip("hls4ml")


def test_reshape_family_and_transpose_bit_exact(tmp_path):
    """Conv -> Reshape (channels-first order!) -> Unsqueeze/Squeeze -> Transpose -> Flatten -> Dense."""
    g = Graph((2, 4, 4))
    x = g.quant("x", 6, -3)
    h = g.quant(g.node("Conv", [x, g.weight((3, 2, 3, 3))], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]), 6, -2)
    h = g.node("Reshape", [h, g.const(np.array([1, 3, 16]))], name="to_seq")  # (1, 3, 16), channels-first order
    h = g.node("Unsqueeze", [h, g.const(np.array([2]))], name="unsq")  # (1, 3, 1, 16)
    h = g.node("Squeeze", [h, g.const(np.array([2]))], name="sq")  # (1, 3, 16)
    h = g.node("Transpose", [h], name="swap", perm=[0, 2, 1])  # (1, 16, 3)
    h = g.node("Flatten", [h], name="flat")
    y = g.node("MatMul", [h, g.weight((48, 5))], name="fc")
    for init in g.inits:  # shape tensors are int64
        if init.name.startswith("c") and init.dims in ([3], [1]):
            init.CopyFrom(__import__("onnx").numpy_helper.from_array(
                __import__("onnx").numpy_helper.to_array(init).astype(np.int64), init.name))  # fmt: skip
    assert_bit_exact(csim(g.model(y, (5,)), tmp_path))


def test_nearest_upsampling_bit_exact(tmp_path):
    """Resize (nearest, scales 2x2) between convs, as in super-resolution nets."""
    g = Graph((2, 4, 4))
    x = g.quant("x", 6, -3)
    h = g.quant(g.node("Conv", [x, g.weight((3, 2, 3, 3))], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]), 6, -2)
    h = g.node("Resize", [h, "", g.const(np.array([1.0, 1.0, 2.0, 2.0]))], name="up", mode="nearest")
    y = g.node("Conv", [h, g.weight((1, 3, 3, 3))], name="conv_out", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    assert_bit_exact(csim(g.model(y, (1, 8, 8)), tmp_path))


def test_linear_upsampling_by_three_is_refused_naming_the_node():
    """Linear by 2 is lowered (tests/test_linear_resize.py); other factors stay a named refusal."""
    from codesign.backends import hls4ml_layers
    from codesign.backends.hls4ml_backend import lower_model
    from codesign.backends.precision import derive
    from codesign.errors import UnsupportedModelError
    from codesign.frontends import load

    g = Graph((2, 4, 4))
    h = g.node("Resize", [g.quant("x"), "", g.const(np.array([1.0, 1.0, 3.0, 3.0]))], name="up_lin", mode="linear")
    lowered = lower_model(load(g.model(h, (2, 12, 12))))
    assert lowered.shape(lowered.outputs[0]) == (1, 12, 12, 2)  # the upsampling itself is laid out channels-last
    with pytest.raises(UnsupportedModelError, match="Resize up_lin: mode 'linear'"):
        hls4ml_layers.build(lowered, derive(lowered))


@pytest.mark.slow
def test_flatten_after_conv_in_io_stream_bit_exact(tmp_path):
    """hls4ml's ReshapeStream looked the Reshape's type up under the layer's name ("KeyError: 'flat'": codesign
    names outputs after IR tensors); every io_stream conv model ending in Flatten -> Dense hit it."""
    from hls4ml_graphs import Graph, assert_bit_exact, csim

    g = Graph((2, 6, 6))
    h = g.node("Conv", [g.quant("x", 8, -4), g.weight((2, 2, 3, 3))], name="conv", kernel_shape=[3, 3])
    y = g.node("MatMul", [g.node("Flatten", [h], name="flat"), g.weight((32, 3))], name="fc")
    assert_bit_exact(csim(g.model(y, (3,)), tmp_path, io="stream"))
