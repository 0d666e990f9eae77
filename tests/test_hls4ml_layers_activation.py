"""Relu/LeakyRelu/Clip/Sigmoid/Tanh/Softmax/Elu/Selu as codesign-built hls4ml layers, C-simulated."""

from __future__ import annotations

import numpy as np
import pytest
from hls4ml_graphs import Graph, assert_bit_exact, csim, layer_classes

pytest.importorskip("hls4ml")


def test_piecewise_linear_activations_are_bit_exact(tmp_path):
    """Relu, LeakyRelu (alpha 1/8: exact in fixed point), Clip(0, 6) (ReLU6), Clip(-1, 1) (Hardtanh), re-quantized."""
    g = Graph((16,))
    h = g.quant("x", 8, -3)
    h = g.quant(g.node("Relu", [h], name="relu"), 8, -3)
    h = g.quant(g.node("LeakyRelu", [g.node("Sub", [h, g.const(2.0)], name="shift")], name="leaky", alpha=0.125), 8, -3)
    h = g.quant(g.node("Clip", [h, g.const(0.0), g.const(6.0)], name="relu6"), 8, -3)
    y = g.quant(g.node("Clip", [g.node("Sub", [h, g.const(2.0)], name="centre"), g.const(-1.0), g.const(1.0)],
                       name="hardtanh"), 8, -3)  # fmt: skip
    report = csim(g.model(y, (16,)), tmp_path)
    assert_bit_exact(report)
    classes = layer_classes(tmp_path)
    assert classes["leaky"] == "ParametrizedActivation" and "relu6" in classes
    assert classes["hardtanh"] == "HardActivation"


def test_streamed_selu_is_elu_then_gamma_within_one_step(tmp_path):
    """hls4ml's streamed selu casts gamma (1.0507) to the input type: on a 3-fractional-bit input the positive half
    was x, not 1.0507 x (max diff 0.375 = 6 output steps); ELU(alpha) then ApplyAlpha(gamma) is within one step."""
    g = Graph((2, 6, 6))
    h = g.node("Conv", [g.quant("x", 8, -4), g.weight((4, 2, 3, 3)), g.bias(4)], name="conv", kernel_shape=[3, 3],
               pads=[1, 1, 1, 1])  # fmt: skip
    h = g.quant(g.node("Selu", [g.quant(h, 8, -3)], name="selu"), 8, -4)
    report = csim(g.model(g.node("Flatten", [h], name="flat"), (144,)), tmp_path, io="stream", samples=20)
    assert report["max_abs_diff"] <= 2.0**-4, report
    assert layer_classes(tmp_path)["selu_elu"] == "ParametrizedActivation"


def test_thresholded_relu_bit_exact(tmp_path):
    """ThresholdedRelu(alpha) (hls4ml's ONNX frontend has it; codesign refused it): x if x > alpha else 0."""
    g = Graph((16,))
    h = g.quant(g.node("MatMul", [g.quant("x", 8, -4), g.weight((16, 12))], name="fc"), 8, -3)
    h = g.quant(g.node("ThresholdedRelu", [h], name="thr", alpha=0.375), 8, -3, signed=False)
    assert_bit_exact(csim(g.model(g.node("MatMul", [h, g.weight((12, 4))], name="out"), (4,)), tmp_path))
    assert layer_classes(tmp_path)["thr"] == "ParametrizedActivation"


