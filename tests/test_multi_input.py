"""Models with several graph inputs compile and verify: every input is first-class.

Samples are a dict name -> (N, ...) array; synthetic N(0, 1) per input; hls4ml gets one array
per input (channels-last per input) and its own input type per input.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from codesign.backends.reference import as_samples, predict
from codesign.errors import CodesignError
from codesign.frontends import load
from codesign.passes.precision import SelectPrecision, run_outputs, synthetic_inputs
from tests.hls4ml_graphs import Graph, assert_bit_exact, csim

SHARED = Path(__file__).resolve().parents[2] / "shared"
SDP = SHARED / "models/fastmachinelearning+qonnx/src/qonnx/data/onnx/matmul_update/sdp.onnx"


def _float_two_branch():
    """x (8) @ W1 + y (6) @ W2 -> Relu -> @ W3 (5 scores): two inputs, float."""
    g = Graph((8,), seed=3)
    y = g.input("y", (6,))
    a = g.node("MatMul", ["x", g.const(g.rng.normal(size=(8, 4)) / 3, "w")], name="dense_x")
    b = g.node("MatMul", [y, g.const(g.rng.normal(size=(6, 4)) / 3, "w")], name="dense_y")
    h = g.node("Relu", [g.node("Add", [a, b], name="merge")], name="relu")
    out = g.node("MatMul", [h, g.const(g.rng.normal(size=(4, 5)), "w")], name="head")
    return g.model(out, (5,))


def _quant_concat():
    """Power-of-two quantized: Quant(x) (6) and Quant(y) (2x4x4 image, flattened) concatenated -> Dense."""
    g = Graph((6,), seed=5)
    y = g.input("y", (2, 4, 4))
    qx = g.quant("x", bits=6, exp=-3)
    qy = g.quant(g.node("Relu", [g.quant(y, bits=5, exp=-2)], name="relu_y"), bits=5, exp=-2, signed=False)
    flat = g.node("Flatten", [qy], name="flat_y", axis=1)
    cat = g.node("Concat", [qx, flat], name="cat", axis=1)
    out = g.node("MatMul", [cat, g.weight((38, 4))], name="dense")
    out = g.quant(g.node("Add", [out, g.bias(4)], name="bias"), bits=12, exp=-6)
    return g.model(out, (4,))


def test_samples_by_input_name_and_single_arrays_wrapped_once():
    m = load(_float_two_branch())
    x = synthetic_inputs(m, 7, seed=1)
    assert list(x) == ["x", "y"] and x["x"].shape == (7, 8) and x["y"].shape == (7, 6)
    assert x["x"].std() > 0.5 and not np.array_equal(x["x"][:, :6], x["y"])  # one N(0, 1) draw per input
    ref = run_outputs(m, x)
    assert ref.shape == (7, 5)
    assert np.array_equal(ref, np.asarray(predict(m, x), dtype=np.float64))
    with pytest.raises(CodesignError, match="2 inputs .*x, y.*one array per input name"):
        as_samples(m, x["x"])
    with pytest.raises(CodesignError, match="no samples for input.*y"):
        as_samples(m, {"x": x["x"]})
    g = Graph((8,))
    single = load(g.model(g.node("Relu", ["x"]), (8,)))
    assert list(as_samples(single, x["x"])) == ["x"]


def test_two_input_float_model_chooses_types_and_verifies(tmp_path):
    import codesign

    ir = load(_float_two_branch())
    info = SelectPrecision()(ir).info
    assert set(info.inputs) == {"x", "y"} and len(info.inputs["y"]) == 1000
    assert {"dense_x", "dense_y", "head"} <= set(info.types)
    result = codesign.compile(ir, "vu13p", output=tmp_path / "prj", verify=True, samples=30)
    report = result.verify
    # a float model is C-simulated once, on its calibration inputs: vs the typed IR and vs the float model
    assert report["samples"] == 1000 and report["source"] == "calibration" and set(report["input_types"]) == {"x", "y"}
    assert result.manifest["verify_float"]["samples"] == 1000
    assert report["max_abs_diff"] < 0.05 * report["reference_peak"], report
    assert result.manifest["verify_float"]["top1_agreement"] >= 0.995
    assert result.manifest["verdict"]["passed"] is True


def test_two_input_float_model_takes_calibration_by_input_name(tmp_path):
    from codesign.backends.compile import select_float_precision
    from codesign.backends.targets import get_target

    ir = load(_float_two_branch())
    rng = np.random.default_rng(4)
    calib = {"x": rng.normal(size=(60, 8)).astype(np.float32), "y": rng.uniform(-2, 2, (60, 6)).astype(np.float32)}
    _, ref = select_float_precision(ir, get_target("vu13p"), calib)
    assert np.array_equal(ref.inputs["y"], calib["y"]) and "calibration data (60 samples)" in ref.selection["data"]


def test_two_input_power_of_two_model_is_bit_exact_per_input_types(tmp_path):
    report = csim(_quant_concat(), tmp_path, samples=40)
    assert_bit_exact(report)
    assert report["input_types"] == {"x": "fixed<16,5>", "y": "fixed<15,5>"}  # each input its own type


def test_cli_calib_npz_one_array_per_input(tmp_path):
    """``--calib X.npz`` with one array per input name: what a multi-input float model is typed on."""
    import subprocess
    import sys

    import onnx

    path = tmp_path / "two.onnx"
    onnx.save(_float_two_branch(), path)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", x=rng.normal(size=(50, 8)), y=rng.normal(size=(50, 6)))
    cmd = [sys.executable, "-m", "codesign.cli", "compile", str(path), "--target", "vu13p", "--calib",
           str(tmp_path / "calib.npz"), "-o", str(tmp_path / "prj")]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = json.loads((tmp_path / "prj" / "codesign.json").read_text())
    assert manifest["precision_selection"]["data"] == "calibration data (50 samples)"


@pytest.mark.skipif(not SDP.is_file(), reason="../shared not present")
def test_sdp_sequence_first_inputs_are_refused_in_one_line(tmp_path):
    """sdp.onnx's inputs are (64, 1, 128): sequence-first, no batch axis of 1; refused before any type search."""
    from codesign.backends.compile import compile_hls4ml

    with pytest.raises(CodesignError, match=r"input onnx::Reshape_0 has leading dimension 64, not a batch of 1"):
        compile_hls4ml(load(SDP), "vu13p", tmp_path / "prj", verify=True)


def test_layer_trace_feeds_every_input(tmp_path):
    """``first_divergence`` (hls4ml trace vs the lowered IR's tensors) runs on a two-input model: all layers match."""
    from codesign.backends import hls4ml_backend as hb
    from codesign.backends.reference import take
    from codesign.backends.targets import get_target
    from codesign.backends.verify import first_divergence, verify_inputs

    ir = load(_quant_concat())
    build = hb.convert(ir, get_target("vu13p"), hb.Hls4mlOptions(), tmp_path / "prj")
    hb.write(build)
    hb.compile_csim(build)
    x, _ = verify_inputs(ir, build, 4)
    found = first_divergence(ir, build, take(x, [0, 2]))
    assert found["layer"] is None and found["note"].endswith(
        "layers matched the IR exactly; the difference arises after them"
    )
    assert found["note"].startswith("6 layers"), found  # every traced layer of both branches
