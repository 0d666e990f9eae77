"""`codesign compile --backend hls4ml`: projects for real models, IR-derived types, C-sim bit-exactness."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import EX, QDATA, ROOT, SHARED, TFC, ZOO, shared_path
from typer.testing import CliRunner

from codesign.backends import hls4ml_backend as hb
from codesign.backends.compile import compile_hls4ml
from codesign.backends.precision import Fixed, acc_type, derive, exact_type, quant_type
from codesign.backends.targets import get_target
from codesign.backends.verify import compare, sample_inputs
from codesign.cli import app
from codesign.errors import CodesignError, OutputError, UnsupportedModelError
from codesign.frontends import load

pytest.importorskip("hls4ml")

EXAMPLE = ROOT / "examples" / "jet_tagger_mlp.onnx"
KWS = ZOO / "GSCV2" / "kwsmlp_w3a3" / "kwsmlp_w3a3.onnx"
QKERAS = ZOO / "JetTagging" / "QKeras_hls4ml_3layer" / "qkeras_jettagging.onnx"

#: Every shared model codesign's hls4ml layer builders express (MLPs, BN, conv1d/2d, pooling,
#: BipolarQuant, the QKeras jet tagger, TFC, KWS MLP).
EXPRESSIBLE = [
    EX / "two_layer_keras.onnx", EX / "three_layer_keras.onnx", EX / "dense_big_keras.onnx",
    EX / "two_layer_pytorch.onnx", EX / "three_layer_pytorch.onnx", EX / "three_layer_bn_keras.onnx",
    EX / "conv1d_small_keras.onnx", EX / "conv2d_small_keras.onnx", EX / "conv2d_small_mp_keras.onnx",
    EX / "bnn_model_fc_1layer.onnx", QKERAS, TFC / "TFC_1W1A.onnx", TFC / "TFC_1W2A.onnx", TFC / "TFC_2W2A.onnx", KWS,
    QDATA / "residual_block_clean.onnx", QDATA / "mnist-conv" / "model.onnx", QDATA / "eltwise_chanlast_testcase.onnx",
]  # fmt: skip
#: ... and the rest, refused naming the op hls4ml cannot take.
REFUSED = [
    (QDATA / "floatquant_exec" / "qonnx_act_weight_fp8.onnx", r"FloatQuant"),
    (SHARED / "models" / "Xilinx+finn" / "src" / "finn" / "qnn-data" / "build_dataflow" / "model.onnx", r"MultiThreshold"),
    (QDATA / "matmul_update" / "sdp.onnx", r"input onnx::Reshape_0 has leading dimension 64, not a batch of 1"),
]  # fmt: skip


def _rel(path: Path) -> tuple[str, ...]:
    return path.relative_to(SHARED).parts


def _load_example_builder():
    spec = importlib.util.spec_from_file_location("make_jet_tagger", ROOT / "examples" / "make_jet_tagger.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def brevitas_mlp(tmp_path_factory) -> Path:
    """The 16-64-32-32-5 Brevitas MLP (pow2 8-bit/4-bit quantizers), exported here as QONNX."""
    pytest.importorskip("brevitas")
    out = tmp_path_factory.mktemp("mlp") / "mlp.onnx"
    _load_example_builder().export(out, seed=1)
    return out


# ------------------------------------------------------------------ the headline: bit-exact C-sim
def test_brevitas_mlp_verifies_bit_exact_through_csim(brevitas_mlp, tmp_path):
    """g++ C-simulation of the written project == qonnx reference execution, on every output bit."""
    ir = load(brevitas_mlp)
    result = compile_hls4ml(ir, "vu13p", tmp_path / "prj", verify=True, samples=300, source=brevitas_mlp)
    v = result.verify
    assert v["samples"] == 300 and v["outputs"] == 1500
    assert v["max_abs_diff"] == 0.0 and v["bit_exact_share"] == 1.0
    lowered = hb.lower_model(ir)
    assert v["input_types"][ir.inputs[0]] == derive(lowered).input[lowered.inputs[0]].hls()
    manifest = json.loads((tmp_path / "prj" / "codesign.json").read_text())
    assert manifest["verify"]["bit_exact"] is True
    assert (tmp_path / "prj" / "firmware" / "myproject.cpp").is_file()


def test_bipolar_model_verifies_bit_exact(tmp_path):
    """hls4ml's one-bit encoding of bipolar outputs is decoded; BipolarQuant weights/acts are exact."""
    path = shared_path(*_rel(EX / "bnn_model_fc_1layer.onnx"))
    result = compile_hls4ml(load(path), "pynq-z2", tmp_path / "bnn", verify=True, samples=64)
    assert result.verify["bit_exact_share"] == 1.0


