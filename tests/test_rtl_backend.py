"""The open RTL backend: QONNX -> alkaid Verilog, bit-exact in iverilog, counted by yosys."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import FINN, shared_path
from helpers import export_brevitas_mlp
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from codesign.backends import rtl_backend as rb
from codesign.backends.rtl_backend import RtlOptions, compile_rtl
from codesign.backends.verify import reference_outputs
from codesign.cli import app
from codesign.errors import CodesignError, UnsupportedModelError
from codesign.frontends import load
from codesign.passes.estimate.da_model import trace_model
from codesign.passes.prune import prune

pytest.importorskip("alkaid")

needs_iverilog = pytest.mark.skipif(
    shutil.which("iverilog") is None, reason="needs iverilog (Debian package 'iverilog'; `make tools`)"
)
needs_yosys = pytest.mark.skipif(
    shutil.which("yosys") is None, reason="needs yosys (Debian package 'yosys'; `make tools`)"
)


@pytest.fixture(scope="module")
def mlp_path(tmp_path_factory) -> Path:
    """Brevitas 16-64-32-32-5 MLP, 4-bit pow2 weights, pow2 activation quantizers, pruned 50%."""
    pytest.importorskip("brevitas")
    folder = tmp_path_factory.mktemp("rtl_mlp")
    exported = export_brevitas_mlp(folder / "mlp.onnx", seed=1, weight_bits=(4, 4, 4, 4))
    result = prune(load(exported), 0.5)
    assert all(abs(row["after"] - 0.5) < 0.02 for row in result.info.layers.values())
    out = folder / "mlp_pruned.onnx"
    result.model.save(out)
    return out


def _quant(name: str, x: str, scale: float, bits: int, signed: int, inits: list, mode: str = "ROUND", narrow: int = 0):
    inits += [
        numpy_helper.from_array(np.asarray(scale, dtype=np.float32), f"{name}_s"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), f"{name}_z"),
        numpy_helper.from_array(np.array(float(bits), dtype=np.float32), f"{name}_b"),
    ]
    return helper.make_node(
        "Quant", [x, f"{name}_s", f"{name}_z", f"{name}_b"], [f"{name}_out"], name=name,
        domain="qonnx.custom_op.general", signed=signed, narrow=narrow, rounding_mode=mode,
    )  # fmt: skip


def _requant_model(scale: float = 1.0, mode: str = "ROUND", narrow: int = 0, extra: list | None = None, in_scale=0.25):
    """x -> Quant(8 bit, step ``in_scale``) -> Quant(4 bit, step ``scale``, ``mode``) [-> extra nodes] -> y."""
    inits: list = []
    nodes = [_quant("q_in", "x", in_scale, 8, 1, inits), _quant("q_out", "q_in_out", scale, 4, 1, inits, mode, narrow)]
    last = "q_out_out"
    for node in extra or []:
        nodes.append(node)
        last = node.output[0]
    nodes.append(helper.make_node("Identity", [last], ["y"], name="out"))
    graph = helper.make_graph(
        nodes, "requant", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], initializer=inits,
    )  # fmt: skip
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("qonnx.custom_op.general", 1)]
    )
    model.ir_version = 8
    return load(model)


# ------------------------------------------------------------------ the headline: 0 mismatches in iverilog
@needs_iverilog
def test_pruned_brevitas_mlp_is_bit_exact_in_iverilog(mlp_path, tmp_path):
    ir = load(mlp_path)
    result = compile_rtl(ir, "vu13p", tmp_path / "rtl", verify=True, samples=500, source=mlp_path)
    v = result.verify
    assert v["samples"] == 500
    assert v["interpreter"]["mismatches"] == 0 and v["interpreter"]["bit_exact"]
    assert v["simulation"]["mismatches"] == 0 and v["simulation"]["bit_exact"]
    assert v["simulation"]["outputs"] == 500 * 5
    info = result.manifest["rtl"]
    # alkaid registers the input, then one register per pipeline stage: the measured latency is exactly that.
    assert v["latency_cycles"] == info["stages"] + 1
    assert info["input_port"] == {"count": 16, "width": 8, "frac": 4, "signed": True}  # the 8-bit input quantizer
    out = result.output
    for rel in ("src/model.v", "src/model_wrapper.v", "src/model.xdc", "build_vivado_prj.tcl", "sim/tb_model.v"):
        assert (out / rel).is_file(), rel
    assert "xcvu13p" in (out / "build_vivado_prj.tcl").read_text()
    manifest = json.loads((out / "codesign.json").read_text())
    assert manifest["backend"] == "rtl" and manifest["verify"]["mismatches"] == 0
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".rtl.tmp")]


def test_half_up_rounding_would_not_match_the_reference(mlp_path):
    """Without the half-to-even correction alkaid's half-up rounding differs on ties: the fix is needed."""
    ir = load(mlp_path)
    exact = trace_model(ir, 5.0, exact_rounding=True)
    x = rb.sample_port_inputs(ir, exact, 300)
    ref = reference_outputs(ir, x).reshape(300, -1)
    assert np.sum(exact.predict(x.reshape(300, -1)) != ref) == 0
    half_up = trace_model(ir, 5.0, exact_rounding=False)
    assert np.sum(half_up.predict(x.reshape(300, -1)) != ref) > 0


