"""Calibrated constants of the ``hls4ml`` estimator: load them, fit them, measure them (leave-one-out).

Why: an analytic model is only worth a synthesis run if its per-primitive constants were
fitted on real HLS reports and its error bars come from held-out residuals.

The constants live in ``hls4ml_calibration.json`` next to this file (versioned, written by
``benchmarks/data/fit_hls4ml.py`` from ``benchmarks/data/hls4ml_synth.csv``). A calibrated
layer (hls4ml Resource strategy, a Dense layer whose multipliers are shared) costs

    LUT = sum_k  lut[k] * count_k      FF = sum_k  ff[k] * count_k
    latency = effective RF + latency_per_layer

over the primitive counts ``count_k`` of :func:`dense_counts` (multiplier operand bits,
outputs, inputs, one control FSM per layer). Fits minimise the *relative* error with
non-negative constants (``scipy.optimize.nnls``), so every constant stays a physical cost.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

CALIBRATION_JSON = Path(__file__).with_name("hls4ml_calibration.json")
#: Primitive counts of one calibrated Dense layer, per fitted resource.
TERMS = {"LUT": ("mult_wbits", "outputs", "inputs", "layers"), "FF": ("mult_wbits", "outputs", "inputs", "layers")}
#: Nominal coverage of the intervals.
LEVEL = 0.9
#: Band of rows no synthesis data covers (latency strategy, unseen layer types): a factor of two either way.
UNCALIBRATED_BAND = (0.5, 2.0)
#: How much wider an extrapolated calibrated row's band is than the calibrated one.
EXTRAPOLATION_WIDEN = 2.0


@lru_cache(maxsize=4096)
def valid_reuse_factors(n_in: int, n_out: int) -> tuple[int, ...]:
    """hls4ml's valid reuse factors of a Dense layer (``FPGABackend._validate_reuse_factor``), via divisors."""
    n = n_in * n_out
    divisors = sorted({d for i in range(1, math.isqrt(n) + 1) if n % i == 0 for d in (i, n // i)})
    out = []
    for rf in divisors:
        mult_limit = math.ceil(n / min(n_in, rf))
        if (mult_limit % n_out == 0 or rf >= n_in) and (rf % n_in == 0 or rf < n_in):
            out.append(rf)
    return tuple(out)


def effective_reuse_factor(n_in: int, n_out: int, rf: int) -> int:
    """The reuse factor hls4ml actually uses: the closest valid one (ties: the smaller; ``get_closest_reuse_factor``)."""
    valid = valid_reuse_factors(n_in, n_out)
    if rf in valid:
        return rf
    pos = bisect_left(valid, rf)
    if pos == 0:
        return valid[0]
    if pos == len(valid):
        return valid[-1]
    before, after = valid[pos - 1], valid[pos]
    return after if after - rf < rf - before else before


def dense_counts(n_in: int, n_out: int, rf_eff: int, w_bits: int) -> dict[str, float]:
    """Primitive counts of one shared-multiplier Dense layer (what the constants multiply)."""
    n_mult = math.ceil(n_in * n_out / rf_eff)
    return {"mult_wbits": float(n_mult * w_bits), "outputs": float(n_out), "inputs": float(n_in), "layers": 1.0}


@dataclass(frozen=True)
class Calibration:
    """The fitted constants, their calibrated range and the interval bands (ratios truth / estimate)."""

    version: str
    constants: dict[str, dict[str, float]]
    latency_per_layer: float
    bands: dict[str, dict[str, tuple[float, float]]]  # regime -> resource -> (lo, hi) ratio
    ranges: dict[str, Any]
    loo: dict[str, Any] = field(default_factory=dict)

    def cost(self, resource: str, counts: dict[str, float]) -> float:
        return float(sum(self.constants[resource].get(k, 0.0) * v for k, v in counts.items()))

    def band(self, regime: str, resource: str, extrapolated: bool = False) -> tuple[float, float]:
        lo, hi = self.bands.get(regime, {}).get(resource, UNCALIBRATED_BAND)
        return (lo / EXTRAPOLATION_WIDEN, hi * EXTRAPOLATION_WIDEN) if extrapolated else (lo, hi)

    def extrapolations(self, *, strategy: str, io_type: str, op: str, rf: int | None, w_bits: int | None) -> list[str]:
        """Why an estimate of this layer leaves the calibrated range (empty: inside it)."""
        r = self.ranges
        out = []
        if strategy not in r["strategy"]:
            out.append(f"strategy {strategy} not calibrated (data: {'/'.join(r['strategy'])})")
        if io_type not in r["io_type"]:
            out.append(f"{io_type} not calibrated")
        if op not in r["ops"]:
            out.append(f"layer type {op} not calibrated")
        if rf is not None and not r["rf"][0] <= rf <= r["rf"][1]:
            out.append(f"reuse factor {rf} outside calibrated {r['rf'][0]}..{r['rf'][1]}")
        if w_bits is not None and not r["w_bits"][0] <= w_bits <= r["w_bits"][1]:
            out.append(f"{w_bits}-bit weights outside calibrated {r['w_bits'][0]}..{r['w_bits'][1]}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "constants": self.constants, "latency_per_layer": self.latency_per_layer,
                "bands": {g: {k: list(v) for k, v in b.items()} for g, b in self.bands.items()},
                "ranges": self.ranges, "loo": self.loo}  # fmt: skip


@lru_cache(maxsize=4)
def load_calibration(path: Path = CALIBRATION_JSON) -> Calibration:
    """The shipped calibration (read once per process)."""
    d = json.loads(Path(path).read_text())
    bands = {g: {k: (float(v[0]), float(v[1])) for k, v in b.items()} for g, b in d["bands"].items()}
    return Calibration(
        d["version"], d["constants"], float(d["latency_per_layer"]), bands, d["ranges"], d.get("loo", {})
    )


# ---------------------------------------------------------------------------------------------- fitting
def fit_constants(counts: Sequence[dict[str, float]], y: Sequence[float], terms: Sequence[str]) -> dict[str, float]:
    """Non-negative constants minimising the relative error of ``sum_k c_k count_k`` against ``y``."""
    from scipy.optimize import nnls

    yy = np.asarray(y, float)
    a = np.array([[c.get(k, 0.0) for k in terms] for c in counts]) / yy[:, None]
    coef, _ = nnls(a, np.ones(len(yy)))
    return {k: float(v) for k, v in zip(terms, coef)}


def loo_predictions(counts: Sequence[dict[str, float]], y: Sequence[float], terms: Sequence[str]) -> list[float]:
    """Each row predicted by constants fitted on all the other rows (honest held-out error)."""
    preds = []
    for i in range(len(y)):
        rest = [j for j in range(len(y)) if j != i]
        c = fit_constants([counts[j] for j in rest], [y[j] for j in rest], terms)
        preds.append(sum(c[k] * counts[i].get(k, 0.0) for k in terms))
    return preds


def ratio_band(truth: Sequence[float], pred: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """Central ``level`` band of truth/prediction ratios."""
    r = np.asarray(truth, float) / np.maximum(np.asarray(pred, float), 1e-9)
    q = (1 - level) / 2
    return float(np.quantile(r, q)), float(np.quantile(r, 1 - q))


def loo_coverage(truth: Sequence[float], pred: Sequence[float], groups: Sequence[str], level: float = LEVEL) -> float:
    """Share of rows inside a band made from the *other* rows' LOO ratios of the same regime (nested LOO)."""
    hits = 0
    for i in range(len(truth)):
        rest = [j for j in range(len(truth)) if j != i and groups[j] == groups[i]]
        lo, hi = ratio_band([truth[j] for j in rest], [pred[j] for j in rest], level)
        hits += lo * pred[i] <= truth[i] <= hi * pred[i]
    return hits / max(len(truth), 1)


def mape(pred: Sequence[float], truth: Sequence[float]) -> float:
    """Mean absolute percentage error over the rows whose truth is not 0 (nan if none)."""
    p, t = np.asarray(pred, float), np.asarray(truth, float)
    keep = t != 0
    return float(np.mean(np.abs(p[keep] - t[keep]) / t[keep]) * 100) if keep.any() else float("nan")


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b)[0])


@dataclass
class Study:
    """Everything the fit script, the accuracy benchmark and the test read off the dataset."""

    rows: list[dict[str, str]]
    regimes: list[str]
    truth: dict[str, list[float]]
    loo: dict[str, list[float]]  # leave-one-out predictions per resource (+ latency)
    constants: dict[str, dict[str, float]]
    latency_per_layer: float
    bands: dict[str, dict[str, tuple[float, float]]]
    coverage: dict[str, float]
    ranges: dict[str, Any]

    def metrics(self) -> dict[str, dict[str, float]]:
        out = {k: {"mape_pct": mape(self.loo[k], self.truth[k]), "spearman": spearman(self.loo[k], self.truth[k])}
               for k in self.loo}  # fmt: skip
        for k, v in self.coverage.items():
            out[k]["coverage"] = v
        return out


FITTED = ("LUT", "FF")
MEASURED = ("LUT", "FF", "DSP", "BRAM_18K", "latency_cycles")


def study(rows: list[dict[str, str]], load_row: Callable[[dict[str, str]], Any]) -> Study:
    """Fit on ``rows`` (models from ``load_row``), with LOO predictions, regime bands and nested-LOO coverage."""
    from codesign.passes.estimate import EstimateConfig
    from codesign.passes.estimate.hls4ml_model import Hls4mlEstimator

    counts, rest, truth, lat_base, n_layers, regimes = [], [], {k: [] for k in MEASURED}, [], [], []
    rfs, w_bits, ops, strategies, io_types = [], [], set(), set(), set()
    fixed: dict[str, list[float]] = {"DSP": [], "BRAM_18K": []}
    for row in rows:
        cfg = EstimateConfig(None, float(row["clock_ns"]), row["strategy"], int(row["reuse_factor"]), row["io_type"])
        parts = Hls4mlEstimator(cfg).calibration_parts(load_row(row))
        counts.append(parts["counts"])
        rest.append(parts["rest"])
        lat_base.append(parts["latency_base"])
        n_layers.append(parts["counts"].get("layers", 0.0))
        regimes.append(parts["regime"])
        rfs += parts["rfs"]
        w_bits += parts["w_bits"]
        ops |= set(parts["ops"])
        strategies.add(cfg.strategy)
        io_types.add(cfg.io_type)
        for k, values in fixed.items():
            values.append(parts["analytic"][k])
        for k in MEASURED:
            truth[k].append(float(row[k]))
    loo: dict[str, list[float]] = {}
    constants: dict[str, dict[str, float]] = {}
    for res in FITTED:
        y = [t - r[res] for t, r in zip(truth[res], rest)]  # what the calibrated layers must explain
        constants[res] = fit_constants(counts, y, TERMS[res])
        loo[res] = [p + r[res] for p, r in zip(loo_predictions(counts, y, TERMS[res]), rest)]
    # latency: effective RF per layer is exact (hls4ml's rule); one constant per layer for the pipeline
    per_layer = [(t - b) / max(n, 1) for t, b, n in zip(truth["latency_cycles"], lat_base, n_layers)]
    lat_const = float(np.median(per_layer))
    loo["latency_cycles"] = [
        b + n * float(np.median([p for j, p in enumerate(per_layer) if j != i]))
        for i, (b, n) in enumerate(zip(lat_base, n_layers))
    ]
    loo["DSP"], loo["BRAM_18K"] = fixed["DSP"], fixed["BRAM_18K"]  # analytic (hls4ml's own rules), no fit
    bands: dict[str, dict[str, tuple[float, float]]] = {}
    for g in sorted(set(regimes)):
        idx = [i for i, r in enumerate(regimes) if r == g]
        bands[g] = {
            k: ratio_band([truth[k][i] for i in idx], [loo[k][i] for i in idx]) for k in (*FITTED, "latency_cycles")
        }
    coverage = {k: loo_coverage(truth[k], loo[k], regimes) for k in (*FITTED, "latency_cycles")}
    ranges = {"strategy": sorted(strategies), "io_type": sorted(io_types), "ops": sorted(ops | {"Gemm"} if "MatMul" in ops else ops),
              "rf": [min(rfs), max(rfs)], "w_bits": [min(w_bits), max(w_bits)]}  # fmt: skip
    return Study(rows, regimes, truth, loo, constants, lat_const, bands, coverage, ranges)
