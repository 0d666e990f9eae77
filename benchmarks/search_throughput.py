"""Search training throughput: the population trainer vs a plain per-candidate PyTorch loop.

Both train the same 20 MAGIC candidates (sampled from examples/search/magic_small.yaml
with a fixed seed) for the same epochs at batch 128, from the same initial weights and
in the same sample order. Prints trials/hour for each, the ratio, and the per-candidate
validation-accuracy difference (which must stay within noise).

    .venv/bin/python benchmarks/search_throughput.py [--epochs 5] [--candidates 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parent.parent


def sample_candidates(space, n: int, seed: int) -> list:
    from codesign.search.genome import decode

    rng = np.random.default_rng(seed)
    genes = space.genes()
    out, keys = [], set()
    while len(out) < n:
        g = decode(space, [rng.integers(len(c)) for _, c in genes])
        if g.key() not in keys:
            keys.add(g.key())
            out.append(g)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default=str(ROOT / "examples/search/magic_small.yaml"))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads for both trainers")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    from codesign.search.data import load_dataset
    from codesign.search.space import load_space
    from codesign.search.train import train_population, train_single

    torch.set_num_threads(args.threads)
    space = load_space(args.space)
    data = load_dataset(space.data)
    genomes = sample_candidates(space, args.candidates, args.seed)
    print(f"{len(genomes)} candidates from {Path(args.space).name}, {data.name} train {len(data.y_train)} rows, "
          f"{args.epochs} epochs, batch {args.batch}, {args.threads} thread(s)")  # fmt: skip

    t0 = time.perf_counter()
    pop = train_population(genomes, data, args.epochs, args.batch, seed=args.seed)
    t_pop = time.perf_counter() - t0

    t0 = time.perf_counter()
    plain = [train_single(g, data, args.epochs, args.batch, seed=args.seed) for g in genomes]
    t_plain = time.perf_counter() - t0

    print(f"\n{'candidate':<34} {'acc pop':>8} {'acc plain':>9} {'diff':>7}")
    diffs = []
    for g, a, b in zip(genomes, pop, plain):
        diffs.append(a.accuracy - b.accuracy)
        print(f"{g.label() + f' lr{g.learning_rate:g}':<34} {a.accuracy:8.4f} {b.accuracy:9.4f} {diffs[-1]:+7.4f}")
    groups = len({g.arch_key() for g in genomes})
    tph_pop, tph_plain = 3600 * len(genomes) / t_pop, 3600 * len(genomes) / t_plain
    print(f"\npopulation trainer: {t_pop:7.1f} s  {tph_pop:9.0f} trials/hour  ({groups} batched groups)")
    print(f"plain loop:         {t_plain:7.1f} s  {tph_plain:9.0f} trials/hour")
    print(f"speed-up: {t_plain / t_pop:.1f}x; accuracy difference: mean {np.mean(diffs):+.4f}, "
          f"max |diff| {np.max(np.abs(diffs)):.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
