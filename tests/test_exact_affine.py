"""Float BatchNorm / affine chains before a power-of-two quantizer become exact fixed-point BatchNorms.

Tiny graphs are checked exhaustively: every input the quantized input layer can take
runs through the original and the rewritten IR, and the outputs must be identical. The
TFC models of ../shared are compiled to hls4ml and C-simulated on MNIST (slow).
"""

from __future__ import annotations

import gzip
import itertools

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from codesign.backends.exact_affine import ExactAffineBeforeQuant
from codesign.backends.precision import derive, exact_type
from codesign.backends.reference import predict
from codesign.ir.model import Model
from codesign.ir.quant import QONNX_DOMAIN


# ------------------------------------------------------------------ tiny graph builder
class Graph:
    """Builds a small QONNX graph node by node (float32 initializers, opset 13)."""

    def __init__(self, n_in: int):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n_in, self.k = n_in, 0

    def const(self, value) -> str:
        self.k += 1
        name = f"c{self.k}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def op(self, op: str, inputs: list[str], domain: str = "", **attrs) -> str:
        self.k += 1
        out = f"t{self.k}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{op}_{self.k}", domain=domain, **attrs))
        return out

    def quant(self, x: str, scale: float, bits: int, signed: int = 1, narrow: int = 0, rounding: str = "ROUND") -> str:
        args = [x, self.const(scale), self.const(0.0), self.const(float(bits))]
        return self.op("Quant", args, QONNX_DOMAIN, signed=signed, narrow=narrow, rounding_mode=rounding)

    def bipolar(self, x: str) -> str:
        return self.op("BipolarQuant", [x, self.const(1.0)], QONNX_DOMAIN)

    def bn(self, x: str, gamma, beta, mean, var, eps: float = 1e-5) -> str:
        return self.op("BatchNormalization", [x, *(self.const(v) for v in (gamma, beta, mean, var))], epsilon=eps)

    def model(self, out: str, n_out: int) -> Model:
        graph = helper.make_graph(
            self.nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, self.n_in])],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, n_out])], self.inits,
        )  # fmt: skip
        proto = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QONNX_DOMAIN, 1)]
        )
        from codesign.passes.shapes import infer_shapes

        model = Model(proto)
        infer_shapes(model)
        return model


def _all_inputs(levels: np.ndarray, n_in: int) -> np.ndarray:
    return np.asarray(list(itertools.product(levels, repeat=n_in)), dtype=np.float32)


def _rewritten(model: Model) -> tuple[Model, dict]:
    result = ExactAffineBeforeQuant()(model)
    assert result.modified
    return result.model, result.info


def _exact_bn(model: Model) -> list[onnx.NodeProto]:
    """The rewritten BatchNorms: epsilon 0, mean 0, variance 1, dyadic scale and bias."""
    out = []
    for node in model.nodes_of(["BatchNormalization"]):
        gamma, beta, mean, var = (model.constant(i) for i in node.input[1:])
        assert [a.f for a in node.attribute if a.name == "epsilon"] == [0.0]
        assert np.all(mean == 0) and np.all(var == 1)
        assert exact_type(gamma, 40) is not None and exact_type(beta, 40) is not None
        out.append(node)
    return out


# ------------------------------------------------------------------ exactness of the rewrite
def test_bn_before_quant_is_exact_on_every_input():
    """MatMul (3-bit x 3-bit) -> float BN (negative and zero scales among them) -> 3-bit Quant."""
    rng = np.random.default_rng(0)
    n_in, n_out = 4, 16
    g = Graph(n_in)
    x = g.quant("x", 0.5, 3)
    w = g.quant(g.const(rng.normal(size=(n_in, n_out))), 0.25, 3, narrow=1)
    acc = g.op("MatMul", [x, w])
    gamma = rng.normal(size=n_out).astype(np.float32)
    gamma[:3] = [-1.3, 0.0, -0.2]
    y = g.bn(acc, gamma, rng.normal(size=n_out), rng.normal(size=n_out) * 0.3, rng.uniform(0.2, 2, size=n_out))
    ir = g.model(g.quant(y, 0.5, 3), n_out)
    new, info = _rewritten(ir)
    assert info["exact"] == [ir.nodes_of(["BatchNormalization"])[0].name]
    (bn,) = _exact_bn(new)
    assert np.any(new.constant(bn.input[1]) < 0)  # negative scales stay negative (Quant rounds both ways)
    feeds = _all_inputs(np.arange(-2, 2) * 0.5, n_in)  # the input Quant's whole grid: every reachable accumulator
    before, after = predict(ir, feeds), predict(new, feeds)
    assert len(np.unique(before)) > 4  # the quantizer really switches levels
    np.testing.assert_array_equal(before, after)


