"""Near-tie classifiers: the float verdict keeps its top-1 bar and says how near a tie every flipped sample was."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_path
from helpers import mlp_proto

import codesign
from codesign.backends.verdict import judge_hls4ml
from codesign.frontends import load
from codesign.passes.precision import Criterion, quality


def test_quality_counts_flips_and_their_float_margin():
    ref = np.array([[0.30, 0.29, 0.0], [1.0, 0.0, 0.2], [0.1, 0.5, 0.4]])
    got = np.array([[0.29, 0.30, 0.0], [0.9, 0.1, 0.2], [0.1, 0.4, 0.5]])
    q = quality(ref, got)
    assert q.top1 == pytest.approx(1 / 3) and q.flips == 2 and q.flip_margin == pytest.approx(0.1)
    assert q.describe() == "max abs error 0.1, top-1 agreement 33.33% (2 flipped, float top-2 margin <= 0.1)"
    assert quality(ref, ref).to_dict() == {"max_abs_error": 0.0, "top1_agreement": 1.0}


def test_float_verdict_names_the_flips_but_keeps_the_bar():
    """Ties are not excused: 99.4% fails even when every flip was a near tie."""
    crit = Criterion("top1", 0.995)
    verify = {"max_abs_error": 1e-4, "top1_agreement": 0.994, "top1_flips": 6, "max_flip_margin": 2e-6}
    v = judge_hls4ml(load(mlp_proto()), {}, verify, crit)
    assert not v.passed and v.measured.endswith("top-1 agreement 99.40% (6 flipped, float top-2 margin <= 2e-06)")


def test_one_or_two_flips_in_few_samples_ask_for_more_samples_not_a_verdict():
    """173 C-simulated samples, 1 flip (99.42%): up to 173 more of the 405 calibration inputs are run, and the
    verdict is on all of them; 3 flips, a passed verdict, a non-top-1 criterion or no inputs left: none."""
    from types import SimpleNamespace

    from codesign.backends.compile import FloatReference, _samples_to_settle

    failed, passed = SimpleNamespace(passed=False), SimpleNamespace(passed=True)
    ref = FloatReference(
        None, {"x": np.zeros((405, 2))}, {}, {"samples": 173, "top1_flips": 1}, Criterion("top1", 0.995)
    )
    assert _samples_to_settle(failed, ref) == 173 and _samples_to_settle(passed, ref) == 0
    ref.verify = {"samples": 173, "top1_flips": 2}
    assert _samples_to_settle(failed, ref) == 227  # 2 flips meet 99.5% at 400 samples
    ref.verify = {"samples": 173, "top1_flips": 3}
    assert _samples_to_settle(failed, ref) == 0
    ref.verify, ref.inputs = {"samples": 173, "top1_flips": 1}, {"x": np.zeros((173, 2))}
    assert _samples_to_settle(failed, ref) == 0
    ref.criterion = Criterion("max_abs_error", 0.1)
    assert _samples_to_settle(failed, ref) == 0


@pytest.mark.slow
def test_three_layer_pytorch_verifies_and_its_flips_are_ties(tmp_path):
    """An untrained net (top-2 margins ~3e-3): C-sim top-1 99.8% vs the float model, both flips within 1e-4."""
    path = shared_path("models", "fastmachinelearning+example-models", "onnx", "three_layer_pytorch.onnx")
    result = codesign.compile(path, "vu13p", output=tmp_path / "o", verify=True)
    f = result.manifest["verify_float"]
    assert result.passed and f["samples"] == 1000 and f["top1_agreement"] == 0.998
    assert f["top1_flips"] == 2 and f["max_flip_margin"] < 1e-4
    assert result.verdict_line.endswith(
        f"top-1 agreement 99.80% (2 flipped, float top-2 margin <= {f['max_flip_margin']:.2g})"
    )


def test_scores_within_one_output_step_are_ties_for_a_model_that_cannot_be_exact():
    """A quantized Softmax (step 1/256) off by one code: the reference's top-2 within that step is a tie."""
    from codesign.backends.verify import top1_agreement

    ref = np.array([[26, 25, 3], [40, 10, 2], [30, 29, 1]], dtype=np.float64) / 256
    out = np.array([[25, 26, 3], [40, 10, 2], [29, 31, 1]], dtype=np.float64) / 256  # rows 0 and 2 flipped
    assert top1_agreement(ref, out) == 1 / 3
    assert top1_agreement(ref, out, step=1 / 256) == 1.0
    assert top1_agreement(ref, out * 0 + np.array([0, 0, 1]) / 256, step=1 / 256) == 0.0  # a real flip stays one


def test_the_tie_step_is_the_output_quantizers_through_a_zero_point_shift():
    from onnx import TensorProto, helper, numpy_helper

    from codesign.backends.verify import output_step

    inits = [
        numpy_helper.from_array(np.float32(v), n) for v, n in ((0.0039, "s"), (0.0, "z"), (8.0, "b"), (-128.0, "zp"))
    ]
    nodes = [helper.make_node("Quant", ["x", "s", "z", "b"], ["q"], domain="qonnx.custom_op.general", name="q"),
             helper.make_node("Add", ["q", "zp"], ["y"], name="shift")]  # fmt: skip
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)  # fmt: skip
    model = load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    assert abs(output_step(model, model.outputs[0]) - 0.0039) < 1e-9