def test_clipped_relus_stream_as_relu_differences_bit_exact(tmp_path):
    """hls4ml has no streamed relu6/relu1 (a MobileNet's g++ build failed in io_stream): there they are
    relu(x) - relu(x - hi), exact, on a conv's stream; a wide conv accumulator is clipped as it is."""
    g = Graph((2, 6, 6))
    h = g.node("Conv", [g.quant("x", 8, -4), g.weight((4, 2, 3, 3)), g.bias(4)], name="conv", kernel_shape=[3, 3],
               pads=[1, 1, 1, 1])  # fmt: skip
    h = g.node("Clip", [g.node("Mul", [h, g.const(4.0)], name="gain"), g.const(0.0), g.const(6.0)], name="relu6")
    h = g.quant(h, 8, -4, signed=False)
    h = g.quant(g.node("Clip", [g.node("Sub", [h, g.const(2.0)], name="centre"), g.const(0.0), g.const(1.0)],
                       name="relu1"), 6, -5, signed=False)  # fmt: skip
    assert_bit_exact(csim(g.model(g.node("Flatten", [h], name="flat"), (144,)), tmp_path, io="stream"))
    classes = layer_classes(tmp_path)
    assert classes["relu6"] == "Merge" and classes["relu6_over"] == "Activation" and classes["relu1"] == "Merge"


@pytest.mark.slow
def test_table_activations_within_tolerance(tmp_path):
    """Sigmoid, Tanh, Elu, Selu, Softmax: hls4ml's lookup tables, within a few table steps of the IR."""
    g = Graph((10,))
    h = g.quant("x", 8, -4)
    h = g.quant(g.node("Sigmoid", [h], name="sig"), 10, -8)
    h = g.quant(g.node("Tanh", [g.node("Sub", [h, g.const(0.5)], name="centre")], name="tanh"), 10, -8)
    h = g.quant(g.node("Elu", [h], name="elu", alpha=1.0), 10, -8)
    h = g.quant(g.node("Selu", [h], name="selu"), 10, -7)
    y = g.node("Softmax", [h], name="softmax", axis=-1)
    report = csim(g.model(y, (10,)), tmp_path)
    assert report["max_abs_diff"] < 0.03, report


def test_table_resolves_the_typed_input():
    """hls4ml's 1024-entry tables step 1/64 over [-8, 8): an input with 8 fractional bits gets 4096 entries, entries
    two bits finer than the result; capped at 2**14 (conv2d_small_mp_keras' Selus: C-sim top-1 99.3 -> 99.6%)."""
    from codesign.backends import hls4ml_layers
    from codesign.backends.hls4ml_backend import lower_model
    from codesign.backends.precision import derive
    from codesign.frontends import load

    g = Graph((10,))
    h = g.quant(g.node("Sigmoid", [g.quant("x", 10, -8)], name="sig"), 10, -8)
    y = g.node("Selu", [g.quant(h, 24, -20)], name="selu")
    lowered = lower_model(load(g.model(y, (10,))))
    config = hls4ml_layers.build(lowered, derive(lowered)).config
    assert config["sig"]["TableSize"] == 4096 and config["selu"]["TableSize"] == 1 << 14
    width, integer = map(int, config["sig"]["Precision"]["table"][6:-1].split(","))
    assert integer == 8 and width - integer >= 10  # at least hls4ml's default 10 fractional bits


def test_unsupported_clip_is_refused_naming_the_node():
    from codesign.backends import hls4ml_layers
    from codesign.backends.hls4ml_backend import lower_model
    from codesign.backends.precision import derive
    from codesign.errors import UnsupportedModelError
    from codesign.frontends import load

    g = Graph((4,))
    y = g.node("Clip", [g.quant("x"), g.const(-2.0), g.const(3.0)], name="odd_clip")
    lowered = lower_model(load(g.model(y, (4,))))
    with pytest.raises(UnsupportedModelError, match="Clip odd_clip: only Clip"):
        hls4ml_layers.build(lowered, derive(lowered))


def test_reduce_mean_pool_and_hard_sigmoid_are_bit_exact(tmp_path):
    """PyTorch's ``x.mean((2, 3))`` (ReduceMean, keepdims 0) -> GlobalAveragePool, and HardSigmoid -> hard_sigmoid."""
    g = Graph((3, 4, 4))
    h = g.node("ReduceMean", [g.quant("x", 8, -4)], name="mean", axes=[2, 3], keepdims=0)
    h = g.quant(h, 10, -6)
    y = g.quant(g.node("HardSigmoid", [h], name="hsig", alpha=0.25, beta=0.5), 10, -8)
    report = csim(g.model(y, (3,)), tmp_path)
    assert_bit_exact(report)
    classes = layer_classes(tmp_path)
    assert classes["mean"] == "GlobalPooling2D" and classes["hsig"] == "HardActivation"


