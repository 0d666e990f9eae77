"""Issue-7 acceptance on real data: 200-trial MAGIC search, < 30 min on 2 cores, beats 64-32-32 at <= 1/7 BOPs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import shared_path

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_magic_200_trials_beats_baseline_at_a_seventh_of_the_bops(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("pymoo")
    shared_path("data", "magic", "magic04.data")
    from codesign.search.run import run_search

    t0 = time.perf_counter()
    summary = run_search(ROOT / "examples/search/magic_small.yaml", tmp_path / "run", trials=200)
    minutes = (time.perf_counter() - t0) / 60
    assert summary.trials == 200
    assert minutes < 30, f"200 trials took {minutes:.1f} min"
    (baseline,) = [b for b in summary.baselines if b.name == "mlp_64_32_32_w8"]
    assert baseline.genome.widths == (64, 32, 32) and baseline.genome.bits == 8
    best = summary.best_vs_baseline(baseline)
    assert best is not None, "no searched model reaches the baseline's accuracy"
    assert best.genome.bits == baseline.genome.bits
    assert best.metrics["accuracy"] >= baseline.metrics["accuracy"]
    assert best.metrics["bops"] * 7 <= baseline.metrics["bops"], (best.metrics, baseline.metrics)
