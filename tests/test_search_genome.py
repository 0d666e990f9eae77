"""Genome -> QONNX IR (built directly) and -> torch: golden BOPs, qonnx agreement, bit-exact execution."""

from __future__ import annotations

import numpy as np
import pytest

from codesign.backends.reference import predict
from codesign.ir.validate import validate
from codesign.passes.cost import cost_report
from codesign.search.genome import Genome, build_ir, pow2_scale, random_params, to_torch

BASELINE = Genome((64, 32, 32), ("relu",) * 3, ("none",) * 3, bits=8)


def _dense_params(genome: Genome, n_in: int, n_out: int) -> dict:
    """Parameters with no weight that quantizes to zero (so BOPs are not sparsity-discounted)."""
    p = random_params(genome, n_in, n_out, seed=1)
    for i in range(genome.depth + 1):
        w = p[f"w{i}"]
        p[f"w{i}"] = np.where(np.abs(w) < 0.05, 0.05, w).astype(np.float32)
        p[f"ws{i}"] = np.float32(pow2_scale(np.abs(p[f"w{i}"]).max(), genome.bits, True))
    return p


def test_baseline_bops_golden():
    # 10-64-32-32-2 at 8x8 bits: MACs = 640 + 2048 + 1024 + 64 = 3776, BOPs = 3776 * 64
    ir = build_ir(BASELINE, 10, 2, _dense_params(BASELINE, 10, 2))
    validate(ir)
    t = cost_report(ir).totals
    assert t["macs"] == 3776 and t["bops"] == 3776 * 64
    assert t["params"] == 3776 + 64 + 32 + 32 + 2
    mm = [layer for layer in cost_report(ir).layers if layer.op == "MatMul"]
    assert [layer.act_dtype for layer in mm] == ["SCALEDINT<8>"] * 4 and [layer.weight_dtype for layer in mm] == [
        "SCALEDINT<8>"
    ] * 4


def test_bits_scale_bops_and_match_qonnx(tmp_path):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.inference_cost import inference_cost

    from codesign.ir.io import save_model

    g = Genome((16, 8), ("tanh", "relu"), ("batch", "layer"), bits=4)
    ir = build_ir(g, 10, 3, _dense_params(g, 10, 3))
    assert cost_report(ir).totals["bops"] == (160 + 128 + 24) * 16
    path = save_model(ir, tmp_path / "c.onnx")
    ref = inference_cost(ModelWrapper(str(path)), discount_sparsity=True, output_json=None)
    ref = ref.get("total_cost", ref)
    assert ref["total_bops"] == cost_report(ir).totals["bops"]


@pytest.mark.parametrize(
    "genome",
    [
        Genome((8, 4), ("relu", "sigmoid"), ("none", "batch"), bits=6),
        Genome((12,), ("gelu",), ("layer",), bits=8),
        Genome((5, 7, 3), ("tanh", "leaky_relu", "identity"), ("batch", "none", "layer"), bits=4),
    ],
)
def test_torch_and_ir_agree_bit_exactly(genome):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    net = to_torch(genome, 6, 3)
    net.train()
    with torch.no_grad():  # a few training-mode passes: BN running stats and activation ranges move
        for _ in range(3):
            net(torch.as_tensor(rng.normal(size=(64, 6)).astype(np.float32)))
    net.eval()
    params = net.export_params()
    x = rng.normal(size=(200, 6)).astype(np.float32) * 2
    with torch.no_grad():
        expected = net(torch.as_tensor(x)).numpy()
    ir = build_ir(genome, 6, 3, params)
    got = predict(ir, x)
    assert got.shape == (200, 3)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)
    # and a round trip through the Params dict changes nothing
    again = to_torch(genome, 6, 3, params).eval()
    with torch.no_grad():
        np.testing.assert_array_equal(again(torch.as_tensor(x)).numpy(), expected)


def test_quantized_values_are_on_the_grid():
    g = Genome((8,), ("relu",), ("none",), bits=3)
    ir = build_ir(g, 4, 2)
    w = ir.constant("w0_q")
    step = float(ir.initializer("w0_q_scale"))
    ints = w / step
    assert np.allclose(ints, np.round(ints)) and np.abs(ints).max() <= 3  # narrow signed 3-bit: -3..3


# ----------------------------------------------------------------------------- conv blocks

CONV2D = Genome(
    (4, 4, 8, 6), ("relu", "gelu", "leaky_relu", "tanh"), ("batch", "layer", "none", "layer"), bits=6,
    kinds=("conv2d", "conv2d", "conv2d", "dense"), kernels=(3, 1, 5, 0), skips=(False, True, False, False),
    pools=("max", "none", "avg", "none"), input_shape=(1, 12, 12),
)  # fmt: skip
CONV1D = Genome(
    (3, 3, 5), ("sigmoid", "relu", "identity"), ("layer", "batch", "none"), bits=8,
    kinds=("conv1d", "conv1d", "dense"), kernels=(5, 3, 0), skips=(False, True, False), pools=("avg", "max", "none"),
    input_shape=(2, 16),
)  # fmt: skip


