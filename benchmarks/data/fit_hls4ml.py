"""Fit the hls4ml estimator's constants on ``hls4ml_synth.csv`` + ``hls4ml_baselines.csv``; write ``hls4ml_calibration.json``.

Rebuilds every row's model (``build_models.py``), collects the primitive counts of its
calibrated layers, fits the non-negative per-primitive constants (relative error), and
stores them with the calibrated range, the per-regime 90% bands of the leave-one-out
residuals and the LOO metrics. Shared-multiplier Dense layers (Resource strategy, RF > 1)
come from the wa-hls4ml rows; unrolled designs (RF 1: latency strategy, io_parallel and
io_stream, Dense/Conv/activations/pools) from hls4ml's own repository baselines, each row's HLS
tool from its ``backend`` column. The held-out rows (``hls4ml_baselines_holdout.csv``, another
tool version) are never fitted: ``benchmarks/estimator_accuracy.py`` scores the shipped fit on them.
Seconds; re-run after changing the datasets or the model:

    PYTHONPATH=. .venv/bin/python benchmarks/data/fit_hls4ml.py [--check]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_models import BASELINES_CSV, CSV, load_baseline, load_row, read_rows

from codesign.passes.estimate.calibration import (
    CALIBRATION_JSON,
    Calibration,
    Study,
    load_calibration,
    merge,
    study,
    study_unrolled,
)


def full_study() -> Study:
    """Both datasets, each fitted in its own regimes (what the shipped json holds)."""
    return merge(study(read_rows(CSV), load_row), study_unrolled(read_rows(BASELINES_CSV), load_baseline))


def calibrate() -> Calibration:
    st = full_study()
    sha = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in (CSV, BASELINES_CSV)}
    loo = {g: {k: {m: round(v, 4) for m, v in d.items()} for k, d in st.metrics(g).items()}
           for g in sorted(set(st.regimes))}  # fmt: skip
    loo["all"] = {k: {m: round(v, 4) for m, v in d.items()} for k, d in st.metrics().items()}
    return Calibration(
        version="2 (" + ", ".join(f"{n} sha256:{h}"
                                  for n, h in sha.items()) + f"; {len(st.rows)} rows)",
        constants={k: {t: round(v, 4) for t, v in c.items()} for k, c in st.constants.items()},
        latency_per_layer=round(st.latency_per_layer, 3),
        bands={g: {k: (round(lo, 4), round(hi, 4)) for k, (lo, hi) in b.items()} for g, b in st.bands.items()},
        ranges=st.ranges, loo=loo, unrolled=st.unrolled,
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only compare with the shipped json (exit 1 if it differs)")
    args = ap.parse_args()
    new = calibrate().to_dict()
    if args.check:
        old = load_calibration().to_dict()
        keys = ("constants", "latency_per_layer", "unrolled")
        same = {k: old.get(k) for k in keys} == {k: new[k] for k in keys}
        print("shipped calibration is up to date" if same else "shipped calibration differs from a refit")
        sys.exit(0 if same else 1)
    CALIBRATION_JSON.write_text(json.dumps(new, indent=1) + "\n")
    print(json.dumps(new, indent=1))


if __name__ == "__main__":
    main()
