"""Pruning on the IR: a MAGIC MLP trained here, TFC_2W2A on MNIST, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import shared_path, tfc_path
from typer.testing import CliRunner

from codesign.backends.reference import execute, predict
from codesign.cli import app
from codesign.errors import CodesignError
from codesign.frontends import load
from codesign.ir.model import Model
from codesign.passes.cost import cost_report
from codesign.passes.prune import MagnitudePrune, StructuredPrune

HIDDEN = (64, 32, 32)


def _load_magic() -> tuple[np.ndarray, np.ndarray]:
    path = shared_path("data", "magic", "magic04.data")
    x = np.loadtxt(path, delimiter=",", usecols=range(10), dtype=np.float32)
    y = np.array([line.strip().endswith("g") for line in path.read_text().splitlines() if line.strip()], dtype=np.int64)
    return x, y


@pytest.fixture(scope="module")
def magic(tmp_path_factory):
    """A 10-64-32-32-2 MLP trained for a few epochs on MAGIC, exported and loaded."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    x, y = _load_magic()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    n = int(0.75 * len(x))
    mu, sd = x[:n].mean(0), x[:n].std(0)
    x = ((x - mu) / sd).astype(np.float32)
    torch.manual_seed(0)
    nn = torch.nn
    net = nn.Sequential(
        nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2)
    )  # fmt: skip
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    xt, yt = torch.from_numpy(x[:n]), torch.from_numpy(y[:n])
    for _ in range(6):
        perm = torch.randperm(n)
        for i in range(0, n, 256):
            b = perm[i : i + 256]
            opt.zero_grad()
            nn.functional.cross_entropy(net(xt[b]), yt[b]).backward()
            opt.step()
    path = tmp_path_factory.mktemp("magic") / "magic_mlp.onnx"
    torch.onnx.export(net.eval(), torch.zeros(1, 10), str(path), dynamo=False, opset_version=13)
    model = load(path)
    return model, path, x[n:], y[n:]


def _accuracy(model: Model, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(predict(model, x).argmax(1) == y))


