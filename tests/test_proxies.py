"""Zero-cost proxies (synflow, NASWOT, grad-norm) and the proxy pre-screen of NSGA-II offspring."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("pymoo")

from helpers import toy_npz

from codesign.errors import CodesignError
from codesign.search import proxies
from codesign.search.data import load_dataset
from codesign.search.genome import Genome
from codesign.search.nsga import SCREENED_ACCURACY, pessimistic_objectives
from codesign.search.objectives import pareto_trials
from codesign.search.run import run_search
from codesign.search.space import SearchSpaceError, parse_space
from codesign.search.store import TrialStore


def _npz(tmp_path: Path, n: int = 600) -> Path:
    return toy_npz(tmp_path, n)


def _space(tmp_path: Path, trials: int = 16, population: int = 6, **search) -> dict:
    return {
        "name": "toy",
        "data": {"dataset": "npz", "path": str(_npz(tmp_path)), "label": "label"},
        "model": {
            "layers": {"min": 1, "max": 3},
            "width": [2, 4, 8, 16],
            "activation": ["relu", "tanh"],
            "norm": ["none", "batch"],
        },
        "training": {"epochs": 1, "batch_size": 64, "learning_rate": [0.003, 0.01]},
        "search": {"trials": trials, "population": population, "seed": 1, **search},
    }


@pytest.fixture
def toy(tmp_path):
    space = parse_space(_space(tmp_path))
    return space, load_dataset(space.data)


@pytest.mark.parametrize("name", sorted(proxies.PROXIES))
def test_proxies_deterministic_and_finite(toy, name):
    _, data = toy
    genomes = [Genome((w, w), ("relu", "relu"), ("none", "batch")) for w in (2, 8, 16)]
    proxies.score(genomes[:1], data, name)  # warm-up (torch kernels)
    first = proxies.score(genomes, data, name)
    assert first == proxies.score(genomes, data, name)
    assert all(math.isfinite(v) for v in first)
    assert len(set(first)) == 3  # the proxy tells the three widths apart


def test_naswot_and_synflow_prefer_the_wider_net(toy):
    """Two ReLUs cannot separate 64 inputs: the 2-wide net has many identical codes, the 16-wide few."""
    _, data = toy
    narrow, wide = Genome((2,), ("relu",), ("none",)), Genome((16,), ("relu",), ("none",))
    nw = proxies.score([narrow, wide], data, "naswot")
    sf = proxies.score([narrow, wide], data, "synflow")
    assert nw[1] > nw[0] + 10
    assert sf[1] > sf[0]
    # NASWOT upper bound: log det of (K + I) with K the all-agree kernel is at most B*log(units + 1)
    units = 16
    assert nw[1] <= proxies.PROXY_BATCH * math.log(units + 1 + proxies.PROXY_BATCH)


def test_naswot_known_value_for_identical_codes(toy):
    """All-zero weights and bias: every input has the same code, K = units * ones, det(K + I) = 1 + B*units."""
    import torch

    _, data = toy
    g = Genome((4,), ("relu",), ("none",))
    x, _ = proxies.proxy_batch(data)
    net = proxies._net(g, data, 0, x)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    codes = []
    hook = net.norms[0].register_forward_hook(lambda _m, _i, out: codes.append((out > 0).double()))
    with torch.no_grad():
        net(x)
    hook.remove()
    c = codes[0]
    k = c @ c.T + (1 - c) @ (1 - c).T + torch.eye(len(x), dtype=torch.float64)
    assert float(torch.linalg.slogdet(k)[1]) == pytest.approx(math.log(1 + len(x) * 4))


def test_screen_keeps_the_best_fraction():
    gs = [Genome((w,), ("relu",), ("none",)) for w in (1, 2, 3, 4, 5)]
    assert proxies.screen(gs, [0.1, 5.0, -math.inf, 3.0, 3.0], 0.5) == [False, True, False, True, True]
    assert proxies.screen(gs, [1, 2, 3, 4, 5], 0.01) == [False, False, False, False, True]
    assert proxies.screen(gs, [1, 2, 3, 4, 5], 1.0) == [True] * 5
    # with costs: the (score up, cost down) Pareto level comes first, then the score
    scores, costs = [5.0, 4.0, 3.0, 2.0, 1.0], [50.0, 60.0, 10.0, 70.0, 80.0]
    assert proxies.screen(gs, scores, 0.4, costs) == [True, False, True, False, False]
    assert proxies.screen(gs, scores, 0.6, costs) == [True, True, True, False, False]
    # one Pareto level: its two extremes (best proxy, cheapest) go first
    assert proxies.screen(gs, scores, 0.4, [50.0, 40.0, 30.0, 20.0, 10.0]) == [True, False, False, False, True]
    assert proxies.screen(gs, [5.0, -math.inf, 3.0, 2.0, 1.0], 0.4, [50.0, 1.0, 30.0, 20.0, 10.0]) == [
        True,
        True,
        False,
        False,
        False,
    ]
    with pytest.raises(CodesignError, match="unknown proxy"):
        proxies.score(gs, None, "zen")  # type: ignore[arg-type]


def test_space_validates_proxy_options(tmp_path):
    assert parse_space(_space(tmp_path, proxy="naswot")).search.proxy_keep == 0.5
    with pytest.raises(SearchSpaceError, match="proxy_keep/proxy_cost need a proxy"):
        parse_space(_space(tmp_path, proxy_keep=0.3))
    with pytest.raises(SearchSpaceError, match="search.proxy"):
        parse_space(_space(tmp_path, proxy="zen"))
    with pytest.raises(SearchSpaceError, match="proxy_keep"):
        parse_space(_space(tmp_path, proxy="synflow", proxy_keep=0.0))
    plain = parse_space(_space(tmp_path)).digest()
    assert parse_space(_space(tmp_path, proxy="naswot")).digest() != plain


def test_digest_unchanged_for_spaces_without_a_proxy():
    """Stores made before proxies existed must still resume: the digest of a proxy-less space is as before."""
    d = {
        "name": "toy",
        "data": {"dataset": "npz", "path": "/x.npz", "label": "label"},
        "search": {"trials": 5, "population": 4, "seed": 3},
    }
    assert parse_space(d).digest() == "1db13440f6285485"  # computed with the space.py of before this change


def test_pessimistic_objectives_rank_screened_last(toy):
    space, _ = toy
    rows = [
        {"accuracy": 0.8, "bops": 100.0},
        {"accuracy": 0.6, "bops": 10.0},
        {"accuracy": 0.0, "bops": 1.0, "screened": True},
    ]
    f = pessimistic_objectives(space, rows)
    np.testing.assert_array_equal(f, [[-0.8, 100.0], [-0.6, 10.0], [0.0, 100.0]])


def test_search_with_proxy_trains_only_the_kept_share_and_resumes(tmp_path):
    space = parse_space(_space(tmp_path, trials=16, population=6, proxy="naswot", proxy_keep=0.5, proxy_cost=False))
    summary = run_search(space, tmp_path / "run")
    store = TrialStore(tmp_path / "run" / "trials.sqlite", space.digest(), resume=True)
    trials = store.trials()
    store.close()
    assert summary.trials == 16 == len(trials)
    screened = [t for t in trials if t.metrics.get("screened")]
    trained = [t for t in trials if not t.metrics.get("screened")]
    # generations 0 and 1: 6 new candidates, 3 trained each; generation 2 is cut at 4 of its 6 (0-4 screened)
    assert sum(t.generation < 2 for t in screened) == 6 and 6 <= len(screened) <= 10
    assert all(t.metrics["accuracy"] == SCREENED_ACCURACY and not t.feasible and t.seconds < 1.0 for t in screened)
    assert all("proxy" in t.metrics and t.metrics["bops"] > 0 for t in trials)
    front_keys = {t.key for t in summary.pareto}
    assert front_keys and not front_keys & {t.key for t in screened}
    # within a generation, every trained candidate scored at least as high as every screened one
    for gen in {t.generation for t in screened}:
        kept = [t.metrics["proxy"] for t in trained if t.generation == gen]
        dropped = [t.metrics["proxy"] for t in screened if t.generation == gen]
        assert min(kept) >= max(dropped)
    # a search stopped at 8 trials and resumed to 16 makes exactly the same trials and choices
    run_search(space, tmp_path / "split", trials=8)
    run_search(space, tmp_path / "split", trials=16, resume=True)
    store = TrialStore(tmp_path / "split" / "trials.sqlite", space.digest(), resume=True)
    again = {t.key: bool(t.metrics.get("screened")) for t in store.trials()}
    store.close()
    assert again == {t.key: bool(t.metrics.get("screened")) for t in trials}
    assert pareto_trials(space, trials)  # the front is made of trained candidates only


def test_cost_aware_screen_always_trains_the_cheapest(tmp_path):
    """The default ranks by (proxy, BOPs) Pareto level: no screened-out candidate beats a trained one on both."""
    space = parse_space(_space(tmp_path, trials=6, population=6, proxy="synflow", proxy_keep=0.34))
    assert space.search.proxy_cost
    run_search(space, tmp_path / "run")
    store = TrialStore(tmp_path / "run" / "trials.sqlite", space.digest(), resume=True)
    trials = store.trials()
    store.close()
    assert len(trials) == 6 and sum(not t.metrics.get("screened") for t in trials) == 3
    kept = [t for t in trials if not t.metrics.get("screened")]
    dropped = [t for t in trials if t.metrics.get("screened")]
    for d in dropped:
        for k in kept:
            assert not (d.metrics["proxy"] >= k.metrics["proxy"] and d.metrics["bops"] <= k.metrics["bops"])


def test_resume_after_many_generations_continues(tmp_path):
    """Regression: replayed generations used to count as 'stale', so a resume after >= 5 generations added nothing."""
    space = parse_space(_space(tmp_path, trials=20, population=4))
    run_search(space, tmp_path / "run")
    summary = run_search(space, tmp_path / "run", trials=24, resume=True)
    assert summary.trials == 24


def test_proxies_score_conv_genomes(tmp_path):
    """Conv candidates (ConvCandidateNet): codes are taken from every block's norm output, conv maps included."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 64)).astype(np.float32)
    np.savez(tmp_path / "img.npz", x=x, label=(x[:, 0] > 0).astype(np.int64))
    space = parse_space({
        "name": "c", "data": {"dataset": "npz", "path": str(tmp_path / "img.npz"), "label": "label"},
        "model": {"layers": {"min": 2, "max": 2}, "input_shape": [1, 8, 8],
                  "blocks": [{"type": "conv2d", "channels": [2, 8], "kernel": [3]}, {"type": "dense", "width": [4]}]},
    })  # fmt: skip
    data = load_dataset(space.data)
    narrow = Genome(
        (2, 4),
        ("relu", "relu"),
        ("none", "none"),
        kinds=("conv2d", "dense"),
        kernels=(3,),
        skips=(False,),
        pools=("none",),
        input_shape=(1, 8, 8),
    )
    wide = Genome(
        (8, 4),
        ("relu", "relu"),
        ("none", "none"),
        kinds=("conv2d", "dense"),
        kernels=(3,),
        skips=(False,),
        pools=("none",),
        input_shape=(1, 8, 8),
    )
    for name in proxies.PROXIES:
        s = proxies.score([narrow, wide], data, name)
        assert all(math.isfinite(v) for v in s) and s[0] != s[1]
    nw = proxies.score([narrow, wide], data, "naswot")
    assert nw[1] > nw[0]  # 8 x 64 conv units tell 64 inputs apart better than 2 x 64
