"""Conv candidates of the architecture search compile to hls4ml and C-simulate bit-exact.

Conv2d/conv1d 'same' padding, ReLU, max pooling, residual adds, flatten and dense, all at
6-bit power-of-two quantization: every output of g++'s C-simulation must equal the IR's
reference execution, bit for bit, with the biases the search emits and with float biases
off every grid (the types from ``codesign.backends.precision`` must make both exact).
"""

from __future__ import annotations

import numpy as np
import pytest

from codesign.backends import hls4ml_backend as hb
from codesign.backends.compile import compile_hls4ml
from codesign.backends.precision import Fixed, cell_preserved, derive, nudge_bias, quant_type, relu_type
from codesign.search.genome import Genome, build_ir, random_params

pytest.importorskip("hls4ml")


def _genome(
    nd: int, shape: tuple[int, ...], widths=(4, 4, 8), kernels=(3, 3, 0), pools=("max", "none", "none")
) -> Genome:
    """conv k + pool, conv k with a residual add, dense, 10 classes: 6-bit, ReLU."""
    return Genome(
        widths=widths, kernels=kernels, skips=(False, True, False), pools=pools, activations=("relu",) * 3,
        norms=("none",) * 3, bits=6, kinds=(f"conv{nd}d", f"conv{nd}d", "dense"), input_shape=shape,
    )  # fmt: skip


def _ir(genome: Genome, seed: int = 1, float_biases: bool = False):
    n = int(np.prod(genome.input_shape))
    params = random_params(genome, n, 10, seed=seed)
    ir = build_ir(genome, n, 10, params)
    if float_biases:  # nn.Linear-style float biases, on no fixed-point grid
        for i in range(genome.depth + 1):
            ir.set_initializer(f"b{i}", np.asarray(params[f"b{i}"], dtype=np.float32))
        assert all(exact_off_grid(ir.initializer(f"b{i}")) for i in range(genome.depth + 1))
    return ir


def exact_off_grid(b: np.ndarray) -> bool:
    """Some bias value needs more than 16 fractional bits (so no accumulator grid holds it)."""
    scaled = np.asarray(b, dtype=np.float64) * 2.0**16
    return bool(np.any(scaled != np.round(scaled)))


def _assert_bit_exact(result) -> None:
    v = result.verify
    assert v["max_abs_diff"] == 0.0, v
    assert v["bit_exact_share"] == 1.0 and v["bit_exact"] is True
    assert v["argmax_agreement"] == 1.0


# ------------------------------------------------------------------ C-simulation (g++), CI-sized
def test_conv2d_pool_residual_genome_is_bit_exact(tmp_path):
    """(1, 8, 8): conv k3 + max pool, conv k3 + residual, dense; the IR exactly as the search builds it."""
    ir = _ir(_genome(2, (1, 8, 8)))
    result = compile_hls4ml(ir, "vu13p", tmp_path / "c2d", verify=True, samples=64)
    _assert_bit_exact(result)
    classes = {row["class"] for row in result.manifest["hls4ml"]["layers"]}
    assert {"Conv2D", "Pooling2D", "Merge", "Dense"} <= classes


def test_conv1d_float_bias_genome_is_bit_exact(tmp_path):
    """(2, 12): conv1d k5 + average pool, conv1d k3 + residual + max pool, dense, float biases on no grid."""
    genome = _genome(1, (2, 12), widths=(4, 4, 6), kernels=(5, 3, 0), pools=("avg", "max", "none"))
    ir = _ir(genome, seed=3, float_biases=True)
    result = compile_hls4ml(ir, "vu13p", tmp_path / "c1d", verify=True, samples=64)
    _assert_bit_exact(result)
    classes = {row["class"] for row in result.manifest["hls4ml"]["layers"]}
    # hls4ml 1.3's own 1-D pool handler fails on every model; the average pool is a depthwise conv
    assert {"Conv1D", "Pooling1D", "Merge"} <= classes and "DepthwiseConv1D" in classes
    layers = result.manifest["precision"]["layers"]
    # conv1 -> ReLU -> Add -> MaxPool -> Quant: one guard bit; the output layer (and conv0, which
    # feeds the averaging): their float biases exactly
    width = {name: int(t["accum"].split("<")[1].split(",")[0]) for name, t in layers.items() if "accum" in t}
    assert width["conv1_Conv"] < 20 and width["mm3_MatMul"] > 30 and width["conv0_Conv"] > 30


