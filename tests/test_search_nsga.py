"""NSGA-II engine + trial store: exact trial counts, no retraining, determinism, kill -9 / --resume, outputs."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("torch")
pytest.importorskip("pymoo")

from helpers import toy_npz

from codesign.search import nsga
from codesign.search.data import load_dataset
from codesign.search.genome import Genome
from codesign.search.objectives import pareto_trials
from codesign.search.run import run_search
from codesign.search.space import parse_space
from codesign.search.store import StoreError, Trial, TrialStore


def _npz(tmp_path: Path, n: int = 800) -> Path:
    return toy_npz(tmp_path, n)


def _space(tmp_path: Path, trials: int = 20, population: int = 6, **extra) -> dict:
    d = {
        "name": "toy",
        "data": {"dataset": "npz", "path": str(_npz(tmp_path)), "label": "label"},
        "model": {
            "layers": {"min": 1, "max": 3},
            "width": [2, 4, 8, 16],
            "activation": ["relu", "tanh"],
            "norm": ["none", "batch"],
        },
        "training": {"epochs": 1, "batch_size": 64, "learning_rate": [0.003, 0.01]},
        "search": {"trials": trials, "population": population, "seed": 1},
        "baselines": [{"name": "wide", "widths": [16, 16, 16]}],
    }
    d.update(extra)
    return d


def test_store_refuses_other_space_and_silent_overwrite(tmp_path):
    path = tmp_path / "t.sqlite"
    store = TrialStore(path, "abc")
    g = Genome((4,), ("relu",), ("none",))
    store.add([Trial(g, {"accuracy": 0.5, "bops": 10.0}, 0, params={"w0": np.ones((2, 2), np.float32)})])
    store.close()
    with pytest.raises(StoreError, match="pass --resume"):
        TrialStore(path, "abc")
    with pytest.raises(StoreError, match="different search space"):
        TrialStore(path, "xyz", resume=True)
    again = TrialStore(path, "abc", resume=True)
    t = again.get(g.key(), with_params=True)
    assert t.metrics == {"accuracy": 0.5, "bops": 10.0} and t.params["w0"].tolist() == [[1, 1], [1, 1]]


def test_search_counts_trains_once_and_is_deterministic(tmp_path, monkeypatch):
    space = parse_space(_space(tmp_path, trials=20, population=6))
    data = load_dataset(space.data)
    trained: list[str] = []
    real = nsga.evaluate_genomes

    def counting(space_, data_, genomes):
        trained.extend(g.key() for g in genomes)
        return real(space_, data_, genomes)

    monkeypatch.setattr(nsga, "evaluate_genomes", counting)
    runs = []
    for name in ("a", "b"):
        store = TrialStore(tmp_path / f"{name}.sqlite", space.digest())
        nsga.Search(space, data, store).run()
        runs.append([(t.key, t.metrics["accuracy"], t.metrics["bops"]) for t in store.trials()])
        assert store.count() == 20 and store.count(include_baselines=True) == 21
        assert [t.name for t in store.trials() if t.is_baseline] == ["wide"]
    assert len(trained) == 2 * 21 and len(set(trained)) == 21  # never the same genome twice in a run
    assert runs[0] == runs[1]  # same seed, same trials, same numbers


def test_constraints_make_over_budget_candidates_infeasible(tmp_path):
    space = parse_space(_space(tmp_path, trials=12, constraints={"bops_max": 3000}))
    store = TrialStore(tmp_path / "c.sqlite", space.digest())
    nsga.Search(space, load_dataset(space.data), store).run()
    trials = store.trials()
    assert any(not t.feasible for t in trials) and any(t.feasible for t in trials)
    for t in trials:
        assert t.feasible == (t.metrics["bops"] <= 3000)
    assert all(t.metrics["bops"] <= 3000 for t in pareto_trials(space, trials))


def test_run_folder_outputs(tmp_path):
    from codesign.frontends import load
    from codesign.passes.cost import cost_report

    space = parse_space(_space(tmp_path, trials=12))
    summary = run_search(space, tmp_path / "run")
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == [
        "candidates",
        "pareto.csv",
        "pareto.json",
        "plots",
        "trials.sqlite",
    ]
    rows = list(csv.DictReader((run / "pareto.csv").open()))
    assert len(rows) == len(summary.pareto) >= 1
    assert [int(r["trial"]) for r in rows] == [t.id for t in summary.pareto]
    accs = [float(r["accuracy"]) for r in rows]
    assert accs == sorted(accs, reverse=True)  # best accuracy first, BOPs falling along the front
    assert [float(r["bops"]) for r in rows] == sorted((float(r["bops"]) for r in rows), reverse=True)
    for r in rows:
        ir = load(run / r["file"])
        assert cost_report(ir).totals["bops"] == float(r["bops"])
    payload = json.loads((run / "pareto.json").read_text())
    assert payload["trials"] == 12 and payload["baselines"][0]["name"] == "wide"
    assert (run / "plots" / "accuracy_vs_bops.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in run.iterdir() if p.name.startswith(".")]


def test_existing_run_needs_resume(tmp_path):
    space = parse_space(_space(tmp_path, trials=6))
    run_search(space, tmp_path / "run")
    with pytest.raises(StoreError, match="pass --resume"):
        run_search(space, tmp_path / "run")
    summary = run_search(space, tmp_path / "run", trials=9, resume=True)
    assert summary.trials == 9


def _cli(args: list[str], **kw) -> subprocess.Popen:
    env = dict(os.environ, CODESIGN_DEBUG="1")
    return subprocess.Popen([sys.executable, "-m", "codesign.cli", "search", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)  # fmt: skip


def _rows(db: Path) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT id, key, generation, metrics FROM trials ORDER BY id").fetchall()
    finally:
        con.close()


def test_kill9_then_resume_loses_and_repeats_nothing(tmp_path):
    spec = _space(tmp_path, trials=30, population=5)
    spec["data"]["path"] = str(_npz(tmp_path, n=3000))
    spec["training"]["epochs"] = 2
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(spec))
    # reference: one uninterrupted run (in-process, same code path as the CLI)
    run_search(space_file, tmp_path / "ref")
    reference = _rows(tmp_path / "ref" / "trials.sqlite")
    assert len(reference) == 31
    # the same run, killed with SIGKILL once two generations are in the store
    proc = _cli([str(space_file), "-o", str(tmp_path / "run")])
    db = tmp_path / "run" / "trials.sqlite"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                if len(_rows(db)) >= 11:
                    break
            except sqlite3.Error:
                pass
        time.sleep(0.02)
    assert proc.poll() is None, "search finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _rows(db)
    assert 11 <= len(before) < 31
    assert not (tmp_path / "run" / "pareto.csv").exists()
    resumed = _cli([str(space_file), "-o", str(tmp_path / "run"), "--resume"])
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    out = resumed.stdout.read().splitlines()
    assert out[0].startswith(f"30 trials in {tmp_path / 'run'}; Pareto front: ")
    assert out[-1].startswith("baseline wide: acc ")
    after = _rows(db)
    assert after[: len(before)] == before  # nothing finished was lost or rewritten
    assert len(after) == 31 and len({r[1] for r in after}) == 31  # nothing repeated
    assert [r[1:] for r in after] == [r[1:] for r in reference]  # exactly the uninterrupted run
    assert (tmp_path / "run" / "pareto.csv").exists()


def test_two_local_workers_give_the_same_trials(tmp_path):
    """--workers 2 splits each generation by depth group over spawned processes; results are identical."""
    space = parse_space(_space(tmp_path, trials=8, population=4))
    data = load_dataset(space.data)
    runs = []
    for workers in (1, 2):
        store = TrialStore(tmp_path / f"w{workers}.sqlite", space.digest())
        nsga.Search(space, data, store, workers=workers).run()
        runs.append([(t.key, t.metrics["accuracy"], t.metrics["bops"]) for t in store.trials()])
    assert len(runs[1]) == 9 and runs[0] == runs[1]


def test_estimated_resources_as_objective_and_budget(tmp_path):
    """With a target, the issue-5 estimator's numbers become an objective and a hard budget."""
    pytest.importorskip("codesign.passes.estimate.hls4ml_model")
    from codesign.passes.estimate import estimate
    from codesign.search.genome import build_ir

    spec = _space(tmp_path, trials=10, objectives=["accuracy", "bops", "resources"], target="xc7z020clg400-1",
                  constraints={"resources_max_percent": 10})  # fmt: skip
    spec["model"]["width"] = [2, 8, 64]
    summary = run_search(parse_space(spec), tmp_path / "run")
    store = TrialStore(tmp_path / "run" / "trials.sqlite", parse_space(spec).digest(), resume=True)
    trials = store.trials(with_params=True)
    assert len(trials) == 11
    for t in trials:
        assert t.feasible == (t.metrics["max_resource_pct"] <= 10)
    t = trials[-1]
    report = estimate(build_ir(t.genome, 5, 2, t.params), "hls4ml", target="xc7z020clg400-1")
    assert t.metrics["LUT"] == report.totals["LUT"] and t.metrics["latency"] == report.totals["latency_cycles"]
    assert all(p.feasible for p in summary.pareto)
    assert {p.name for p in (tmp_path / "run" / "plots").iterdir()} == {
        "accuracy_vs_bops.png",
        "accuracy_vs_lut.png",
        "resources_vs_latency.png",
    }
    from matplotlib.image import imread

    for png in (tmp_path / "run" / "plots").iterdir():  # real, non-blank images
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        img = imread(png)
        assert img.shape[0] > 300 and img.shape[1] > 500
        assert len(np.unique(img.reshape(-1, img.shape[-1]), axis=0)) > 20  # axes, points, legend: not one flat colour


