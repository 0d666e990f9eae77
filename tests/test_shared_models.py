"""Every real model in ../shared loads, normalises, validates and costs; golden numbers."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from conftest import all_shared_models, require_shared, shared_path, tfc_path

import codesign
from codesign.backends.reference import execute, predict
from codesign.errors import UnsupportedModelError
from codesign.passes.cost import cost_report

CYBSEC = "cybsec_PE_SIMD.onnx"


def is_lstm(path) -> bool:
    """onnx's test_lstm_defaults: loads and inspects; the cost pass lists LSTM as uncounted (backends refuse it)."""
    return path.parent.name == "test_lstm_defaults"


@pytest.mark.parametrize("path", all_shared_models(), ids=lambda p: p.name)
def test_every_shared_model_loads_and_costs(path):
    if path.name == CYBSEC:
        with pytest.raises(UnsupportedModelError, match="FINN hardware-layer graph.*MVAU_hls"):
            codesign.load(path)
        return
    model = codesign.load(path)
    model.validate()
    for name in model.inputs:
        shape = model.shape(name)
        assert shape is not None and shape[0] in (1, 64), (name, shape)
    report = cost_report(model)
    if is_lstm(path):
        assert report.unsupported == ["LSTM"] and report.macs == 0
    else:
        assert report.macs > 0 and report.bops >= report.macs
    assert len({n.name for n in model.nodes}) == len(model.nodes)


# Golden totals: qonnx inference_cost(discount_sparsity=True) on the same files (qonnx 1.0).
# The pytorch exports fix their batch at 789444; qonnx costs that batch, the IR costs one
# sample, so qonnx's numbers are exactly 789444x ours.
GOLDEN = {
    "TFC_1W1A.onnx": (59008, 59008),
    "TFC_1W2A.onnx": (118016, 59008),
    "TFC_2W2A.onnx": (89420, 22355),
    "kwsmlp_w3a3.onnx": (3324993, 204757),
    "qkeras_jettagging.onnx": (228768, 2706),
    "bnn_model_fc_1layer.onnx": (12, 12),
    "eltwise_chanlast_testcase.onnx": (1864118016, 7281711),
    "qonnx_act_weight_fp8.onnx": (49152, 48),
    "three_layer_keras.onnx": (4358144, 4256),
    "conv2d_small_mp_keras.onnx": (20567040, 20085),
    "three_layer_pytorch.onnx": (3440510631936 / 789444, 3359873664 / 789444),
}


@pytest.mark.parametrize("name,golden", sorted(GOLDEN.items()))
def test_bops_macs_golden(name, golden):
    require_shared()
    path = next(p for p in all_shared_models() if p.name == name)
    report = cost_report(codesign.load(path))
    assert report.bops == pytest.approx(golden[0], rel=1e-9)
    assert report.macs == pytest.approx(golden[1], rel=1e-9)


QUANTIZED = ["TFC_1W1A.onnx", "TFC_2W2A.onnx", "kwsmlp_w3a3.onnx", "qkeras_jettagging.onnx", "bnn_model_fc_1layer.onnx",
             "eltwise_chanlast_testcase.onnx", "qonnx_act_weight_fp8.onnx", "model.onnx"]  # fmt: skip


@pytest.mark.parametrize("name", QUANTIZED)
def test_bops_macs_equal_qonnx_inference_cost_live(name):
    """Against qonnx's own analysis run now, per layer and in total (incl. weight memory)."""
    require_shared()
    from qonnx.util.inference_cost import inference_cost

    path = next(p for p in all_shared_models() if p.name == name and "separable" not in p.name)
    ours = cost_report(codesign.load(path))
    theirs = inference_cost(str(path), discount_sparsity=True)["total_cost"]
    assert ours.bops == pytest.approx(theirs["total_bops"], rel=1e-9)
    assert ours.macs == pytest.approx(theirs["total_macs"], rel=1e-9)
    assert ours.total("weight_bits") == pytest.approx(theirs["total_mem_w_bits"], rel=1e-9)


