"""Conv blocks in a real search: the NAC block-space example on MNIST t10k (smoke), trained, costed, exported."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import shared_path

pytest.importorskip("torch")
pytest.importorskip("pymoo")

import onnx

from codesign.backends.reference import predict
from codesign.ir.model import Model
from codesign.search.data import load_dataset
from codesign.search.run import run_search
from codesign.search.space import parse_space
from codesign.search.store import TrialStore

ROOT = Path(__file__).resolve().parent.parent


def test_nac_blocks_example_runs_on_mnist(tmp_path):
    folder = shared_path("data", "mnist")
    spec = yaml.safe_load((ROOT / "examples/search/nac_blocks.yaml").read_text())
    spec["data"] |= {"path": str(folder), "max_rows": 2500}
    spec["training"]["epochs"] = 1
    spec["search"] |= {"trials": 3, "population": 3}
    space = parse_space(spec)
    data = load_dataset(space.data)
    assert data.n_features == 784 and data.n_classes == 10
    t0 = time.perf_counter()
    summary = run_search(space, tmp_path / "run", data=data)
    seconds = time.perf_counter() - t0
    assert summary.trials == 3 and seconds < 60
    store = TrialStore(tmp_path / "run" / "trials.sqlite", space.digest(), resume=True)
    trials = store.trials(with_params=True, include_baselines=False)
    assert len(trials) == 3
    for t in trials:
        g = t.genome
        assert g.kinds[0] == "conv2d" and g.input_shape == (1, 28, 28)
        assert 0.1 < t.metrics["accuracy"] <= 1.0  # above chance (0.1) after 1 epoch on 2000 digits
        assert t.metrics["LUT"] > 0 and t.metrics["latency"] > 0
    assert max(t.metrics["accuracy"] for t in trials) > 0.6
    attention = [t for t in trials if "conv_attention" in t.genome.kinds]
    assert attention and max(t.metrics["accuracy"] for t in attention) > 0.6  # (seeded: 2 of the 3 have one)
    (base,) = summary.baselines
    assert base.genome.kinds == () and base.metrics["accuracy"] > 0.3
    # a Pareto candidate file is a Conv QONNX graph whose reference execution reproduces the stored accuracy
    files = sorted((tmp_path / "run" / "candidates").glob("*.onnx"))
    assert files and len(files) == len(summary.pareto)
    ir = Model(onnx.load(str(files[0])))
    assert "Conv" in {n.op_type for n in ir.graph.node}
    best = summary.pareto[0]
    pred = predict(ir, data.x_val.reshape(-1, 1, 28, 28)).argmax(axis=1)
    assert abs(float(np.mean(pred == data.y_val)) - best.metrics["accuracy"]) < 0.01
    assert {p.name for p in (tmp_path / "run" / "plots").iterdir()} == {
        "accuracy_vs_bops.png",
        "accuracy_vs_lut.png",
        "resources_vs_latency.png",
    }


def _conv1d_space(tmp_path: Path) -> dict:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 2, 12)).astype(np.float32)
    y = (x[:, 0, :6].sum(axis=1) > x[:, 1, 6:].sum(axis=1)).astype(np.int64)
    np.savez(tmp_path / "seq.npz", x=x.reshape(600, -1), label=y)
    return {
        "name": "seq",
        "data": {"dataset": "npz", "path": str(tmp_path / "seq.npz"), "label": "label"},
        "model": {
            "input_shape": [2, 12],
            "layers": {"min": 1, "max": 3},
            "dropout": [0.0, 0.2],
            "blocks": [
                {
                    "type": "conv1d",
                    "channels": [2, 4],
                    "kernel": [1, 3],
                    "skip": [False, True],
                    "pool": ["none", "max"],
                    "activation": ["relu", "tanh"],
                    "norm": ["none", "batch", "layer"],
                },
                {"type": "conv_attention", "channels": [2, 3], "activation": ["identity"], "norm": ["none", "layer"]},
                {"type": "dense", "width": [4, 8]},
            ],
        },
        "training": {"epochs": 1, "batch_size": 64, "learning_rate": [0.01]},
        "search": {"trials": 6, "population": 3, "seed": 2},
    }


def test_conv1d_attention_search_same_on_a_dask_cluster(tmp_path):
    """Conv/attention candidates (trained one by one) give the same trials in one process and on 2 Dask workers."""
    pytest.importorskip("distributed")
    from codesign.search import nsga

    space = parse_space(_conv1d_space(tmp_path))
    data = load_dataset(space.data)
    runs = []
    for name, cluster in (("single", None), ("dask", "local:2")):
        store = TrialStore(tmp_path / f"{name}.sqlite", space.digest())
        nsga.Search(space, data, store, cluster=cluster).run()
        runs.append([(t.key, t.metrics["accuracy"], t.metrics["bops"]) for t in store.trials()])
    assert len(runs[0]) == 6 and runs[0] == runs[1]
    genomes = [TrialStore(tmp_path / "single.sqlite", space.digest(), resume=True).get(k).genome for k, _, _ in runs[0]]
    assert all(g.kinds[0] == "conv1d" and g.input_shape == (2, 12) for g in genomes)
    assert any("conv_attention" in g.kinds for g in genomes)
    assert max(a for _, a, _ in runs[0]) > 0.6  # learnable toy task, 1 epoch
