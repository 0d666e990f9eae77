"""Post-training quantization on the IR: accuracy vs float, datatypes, BOPs, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from conftest import shared_path, tfc_path
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from codesign.backends.reference import execute, predict
from codesign.cli import app
from codesign.frontends import load
from codesign.ir.model import Model
from codesign.passes.calibrate import calibrate, estimate_ranges
from codesign.passes.cost import cost_report
from codesign.passes.quantize import QuantConfig, Quantize, quantize

MAC = ("MatMul", "Gemm", "Conv")


def _three_layer() -> Model:
    return load(shared_path("models", "fastmachinelearning+example-models", "onnx", "three_layer_keras.onnx"))


def _tfc() -> Model:
    return load(tfc_path("TFC_2W2A"))


def _mnist(n: int) -> tuple[np.ndarray, np.ndarray]:
    from codesign.search.data import load_mnist_idx

    folder = shared_path("data", "mnist")
    x, y = load_mnist_idx(folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz")
    return (x[:n] / 255.0).astype(np.float32)[:, None], y[:n]


def _quant_nodes(model: Model) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == "Quant"]


@pytest.fixture(scope="module")
def jet_data():
    """Calibration and test inputs from one distribution (standardised features)."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((2000, 16)).astype(np.float32), rng.standard_normal((10000, 16)).astype(np.float32)


@pytest.fixture(scope="module")
def jet_q8(jet_data):
    model = _three_layer()
    return model, quantize(model, 8, calibration=jet_data[0])


def test_three_layer_keras_8bit_pow2_argmax_agreement(jet_q8, jet_data):
    model, result = jet_q8
    result.model.validate()
    test = jet_data[1]
    agree = float(np.mean(predict(result.model, test).argmax(1) == predict(model, test).argmax(1)))
    assert agree >= 0.98, agree
    assert result.info.ranges_source.startswith("calibration data (2000 samples)")
    assert not result.info.float_layers and len(result.info.layers) == 4


def test_three_layer_keras_8bit_bops_drop_16x(jet_q8):
    model, result = jet_q8
    before = {r.name: r for r in cost_report(model).layers if r.op in MAC}
    after = {r.name: r for r in cost_report(result.model).layers if r.op in MAC}
    assert before.keys() == after.keys() and len(after) == 4
    for name, row in after.items():
        assert row.weight_dtype == "SCALEDINT<8>" and row.act_dtype == "SCALEDINT<8>"
        # BOPs per (density-discounted) MAC: 32x32 -> 8x8
        assert before[name].bops / before[name].macs == 1024
        assert row.bops / row.macs == 64
    ratio = sum(r.bops for r in before.values()) / sum(r.bops for r in after.values())
    assert ratio >= 16.0  # exactly 16 x the (small) extra density from weights rounded to zero


def test_scales_are_powers_of_two_and_quant_nodes_canonical(jet_q8):
    _, result = jet_q8
    quants = _quant_nodes(result.model)
    assert len(quants) == 12  # weight, bias and input of 4 layers
    for q in quants:
        assert q.domain == "qonnx.custom_op.general"
        scale = result.model.initializer(q.input[1])
        np.testing.assert_array_equal(np.log2(scale), np.round(np.log2(scale)))
        assert float(result.model.initializer(q.input[3])) == 8.0


def test_float_scales_round_within_half_a_step():
    """With float scales nothing clips: every weight moves by at most scale/2."""
    model = _three_layer()
    result = quantize(model, 6, scale="float", bias_correction=False)
    for node in result.model.graph.node:
        if node.op_type != "MatMul":
            continue
        wq = result.model.constant(node.input[1])
        quant = result.model.producer(node.input[1])
        w = result.model.initializer(quant.input[0])
        scale = float(result.model.initializer(quant.input[1]))
        assert np.abs(w).max() == pytest.approx(31 * scale, rel=1e-6)  # max|w| maps to the top code
        assert np.abs(wq - w).max() <= scale / 2 + 1e-7
        assert len(np.unique(np.round(wq / scale))) <= 63


