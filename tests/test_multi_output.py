"""Models with several graph outputs verify: every output is C-simulated and compared with the reference."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from codesign.backends.verify import compare, compare_outputs
from tests.hls4ml_graphs import Graph, assert_bit_exact, csim


def _two_heads():
    """Power-of-two quantized trunk -> a 5-score head and a 3-value regression head (two graph outputs)."""
    g = Graph((8,), seed=7)
    h = g.quant(g.node("Relu", [g.node("MatMul", [g.quant("x", 8, -4), g.weight((8, 6))], name="trunk")],
                       name="relu"), 8, -3)  # fmt: skip
    scores = g.quant(g.node("MatMul", [h, g.weight((6, 5))], name="classes"), 12, -6)
    values = g.quant(g.node("MatMul", [h, g.weight((6, 3))], name="regress"), 12, -6)
    proto = g.model(scores, (5,))
    proto.graph.output.append(helper.make_tensor_value_info(values, TensorProto.FLOAT, [1, 3]))
    return proto


def test_reports_pool_every_output():
    """Shares pooled by size, the worst diff, the lowest top-1 of the class-score outputs, mismatches merged."""
    ref = {"a": np.array([[1.0, 2.0, 0.0], [3.0, 1.0, 0.0]]), "b": np.array([[0.5], [0.25]])}
    got = {"a": np.array([[1.0, 2.0, 0.0], [1.0, 3.0, 0.0]]), "b": np.array([[0.5], [0.5]])}
    report = compare_outputs(ref, got, {})
    assert report.outputs == 8 and report.bit_exact_share == pytest.approx(5 / 8)
    assert report.max_abs_diff == 2.0 and report.argmax_agreement == 0.5 and report.mismatched == [1]
    assert compare_outputs({"a": ref["a"]}, {"a": got["a"]}, {}) == compare(ref["a"], got["a"], {})


@pytest.mark.slow
def test_two_output_model_verifies_bit_exact(tmp_path):
    """Both heads C-simulated against the reference: was refused ("--verify supports models with one output")."""
    report = csim(_two_heads(), tmp_path)
    assert_bit_exact(report)
    assert report["outputs"] == 40 * (5 + 3) and report["argmax_agreement"] == 1.0


def test_a_float_model_is_judged_on_every_output():
    """Each output gets its own criterion (top-1 for scores, 1% of the peak for values); all must be met."""
    from codesign.passes.precision import Quality, criterion_all, quality_all

    rng = np.random.default_rng(0)
    ref = {"scores": rng.normal(size=(50, 5)), "values": rng.normal(size=(50, 1)) * 10}
    crit = criterion_all(ref, None)
    assert crit.parts["scores"].kind == "top1" and crit.parts["values"].kind == "max_abs_error"
    good = quality_all(ref, {k: v + 1e-6 for k, v in ref.items()})
    assert crit.met(good, margin=False) and set(good.to_dict()["outputs"]) == {"scores", "values"}
    bad_values = quality_all(ref, [ref["scores"], ref["values"] + 1.0])  # top-1 intact, the regression 1.0 off
    assert not crit.met(bad_values, margin=False) and bad_values.top1 == 1.0
    assert Quality.from_dict(bad_values.to_dict()).to_dict() == bad_values.to_dict()  # what the verdict reads back


def _two_float_heads():
    """A float trunk with a 4-score head and a one-value regression head."""
    rng = np.random.default_rng(3)
    from onnx import numpy_helper

    inits = [numpy_helper.from_array(rng.normal(size=s).astype(np.float32) * 0.5, n)
             for n, s in (("w0", (8, 16)), ("w1", (16, 4)), ("w2", (16, 1)))]  # fmt: skip
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["h"], name="trunk"), helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w1"], ["scores"], name="classes"),
             helper.make_node("MatMul", ["r", "w2"], ["values"], name="regress")]  # fmt: skip
    graph = helper.make_graph(nodes, "heads", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 4]),
                               helper.make_tensor_value_info("values", TensorProto.FLOAT, [1, 1])], inits)  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_float_two_head_model_compiles_with_both_heads_verified(tmp_path):
    pytest.importorskip("hls4ml")
    import codesign

    result = codesign.compile(codesign.load(_two_float_heads()), "vu13p", output=tmp_path / "prj", verify=True)
    checked = result.manifest["verify_float"]["outputs"]
    assert set(checked) == {"scores", "values"} and checked["scores"]["top1_agreement"] >= 0.995
    peak = result.manifest["precision_selection"]["criterion"]
    assert "scores: top-1" in peak and "values: max abs error" in peak
    assert result.manifest["verdict"]["passed"] is True