def test_nac_bops_adds_accumulator_term():
    model = codesign.load(tfc_path("TFC_2W2A"))
    q, nac = cost_report(model, "qonnx"), cost_report(model, "nac")
    # first layer: 784 -> 64, INT2 x INT2, density d: m*n*(d*4 + 2 + 2 + log2 784)
    first = next(layer for layer in nac.layers if layer.macs)
    d = first.macs / (784 * 64)
    assert first.bops == pytest.approx(64 * 784 * (d * 4 + 4 + np.log2(784)))
    assert nac.bops > q.bops


def _mnist():
    from codesign.search.data import load_mnist_idx

    x, y = load_mnist_idx(
        shared_path("data", "mnist", "t10k-images-idx3-ubyte.gz"),
        shared_path("data", "mnist", "t10k-labels-idx1-ubyte.gz"),
    )
    return (x.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28), y


@pytest.mark.parametrize("name,accuracy", [("TFC_1W1A", 0.9296), ("TFC_1W2A", 0.9474), ("TFC_2W2A", 0.9660)])
def test_tfc_reproduces_published_mnist_accuracy(name, accuracy):
    """All 10k t10k images through the IR's reference execution (~1 s each)."""
    x, y = _mnist()
    model = codesign.load(tfc_path(name))
    pred = predict(model, x, batch=2000).argmax(axis=1)
    assert (pred == y).mean() == pytest.approx(accuracy, abs=1e-9)


def test_finn_build_dataflow_model_gives_7210():
    folder = shared_path("models", "Xilinx+finn", "src", "finn", "qnn-data", "build_dataflow")
    model = codesign.load(folder / "model.onnx")
    x = np.load(folder / "input.npy")
    out = execute(model, x)[model.outputs[0]]
    assert out.flatten().tolist() == [7, 2, 1, 0]
    assert np.array_equal(out.flatten(), np.load(folder / "expected_output.npy").flatten())


def test_mnist_conv_matches_output_pb():
    folder = shared_path("models", "fastmachinelearning+qonnx", "src", "qonnx", "data", "onnx", "mnist-conv")
    model = codesign.load(folder / "model.onnx")
    read = lambda p: onnx.numpy_helper.to_array(onnx.load_tensor(str(p)))
    out = execute(model, read(folder / "test_data_set_0" / "input_0.pb"))[model.outputs[0]]
    np.testing.assert_allclose(out, read(folder / "test_data_set_0" / "output_0.pb"), atol=1e-3)


def test_kws_mlp_argmax_is_3():
    x = np.load(shared_path("models", "Xilinx+finn-examples", "build", "kws", "input.npy")).astype(np.float32)
    model = codesign.load(shared_path("models", "fastmachinelearning+qonnx_model_zoo", "models", "GSCV2", "kwsmlp_w3a3",
                                      "kwsmlp_w3a3.onnx"))  # fmt: skip
    out = execute(model, x.reshape(model.shape(model.inputs[0])))[model.outputs[0]]
    assert int(out.argmax()) == 3


def test_bnn_one_layer_matches_qonnx_on_all_8_inputs():
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    path = shared_path("models", "fastmachinelearning+example-models", "onnx", "bnn_model_fc_1layer.onnx")
    model = codesign.load(path)
    xs = np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)], dtype=np.float32)
    ours = execute(model, xs)[model.outputs[0]]
    ref = cleanup_model(ModelWrapper(str(path)))
    theirs = np.concatenate(
        [execute_onnx(ref, {ref.graph.input[0].name: x[None]})[ref.graph.output[0].name] for x in xs]
    )
    assert np.array_equal(ours, theirs)


def test_floatquant_fp8_matches_test_data_exactly():
    folder = shared_path("models", "fastmachinelearning+qonnx", "src", "qonnx", "data", "onnx", "floatquant_exec")
    model = codesign.load(folder / "qonnx_act_weight_fp8.onnx")
    x = np.load(folder / "test_data" / "input.npy")
    out = execute(model, x)[model.outputs[0]]
    assert np.array_equal(out, np.load(folder / "test_data" / "output.npy"))