def _layers(model: Model) -> list:
    return [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm", "Conv")]


def test_magic_mlp_trained(magic):
    model, _, x, y = magic
    assert [n.op_type for n in _layers(model)] == ["Gemm"] * 4
    assert _accuracy(model, x, y) > 0.84  # a few epochs reach ~86% on MAGIC


def test_prune_zero_is_identity(magic):
    model = magic[0]
    for pass_ in (MagnitudePrune(0.0), StructuredPrune(0.0)):
        result = pass_(model)
        assert not result.modified
        assert result.model.proto.SerializeToString() == model.proto.SerializeToString()


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_magic_50pct_unstructured_loses_under_2_points(magic, scope):
    model, _, x, y = magic
    result = MagnitudePrune(0.5, scope=scope)(model)
    result.model.validate()
    before, after = _accuracy(model, x, y), _accuracy(result.model, x, y)
    assert before - after < 0.02, (before, after)
    weights = [result.model.constant(n.input[1]) for n in _layers(result.model)]
    if scope == "layer":
        assert [int(np.sum(w == 0)) for w in weights] == [round(0.5 * w.size) for w in weights]
    else:
        assert sum(int(np.sum(w == 0)) for w in weights) == round(0.5 * sum(w.size for w in weights))
    # the cost pass sees the zeros: MACs are discounted by each layer's weight density
    c0 = {r.name: r for r in cost_report(model).layers}
    for row in cost_report(result.model).layers:
        if row.op == "Gemm":
            w = result.model.constant(result.model.node(row.name).input[1])
            assert row.macs == pytest.approx(c0[row.name].macs * np.count_nonzero(w) / w.size)
            assert row.bops == pytest.approx(row.macs * 32 * 32)
    assert cost_report(result.model).bops == pytest.approx(0.5 * cost_report(model).bops, rel=0.02)


def test_magnitude_prune_keeps_the_largest_weights(magic):
    model = magic[0]
    result = MagnitudePrune(0.8)(model)
    for before, after in zip(_layers(model), _layers(result.model)):
        w, p = model.constant(before.input[1]), result.model.constant(after.input[1])
        kept = p != 0
        np.testing.assert_array_equal(p[kept], w[kept])  # survivors unchanged
        assert np.abs(w[~kept]).max() <= np.abs(w[kept]).min()  # only the smallest went


def test_structured_removes_exactly_the_given_neurons(magic):
    """Removing neuron j of a hidden layer == zeroing the weights that read it."""
    model, _, x, _y = magic
    names = [n.name for n in _layers(model)]
    rng = np.random.default_rng(3)
    drop = {name: sorted(rng.choice(h, h // 4, replace=False).tolist()) for name, h in zip(names[:3], HIDDEN)}
    result = StructuredPrune(neurons=drop)(model)
    result.model.validate()
    assert {k: v["removed"] for k, v in result.info.layers.items()} == drop
    shapes = [result.model.constant(n.input[1]).shape for n in _layers(result.model)]
    assert shapes == [(48, 10), (24, 48), (24, 24), (2, 24)]  # torch Gemm: transB=1, (out, in)
    # reference: the original model with the outgoing weights of the dropped neurons zeroed
    reference = model.copy()
    layers = _layers(reference)
    for k, name in enumerate(names[:3]):
        w_name = layers[k + 1].input[1]
        w = reference.initializer(w_name).copy()
        w[:, drop[name]] = 0.0
        reference.set_initializer(w_name, w)
    np.testing.assert_allclose(predict(result.model, x[:500]), predict(reference, x[:500]), atol=1e-5)
    macs = cost_report(result.model).macs
    assert macs == 10 * 48 + 48 * 24 + 24 * 24 + 24 * 2 < cost_report(model).macs


def test_structured_conv_bn_pool_flatten_exact(tmp_path):
    """Conv channels go with their BatchNorm entries, through MaxPool and Flatten."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 2 * 2, 5),
    )  # fmt: skip
    net[1].running_mean.uniform_(-1, 1)
    net[1].running_var.uniform_(0.5, 2)
    torch.onnx.export(
        net.eval(), torch.zeros(1, 3, 8, 8), str(tmp_path / "c.onnx"), dynamo=False, do_constant_folding=False
    )
    model = load(tmp_path / "c.onnx")
    drop = {"/0/Conv": [1, 6], "/4/Conv": [2]}
    result = StructuredPrune(neurons=drop)(model)
    result.model.validate()
    shapes = [result.model.constant(n.input[1]).shape for n in _layers(result.model)]
    assert shapes == [(6, 3, 3, 3), (3, 6, 3, 3), (5, 12)]
    bn = next(n for n in result.model.graph.node if n.op_type == "BatchNormalization")
    assert all(result.model.initializer(i).shape == (6,) for i in bn.input[1:])
    reference = model.copy()
    convs = _layers(reference)
    w = reference.initializer(convs[1].input[1]).copy()
    w[:, drop["/0/Conv"]] = 0.0
    reference.set_initializer(convs[1].input[1], w)
    fc = reference.initializer(convs[2].input[1]).copy()
    fc[:, 2 * 4 : 3 * 4] = 0.0  # channel 2 of the flattened (4, 2, 2) map
    reference.set_initializer(convs[2].input[1], fc)
    x = np.random.default_rng(1).standard_normal((16, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(predict(result.model, x), predict(reference, x), atol=1e-5)


def test_structured_25pct_runs_end_to_end(magic):
    model, _, x, y = magic
    result = StructuredPrune(0.25)(model)
    assert list(result.info.skipped.values()) == ["its output reaches a graph output"]
    assert [len(v["removed"]) for v in result.info.layers.values()] == [16, 8, 8]
    out = predict(result.model, x)
    assert out.shape == (len(x), 2) and np.isfinite(out).all()
    assert _accuracy(result.model, x, y) > 0.6  # without retraining; the real number is printed by the CLI


def test_structured_refuses_output_layer(magic):
    model = magic[0]
    last = _layers(model)[-1].name
    with pytest.raises(CodesignError, match="graph output"):
        StructuredPrune(neurons={last: [0]})(model)


def test_pruned_file_runs_in_plain_onnxruntime(magic, tmp_path):
    model, _, x, _ = magic
    path = StructuredPrune(0.25)(model).model.save(tmp_path / "p.onnx")
    expected = execute(load(path), x[:1])[model.outputs[0]]
    np.save(tmp_path / "x.npy", x[:1])
    script = (
        "import sys, numpy as np, onnxruntime as ort\n"
        f"s = ort.InferenceSession({str(path)!r}, providers=['CPUExecutionProvider'])\n"
        f"out = s.run(None, {{s.get_inputs()[0].name: np.load({str(tmp_path / 'x.npy')!r})}})[0]\n"
        f"np.save({str(tmp_path / 'out.npy')!r}, out)\n"
        "assert 'codesign' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, capture_output=True)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-5)


# ------------------------------------------------------------------ TFC on MNIST
def test_tfc_2w2a_pruned_mnist_accuracy(capsys):
    from codesign.search.data import load_mnist_idx

    model = load(tfc_path("TFC_2W2A"))
    folder = shared_path("data", "mnist")
    x, y = load_mnist_idx(folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz")
    x = (x / 255.0).astype(np.float32)[:, None]
    before = _accuracy(model, x, y)
    assert before == pytest.approx(0.9660, abs=1e-4)  # the model zoo's published number
    results = {}
    for label, pass_ in [("unstructured 50%", MagnitudePrune(0.5)), ("structured 25%", StructuredPrune(0.25))]:
        result = pass_(model)
        result.model.validate()
        weights = [result.model.constant(n.input[1]) for n in _layers(result.model)]
        sparsity = sum(int(np.sum(w == 0)) for w in weights) / sum(w.size for w in weights)
        results[label] = (_accuracy(result.model, x, y), sparsity, cost_report(result.model).macs)
    with capsys.disabled():
        print(f"\nTFC_2W2A MNIST t10k accuracy before pruning: {before:.2%}")
        for label, (acc, sparsity, macs) in results.items():
            print(f"  {label}: {acc:.2%} (weight sparsity {sparsity:.1%}, MACs {macs:.0f})")
    weights = [model.constant(n.input[1]) for n in _layers(model)]
    dense = sum(int(np.sum(w == 0)) for w in weights) / sum(w.size for w in weights)
    # 2-bit weights are ~60% zeros already: 50% per layer only adds zeros to the densest layers
    assert results["unstructured 50%"][1] > dense
    assert results["structured 25%"][2] < 0.8 * cost_report(model).macs
    assert results["structured 25%"][0] > 0.9 and results["unstructured 50%"][0] > 0.9


# ------------------------------------------------------------------ CLI
def test_cli_prune(magic, tmp_path):
    _, path, _, _ = magic
    out = tmp_path / "p.onnx"
    res = CliRunner().invoke(app, ["prune", str(path), "-o", str(out), "--sparsity", "0.8", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["weight_sparsity"] == pytest.approx(0.8, abs=0.01)
    assert cost_report(load(out)).totals["sparsity"] == pytest.approx(summary["after"]["sparsity"])
    assert summary["after"]["bops"] == pytest.approx(0.2 * summary["before"]["bops"], rel=0.02)
    out2 = tmp_path / "s.onnx"
    res = CliRunner().invoke(app, ["prune", str(path), "-o", str(out2), "--sparsity", "0.25", "--structured"])
    assert res.exit_code == 0, res.output
    assert "removed 16 of 64 channels" in res.output
    assert [load(out2).constant(n.input[1]).shape[0] for n in _layers(load(out2))] == [48, 24, 24, 2]


@pytest.mark.parametrize(
    "args, message",
    [(["--sparsity", "1.2"], "sparsity must be in"), (["--sparsity", "0.5", "--scope", "net"], "scope must be")],
)
def test_cli_prune_errors(magic, tmp_path, args, message):
    _, path, _, _ = magic
    out = tmp_path / "p.onnx"
    res = CliRunner().invoke(app, ["prune", str(path), "-o", str(out), *args])
    assert res.exit_code == 2 and message in res.output
    assert not out.exists()


def test_cli_prune_refuses_to_overwrite_input(magic):
    _, path, _, _ = magic
    res = CliRunner().invoke(app, ["prune", str(path), "-o", str(path), "--sparsity", "0.5"])
    assert res.exit_code == 2 and "refusing to overwrite" in res.output
