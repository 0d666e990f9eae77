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
    #: unrolled (RF 1) regimes: per-family LUT/FF scales, per-layer constants, depth cycles, calibrated ranges
    unrolled: dict[str, Any] = field(default_factory=dict)

    def unrolled_extrapolations(
        self,
        regime: str,
        op: str,
        family: str | None,
        costed: bool,
        bits: tuple[int | None, int, int | None] | None,
        clock_ns: float,
    ) -> list[str]:
        """Why an unrolled-design row leaves the baselines' range (empty: inside it).

        ``bits``: (weight bits, data bits, fan-in) of a MAC row; (None, data bits, None) of the others.
        """
        u = self.unrolled.get(regime)
        if u is None:
            return [f"{regime.replace('_', ' ')} designs not calibrated"] if costed else []
        r = u["ranges"]
        if family is None:
            return [f"layer type {op} not calibrated"] if costed else []
        out = [] if op in r["ops"] else [f"layer type {op} not calibrated ({regime.replace('_', ' ')})"]
        if not r["clock_ns"][0] <= clock_ns <= r["clock_ns"][1]:
            out.append(f"clock {clock_ns:g} ns outside calibrated {r['clock_ns'][0]:g} ns (RF 1)")
        if bits is not None:
            for (lo, hi), b, what in zip((r["w_bits"], r["a_bits"]), bits, ("weights", "data")):
                if b is not None and not lo <= b <= hi:
                    out.append(f"{b}-bit {what} outside calibrated {lo}..{hi} (RF 1)")
            lo, hi = r["fan_in"].get(family, (0, 0))
            if bits[2] is not None and not lo <= bits[2] <= hi:
                out.append(f"fan-in {bits[2]} outside calibrated {lo}..{hi} ({family}, RF 1)")
        return out

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
                "ranges": self.ranges, "loo": self.loo, "unrolled": self.unrolled}  # fmt: skip


@lru_cache(maxsize=4)
def load_calibration(path: Path = CALIBRATION_JSON) -> Calibration:
    """The shipped calibration (read once per process)."""
    d = json.loads(Path(path).read_text())
    bands = {g: {k: (float(v[0]), float(v[1])) for k, v in b.items()} for g, b in d["bands"].items()}
    return Calibration(
        d["version"],
        d["constants"],
        float(d["latency_per_layer"]),
        bands,
        d["ranges"],
        d.get("loo", {}),
        d.get("unrolled", {}),
    )


# ---------------------------------------------------------------------------------------------- fitting
def fit_constants(
    counts: Sequence[dict[str, float]], y: Sequence[float], terms: Sequence[str], relative: bool = True
) -> dict[str, float]:
    """Non-negative constants minimising the relative (else absolute) error of ``sum_k c_k count_k`` against ``y``."""
    from scipy.optimize import nnls

    yy = np.asarray(y, float)
    w = 1.0 / np.maximum(yy, 1.0) if relative else np.ones(len(yy))
    a = np.array([[c.get(k, 0.0) for k in terms] for c in counts]) * w[:, None]
    coef, _ = nnls(a, yy * w)
    return {k: float(v) for k, v in zip(terms, coef)}


def fit_depths(counts: Sequence[dict[str, float]], y: Sequence[float], terms: Sequence[str]) -> dict[str, float]:
    """Non-negative cycles per layer minimising the *absolute* error (L1: one odd report must not shift them all)."""
    from scipy.optimize import linprog

    a = np.array([[c.get(k, 0.0) for k in terms] for c in counts])
    n, k = a.shape
    # min sum(u)  s.t.  -u <= y - a c <= u,  c >= 0, u >= 0
    cost = np.concatenate([np.zeros(k), np.ones(n)])
    yy = np.asarray(y, float)
    a_ub = np.block([[-a, -np.eye(n)], [a, -np.eye(n)]])
    res = linprog(cost, A_ub=a_ub, b_ub=np.concatenate([-yy, yy]), bounds=[(0, None)] * (k + n), method="highs")
    return {t: float(v) for t, v in zip(terms, res.x[:k])}


