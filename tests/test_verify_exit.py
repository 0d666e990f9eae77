"""``--verify`` means something: exit 3 on a measured failure, the first diverging layer named, and the
shipped C-simulation library loads from the final folder."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field

import numpy as np
import pytest
from conftest import ROOT, tfc_path
from typer.testing import CliRunner

import codesign
from codesign.backends import hls4ml_backend as hb
from codesign.backends.verdict import expects_bit_exact, float_tail, judge_hls4ml, judge_rtl
from codesign.backends.verify import reference_outputs
from codesign.cli import app
from codesign.errors import EXIT_VERIFY_FAILED
from codesign.frontends import load

pytest.importorskip("hls4ml")

EXAMPLE = ROOT / "examples" / "jet_tagger_mlp.onnx"
#: the example's second dense layer, its accumulator narrowed from fixed<17,5> (exact) to 10 bits
NARROWED = {"body_body_2_Gemm": {"Precision": {"accum": "fixed<10,2>"}}}

_LOAD = """
import ctypes, glob, sys
import numpy as np
lib = ctypes.cdll.LoadLibrary(glob.glob(sys.argv[1] + "/firmware/*.so")[0])
x = np.load(sys.argv[2]).astype(np.float32)
f = lib.myproject_float
f.restype = None
f.argtypes = [np.ctypeslib.ndpointer(ctypes.c_float, flags="C_CONTIGUOUS")] * 2
out = []
for row in x:
    y = np.zeros(int(sys.argv[3]), dtype=np.float32)
    f(np.ascontiguousarray(row), y)
    out.append(y)
np.save(sys.argv[4], np.stack(out))
"""


def test_expectations_follow_the_quantizers():
    assert expects_bit_exact(load(EXAMPLE)) == (True, "power-of-two quantized")
    from helpers import mlp_proto

    assert expects_bit_exact(load(mlp_proto()))[0] is False


def test_judges_fail_what_they_measured_as_wrong():
    ir = load(EXAMPLE)
    ok = {"bit_exact_share": 1.0, "max_abs_diff": 0.0, "argmax_agreement": 1.0}
    bad = {"bit_exact_share": 0.52, "max_abs_diff": 0.0078125, "argmax_agreement": 0.99}
    assert judge_hls4ml(ir, ok).passed
    v = judge_hls4ml(ir, bad)
    assert not v.passed and v.required.startswith("bit-exact") and "52.00% of outputs bit-exact" in v.measured
    rtl = {"mismatches": 494, "interpreter": {"mismatches": 0}, "simulation": {"mismatches": 494}}
    assert not judge_rtl(rtl).passed and "494 in iverilog" in judge_rtl(rtl).measured
    assert judge_rtl({"mismatches": 0, "interpreter": {"mismatches": 0}, "simulation": {"mismatches": 0}}).passed


def test_float_output_tail_is_judged_to_float32_rounding():
    """TFC ends in a float32 affine after its last quantizer: exact up to that chain's own rounding, top-1 100%."""
    ir = load(tfc_path("TFC_2W2A"))
    assert expects_bit_exact(ir)[0] and float_tail(ir) == [ir.graph.output[0].name]
    near = {"bit_exact_share": 0.52, "max_abs_diff": 2.4e-7, "argmax_agreement": 1.0, "reference_peak": 12.0}
    v = judge_hls4ml(ir, near)
    assert v.passed and v.required.startswith("bit-exact up to the float32 output tail")
    assert not judge_hls4ml(ir, {**near, "max_abs_diff": 1e-4}).passed
    assert not judge_hls4ml(ir, {**near, "argmax_agreement": 0.999}).passed
    assert float_tail(load(EXAMPLE)) == []  # the demo's output is fixed point: still bit-exact or fail


def test_shipped_csim_library_loads_from_the_final_folder(tmp_path):
    """The .so in the output folder runs in a fresh process and equals the IR reference (bit-exact model)."""
    out = tmp_path / "prj"
    result = codesign.compile(EXAMPLE, "vu13p", output=out, verify=True, samples=20)
    assert result.passed is True and result.manifest["csim"]["dropped_libraries"] == []
    ir = load(EXAMPLE)
    rng = np.random.default_rng(3)  # 1/16 steps in [-8, 8): exact in the port's type and the input quantizer's
    x = (np.clip(np.round(rng.normal(0, 2, size=(16, 16)) * 16), -128, 127) / 16).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    proc = subprocess.run([sys.executable, "-c", _LOAD, str(out), str(tmp_path / "x.npy"), "5", str(tmp_path / "y.npy")],
                          check=False, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), reference_outputs(ir, x).astype(np.float32))
    assert not list(tmp_path.glob(".prj.tmp-*"))


@pytest.mark.slow
def test_narrowed_types_fail_verify_and_name_the_layer(tmp_path):
    result = codesign.compile(EXAMPLE, "vu13p", output=tmp_path / "p", verify=True, samples=50, layer_config=NARROWED)
    assert result.passed is False
    v = result.verify
    assert v["bit_exact_share"] < 1.0 and v["argmax_agreement"] is not None
    d = v["divergence"]
    assert d["layer"].endswith("body_body_2_Gemm") and d["class"] == "Dense" and d["max_abs_diff"] > 0
    assert d["layers_matched_before"] >= 2  # the input quantizer and the first dense/ReLU matched exactly
    manifest = json.loads((tmp_path / "p" / "codesign.json").read_text())
    assert manifest["verdict"]["passed"] is False and manifest["verify"]["divergence"]["layer"] == d["layer"]