def test_single_layer_error_within_the_quantization_steps():
    """y_q - y is bounded by the steps: |x| dw/2 + |w| dx/2 + dx dw/4 summed, plus db/2."""
    rng = np.random.default_rng(4)
    w = numpy_helper.from_array(rng.standard_normal((6, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"], name="dense"),
            helper.make_node("Add", ["h", "b"], ["y"], name="bias"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [w, b],
    )
    model = load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    x = rng.uniform(-2, 2, (500, 6)).astype(np.float32)
    result = quantize(model, 5, calibration=x, scale="float", bias_correction=False)
    steps = {q.name.split("_")[-2]: float(result.model.initializer(q.input[1])) for q in _quant_nodes(result.model)}
    dw, db, dx = steps["w"], steps["b"], steps["in"]
    wf = numpy_helper.to_array(w).astype(np.float64)
    bound = np.abs(x) @ np.full_like(wf, dw / 2) + (dx / 2) * np.abs(wf).sum(0) + wf.shape[0] * dx * dw / 4 + db / 2
    err = np.abs(predict(result.model, x) - predict(model, x))
    assert np.all(err <= bound + 1e-5)
    assert err.max() > 0  # it did quantize


def test_signed_narrow_rounding_options_reach_the_quant_nodes(jet_data):
    model = _three_layer()
    result = quantize(model, 4, calibration=jet_data[0][:300], narrow=True, rounding_mode="floor", act_signed=True)
    for q in _quant_nodes(result.model):
        attrs = {a.name: helper.get_attribute_value(a) for a in q.attribute}
        assert attrs["narrow"] == 1 and attrs["rounding_mode"] == b"FLOOR" and attrs["signed"] == 1
    for node in result.model.graph.node:
        if node.op_type == "MatMul":
            quant = result.model.producer(node.input[1])
            codes = result.model.constant(node.input[1]) / result.model.initializer(quant.input[1])
            assert codes.min() >= -7 and codes.max() <= 7  # narrow 4-bit: no -8
    unsigned = quantize(model, 4, calibration=jet_data[0][:300])
    signs = [a.i for q in _quant_nodes(unsigned.model) for a in q.attribute if a.name == "signed"]
    assert signs.count(0) == 3  # the inputs of the three layers after a ReLU


def test_per_layer_overrides_name_beats_op_type():
    model = _three_layer()
    last = [n.name for n in model.graph.node if n.op_type == "MatMul"][-1]
    first = next(n.name for n in model.graph.node if n.op_type == "MatMul")
    layers = {"MatMul": 4, last: {"weight": 6, "act": None}, first: None}
    result = quantize(model, 8, layers=layers)
    rows = {r.name: r for r in cost_report(result.model).layers if r.op == "MatMul"}
    assert rows[first].weight_dtype == "FLOAT32" and rows[first].act_dtype == "FLOAT32"
    assert result.info.float_layers == {first: "excluded by configuration"}
    middle = [name for name in rows if name not in (first, last)]
    assert all(rows[m].weight_dtype == "SCALEDINT<4>" and rows[m].act_dtype == "SCALEDINT<4>" for m in middle)
    assert rows[last].weight_dtype == "SCALEDINT<6>" and rows[last].act_dtype == "FLOAT32"
    assert rows[last].bops == rows[last].macs * 32 * 6


def test_without_data_ranges_are_estimated_and_said_so():
    model = _three_layer()
    result = quantize(model, 8)
    assert "without data" in result.info.ranges_source and "N(0, 1)" in result.info.ranges_source
    result.model.validate()
    test = np.random.default_rng(5).standard_normal((2000, 16)).astype(np.float32)
    agree = float(np.mean(predict(result.model, test).argmax(1) == predict(model, test).argmax(1)))
    assert agree >= 0.95, agree


def test_estimated_ranges_use_batchnorm_statistics():
    """After a BatchNorm the estimate is N(beta, gamma^2) per channel: +-4 gamma around beta."""
    torch = pytest.importorskip("torch")
    import tempfile

    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    net[1].weight.data = torch.tensor([1.0, 2.0, 0.5])
    net[1].bias.data = torch.tensor([0.0, 1.0, -1.0])
    with tempfile.TemporaryDirectory() as tmp:
        torch.onnx.export(net.eval(), torch.zeros(1, 4), f"{tmp}/bn.onnx", dynamo=False, do_constant_folding=False)
        model = load(f"{tmp}/bn.onnx")
    est = estimate_ranges(model)
    lo, hi = est.range(model.outputs[0])
    assert lo == pytest.approx(-7.0) and hi == pytest.approx(9.0)  # min(beta - 4 gamma), max(beta + 4 gamma)


def test_calibration_from_a_data_loader_matches_array(jet_data):
    model = _three_layer()
    x = jet_data[0][:600]
    whole = calibrate(model, x)
    loader = [(x[i : i + 100], np.zeros(100)) for i in range(0, 600, 100)]
    batched = calibrate(model, loader)
    assert whole.samples == batched.samples == 600
    for name, rng in whole.ranges.items():
        assert batched.ranges[name] == pytest.approx(rng)


def test_calibration_on_a_graph_that_pins_batch_one():
    """keras' Flatten is a Reshape to (1, -1): batched runs fail, samples run one by one."""
    model = load(shared_path("models", "fastmachinelearning+example-models", "onnx", "conv2d_small_keras.onnx"))
    x = np.random.default_rng(0).standard_normal((6, *model.shape(model.inputs[0])[1:])).astype(np.float32)
    cal = calibrate(model, x)
    assert cal.samples == 6 and model.outputs[0] in cal.ranges


def test_requantize_tfc_same_width_is_the_same_function():
    """TFC_2W2A re-quantized to 2 bits predicts exactly as before; to 4 bits it is 4-bit."""
    model = _tfc()
    x, y = _mnist(500)
    ref = predict(model, x)
    same = quantize(model, 2)
    assert sorted(same.info.requantized) == ["MatMul_20", "MatMul_32", "MatMul_44", "MatMul_56"]
    np.testing.assert_array_equal(predict(same.model, x).argmax(1), ref.argmax(1))
    four = quantize(model, 4, calibration=x)
    rows = [r for r in cost_report(four.model).layers if r.op == "MatMul"]
    assert {r.weight_dtype for r in rows} == {"SCALEDINT<4>"}
    assert all(r.act_dtype in ("SCALEDINT<4>", "INT4") for r in rows)
    assert float(np.mean(predict(four.model, x).argmax(1) == y)) > 0.9


def test_activation_times_activation_is_reported_float():
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    nodes = [
        helper.make_node("MatMul", ["a", "w"], ["h"], name="dense"),
        helper.make_node("MatMul", ["h", "b"], ["y"], name="attention"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [4, 3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [w],
    )
    model = load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    result = quantize(model, 8)
    assert result.info.float_layers == {"attention": "weights are not static (activation x activation product)"}
    assert "dense" in result.info.layers
    result.model.validate()


def test_conv_model_quantizes_and_runs():
    torch = pytest.importorskip("torch")
    import tempfile

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 6 * 6, 3),
    )
    with tempfile.TemporaryDirectory() as tmp:
        torch.onnx.export(net.eval(), torch.zeros(1, 1, 8, 8), f"{tmp}/c.onnx", dynamo=False, do_constant_folding=False)
        model = load(f"{tmp}/c.onnx")
    x = np.random.default_rng(0).standard_normal((64, 1, 8, 8)).astype(np.float32)
    result = quantize(model, 8, calibration=x, per_channel=True)
    result.model.validate()
    assert result.info.folded_batchnorm and "BatchNormalization" not in [n.op_type for n in result.model.graph.node]
    conv_w = next(result.model.producer(n.input[1]) for n in result.model.graph.node if n.op_type == "Conv")
    assert result.model.initializer(conv_w.input[1]).shape == (4, 1, 1, 1)  # per output channel
    out, ref = predict(result.model, x), predict(model, x)
    assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max()


def test_quantized_file_runs_in_plain_qonnx(jet_q8, tmp_path):
    """The written file needs only qonnx (no codesign import) to execute identically."""
    _, result = jet_q8
    path = result.model.save(tmp_path / "q8.onnx")
    x = np.random.default_rng(9).standard_normal((1, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    expected = execute(result.model, x)[result.model.outputs[0]]
    script = (
        "import sys, numpy as np\n"
        "from qonnx.core.modelwrapper import ModelWrapper\n"
        "from qonnx.core.onnx_exec import execute_onnx\n"
        f"m = ModelWrapper({str(path)!r})\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        "out = execute_onnx(m, {m.graph.input[0].name: x})[m.graph.output[0].name]\n"
        f"np.save({str(tmp_path / 'out.npy')!r}, out)\n"
        "assert 'codesign' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, capture_output=True)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-6)


# ------------------------------------------------------------------ CLI
def test_cli_quantize(tmp_path, jet_data):
    src = shared_path("models", "fastmachinelearning+example-models", "onnx", "three_layer_keras.onnx")
    np.save(tmp_path / "calib.npy", jet_data[0][:500])
    last = [n.name for n in _three_layer().graph.node if n.op_type == "MatMul"][-1]
    out = tmp_path / "q.onnx"
    res = CliRunner().invoke(
        app,
        [
            "quantize",
            str(src),
            "-o",
            str(out),
            "--bits",
            "8",
            "--layer",
            f"{last}=4",
            "--calib",
            str(tmp_path / "calib.npy"),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["layers"][last] == {"weight": 4, "bias": 4, "act": 4}
    assert summary["ranges"].startswith("calibration data (500 samples)")
    assert summary["bops_mac_before"] / summary["bops_mac_after"] > 16
    model = load(out)
    assert len(_quant_nodes(model)) == 12


@pytest.mark.parametrize(
    "args, message",
    [
        (["--layer", "nonsense"], "expected NAME=BITS"),
        (["--layer", "Softmax=4"], "no MatMul/Gemm/Conv layer"),
        (["--calib", "/nonexistent/calib.npy"], "no such file"),
        (["--bits", "0"], "bit width must be"),
        (["--scale", "log"], "scale must be one of"),
    ],
)
def test_cli_quantize_errors(tmp_path, args, message):
    src = shared_path("models", "fastmachinelearning+example-models", "onnx", "three_layer_keras.onnx")
    out = tmp_path / "q.onnx"
    res = CliRunner().invoke(app, ["quantize", str(src), "-o", str(out), *args])
    assert res.exit_code == 2
    assert message in res.output and len(res.output.strip().splitlines()) == 1
    assert not out.exists()


def test_quant_config_rejects_bad_values():
    from codesign.errors import CodesignError

    with pytest.raises(CodesignError):
        QuantConfig(rounding_mode="STOCHASTIC")
    with pytest.raises(CodesignError):
        Quantize(QuantConfig(layers={"MatMul": {"weights": 4}}))(_three_layer())


@pytest.mark.slow
def test_quantized_mlp_is_bit_exact_in_hls4ml_csim(tmp_path):
    """End to end: a torch MLP quantized here compiles bit-exact in hls4ml's C simulation."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    torch.onnx.export(net.eval(), torch.zeros(1, 10), str(tmp_path / "mlp.onnx"), dynamo=False)
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).standard_normal((500, 10)).astype(np.float32))
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "quantize",
            str(tmp_path / "mlp.onnx"),
            "-o",
            str(tmp_path / "q.onnx"),
            "--calib",
            str(tmp_path / "calib.npy"),
        ],
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app, ["compile", str(tmp_path / "q.onnx"), "-t", "vu9p", "-o", str(tmp_path / "prj"), "--verify"]
    )
    assert res.exit_code == 0, res.output
    assert "bit-exact" in res.output
