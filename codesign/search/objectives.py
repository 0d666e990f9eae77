"""Score a trained candidate: accuracy, BOPs (and MACs/params) from the IR, estimated resources.

The numbers come from the same passes ``inspect``/``estimate``/``compile`` run on the
candidate's QONNX IR, so the search optimises what the rest of the tool reports.
Objectives are returned as a minimisation vector (accuracy negated); hardware budgets
as pymoo inequality constraints ``g <= 0`` (relative overshoot, 0 when within budget).
"""

from __future__ import annotations

from typing import Any

from codesign.errors import CodesignError
from codesign.passes.cost import cost_report
from codesign.search.genome import Genome, Params, build_ir
from codesign.search.space import OBJECTIVES, Space


def needs_estimate(space: Space) -> bool:
    c = space.constraints
    return bool(
        {"lut", "resources", "latency"} & set(space.objectives) or c.resources_max_percent or c.latency_max_cycles
    )


def check_estimator(space: Space) -> None:
    """Fail before any training when the config asks for estimates we cannot make."""
    if not needs_estimate(space):
        return
    try:
        from codesign.passes.estimate import get_estimator, target_resources

        get_estimator(space.estimator, target=space.target, reuse_factor=space.reuse_factor[0])
        target_resources(space.target)
    except ImportError as exc:
        raise CodesignError(
            f"resource objectives need the {space.estimator!r} estimator, which is unavailable ({exc})"
        ) from None


def measure(space: Space, genome: Genome, params: Params, n_features: int, n_classes: int) -> dict[str, Any]:
    """Hardware-side metrics of one trained candidate (everything but accuracy)."""
    ir = build_ir(genome, n_features, n_classes, params)
    report = cost_report(ir, space.search.bops)
    t = report.totals
    out: dict[str, Any] = {
        "bops": t["bops"],
        "macs": t["macs"],
        "params": int(t["params"]),
        "weight_bits": t["weight_bits"],
    }
    if needs_estimate(space):
        from codesign.passes.estimate import estimate

        est = estimate(ir, space.estimator, target=space.target, reuse_factor=genome.reuse_factor)
        fit = est.fits(space.target, 100.0)
        pct = {k: v["percent"] for k, v in fit.usage.items() if v["available"] > 0}
        out |= {f"{k}": est.totals[k] for k in ("LUT", "FF", "DSP", "BRAM_18K")}
        out["resources_pct"] = sum(pct.values()) / max(len(pct), 1)
        out["max_resource_pct"] = max(pct.values(), default=0.0)
        out["latency"] = float(est.totals["latency_cycles"])
    return out


#: The trial metric each objective reads (``lut``: the space's estimator's LUT total).
METRIC_KEYS = {"resources": "resources_pct", "lut": "LUT"}


def metric_key(objective: str) -> str:
    """The ``Trial.metrics`` key behind ``objective``."""
    return METRIC_KEYS.get(objective, objective)


def objective_vector(space: Space, metrics: dict[str, Any]) -> list[float]:
    """Minimisation vector in the order of ``space.objectives``."""
    return [(-1.0 if OBJECTIVES[o] == "max" else 1.0) * float(metrics[metric_key(o)]) for o in space.objectives]


def constraint_vector(space: Space, metrics: dict[str, Any]) -> list[float]:
    """One ``g <= 0`` entry per configured budget: relative overshoot (0 = exactly at budget)."""
    c = space.constraints
    pairs = [
        (c.bops_max, "bops"), (c.params_max, "params"), (c.resources_max_percent, "max_resource_pct"),
        (c.latency_max_cycles, "latency"),
    ]  # fmt: skip
    return [float(metrics[k]) / float(limit) - 1.0 for limit, k in pairs if limit is not None]


def n_constraints(space: Space) -> int:
    c = space.constraints
    return sum(v is not None for v in (c.bops_max, c.params_max, c.resources_max_percent, c.latency_max_cycles))


def pareto_mask(f: list[list[float]]) -> list[bool]:
    """Non-dominated rows of a minimisation matrix (exact duplicates are all kept)."""
    n = len(f)
    keep = [True] * n
    for i in range(n):
        for j in range(n):
            if i != j and all(a <= b for a, b in zip(f[j], f[i])) and any(a < b for a, b in zip(f[j], f[i])):
                keep[i] = False
                break
    return keep


def pareto_trials(space: Space, trials: list[Any]) -> list[Any]:
    """The feasible, non-dominated trials, sorted by the first objective (best first)."""
    feasible = [t for t in trials if t.feasible]
    f = [objective_vector(space, t.metrics) for t in feasible]
    front = [t for t, k in zip(feasible, pareto_mask(f)) if k]
    return sorted(front, key=lambda t: objective_vector(space, t.metrics))


def front_hypervolume(points: list[tuple[float, float]], ref_error: float, ref_log_bops: float) -> float:
    """Area dominated by (accuracy, BOPs) points in (1 - accuracy, log10 BOPs), both minimised, up to
    the reference point: one number to compare fronts of different methods against the same reference."""
    import math

    import numpy as np
    from pymoo.indicators.hv import HV

    f = np.asarray([[1.0 - a, math.log10(max(b, 1.0))] for a, b in points], dtype=float)
    return float(HV(ref_point=np.array([ref_error, ref_log_bops]))(f)) if len(f) else 0.0


def shared_hypervolumes(fronts: dict[str, list[tuple[float, float]]]) -> tuple[dict[str, float], tuple[float, float]]:
    """Each (accuracy, cost) front's :func:`front_hypervolume` against ONE reference for all of them
    (worst accuracy - 1e-3, log10 of 1.1x the largest cost), so the numbers compare; returns (hv, ref)."""
    import math

    pts = [p for front in fronts.values() for p in front]
    if not pts:
        return {name: 0.0 for name in fronts}, (0.0, 0.0)
    ref = (1.0 - min(a for a, _ in pts) + 1e-3, math.log10(max(max(c for _, c in pts), 1.0) * 1.1))
    return {name: front_hypervolume(front, *ref) for name, front in fronts.items()}, ref
