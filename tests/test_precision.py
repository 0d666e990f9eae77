"""Float models compile faithfully: data-driven per-layer fixed-point types (codesign.passes.precision)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from codesign.cli import app
from codesign.errors import CodesignError
from codesign.frontends import load
from codesign.passes.precision import (
    SYNTHETIC,
    estimated_cost,
    quality,
    run_outputs,
    select_precision,
    uniform_types,
)
from tests.conftest import ROOT, shared_path

EXM = ("models", "fastmachinelearning+example-models", "onnx")
#: Every float model in ../shared that hls4ml can express (three_layer_bn_keras's transposed
#: BatchNorm is normalised on load into the per-feature affine map it means).
FLOAT_MODELS = (
    "two_layer_keras", "two_layer_pytorch", "three_layer_keras", "three_layer_pytorch", "three_layer_bn_keras",
    "dense_big_keras", "conv1d_small_keras", "conv2d_small_keras", "conv2d_small_mp_keras",
)  # fmt: skip


def _model(name: str):
    return load(shared_path(*EXM, f"{name}.onnx"))


def _quants(model) -> list:
    return [n for n in model.graph.node if n.op_type == "Quant"]


def _is_pow2(value) -> bool:
    m, _ = np.frexp(np.asarray(value, dtype=np.float64))
    return bool(np.all(m == 0.5))


def test_jet_tagger_types_meet_top1_and_cost_less_than_uniform32():
    ir = _model("three_layer_keras")
    result = select_precision(ir, target="vu13p")
    info = result.info
    x = info.inputs
    assert (
        list(x) == ir.inputs
        and x[ir.inputs[0]].shape == (1000, 16)
        and info.data_source == SYNTHETIC.format(n=1000, seed=0)
    )
    ref = run_outputs(ir, x)
    q = quality(ref, run_outputs(result.model, x))
    assert q.top1 >= 0.995 and q.top1 == info.quality.top1
    # the types live in the IR: pow2 Quant nodes on every MAC layer's input, weight and bias
    assert set(info.types) == {n.name for n in ir.nodes_of(["MatMul"])}
    assert all(set(t) == {"input", "weight", "bias"} for t in info.types.values())
    assert all(_is_pow2(result.model.constant(n.input[1])) for n in _quants(result.model))
    # the greedy step narrowed layers below the uniform start, unevenly
    widths = {b for layer in info.bits.values() for b in layer.values()}
    assert min(widths) < 12 and len(widths) > 2
    wide = uniform_types(ir, 32, x)
    assert quality(ref, run_outputs(wide, x)).top1 >= 0.995  # the baseline also meets the tolerance
    chosen, baseline = estimated_cost(result.model, "vu13p"), estimated_cost(wide, "vu13p")
    assert chosen["LUT"] < baseline["LUT"] / 2 and chosen["DSP"] < baseline["DSP"] / 2


def test_regression_tolerance_is_met_and_tighter_costs_more_bits():
    ir = _model("two_layer_pytorch")  # 10 float inputs: real MAGIC telescope features, standardised
    raw = np.loadtxt(shared_path("data", "magic", "magic04.data"), delimiter=",", usecols=range(10), max_rows=1000)
    x = ((raw - raw.mean(0)) / raw.std(0)).astype(np.float32)
    ref = run_outputs(ir, x)
    loose = select_precision(ir, x, tolerance=1e-2)
    tight = select_precision(ir, x, tolerance=1e-4)
    for r, tol in ((loose, 1e-2), (tight, 1e-4)):
        assert r.info.criterion.kind == "max_abs_error" and r.info.criterion.value == tol
        assert quality(ref, run_outputs(r.model, x)).max_abs_error <= tol
    total = lambda r: sum(sum(v.values()) for v in r.info.bits.values())
    assert total(tight) > total(loose)
    assert loose.info.data_source == "calibration data (1000 samples)"


def test_refusals_are_one_line_errors():
    quantized = load(ROOT / "examples" / "jet_tagger_mlp.onnx")
    with pytest.raises(CodesignError, match="already quantized"):
        select_precision(quantized)
    with pytest.raises(CodesignError, match="--tolerance must be a positive"):
        select_precision(_model("two_layer_keras"), tolerance=-1.0)


def test_softmax_tables_are_sized_from_the_ir():
    from codesign.backends.hls4ml_backend import activation_tables, lower_model

    chosen = select_precision(_model("three_layer_keras"), target="vu13p").model
    tables = activation_tables(lower_model(chosen))
    (softmax,) = tables.values()
    assert softmax["Implementation"] == "stable" and softmax["inp_norm_t"].endswith(",TRN,SAT>")
    assert softmax["ExpTableSize"] == 2**12  # the 13-bit signed input quantizer indexes it exactly


def test_cli_errors(tmp_path):
    runner = CliRunner()
    out = tmp_path / "p"
    r = runner.invoke(app, ["compile", str(ROOT / "examples" / "jet_tagger_mlp.onnx"), "-t", "vu13p", "-o", str(out),
                            "--calib", str(tmp_path / "none.npy")])  # fmt: skip
    assert r.exit_code == 2 and "no such file" in r.output
    np.save(tmp_path / "x.npy", np.zeros((4, 16), dtype=np.float32))
    r = runner.invoke(app, ["compile", str(ROOT / "examples" / "jet_tagger_mlp.onnx"), "-t", "vu13p", "-o", str(out),
                            "--calib", str(tmp_path / "x.npy")])  # fmt: skip
    assert r.exit_code == 2 and "already quantized" in r.output
    assert not out.exists()


def test_cli_compile_float_model_verifies_against_onnxruntime(tmp_path):
    """The CI end-to-end check: float keras MLP + Sigmoid, hls4ml C-sim vs onnxruntime on --calib."""
    src = shared_path(*EXM, "two_layer_keras.onnx")
    x = np.random.default_rng(7).normal(size=(1000, *load(src).shape(load(src).inputs[0])[1:])).astype(np.float32)
    np.save(tmp_path / "calib.npy", x)
    out = tmp_path / "prj"
    r = CliRunner().invoke(app, ["compile", str(src), "-t", "vu13p", "-o", str(out), "--verify", "--samples", "20",
                                 "--calib", str(tmp_path / "calib.npy"), "--tolerance", "0.01"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "calibration data (1000 samples)" in r.output and "vs the float model (onnxruntime) on 1000" in r.output
    manifest = json.loads((out / "codesign.json").read_text())
    v = manifest["verify_float"]
    assert v["samples"] == 1000 and v["max_abs_error"] <= 0.01
    layers = manifest["precision_selection"]["layers"]
    assert len(layers) == 2 and all("weight" in row["types"] for row in layers.values())


def test_cli_compile_lowers_the_typed_model_not_the_float_one(tmp_path):
    """The chosen types reach hls4ml: the typed model is lowered afresh (the float lowering made for the
    refusal check has no Quant nodes; reused, hls4ml ran its fixed<16,6> default and --verify failed)."""
    import onnx

    src = shared_path(*EXM, "conv1d_small_keras.onnx")
    out = tmp_path / "prj"
    r = CliRunner().invoke(app, ["compile", str(src), "-t", "vu13p", "-o", str(out)])
    assert r.exit_code == 0, r.output
    manifest = json.loads((out / "codesign.json").read_text())
    typed = manifest["precision"]
    lowered = onnx.load(out / "lowered.onnx").graph.node
    macs = [n.name for n in lowered if n.op_type in ("Conv", "MatMul")]
    assert len(macs) == 5 and all(name in typed["layers"] for name in macs), (macs, typed["layers"])
    assert typed["inputs"] and sum(n.op_type == "Quant" for n in lowered) > len(macs)


@pytest.mark.slow
@pytest.mark.parametrize("name", FLOAT_MODELS)
def test_every_float_model_compiles_faithfully(name, tmp_path, monkeypatch):
    """hls4ml C-sim vs onnxruntime on the 1,000 calibration inputs, and cheaper than uniform 32-bit."""
    from codesign.backends.compile import FloatReference, compile_hls4ml

    monkeypatch.setenv("CODESIGN_CSIM_SECONDS", "900")  # all 1,000 however loaded the machine (dense_big: 772)

    ir = _model(name)
    chosen = select_precision(ir, target="vu13p")
    info = chosen.info
    ref = FloatReference(ir, info.inputs, info.to_dict())
    compile_hls4ml(chosen.model, "vu13p", tmp_path / "p", verify=True, samples=10, float_reference=ref)
    v = ref.verify
    assert v["samples"] == 1000
    if info.criterion.kind == "top1":
        assert v["top1_agreement"] >= 0.995, v
    else:
        assert v["max_abs_error"] <= info.criterion.value, v
    wide = uniform_types(ir, 32, info.inputs)
    assert info.criterion.met(quality(run_outputs(ir, info.inputs), run_outputs(wide, info.inputs)), margin=False)
    c, b = estimated_cost(chosen.model, "vu13p"), estimated_cost(wide, "vu13p")
    assert c["LUT+DSP"] < b["LUT+DSP"] and c["DSP"] < b["DSP"]


def test_inspect_ranges_profile_and_plot(tmp_path):
    src = shared_path(*EXM, "three_layer_keras.onnx")
    x = np.random.default_rng(5).uniform(-2, 2, size=(300, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    png = tmp_path / "ranges.png"
    r = CliRunner().invoke(app, ["inspect", str(src), "--ranges", "--calib", str(tmp_path / "x.npy"), "--plot", str(png),
                                 "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    payload = json.loads(r.output)
    assert payload["data"] == "calibration data (300 samples)"
    rows = {(t["kind"], t["tensor"]): t for t in payload["tensors"]}
    inp = rows[("input", "input_1_0")]
    assert inp["min"] == pytest.approx(float(x.min())) and inp["max"] == pytest.approx(float(x.max()))
    out = run_outputs(load(src), x)
    soft = next(t for t in payload["tensors"] if t["layer"] == "Softmax")
    assert soft["max"] == pytest.approx(float(out.max()), rel=1e-6)
    assert {t["kind"] for t in payload["tensors"]} == {"input", "weight", "bias", "accumulator", "activation"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = CliRunner().invoke(app, ["inspect", str(src), "--ranges", "--plot", str(tmp_path / "x.svg")])
    assert r.exit_code == 2 and "use a .png" in r.output


def test_hoisting_quantizers_over_reshapes_keeps_values_exactly():
    from codesign.passes.calibrate import calibrate
    from codesign.passes.precision import hoist_quantizers
    from codesign.passes.quantize import quantize

    ir = _model("conv2d_small_keras")
    x = np.random.default_rng(2).normal(size=(200, *ir.shape(ir.inputs[0])[1:])).astype(np.float32)
    q = quantize(ir, 8, calibration=calibrate(ir, x)).model
    flat = next(n for n in q.graph.node if n.op_type == "Flatten")
    assert q.producer(flat.input[0]).op_type != "Quant"  # before: Relu -> Transpose -> Flatten -> Quant -> Gemm
    hoisted = hoist_quantizers(q.copy())
    flat = next(n for n in hoisted.graph.node if n.op_type == "Flatten")
    chain = hoisted.producer(flat.input[0])
    while chain.op_type in ("Transpose", "Identity"):
        chain = hoisted.producer(chain.input[0])
    assert chain.op_type == "Quant" and hoisted.producer(chain.input[0]).op_type == "Relu"
    np.testing.assert_array_equal(run_outputs(q, x), run_outputs(hoisted, x))
