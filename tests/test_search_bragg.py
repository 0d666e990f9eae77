"""The NAC BraggNN study's pieces: the Bragg-peak generator, the distance score, the conv baseline
format, and the local stage (QAT + TPE + pruning) on conv / pooling / residual / ConvAttention genomes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

torch = pytest.importorskip("torch")
pytest.importorskip("optuna")

from codesign.search.bragg import PATCH, bragg_patches, centroid_error, pseudo_voigt
from codesign.search.data import load_dataset
from codesign.search.genome import baseline_genome
from codesign.search.space import SearchSpaceError, parse_space

TINY = {
    "name": "bragg_tiny", "target": "vu13p",
    "data": {"dataset": "bragg", "max_rows": 600, "seed": 1},
    "model": {
        "input_shape": [1, 11, 11], "layers": {"min": 4, "max": 4}, "bits": [8],
        "blocks": [
            {"type": "conv2d", "channels": [4], "kernel": [3], "activation": ["leaky_relu"], "norm": ["none", "batch"]},
            {"type": "conv_attention", "channels": [2], "activation": ["identity"]},
            {"type": "conv2d", "channels": [4], "kernel": [1, 3], "skip": [True], "pool": ["max", "avg"]},
            {"type": "dense", "width": [4, 8], "activation": ["relu"]},
        ],
    },
    "training": {"epochs": 1, "batch_size": 64, "learning_rate": [0.01]},
    "objectives": ["accuracy", "bops"], "search": {"trials": 2, "population": 2, "seed": 0},
}  # fmt: skip


def test_pseudo_voigt_is_unit_height_and_half_max_at_one_width():
    z = np.zeros((1, 1, 1))
    for eta in (0.0, 0.4, 1.0):
        e = np.full((1, 1, 1), eta)
        assert pseudo_voigt(z, z, z, z, z + 1.3, z + 0.7, e).item() == pytest.approx(1.0)
        assert pseudo_voigt(z + 1.3, z, z, z, z + 1.3, z + 0.7, e).item() == pytest.approx(0.5)  # FWHM/2 along x


def test_patches_are_seeded_normalised_and_peak_near_their_centre():
    x, y = bragg_patches(3000, seed=4)
    x2, y2 = bragg_patches(3000, seed=4)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert x.shape == (3000, 1, PATCH, PATCH) and y.shape == (3000, 2) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0 and np.all(x.max(axis=(1, 2, 3)) == 1.0)
    assert np.abs(y).max() <= 1.0 and 0.5 < y.std() * math.sqrt(3) < 1.1  # uniform in [-1, 1]: std 1/sqrt(3)
    # Poisson counts: the brightest pixel sits within a pixel or two of the true centre
    peak = np.stack(np.unravel_index(x.reshape(3000, -1).argmax(axis=1), (PATCH, PATCH)), axis=1) - (PATCH - 1) / 2
    assert np.median(np.linalg.norm(peak - y, axis=1)) < 1.0
    # the classical centroid is biased by the background and noise: the task is not trivial
    assert 0.1 < centroid_error(x, y) < 1.0


def test_bragg_dataset_regresses_centres_in_pixels():
    space = parse_space(TINY)
    data = load_dataset(space.data)
    assert space.data.task == "regression" and data.score == "distance"
    assert data.n_features == 121 and data.n_classes == 2 and len(data.y_train) == 480
    _, y = bragg_patches(600, seed=1)  # targets are not standardised: distances stay in pixels
    assert np.isclose(np.sort(data.y_val[:, 0]), np.sort(y[np.isin(y[:, 0], data.y_val[:, 0]), 0])).all()


def test_distance_score_and_loss():
    from codesign.search.train import score_outputs, task_loss

    y = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    out = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    assert score_outputs(out, y, "distance") == pytest.approx(-2.5)
    assert float(task_loss(out, y)) == pytest.approx(25 / 4)


def test_braggnn_baseline_in_the_space_baseline_format():
    from codesign.search.nets import ConvCandidateNet
    from codesign.search.pipeline import load_pipeline

    cfg = load_pipeline(ROOT / "examples/search/braggnn.yaml")
    g = baseline_genome(cfg.space, cfg.space.baselines[0])
    assert g.label() == "c64k3-a32-c32k3-c8k3mp-64-32-16-8 leaky_relu w8"
    assert g.kinds[:4] == ("conv2d", "conv_attention", "conv2d", "conv2d") and g.skips[:4] == (
        False,
        True,
        False,
        False,
    )
    # BraggNN's parameters: conv 640, non-local block 3 x 2080 + 2112, convs 18464 + 2312, dense 12864 + 2080 + 528 + 136 + 18
    net = ConvCandidateNet(g, 121, 2)
    assert sum(p.numel() for p in net.parameters()) == 45394
    bad = {**TINY, "baselines": [{"name": "b", "widths": [4, 2, 4, 8], "kernels": [3, 1]}]}
    with pytest.raises(SearchSpaceError, match="kernels lists 2 values for 3 conv blocks"):
        baseline_genome(parse_space(bad), parse_space(bad).baselines[0])


@pytest.fixture(scope="module")
def conv_local(tmp_path_factory):
    from codesign.search.local import LocalSpec, run_local
    from codesign.search.run import run_search

    space = parse_space(TINY)
    data = load_dataset(space.data)
    run_dir = tmp_path_factory.mktemp("bragg") / "run"
    run_search(space, run_dir, data=data)
    spec = LocalSpec(bits=[6], tpe_trials=1, epochs=[2], batch_size=[64], learning_rate=[0.01], prune_rounds=1,
                     rewind_epoch=1, prune_fraction=0.3)  # fmt: skip
    return space, data, run_dir, spec, run_local(space, spec, run_dir, data)


def test_local_stage_prunes_conv_attention_genomes(conv_local):
    _, _, _, _, summary = conv_local
    rounds = sorted(summary.results, key=lambda r: r["round"])
    assert [r["round"] for r in rounds] == [0, 1] and all(r["bits"] == 6 for r in rounds)
    m0, m1 = rounds[0]["metrics"], rounds[1]["metrics"]
    # 30% of every layer's weights (15% of the output layer's), attention q/k/v included, are masked
    assert 0.2 < m1["mask_sparsity"] < 0.3 and m1["sparsity"] > m0["sparsity"] and m1["bops"] < m0["bops"]
    assert all(-1.5 < r["metrics"]["accuracy"] < 0 for r in rounds)  # minus a distance in pixels


def test_local_conv_candidates_are_what_was_measured(conv_local):
    """Each exported local candidate is a QONNX conv/attention graph whose reference execution gives
    the stored distance score, and whose pruned weights are zeros in the file."""
    from codesign.backends.reference import predict
    from codesign.frontends import load
    from codesign.search.train import score_outputs

    _, data, run_dir, _, _ = conv_local
    front = json.loads((run_dir / "local_pareto.json").read_text())["pareto"]
    assert front
    for row in front:
        ir = load(run_dir / row["file"])
        ops = {n.op_type for n in ir.graph.node}
        assert {"Conv", "Softmax", "MatMul", "Quant"} <= ops
        out = predict(ir, data.x_val.reshape(-1, 1, 11, 11))
        score = score_outputs(torch.from_numpy(np.asarray(out)), torch.from_numpy(data.y_val), "distance")
        assert score == pytest.approx(row["accuracy"], abs=1e-4)


def test_local_conv_resume_retrains_nothing(conv_local, monkeypatch):
    from codesign.search import local as local_mod

    space, data, run_dir, spec, summary = conv_local

    def boom(*a, **k):
        raise AssertionError("retrained a finished result")

    monkeypatch.setattr(local_mod, "_train", boom)
    again = local_mod.run_local(space, spec, run_dir, data, resume=True)
    assert [r["metrics"] for r in again.results] == [r["metrics"] for r in summary.results]


def _rows(db_path: Path, sql: str) -> list:
    import sqlite3

    if not db_path.is_file():
        return []
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        return db.execute(sql).fetchall()
    except sqlite3.OperationalError:  # tables not made yet
        return []
    finally:
        db.close()


def _kill_when(cmd: list[str], db: Path, sql: str, n: int, timeout: float = 600) -> None:
    """Run ``cmd``; SIGKILL it as soon as ``sql`` on ``db`` returns >= n rows (it must not finish first)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "codesign.cli", *cmd], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    t0 = time.monotonic()
    try:
        while len(_rows(db, sql)) < n:
            assert proc.poll() is None, "the run finished before it could be killed"
            assert time.monotonic() - t0 < timeout
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()