def test_pytorch_export_rebatched_to_one_and_runs():
    path = shared_path("models", "fastmachinelearning+example-models", "onnx", "three_layer_pytorch.onnx")
    model = codesign.load(path)
    assert model.shape(model.inputs[0]) == (1, 16)
    import onnxruntime as ort

    x = np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # the original file only accepts its fixed batch; compare row-wise through a padded batch
    big = np.zeros((789444, 16), dtype=np.float32)
    big[:5] = x
    expect = sess.run(None, {sess.get_inputs()[0].name: big})[0][:5]
    np.testing.assert_allclose(execute(model, x)[model.outputs[0]], expect, rtol=1e-5, atol=1e-6)


def test_separable_channels_last_loads_fast_and_costs_depthwise_correctly():
    """qonnx's own inference_cost fails here (assumes channels-first); ours reads NHWC."""
    import time

    path = shared_path("models", "fastmachinelearning+example-models", "onnx", "separable_conv_model_ch_last.onnx")
    t0 = time.perf_counter()
    model = codesign.load(path)
    assert time.perf_counter() - t0 < 10  # qonnx InferShapes alone takes ~30 s on this file
    convs = [layer for layer in cost_report(model).layers if layer.op == "Conv"]
    assert [c.out_shape[-1] for c in convs] == [3, 16, 16, 16]
    # depthwise 3x3 over 3 channels, 512x512 'same' output: 3*9*512*512 MACs
    assert convs[0].macs == pytest.approx(
        3 * 9 * 512 * 512 * (np.count_nonzero(model.constant(model.node(convs[0].name).input[1])) / 27)
    )


def test_inspect_cli_json_on_every_model(tmp_path):
    require_shared()
    for path in all_shared_models():
        proc = subprocess.run([sys.executable, "-m", "codesign.cli", "inspect", str(path), "--json"],
                              capture_output=True, text=True)  # fmt: skip
        if path.name == CYBSEC:
            assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "FINN hardware-layer" in proc.stderr
            continue
        assert proc.returncode == 0, (path.name, proc.stderr)
        payload = json.loads(proc.stdout)
        assert payload["totals"]["macs"] > 0 or is_lstm(path), path


def test_keras_transposed_batchnorm_becomes_per_feature_affine():
    """three_layer_bn_keras wraps each BatchNorm in Transposes onnxruntime rejects; the IR
    computes the intended per-feature BatchNorm (checked against plain numpy)."""
    path = shared_path("models", "fastmachinelearning+example-models", "onnx", "three_layer_bn_keras.onnx")
    model = codesign.load(path)
    assert "BatchNormalization" not in [n.op_type for n in model.nodes]
    assert "Transpose" not in [n.op_type for n in model.nodes]
    raw = {t.name: onnx.numpy_helper.to_array(t).astype(np.float64) for t in onnx.load(str(path)).graph.initializer}
    x = np.random.default_rng(0).normal(size=(8, 16))
    h = x
    for k, suffix in enumerate(["", "1", "2", "3"]):
        h = h @ raw[f"W{suffix}"] + raw[f"B{suffix}"]  # Gemm, transB=0
        h = (h - raw[f"mean{suffix}"]) / np.sqrt(raw[f"var{suffix}"] + 1e-9) * raw[f"scale{suffix}"] + raw[
            f"bias{suffix}"
        ]
        h = (
            np.maximum(h, 0)
            if k < 3
            else np.exp(h - h.max(1, keepdims=True)) / np.exp(h - h.max(1, keepdims=True)).sum(1, keepdims=True)
        )
    np.testing.assert_allclose(execute(model, x.astype(np.float32))[model.outputs[0]], h, rtol=1e-4, atol=1e-6)
