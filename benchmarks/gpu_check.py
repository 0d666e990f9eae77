"""The one prepared GPU check: train a MAGIC (MLP) and an MNIST-conv population on CUDA and on the CPU,
same candidates, initial weights and sample order; print trials/hour on each and the per-candidate
accuracy difference (must stay within noise), and write them as JSON.

Needs a CUDA GPU (exits 2 with one line otherwise) and ../shared/data/{magic,mnist}.

    .venv/bin/python benchmarks/gpu_check.py [--candidates 16] [--epochs 3] [--out gpu_check.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

#: accuracy points two runs of the same candidate may differ by (float reduction order differs on a GPU)
NOISE = 0.02


def _population(space_file: str, n: int, epochs: int, batch: int, device, max_rows: int | None) -> dict:
    import torch
    from search_throughput import sample_candidates

    from codesign.search.data import load_dataset
    from codesign.search.pipeline import load_pipeline
    from codesign.search.train import train_population

    space = load_pipeline(ROOT / space_file).space
    if max_rows:
        space.data.max_rows = max_rows
    data = load_dataset(space.data)
    genomes = sample_candidates(space, n, seed=0)
    train_population(genomes[:1], data, 1, batch, device=device)  # warm-up: CUDA context, kernels, data upload
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    res = train_population(genomes, data, epochs, batch, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    sec = time.perf_counter() - t0
    return {"space": space_file, "candidates": len(genomes), "epochs": epochs, "seconds": sec,
            "trials_per_hour": 3600 * len(genomes) / sec, "accuracy": [r.accuracy for r in res]}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default="gpu_check.json")
    args = ap.parse_args()

    import torch

    from codesign.search.device import DeviceError, describe, resolve_device

    try:
        gpu = resolve_device(args.device)
    except DeviceError as exc:
        print(f"gpu_check: error: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    cases = [("examples/search/magic_small.yaml", None), ("examples/search/mnist_darts.yaml", 5000)]
    out = {"device": describe(gpu), "torch": torch.__version__, "cases": []}
    ok = True
    print(
        f"{'space':<30} {'candidates':>10} {'cpu trials/h':>13} {'gpu trials/h':>13} {'speedup':>8} {'mean |dacc|':>12}"
    )
    for space_file, rows in cases:
        cpu = _population(space_file, args.candidates, args.epochs, args.batch, torch.device("cpu"), rows)
        cuda = _population(space_file, args.candidates, args.epochs, args.batch, gpu, rows)
        diff = np.abs(np.subtract(cpu["accuracy"], cuda["accuracy"]))
        same = bool(diff.mean() <= NOISE)
        ok &= same
        out["cases"].append({"cpu": cpu, "cuda": cuda, "mean_abs_diff": float(diff.mean()), "max_abs_diff": float(diff.max()),
                             "within_noise": same})  # fmt: skip
        print(f"{Path(space_file).name:<30} {cpu['candidates']:>10} {cpu['trials_per_hour']:>13.0f} "
              f"{cuda['trials_per_hour']:>13.0f} {cuda['trials_per_hour'] / cpu['trials_per_hour']:>7.1f}x "
              f"{diff.mean():>12.4f}")  # fmt: skip
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"{'PASS' if ok else 'FAIL'}: CUDA accuracies {'within' if ok else 'NOT within'} {NOISE} of the CPU run; "
          f"{args.out} written ({out['device']})")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
