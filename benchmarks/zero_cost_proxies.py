"""Zero-cost proxies on MAGIC: rank correlation with trained accuracy, and search time saved.

Part 1: ``--candidates`` distinct genomes sampled from examples/search/magic_small.yaml
(fixed seed) are trained ``--epochs`` epochs by the search's own trainer; each proxy
scores the untrained ones. Prints each proxy's Spearman rho with the validation
accuracy and its cost per candidate.

Part 2: the same space searched with NSGA-II at ``--trials`` trials, without a proxy,
then with ``search.proxy`` (``--proxy``, keep ``--keep``), growing the proxy run's trial
budget by one population at a time (``--resume``) until its front's hypervolume reaches the
plain run's. Hypervolume is of (1 - accuracy, log10 BOPs), reference (0.5, log10 of the
largest BOPs + 0.1). Prints the wall time of both at equal final front quality.

    .venv/bin/python benchmarks/zero_cost_proxies.py [--candidates 40] [--epochs 3] [--trials 60]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import yaml

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parent.parent
SPACE = ROOT / "examples" / "search" / "magic_small.yaml"


def _space(epochs: int, trials: int, population: int, proxy: str | None = None, keep: float | None = None):
    from codesign.search.space import parse_space

    d = yaml.safe_load(SPACE.read_text())
    d["training"]["epochs"] = epochs
    d["search"].update(trials=trials, population=population)
    d["baselines"] = []
    if proxy is not None:
        d["search"].update(proxy=proxy, proxy_keep=keep)
    return parse_space(d, str(SPACE))


def sample(space, n: int, seed: int) -> list:
    from codesign.search.genome import decode

    rng = np.random.default_rng(seed)
    out, keys = [], set()
    while len(out) < n:
        g = decode(space, [rng.integers(len(c)) for _, c in space.genes()])
        if g.key() not in keys:
            keys.add(g.key())
            out.append(g)
    return out


def correlation(args, data) -> None:
    from scipy.stats import spearmanr

    from codesign.search import proxies
    from codesign.search.train import train_population

    space = _space(args.epochs, args.trials, args.population)
    genomes = sample(space, args.candidates, args.seed)
    t0 = time.perf_counter()
    acc = [r.accuracy for r in train_population(genomes, data, args.epochs, space.training.batch_size, seed=0)]
    train_s = time.perf_counter() - t0
    print(
        f"{len(genomes)} MAGIC candidates, {args.epochs} epochs: trained in {train_s:.1f} s "
        f"({train_s / len(genomes) * 1000:.0f} ms/candidate, batched); accuracy {min(acc):.3f} .. {max(acc):.3f}"
    )
    proxies.score(genomes[:1], data, "synflow")  # warm-up
    print(f"{'proxy':<10} {'spearman rho':>12} {'p-value':>9} {'ms/candidate':>13}")
    for name in proxies.PROXIES:
        t0 = time.perf_counter()
        s = proxies.score(genomes, data, name)
        ms = (time.perf_counter() - t0) / len(genomes) * 1000
        s = [v if math.isfinite(v) else -1e30 for v in s]
        rho, p = spearmanr(s, acc)
        print(f"{name:<10} {rho:>12.3f} {p:>9.2g} {ms:>13.1f}")


def hypervolume(trials: list, ref_bops: float) -> float:
    from pymoo.indicators.hv import HV

    f = np.asarray([[1 - t.metrics["accuracy"], math.log10(t.metrics["bops"])] for t in trials], dtype=float)
    return float(HV(ref_point=np.array([0.5, ref_bops]))(f)) if len(f) else 0.0


def _front(space, run_dir: Path) -> list:
    from codesign.search.objectives import pareto_trials
    from codesign.search.store import TrialStore

    store = TrialStore(run_dir / "trials.sqlite", space.digest(), resume=True)
    try:
        trials = store.trials(include_baselines=False)
    finally:
        store.close()
    return pareto_trials(space, trials), trials


def search_saving(args, data) -> None:
    from codesign.search.run import run_search

    with tempfile.TemporaryDirectory() as tmp:
        plain = _space(args.epochs, args.trials, args.population)
        t0 = time.perf_counter()
        run_search(plain, Path(tmp) / "plain", data=data)
        plain_s = time.perf_counter() - t0
        plain_front, plain_all = _front(plain, Path(tmp) / "plain")
        ref = max(math.log10(t.metrics["bops"]) for t in plain_all) + 0.1
        target = hypervolume(plain_front, ref)
        print(
            f"\nplain NSGA-II, {args.trials} trials ({len(plain_all)} trained): {plain_s:.1f} s, "
            f"front {len(plain_front)} points, HV {target:.4f}"
        )
        trials, spent, resume = args.trials, 0.0, False
        while True:
            proxied = _space(args.epochs, trials, args.population, args.proxy, args.keep)
            t0 = time.perf_counter()
            run_search(proxied, Path(tmp) / "proxy", trials=trials, data=data, resume=resume)
            spent += time.perf_counter() - t0
            front, every = _front(proxied, Path(tmp) / "proxy")
            hv = hypervolume(front, ref)
            trained = sum(not t.metrics.get("screened") for t in every)
            print(
                f"  {args.proxy} keep {args.keep}: {trials} trials ({trained} trained): {spent:.1f} s so far, HV {hv:.4f}"
            )
            if hv >= target - 1e-9 or trials >= args.max_factor * args.trials:
                break
            trials, resume = trials + args.population, True
        verdict = "reached" if hv >= target - 1e-9 else f"did NOT reach (cap {args.max_factor}x trials)"
        print(
            f"proxy search {verdict} the plain front's HV: {spent:.1f} s vs {plain_s:.1f} s "
            f"({(1 - spent / plain_s) * 100:+.0f}% time saved)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--trials", type=int, default=60)
    ap.add_argument("--population", type=int, default=12)
    ap.add_argument("--proxy", default="naswot")
    ap.add_argument("--keep", type=float, default=0.5)
    ap.add_argument("--max-factor", type=float, default=2.0, help="cap of the proxy run's trials, x --trials")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-search", action="store_true", help="only the rank correlation")
    args = ap.parse_args()

    import torch

    from codesign.search.data import load_dataset

    torch.set_num_threads(args.threads)
    data = load_dataset(_space(args.epochs, args.trials, args.population).data)
    correlation(args, data)
    if not args.skip_search:
        search_saving(args, data)


if __name__ == "__main__":
    main()
