"""Slice/Split of features or channels -> 0/1 MatMul / 1x1 Conv: bit-exact in C-sim; other slices stay refusals."""

from __future__ import annotations

import numpy as np
import pytest
from hls4ml_graphs import Graph, assert_bit_exact, csim, layer_classes
from onnx import helper, numpy_helper

pytest.importorskip("hls4ml")


def _ints(g: Graph, name: str, values: list[int]) -> str:
    g.inits.append(numpy_helper.from_array(np.asarray(values, dtype=np.int64), name))
    return name


def test_split_features_glu_style_bit_exact(tmp_path):
    """x.chunk(2, -1) of a dense output (opset-13 Split with a sizes input), the halves merged again."""
    g = Graph((8,))
    h = g.quant(g.node("MatMul", [g.quant("x", 8, -4), g.weight((8, 12))], name="fc"), 8, -3)
    g.nodes.append(helper.make_node("Split", [h, _ints(g, "sizes", [6, 6])], ["a", "b"], name="chunk", axis=1))
    y = g.node("Add", [g.quant(g.node("Relu", ["a"], name="relu"), 6, -3, signed=False), "b"], name="gate")
    assert_bit_exact(csim(g.model(g.node("MatMul", [y, g.weight((6, 3))], name="out"), (3,)), tmp_path))


def test_slice_conv_channels_bit_exact(tmp_path):
    """A channel slice of a conv tensor (x[:, 1:3]) is a 1x1 conv of ones and zeros."""
    g = Graph((2, 5, 5))
    h = g.node("Conv", [g.quant("x", 8, -4), g.weight((4, 2, 3, 3)), g.bias(4)], name="conv", kernel_shape=[3, 3])
    h = g.quant(h, 8, -3)
    h = g.node("Slice", [h, _ints(g, "st", [1]), _ints(g, "en", [3]), _ints(g, "ax", [1])], name="take")
    assert_bit_exact(csim(g.model(g.node("Flatten", [h], name="flat"), (18,)), tmp_path))


def test_spatial_slices_are_croppings_bit_exact(tmp_path):
    """x[:, :, 1:4, 1:-1] (a UNet crop; Keras' Cropping2D via tf2onnx) -> Pad with negative pads -> Cropping2D."""
    g = Graph((2, 6, 6))
    h = g.node("Conv", [g.quant("x", 8, -4), g.weight((3, 2, 3, 3)), g.bias(3)], name="conv", kernel_shape=[3, 3],
               pads=[1, 1, 1, 1])  # fmt: skip
    h = g.node("Slice", [g.quant(h, 8, -3), _ints(g, "st", [1, 1]), _ints(g, "en", [4, -1]), _ints(g, "ax", [2, 3])],
               name="crop")  # fmt: skip
    assert_bit_exact(csim(g.model(g.node("Flatten", [h], name="flat"), (36,)), tmp_path))
    assert layer_classes(tmp_path)["crop"] == "Cropping2D"


def test_stepped_slice_stays_a_named_refusal():
    from codesign.backends.hls4ml_backend import lower_model
    from codesign.errors import UnsupportedModelError
    from codesign.frontends import load

    g = Graph((2, 6, 6))
    h = g.node("Slice", [g.quant("x", 8, -4), _ints(g, "st", [0]), _ints(g, "en", [6]), _ints(g, "ax", [2]),
                         _ints(g, "sp", [2])], name="stride2")  # fmt: skip
    with pytest.raises(UnsupportedModelError, match="Slice at stride2"):
        lower_model(load(g.model(h, (2, 3, 6))))


def test_a_slice_that_takes_everything_is_dropped():
    """tf2onnx's Conv1DTranspose ends in a Slice whose folded bounds cover the whole tensor: it was refused."""
    from codesign.backends.hls4ml_backend import lower_model
    from codesign.frontends import load

    g = Graph((2, 1, 6))
    h = g.node("Slice", [g.quant("x", 8, -4), _ints(g, "st", [0, 0]), _ints(g, "en", [1, 6]), _ints(g, "ax", [2, 3])],
               name="whole")  # fmt: skip
    lowered = lower_model(load(g.model(g.node("Flatten", [h], name="flat"), (12,))))
    assert not [n for n in lowered.graph.node if n.op_type == "Slice"]
