"""Fit the hls4ml estimator's constants on ``hls4ml_synth.csv`` and write ``hls4ml_calibration.json``.

Rebuilds every row's model (``build_models.py``), collects the primitive counts of its
calibrated layers, fits the non-negative per-primitive constants (relative error), and
stores them with the calibrated range, the per-regime 90% bands of the leave-one-out
residuals and the LOO metrics. Seconds; re-run after changing the dataset or the model:

    PYTHONPATH=. .venv/bin/python benchmarks/data/fit_hls4ml.py [--check]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_models import CSV, load_row, read_rows

from codesign.passes.estimate.calibration import CALIBRATION_JSON, Calibration, load_calibration, study


def calibrate() -> Calibration:
    st = study(read_rows(CSV), load_row)
    sha = hashlib.sha256(CSV.read_bytes()).hexdigest()[:12]
    loo = {k: {m: round(v, 4) for m, v in d.items()} for k, d in st.metrics().items()}
    return Calibration(
        version=f"1 ({len(st.rows)} rows of {CSV.name} sha256:{sha})",
        constants={k: {t: round(v, 4) for t, v in c.items()} for k, c in st.constants.items()},
        latency_per_layer=round(st.latency_per_layer, 3),
        bands={g: {k: (round(lo, 4), round(hi, 4)) for k, (lo, hi) in b.items()} for g, b in st.bands.items()},
        ranges=st.ranges, loo=loo,
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only compare with the shipped json (exit 1 if it differs)")
    args = ap.parse_args()
    new = calibrate().to_dict()
    if args.check:
        old = load_calibration().to_dict()
        same = {k: old[k] for k in ("constants", "latency_per_layer")} == {
            k: new[k] for k in ("constants", "latency_per_layer")
        }
        print("shipped calibration is up to date" if same else "shipped calibration differs from a refit")
        sys.exit(0 if same else 1)
    CALIBRATION_JSON.write_text(json.dumps(new, indent=1) + "\n")
    print(json.dumps(new, indent=1))


if __name__ == "__main__":
    main()