TIES = np.array([[-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 0.75]], dtype=np.float32)


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("ROUND", [-2, -2, 0, 0, 2, 2, 4, 1]),  # half to even, like np.round
        ("HALF_UP", [-3, -2, -1, 1, 2, 3, 4, 1]),  # half away from zero
        ("HALF_EVEN", [-2, -2, 0, 0, 2, 2, 4, 1]),
        ("FLOOR", [-3, -2, -1, 0, 1, 2, 3, 0]),
    ],
)
def test_rounding_modes_on_ties(mode, expected):
    ir = _requant_model(mode=mode)
    np.testing.assert_array_equal(reference_outputs(ir, TIES)[0], expected)
    comb = trace_model(ir, 5.0, exact_rounding=True)
    np.testing.assert_array_equal(comb.predict(TIES)[0], expected)


def test_narrow_signed_saturates_symmetrically():
    ir = _requant_model(narrow=1)
    x = np.array([[-20, -8.25, -7.5, 6.75, 7.5, 20, 0.25, -0.25]], dtype=np.float32)
    np.testing.assert_array_equal(reference_outputs(ir, x)[0], [-7, -7, -7, 7, 7, 7, 0, 0])
    np.testing.assert_array_equal(trace_model(ir, 5.0, exact_rounding=True).predict(x)[0], [-7, -7, -7, 7, 7, 7, 0, 0])


@needs_iverilog
@pytest.mark.parametrize("mode", ["ROUND", "HALF_UP", "FLOOR"])
def test_requantizer_in_iverilog(mode, tmp_path):
    """Random 8-bit inputs (a quarter of them ties) through each rounding mode, in simulation."""
    ir = _requant_model(mode=mode)
    v = compile_rtl(ir, "vu13p", tmp_path / "ties", verify=True, samples=200).verify
    assert v["simulation"]["mismatches"] == 0 and v["simulation"]["outputs"] == 200 * 8


@needs_iverilog
def test_per_element_input_formats_in_iverilog(tmp_path):
    """Per-channel input scales give each port element its own format; the testbench packs each exactly."""
    ir = _requant_model(in_scale=np.array([[2.0**-e for e in (0, 1, 2, 3, 4, 5, 1, 3)]], dtype=np.float32))
    v = compile_rtl(ir, "vu13p", tmp_path / "mixed", verify=True, samples=200).verify
    assert v["simulation"]["mismatches"] == 0 and v["interpreter"]["mismatches"] == 0