@dataclass
class _Narrowed(hb.Hls4mlOptions):
    layer_config: dict = field(default_factory=lambda: dict(NARROWED))


@pytest.mark.slow
def test_cli_verify_exits_3_naming_the_layer(tmp_path, monkeypatch):
    monkeypatch.setattr(hb, "Hls4mlOptions", _Narrowed)
    r = CliRunner().invoke(app, ["compile", str(EXAMPLE), "-t", "vu13p", "-o", str(tmp_path / "p"), "--verify",
                                 "--samples", "30"])  # fmt: skip
    assert r.exit_code == EXIT_VERIFY_FAILED == 3, r.output
    assert "first divergence at layer Dense_body_body_2_Gemm" in r.output or "body_body_2_Gemm" in r.output
    assert "verification FAILED: required bit-exact (power-of-two quantized)" in r.output
    assert (tmp_path / "p" / "codesign.json").is_file()  # the project is kept for inspection


@pytest.mark.slow
def test_rtl_iverilog_mismatch_exits_3(tmp_path, monkeypatch):
    """A mismatch only iverilog sees (the interpreter agrees) still fails --verify."""
    from codesign.backends import rtl_backend

    real = rtl_backend.simulate

    def off_by_one_lsb(folder, top, fin, fout, x):
        y, latency = real(folder, top, fin, fout, x)
        y = y.copy()
        y[0, 0] += 2.0**-fout.frac
        return y, latency

    monkeypatch.setattr(rtl_backend, "simulate", off_by_one_lsb)
    r = CliRunner().invoke(app, ["compile", str(EXAMPLE), "-t", "vu13p", "-o", str(tmp_path / "r"), "--backend", "rtl",
                                 "--verify", "--samples", "20"])  # fmt: skip
    assert r.exit_code == 3, r.output
    assert "0 mismatches in alkaid's interpreter, 1 in iverilog" in r.output


def test_top1_agreement_counts_exact_ties_as_ties():
    """A binary net's logits are integers times a float scale: ties broken by float32 rounding are still ties."""
    from codesign.backends.verify import top1_agreement

    ref = np.array([[3.0000002, 3.0, -1.0], [0.5, 2.0, 1.0]])  # row 0: a tie, 1 float32 ulp apart
    assert top1_agreement(ref, np.array([[3.0, 3.0000002, -1.0], [0.5, 2.0, 1.0]])) == 1.0
    assert top1_agreement(ref, np.array([[3.0, 3.0, 4.0], [2.5, 2.0, 1.0]])) == 0.0  # real disagreements
    assert top1_agreement(ref, np.array([[2.9, 3.0, -1.0], [0.5, 2.0, 1.0]])) == 1.0
    assert top1_agreement(np.array([[3.001, 3.0]]), np.array([[3.0, 3.001]])) == 0.0  # not a tie


def test_non_pow2_output_codes_are_counted_and_reported():
    """q * (1/127) in fixed point is never the float32 value: the report also counts outputs on the reference's code."""
    from codesign.backends.verdict import judge_hls4ml
    from codesign.backends.verify import compare

    s = 1 / 127
    ref = np.array([[100, 20, 7], [3, 120, 4]]) * s
    got = np.array([[100, 20, 8], [3, 120, 4]]) * s + 2e-6  # one code off; the rest hold q * s to 2e-6
    report = compare(ref, got, {}, code_scale=s)
    assert report.bit_exact_share == 0.0 and report.same_code_share == pytest.approx(5 / 6)
    assert "(83.33% on the output quantizer's reference code)" in report.summary()
    assert compare(ref, got, {}).same_code_share is None
    assert "83.33% on the output quantizer's reference code" in judge_hls4ml(load(EXAMPLE), report.to_dict()).measured


def test_divergence_skips_the_inner_layers_of_a_non_pow2_quant():
    """A QDQ input quantizer's x / s layer was reported as the first divergence (diff 92.9): it holds no IR tensor."""
    from hls4ml_graphs import Graph

    from codesign.backends.verify import quant_inner_layers

    g = Graph((4,))
    y = g.quant(g.quant_scaled("x", 0.0244, 8), 8, -4)
    lowered = hb.lower_model(load(g.model(y, (4,))))
    (scaled,) = [n.name for n in lowered.nodes_of(["Quant"]) if n.input[0] == lowered.inputs[0]]
    assert quant_inner_layers(lowered) == {f"{scaled}_scale", f"{scaled}_act"}


def test_zero_samples_is_refused_not_replaced_by_the_default(tmp_path):
    """`--samples 0` verified 100 samples (``samples or 100``): it is refused in one line, before any output."""
    r = CliRunner().invoke(app, ["compile", str(EXAMPLE), "-t", "vu13p", "--verify", "--samples", "0",
                                 "-o", str(tmp_path / "o")])  # fmt: skip
    assert r.exit_code == 2 and "--samples must be >= 1" in r.output and not (tmp_path / "o").exists()