@pytest.mark.slow
def test_kill9_then_resume_conv_genomes_in_both_stages(tmp_path):
    """kill -9 in the global stage, then in the local stage, --resume each: the same trials and
    local results as an uninterrupted run (conv + attention genomes)."""
    import yaml
    from typer.testing import CliRunner

    from codesign.cli import app

    cfg = json.loads(json.dumps(TINY))
    cfg["search"] = {"trials": 6, "population": 3, "seed": 0}
    cfg["local"] = {"bits": [6], "tpe_trials": 2, "epochs": [2], "batch_size": [64], "learning_rate": [0.01],
                    "dropout": [0.0], "l1": [0.0], "prune_rounds": 2, "rewind_epoch": 1}  # fmt: skip
    yml = tmp_path / "bragg.yaml"
    yml.write_text(yaml.safe_dump(cfg))
    runner = CliRunner()
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert runner.invoke(app, ["search", str(yml), "-o", str(ref), "--stage", "all"]).exit_code == 0
    trials_sql = "SELECT key, metrics FROM trials ORDER BY key"
    _kill_when(["search", str(yml), "-o", str(run)], run / "trials.sqlite", trials_sql, 3)
    assert 3 <= len(_rows(run / "trials.sqlite", trials_sql)) < 7
    r = runner.invoke(app, ["search", str(yml), "-o", str(run), "--resume"])
    assert r.exit_code == 0, r.output
    assert _rows(run / "trials.sqlite", trials_sql) == _rows(ref / "trials.sqlite", trials_sql)
    local_sql = "SELECT key, metrics FROM results WHERE kind = 'round' ORDER BY key"
    _kill_when(["search", str(yml), "-o", str(run), "--stage", "local"], run / "local.sqlite", local_sql, 1)
    assert len(_rows(run / "local.sqlite", local_sql)) < 3
    r = runner.invoke(app, ["search", str(yml), "-o", str(run), "--stage", "local", "--resume"])
    assert r.exit_code == 0, r.output
    assert _rows(run / "local.sqlite", local_sql) == _rows(ref / "local.sqlite", local_sql)
    assert len(_rows(ref / "local.sqlite", local_sql)) == 3


