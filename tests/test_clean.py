"""Fold/clean passes preserve the function exactly (reference execution before/after)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import shared_path, tfc_path
from onnx import TensorProto, helper, numpy_helper

from codesign.backends.reference import execute
from codesign.frontends import load
from codesign.ir.model import Model
from codesign.passes.clean import (
    FoldBatchNorm,
    FoldConstantsPass,
    GemmToMatMul,
    RemoveIdentity,
    ToChannelsLast,
    clean,
)

CHANNELS_LAST = "qonnx.custom_op.channels_last"


def _tfc() -> Model:
    return load(tfc_path("TFC_2W2A"))


def _ops(model: Model) -> list[str]:
    return [n.op_type for n in model.graph.node]


def _assert_same(before: Model, after: Model, n: int = 8, atol: float = 1e-5, seed: int = 0) -> None:
    """Reference outputs agree on ``n`` random inputs, and the result is valid IR."""
    after.validate()
    rng = np.random.default_rng(seed)
    feeds = {i: rng.standard_normal((n, *before.shape(i)[1:])).astype(np.float32) for i in before.inputs}
    ref, out = execute(before, feeds), execute(after, feeds)
    assert set(after.outputs) == set(before.outputs)
    for name in before.outputs:
        np.testing.assert_allclose(out[name], ref[name], atol=atol, rtol=1e-5)


def _export(module, shape, path) -> Model:
    import torch

    torch.onnx.export(
        module.eval(), torch.randn(*shape), str(path), dynamo=False, opset_version=13, do_constant_folding=False
    )
    return load(path)


def _randomize_bn(module) -> None:
    import torch

    torch.manual_seed(0)
    for m in module.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 2)
            m.bias.data.uniform_(-1, 1)


@pytest.fixture(scope="module")
def torch_models(tmp_path_factory):
    """Small torch models exported without constant folding (BatchNorm stays a node)."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("clean")

    class BNMlp(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn_in, self.l1, self.bn1 = nn.BatchNorm1d(6), nn.Linear(6, 8), nn.BatchNorm1d(8)
            self.l2, self.bn2 = nn.Linear(8, 4, bias=False), nn.BatchNorm1d(4)

        def forward(self, x):
            return self.bn2(self.l2(torch.relu(self.bn1(self.l1(self.bn_in(x))))))

    class BNConv(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.bn1 = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
            self.c2, self.bn2 = nn.Conv2d(4, 2, 3, padding=1, bias=False), nn.BatchNorm2d(2)

        def forward(self, x):
            return self.bn2(self.c2(torch.relu(self.bn1(self.c1(x)))))

    class ConvBias(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 3), nn.Linear(4 * 6 * 6, 5)

        def forward(self, x):
            return self.fc(torch.flatten(torch.relu(self.c2(torch.relu(self.c1(x)))), 1))

    class ForkToOutput(nn.Module):
        """An intermediate tensor is a graph output and also feeds the next conv."""

        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 2, 3, padding=1)

        def forward(self, x):
            y = torch.relu(self.c1(x))
            return y, self.c2(y)

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 1)
            self.pool = nn.MaxPool2d(2)

        def forward(self, x):
            return self.pool(torch.relu(self.c2(torch.relu(self.c1(x))) + x))

    models = {}
    for name, module, shape in [
        ("bnmlp", BNMlp(), (1, 6)),
        ("bnconv", BNConv(), (1, 3, 8, 8)),
        ("convbias", ConvBias(), (1, 3, 8, 8)),
        ("fork", ForkToOutput(), (1, 3, 8, 8)),
        ("residual", Residual(), (1, 4, 8, 8)),
    ]:
        _randomize_bn(module)
        models[name] = _export(module, shape, out / f"{name}.onnx")
    return models


# ------------------------------------------------------------------ BatchNorm
def test_fold_batchnorm_into_gemm_and_matmul(torch_models):
    model = torch_models["bnmlp"]
    assert _ops(model).count("BatchNormalization") == 3
    result = FoldBatchNorm()(model)
    _assert_same(model, result.model)
    # the two BNs after a linear layer fold; the input BN has no producer to fold into
    assert len(result.info.folded) == 2 and len(result.info.kept) == 1
    assert _ops(result.model).count("BatchNormalization") == 1
    assert "Gemm" in _ops(result.model) and "MatMul" in _ops(result.model)  # bias-free Linear got an Add


