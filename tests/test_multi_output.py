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
