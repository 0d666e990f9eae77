"""BOPs vs LUTs as the search objective (issue 17 item 5): the `lut` objective, the shared-reference
hypervolume, and benchmarks/objective_study.py at a toy size (estimated LUTs only, no yosys)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("pymoo")

from conftest import ROOT, shared_path
from helpers import toy_npz

from codesign.search.objectives import objective_vector, pareto_mask, shared_hypervolumes
from codesign.search.space import SearchSpaceError, parse_space


def _lut_space(tmp_path: Path, **extra) -> dict:
    d = {
        "name": "toy_lut",
        "data": {"dataset": "npz", "path": str(toy_npz(tmp_path, 400)), "label": "label"},
        "model": {"layers": {"min": 1, "max": 2}, "width": [2, 4, 8], "activation": ["relu"], "bits": [3, 6]},
        "training": {"epochs": 1, "batch_size": 64, "learning_rate": [0.01]},
        "search": {"trials": 6, "population": 3, "seed": 1},
        "objectives": ["accuracy", "lut"],
        "estimator": "da",
        "target": "vu13p",
    }
    d.update(extra)
    return d


def test_shared_hypervolumes_use_one_reference():
    """Worked by hand: ref = (1 - 0.8 + 1e-3, log10(1.1 * 100)); each front one rectangle up to it."""
    hv, ref = shared_hypervolumes({"a": [(0.9, 100.0)], "b": [(0.8, 10.0)], "none": []})
    assert ref == pytest.approx((0.201, math.log10(110.0)))
    assert hv["a"] == pytest.approx((0.201 - 0.1) * (math.log10(110.0) - 2.0))
    assert hv["b"] == pytest.approx((0.201 - 0.2) * (math.log10(110.0) - 1.0))
    assert hv["none"] == 0.0
    # a dominated extra point adds nothing; a non-dominated one adds its own rectangle
    hv2, _ = shared_hypervolumes({"a": [(0.9, 100.0), (0.85, 100.0)], "b": [(0.8, 10.0), (0.9, 100.0)]})
    assert hv2["a"] == pytest.approx(hv["a"])
    assert hv2["b"] == pytest.approx(hv["a"] + (0.201 - 0.2) * (2.0 - 1.0))
    assert shared_hypervolumes({}) == ({}, (0.0, 0.0))


def test_lut_objective_needs_a_target(tmp_path):
    spec = _lut_space(tmp_path)
    del spec["target"]
    with pytest.raises(SearchSpaceError, match="need a 'target'"):
        parse_space(spec)


def test_lut_objective_searches_on_the_estimators_luts(tmp_path):
    """Every trial carries the da estimator's LUT total, and the front is non-dominated on it."""
    pytest.importorskip("alkaid")
    from codesign.passes.estimate import estimate
    from codesign.search.genome import build_ir
    from codesign.search.run import run_search
    from codesign.search.store import TrialStore

    space = parse_space(_lut_space(tmp_path))
    summary = run_search(space, tmp_path / "run")
    trials = TrialStore(tmp_path / "run" / "trials.sqlite", space.digest(), resume=True).trials(with_params=True)
    assert len(trials) == 6
    t = trials[-1]
    report = estimate(build_ir(t.genome, 5, 2, t.params), "da", target="vu13p")
    assert t.metrics["LUT"] == report.totals["LUT"] > 0
    assert objective_vector(space, t.metrics) == [-t.metrics["accuracy"], t.metrics["LUT"]]
    front = [[-p.metrics["accuracy"], p.metrics["LUT"]] for p in summary.pareto]
    assert front and all(pareto_mask(front))
    everything = [[-x.metrics["accuracy"], x.metrics["LUT"]] for x in trials]
    on_front = {p.id for p in summary.pareto}
    for x, keep in zip(trials, pareto_mask(everything)):  # exactly the non-dominated trials
        assert keep == (x.id in on_front)


@pytest.mark.slow
def test_objective_study_toy_magic(tmp_path):
    """Both searches run, each front is non-empty and non-dominated on its own objective; table + plot."""
    pytest.importorskip("alkaid")
    shared_path("data", "magic", "magic04.data")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import objective_study

    out = tmp_path / "study"
    assert objective_study.main(["--task", "magic", "-o", str(out), "--trials", "8", "--population", "4",
                                 "--epochs", "1", "--max-rows", "3000", "--no-synth"]) == 0  # fmt: skip
    got = json.loads((out / "study.json").read_text())
    rows = got["rows"]
    assert set(rows[0]) == {"task", "seed", "objective", "trial", "label", "accuracy", "bops", "est_lut", "real_lut",
                            "real_ff", "synth_s", "note"}  # fmt: skip
    for obj, key in (("bops", "bops"), ("lut", "est_lut")):
        front = [r for r in rows if r["objective"] == obj]
        assert front, obj
        assert all(pareto_mask([[-r["accuracy"], r[key]] for r in front])), obj
        assert all(0.0 < r["accuracy"] <= 1.0 and r["bops"] > 0 and r["est_lut"] >= 0 for r in front)
        assert max(r["accuracy"] for r in front) > 0.75  # the best model learned (MAGIC: 65% majority class)
        assert all(r["real_lut"] is None for r in front)  # --no-synth
    (magic,) = got["tasks"]["magic"]["seeds"]
    assert magic["seed"] == 0 and magic["lut_kind"] == "estimated" and set(magic["hypervolume"]) == {"bops", "lut"}
    assert all(v > 0 for v in magic["hypervolume"].values())
    gain = magic["hypervolume"]["lut"] / magic["hypervolume"]["bops"] - 1
    assert got["tasks"]["magic"]["overall"]["lut_vs_bops_hv_gain"] == [pytest.approx(gain)]
    png = out / "objective_study.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
