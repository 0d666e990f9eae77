"""Differentiable (DARTS/NASH-style) search: the cost term is the cost pass's BOPs, derived
architectures land in the trial store like NSGA-II trials, and they compile bit-exact."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import toy_npz

from codesign.passes.cost import cost_report
from codesign.search.darts import DARTS_JSON, temperature
from codesign.search.genome import build_ir, random_params
from codesign.search.pipeline import load_pipeline, run_pipeline
from codesign.search.run import run_search
from codesign.search.space import SearchSpaceError, parse_space
from codesign.search.store import TrialStore
from codesign.search.supernet import Supernet

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "search"

MLP = {
    "name": "t", "data": {"dataset": "magic"},
    "model": {"layers": {"min": 1, "max": 3}, "width": [2, 8, 32], "activation": ["relu", "tanh"],
              "norm": ["none", "batch"], "bits": [3, 4, 8]},
    "search": {"method": "darts"},
}  # fmt: skip
CONV = {
    "name": "c", "data": {"dataset": "mnist"},
    "model": {"input_shape": [1, 12, 12], "layers": {"min": 2, "max": 4}, "bits": [4, 8], "blocks": [
        {"type": "conv2d", "channels": [2, 4], "kernel": [1, 3, 5], "pool": ["max"], "skip": [False, True]},
        {"type": "conv2d", "channels": [4, 6], "kernel": [3, 5], "pool": ["none", "max"], "skip": [True, False]},
        {"type": "dense", "width": [4, 16]}, {"type": "dense", "width": [3, 5]}]},
    "search": {"method": "darts"},
}  # fmt: skip


def _dense_params(genome, n_features: int, n_classes: int):
    """Parameters with no weight quantizing to zero: the cost pass then counts every MAC (density 1)."""
    p = random_params(genome, n_features, n_classes)
    return {k: np.full_like(v, 0.5) if k.startswith("w") and not k.startswith("ws") else v for k, v in p.items()}


CONV1D = {
    "name": "c1", "data": {"dataset": "npz", "path": "unused.npz", "label": "y"},
    "model": {"input_shape": [2, 16], "layers": {"min": 1, "max": 3}, "bits": [3, 6], "blocks": [
        {"type": "conv1d", "channels": [2, 6], "kernel": [3, 5], "pool": ["max"], "skip": [True, False]},
        {"type": "conv1d", "channels": [6], "kernel": [1, 3], "pool": ["avg"], "skip": [True, False]},
        {"type": "dense", "width": [4, 8]}]},
    "search": {"method": "darts"},
}  # fmt: skip


@pytest.mark.parametrize("definition", ["qonnx", "nac"])
@pytest.mark.parametrize("cfg, n_features", [(MLP, 10), (CONV, 144), (CONV1D, 32)], ids=["mlp", "conv", "conv1d"])
def test_expected_bops_at_one_hot_is_the_cost_pass(cfg, n_features, definition):
    space = parse_space({**cfg, "search": {"method": "darts", "bops": definition}})
    net = Supernet(space, n_features, 3, np.random.default_rng(0).normal(size=(50, n_features)).astype(np.float32))
    rng = np.random.default_rng(1)
    labels = set()
    for _ in range(12):
        with torch.no_grad():
            for a in net.alpha.values():
                a.fill_(0.0)
                a[rng.integers(len(a))] = 60.0
        genome = net.derive()
        labels.add(genome.label())
        ir = build_ir(genome, n_features, 3, _dense_params(genome, n_features, 3))
        assert float(net.expected_bops().detach()) == pytest.approx(cost_report(ir, definition).bops, rel=1e-9)
    assert len(labels) > 6  # the draws really covered different architectures


def test_expected_bops_is_a_smooth_mixture():
    """Uniform logits: E[BOPs] sits strictly between the cheapest and the largest net, and has a gradient."""
    space = parse_space(MLP)
    net = Supernet(space, 10, 3, np.zeros((4, 10), np.float32))
    e = net.expected_bops()
    e.backward()
    assert 0 < float(e) < net.max_bops()
    assert all(
        a.grad is not None and float(a.grad.abs().sum()) > 0
        for n, a in net.alpha.items()
        if not n.startswith(("activation", "norm"))
    )
    # max_bops: 3 layers of 32 at 8 bits: (10*32 + 32*32*2 + 32*3) * 64
    assert net.max_bops() == (10 * 32 + 32 * 32 * 2 + 32 * 3) * 64


@pytest.mark.parametrize(
    "search, message",
    [
        ({"method": "nsga2", "darts": {"epochs": 2}}, "a darts section needs method: darts"),
        ({"method": "darts", "proxy": "naswot"}, "does not apply to method: darts"),
        ({"method": "darts", "darts": {"cost_weights": [0.1], "bops_targets": [0.5]}}, "not both"),
        ({"method": "darts", "darts": {"bops_targets": [0.0]}}, "fractions in (0, 1]"),
        ({"method": "darts", "darts": {"cost_weights": [-1]}}, ">= 0"),
        ({"method": "simplex"}, "search.method"),
    ],
)
def test_bad_darts_settings_are_one_line_errors(search, message):
    with pytest.raises(SearchSpaceError, match=None) as err:
        parse_space({**MLP, "search": search})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unrelaxable_spaces_are_refused():
    attention = json.loads(json.dumps(CONV))
    attention["model"]["blocks"][1] = {"type": "conv_attention", "channels": [4]}
    with pytest.raises(SearchSpaceError, match="conv_attention"):
        Supernet(parse_space(attention), 144, 3, np.zeros((2, 144), np.float32))


def test_nsga2_digest_is_unchanged_by_the_darts_fields():
    """Adding search.method must not invalidate stores made before it (golden digest of magic_small.yaml)."""
    from codesign.search.space import load_space

    assert load_space(EXAMPLES / "magic_small.yaml").digest() == "28f14d9374f951a7"


def test_temperature_anneals_geometrically():
    spec = parse_space(
        {**MLP, "search": {"method": "darts", "darts": {"epochs": 5, "temperature": [1.0, 0.01]}}}
    ).search.darts
    assert [round(temperature(spec, e), 6) for e in range(5)] == [1.0, 0.316228, 0.1, 0.031623, 0.01]


def _toy(tmp_path: Path, **darts) -> dict:
    return {
        "name": "toy_darts",
        "data": {"dataset": "npz", "path": str(toy_npz(tmp_path, 600)), "label": "label"},
        "model": {
            "layers": {"min": 1, "max": 2},
            "width": [2, 8, 32],
            "activation": ["relu"],
            "norm": ["none"],
            "bits": [4, 8],
        },
        "training": {"epochs": 2, "batch_size": 64, "learning_rate": [0.01]},
        "target": "vu13p",
        "search": {"method": "darts", "seed": 0, "darts": {"warmup_epochs": 1, "epochs": 3, **darts}},
    }


def test_a_space_with_nothing_to_relax_derives_its_one_architecture(tmp_path):
    cfg = _toy(tmp_path, bops_targets=[1.0, 0.1])
    cfg["model"] = {"layers": {"min": 2, "max": 2}, "width": [8], "activation": ["relu"], "norm": ["none"], "bits": [8]}
    summary = run_search(parse_space(cfg), tmp_path / "run")
    assert summary.trials == 1 and [t.genome.label() for t in summary.pareto] == ["8-8 relu w8"]


def test_darts_run_fills_the_trial_store_and_resumes_without_retraining(tmp_path):
    space = parse_space(_toy(tmp_path, bops_targets=[1.0, 0.02]))
    run = tmp_path / "run"
    summary = run_search(space, run)
    payload = json.loads((run / DARTS_JSON).read_text())
    assert [s["bops_target"] for s in payload["supernets"]] == [1.0, 0.02]
    for s in payload["supernets"]:
        assert set(s["probabilities"]) == {"layers", "width0", "width1", "bits"}
        assert all(abs(sum(p) - 1.0) < 1e-3 for p in s["probabilities"].values())
    store = TrialStore(run / "trials.sqlite", space.digest(), resume=True)
    trials = store.trials()
    store.close()
    derived = {s["label"] for s in payload["supernets"]}
    assert {t.genome.label() for t in trials} == derived
    assert summary.trials == len(derived) and summary.pareto
    bops = {t.genome.label(): t.metrics["bops"] for t in trials}
    big, small = (s["label"] for s in payload["supernets"])
    assert bops[small] < bops[big]  # the tight budget derived the cheaper net
    assert (run / "pareto.csv").is_file() and list((run / "candidates").glob("*.onnx"))
    before = (run / DARTS_JSON).read_text()
    t0 = time.perf_counter()
    again = run_search(space, run, resume=True)
    assert time.perf_counter() - t0 < 5.0  # nothing retrained, no supernet re-run
    assert again.trials == summary.trials and (run / DARTS_JSON).read_text() == before


def test_global_compile_verifies_bit_exact_and_writes_finn(tmp_path):
    cfg_path = tmp_path / "toy.yaml"
    import yaml

    cfg = _toy(tmp_path, cost_weights=[0.0])
    cfg["compile"] = {"samples": 50, "tolerance": 0.5, "backends": ["hls4ml", "finn"]}
    cfg_path.write_text(yaml.safe_dump(cfg))
    out = run_pipeline(load_pipeline(cfg_path), tmp_path / "run", stage="global", compile=True)
    chosen = json.loads((tmp_path / "run" / "chosen.json").read_text())
    assert chosen["front"] == "global" and out.chosen["verify"]["bit_exact"] is True
    assert out.chosen["verify"]["max_abs_diff"] == 0.0
    finn = tmp_path / "run" / "finn"
    assert (finn / "model.onnx").is_file() and (finn / "dataflow_build_config.json").is_file()


def test_cli_method_override_and_errors(tmp_path):
    import yaml

    cfg = _toy(tmp_path, cost_weights=[0.0])
    cfg["search"] = {"seed": 0, "trials": 4, "population": 4}  # an NSGA-II file, switched from the command line
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "codesign.cli", "search", str(path), "-o", str(tmp_path / "r")]
    res = subprocess.run([*cmd, "--method", "darts"], capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "r" / DARTS_JSON).is_file() and "Pareto front" in res.stdout
    bad = subprocess.run(
        [*cmd[:-1], str(tmp_path / "r2"), "--method", "simplex"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "search.method" in bad.stderr
    clash = subprocess.run([*cmd[:-1], str(tmp_path / "r2"), "--method", "darts", "--proxy", "naswot"],
                           capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert clash.returncode == 2 and "does not apply to method: darts" in clash.stderr
    trials = subprocess.run([*cmd[:-1], str(tmp_path / "r2"), "--method", "darts", "--trials", "9"],
                            capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert trials.returncode == 2 and "--trials applies to method nsga2" in trials.stderr
    assert not (tmp_path / "r2").exists()


def test_report_compares_fronts_of_two_methods(tmp_path):
    from codesign.search.report import comparison, write_report

    darts = _toy(tmp_path, bops_targets=[1.0, 0.05])
    run_search(parse_space(darts), tmp_path / "darts")
    nsga = {**darts, "search": {"seed": 0, "trials": 6, "population": 4}}
    run_search(parse_space(nsga), tmp_path / "nsga")
    rows = comparison([tmp_path / "darts", tmp_path / "nsga"])
    assert [r["method"] for r in rows] == ["darts", "nsga2"]
    assert rows[1]["trials"] == 6 and all(r["wall_s"] > 0 and r["hypervolume"] > 0 for r in rows)
    # the hypervolume is the area the front dominates: recompute it by hand for the DARTS front (2-D staircase)
    pts = sorted(rows[0]["points"], key=lambda p: p[1])
    all_pts = rows[0]["points"] + rows[1]["points"]
    ref_err, ref_x = 1.0 - min(a for a, _ in all_pts) + 1e-3, np.log10(max(b for _, b in all_pts) * 1.1)
    area, best_err = 0.0, ref_err
    for (a, b), nxt in zip(pts, [*pts[1:], (None, 10**ref_x)]):
        best_err = min(best_err, 1.0 - a)
        area += (np.log10(nxt[1]) - np.log10(b)) * (ref_err - best_err)
    assert rows[0]["hypervolume"] == pytest.approx(area, rel=1e-9)
    page = write_report(tmp_path / "darts", [tmp_path / "nsga"]).read_text()
    assert "Methods compared" in page and "nsga2" in page and page.count("data:image/png") >= 1
    assert 'id="global-plot"' in page  # the darts run's trials, interactive
    from codesign.errors import CodesignError

    with pytest.raises(CodesignError, match="no pareto.json"):
        write_report(tmp_path / "darts", [tmp_path])


@pytest.mark.slow
@pytest.mark.parametrize(
    "example, data", [("magic_darts.yaml", ("data", "magic", "magic04.data")), ("mnist_darts.yaml", ("data", "mnist"))]
)
def test_acceptance_darts_examples_finish_in_20_minutes_and_verify(example, data, tmp_path):
    """Issue 10: the shipped differentiable searches (MAGIC MLP, MNIST t10k conv cells) finish in under
    20 minutes here, spread a front over the BOPs budgets, and their chosen model compiles bit-exact
    (hls4ml C-sim) and into a FINN folder."""
    from conftest import shared_path

    shared_path(*data)
    t0 = time.perf_counter()
    out = run_pipeline(load_pipeline(EXAMPLES / example), tmp_path / "run", stage="global", compile=True)
    assert time.perf_counter() - t0 < 20 * 60
    payload = json.loads((tmp_path / "run" / DARTS_JSON).read_text())
    budgets = [s["expected_bops"] / s["max_bops"] for s in payload["supernets"]]
    assert budgets == sorted(budgets, reverse=True) and budgets[0] / budgets[-1] > 10  # budgets really steer the cost
    bops = [t.metrics["bops"] for t in out.global_summary.pareto]
    assert len(bops) >= 3 and max(bops) / min(bops) > 10
    best = max(t.metrics["accuracy"] for t in out.global_summary.pareto)
    assert best > (0.85 if "magic" in example else 0.95)
    v = out.chosen["verify"]
    assert v["bit_exact"] is True and v["max_abs_diff"] == 0.0 and v["samples"] >= 50
    assert (tmp_path / "run" / "finn" / "model.onnx").is_file()


def test_derive_top_ranks_single_gene_changes_by_joint_probability():
    space = parse_space({**MLP, "model": {**MLP["model"], "activation": ["relu"], "norm": ["none"]}})
    net = Supernet(space, 10, 3, np.zeros((4, 10), np.float32))
    with torch.no_grad():
        for a in net.alpha.values():
            a.fill_(-5.0)
        net.alpha["layers"].copy_(torch.tensor([0.0, -5.0, 3.0]))  # depth 3, runner-up depth 1 (log-ratio -3)
        net.alpha["bits"].copy_(torch.tensor([-5.0, 1.0, 2.0]))  # 8 bit, runner-up 4 bit (log-ratio -1)
        for i in range(3):
            net.alpha[f"width{i}"].copy_(torch.tensor([-5.0, -5.0, 2.0]))  # 32 wide, alternatives far behind (-7)
    labels = [g.label() for g in net.derive_top(3)]
    assert labels == ["32-32-32 relu w8", "32-32-32 relu w4", "32 relu w8"]
    assert net.derive().label() == labels[0]


def test_stage_all_on_a_darts_run_goes_through_local_and_compiles(tmp_path):
    """The local stage and --compile take DARTS trials like NSGA-II ones."""
    import yaml

    cfg = _toy(tmp_path, bops_targets=[1.0, 0.05])
    cfg["local"] = {"bits": [4], "tpe_trials": 1, "epochs": [1], "prune_rounds": 1, "rewind_epoch": 0}
    cfg["compile"] = {"samples": 20}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = run_pipeline(load_pipeline(tmp_path / "c.yaml"), tmp_path / "run", stage="all", compile=True)
    assert [r["round"] for r in out.local_summary.results] == [0, 1]
    assert out.chosen["front"] == "local" and out.chosen["verify"]["bit_exact"] is True