@pytest.mark.slow
def test_braggnn_example_global_local_compile_from_the_cli(tmp_path):
    """`codesign search examples/search/braggnn.yaml --stage all --compile` end to end (scaled down:
    fewer patches, trials and epochs): the local winner compiles and verifies in hls4ml C-sim (bit-exact
    unless it has attention's Softmax or another table/non-power-of-two op)."""
    import yaml
    from typer.testing import CliRunner

    from codesign.cli import app

    cfg = yaml.safe_load((ROOT / "examples/search/braggnn.yaml").read_text())
    cfg["data"]["max_rows"] = 1500
    cfg["training"]["epochs"] = 1
    cfg["search"] |= {"trials": 6, "population": 3}
    cfg["local"] |= {"tpe_trials": 1, "epochs": [2], "prune_rounds": 1, "bits": [6], "bops_budget": None}
    cfg["compile"]["samples"] = 50
    yml = tmp_path / "braggnn.yaml"
    yml.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["search", str(yml), "-o", str(run), "--stage", "all", "--compile"])
    assert r.exit_code == 0, r.output
    chosen = json.loads((run / "chosen.json").read_text())
    verify, verdict = chosen["verify"], chosen["verdict"]
    assert verdict["passed"] is True and verify["samples"] == 50
    from codesign.backends.verdict import expects_bit_exact
    from codesign.frontends import load

    if expects_bit_exact(load(run / chosen["file"]))[0]:
        assert verify["bit_exact"] is True
    else:  # attention's Softmax table (and a non-power-of-two LeakyRelu slope) cannot be bit-exact: within a few LSB
        assert verify["bit_exact_share"] >= 0.9 and verify["max_abs_diff"] < 0.05, verify
    base = json.loads((run / "pareto.json").read_text())["baselines"][0]
    assert base["name"] == "braggnn" and base["label"].startswith("c64k3-a32-c32k3-c8k3mp")
    assert -1.0 < base["accuracy"] < 0 and -1.0 < chosen["model"]["accuracy"] < 0  # minus distances in pixels


def test_local_bops_budget_accepts_yaml_exponents():
    """YAML 1.1 reads ``2.5e7`` (no '+') as a string: the budget is converted, or refused in one line."""
    from codesign.search.local import LocalSearchError, LocalSpec

    assert LocalSpec.from_dict({"bops_budget": "2.5e7"}).bops_budget == 2.5e7
    with pytest.raises(LocalSearchError, match=r"local.bops_budget: not a number \('lots'\)"):
        LocalSpec.from_dict({"bops_budget": "lots"})