def test_float32_ties_follow_the_float_math():
    """fl32(5 * 0.3 + beta) is exactly 2.5 (rounded half to even: 2) where the real value rounds to 3."""
    g = Graph(2)
    x = g.quant("x", 1.0, 4)  # integers -8..7
    gamma = np.float32(0.3)
    p = np.float32(5) * gamma
    beta = np.float32(2.5) - p  # exact (Sterbenz): p + beta == 2.5 in float32
    y = g.bn(x, [gamma, gamma], [beta, beta], [0.0, 0.0], [1.0, 1.0], eps=0.0)
    ir = g.model(g.quant(y, 1.0, 4), 2)
    feeds = _all_inputs(np.arange(-8, 8), 2)
    before = predict(ir, feeds)
    at5 = feeds[:, 0] == 5
    assert np.all(before[at5, 0] == 2.0)  # the IR's float math: a tie, half to even
    assert np.round(5 * np.float64(gamma) + np.float64(beta)) == 3.0  # exact arithmetic would say 3
    new, _ = _rewritten(ir)
    _exact_bn(new)
    np.testing.assert_array_equal(before, predict(new, feeds))


def test_mul_div_sub_chain_with_floor_quant():
    """A per-channel Mul, a Div, a Sub (negative constants too) before a FLOOR quantizer: one exact BN."""
    rng = np.random.default_rng(3)
    n_in, n_out = 3, 8
    g = Graph(n_in)
    x = g.quant("x", 0.25, 4)
    w = g.quant(g.const(rng.normal(size=(n_in, n_out))), 0.5, 3)
    acc = g.op("MatMul", [x, w])
    t = g.op("Mul", [acc, g.const(rng.normal(size=(1, n_out)))])
    t = g.op("Div", [t, g.const(np.float32(0.37))])
    t = g.op("Sub", [g.const(rng.normal(size=n_out)), t])  # c - x: the direction flips again
    ir = g.model(g.quant(t, 0.25, 4, rounding="FLOOR"), n_out)
    new, info = _rewritten(ir)
    assert len(info["exact"]) == 1 and not new.nodes_of(["Mul", "Div", "Sub"])
    _exact_bn(new)
    feeds = _all_inputs(np.arange(-8, 8) * 0.25, n_in)
    np.testing.assert_array_equal(predict(ir, feeds), predict(new, feeds))


def test_bn_relu_unsigned_quant_drops_the_relu():
    """BN -> ReLU -> unsigned Quant (Brevitas QuantReLU): the ReLU is part of the step function."""
    rng = np.random.default_rng(7)
    g = Graph(3)
    acc = g.op("MatMul", [g.quant("x", 0.5, 3), g.quant(g.const(rng.normal(size=(3, 8))), 0.25, 3, narrow=1)])
    y = g.bn(acc, rng.normal(size=8), rng.normal(size=8), rng.normal(size=8), rng.uniform(0.2, 2, size=8))
    ir = g.model(g.quant(g.op("Relu", [y]), 0.25, 3, signed=0), 8)
    new, _ = _rewritten(ir)
    assert not new.nodes_of(["Relu"])
    _exact_bn(new)
    feeds = _all_inputs(np.arange(-4, 4) * 0.5, 3)
    np.testing.assert_array_equal(predict(ir, feeds), predict(new, feeds))


def test_bipolar_threshold_with_negative_scale_negates_the_weight_column():
    """BN -> sign: scale 1 (one grid step) and a grid-point threshold; falling channels get their weights negated."""
    rng = np.random.default_rng(5)
    n_in, n_out = 8, 6
    g = Graph(n_in)
    x = g.bipolar("x")
    w = g.bipolar(g.const(rng.choice([-1.0, 1.0], size=(n_in, n_out)) * rng.uniform(0.1, 1, size=(n_in, n_out))))
    acc = g.op("MatMul", [x, w])
    gamma = np.array([1.2, -0.7, 0.4, -2.0, 0.9, 1.1], dtype=np.float32)
    y = g.bn(acc, gamma, rng.normal(size=n_out), rng.normal(size=n_out), rng.uniform(0.5, 2, size=n_out))
    ir = g.model(g.bipolar(y), n_out)
    new, _ = _rewritten(ir)
    (bn,) = _exact_bn(new)
    assert np.all(new.constant(bn.input[1]) == 1.0)  # hls4ml's x >= -bias/scale compare needs a positive scale
    assert np.all(new.constant(bn.input[2]) == np.round(new.constant(bn.input[2])))  # thresholds on the grid
    (mm,) = new.nodes_of(["MatMul"])
    w_new, w_old = new.constant(mm.input[1]), ir.constant(ir.nodes_of(["MatMul"])[0].input[1])
    np.testing.assert_array_equal(w_new[:, gamma < 0], -w_old[:, gamma < 0])
    np.testing.assert_array_equal(w_new[:, gamma > 0], w_old[:, gamma > 0])
    feeds = _all_inputs(np.array([-1.0, 1.0]), n_in)  # all 256 bipolar inputs
    np.testing.assert_array_equal(predict(ir, feeds), predict(new, feeds))


