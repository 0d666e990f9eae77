"""BOPs or LUTs? The same NSGA-II search (budget, seed) with each as the hardware objective, judged by yosys.

Per task, two global searches differ only in ``objectives``: ``[accuracy, bops]`` and
``[accuracy, lut]`` (the estimator's LUT total: ``da``, alkaid's adder count, on MAGIC). Each
front's models are then compiled with the rtl backend (alkaid Verilog) and synthesised with
``yosys synth_xilinx -family xcup -flatten`` (results cached by model hash outside the repo, so a
re-run is instant), and the fronts are compared on (1 - accuracy, real LUTs): a table, the
hypervolume of each front against one reference point, and one plot.

    PYTHONPATH=. nice -n 10 python benchmarks/objective_study.py --task magic --seeds 0,1,2 -o ~/objstudy [--jobs 2]

Bragg (``--task bragg|both``): the ``da`` estimator and the rtl backend cannot map conv +
attention (MaxPool, Softmax are refused), so there the LUT objective is the hls4ml estimator's
and the table reports estimated, not synthesised, LUTs.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from codesign.errors import CodesignError, UnsupportedModelError

OBJECTIVES = ("bops", "lut")
#: Where the yosys results live (outside the repo): ``$CODESIGN_CACHE/yosys`` or ``~/.cache/codesign/yosys``.
CACHE = Path(os.environ.get("CODESIGN_CACHE", Path.home() / ".cache" / "codesign")) / "yosys"
TARGET = "vu13p"
#: The LUT objective's estimator where alkaid cannot map the space (conv + attention: MaxPool, Softmax).
FALLBACK_ESTIMATOR = "hls4ml"
#: Per task: base YAML and the overrides that keep the study small and inside what each backend maps.
TASKS: dict[str, dict[str, Any]] = {
    "magic": {
        "yaml": "examples/search/magic_small.yaml",
        "model": {"layers": {"min": 1, "max": 2}, "width": [2, 4, 8, 16], "activation": ["relu"], "norm": ["none"],
                  "bits": [3, 4, 6, 8]},  # relu/no norm: what alkaid maps; bits: where BOPs and LUTs disagree
        "trials": 40, "population": 8, "epochs": 3,
    },
    "bragg": {
        "yaml": "examples/search/braggnn.yaml",
        "model": {"bits": [4, 6, 8]},
        "data": {"max_rows": 4000},
        "trials": 16, "population": 8, "epochs": 3,
    },
}  # fmt: skip


@dataclass
class Row:
    """One front model in the study's table."""

    task: str
    objective: str
    trial: int
    label: str
    accuracy: float
    bops: float
    est_lut: float
    real_lut: float | None = None
    real_ff: float | None = None
    synth_s: float | None = None
    note: str = ""
    seed: int = 0


def study_space(task: str, objective: str, trials: int, population: int, epochs: int, seed: int,
                estimator: str, max_rows: int | None = None):  # fmt: skip
    """The task's base YAML with the study's overrides; the two runs differ only in ``objectives``."""
    from codesign.search.space import parse_space

    cfg = TASKS[task]
    payload = yaml.safe_load((ROOT / cfg["yaml"]).read_text())
    for key in ("local", "compile", "baselines"):  # global stage only; baselines are not part of the question
        payload.pop(key, None)
    payload["model"].update(copy.deepcopy(cfg["model"]))
    payload["data"].update(cfg.get("data", {}))
    if max_rows:
        payload["data"]["max_rows"] = max_rows
    payload["name"] = f"{task}_{objective}"
    payload["objectives"] = ["accuracy", objective]
    payload["target"], payload["estimator"] = TARGET, estimator
    payload["training"]["epochs"] = epochs
    payload["search"] = {**payload.get("search", {}), "trials": trials, "population": population, "seed": seed}
    return parse_space(payload, f"{cfg['yaml']} (objective study: {objective})")


def estimator_for(space, n_features: int, n_classes: int) -> tuple[str, str]:
    """(estimator, note): ``da`` when alkaid maps the space's last-choice genome (deepest, every block and
    pool on), else :data:`FALLBACK_ESTIMATOR`, whose LUTs are then estimates only (no rtl, no yosys)."""
    from codesign.passes.estimate import estimate
    from codesign.search.genome import build_ir, decode

    biggest = decode(space, [len(choices) - 1 for _, choices in space.genes()])
    try:
        estimate(build_ir(biggest, n_features, n_classes), "da", target=TARGET)
        return "da", ""
    except UnsupportedModelError as exc:
        return FALLBACK_ESTIMATOR, (f"da refused ({exc}); LUTs are {FALLBACK_ESTIMATOR} estimates, "
                                    "not synthesised")  # fmt: skip


