"""Optuna interop: ``search --optuna-storage`` (live) and ``export-study`` (finished runs) write studies
that optuna (and optuna-dashboard's WSGI app) read back with the run's own numbers."""

from __future__ import annotations

import io
import json
import sqlite3

import pytest
import yaml
from conftest import shared_path
from typer.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("pymoo")
optuna = pytest.importorskip("optuna")

from codesign.cli import app
from codesign.frontends import load
from codesign.passes.cost import cost_report

SPACE = {
    "name": "tiny_optuna", "data": {"dataset": "magic", "max_rows": 2000, "seed": 1},
    "model": {"layers": {"min": 1, "max": 2}, "width": [4, 8], "activation": ["relu"], "norm": ["none"],
              "dropout": [0.0], "bits": [4, 8]},
    "training": {"epochs": 1, "batch_size": 128, "learning_rate": [0.01], "l1": [0.0, 0.0001]},
    "objectives": ["accuracy", "bops"], "constraints": {"bops_max": 3000},
    "search": {"trials": 6, "population": 3, "seed": 0},
}  # fmt: skip


@pytest.fixture(scope="module")
def live_run(tmp_path_factory):
    """A 6-trial MAGIC NSGA-II search writing its study live into an SQLite storage."""
    shared_path("data", "magic", "magic04.data")
    tmp = tmp_path_factory.mktemp("optuna")
    space = tmp / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    url = f"sqlite:///{tmp / 'study.db'}"
    r = CliRunner().invoke(app, ["search", str(space), "-o", str(tmp / "run"), "--optuna-storage", url])
    assert r.exit_code == 0, r.output
    assert "Optuna study 'run'" in r.output
    return tmp / "run", url


def _store_rows(run_dir):
    with sqlite3.connect(run_dir / "trials.sqlite") as db:
        return {tid: json.loads(m) for tid, m in db.execute("SELECT id, metrics FROM trials WHERE name IS NULL")}


def test_live_study_holds_every_trial_with_the_runs_numbers(live_run):
    run_dir, url = live_run
    study = optuna.load_study(study_name="run", storage=url)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    rows = _store_rows(run_dir)
    trials = {t.user_attrs["codesign_trial"]: t for t in study.trials}
    assert sorted(trials) == sorted(rows) and len(rows) == 6
    for tid, m in rows.items():
        t = trials[tid]
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert t.values == [m["accuracy"], m["bops"]]
        assert t.system_attrs["constraints"] == [pytest.approx(m["bops"] / 3000 - 1.0)]
        genome = t.user_attrs["genome"]
        assert t.params["layers"] == len(genome["widths"]) and t.params["bits"] == genome["bits"]
        assert [t.params[f"width{i}"] for i in range(t.params["layers"])] == genome["widths"]
        assert "l1" in t.params and ("width1" in t.params) == (t.params["layers"] == 2)
        assert isinstance(t.distributions["bits"], optuna.distributions.CategoricalDistribution)
        # its QONNX file is real and costs to the trial's BOPs
        assert cost_report(load(run_dir / t.user_attrs["qonnx_file"])).totals["bops"] == m["bops"]
    # the feasible front optuna computes (constraints honoured) is pareto.json's
    pareto = json.loads((run_dir / "pareto.json").read_text())["pareto"]
    feasible = [t for t in study.trials if t.system_attrs["constraints"][0] <= 0]
    best = {t.user_attrs["codesign_trial"] for t in feasible if not any(
        o.values[0] >= t.values[0] and o.values[1] <= t.values[1] and o.values != t.values for o in feasible)}  # fmt: skip
    assert best == {r["trial"] for r in pareto}
    for r in pareto:
        assert trials[r["trial"]].values == [r["accuracy"], r["bops"]]
        assert trials[r["trial"]].user_attrs["label"] == r["label"]


def test_export_study_matches_live_and_is_idempotent(live_run, tmp_path):
    run_dir, url = live_run
    journal = tmp_path / "journal.log"
    runner = CliRunner()
    r = runner.invoke(app, ["export-study", str(run_dir), str(journal), "--study-name", "magic"])
    assert r.exit_code == 0, r.output
    assert "6 trials added" in r.output
    r = runner.invoke(app, ["export-study", str(run_dir), str(journal), "--study-name", "magic"])
    assert r.exit_code == 0 and "0 trials added" in r.output and "6 in all" in r.output
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    exported = optuna.load_study(study_name="magic", storage=JournalStorage(JournalFileBackend(str(journal))))
    live = optuna.load_study(study_name="run", storage=url)
    key = lambda t: t.user_attrs["codesign_trial"]
    for a, b in zip(sorted(exported.trials, key=key), sorted(live.trials, key=key)):
        assert (a.values, a.params, a.user_attrs, a.system_attrs) == (b.values, b.params, b.user_attrs, b.system_attrs)


