"""N:M pattern pruning and L1/L2-ranked channel pruning on the IR, their estimated resources, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from codesign.backends.reference import predict
from codesign.cli import app
from codesign.errors import CodesignError
from codesign.frontends import load
from codesign.passes.cost import cost_report
from codesign.passes.prune import _in_axis
from codesign.passes.prune_nm import NMPrune, estimated_resources, nm_mask, norm_prune, parse_pattern
from codesign.passes.quantize import quantize


def _layers(model):
    return [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm", "Conv")]


def _export(tmp_path, net, shape, name="m.onnx"):
    torch = pytest.importorskip("torch")
    path = tmp_path / name
    torch.onnx.export(net.eval(), torch.zeros(*shape), str(path), dynamo=False, opset_version=13)
    return path


@pytest.fixture
def mlp(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    nn = torch.nn
    net = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 3))
    path = _export(tmp_path, net, (1, 12))
    return load(path), path


def _groups_ok(w: np.ndarray, axis: int, n: int, m: int) -> bool:
    moved = np.moveaxis(w, axis, -1).reshape(-1, w.shape[axis])
    return all(np.count_nonzero(moved[:, i : i + m], axis=1).max() <= n for i in range(0, moved.shape[1], m))


def test_nm_mask_known_values():
    w = np.array([[0.1, -0.9, 0.5, 0.2, 3.0, 1.0], [1.0, 1.0, 1.0, 1.0, -2.0, 0.0]])
    drop = nm_mask(w, axis=1, n=2, m=4)
    # group 1 keeps |-0.9|, 0.5 (row 0) and the first two tied ones (row 1); the short group of 2 is kept
    assert drop.tolist() == [[True, False, False, True, False, False], [False, False, True, True, False, False]]


@pytest.mark.parametrize("n, m", [(2, 4), (1, 4), (1, 2), (3, 8)])
def test_nm_exact_structure_and_keeps_largest(mlp, n, m):
    model, _ = mlp
    result = NMPrune(n, m)(model)
    result.model.validate()
    for before, after in zip(_layers(model), _layers(result.model)):
        w0, w = model.constant(before.input[1]), result.model.constant(after.input[1])
        axis = _in_axis(after, w.ndim)
        assert _groups_ok(w, axis, n, m)
        # the kept ones are exactly the unchanged originals; zeroed ones are the smallest of their group
        kept = w != 0
        np.testing.assert_array_equal(w[kept], w0[kept])
        np.testing.assert_array_equal(kept, ~nm_mask(w0, axis, n, m))
    # every full group of m loses m-n: the first layer's 12 inputs are three full groups (when m divides 12)
    first = result.info.layers[_layers(model)[0].name]
    if 12 % m == 0:
        assert first["after"] == pytest.approx(1 - n / m)
    assert cost_report(result.model).totals["sparsity"] > cost_report(model).totals["sparsity"]


def test_nm_identity_when_n_equals_m(mlp):
    model, _ = mlp
    x = np.random.default_rng(0).standard_normal((32, 12)).astype(np.float32)
    result = NMPrune(4, 4)(model)
    assert not result.modified
    np.testing.assert_array_equal(predict(result.model, x), predict(model, x))


def test_nm_conv_groups_along_input_channels(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(8, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 4))
    model = load(_export(tmp_path, net, (1, 8, 6, 6)))
    result = NMPrune(2, 4)(model)
    conv = _layers(result.model)[0]
    w = result.model.constant(conv.input[1])
    assert w.shape == (6, 8, 3, 3) and _groups_ok(w, 1, 2, 4)
    assert np.count_nonzero(w) == w.size // 2
    x = np.random.default_rng(0).standard_normal((4, 8, 6, 6)).astype(np.float32)
    ref = model.copy()
    for node in _layers(ref):
        wr = ref.constant(node.input[1])
        ref.set_initializer(
            node.input[1], np.where(nm_mask(wr, _in_axis(node, wr.ndim), 2, 4), 0.0, wr).astype(wr.dtype)
        )
    np.testing.assert_allclose(predict(result.model, x), predict(ref, x), atol=1e-5)


def test_nm_on_quantized_model_lowers_estimated_luts(mlp):
    model, _ = mlp
    q = quantize(model, bits=8).model
    before = estimated_resources(q)
    result = NMPrune(2, 4)(q)
    for node in _layers(result.model):
        w = result.model.constant(node.input[1])
        assert _groups_ok(w, _in_axis(node, w.ndim), 2, 4)
    after = estimated_resources(result.model)
    assert after["LUT"] < 0.75 * before["LUT"] and after["FF"] < before["FF"]


def test_norm_ranking_removes_lowest_norm_channels(tmp_path):
    """L1 and L2 rank differently: one channel has a large L1 but small L2 norm and vice versa."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    w = torch.tensor(
        [[1.0, 1.0, 1.0, 1.0],  # L1 4.0, L2 2.0
         [3.0, 0.0, 0.0, 0.0],  # L1 3.0, L2 3.0
         [0.1, 0.1, 0.0, 0.0],  # smallest in both
         [5.0, 5.0, 0.0, 0.0]]  # largest in both
    )  # fmt: skip
    with torch.no_grad():
        net[0].weight.copy_(w)
    model = load(_export(tmp_path, net, (1, 4)))
    first = _layers(model)[0].name
    l1 = norm_prune(0.5, "l1")(model)
    l2 = norm_prune(0.5, "l2")(model)
    assert l1.info.layers[first]["removed"] == [1, 2]
    assert l2.info.layers[first]["removed"] == [0, 2]
    assert _layers(l2.model)[0] is not None
    assert l2.model.constant(_layers(l2.model)[0].input[1]).shape in ((2, 4), (4, 2))
    assert cost_report(l2.model).macs < cost_report(model).macs