def model_hash(ir) -> str:
    """sha256 of the model proto, graph name left out (one model found by both runs is one design): the
    synthesis cache key (with the tool versions)."""
    import hashlib

    proto = copy.deepcopy(ir.proto)
    proto.graph.name = ""
    return hashlib.sha256(proto.SerializeToString(deterministic=True)).hexdigest()


def tool_versions() -> str:
    import subprocess
    from importlib.metadata import version

    yosys = subprocess.run(["yosys", "-V"], capture_output=True, text=True, check=False).stdout.strip()
    return f"alkaid {version('alkaid')}; {yosys}"


def synth_cached(ir, cache: Path, versions: str) -> dict[str, Any]:
    """rtl backend + yosys counts of ``ir``, from ``cache`` when this model and tool versions were seen."""
    from codesign.backends.rtl_backend import compile_rtl

    key = model_hash(ir)
    hit = cache / f"{key}.json"
    if hit.is_file():
        got = json.loads(hit.read_text())
        if got.get("versions") == versions:
            return {**got, "cached": True}
    with tempfile.TemporaryDirectory(prefix="objstudy-") as tmp:
        res = compile_rtl(ir, TARGET, Path(tmp) / "rtl", synth=True)
    synth = res.manifest["synth"]
    got = {"LUT": synth["LUT"], "FF": synth["FF"], "CARRY": synth["CARRY"], "seconds": synth["seconds"],
           "versions": versions}  # fmt: skip
    cache.mkdir(parents=True, exist_ok=True)
    part = hit.with_suffix(f".tmp{os.getpid()}")
    part.write_text(json.dumps(got))
    os.replace(part, hit)
    return {**got, "cached": False}


def front_rows(task: str, objective: str, summary, space, data, estimator: str, seed: int = 0) -> list[tuple[Row, Any]]:
    """(row, IR) per front model; the estimated LUTs are the space estimator's for both runs."""
    from codesign.passes.estimate import estimate
    from codesign.search.genome import build_ir

    out = []
    for t in summary.pareto:
        ir = build_ir(t.genome, data.n_features, data.n_classes, t.params, name=f"trial{t.id}")
        est = t.metrics.get("LUT")
        if est is None:
            est = estimate(ir, estimator, target=TARGET, reuse_factor=t.genome.reuse_factor).totals["LUT"]
        row = Row(task, objective, int(t.id), t.genome.label(), float(t.metrics["accuracy"]), float(t.metrics["bops"]),
                  float(est), seed=seed)  # fmt: skip
        out.append((row, ir))
    return out


def synthesise_rows(pairs: list[tuple[Row, Any]], cache: Path, jobs: int, max_lut: float) -> None:
    """Fill real_lut/real_ff by yosys (cached; a model on both fronts once), smallest first, ``jobs`` at a time."""
    versions = tool_versions()
    for row, _ in pairs:
        if row.est_lut > max_lut:
            row.note = f"not synthesised: estimate {row.est_lut:.0f} > --synth-max-lut {max_lut:.0f}"
    models: dict[str, tuple[Any, list[Row]]] = {}
    for row, ir in sorted(pairs, key=lambda p: p[0].est_lut):
        if row.est_lut <= max_lut:
            models.setdefault(model_hash(ir), (ir, []))[1].append(row)
    t0 = time.perf_counter()

    def one(item: tuple[int, tuple[Any, list[Row]]]) -> None:
        i, (ir, rows) = item
        what = f"synth {i + 1}/{len(models)} " + ", ".join(f"{r.task}/{r.objective} trial {r.trial}" for r in rows)
        try:
            got = synth_cached(ir, cache, versions)
        except CodesignError as exc:
            for row in rows:
                row.note = f"synthesis failed: {exc}"
            print(f"  {what}: {exc}", flush=True)
            return
        for row in rows:
            row.real_lut, row.real_ff, row.synth_s = float(got["LUT"]), float(got["FF"]), float(got["seconds"])
        how = "cached" if got["cached"] else f"{got['seconds']:.0f} s"
        print(f"  {what} ({rows[0].label}): {got['LUT']} LUT, {got['FF']} FF (est. {rows[0].est_lut:.0f}; {how}; "
              f"{time.perf_counter() - t0:.0f} s in)", flush=True)  # fmt: skip

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(one, enumerate(models.values())))