def _coded_softmax_graph() -> Graph:
    """Dense -> non-power-of-two Quant (a QDQ exporter's logits) -> Softmax -> a 1/127 output Quant."""
    g = Graph((16,))
    h = g.quant("x", 8, -4)
    w = g.const(g.rng.normal(0, 0.4, size=(16, 6)), "w")
    logits = g.quant_scaled(g.node("MatMul", [h, w], name="dense"), 0.0423, 8)
    return g, g.quant_scaled(g.node("Softmax", [logits], name="softmax", axis=-1), 1 / 127, 8)


def test_softmax_reads_non_pow2_codes_with_the_scale_in_its_table():
    """A Softmax after a non-power-of-two Quant reads the integer codes; exp_scale = s indexes its table exactly."""
    from codesign.backends import hls4ml_layers
    from codesign.backends.hls4ml_backend import activation_tables, lower_model
    from codesign.backends.precision import derive
    from codesign.frontends import load

    g, y = _coded_softmax_graph()
    lowered = lower_model(load(g.model(y, (6,))))
    layers = {layer["name"]: layer for layer in hls4ml_layers.build(lowered, derive(lowered)).layers}
    quant = lowered.producer(lowered.node("softmax").input[0]).name
    assert layers["softmax"]["inputs"] == [layers[f"{quant}_act"]["outputs"][0]]
    assert layers["softmax"]["exp_scale"] == pytest.approx(0.0423) and f"{quant}_rescale" not in layers
    table = activation_tables(lowered)["softmax"]
    assert table["ExpTableSize"] == 256 and table["inp_norm_t"] == "ufixed<8,8,TRN,SAT>"


@pytest.mark.slow
def test_softmax_on_non_pow2_codes_keeps_top1(tmp_path):
    """QDQ jet taggers: the coded Softmax's C-sim keeps top-1 (was 84-93%) within a few output LSBs."""
    g, y = _coded_softmax_graph()
    report = csim(g.model(y, (6,)), tmp_path, samples=200)
    assert report["argmax_agreement"] >= 0.995 and report["max_abs_diff"] <= 3 / 127, report


def test_prelu_per_channel_after_conv_bit_exact(tmp_path):
    """PReLU's per-channel slopes (power-of-two here) follow the channels-last layout into hls4ml's PReLU."""
    g = Graph((3, 5, 5))
    h = g.node("Conv", [g.quant("x", 6, -3), g.weight((4, 3, 3, 3))], name="conv", kernel_shape=[3, 3], pads=[1] * 4)
    slope = g.const(np.array([0.25, -0.5, 0.125, 1.0]).reshape(4, 1, 1))
    y = g.quant(g.node("PRelu", [g.quant(h, 10, -5), slope], name="prelu"), 12, -7)
    report = csim(g.model(y, (4, 5, 5)), tmp_path)
    assert_bit_exact(report)
    assert layer_classes(tmp_path)["prelu"] == "PReLU"


def test_hardswish_is_hardsigmoid_times_its_input():
    """The decomposition computes onnxruntime's HardSwish (opset 14) exactly."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from codesign.backends.decompose import HardSwishAsHardSigmoidMul
    from codesign.backends.reference import execute
    from codesign.frontends import load

    graph = helper.make_graph([helper.make_node("HardSwish", ["x"], ["y"], name="hs")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])])  # fmt: skip
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    x = np.linspace(-4, 4, 64, dtype=np.float32).reshape(1, 64)
    expected = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[
        0
    ]
    result = HardSwishAsHardSigmoidMul().call(load(proto))
    assert [n.op_type for n in result.model.nodes] == ["HardSigmoid", "Mul"]
    np.testing.assert_allclose(execute(result.model, x)[result.model.outputs[0]], expected, rtol=1e-6, atol=1e-7)
