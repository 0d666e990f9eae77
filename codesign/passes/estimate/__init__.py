"""FPGA resource and latency estimators: one output schema, one ``fits`` check.

Every estimator is an analysis pass (``in_place = True``) whose ``PassResult.info`` is
an :class:`EstimateReport`: per-layer rows of LUT, FF, DSP, BRAM_18K, URAM,
latency (clock cycles) and initiation interval, plus totals. The search ranks
candidates with these numbers, so all estimators share the schema and the config
(:class:`EstimateConfig`: target, clock, strategy, reuse factor, io type, HLS tool).

Estimators, by name (:func:`get_estimator`):

``hls4ml``   analytic model of hls4ml's Vivado/Vitis templates (:mod:`.hls4ml_model`).
``da``       alkaid's (da4ml's successor) constant-matrix-multiply optimiser on the exact weights (:mod:`.da_model`).
``rule4ml``  rule4ml's learned surrogate, optional extra (:mod:`.rule4ml_adapter`).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from codesign.errors import CodesignError
from codesign.ir.model import Model
from codesign.passes.base import Pass, PassResult

#: Resource columns of the schema, in display order.
RESOURCES = ("LUT", "FF", "DSP", "BRAM_18K", "URAM")
STRATEGIES = ("latency", "resource")
IO_TYPES = ("io_parallel", "io_stream")
#: HLS tools hls4ml's baselines were synthesised with (hls4ml backend names): Vivado HLS 2020.1, Vitis HLS 2024.1.
TOOLS = ("vivado", "vitis")

#: name -> "module:class" (imported lazily: alkaid / rule4ml are optional).
ESTIMATORS = {
    "hls4ml": "codesign.passes.estimate.hls4ml_model:Hls4mlEstimator",
    "da": "codesign.passes.estimate.da_model:DaEstimator",
    "rule4ml": "codesign.passes.estimate.rule4ml_adapter:Rule4mlEstimator",
}


class EstimateError(CodesignError):
    """Bad estimator settings (unknown strategy, target, reuse factor...)."""


@dataclass(frozen=True)
class EstimateConfig:
    """Implementation choices an estimate depends on (hls4ml's names and defaults)."""

    target: str | None = None
    clock_ns: float = 5.0
    strategy: str = "latency"
    reuse_factor: int | Mapping[str, int] = 1
    io_type: str = "io_parallel"
    #: HLS tool (``vivado`` / ``vitis``): selects the per-tool factors of the unrolled calibration; None: pooled
    tool: str | None = None

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise EstimateError(f"strategy must be one of {', '.join(STRATEGIES)}, not {self.strategy!r}")
        if self.io_type not in IO_TYPES:
            raise EstimateError(f"io type must be one of {', '.join(IO_TYPES)}, not {self.io_type!r}")
        if self.tool is not None and self.tool not in TOOLS:
            raise EstimateError(f"tool must be one of {', '.join(TOOLS)}, not {self.tool!r}")
        if not (self.clock_ns > 0 and math.isfinite(self.clock_ns)):
            raise EstimateError(f"clock period must be a positive number of ns, not {self.clock_ns!r}")
        rfs = self.reuse_factor.values() if isinstance(self.reuse_factor, Mapping) else [self.reuse_factor]
        if any(not isinstance(r, int) or r < 1 for r in rfs):
            raise EstimateError(f"reuse factor must be an integer >= 1, not {self.reuse_factor!r}")

    def rf(self, layer: str) -> int:
        """Reuse factor of ``layer`` (per-layer dict entry, else its ``"*"`` entry, else 1)."""
        if isinstance(self.reuse_factor, Mapping):
            return int(self.reuse_factor.get(layer, self.reuse_factor.get("*", 1)))
        return int(self.reuse_factor)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["reuse_factor"] = dict(self.reuse_factor) if isinstance(self.reuse_factor, Mapping) else self.reuse_factor
        return d


@dataclass
class LayerEstimate:
    """One row of the schema: resources, latency in cycles and II of one IR node."""

    name: str
    op: str
    LUT: float = 0.0
    FF: float = 0.0
    DSP: float = 0.0
    BRAM_18K: float = 0.0
    URAM: float = 0.0
    latency_cycles: int = 0
    ii: int = 1
    note: str = ""
    #: 90% band per resource and ``latency_cycles``: [lo, hi] (empty when the estimator gives none).
    interval: dict[str, list[float]] = field(default_factory=dict)
    #: Why this row leaves the estimator's calibrated range (empty: inside it).
    extrapolated: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class EstimateReport:
    """Per-layer estimates plus totals; the same for every estimator."""

    estimator: str
    config: EstimateConfig
    layers: list[LayerEstimate]
    unsupported: list[str] = field(default_factory=list)

    @property
    def totals(self) -> dict[str, float]:
        """Resources summed; latency summed over layers (they run one after another); II = slowest layer."""
        out: dict[str, float] = {k: float(sum(getattr(r, k) for r in self.layers)) for k in RESOURCES}
        out["latency_cycles"] = int(sum(r.latency_cycles for r in self.layers))
        out["ii"] = int(max((r.ii for r in self.layers), default=1))
        out["latency_ns"] = out["latency_cycles"] * self.config.clock_ns
        return out

    @property
    def interval(self) -> dict[str, list[float]]:
        """90% band of the totals: per-row bands summed (errors of one calibration move together); {} if rows lack one."""
        keys = (*RESOURCES, "latency_cycles")
        if not self.layers or any(not r.interval for r in self.layers):
            return {}
        return {k: [float(sum(r.interval[k][0] for r in self.layers)), float(sum(r.interval[k][1] for r in self.layers))]
                for k in keys}  # fmt: skip

    @property
    def extrapolated(self) -> list[str]:
        """Distinct reasons, over all rows, why the estimate leaves the calibrated range."""
        return sorted({note for r in self.layers for note in r.extrapolated})

    def layer(self, name: str) -> LayerEstimate:
        for row in self.layers:
            if row.name == name:
                return row
        raise KeyError(f"no estimate row named {name!r}")

    def fits(self, resources: Mapping[str, float] | str | None = None, budget_pct: float = 100.0) -> FitResult:
        """Compare totals with ``resources`` (default: the config's target)."""
        res = resources if resources is not None else self.config.target
        if res is None:
            raise EstimateError("no target given: pass --target or a resource dict")
        return fits(self.totals, res, budget_pct)

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimator": self.estimator,
            "config": self.config.to_dict(),
            "layers": [r.to_dict() for r in self.layers],
            "totals": self.totals,
            "interval": self.interval,
            "extrapolated": self.extrapolated,
            "unsupported": list(self.unsupported),
        }