def _bipolar_model(out_scale: float = 1.0):
    """x (1, 3) -> BipolarQuant -> MatMul(+-1) + bias -> BipolarQuant -> y; the bias puts every output on a 0 tie."""
    w = np.array([[1, -1, 1, 1], [-1, -1, 1, -1], [1, 1, -1, -1]], dtype=np.float32)
    inits = [numpy_helper.from_array(np.array(1.0, dtype=np.float32), "s"), numpy_helper.from_array(w, "w"),
             numpy_helper.from_array(np.array([1, -1, 1, 3], dtype=np.float32), "b"),
             numpy_helper.from_array(np.array(out_scale, dtype=np.float32), "s_out")]  # fmt: skip
    nodes = [
        helper.make_node("BipolarQuant", ["x", "s"], ["xb"], name="bq_in", domain="qonnx.custom_op.general"),
        helper.make_node("MatMul", ["xb", "w"], ["m"], name="dense"), helper.make_node("Add", ["m", "b"], ["a"]),
        helper.make_node("BipolarQuant", ["a", "s_out"], ["y"], name="bq_out", domain="qonnx.custom_op.general"),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes, "bnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], initializer=inits,
    )  # fmt: skip
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("qonnx.custom_op.general", 1)]
    )
    model.ir_version = 8
    return load(model)


def test_bipolar_input_port_bit_stands_for_plus_minus_one():
    """The one-bit port b of a BipolarQuant'd input is the model input 2b - 1 (b = 0 is -1, not BipolarQuant(0) = +1)."""
    ir = _bipolar_model()
    port = np.array([[0, 1, 0], [1, 1, 1]], dtype=np.float32)
    np.testing.assert_array_equal(rb.port_to_model(ir, port), [[-1, 1, -1], [1, 1, 1]])
    assert rb.port_formats(trace_model(ir))[0] == rb.PortFormat(count=3, width=1, frac=0, signed=False)
    np.testing.assert_array_equal(rb.port_to_model(_requant_model(), port), port)  # Quant'd ports: value = input


@needs_iverilog
@pytest.mark.parametrize("out_scale", [1.0, 0.5])
def test_bipolar_network_in_iverilog(out_scale, tmp_path):
    """Bipolar in, +-1 weights, BipolarQuant (scaled) out on 0 ties (-> +1): bit-exact in alkaid and in iverilog."""
    v = compile_rtl(_bipolar_model(out_scale), "vu13p", tmp_path / "bnn", verify=True, samples=64).verify
    assert v["interpreter"]["mismatches"] == 0 and v["simulation"]["mismatches"] == 0
    assert v["simulation"]["outputs"] == 64 * 4


def test_non_power_of_two_bipolar_scale_is_refused(tmp_path):
    with pytest.raises(UnsupportedModelError, match=r"^rtl backend: bq_out: .*power-of-two"):
        compile_rtl(_bipolar_model(0.3), "vu13p", tmp_path / "x")
    assert not (tmp_path / "x").exists()


@needs_iverilog
def test_shared_bnn_model_in_iverilog(tmp_path):
    """The real fastmachinelearning BNN (BipolarQuant + Quant bias + Gemm): 0 mismatches."""
    path = shared_path("models", "fastmachinelearning+example-models", "onnx", "bnn_model_fc_1layer.onnx")
    v = compile_rtl(load(path), "vu13p", tmp_path / "bnn", verify=True, samples=64).verify
    assert v["interpreter"]["mismatches"] == 0 and v["simulation"]["mismatches"] == 0