def test_lowering_types_the_rewritten_bn_exactly():
    """hls4ml gets the BN's scale and bias as exact fixed types (its default fixed<16,6> would round them)."""
    from codesign.backends.hls4ml_backend import lower_model

    rng = np.random.default_rng(0)
    g = Graph(4)
    x = g.quant("x", 0.5, 3)
    acc = g.op("MatMul", [x, g.quant(g.const(rng.normal(size=(4, 8))), 0.25, 3, narrow=1)])
    y = g.bn(acc, rng.normal(size=8), rng.normal(size=8), rng.normal(size=8), rng.uniform(0.2, 2, size=8))
    lowered = lower_model(g.model(g.quant(y, 0.5, 3), 8))
    (bn,) = _exact_bn(lowered)
    types = derive(lowered).layers[bn.name].types
    for key, i in (("scale", 1), ("bias", 2)):
        np.testing.assert_array_equal(types[key].grid(lowered.constant(bn.input[i])), lowered.constant(bn.input[i]))


def test_bias_only_chains_are_left_to_precision():
    """MatMul -> Add(bias) -> ReLU -> Quant is the MAC's own bias (typed in precision.py), not rewritten."""
    g = Graph(2)
    acc = g.op("MatMul", [g.quant("x", 0.5, 3), g.quant(g.const(np.ones((2, 2))), 0.5, 3)])
    ir = g.model(g.quant(g.op("Relu", [g.op("Add", [acc, g.const([0.1, 0.2])])]), 0.5, 3), 2)
    assert not ExactAffineBeforeQuant()(ir).modified


def test_verify_summary_reports_top1_for_classifiers():
    from codesign.backends.verify import compare

    rep = compare(np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([[0.0, 1.0], [0.0, 1.0]]), {})
    assert rep.summary().endswith("top-1 agreement 50.00%")


# ------------------------------------------------------------------ the TFC models, through hls4ml C-simulation
GOLDEN = {"TFC_1W1A": 0.9296, "TFC_1W2A": 0.9474, "TFC_2W2A": 0.9660}


def _mnist() -> tuple[np.ndarray, np.ndarray]:
    from conftest import shared_path

    folder = shared_path("data", "mnist")
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images.astype(np.float32) / 255.0, labels.astype(np.int64)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_tfc_csim_is_exact_on_mnist(name, tmp_path):
    """Every hidden layer bit-exact, the float output affine within 1e-6 (float32 noise), same top-1.

    C-sim outputs equal the rewritten output BN computed exactly (``s * acc + b``, one
    final rounding to float32) from the IR's own last accumulator: the BNN layers carry
    no error at all. The IR's output chain (Sub, Div, Mul, Add in float32) differs from that
    by its own float32 rounding (measured <= 2.4e-7); no fixed-point affine reproduces it.
    """
    pytest.importorskip("hls4ml")
    from conftest import tfc_path
    from qonnx.core.onnx_exec import execute_onnx

    from codesign.backends import hls4ml_backend as hb
    from codesign.backends.targets import get_target
    from codesign.backends.verify import hls4ml_outputs
    from codesign.frontends import load

    ir = load(tfc_path(name))
    images, labels = _mnist()
    build = hb.convert(ir, get_target("vu13p"), hb.Hls4mlOptions(), tmp_path / "prj")
    hb.write(build)
    hb.compile_csim(build)
    n = 500  # (all 10k give the published accuracy too: ~4 min per model, README)
    got = hls4ml_outputs(ir, build, images[:n]).astype(np.float64)
    ref = predict(ir, images[:n]).astype(np.float64)
    assert np.array_equal(ref.argmax(axis=1), got.argmax(axis=1))  # top-1 agreement 100%
    assert np.mean(got.argmax(axis=1) == labels[:n]) == np.mean(ref.argmax(axis=1) == labels[:n])
    # the IR's own float32 error: 1/2 ulp of |acc - c1| <= 65 alone is 1.7e-7 after the scaling
    assert np.abs(got - ref).max() <= 2.0**-20

    low = build.lowered
    tail = low.producer(low.outputs[0])
    assert tail.op_type == "BatchNormalization"
    s, b = (low.constant(i).astype(np.float64) for i in tail.input[1:3])
    for i in range(0, n, 25):  # the last accumulator of the IR: integers (exact in float32)
        x = images[i : i + 1].reshape(low.shape(low.inputs[0]))
        acc = execute_onnx(low.wrapper, {low.inputs[0]: x}, return_full_exec_context=True)[tail.input[0]]
        expected = (acc.astype(np.float64) * s + b).astype(np.float32)
        np.testing.assert_array_equal(got[i : i + 1], expected)


@pytest.mark.slow
def test_bnn_divergence_names_the_narrowed_dense(tmp_path):
    """hls4ml's 1-bit codes (0/1) are read as +-1: the BN+sign layers match, the narrowed Dense is named."""
    pytest.importorskip("hls4ml")
    import json

    from conftest import tfc_path

    import codesign

    narrowed = {"MatMul_24": {"Precision": {"accum": "fixed<4,4>", "result": "fixed<4,4>"}}}
    codesign.compile(tfc_path("TFC_1W1A"), "vu13p", output=tmp_path / "p", verify=True, samples=20,
                     layer_config=narrowed)  # fmt: skip
    d = json.loads((tmp_path / "p" / "codesign.json").read_text())["verify"]["divergence"]
    assert d["layer"] == "MatMul_24" and d["class"] == "Dense" and d["layers_matched_before"] == 4
