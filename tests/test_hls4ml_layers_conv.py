"""Conv1d/Conv2d (strided, padded), depthwise Conv2d, BatchNorm and pooling, C-simulated bit-exact."""

from __future__ import annotations

import numpy as np
import pytest
from hls4ml_graphs import Graph, assert_bit_exact, csim, layer_classes

pytest.importorskip("hls4ml")


def test_conv2d_depthwise_bn_pools_bit_exact(tmp_path):
    """Conv2d 3x3 pad 1 -> BN (power-of-two affine) -> ReLU -> depthwise 3x3 stride 2 -> max/avg pools -> GAP."""
    g = Graph((3, 8, 8))
    x = g.quant("x", 8, -4)
    h = g.node("Conv", [x, g.weight((4, 3, 3, 3)), g.bias(4)], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    bn = [g.const([1.0, 0.5, 2.0, 0.25]), g.const([0.0, 0.5, -1.0, 0.25]), g.const([0.0] * 4), g.const([1.0] * 4)]
    h = g.node("BatchNormalization", [h, *bn], name="bn", epsilon=0.0)
    h = g.quant(g.node("Relu", [h], name="relu"), 6, -3, signed=False)
    h = g.node("Conv", [h, g.weight((4, 1, 3, 3)), g.bias(4)], name="dw", kernel_shape=[3, 3], group=4,
               strides=[2, 2], pads=[1, 1, 1, 1])  # fmt: skip
    h = g.quant(h, 8, -3)
    h = g.node("MaxPool", [h], name="maxpool", kernel_shape=[2, 2], strides=[1, 1])
    h = g.node("AveragePool", [h], name="avgpool", kernel_shape=[2, 2], strides=[1, 1])  # 3x3 -> 2x2: GAP over 4
    y = g.node("GlobalAveragePool", [h], name="gap")
    report = csim(g.model(y, (4, 1, 1)), tmp_path)
    assert_bit_exact(report)
    classes = layer_classes(tmp_path)
    assert classes["conv"] == "Conv2D" and classes["dw"] == "DepthwiseConv2D"
    assert classes["maxpool"] == "Pooling2D" and classes["gap"] == "GlobalPooling2D"


@pytest.mark.slow
def test_conv1d_strided_and_flatten_dense_bit_exact(tmp_path):
    g = Graph((2, 16))
    x = g.quant("x", 8, -4)
    h = g.node("Conv", [x, g.weight((6, 2, 5)), g.bias(6)], name="conv1d", kernel_shape=[5], strides=[2], pads=[2, 2])
    h = g.quant(g.node("Relu", [h], name="relu"), 6, -3, signed=False)
    h = g.node("MaxPool", [h], name="pool1d", kernel_shape=[2], strides=[2])
    h = g.node("Flatten", [h], name="flatten")
    y = g.node("MatMul", [h, g.weight((24, 3))], name="fc")
    report = csim(g.model(y, (3,)), tmp_path)
    assert_bit_exact(report)
    assert layer_classes(tmp_path)["conv1d"] == "Conv1D"


def test_padded_max_pool_after_relu_bit_exact(tmp_path):
    """PyTorch's MaxPool2d(3, 2, padding=1) after a ReLU: hls4ml padded the ap_ufixed input with its MSB set (the
    largest value, not the most negative: max abs diff 4.0, border windows wrong); zeros are padded first now."""
    g = Graph((3, 7, 7))
    x = g.quant("x", 8, -4)
    h = g.node("Conv", [x, g.weight((4, 3, 3, 3)), g.bias(4)], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    h = g.quant(g.node("Relu", [h], name="relu"), 6, -3, signed=False)
    h = g.node("MaxPool", [h], name="maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    report = csim(g.model(g.node("Flatten", [h], name="flat"), (64,)), tmp_path)
    assert_bit_exact(report)
    assert layer_classes(tmp_path)["maxpool_zero_pad"] == "ZeroPadding2D"


@pytest.mark.slow
def test_padded_max_pool_1d_after_relu_bit_exact(tmp_path):
    g = Graph((2, 9))
    h = g.node("Conv", [g.quant("x", 8, -4), g.weight((3, 2, 3))], name="conv", kernel_shape=[3], pads=[1, 1])
    h = g.quant(g.node("Relu", [h], name="relu"), 6, -3, signed=False)
    h = g.node("MaxPool", [h], name="maxpool", kernel_shape=[3], strides=[2], pads=[1, 1])
    assert_bit_exact(csim(g.model(g.node("Flatten", [h], name="flat"), (15,)), tmp_path))


@pytest.mark.slow
def test_padded_average_pool_counting_the_padding_streams_bit_exact(tmp_path):
    """count_include_pad=1 (PyTorch's default): zeros padded first, then an unpadded average (io_stream pools
    assert on padding); a signed padded MaxPool is refused in io_stream, naming the node."""
    from codesign.errors import CodesignError

    g = Graph((2, 6, 6))
    x = g.quant("x", 8, -4)
    h = g.node("AveragePool", [x], name="avg", kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1],
               count_include_pad=1)  # fmt: skip
    assert_bit_exact(csim(g.model(g.node("Flatten", [h], name="flat"), (32,)), tmp_path / "a", io="stream"))
    g = Graph((2, 6, 6))
    h = g.node("MaxPool", [g.quant("x", 8, -4)], name="maxpool", kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1])
    with pytest.raises(CodesignError, match="MaxPool maxpool.*io_stream pools take no padding"):
        csim(g.model(g.node("Flatten", [h], name="flat"), (18,)), tmp_path / "m", io="stream")


def test_overlapping_max_pool_streams_as_one_hot_taps_bit_exact(tmp_path):
    """hls4ml's streamed 2-D pools assert pool == stride (SqueezeNet's MaxPool(3, 2) aborted the process, so
    such models stayed io_parallel and ran g++ out of memory): in io_stream each axis becomes one-hot depthwise
    taps and Maximum merges, bit-exact; signed unpadded and ReLU-then-padded (PyTorch's ResNet stem)."""
    g = Graph((2, 7, 7))
    y = g.node("MaxPool", [g.quant("x", 8, -4)], name="pool", kernel_shape=[3, 3], strides=[2, 2])
    assert_bit_exact(csim(g.model(g.node("Flatten", [y], name="flat"), (18,)), tmp_path / "a", io="stream"))
    classes = layer_classes(tmp_path / "a")
    assert classes["pool_width_tap2"] == "DepthwiseConv2D" and classes["pool"] == "Merge"
    g = Graph((3, 8, 8))
    h = g.node("Conv", [g.quant("x", 8, -4), g.weight((4, 3, 3, 3)), g.bias(4)], name="conv", kernel_shape=[3, 3],
               pads=[1, 1, 1, 1])  # fmt: skip
    h = g.quant(g.node("Relu", [h], name="relu"), 6, -3, signed=False)
    h = g.node("MaxPool", [h], name="maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    assert_bit_exact(csim(g.model(g.node("Flatten", [h], name="flat"), (64,)), tmp_path / "b", io="stream"))


def test_overlapping_padded_average_pool_is_refused_in_io_stream_naming_the_node():
    """A counted-padding average (zeros padded, then an unpadded pool) with stride != window has no streamed form."""
    from codesign.backends import hls4ml_layers
    from codesign.backends.hls4ml_backend import lower_model
    from codesign.backends.precision import derive
    from codesign.errors import UnsupportedModelError
    from codesign.frontends import load

    g = Graph((2, 7, 7))
    y = g.node("AveragePool", [g.quant("x", 8, -4)], name="pool", kernel_shape=[3, 3], strides=[2, 2],
               pads=[1, 1, 1, 1], count_include_pad=1)  # fmt: skip
    lowered = lower_model(load(g.model(y, (2, 4, 4))))
    hls4ml_layers.build(lowered, derive(lowered))  # io_parallel takes it
    with pytest.raises(UnsupportedModelError, match="AveragePool pool: 3x3 window with stride 2x2: hls4ml's io_stream"):
        hls4ml_layers.build(lowered, derive(lowered), io="stream")


def test_grouped_conv_is_a_block_diagonal_conv_bit_exact(tmp_path):
    """Conv(group=2) (ResNeXt/ShuffleNet; was refused): one ungrouped Conv2D whose off-group weights are zeros,
    quantized weights (a per-tensor and a per-output-channel scale) expanded before their Quant."""
    g = Graph((4, 6, 6))
    h = g.node("Conv", [g.quant("x", 8, -4), g.weight((6, 2, 3, 3))], name="grouped", kernel_shape=[3, 3], group=2)
    h = g.quant(h, 8, -3)
    scales = np.array([0.25, 0.125, 0.5, 0.25], dtype=np.float32).reshape(4, 1, 1, 1)
    w = g.quant_scaled(g.const(np.random.default_rng(1).normal(size=(4, 3, 1, 1))), scales, 4)
    y = g.node("Conv", [h, w], name="grouped_pc", kernel_shape=[1, 1], group=2)
    assert_bit_exact(csim(g.model(g.node("Flatten", [y], name="flat"), (64,)), tmp_path))
    classes = layer_classes(tmp_path)
    assert classes["grouped"] == "Conv2D" and classes["grouped_pc"] == "PointwiseConv2D"


@pytest.mark.slow
def test_zero_padding_then_valid_conv_bit_exact(tmp_path):
    """An explicit Pad (pads as an input, channels-first order) before a valid Conv -> ZeroPadding2D."""
    import numpy as np

    g = Graph((2, 5, 4))
    x = g.quant("x", 6, -3)
    pads = g.const(np.array([0, 0, 1, 2, 0, 0, 2, 1]))  # (N, C, H, W) begins, then ends
    h = g.node("Pad", [x, pads], name="pad", mode="constant")
    g.inits[-1].CopyFrom(__import__("onnx").numpy_helper.from_array(np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64),
                                                                    pads))  # fmt: skip
    y = g.node("Conv", [h, g.weight((3, 2, 3, 3))], name="conv", kernel_shape=[3, 3])
    assert_bit_exact(csim(g.model(y, (3, 6, 5)), tmp_path))
    assert layer_classes(tmp_path)["pad"] == "ZeroPadding2D"


def test_cube_input_and_output_are_laid_out_by_the_layout_pass_not_by_shape(tmp_path):
    """A 3x3x3 tensor has the same shape channels-first and channels-last: verify read the layout from the
    shape and fed hls4ml channels-first data (max diff 12.9 on a 1x1 conv); the layout pass now records it."""
    g = Graph((3, 3, 3))
    y = g.node("Conv", [g.quant("x", 6, -3), g.weight((3, 3, 1, 1)), g.bias(3)], name="mix", kernel_shape=[1, 1])
    assert_bit_exact(csim(g.model(g.quant(y, 8, -3), (3, 3, 3)), tmp_path))