# ------------------------------------------------------------------ refusals, by name
def _conv_model(nd: int = 2, stride: int = 1, pad: int = 1, dil: int = 1, group: int = 1, size: int = 6):
    """x (1, 2, size^nd) -> Quant -> Conv(3 ch, k=3) + bias -> Relu -> Quant(4 bit) -> Flatten -> MatMul(4) -> y."""
    rng = np.random.default_rng(0)
    w = rng.integers(-7, 8, size=(3, 2, *([3] * nd)) if group == 1 else (2, 1, *([3] * nd))) / 8.0
    cout = w.shape[0]
    inits: list = [numpy_helper.from_array(w.astype(np.float32), "w")]
    inits.append(numpy_helper.from_array((rng.integers(-8, 8, size=(cout,)) / 16.0).astype(np.float32), "b"))
    conv = helper.make_node(
        "Conv", ["q_in_out", "w", "b"], ["c"], name="conv0", kernel_shape=[3] * nd, pads=[pad] * 2 * nd,
        strides=[stride] * nd, dilations=[dil] * nd, group=group,
    )  # fmt: skip
    out_sp = [(size + 2 * pad - dil * 2 - 1) // stride + 1] * nd
    w2 = rng.integers(-7, 8, size=(cout * int(np.prod(out_sp)), 4)) / 8.0
    inits.append(numpy_helper.from_array(w2.astype(np.float32), "w2"))
    nodes = [
        _quant("q_in", "x", 1 / 16, 8, 1, inits), conv, helper.make_node("Relu", ["c"], ["r"], name="relu0"),
        _quant("q_a", "r", 0.25, 4, 0, inits), helper.make_node("Flatten", ["q_a_out"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "w2"], ["y"], name="dense"),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, *([size] * nd)])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], initializer=inits,
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid("qonnx.custom_op.general", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return load(model)


@needs_iverilog
@pytest.mark.parametrize("nd, stride, pad, dil", [(1, 2, 0, 1), (2, 2, 1, 2), (2, 1, 1, 1)])
def test_conv_as_im2col_in_iverilog(nd, stride, pad, dil, tmp_path):
    """Conv1d/2d (strides, pads, dilations) unrolled per output pixel: 0 mismatches in simulation."""
    ir = _conv_model(nd, stride, pad, dil, size=6 if (nd, stride) != (2, 1) else 4)
    v = compile_rtl(ir, "vu13p", tmp_path / "conv", verify=True, samples=200).verify
    assert v["interpreter"]["mismatches"] == 0 and v["simulation"]["mismatches"] == 0
    assert v["simulation"]["outputs"] == 200 * 4


# ------------------------------------------------------------------ refusals, by name
def test_unsupported_layers_are_refused_by_name(tmp_path):
    with pytest.raises(UnsupportedModelError, match=r"^rtl backend: conv0: grouped/depthwise Conv is not supported$"):
        compile_rtl(_conv_model(group=2), "vu13p", tmp_path / "conv")
    assert not (tmp_path / "conv").exists()
    ir = _requant_model(extra=[helper.make_node("Sigmoid", ["q_out_out"], ["s"], name="act_7")])
    with pytest.raises(UnsupportedModelError, match=r"^rtl backend: act_7: alkaid does not support Sigmoid$"):
        compile_rtl(ir, "vu13p", tmp_path / "act")
    assert not (tmp_path / "act").exists()


def test_non_power_of_two_scale_is_refused(tmp_path):
    with pytest.raises(UnsupportedModelError, match=r"q_out: .*power-of-two"):
        compile_rtl(_requant_model(scale=0.3), "vu13p", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_other_rounding_modes_are_refused_by_name(tmp_path):
    with pytest.raises(UnsupportedModelError, match=r"q_out: rounding_mode CEIL has no exact RTL"):
        compile_rtl(_requant_model(mode="CEIL"), "vu13p", tmp_path / "x")


def test_multithreshold_is_refused_by_name(tmp_path):
    path = FINN / "src" / "finn" / "qnn-data" / "build_dataflow" / "model.onnx"
    if not path.exists():
        pytest.skip("needs ../shared FINN build_dataflow model")
    with pytest.raises(UnsupportedModelError, match=r"rtl backend: .*MultiThreshold"):
        compile_rtl(load(path), "vu13p", tmp_path / "x")


# ------------------------------------------------------------------ options, tools, CLI
def test_vhdl_on_request(tmp_path):
    out = compile_rtl(_requant_model(), "vu13p", tmp_path / "v", options=RtlOptions(hdl="vhdl")).output
    assert (out / "src" / "model.vhd").is_file() and not list((out / "src").glob("*.v"))
    with pytest.raises(CodesignError, match="use --hdl verilog"):
        compile_rtl(_requant_model(), "vu13p", tmp_path / "v2", options=RtlOptions(hdl="vhdl"), verify=True)


def test_latency_cutoff_sets_the_pipeline_depth(mlp_path, tmp_path):
    ir = load(mlp_path)
    deep = compile_rtl(ir, "vu13p", tmp_path / "a", options=RtlOptions(latency_cutoff=2.0)).manifest["rtl"]["stages"]
    shallow = compile_rtl(ir, "vu13p", tmp_path / "b", options=RtlOptions(latency_cutoff=20.0)).manifest["rtl"][
        "stages"
    ]
    assert deep > shallow >= 1


def test_missing_tool_names_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.setattr(rb.shutil, "which", lambda tool: None)
    with pytest.raises(CodesignError, match=r"^iverilog not found: install the Debian package 'iverilog'"):
        compile_rtl(_requant_model(), "vu13p", tmp_path / "x", verify=True)
    with pytest.raises(CodesignError, match=r"^yosys not found: install the Debian package 'yosys'"):
        compile_rtl(_requant_model(), "vu13p", tmp_path / "y", synth=True)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_parse_stat_reads_both_yosys_layouts():
    old = "   Number of cells:  10\n     CARRY8  3\n     FDRE  5\n     LUT2  1\n     LUT6  1\n"
    new = "        10 cells\n         3   CARRY8\n         5   FDRE\n         1   LUT2\n         1   LUT6\n"
    for text in (old, new):
        counts = rb.yosys_counts(rb.parse_stat(text))
        assert (counts["LUT"], counts["FF"], counts["CARRY"]) == (2, 5, 3)


@needs_iverilog
def test_cli_compile_rtl_verify(tmp_path):
    src = tmp_path / "ties.onnx"
    _requant_model().save(src)
    out = tmp_path / "prj"
    res = CliRunner().invoke(
        app,
        ["compile", str(src), "--target", "vu13p", "--backend", "rtl", "-o", str(out), "--verify", "--samples", "64"],
    )
    assert res.exit_code == 0, res.output
    assert "0 mismatches in alkaid's interpreter, 0 in iverilog; latency" in res.output
    assert (out / "src" / "model.v").is_file()


def test_cli_errors_are_one_line(tmp_path):
    src = tmp_path / "bad.onnx"
    _requant_model(scale=0.3).save(src)
    res = CliRunner().invoke(
        app, ["compile", str(src), "--target", "vu13p", "--backend", "rtl", "-o", str(tmp_path / "o")]
    )
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1 and "power-of-two" in res.output
    res = CliRunner().invoke(
        app, ["compile", str(src), "-t", "vu13p", "--backend", "rtl", "--hdl", "sv", "-o", str(tmp_path / "o")]
    )
    assert res.exit_code == 2 and "--hdl must be one of verilog, vhdl" in res.output


# ------------------------------------------------------------------ synthesis (minutes): slow
@pytest.mark.slow
@needs_yosys
def test_pruned_mlp_synthesises_with_yosys(mlp_path, tmp_path):
    result = compile_rtl(load(mlp_path), "vu13p", tmp_path / "rtl", synth=True)
    s = result.manifest["synth"]
    assert s["counted_by"].startswith("yosys synth_xilinx")
    assert s["LUT"] > 1000 and s["CARRY"] > 0
    # every pipeline register bit alkaid reports becomes a flip-flop (yosys may drop constant ones)
    assert 0.5 * result.manifest["rtl"]["reg_bits"] <= s["FF"] <= result.manifest["rtl"]["reg_bits"] + 200
    assert (result.output / "yosys_stat.txt").is_file()