def compare(rows: list[Row], real: bool) -> dict[str, Any]:
    """Hypervolume of each objective's front on (1 - accuracy, log10 LUTs), one shared reference;
    plus the LUTs each front needs to reach the accuracy both fronts reach."""
    from codesign.search.objectives import pareto_mask, shared_hypervolumes

    key = "real_lut" if real else "est_lut"
    fronts: dict[str, list[tuple[float, float]]] = {}
    for obj in OBJECTIVES:
        pts = [(r.accuracy, getattr(r, key)) for r in rows if r.objective == obj and getattr(r, key) is not None]
        keep = pareto_mask([[-a, c] for a, c in pts])  # re-filtered: the real LUTs may reorder a front
        fronts[obj] = [p for p, k in zip(pts, keep) if k]
    hv, ref = shared_hypervolumes(fronts)
    common = min((max((a for a, _ in f), default=0.0) for f in fronts.values()), default=0.0)
    cheapest = {o: min((c for a, c in f if a >= common), default=None) for o, f in fronts.items()}
    winner = max(hv, key=hv.get) if hv else None
    loser = min(hv, key=hv.get) if hv else None
    gain = (hv[winner] / hv[loser] - 1.0) if winner and hv[loser] > 0 else float("inf")
    return {"lut_kind": "yosys" if real else "estimated", "hypervolume": hv, "reference": ref,
            "front_sizes": {o: len(f) for o, f in fronts.items()}, "common_accuracy": common,
            "cheapest_at_common_accuracy": cheapest, "winner": winner, "hv_gain": gain,
            "ranking": ranking(rows) if real else None}  # fmt: skip


def ranking(rows: list[Row]) -> dict[str, float]:
    """How well each objective orders the synthesised models by yosys LUTs (Spearman rho, distinct models),
    and the estimate's mean absolute percentage error."""
    from estimator_accuracy import mape, spearman  # the estimator benchmark's definitions

    uniq = sorted({(r.bops, r.est_lut, r.real_lut) for r in rows if r.real_lut})  # a 0-LUT constant net: no ratio
    if len(uniq) < 3:
        return {}
    bops, est, real = (list(c) for c in zip(*uniq))
    return {"models": len(uniq), "rho_bops": spearman(bops, real), "rho_est_lut": spearman(est, real),
            "mape_est_lut": mape(est, real)}  # fmt: skip


def print_table(rows: list[Row]) -> None:
    w = max([22] + [len(r.label) for r in rows])
    head = (f"{'task':6s} {'seed':>4s} {'objective':9s} {'trial':>5s} {'model':{w}s} {'accuracy':>8s} {'BOPs':>10s} "
            f"{'est. LUT':>9s} {'yosys LUT':>9s} {'yosys FF':>8s}")  # fmt: skip
    print(head)
    print("-" * len(head))
    for r in sorted(rows, key=lambda r: (r.task, r.seed, r.objective, -r.accuracy)):
        lut = f"{r.real_lut:9.0f}" if r.real_lut is not None else f"{'-':>9s}"
        ff = f"{r.real_ff:8.0f}" if r.real_ff is not None else f"{'-':>8s}"
        print(f"{r.task:6s} {r.seed:4d} {r.objective:9s} {r.trial:5d} {r.label:{w}s} {r.accuracy:8.4f} {r.bops:10.4g} "
              f"{r.est_lut:9.0f} {lut} {ff}  {r.note}")  # fmt: skip