ATTENTION = Genome(
    (4, 3, 6), ("relu", "gelu", "tanh"), ("batch", "layer", "none"), bits=8,
    kinds=("conv2d", "conv_attention", "dense"), kernels=(3, 1, 0), skips=(False, True, False), pools=("max", "avg", "none"),
    input_shape=(1, 8, 8),
)  # fmt: skip


def _conv_dense_params(genome: Genome, n_in: int, n_out: int) -> dict:
    p = random_params(genome, n_in, n_out, seed=3)
    for name in [k for k in p if k.startswith("w") and not k.startswith("ws")]:
        p[name] = np.where(np.abs(p[name]) < 0.05, 0.05, p[name]).astype(np.float32)
        p["ws" + name[1:]] = np.float32(pow2_scale(np.abs(p[name]).max(), genome.bits, True))
    return p


def test_conv_macs_golden_and_match_qonnx(tmp_path):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.inference_cost import inference_cost

    from codesign.ir.io import save_model

    # conv0 1->4 k3 on 12x12: 5184; conv1 4->4 k1 on 6x6 (after max pool): 576; conv2 4->8 k5 on 6x6: 28800;
    # flatten 8x3x3 (after avg pool) = 72 -> 6: 432; 6 -> 3: 18
    ir = build_ir(CONV2D, 144, 3, _conv_dense_params(CONV2D, 144, 3))
    validate(ir)
    t = cost_report(ir).totals
    assert t["macs"] == 5184 + 576 + 28800 + 432 + 18 and t["bops"] == t["macs"] * 36
    assert [n.op_type for n in ir.graph.node].count("Conv") == 3
    path = save_model(ir, tmp_path / "c.onnx")
    ref = inference_cost(ModelWrapper(str(path)), discount_sparsity=True, output_json=None)
    ref = ref.get("total_cost", ref)
    assert ref["total_macs"] == t["macs"] and ref["total_bops"] == t["bops"]


def test_conv_attention_macs_golden_and_match_qonnx(tmp_path):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.inference_cost import inference_cost

    from codesign.ir.io import save_model

    # conv0 1->4 k3 on 8x8: 2304; max pool -> 4x4x4 (16 positions, hidden 3): q/k/v 1x1 convs 3 x 4*3*16 = 576,
    # q^T k 16*16*3 = 768, att v 16*16*3 = 768, projection 3->4: 192; avg pool -> 4x2x2 = 16 -> 6: 96; 6 -> 3: 18
    ir = build_ir(ATTENTION, 64, 3, _conv_dense_params(ATTENTION, 64, 3))
    validate(ir)
    t = cost_report(ir).totals
    assert t["macs"] == 2304 + 576 + 768 + 768 + 192 + 96 + 18
    ops = [n.op_type for n in ir.graph.node]
    assert ops.count("Conv") == 5 and ops.count("Softmax") == 1 and ops.count("MatMul") == 4
    path = save_model(ir, tmp_path / "a.onnx")
    ref = inference_cost(ModelWrapper(str(path)), discount_sparsity=True, output_json=None)
    ref = ref.get("total_cost", ref)
    assert ref["total_macs"] == t["macs"] and ref["total_bops"] == t["bops"]


@pytest.mark.parametrize("genome", [CONV2D, CONV1D, ATTENTION], ids=["conv2d", "conv1d", "conv_attention"])
def test_conv_torch_and_ir_agree_bit_exactly(genome):
    torch = pytest.importorskip("torch")
    import math

    n_in = math.prod(genome.input_shape)
    rng = np.random.default_rng(1)
    net = to_torch(genome, n_in, 3)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.as_tensor(rng.normal(size=(32, n_in)).astype(np.float32)))
    net.eval()
    params = net.export_params()
    x = rng.normal(size=(60, n_in)).astype(np.float32) * 2
    with torch.no_grad():
        expected = net(torch.as_tensor(x)).numpy()
    ir = build_ir(genome, n_in, 3, params)
    got = predict(ir, x.reshape(60, *genome.input_shape))
    assert got.shape == (60, 3) and np.abs(expected).max() > 0
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)
    again = to_torch(genome, n_in, 3, params).eval()
    with torch.no_grad():
        np.testing.assert_array_equal(again(torch.as_tensor(x)).numpy(), expected)


@pytest.mark.parametrize("skip", [False, True])
def test_skip_widens_the_activation_quantizer_to_signed(skip):
    g = Genome((1, 1), ("relu", "relu"), ("none", "none"), kinds=("conv1d", "conv1d"), kernels=(3, 3), skips=(skip, True),
               pools=("none", "none"), input_shape=(1, 8))  # fmt: skip
    ir = build_ir(g, 8, 2)
    signed = {
        n.output[0]: next(a.i for a in n.attribute if a.name == "signed") for n in ir.graph.node if n.op_type == "Quant"
    }
    # relu alone is unsigned; relu + the (signed) quantized input is signed, and so is the next residual block
    assert (signed["h0"], signed["h1"]) == ((1, 1) if skip else (0, 0))
