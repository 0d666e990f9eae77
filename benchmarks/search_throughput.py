"""Search training throughput: the population trainer vs a plain per-candidate PyTorch loop.

Both train the same 20 MAGIC candidates (sampled from examples/search/magic_small.yaml
with a fixed seed), then the same 20 MNIST conv candidates (examples/search/mnist_darts.yaml,
batched as grouped convolutions), for the same epochs at batch 128, from the same initial
weights and in the same sample order. Prints trials/hour for each, the ratio, and the
per-candidate validation-accuracy difference (which must stay within noise), side by side.

    .venv/bin/python benchmarks/search_throughput.py [--epochs 5] [--candidates 20] [--threads 1] [--conv-space none]
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


def compare(space_file: str, n: int, epochs: int, batch: int, seed: int, max_rows: int | None = None) -> dict:
    """Train the same ``n`` sampled candidates with the population trainer and the plain loop."""
    from codesign.search.data import load_dataset
    from codesign.search.pipeline import load_pipeline
    from codesign.search.train import train_population, train_single

    space = load_pipeline(space_file).space  # (a pipeline YAML's local:/compile: sections are not read)
    if max_rows:
        space.data.max_rows = max_rows
    data = load_dataset(space.data)
    genomes = sample_candidates(space, n, seed)
    print(f"\n{len(genomes)} candidates from {Path(space_file).name}, {data.name} train {len(data.y_train)} rows, "
          f"{epochs} epochs, batch {batch}")  # fmt: skip
    t0 = time.perf_counter()
    pop = train_population(genomes, data, epochs, batch, seed=seed)
    t_pop = time.perf_counter() - t0
    t0 = time.perf_counter()
    plain = [train_single(g, data, epochs, batch, seed=seed) for g in genomes]
    t_plain = time.perf_counter() - t0
    print(f"{'candidate':<44} {'acc pop':>8} {'acc plain':>9} {'diff':>7}")
    diffs = []
    for g, a, b in zip(genomes, pop, plain):
        diffs.append(a.accuracy - b.accuracy)
        print(f"{g.label() + f' lr{g.learning_rate:g}':<44} {a.accuracy:8.4f} {b.accuracy:9.4f} {diffs[-1]:+7.4f}")
    return {"space": Path(space_file).name, "n": len(genomes), "groups": len({g.arch_key() for g in genomes}),
            "pop": 3600 * len(genomes) / t_pop, "plain": 3600 * len(genomes) / t_plain, "speedup": t_plain / t_pop,
            "mean_diff": float(np.mean(diffs)), "mean_abs": float(np.mean(np.abs(diffs))), "max_abs": float(np.max(np.abs(diffs)))}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default=str(ROOT / "examples/search/magic_small.yaml"))
    ap.add_argument("--conv-space", default=str(ROOT / "examples/search/mnist_darts.yaml"),
                    help="the conv space (MNIST conv cells); 'none' skips it")  # fmt: skip
    ap.add_argument("--conv-rows", type=int, default=2500, help="MNIST rows for the conv space (80%% train)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--conv-epochs", type=int, default=1)
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads for both trainers")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    rows = [] if args.space == "none" else [compare(args.space, args.candidates, args.epochs, args.batch, args.seed)]
    if args.conv_space != "none":
        rows.append(compare(args.conv_space, args.candidates, args.conv_epochs, args.batch, args.seed, args.conv_rows))
    print(f"\n{args.threads} thread(s); population trainer vs plain per-candidate loop, same inits and batch order")
    print(f"{'space':<22} {'cands':>5} {'groups':>6} {'pop trials/h':>13} {'plain trials/h':>15} {'speed-up':>9} "
          f"{'mean diff':>10} {'mean |diff|':>12} {'max |diff|':>11}")  # fmt: skip
    for r in rows:
        print(f"{r['space']:<22} {r['n']:>5} {r['groups']:>6} {r['pop']:>13.0f} {r['plain']:>15.0f} {r['speedup']:>8.1f}x "
              f"{r['mean_diff']:>+10.4f} {r['mean_abs']:>12.4f} {r['max_abs']:>11.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