# ------------------------------------------------------------------ types from the IR
def test_layer_types_come_from_the_ir(brevitas_mlp):
    ir = load(brevitas_mlp)
    lowered = hb.lower_model(ir)
    prec = derive(lowered)
    (inp,) = prec.input.values()
    q_in = quant_type(lowered, lowered.consumers(lowered.inputs[0])[0])
    assert q_in.width == 8 and q_in.rounding == "RND_CONV" and q_in.saturation == "SAT"
    assert inp == Fixed(q_in.width + 10, q_in.integer + 2)  # + 2 integer and 8 fractional guard bits
    mm = lowered.nodes_of(["MatMul"])[0]
    first = prec.layers[mm.name].types
    w_q = quant_type(lowered, lowered.producer(mm.input[1]))
    assert first["weight"] == w_q and w_q.width == 8 and w_q.saturation == "SAT_SYM"  # 8-bit narrow
    # accumulator: fraction = input frac + weight frac; integer bits cover the real worst case
    assert first["accum"].frac == q_in.frac + w_q.frac
    assert first["bias"].frac <= first["accum"].frac
    widths = {lp.types["weight"].width for lp in prec.layers.values()}
    assert widths == {8, 4}  # per layer, not one blanket type
    build_cfg = hb.hls_config(lowered, prec, hb.Hls4mlOptions())
    name = lowered.nodes_of(["MatMul"])[0].name
    assert build_cfg["LayerName"][name]["Precision"]["accum"] == first["accum"].hls()


def test_accumulator_range_is_exact_worst_case():
    x = Fixed(8, 1, True)  # [-1, 127/128], grid 2^-7
    w = np.array([[0.5, -0.25], [0.5, 0.25]])
    acc = acc_type(x, w, Fixed(4, 0), None, None)
    # column 0 spans [-1, 127/128]: fixed<12,1> holds it exactly on the 2^-(7+4) grid
    assert (acc.width, acc.integer, acc.frac) == (12, 1, 11)
    # doubling the weights doubles the range: one more integer bit, nothing more
    acc2 = acc_type(x, 2 * w, Fixed(5, 1), None, None)
    assert acc2.integer == 2 and acc2.lo == -2.0
    # a bias shifts the range by its value
    acc3 = acc_type(x, w, Fixed(4, 0), np.array([4.0, 0.0]), Fixed(4, 4))
    assert acc3.hi >= 4 + 127 / 128 and acc3.integer == 4


def test_exact_type_of_constants():
    assert exact_type(np.array([0.5, -0.25, 3.0])) == Fixed(5, 3)
    assert exact_type(np.array([0.1]), max_frac=12) is None


def test_quant_type_needs_power_of_two(brevitas_mlp):
    ir = load(brevitas_mlp)
    quants = [quant_type(ir, n) for n in ir.nodes_of(["Quant"])]
    assert all(q is not None for q in quants)
    assert {q.width for q in quants} >= {8, 4}


def test_verify_statistics_are_honest():
    ref = np.array([[1.0, 2.0], [3.0, 4.0]])
    rep = compare(ref, np.array([[1.0, 2.5], [3.0, 4.0]]), {})
    assert rep.max_abs_diff == 0.5 and rep.bit_exact_share == 0.75 and not rep.bit_exact
    assert rep.argmax_agreement == 1.0