def test_unknown_target_fails_before_training(tmp_path):
    spec = _space(tmp_path, trials=4, objectives=["accuracy", "resources"], target="no-such-fpga")
    with pytest.raises(Exception) as info:
        run_search(parse_space(spec), tmp_path / "run")
    assert "no-such-fpga" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()


def test_reuse_factor_gene_trains_once_and_changes_the_estimate(tmp_path, monkeypatch):
    pytest.importorskip("codesign.passes.estimate.hls4ml_model")
    spec = _space(tmp_path, objectives=["accuracy", "resources"], target="xc7z020clg400-1")
    spec["reuse_factor"] = [1, 4]
    space = parse_space(spec)
    assert space.genes()[-1] == ("reuse_factor", [1, 4])
    calls: list[int] = []
    real = nsga.train_population
    monkeypatch.setattr(nsga, "train_population", lambda gs, *a, **k: calls.append(len(gs)) or real(gs, *a, **k))
    g1 = Genome((16, 8), ("relu", "relu"), ("none", "none"), reuse_factor=1)
    g4 = Genome((16, 8), ("relu", "relu"), ("none", "none"), reuse_factor=4)
    (acc1, m1, p1, _), (acc4, m4, p4, _) = nsga.evaluate_genomes(space, load_dataset(space.data), [g1, g4])
    assert calls == [1] and acc1 == acc4 and p1 is p4
    assert m1["bops"] == m4["bops"] and m4["latency"] > m1["latency"]
    assert g4.label().endswith("rf4") and g1.train_key() == g4.train_key() and g1.key() != g4.key()