def test_fold_batchnorm_into_conv(torch_models):
    model = torch_models["bnconv"]
    result = FoldBatchNorm()(model)
    _assert_same(model, result.model)
    assert _ops(result.model) == ["Conv", "Relu", "Conv"]
    conv2 = result.model.graph.node[2]
    assert len(conv2.input) == 3  # a bias was created for the bias-free conv


def test_fold_batchnorm_quantized_weights_kept_or_affine():
    """TFC's BNs follow weight-quantized MatMuls: folding would change the quantized
    weights, so they are kept, or become an exact Mul+Add with to_affine."""
    model = _tfc()
    kept = FoldBatchNorm()(model)
    assert not kept.modified and len(kept.info.kept) == 3
    affine = FoldBatchNorm(to_affine=True)(model)
    assert len(affine.info.affine) == 3 and "BatchNormalization" not in _ops(affine.model)
    _assert_same(model, affine.model, n=4)


# ------------------------------------------------------------------ Gemm
def test_gemm_to_matmul_three_layer_pytorch():
    model = load(shared_path("models", "fastmachinelearning+example-models", "onnx", "three_layer_pytorch.onnx"))
    result = GemmToMatMul()(model)
    assert "Gemm" not in _ops(result.model)
    assert _ops(result.model).count("MatMul") == 4 and _ops(result.model).count("Add") == 4
    assert "Transpose" not in _ops(result.model) and "Mul" not in _ops(result.model)  # qonnx leftovers folded
    _assert_same(model, result.model)


def test_gemm_without_bias_alpha_transb():
    """Gemm with no C input (legal since opset 11) makes qonnx's GemmToMatMul fail."""
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.standard_normal((3, 5)).astype(np.float32), "w")
    node = helper.make_node("Gemm", ["x", "w"], ["y"], name="gemm", alpha=0.5, transB=1)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [w],
    )
    model = load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    result = GemmToMatMul()(model)
    assert "Gemm" not in _ops(result.model)
    _assert_same(model, result.model)


def test_gemm_to_matmul_with_quantized_weights(torch_models):
    """Quant -> Transpose (transB) is folded into the quantizer's initializer."""
    from codesign.passes.quantize import quantize

    x = np.random.default_rng(3).standard_normal((32, 3, 8, 8)).astype(np.float32)
    quantized = quantize(torch_models["convbias"], 6, calibration=x, per_channel=True).model
    result = GemmToMatMul()(quantized)
    assert "Gemm" not in _ops(result.model) and "Transpose" not in _ops(result.model)
    _assert_same(quantized, result.model)