def test_sample_inputs_lie_on_the_input_grid(brevitas_mlp):
    ir = load(brevitas_mlp)
    t = Fixed(18, 3)
    x = sample_inputs(ir, {ir.inputs[0]: t}, 200)[ir.inputs[0]]
    assert np.all(x * 2**t.frac == np.round(x * 2**t.frac))
    assert x.min() >= t.lo and x.max() <= t.hi and np.abs(x).max() > 1.0  # saturation gets exercised


# ------------------------------------------------------------------ every shared model
@pytest.mark.parametrize("path", EXPRESSIBLE, ids=lambda p: p.stem)
def test_compiles_every_expressible_shared_model(path, tmp_path):
    src = shared_path(*_rel(path))
    result = compile_hls4ml(load(src), "vu13p", tmp_path / "prj", source=src)
    prj = tmp_path / "prj"
    assert (prj / "firmware" / "myproject.cpp").is_file() and (prj / "build_prj.tcl").is_file()
    manifest = json.loads((prj / "codesign.json").read_text())
    assert manifest["target"]["part"] == "xcvu13p-flga2577-2-e"
    assert manifest["cost"]["totals"]["macs"] > 0
    assert manifest["hls4ml"]["layers"] and result.verify is None
    assert "xcvu13p-flga2577-2-e" in (prj / "hls4ml_config.yml").read_text()
    assert str(prj) in (prj / "hls4ml_config.yml").read_text()  # not the temp folder it was written in


@pytest.mark.parametrize("path, op", REFUSED, ids=lambda p: getattr(p, "stem", ""))
def test_refuses_the_rest_naming_the_op(path, op, tmp_path):
    src = shared_path(*_rel(path))
    with pytest.raises(UnsupportedModelError, match=op):
        compile_hls4ml(load(src), "vu13p", tmp_path / "prj")
    assert not (tmp_path / "prj").exists()
    assert not list(tmp_path.iterdir())  # no temp folder left behind either


# ------------------------------------------------------------------ options and output folder
def test_options_reach_the_project(brevitas_mlp, tmp_path):
    ir = load(brevitas_mlp)
    mm = ir.nodes_of(["Gemm"])[1].name  # the user's layer name, e.g. /body/body.2/Gemm
    opts = hb.Hls4mlOptions(io="stream", strategy="resource", reuse_factor=4, layer_reuse={mm: 8}, clock_ns=3.0)
    compile_hls4ml(ir, "zcu102", tmp_path / "prj", options=opts)
    cfg = (tmp_path / "prj" / "hls4ml_config.yml").read_text()
    assert "io_stream" in cfg and "Resource" in cfg and "xczu9eg-ffvb1156-2-e" in cfg
    assert "ClockPeriod: 3.0" in cfg
    params = (tmp_path / "prj" / "firmware" / "parameters.h").read_text()
    assert "reuse_factor = 8" in params and "reuse_factor = 4" in params


def test_bad_options_are_one_line_errors(brevitas_mlp, tmp_path):
    ir = load(brevitas_mlp)
    with pytest.raises(CodesignError, match="--io must be"):
        compile_hls4ml(ir, "vu13p", tmp_path / "a", options=hb.Hls4mlOptions(io="serial"))
    with pytest.raises(CodesignError, match="no such layer"):
        compile_hls4ml(ir, "vu13p", tmp_path / "b", options=hb.Hls4mlOptions(layer_reuse={"nope": 2}))
    assert not list(tmp_path.iterdir())


def test_existing_output_is_refused_then_replaced_with_force(brevitas_mlp, tmp_path):
    ir = load(brevitas_mlp)
    out = tmp_path / "prj"
    out.mkdir()
    (out / "keep.txt").write_text("old build")
    with pytest.raises(OutputError, match="--force"):
        compile_hls4ml(ir, "vu13p", out)
    assert (out / "keep.txt").read_text() == "old build"
    compile_hls4ml(ir, "vu13p", out, force=True)
    assert not (out / "keep.txt").exists() and (out / "codesign.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prj"]