def summary_lines(task: str, cmp: dict[str, Any]) -> list[str]:
    """The comparison of one task and seed in words."""
    task = f"{task} seed {cmp['seed']}"
    hv, ref = cmp["hypervolume"], cmp["reference"]
    out = [f"{task}: hypervolume of (1 - accuracy, log10 {cmp['lut_kind']} LUTs), reference "
           f"({ref[0]:.4f}, {10 ** ref[1]:.0f} LUT): " + ", ".join(f"{o} front {hv[o]:.4f}" for o in hv)]  # fmt: skip
    ch = cmp["cheapest_at_common_accuracy"]
    out.append(
        f"{task}: accuracy both fronts reach: {cmp['common_accuracy']:.4f}; cheapest model there: "
        + ", ".join(f"{o} front {c:.0f} LUT" if c is not None else f"{o} front -" for o, c in ch.items())
    )
    rk = cmp.get("ranking")
    if rk:
        out.append(
            f"{task}: over {rk['models']} synthesised models, Spearman rho with yosys LUTs: BOPs "
            f"{rk['rho_bops']:.3f}, estimated LUTs {rk['rho_est_lut']:.3f} (MAPE {rk['mape_est_lut']:.1f}%)"
        )
    out.append(f"{task}: search wall time (every session of the run): "
               + ", ".join(f"{o} {t:.0f} s" for o, t in cmp.get("search_wall_s", {}).items()))  # fmt: skip
    w = cmp["winner"]
    other = next(o for o in hv if o != w)
    if hv[w] == hv[other]:
        out.append(f"{task}: a tie: both fronts have the same hypervolume")
    else:
        out.append(f"{task}: {w.upper()} as the objective wins: hypervolume {cmp['hv_gain']:+.1%} over {other.upper()}")
    return out