def test_norm_prune_zero_is_identity_and_shrinks_estimate(mlp):
    model, _ = mlp
    x = np.random.default_rng(0).standard_normal((16, 12)).astype(np.float32)
    same = norm_prune(0.0, "l2")(model)
    np.testing.assert_allclose(predict(same.model, x), predict(model, x), atol=1e-6)
    q = quantize(model, bits=8).model
    pruned = norm_prune(0.5, "l2")(q)
    assert [len(v["removed"]) for v in pruned.info.layers.values()] == [16, 8]
    assert estimated_resources(pruned.model)["LUT"] < 0.6 * estimated_resources(q)["LUT"]


@pytest.mark.parametrize("spec", ["2-4", "5:4", "0:4", "a:b"])
def test_parse_pattern_errors(spec):
    with pytest.raises(CodesignError, match="pattern"):
        parse_pattern(spec)


def test_norm_prune_rejects_unknown_norm():
    with pytest.raises(CodesignError, match="norm must be"):
        norm_prune(0.5, "linf")


def test_cli_pattern_and_norm(mlp, tmp_path):
    _, path = mlp
    out = tmp_path / "nm.onnx"
    res = CliRunner().invoke(
        app, ["prune", str(path), "-o", str(out), "--pattern", "2:4", "--estimate", "vu13p", "--json"]
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    pruned = load(out)
    for node in _layers(pruned):
        w = pruned.constant(node.input[1])
        assert _groups_ok(w, _in_axis(node, w.ndim), 2, 4)
    assert summary["weight_sparsity"] == pytest.approx(0.5)
    assert summary["estimate"]["after"]["DSP"] < summary["estimate"]["before"]["DSP"]
    out2 = tmp_path / "l2.onnx"
    res = CliRunner().invoke(
        app, ["prune", str(path), "-o", str(out2), "--sparsity", "0.5", "--structured", "--norm", "l2"]
    )
    assert res.exit_code == 0, res.output
    assert "removed 16 of 32 channels" in res.output
    assert load(out2).constant(_layers(load(out2))[0].input[1]).shape in ((16, 12), (12, 16))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--pattern", "2:4", "--sparsity", "0.5"], "fixes the sparsity"),
        (["--pattern", "9:4"], "need 0 < N <= M"),
        (["--sparsity", "0.5", "--norm", "l2"], "needs --structured"),
        (["--sparsity", "0.5", "--structured", "--norm", "l3"], "criterion must be"),
        ([], "give --sparsity"),
    ],
)
def test_cli_pattern_errors(mlp, tmp_path, args, message):
    _, path = mlp
    out = tmp_path / "p.onnx"
    res = CliRunner().invoke(app, ["prune", str(path), "-o", str(out), *args])
    assert res.exit_code == 2 and message in res.output
    assert not out.exists()
