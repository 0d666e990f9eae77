"""Local stage: brevitas QAT + TPE + iterative magnitude pruning on a global run's Pareto candidates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, shared_path
from typer.testing import CliRunner

pytest.importorskip("brevitas")
pytest.importorskip("optuna")

from codesign.cli import app
from codesign.search import local as local_mod
from codesign.search.data import load_dataset
from codesign.search.local import LocalSearchError, LocalSpec, run_local, select_candidates
from codesign.search.run import run_search
from codesign.search.space import parse_space

TINY = {
    "name": "tiny_local", "target": "vu13p", "data": {"dataset": "magic", "max_rows": 3000, "seed": 0},
    "model": {"layers": {"min": 1, "max": 2}, "width": [8, 16], "activation": ["relu"], "norm": ["none"],
              "dropout": [0.0], "bits": [8]},
    "training": {"epochs": 1, "batch_size": 128, "learning_rate": [0.01], "l1": [0.0]},
    "objectives": ["accuracy", "bops"], "search": {"trials": 4, "population": 4, "seed": 0},
}  # fmt: skip
FAST = LocalSpec(bits=[4], tpe_trials=2, epochs=[2], batch_size=[128], prune_rounds=2, rewind_epoch=1)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    shared_path("data", "magic", "magic04.data")
    space = parse_space(TINY)
    data = load_dataset(space.data)
    run_dir = tmp_path_factory.mktemp("local") / "run"
    run_search(space, run_dir, data=data)
    summary = run_local(space, FAST, run_dir, data)
    return space, data, run_dir, summary


def test_pruning_rounds_raise_sparsity_and_track_accuracy(local_run):
    _, data, _run_dir, summary = local_run
    rounds = sorted(summary.results, key=lambda r: r["round"])
    assert [r["round"] for r in rounds] == [0, 1, 2] and {r["bits"] for r in rounds} == {4}
    sp = [r["metrics"]["sparsity"] for r in rounds]
    assert sp[0] < sp[1] < sp[2]
    # 20% per round of hidden weights, 10% of the output layer: >= 1 - 0.8^2 minus the output layer's share
    assert rounds[2]["metrics"]["mask_sparsity"] > 0.3 and sp[2] >= rounds[2]["metrics"]["mask_sparsity"] - 0.1
    assert rounds[0]["metrics"]["bops"] > rounds[2]["metrics"]["bops"]  # zero weights are discounted
    majority = max(np.mean(data.y_val == c) for c in np.unique(data.y_val))
    assert all(r["metrics"]["accuracy"] > majority for r in rounds)
    for r in rounds:  # the resource estimate comes from the same IR
        assert r["metrics"]["LUT"] > 0 and r["metrics"]["latency"] > 0
    assert summary.float_accuracy[rounds[0]["candidate"]] > majority


def test_exported_candidates_are_what_was_measured(local_run):
    """Each local_candidates/*.onnx, run by the IR reference, reproduces the recorded accuracy,
    and its weights are on the 4-bit power-of-two grid with the recorded sparsity."""
    from codesign.backends.reference import predict
    from codesign.frontends import load
    from codesign.passes.cost import cost_report

    _, data, run_dir, _summary = local_run
    payload = json.loads((run_dir / "local_pareto.json").read_text())
    assert payload["pareto"] and payload["objectives"] == ["accuracy", "bops", "LUT"]
    for row in payload["pareto"]:
        ir = load(run_dir / row["file"])
        acc = float((predict(ir, data.x_val).argmax(1) == data.y_val).mean())
        assert abs(acc - row["accuracy"]) <= 2 / len(data.y_val)
        rep = cost_report(ir)
        assert rep.totals["bops"] == row["bops"]
        assert {layer.weight_dtype for layer in rep.layers if layer.macs} == {"SCALEDINT<4>"}
    assert (run_dir / "local_pareto.csv").read_text().startswith("rank,candidate,bits,round,accuracy")


def test_local_front_is_non_dominated(local_run):
    *_, summary = local_run
    vecs = [local_mod.local_objectives(r["metrics"]) for r in summary.front]
    for i, a in enumerate(vecs):
        for j, b in enumerate(vecs):
            assert i == j or not (all(x <= y for x, y in zip(b, a)) and b != a)


def test_resume_skips_finished_results(local_run, monkeypatch):
    space, data, run_dir, summary = local_run
    with pytest.raises(LocalSearchError, match="--resume"):
        run_local(space, FAST, run_dir, data)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished trial was retrained")

    monkeypatch.setattr(local_mod, "_train", no_training)
    again = run_local(space, FAST, run_dir, data, resume=True)
    assert [r["metrics"] for r in again.results] == [r["metrics"] for r in summary.results]
    with pytest.raises(LocalSearchError, match="different local settings"):
        run_local(space, LocalSpec(bits=[6], tpe_trials=2, epochs=[2], prune_rounds=2), run_dir, data, resume=True)


def test_select_candidates_rules(local_run):
    *_, run_dir, _ = local_run
    rows = json.loads((run_dir / "pareto.json").read_text())["pareto"]
    best = select_candidates(run_dir, LocalSpec(select="best"))
    assert best[0]["accuracy"] == max(r["accuracy"] for r in rows)
    cheap = min(r["bops"] for r in rows)
    under = select_candidates(run_dir, LocalSpec(select="best", bops_budget=cheap))
    assert under[0]["bops"] == cheap
    spread = select_candidates(run_dir, LocalSpec(select="spread:2"))
    assert len(spread) == min(2, len(rows)) and spread[0]["bops"] == cheap
    assert select_candidates(run_dir, LocalSpec(select=f"trial:{rows[0]['trial']}"))[0]["trial"] == rows[0]["trial"]
    with pytest.raises(LocalSearchError, match="not on the global Pareto front"):
        select_candidates(run_dir, LocalSpec(select="trial:99999"))
    with pytest.raises(LocalSearchError, match="no Pareto candidate within"):
        select_candidates(run_dir, LocalSpec(select="best", bops_budget=1))


def test_prune_masks_drop_the_smallest_fraction_per_layer():
    import torch

    net = torch.nn.Sequential(torch.nn.Linear(10, 10), torch.nn.ReLU(), torch.nn.Linear(10, 10))
    with torch.no_grad():
        for m in (net[0], net[2]):
            m.weight.copy_(torch.arange(1, 101, dtype=torch.float32).reshape(10, 10))
    masks = [torch.ones(10, 10), torch.ones(10, 10)]
    m1 = local_mod.prune_masks(net, masks, 0.2)
    assert int(m1[0].sum()) == 80 and int(m1[1].sum()) == 90  # output layer at half the rate
    assert m1[0].flatten()[:20].sum() == 0 and m1[0].flatten()[20:].all()
    m2 = local_mod.prune_masks(net, m1, 0.2)
    assert int(m2[0].sum()) == 64 and bool((m2[0] <= m1[0]).all())


def test_local_spec_validation():
    with pytest.raises(LocalSearchError, match="unknown key"):
        LocalSpec.from_dict({"bogus": 1}, "x.yaml")
    with pytest.raises(LocalSearchError, match="bit width"):
        LocalSpec.from_dict({"bits": [1]}, "x.yaml")
    assert LocalSpec.from_dict(None).bits == [4, 6, 8]


def test_cli_stage_errors(tmp_path):
    runner = CliRunner()
    yml = ROOT / "examples/search/magic_pipeline.yaml"
    shared_path("data", "magic", "magic04.data")
    no_target = ROOT / "examples/search/magic_small.yaml"
    r = runner.invoke(app, ["search", str(no_target), "-o", str(tmp_path / "r"), "--compile"])
    assert r.exit_code == 2 and "--compile needs a 'target'" in r.output
    r = runner.invoke(app, ["search", str(yml), "-o", str(tmp_path / "r"), "--stage", "bogus"])
    assert r.exit_code == 2 and "--stage must be one of" in r.output
    r = runner.invoke(app, ["search", str(yml), "-o", str(tmp_path / "none"), "--stage", "local"])
    assert r.exit_code == 2 and "no global run" in r.output
    assert not (tmp_path / "r").exists()


def test_example_pipeline_config_parses():
    from codesign.search.pipeline import load_pipeline

    cfg = load_pipeline(ROOT / "examples/search/magic_pipeline.yaml")
    assert cfg.space.target == "vu13p" and cfg.local.bits == [4, 6, 8] and cfg.local.prune_rounds == 10
    assert cfg.compile.tolerance == 0.02


@pytest.mark.slow
def test_acceptance_magic_pipeline(tmp_path):
    """Issue 8: from the best global candidate, >= 80% sparsity at <= 8 bits within 2 points of the
    float version; the compiled winner is bit-exact in hls4ml C-simulation."""
    from codesign.search.pipeline import load_pipeline, run_pipeline

    shared_path("data", "magic", "magic04.data")
    cfg = load_pipeline(ROOT / "examples/search/magic_pipeline.yaml")
    out = run_pipeline(cfg, tmp_path / "run", stage="all", compile=True)
    ok = [
        r for r in out.local_summary.results
        if r["bits"] <= 8 and r["metrics"]["sparsity"] >= 0.8
        and r["metrics"]["accuracy"] >= out.local_summary.float_accuracy[r["candidate"]] - 0.02
    ]  # fmt: skip
    assert ok, "no local result reaches 80% sparsity within 2 points of its float version"
    assert out.chosen["verify"]["bit_exact"] is True and out.chosen["verify"]["samples"] >= 100
    assert Path(tmp_path / "run" / "hls4ml" / "codesign.json").is_file()


def test_cli_stage_all_then_local_resume(tmp_path):
    """The CLI glue: --stage all writes both fronts; --stage local --resume retrains nothing."""
    import yaml

    shared_path("data", "magic", "magic04.data")
    cfg = {**TINY, "data": {"dataset": "magic", "max_rows": 1500, "seed": 2}, "search": {"trials": 2, "population": 2}}
    cfg["local"] = {"bits": [6], "tpe_trials": 1, "epochs": [1], "prune_rounds": 1, "rewind_epoch": 0}
    yml = tmp_path / "space.yaml"
    yml.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["search", str(yml), "-o", str(run), "--stage", "all"])
    assert r.exit_code == 0, r.output
    assert (
        "local Pareto front" in r.output and (run / "local_pareto.json").is_file() and (run / "pareto.json").is_file()
    )
    before = json.loads((run / "local_pareto.json").read_text())["results"]
    assert [row["round"] for row in before] == [0, 1]
    r = CliRunner().invoke(app, ["search", str(yml), "-o", str(run), "--stage", "local"])
    assert r.exit_code == 2 and "--resume" in r.output
    r = CliRunner().invoke(app, ["search", str(yml), "-o", str(run), "--stage", "local", "--resume"])
    assert r.exit_code == 0, r.output
    assert json.loads((run / "local_pareto.json").read_text())["results"] == before