def over_seeds(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Across seeds: the LUT-objective front's hypervolume relative to the BOPs-objective front's, per seed."""
    gains = [c["hypervolume"]["lut"] / c["hypervolume"]["bops"] - 1.0 for c in per_seed if c["hypervolume"]["bops"] > 0]
    wins = sum(g > 0 for g in gains)
    mean = sum(gains) / len(gains) if gains else float("nan")
    line = ("hypervolume of the LUT-objective front vs the BOPs-objective front, per seed: "
            + ", ".join(f"{g:+.1%}" for g in gains) + f"; mean {mean:+.1%}; LUT ahead in {wins} of {len(gains)}")  # fmt: skip
    return {"lut_vs_bops_hv_gain": gains, "mean_gain": mean, "lut_wins": wins, "line": line}


def plot(rows: list[Row], path: Path, real: bool) -> None:
    """Both fronts per task on (LUTs, accuracy): yosys LUTs where synthesised, else estimated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from codesign.search.objectives import pareto_mask

    tasks = sorted({r.task for r in rows})
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.4 * len(tasks), 4.6), dpi=110, squeeze=False)
    for ax, task in zip(axes[0], tasks):
        real_here = real and any(r.real_lut is not None for r in rows if r.task == task)
        seeds = sorted({r.seed for r in rows if r.task == task})
        for obj, colour in zip(OBJECTIVES, ("tab:blue", "tab:red")):
            mine = [r for r in rows if r.task == task and r.objective == obj]
            pooled = [(r.real_lut if (real and r.real_lut is not None) else r.est_lut, r.accuracy) for r in mine]
            for k, seed in enumerate(seeds):  # each seed's front thin, the non-dominated union over seeds bold
                pts = sorted(p for p, r in zip(pooled, mine) if r.seed == seed)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o" + ("-", "--", ":", "-.")[k % 4], c=colour,
                        ms=3, lw=0.8, alpha=0.35 if len(seeds) > 1 else 1.0,
                        label=f"objective {obj.upper()}, seed {seed} ({len(pts)})")  # fmt: skip
            if len(seeds) > 1:
                union = sorted(p for p, k in zip(pooled, pareto_mask([[-a, c] for c, a in pooled])) if k)
                ax.plot([p[0] for p in union], [p[1] for p in union], "o-", c=colour, ms=5, lw=2,
                        label=f"objective {obj.upper()}: front of all seeds ({len(union)})")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("LUTs (yosys synth_xilinx -family xcup)" if real_here else "LUTs (estimated)")
        ax.set_ylabel("validation accuracy" if task == "magic" else "- mean distance error (px)")
        ax.set_title(f"{task}: front of each objective")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def progress_printer(what: str) -> Callable[[Any], None]:
    """A search's per-generation progress line (trials, front size, best objectives, seconds)."""
    t0 = time.perf_counter()

    def show(p: Any) -> None:
        best = " ".join(f"{k} {v:.4g}" for k, v in p.best.items())
        print(f"  {what}: {p.done}/{p.total} trials, generation {p.generation}, front {p.pareto_size}"
              f" ({best}) {time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip

    return show


def run_task(task: str, seed: int, args: argparse.Namespace, out: Path) -> tuple[list[Row], dict[str, Any], str]:
    """Both searches of one task, their fronts as rows (synthesised when asked and mappable), the comparison."""
    from codesign.search.data import load_dataset
    from codesign.search.run import run_search

    cfg = TASKS[task]
    trials, population, epochs = (args.trials or cfg["trials"], args.population or cfg["population"],
                                  args.epochs or cfg["epochs"])  # fmt: skip
    probe = study_space(task, "bops", trials, population, epochs, seed, "da", args.max_rows)
    data = load_dataset(probe.data)
    estimator, note = estimator_for(probe, data.n_features, data.n_classes)
    pairs: list[tuple[Row, Any]] = []
    wall: dict[str, float] = {}
    for obj in OBJECTIVES:
        space = study_space(task, obj, trials, population, epochs, seed, estimator, args.max_rows)
        progress = progress_printer(f"{task}/seed {seed}/{obj}")
        print(f"{task}: search with objectives [accuracy, {obj}] ({trials} trials, seed {seed}, {estimator})")
        run_dir = out / "runs" / f"{task}_s{seed}_{obj}"
        summary = run_search(space, run_dir, data=data, resume=(run_dir / "trials.sqlite").exists(),
                             on_progress=progress)  # fmt: skip
        pairs += front_rows(task, obj, summary, space, data, estimator, seed)
        wall[obj] = float(json.loads((summary.run_dir / "pareto.json").read_text())["wall_seconds"])
    real = args.synth and estimator == "da"
    if real:
        synthesise_rows(pairs, Path(args.cache), args.jobs, args.synth_max_lut)
    rows = [r for r, _ in pairs]
    return rows, {"seed": seed, **compare(rows, real), "search_wall_s": wall}, note


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=["magic", "bragg", "both"], default="magic")
    ap.add_argument("-o", "--out", default="runs/objective_study", help="output folder (runs/, study.json, plot)")
    ap.add_argument("--trials", type=int, help="trials per search (default: per task, MAGIC 40, Bragg 16)")
    ap.add_argument("--population", type=int)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--max-rows", type=int, help="cap the data set's rows (a toy run)")
    ap.add_argument("--seeds", type=seed_list, default=[0], help="comma-separated search seeds, one pair each")
    ap.add_argument("--no-synth", dest="synth", action="store_false", help="estimated LUTs only (no yosys)")
    ap.add_argument("--jobs", type=int, default=1, help="yosys runs at a time")
    ap.add_argument("--synth-max-lut", type=float, default=20000, help="skip synthesising bigger estimates")
    ap.add_argument("--cache", default=str(CACHE), help=f"yosys result cache (default {CACHE})")
    args = ap.parse_args(argv)
    if args.synth:  # before any training: the study's point is the synthesised LUTs
        from codesign.backends.rtl_backend import require_tool

        try:
            require_tool("yosys")
        except CodesignError as exc:
            raise CodesignError(f"{exc}, or run with --no-synth") from None
    torch_threads()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    result: dict[str, Any] = {"tasks": {}}
    lines: list[str] = []
    seeds = args.seeds
    for task in ["magic", "bragg"] if args.task == "both" else [args.task]:
        per_seed, note = [], ""
        for seed in seeds:
            task_rows, cmp, note = run_task(task, seed, args, out)
            rows += task_rows
            per_seed.append(cmp)
            lines += summary_lines(task, cmp)
        overall = over_seeds(per_seed)
        result["tasks"][task] = {"seeds": per_seed, "overall": overall, "note": note}
        lines += [f"{task}: {overall['line']}"] + ([f"{task}: {note}"] if note else [])
    print()
    print_table(rows)
    print()
    print("\n".join(lines))
    result["rows"] = [asdict(r) for r in rows]
    (out / "study.json").write_text(json.dumps(result, indent=2, default=float))
    real = any(r.real_lut is not None for r in rows)
    plot(rows, out / "objective_study.png", real)
    print(f"\nwrote {out / 'study.json'} and {out / 'objective_study.png'}")
    return 0


def seed_list(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]`` (argparse type: a bad list is a one-line usage error)."""
    try:
        seeds = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be comma-separated integers, not {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("give at least one seed")
    return seeds


def torch_threads() -> None:
    """One thread: the machine is shared."""
    import torch

    torch.set_num_threads(1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    try:
        sys.exit(main())
    except CodesignError as exc:
        print(f"objective_study: error: {exc}", file=sys.stderr)
        sys.exit(2)