# ------------------------------------------------------------------ the types (no compiler)
def test_relu_outputs_get_exact_types_not_hls4ml_default():
    """A ReLU not followed by its own Quant (here: a residual Add) keeps its input's bits; hls4ml's
    default fixed<16,6> truncated accumulators with > 10 fractional bits (the conv mismatch)."""
    lowered = hb.lower_model(_ir(_genome(2, (1, 8, 8), widths=(8, 8, 16))))
    prec = derive(lowered)
    relu = {n.name: n for n in lowered.nodes_of(["Relu"])}
    typed = {name for name, lp in prec.layers.items() if lp.op == "Relu"}
    # act1 feeds the residual Add; act0 (max pool: the search quantizes before pooling) and act2 are
    # fused with their Quant by hls4ml
    assert typed == {"act1_Relu"}
    for name in typed:
        src = prec.tensors[relu[name].input[0]]
        assert prec.layers[name].types["result"] == relu_type(src)
        assert prec.layers[name].types["result"].frac == src.frac
    assert prec.layers["act1_Relu"].types["result"].frac > Fixed(16, 6).frac  # the default would truncate
    cfg = hb.hls_config(lowered, prec, hb.Hls4mlOptions())
    assert (
        cfg["LayerName"]["act1_Relu"]["Precision"]["result"]
        == relu_type(prec.tensors[relu["act1_Relu"].input[0]]).hls()
    )
    assert relu_type(Fixed(13, 5)) == Fixed(12, 4, False)


def test_float_bias_nudged_into_its_cell_only_where_a_quant_follows():
    lowered = hb.lower_model(_ir(_genome(2, (1, 8, 8)), float_biases=True))
    prec = derive(lowered)
    conv = lowered.nodes_of(["Conv"])[0]
    grid = prec.tensors[conv.input[0]].frac + quant_type(lowered, lowered.producer(conv.input[1])).frac
    assert cell_preserved(lowered, conv.output[0], grid, prec.tensors)  # -> ReLU -> MaxPool -> Quant
    assert not cell_preserved(lowered, lowered.outputs[0], grid, prec.tensors)  # a model output
    b = lowered.initializer(conv.input[2])
    nudged = prec.constants[conv.input[2]]
    lo, hi = np.floor(b * 2.0**grid), np.floor(b * 2.0**grid) + 1
    assert np.all((nudged * 2.0**grid > lo) & (nudged * 2.0**grid < hi))  # strictly inside b's cell
    assert prec.layers[conv.name].types["bias"].frac == grid + 1
    out_add = lowered.producer(lowered.outputs[0])
    assert not any(name in prec.constants for name in out_add.input)  # the output bias is typed exactly
    np.testing.assert_array_equal(nudge_bias(np.array([0.25, 0.3]), 2), np.array([0.25, 0.375], dtype=np.float32))


def test_conv1d_residual_lowers_to_channels_last_without_transposes():
    """qonnx's MoveChanFirstDownstream looped forever on 1-D residual adds ((0, 2, 1) is its own inverse)."""
    lowered = hb.lower_model(_ir(_genome(1, (2, 12), pools=("max", "max", "none"))))
    ops = [n.op_type for n in lowered.graph.node if n.op_type != "Quant"]
    assert "Transpose" not in ops and ops.count("Conv") == 2 and ops.count("MaxPool") == 2
    assert lowered.shape(lowered.inputs[0]) == (1, 12, 2)


def test_average_pool_becomes_a_typed_depthwise_conv():
    """qonnx has no channels-last AveragePool: 2x2 mean = depthwise conv with weights 1/4 (exact), typed from the IR."""
    lowered = hb.lower_model(_ir(_genome(2, (1, 8, 8), pools=("avg", "avg", "none"))))
    assert not lowered.nodes_of(["AveragePool"])
    pools = [n for n in lowered.nodes_of(["Conv"]) if n.name.startswith("pool")]
    assert len(pools) == 2 and all(next(a.i for a in n.attribute if a.name == "group") == 4 for n in pools)
    assert np.all(lowered.initializer(pools[0].input[1]) == 0.25)
    prec = derive(lowered)
    types = prec.layers[pools[0].name].types
    assert types["weight"] == Fixed(2, 0)  # 0.25 exactly, not 16 bits
    assert types["accum"].frac == prec.tensors[pools[0].input[0]].frac + 2  # the mean keeps every bit


# ------------------------------------------------------------------ the variants of the original report
@pytest.mark.slow
@pytest.mark.parametrize("float_biases", [False, True])
def test_mnist_sized_conv_genome_is_bit_exact(tmp_path, float_biases):
    """(1, 28, 28): conv k3 c8 + pool, conv k5 c8 + pool, dense 16 (~60 s of g++ each)."""
    genome = _genome(2, (1, 28, 28), widths=(8, 8, 16), kernels=(3, 5, 0), pools=("max", "max", "none"))
    result = compile_hls4ml(_ir(genome, float_biases=float_biases), "vu13p", tmp_path / "m", verify=True, samples=30)
    _assert_bit_exact(result)