@dataclass(frozen=True)
class FitResult:
    """Verdict of :func:`fits`: used/available/percent per resource and the limiting one."""

    ok: bool
    budget_pct: float
    usage: dict[str, dict[str, float]]
    limiting: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def target_resources(target: str | Mapping[str, float]) -> dict[str, float]:
    """Resources of ``target``: a dict given directly, or a name from the target catalogue."""
    if isinstance(target, Mapping):
        return {k: float(v) for k, v in target.items() if k in RESOURCES}
    from codesign.backends.targets import get_target

    return {k: float(get_target(target).resources.get(k, 0)) for k in RESOURCES}


def fits(totals: Mapping[str, float], resources: Mapping[str, float] | str, budget_pct: float = 100.0) -> FitResult:
    """Does a design with ``totals`` fit in ``budget_pct`` % of ``resources`` (a dict or a target name)?

    A resource the target lacks (0 or absent) fits only if the design uses none of it.
    """
    if not 0 < budget_pct <= 100:
        raise EstimateError(f"budget must be in (0, 100] %, not {budget_pct}")
    avail = target_resources(resources)
    usage: dict[str, dict[str, float]] = {}
    worst, worst_pct = None, -1.0
    for key in RESOURCES:
        used, have = float(totals.get(key, 0.0)), float(avail.get(key, 0.0))
        pct = 100.0 * used / have if have > 0 else (0.0 if used == 0 else math.inf)
        usage[key] = {"used": used, "available": have, "percent": pct}
        if pct > worst_pct:
            worst, worst_pct = key, pct
    return FitResult(ok=worst_pct <= budget_pct, budget_pct=budget_pct, usage=usage, limiting=worst)


class Estimator(Pass):
    """Base of every estimator: an analysis pass whose info is an :class:`EstimateReport`."""

    in_place = True
    #: Registry name, also the report's ``estimator`` field.
    key = "?"

    def __init__(self, config: EstimateConfig | None = None, **options: Any):
        self.config = config if config is not None else EstimateConfig(**options)

    def estimate(self, model: Model) -> EstimateReport:
        raise NotImplementedError

    def call(self, model: Model) -> PassResult:
        return PassResult(model, False, self.estimate(model))


def get_estimator(name: str, config: EstimateConfig | None = None, **options: Any) -> Estimator:
    """Instantiate estimator ``name`` (``hls4ml``, ``da`` or ``rule4ml``)."""
    spec = ESTIMATORS.get(name)
    if spec is None:
        raise EstimateError(f"unknown estimator {name!r}; choose from {', '.join(ESTIMATORS)}")
    module, cls = spec.split(":")
    return getattr(importlib.import_module(module), cls)(config, **options)


def estimate(model: Model, estimator: str = "hls4ml", **options: Any) -> EstimateReport:
    """Shortcut: ``estimate(model, "hls4ml", strategy="resource", reuse_factor=4)``."""
    return get_estimator(estimator, **options)(model).info


__all__ = [
    "ESTIMATORS",
    "IO_TYPES",
    "RESOURCES",
    "STRATEGIES",
    "TOOLS",
    "EstimateConfig",
    "EstimateError",
    "EstimateReport",
    "Estimator",
    "FitResult",
    "LayerEstimate",
    "estimate",
    "fits",
    "get_estimator",
    "target_resources",
]  # fmt: skip