# ------------------------------------------------------------------ identity / constants
def test_remove_identity_and_dropout():
    rng = np.random.default_rng(2)
    w = numpy_helper.from_array(rng.standard_normal((4, 4)).astype(np.float32), "w")
    one = numpy_helper.from_array(np.ones((4,), np.float32), "one")
    nodes = [
        helper.make_node("Identity", ["x"], ["a"], name="id0"),
        helper.make_node("MatMul", ["a", "w"], ["b"], name="mm"),
        helper.make_node("Dropout", ["b"], ["c"], name="drop"),
        helper.make_node("Mul", ["c", "one"], ["d"], name="times_one"),
        helper.make_node("Identity", ["d"], ["y"], name="id_out"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [w, one],
    )
    model = load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    result = RemoveIdentity()(model)
    assert _ops(result.model) == ["MatMul"]
    assert result.model.outputs == ["y"]  # graph output name survives
    assert sorted(result.info["removed"]) == ["drop", "id0", "id_out", "times_one"]
    _assert_same(model, result.model)


def test_remove_identity_keras_conv():
    path = shared_path("models", "fastmachinelearning+example-models", "onnx", "conv2d_small_keras.onnx")
    model = load(path)
    assert "Identity" in _ops(model)
    result = RemoveIdentity()(model)
    assert "Identity" not in _ops(result.model)
    _assert_same(model, result.model, n=1)  # this keras export hard-codes batch 1 in its Reshape


def test_fold_constants_folds_weight_quantizers_on_request():
    model = _tfc()
    kept = FoldConstantsPass()(model)
    assert _ops(kept.model).count("Quant") == 8
    folded = FoldConstantsPass(fold_quantizers=True)(model)
    assert _ops(folded.model).count("Quant") == 4  # the 4 weight quantizers became initializers
    _assert_same(model, folded.model, n=4)


# ------------------------------------------------------------------ channels-last
def test_channels_last_conv_with_bias(torch_models):
    model = torch_models["convbias"]
    result = ToChannelsLast()(model)
    convs = [n for n in result.model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 2 and all(n.domain == CHANNELS_LAST for n in convs)
    assert all(len(n.input) == 3 and result.model.shape(n.input[2]) in ((8,), (4,)) for n in convs)
    _assert_same(model, result.model)


def test_channels_last_branch_to_graph_output(torch_models):
    """qonnx asserts 'Must have >1 consumer' when a fork also feeds a graph output."""
    model = torch_models["fork"]
    result = ToChannelsLast()(model)
    assert result.info["isolated_outputs"]
    assert any(n.domain == CHANNELS_LAST for n in result.model.graph.node)
    _assert_same(model, result.model)


def test_channels_last_residual_join(torch_models):
    model = torch_models["residual"]
    result = ToChannelsLast()(model)
    assert [n.domain for n in result.model.graph.node if n.op_type == "MaxPool"] == [CHANNELS_LAST]
    _assert_same(model, result.model)


def test_channels_last_conv_with_auto_pad_same():
    """qonnx's channels-last Conv needs explicit pads; SAME_UPPER is spelled out first."""
    rng = np.random.default_rng(7)
    w = numpy_helper.from_array(rng.standard_normal((4, 2, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", auto_pad="SAME_UPPER", strides=[2, 2])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 7, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])],
        [w, b],
    )
    model = load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    result = ToChannelsLast()(model)
    assert result.info["verified"]
    _assert_same(model, result.model)


def test_channels_last_real_qonnx_testcase_is_fast_and_verified():
    """qonnx's own eltwise testcase (224x224): its InferShapes made this take ~14 s."""
    import time

    path = shared_path(
        "models", "fastmachinelearning+qonnx", "src", "qonnx", "data", "onnx", "eltwise_chanlast_testcase.onnx"
    )
    model = load(path)
    start = time.perf_counter()
    result = ToChannelsLast()(model)
    assert time.perf_counter() - start < 60.0  # a hang guard; speed lives in benchmarks/
    assert result.info["verified"]
    assert [n.domain for n in result.model.graph.node if n.op_type == "Conv"] == [CHANNELS_LAST]


def test_channels_last_failure_is_one_line():
    """mnist-conv (opset 8): qonnx inserts opset-13 Unsqueeze nodes -> a clear refusal."""
    from codesign.errors import UnsupportedModelError

    path = shared_path(
        "models", "fastmachinelearning+qonnx", "src", "qonnx", "data", "onnx", "mnist-conv", "model.onnx"
    )
    with pytest.raises(UnsupportedModelError, match="^channels-last conversion failed: ") as exc:
        ToChannelsLast()(load(path))
    assert "\n" not in str(exc.value)


# ------------------------------------------------------------------ composed
@pytest.mark.parametrize("name", ["bnmlp", "bnconv", "convbias"])
def test_clean_composed(torch_models, name):
    model = torch_models[name]
    result = clean()(model)
    ops = _ops(result.model)
    assert "Gemm" not in ops and "Identity" not in ops
    _assert_same(model, result.model)


def test_clean_three_layer_keras_is_identity_function():
    model = load(shared_path("models", "fastmachinelearning+example-models", "onnx", "three_layer_keras.onnx"))
    result = clean()(model)
    assert _ops(result.model) == _ops(model)
    _assert_same(model, result.model)


def test_passes_run_inside_qonnx_flow(torch_models):
    """A codesign pass is usable as a qonnx Transformation on a ModelWrapper."""
    model = torch_models["bnconv"]
    wrapper = model.copy().wrapper.transform(FoldBatchNorm().as_qonnx())
    assert "BatchNormalization" not in [n.op_type for n in wrapper.graph.node]
    assert isinstance(wrapper.model, onnx.ModelProto)