def loo_predictions(
    counts: Sequence[dict[str, float]], y: Sequence[float], terms: Sequence[str], relative: bool | None = True
) -> list[float]:
    """Each row predicted by constants fitted on all the other rows (honest held-out error; ``relative=None``: L1)."""
    preds = []
    for i in range(len(y)):
        rest = [j for j in range(len(y)) if j != i]
        sub_c, sub_y = [counts[j] for j in rest], [y[j] for j in rest]
        c = fit_constants(sub_c, sub_y, terms, relative) if relative is not None else fit_depths(sub_c, sub_y, terms)
        preds.append(sum(c[k] * counts[i].get(k, 0.0) for k in terms))
    return preds


def ratio_band(truth: Sequence[float], pred: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """Central ``level`` band of truth/prediction ratios."""
    r = np.asarray(truth, float) / np.maximum(np.asarray(pred, float), 1.0)  # a 0-cycle prediction counts as 1
    q = (1 - level) / 2
    return float(np.quantile(r, q)), float(np.quantile(r, 1 - q))


def tie_aware_hit(others: np.ndarray, x: float, level: float = LEVEL) -> float:
    """How much of a row the central ``level`` band of the ``others`` covers (1 inside, 0 outside).

    Why: latency in cycles is discrete and mostly predicted exactly, so many ratios tie at
    exactly 1.0 and a band's edge falls *inside* that point mass. The honest coverage of a
    band of a discrete quantity then splits the tie (the randomised interval of discrete
    statistics, Vovk's smoothed conformal predictor): a tied row counts for the share of
    its value's probability mass that lies inside the nominal band. Untied rows count 0/1.
    """
    n = len(others)
    below, at = float(np.sum(others < x)) / n, float(np.sum(others == x)) / n
    q = (1 - level) / 2
    if at == 0:
        lo, hi = np.quantile(others, q), np.quantile(others, 1 - q)
        return float(lo <= x <= hi)
    return min(1.0, max(0.0, min(below + at, 1 - q) - max(below, q)) / at)


def loo_hits(
    truth: Sequence[float], pred: Sequence[float], groups: Sequence[str], level: float = LEVEL, plain: bool = False
) -> np.ndarray:
    """Per row: is it inside a band made from the *other* rows' LOO ratios of its regime (nested LOO)?

    Ties at a band edge are split (:func:`tie_aware_hit`) unless ``plain``: then a row on the
    edge counts as inside (what a user holding the reported ``[lo, hi]`` sees). A regime of
    one row has no band: 0.
    """
    t, p = np.asarray(truth, float), np.maximum(np.asarray(pred, float), 1.0)
    ratios, g = t / p, np.asarray(groups)
    hits = np.zeros(len(t))
    for i in range(len(t)):
        rest = ratios[(g == g[i]) & (np.arange(len(t)) != i)]
        if not len(rest):
            continue
        if plain:
            q = (1 - level) / 2
            hits[i] = float(np.quantile(rest, q) <= ratios[i] <= np.quantile(rest, 1 - q))
        else:
            hits[i] = tie_aware_hit(rest, float(ratios[i]), level)
    return hits


def loo_coverage(truth: Sequence[float], pred: Sequence[float], groups: Sequence[str], level: float = LEVEL,
                 plain: bool = False) -> float:  # fmt: skip
    """Share of rows inside their regime's nested-LOO band (see :func:`loo_hits`)."""
    return float(np.mean(loo_hits(truth, pred, groups, level, plain))) if len(truth) else float("nan")


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
    ranges: dict[str, Any]
    unrolled: dict[str, Any] = field(default_factory=dict)

    @property
    def coverage(self) -> dict[str, float]:
        return {k: loo_coverage(self.truth[k], self.loo[k], self.regimes) for k in BANDED}

    def metrics(self, regime: str | None = None) -> dict[str, dict[str, float]]:
        """LOO MAPE, Spearman and 90%-band coverage (ties split; ``coverage_plain``: edges inside) per quantity."""
        idx = [i for i, g in enumerate(self.regimes) if regime is None or g == regime]
        out: dict[str, dict[str, float]] = {}
        for k in self.loo:
            t, p = [self.truth[k][i] for i in idx], [self.loo[k][i] for i in idx]
            flat = len(set(t)) < 2 or len(set(p)) < 2
            out[k] = {"mape_pct": mape(p, t), "spearman": float("nan") if flat else spearman(p, t), "n": len(idx)}
            if k in BANDED:
                for name, plain in (("coverage", False), ("coverage_plain", True)):
                    out[k][name] = float(np.mean(loo_hits(self.truth[k], self.loo[k], self.regimes, plain=plain)[idx]))
        return out


def merge(a: Study, b: Study) -> Study:
    """Two studies as one table (regimes stay apart: bands and coverage are per regime)."""
    return Study(a.rows + b.rows, a.regimes + b.regimes, {k: a.truth[k] + b.truth[k] for k in a.truth},
                 {k: a.loo[k] + b.loo[k] for k in a.loo}, a.constants or b.constants,
                 a.latency_per_layer or b.latency_per_layer, {**a.bands, **b.bands}, a.ranges or b.ranges,
                 {**a.unrolled, **b.unrolled})  # fmt: skip


FITTED = ("LUT", "FF")
MEASURED = ("LUT", "FF", "DSP", "BRAM_18K", "latency_cycles")
BANDED = (*FITTED, "latency_cycles")


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
    ranges = {"strategy": sorted(strategies), "io_type": sorted(io_types), "ops": sorted(ops | {"Gemm"} if "MatMul" in ops else ops),
              "rf": [min(rfs), max(rfs)], "w_bits": [min(w_bits), max(w_bits)]}  # fmt: skip
    return Study(rows, regimes, truth, loo, constants, lat_const, bands, ranges)


def row_tool(row: dict[str, str]) -> str | None:
    """The HLS tool of a dataset row (its ``backend`` column: Vivado / Vitis), None when it does not say."""
    tool = (row.get("backend") or "").strip().lower()
    return tool or None


def held_out(rows: list[dict[str, str]], load_row: Callable[[dict[str, str]], Any], use_tool: bool = True
             ) -> dict[str, dict[str, float]]:  # fmt: skip
    """MAPE, Spearman and 90%-interval coverage of the *shipped* estimator on rows no fit has seen.

    Why: LOO on the calibration set measures the fit; reports from another tool version or
    run tell whether the per-primitive constants carry over. ``use_tool``: pass each row's
    HLS tool (its ``backend``), else estimate as for an unknown tool.
    """
    from codesign.passes.estimate import estimate

    truth: dict[str, list[float]] = {k: [] for k in MEASURED}
    pred: dict[str, list[float]] = {k: [] for k in MEASURED}
    inside: dict[str, list[bool]] = {k: [] for k in BANDED}
    for row in rows:
        rep = estimate(load_row(row), "hls4ml", clock_ns=float(row["clock_ns"]), strategy=row["strategy"],
                       reuse_factor=int(row["reuse_factor"]), io_type=row["io_type"],
                       tool=row_tool(row) if use_tool else None)  # fmt: skip
        for k in MEASURED:
            truth[k].append(float(row[k]))
            pred[k].append(float(rep.totals[k]))
        for k in BANDED:
            lo, hi = rep.interval[k]
            inside[k].append(lo <= float(row[k]) <= hi)
    out = {}
    for k in MEASURED:
        flat = len(set(truth[k])) < 2 or len(set(pred[k])) < 2
        out[k] = {"mape_pct": mape(pred[k], truth[k]), "spearman": float("nan") if flat else spearman(pred[k], truth[k]),
                  "n": len(rows)}  # fmt: skip
        if k in BANDED:
            out[k]["coverage"] = float(np.mean(inside[k])) if rows else float("nan")
    return out


def regime_bands(regimes: list[str], truth: dict[str, list[float]], loo: dict[str, list[float]]):
    """Per regime, the central 90% band of truth / LOO prediction of each banded quantity."""
    return {g: {k: ratio_band([truth[k][i] for i, r in enumerate(regimes) if r == g],
                              [loo[k][i] for i, r in enumerate(regimes) if r == g]) for k in BANDED}
            for g in sorted(set(regimes))}  # fmt: skip


def study_unrolled(rows: list[dict[str, str]], load_row: Callable[[dict[str, str]], Any]) -> Study:
    """Fit the unrolled (RF 1) regimes on hls4ml's repository baselines, per io type, with LOO predictions.

    LUT/FF, one constant set for both io types: ``LUT = sum_t a_t * count_t + rest`` over the
    primitive counts ``t`` of :meth:`Hls4mlEstimator.unrolled_terms` (each family's analytic
    LUT/FF, DSP products, layers, io_stream FIFOs per HLS tool, streamed-conv control). Latency,
    per io type: the sequential cycles (pixel loops) + ``d_f`` cycles of pipeline depth per layer
    of family ``f`` (streamed tables per tool). The row's tool is its ``backend`` column.
    """
    from codesign.passes.estimate import EstimateConfig
    from codesign.passes.estimate.hls4ml_model import Hls4mlEstimator

    parts, regimes, tools = [], [], []
    truth: dict[str, list[float]] = {k: [] for k in MEASURED}
    for row in rows:
        tools.append(row_tool(row))
        cfg = EstimateConfig(None, float(row["clock_ns"]), row["strategy"], int(row["reuse_factor"]), row["io_type"],
                             tools[-1])  # fmt: skip
        p = Hls4mlEstimator(cfg).calibration_parts(load_row(row))
        parts.append(p)
        regimes.append(p["regime"])
        for k in MEASURED:
            truth[k].append(float(row[k]))
    loo: dict[str, list[float]] = {k: [0.0] * len(rows) for k in MEASURED}
    loo["DSP"] = [p["analytic"]["DSP"] for p in parts]
    loo["BRAM_18K"] = [p["analytic"]["BRAM_18K"] for p in parts]
    unrolled: dict[str, Any] = {}
    # LUT/FF: one set of per-primitive constants for both io types (a comparator costs the same in either;
    # the FIFOs are io_stream's own terms), fitted on all unrolled rows together
    shared: dict[str, dict[str, float]] = {}
    use = sorted({t for p in parts for t in p["terms"]})
    for res in FITTED:
        counts = [{t: v[res] for t, v in p["terms"].items()} for p in parts]
        y = [truth[res][i] - p["other"][res] for i, p in enumerate(parts)]
        shared[res] = fit_constants(counts, y, use)
        for i, pred in enumerate(loo_predictions(counts, y, use)):
            loo[res][i] = pred + parts[i]["other"][res]
    for g in sorted(set(regimes)):
        idx = [i for i, r in enumerate(regimes) if r == g]
        consts: dict[str, dict[str, float]] = {res: dict(c) for res, c in shared.items()}
        counts = [parts[i]["depth_terms"] for i in idx]
        depth = sorted({t for c in counts for t in c})
        y = [truth["latency_cycles"][i] - parts[i]["seq"] - parts[i]["other"]["latency"] for i in idx]
        consts["latency"] = fit_depths(counts, y, depth)
        for i, pred in zip(idx, loo_predictions(counts, y, depth, relative=None)):
            loo["latency_cycles"][i] = pred + parts[i]["seq"] + parts[i]["other"]["latency"]
        bits = [b for i in idx for b in parts[i]["mac_bits"] if b[0] is not None]
        data_bits = [b[1] for i in idx for b in parts[i]["mac_bits"]]
        fan: dict[str, list[int]] = {}
        for i in idx:
            for fam, n_in in parts[i]["fan_in"].values():
                fan.setdefault(fam, []).append(n_in)
        ops = sorted({op for i in idx for op in parts[i]["ops"]} - {"Identity", "Quant"})
        clocks = sorted({float(rows[i]["clock_ns"]) for i in idx})
        ranges = {"ops": sorted({*ops, "Gemm"} if "MatMul" in ops else ops), "rows": len(idx),
                  "clock_ns": [clocks[0], clocks[-1]], "fan_in": {f: [min(v), max(v)] for f, v in sorted(fan.items())},
                  "w_bits": [min(b[0] for b in bits), max(b[0] for b in bits)] if bits else [0, 0],
                  "a_bits": [min(data_bits), max(data_bits)] if data_bits else [0, 0]}  # fmt: skip
        unrolled[g] = {k: {t: round(v, 4) for t, v in c.items()} for k, c in consts.items()} | {"ranges": ranges}
    bands = regime_bands(regimes, truth, loo)
    return Study(rows, regimes, truth, loo, {}, 0.0, bands, {}, unrolled)
