"""The whole codesign pipeline: global NSGA-II search -> local QAT/TPE/pruning -> compile + verify.

One YAML drives it: the search space (``codesign.search.space``) plus two optional sections the
global stage does not read, ``local:`` (:class:`codesign.search.local.LocalSpec`) and
``compile:`` (``samples``, ``tolerance``: accuracy points below the float version a chosen
model may lose, ``reuse_factor``, ``strategy``). The chosen model is the cheapest (BOPs) local
result within ``tolerance`` of its float version; it is compiled for the space's ``target``
with C-simulation verification, and ``chosen.json`` records why it was chosen and how it verified.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from codesign.errors import CodesignError, OutputError
from codesign.search.local import LocalSpec, LocalSummary, run_local
from codesign.search.space import SearchSpaceError, Space, load_space, parse_space

STAGES = ("global", "local", "all")
CHOSEN = "chosen.json"
HLS_DIR = "hls4ml"
FINN_DIR = "finn"
BACKENDS = ("hls4ml", "finn")


@dataclass
class CompileSpec:
    """The ``compile:`` section."""

    samples: int = 200
    tolerance: float = 0.02
    reuse_factor: int = 1
    strategy: str = "latency"
    #: hls4ml (C-simulated and verified) and/or finn (a build_dataflow folder with its verification pair)
    backends: list[str] = field(default_factory=lambda: ["hls4ml"])

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, source: str) -> CompileSpec:
        d = dict(d or {})
        bad = sorted(set(d) - set(cls.__dataclass_fields__))
        if bad:
            raise SearchSpaceError(f"{source}: compile.{bad[0]}: unknown key")
        spec = cls(**d)
        if not spec.backends or set(spec.backends) - set(BACKENDS):
            raise SearchSpaceError(f"{source}: compile.backends: choose from {', '.join(BACKENDS)}")
        return spec


@dataclass
class PipelineConfig:
    space: Space
    local: LocalSpec
    compile: CompileSpec
    source: Path | None = None


@dataclass
class PipelineSummary:
    run_dir: Path
    global_summary: Any = None
    local_summary: LocalSummary | None = None
    chosen: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def load_pipeline(path: str | Path) -> PipelineConfig:
    """The search-space YAML plus its optional ``local:``/``compile:`` sections."""
    path = Path(path)
    space = None
    try:
        payload = yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        payload = None
    if not isinstance(payload, dict) or not ({"local", "compile"} & set(payload)):
        space = load_space(path)  # its one-line errors for a missing / unreadable / invalid file
        payload = payload if isinstance(payload, dict) else {}
    local = payload.pop("local", None)
    comp = payload.pop("compile", None)
    if space is None:
        space = parse_space(payload, str(path))
    if not isinstance(local, (dict, type(None))) or not isinstance(comp, (dict, type(None))):
        raise SearchSpaceError(f"{path}: local and compile must be mappings")
    return PipelineConfig(space, LocalSpec.from_dict(local, str(path)), CompileSpec.from_dict(comp, str(path)), path)


def choose(local_pareto: dict[str, Any], tolerance: float) -> dict[str, Any]:
    """The cheapest (BOPs) local Pareto model at most ``tolerance`` below its float version's
    accuracy (the most accurate one when none is), from a parsed ``local_pareto.json``."""
    rows = list(local_pareto["pareto"])
    if not rows:
        raise CodesignError("the local Pareto front is empty: nothing to compile")
    ok = [r for r in rows if r.get("float_accuracy") is not None and r["accuracy"] >= r["float_accuracy"] - tolerance]
    if ok:
        return min(ok, key=lambda r: (r["bops"], -r["accuracy"]))
    return max(rows, key=lambda r: r["accuracy"])


def choose_global(pareto: dict[str, Any], tolerance: float) -> dict[str, Any]:
    """The cheapest (BOPs) global Pareto model at most ``tolerance`` below the front's most accurate,
    from a parsed ``pareto.json``, as a row shaped like a local one (round 0, no float twin)."""
    rows = [r for r in pareto["pareto"] if r.get("file")]
    if not rows:
        raise CodesignError("the global Pareto front is empty: nothing to compile")
    best = max(r["accuracy"] for r in rows)
    row = min((r for r in rows if r["accuracy"] >= best - tolerance), key=lambda r: (r["bops"], -r["accuracy"]))
    return {**row, "candidate": row["trial"], "round": 0, "sparsity": row.get("sparsity", 0.0), "float_accuracy": None}


def compile_chosen(cfg: PipelineConfig, run_dir: Path, log: Callable[[str], None] = lambda s: None,
                   front: str = "local") -> dict[str, Any]:  # fmt: skip
    """Compile the chosen model of the ``local`` (or ``global``) front for the config's target with
    every configured backend (hls4ml: C-simulated and verified); write chosen.json."""
    from codesign.backends.api import compile as compile_model
    from codesign.frontends import load

    if not cfg.space.target:
        raise CodesignError(f"{cfg.source or 'config'}: --compile needs a 'target' in the search space")
    name = "local_pareto.json" if front == "local" else "pareto.json"
    if not (run_dir / name).is_file():
        raise CodesignError(f"{run_dir}: no {name} (run the {front} stage first)")
    pick = choose if front == "local" else choose_global
    row = pick(json.loads((run_dir / name).read_text()), cfg.compile.tolerance)
    onnx_path = run_dir / row["file"]
    log(f"compiling trial {row['candidate']} {row['bits']} bit round {row['round']} (acc {row['accuracy']:.4f}, "
        f"sparsity {row.get('sparsity', 0):.3f}) for {cfg.space.target}")  # fmt: skip
    ir = load(onnx_path)
    res = None
    if "hls4ml" in cfg.compile.backends:
        res = compile_model(
            ir, cfg.space.target, "hls4ml", output=run_dir / HLS_DIR, force=True, verify=True,
            samples=cfg.compile.samples, source=onnx_path, strategy=cfg.compile.strategy,
            reuse_factor=cfg.compile.reuse_factor, log=log,
        )  # fmt: skip
    finn = None
    if "finn" in cfg.compile.backends:
        finn = compile_model(ir, cfg.space.target, "finn", output=run_dir / FINN_DIR, force=True,
                             source=onnx_path).manifest.get("finn")  # fmt: skip
    chosen = {
        "model": row, "file": row["file"], "front": front, "target": cfg.space.target, "tolerance": cfg.compile.tolerance,
        "project": HLS_DIR if res is not None else None, "verify": res.verify if res is not None else None,
        "verdict": res.manifest.get("verdict") if res is not None else None,
        "estimates": res.manifest.get("estimates") if res is not None else None,
        "timings": res.timings if res is not None else {}, "finn": {"folder": FINN_DIR, **finn} if finn else None,
    }  # fmt: skip
    tmp = run_dir / f".{CHOSEN}.tmp"
    try:
        tmp.write_text(json.dumps(chosen, indent=2, default=str))
        os.replace(tmp, run_dir / CHOSEN)
    except OSError as exc:
        raise OutputError(f"cannot write {run_dir / CHOSEN}: {exc.strerror or exc}") from None
    return chosen


def run_pipeline(
    cfg: PipelineConfig,
    run_dir: str | Path | None = None,
    stage: str = "all",
    compile: bool = False,
    resume: bool = False,
    log: Callable[[str], None] = lambda s: None,
    data: Any = None,
    run_global: Callable[..., Any] | None = None,
) -> PipelineSummary:
    """Run the global and/or local stage on one run folder, then (``compile``) compile the chosen model.

    ``run_global(space, run_dir, resume=..., data=...)`` runs the global stage (default
    :func:`codesign.search.run.run_search`; the CLI passes one with its progress bar).
    """
    from codesign.search.data import load_dataset
    from codesign.search.run import _slug, run_lock, run_search

    if stage not in STAGES:
        raise CodesignError(f"--stage must be one of {', '.join(STAGES)}, not {stage!r}")
    run_dir = Path(run_dir) if run_dir is not None else Path("runs") / _slug(cfg.space.name)
    data = data if data is not None else load_dataset(cfg.space.data)
    out = PipelineSummary(run_dir)
    if stage in ("global", "all"):
        out.global_summary = (run_global or run_search)(cfg.space, run_dir, resume=resume, data=data)
    if stage in ("local", "all") and not (run_dir / "trials.sqlite").is_file():
        raise CodesignError(f"{run_dir}: no global run here (run --stage global first)")
    with run_lock(run_dir) if run_dir.is_dir() else nullcontext():
        if stage in ("local", "all"):
            out.local_summary = run_local(cfg.space, cfg.local, run_dir, data, resume=resume, log=log)
        if compile:
            out.chosen = compile_chosen(cfg, run_dir, log, front="global" if stage == "global" else "local")
    return out