def test_optuna_dashboard_app_reads_the_study(live_run):
    """optuna-dashboard's own WSGI app (no server) lists the study and serves its trials."""
    dashboard = pytest.importorskip("optuna_dashboard")
    run_dir, url = live_run
    wsgi = dashboard.wsgi(optuna.storages.RDBStorage(url))

    def get(path):
        status = []
        env = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "x", "SERVER_PORT": "80",
               "wsgi.input": io.BytesIO(), "wsgi.url_scheme": "http", "wsgi.errors": io.StringIO()}  # fmt: skip
        body = b"".join(wsgi(env, lambda s, h, *a: status.append(s)))
        assert status[0].startswith("200"), status
        return json.loads(body)

    studies = get("/api/studies")["study_summaries"]
    (sid,) = [s["study_id"] for s in studies if s["study_name"] == "run"]
    detail = get(f"/api/studies/{sid}")
    assert len(detail["trials"]) == 6
    assert all(len(t["constraints"]) == 1 for t in detail["trials"])  # the dashboard shows the bops budget
    assert sorted(t["values"][1] for t in detail["trials"]) == sorted(m["bops"] for m in _store_rows(run_dir).values())


def test_bad_storage_and_foreign_study_refused(live_run, tmp_path):
    run_dir, url = live_run
    runner = CliRunner()
    r = runner.invoke(app, ["export-study", str(tmp_path), url])
    assert r.exit_code == 2 and "no trials.sqlite" in r.output
    r = runner.invoke(app, ["export-study", str(run_dir), str(tmp_path / "nodir" / "j.log")])
    assert r.exit_code == 2 and "journal file's folder does not exist" in r.output
    r = runner.invoke(app, ["export-study", str(run_dir), "nosuchdialect://x"])
    assert r.exit_code == 2 and "cannot open the Optuna storage" in r.output
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    r = runner.invoke(
        app, ["search", str(space), "-o", str(tmp_path / "never"), "--optuna-storage", "nosuchdialect://x"]
    )
    assert r.exit_code == 2 and "cannot open the Optuna storage" in r.output
    assert not (tmp_path / "never").exists()  # refused before any data or training
    other = tmp_path / "run"  # same name, another folder: the study 'run' is not its own
    other.mkdir()
    (other / "trials.sqlite").write_bytes((run_dir / "trials.sqlite").read_bytes())
    r = runner.invoke(app, ["export-study", str(other), url])
    assert r.exit_code == 2 and "holds another run" in r.output


def test_study_grows_live_and_screened_trials_are_pruned(tmp_path):
    """Per generation, the study already holds every trial committed so far; proxy-screened
    (untrained) trials are PRUNED, without values, with their proxy score and BOPs."""
    from helpers import toy_npz

    from codesign.search.run import run_search
    from codesign.search.space import parse_space

    space = parse_space({
        "name": "toy", "data": {"dataset": "npz", "path": str(toy_npz(tmp_path, 600)), "label": "label"},
        "model": {"layers": {"min": 1, "max": 2}, "width": [2, 4, 8, 16], "activation": ["relu", "tanh"], "norm": ["none"]},
        "training": {"epochs": 1, "batch_size": 64, "learning_rate": [0.01]},
        "search": {"trials": 14, "population": 4, "seed": 1, "proxy": "naswot", "proxy_keep": 0.5},
    })  # fmt: skip
    url = f"sqlite:///{tmp_path / 's.db'}"
    seen = []

    def on_progress(p):
        seen.append((p.done, len(optuna.load_study(study_name="run", storage=url).trials)))

    run_search(space, tmp_path / "run", on_progress=on_progress, optuna_storage=url)
    assert len(seen) >= 2 and all(done == in_study for done, in_study in seen), seen
    study = optuna.load_study(study_name="run", storage=url)
    stored = _store_rows(tmp_path / "run")
    screened = {tid for tid, m in stored.items() if m.get("screened")}
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert screened and {t.user_attrs["codesign_trial"] for t in pruned} == screened
    for t in pruned:
        m = stored[t.user_attrs["codesign_trial"]]
        assert t.values is None and t.user_attrs["proxy"] == m["proxy"] and t.user_attrs["bops"] == m["bops"]
        assert t.user_attrs["qonnx_file"] is None  # no trained weights, no file
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) + len(pruned) == len(stored) == 14