def test_failed_compile_keeps_the_previous_build(brevitas_mlp, tmp_path):
    out = tmp_path / "prj"
    compile_hls4ml(load(brevitas_mlp), "vu13p", out)
    before = (out / "codesign.json").read_text()
    bad = shared_path(*_rel(QDATA / "floatquant_exec" / "qonnx_act_weight_fp8.onnx"))
    with pytest.raises(UnsupportedModelError):
        compile_hls4ml(load(bad), "vu13p", out, force=True)
    assert (out / "codesign.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prj"]


# ------------------------------------------------------------------ CLI
def test_cli_compile_writes_a_project(tmp_path):
    out = tmp_path / "jet"
    result = CliRunner().invoke(app, ["compile", str(EXAMPLE), "--target", "vu13p", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "hls4ml project for vu13p" in result.output
    manifest = json.loads((out / "codesign.json").read_text())
    assert manifest["options"]["reuse_factor"] == 1 and manifest["backend"] == "hls4ml"
    assert manifest["model"]["sha256"] and manifest["estimates"]


def test_cli_errors_are_one_line(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["compile", str(EXAMPLE), "-t", "vu99p", "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "unknown target 'vu99p'" in r.output
    r = runner.invoke(app, ["compile", str(EXAMPLE), "-t", "vu13p", "-o", str(tmp_path / "x"), "--reuse-factor", "a=b"])
    assert r.exit_code == 2 and "expected N or LAYER=N" in r.output
    (tmp_path / "exists").mkdir()
    r = runner.invoke(app, ["compile", str(EXAMPLE), "-t", "vu13p", "-o", str(tmp_path / "exists")])
    assert r.exit_code == 2 and "already exists" in r.output


# ------------------------------------------------------------------ slow: more C-sim builds
@pytest.mark.slow
@pytest.mark.parametrize(
    "path", [QKERAS, TFC / "TFC_2W2A.onnx", KWS, EX / "three_layer_keras.onnx"], ids=lambda p: p.stem
)
def test_verify_reports_error_honestly(path, tmp_path):
    """Non-power-of-two or float models: verification runs and reports; argmax mostly agrees."""
    src = shared_path(*_rel(path))
    v = compile_hls4ml(load(src), "vu13p", tmp_path / "prj", verify=True, samples=200).verify
    assert 0.0 <= v["bit_exact_share"] <= 1.0 and np.isfinite(v["max_abs_diff"])
    assert v["argmax_agreement"] >= 0.95


@pytest.mark.slow
def test_cli_verify_example_is_bit_exact(tmp_path):
    out = tmp_path / "demo"
    r = CliRunner().invoke(
        app, ["compile", str(EXAMPLE), "-t", "vu13p", "-o", str(out), "--verify", "--samples", "200"]
    )
    assert r.exit_code == 0, r.output
    assert "bit-exact" in r.output


@pytest.mark.slow
def test_target_part_names_work_end_to_end(brevitas_mlp, tmp_path):
    t = get_target("xcvu9p-flgb2104-2-i")
    compile_hls4ml(load(brevitas_mlp), t, tmp_path / "p")
    assert "xcvu9p-flgb2104-2-i" in (tmp_path / "p" / "hls4ml_config.yml").read_text()


@pytest.mark.slow
def test_stream_resource_reuse_still_bit_exact(brevitas_mlp, tmp_path):
    opts = hb.Hls4mlOptions(io="stream", strategy="resource", reuse_factor=4)
    v = compile_hls4ml(load(brevitas_mlp), "zcu102", tmp_path / "p", options=opts, verify=True, samples=100).verify
    assert v["bit_exact_share"] == 1.0


def test_da_strategy_failure_is_explained(brevitas_mlp, tmp_path):
    pytest.importorskip("da4ml")
    try:
        compile_hls4ml(load(brevitas_mlp), "vu13p", tmp_path / "p", options=hb.Hls4mlOptions(strategy="da"))
    except UnsupportedModelError as exc:  # hls4ml 1.3's DA pass cannot take ONNX-converted graphs
        assert "--strategy da" in str(exc)
        assert not (tmp_path / "p").exists()
    else:
        assert "distributed_arithmetic" in (tmp_path / "p" / "hls4ml_config.yml").read_text()


@pytest.mark.parametrize(
    "path, atol",
    [
        (KWS, 1e-4),
        (EX / "conv2d_small_mp_keras.onnx", 2e-3),
        (EX / "conv1d_small_keras.onnx", 2e-3),
        (TFC / "TFC_2W2A.onnx", 1e-4),
    ],
    ids=lambda p: getattr(p, "stem", ""),
)
def test_lowering_preserves_the_function(path, atol):
    """Lowered graph (channels-last, weight scales moved, Softmax input quantized) == the IR, by reference execution."""
    from codesign.backends.verify import channels_perm, reference_outputs

    ir = load(shared_path(*_rel(path)))
    lowered = hb.lower_model(ir)
    x = sample_inputs(ir, {}, 8)[ir.inputs[0]]
    perm = channels_perm(ir.shape(ir.inputs[0]), lowered.shape(lowered.inputs[0]))
    want = reference_outputs(ir, x)
    got = reference_outputs(lowered, np.ascontiguousarray(x.transpose(perm)) if perm else x)
    np.testing.assert_allclose(got.reshape(want.shape), want, atol=atol, rtol=1e-4)


def _non_pow2_conv_bn_model() -> object:
    """Brevitas' VGG10 pattern in miniature: Quant(2^-6) -> Conv1d(Quant(W, 0.0346)) -> BN -> Relu ->
    Quant(0.0261, unsigned 8-bit: codes up to 255, 1/s > 32) -> Flatten -> MatMul(Quant(W, 0.0515))."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    init = []

    def const(name, value):
        init.append(helper.make_tensor(name, TensorProto.FLOAT, np.shape(value), np.ravel(value).astype(np.float32)))
        return name

    def quant(x, out, scale, signed, narrow, name):
        s, z, b = const(f"{name}_s", scale), const(f"{name}_z", 0.0), const(f"{name}_b", 8.0)
        return helper.make_node("Quant", [x, s, z, b], [out], name=name, domain="qonnx.custom_op.general",
                                signed=signed, narrow=narrow, rounding_mode="ROUND")  # fmt: skip

    c, t = 8, 16
    nodes = [
        quant("x", "xq", 2.0**-6, 1, 0, "Qin"),
        quant(const("w1", rng.normal(0, 1.5, (c, 2, 3))), "w1q", 0.0346, 1, 1, "Qw1"),
        helper.make_node("Conv", ["xq", "w1q"], ["c1"], name="Conv1", kernel_shape=[3], pads=[1, 1]),
        helper.make_node(
            "BatchNormalization",
            [
                "c1",
                const("g", rng.uniform(0.5, 2, c)),
                const("bb", rng.normal(0, 1, c)),
                const("m", rng.normal(0, 1, c)),
                const("v", rng.uniform(0.5, 2, c)),
            ],
            ["bn"],
            name="BN1",
        ),
        helper.make_node("Relu", ["bn"], ["r"], name="Relu1"),
        quant("r", "a", 0.0261, 0, 0, "Qa"),
        helper.make_node("Flatten", ["a"], ["f"], name="Flat", axis=1),
        quant(const("w2", rng.normal(0, 2, (c * t, 5))), "w2q", 0.0515, 1, 1, "Qw2"),
        helper.make_node("MatMul", ["f", "w2q"], ["y"], name="Fc"),
    ]
    graph = helper.make_graph(nodes, "vgg_mini", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, t])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], init)  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_non_pow2_quantizers_around_conv_bn_verify(tmp_path):
    """Non-power-of-two activation quantizers (1/s > 32, codes > 32) and weight scales before a BN:
    hls4ml's scale/rescale ApplyAlphas and the weights are typed, not fixed<16,6> (which saturated)."""
    from codesign.frontends.onnx_file import load_onnx

    ir = load_onnx(_non_pow2_conv_bn_model())
    v = compile_hls4ml(ir, "vu13p", tmp_path / "prj", verify=True, samples=64).verify
    assert v["argmax_agreement"] >= 0.95
    assert v["max_abs_diff"] <= 0.02 * v["reference_peak"]
