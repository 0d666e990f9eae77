"""Differentiable search (DARTS/NASH style) vs NSGA-II on the same space, data and trainer, side by side.

Runs both methods of one search YAML in this process (DARTS first, then NSGA-II with the
YAML's ``trials``), and prints per method: wall time, trials trained, Pareto front size and
hypervolume against one shared reference; plus NSGA-II's front *at DARTS' wall time* (the
trials it had finished by then: the equal-budget comparison). Writes both fronts on one plot
(``report.html`` of the DARTS run, via ``codesign report --compare``).

    python benchmarks/darts_vs_nsga.py                                   # MAGIC, examples/search/magic_darts.yaml
    python benchmarks/darts_vs_nsga.py --space examples/search/mnist_darts.yaml --trials 16
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _finished(run_dir: Path) -> list[tuple[float, float, float]]:
    """(finish time, accuracy, BOPs) of every searched (non-baseline) trial."""
    db = sqlite3.connect(run_dir / "trials.sqlite")
    try:
        rows = db.execute("SELECT finished, metrics FROM trials WHERE name IS NULL").fetchall()
    finally:
        db.close()
    return [(t, json.loads(m)["accuracy"], json.loads(m)["bops"]) for t, m in rows if not json.loads(m).get("screened")]


def _front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Non-dominated (accuracy up, BOPs down) points."""
    return [p for p in points if not any(q[0] >= p[0] and q[1] <= p[1] and q != p for q in points)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default=str(ROOT / "examples/search/magic_darts.yaml"))
    ap.add_argument("--trials", type=int, default=None, help="NSGA-II trials (default: the YAML's search.trials)")
    ap.add_argument("--out", default="runs/darts_vs_nsga", help="folder for the two run folders and the report")
    args = ap.parse_args()

    from codesign.search.data import load_dataset
    from codesign.search.objectives import front_hypervolume
    from codesign.search.pipeline import load_pipeline
    from codesign.search.report import write_report
    from codesign.search.run import run_search
    from codesign.search.space import override_search

    out = Path(args.out)
    if out.exists():
        sys.exit(f"{out} exists: choose another --out")
    cfg = load_pipeline(args.space)
    data = load_dataset(cfg.space.data)
    runs = {}
    for method in ("darts", "nsga2"):
        space = override_search(cfg.space, args.space, method=method)
        t0 = time.time()
        summary = run_search(space, out / method, trials=args.trials, data=data)
        runs[method] = (time.time() - t0, t0, summary)

    darts_wall = runs["darts"][0]
    nsga_done = _finished(out / "nsga2")
    at_equal = _front([(a, b) for t, a, b in nsga_done if t <= runs["nsga2"][1] + darts_wall])
    fronts = {
        "darts": [(t.metrics["accuracy"], t.metrics["bops"]) for t in runs["darts"][2].pareto],
        "nsga2": [(t.metrics["accuracy"], t.metrics["bops"]) for t in runs["nsga2"][2].pareto],
        "nsga2 at DARTS' wall time": at_equal,
    }
    pts = [p for f in fronts.values() for p in f]
    ref_err, ref_bops = 1.0 - min(a for a, _ in pts) + 1e-3, math.log10(max(b for _, b in pts) * 1.1)
    print(f"space {cfg.space.name}: {len(data.y_train)} training rows, {len(data.y_val)} validation rows")
    print(f"{'method':<28} {'wall s':>8} {'trials':>7} {'front':>6} {'hypervolume':>12}  best accuracy")
    trials = {"darts": runs["darts"][2].trials, "nsga2": runs["nsga2"][2].trials,
              "nsga2 at DARTS' wall time": sum(t <= runs["nsga2"][1] + darts_wall for t, _, _ in nsga_done)}  # fmt: skip
    walls = {"darts": darts_wall, "nsga2": runs["nsga2"][0], "nsga2 at DARTS' wall time": darts_wall}
    for name, front in fronts.items():
        hv = front_hypervolume(front, ref_err, ref_bops)
        best = max((a for a, _ in front), default=float("nan"))
        print(f"{name:<28} {walls[name]:>8.1f} {trials[name]:>7} {len(front):>6} {hv:>12.4f}  {best:.4f}")
    for name in ("darts", "nsga2"):
        print(f"{name} front:", ", ".join(f"{a:.4f}@{b:.3g}" for a, b in sorted(fronts[name], key=lambda p: p[1])))
    report = write_report(out / "darts", [out / "nsga2"])
    print(f"both fronts on one plot: {report}")


if __name__ == "__main__":
    main()
