"""LayerNorm in hls4ml: spelled out at the door, means as MatMuls, 1/sqrt as one lookup table; float and token-wise."""

from __future__ import annotations

import numpy as np
import pytest
from hls4ml_graphs import Graph, assert_bit_exact, csim, layer_classes

from codesign.frontends import load


def _ln_model(tokens: int | None = None):
    """x (16,) or (tokens, 6) -> MatMul -> LayerNormalization (opset 17) -> Relu -> [Flatten] -> MatMul."""
    rng = np.random.default_rng(0)
    g = Graph((16,) if tokens is None else (tokens, 6))
    h = g.node("MatMul", ["x", g.const(rng.normal(size=(16 if tokens is None else 6, 16)) / 3)], name="fc")
    h = g.node("LayerNormalization", [h, g.const(rng.uniform(0.5, 1.5, 16)), g.const(rng.normal(size=16) / 4)],
               name="ln", axis=-1, epsilon=1e-5)  # fmt: skip
    h = g.node("Relu", [h], name="relu")
    if tokens is not None:
        h = g.node("Flatten", [h], name="flat")
    y = g.node("MatMul", [h, g.const(rng.normal(size=(16 * (tokens or 1), 5)) / 4)], name="out")
    proto = g.model(y, (5,))
    proto.opset_import[0].version = 17
    return proto


def test_layer_normalization_is_spelled_out_with_the_same_values():
    from codesign.backends.reference import ort_run, ort_session, predict

    proto = _ln_model()
    model = load(proto)
    assert "LayerNormalization" not in {n.op_type for n in model.graph.node}
    assert {"ReduceMean", "Sqrt", "Div"} <= {n.op_type for n in model.graph.node}
    x = np.random.default_rng(1).normal(size=(20, 1, 16)).astype(np.float32)
    import onnxruntime as ort

    session = ort_session(proto, ort.SessionOptions())
    want = np.concatenate([ort_run(session, [proto.graph.output[0].name], {"x": xi})[0] for xi in x])
    np.testing.assert_allclose(np.asarray(predict(model, x[:, 0])).reshape(20, 5), want, atol=1e-5)


@pytest.mark.parametrize("tokens", [None, 8])
def test_float_layernorm_verifies_against_the_float_model(tmp_path, tokens):
    """Dense -> LayerNorm -> ReLU -> Dense, per sample and per token: top-1 >= 99.5% vs onnxruntime."""
    pytest.importorskip("hls4ml")
    import codesign

    result = codesign.compile(_ln_model(tokens), "vu13p", output=tmp_path / "prj", verify=True, samples=200)
    assert result.passed, result.verdict_line
    classes = layer_classes(tmp_path)
    assert classes["ln_std"] == "UnaryLUT" and "ln_normalise_reciprocal" not in classes  # 1/sqrt: one table


def test_quantized_centring_and_rsqrt_table_are_bit_exact(tmp_path):
    """x - x.mean(-1) (a MatMul by 1/F, a row of ones, a Sub) and Sqrt -> Reciprocal fused into one table."""
    pytest.importorskip("hls4ml")
    from onnx import numpy_helper

    g = Graph((16,))
    x = g.quant("x", 8, -4)
    g.inits.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), "axes"))
    m = g.node("ReduceMean", [x], name="mean", axes=[-1], keepdims=1)
    c = g.quant(g.node("Sub", [x, m], name="centre"), 10, -5)
    v = g.quant(g.node("MatMul", [c, g.weight((16, 4))], name="fc"), 8, -3)
    v = g.quant(g.node("Abs", [v], name="abs"), 8, -3, signed=False)
    r = g.quant(g.node("Reciprocal", [g.node("Sqrt", [g.node("Add", [v, g.const(0.5)], name="eps")], name="sqrt")],
                       name="rsqrt"), 10, -6, signed=False)  # fmt: skip
    y = g.node("Concat", [c, r], name="both", axis=1)
    assert_bit_exact(csim(g.model(y, (20,)), tmp_path))
    classes = layer_classes(tmp_path)
    assert classes["sqrt"] == "UnaryLUT" and "rsqrt" not in classes and classes["mean"] == "Dense"
