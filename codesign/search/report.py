"""``codesign report RUN_DIR``: one self-contained, interactive HTML page (no network at view time).

Every global trial (``trials.sqlite``) as a point of an inline-SVG plot drawn by ``report.js``
(accuracy vs BOPs or an estimate, switchable; the front highlighted, dominated trials shown;
hover: architecture and numbers; click: its per-layer ``cost_report``, computed here from its
QONNX), the local stage's accuracy-vs-sparsity curves per bit width (``local_pareto.json``), the
chosen model's per-layer table and estimated vs C-simulation-verified numbers (``chosen.json``),
whichever of these exist. Static plots (local fronts, ``--compare``) are inlined base64 PNGs.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codesign.errors import CodesignError, OutputError

REPORT = "report.html"


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode()


def _plot(points: list[tuple[float, float]], front: list[tuple[float, float]], xlabel: str, title: str,
          marks: list[tuple[float, float, str]] = (), hlines: list[tuple[float, str]] = (),
          fronts: list[tuple[str, list[tuple[float, float]]]] = ()) -> str:  # fmt: skip
    """accuracy (y) vs cost (x, log) scatter + front line (+ named ``fronts`` of other runs), as a base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    if points:
        ax.scatter(*zip(*points), s=14, c="0.6", label=f"results ({len(points)})")
    fr = sorted(front)
    if fr:
        ax.plot(*zip(*fr), "o-", c="tab:red", ms=4, label="Pareto front")
    for (name, pts), marker in zip(fronts, "osD^v<>p"):
        if pts:
            ax.plot(*zip(*sorted(pts)), marker + "-", ms=4, label=name)
    for x, y, name in marks:
        ax.scatter([x], [y], marker="*", s=160, label=name)
    for y, name in hlines:
        ax.axhline(y, ls="--", lw=1, c="tab:green", label=name)
    xs = [p[0] for p in points + fr + [q for _, pts in fronts for q in pts]]
    if xs and min(xs) > 0:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = _png(fig)
    plt.close(fig)
    return out


def _table(rows: list[dict[str, Any]], cols: list[str], css: str = "") -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return html.escape("" if v is None else str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


#: x axes of the interactive trial plot: (metric, label, log scale), offered when any trial has it
X_METRICS = (
    ("bops", "BOPs", True), ("LUT", "estimated LUT", True), ("FF", "estimated FF", True), ("params", "parameters", True),
    ("latency", "estimated latency (cycles)", False), ("resources_pct", "estimated resources (% of target)", False),
)  # fmt: skip
LAYER_COLS = (
    "name",
    "op",
    "out_shape",
    "weight_dtype",
    "act_dtype",
    "params",
    "nonzero_params",
    "sparsity",
    "macs",
    "bops",
)

Progress = Callable[[int, int], None]


def _layer_rows(model: Any) -> list[dict[str, Any]]:
    """The cost pass's per-layer rows (the columns the report shows), JSON-ready."""
    from codesign.passes.cost import cost_report

    rows = []
    for layer in cost_report(model).layers:
        d = layer.to_dict()
        rows.append({c: (str(d[c]) if c.endswith("shape") else d[c]) for c in LAYER_COLS})
    return rows


def _trial_layers(run_dir: Path, t: Any, front_file: str | None) -> tuple[list[dict[str, Any]], str]:
    """(per-layer cost rows, where the QONNX came from): the trial's QONNX file (``trials/`` or
    ``candidates/``), else the same IR built in memory from its stored parameters."""
    from codesign.frontends import load
    from codesign.search.genome import build_ir
    from codesign.search.optuna_study import TRIAL_FILES, io_sizes

    for rel in (f"{TRIAL_FILES}/trial{t.id:05d}.onnx", front_file):
        if rel and (run_dir / rel).is_file():
            return _layer_rows(load(run_dir / rel)), rel
    if t.params is None:
        return [], "no trained parameters (screened by the proxy)"
    return _layer_rows(
        build_ir(t.genome, *io_sizes(t.genome, t.params), t.params)
    ), "its stored parameters (IR built in memory)"


def trial_points(run_dir: Path, progress: Progress | None = None) -> list[dict[str, Any]]:
    """Every stored trial of the global stage with its metrics, front rank and per-layer cost rows."""
    from codesign.search.store import TrialStore

    g = json.loads((run_dir / "pareto.json").read_text()) if (run_dir / "pareto.json").is_file() else {"pareto": []}
    ranks = {r["trial"]: r for r in g["pareto"]}
    store = TrialStore.open_existing(run_dir / "trials.sqlite")
    try:
        trials = store.trials(with_params=True)
    finally:
        store.close()
    out = []
    for n, t in enumerate(trials):
        row = ranks.get(t.id)
        layers, source = _trial_layers(run_dir, t, row.get("file") if row else None)
        out.append({
            "id": t.id, "label": t.genome.label(), "generation": t.generation, "baseline": t.name, "feasible": t.feasible,
            "violation": t.violation, "screened": bool(t.metrics.get("screened")), "pareto": row is not None,
            "pareto_rank": row["rank"] if row else None, "m": t.metrics, "layers": layers, "source": source,
        })  # fmt: skip
        if progress:
            progress(n + 1, len(trials))
    return out


def _script_json(payload: Any) -> str:
    """JSON safe inside a <script> element (no '</' can close it)."""
    return json.dumps(payload, default=float).replace("</", "<\\/")


def _global_section(run_dir: Path, progress: Progress | None = None) -> tuple[str, dict[str, Any]]:
    p = run_dir / "pareto.json"
    if not p.is_file():
        return "<h2>Global search</h2><p>No global run (pareto.json) in this folder.</p>", {}
    g = json.loads(p.read_text())
    front = g["pareto"]
    trials = trial_points(run_dir, progress) if (run_dir / "trials.sqlite").is_file() else []
    metrics = [
        {"key": k, "label": label, "log": log} for k, label, log in X_METRICS if any(k in t["m"] for t in trials)
    ]
    plot = ""
    if trials:
        plot = ('<div class="controls">x axis: <select id="xmetric"></select> <label><input type="checkbox" '
                'id="show-dominated" checked> dominated trials</label> <label><input type="checkbox" id="show-infeasible" '
                'checked> trials over a budget</label></div><svg id="global-plot" viewBox="0 0 760 420" width="760" '
                'height="420" xmlns="http://www.w3.org/2000/svg"></svg><p id="global-count"></p>'
                '<div id="layers"><p>Hover a point for its architecture and numbers; click it for its per-layer table.</p></div>')  # fmt: skip
    cols = ["rank", "trial", "label", "accuracy", "bops", "params"] + (
        ["LUT"] if any("LUT" in r for r in front) else []
    )
    html_ = (f'<h2 id="global">Global search</h2><p>{len(trials) or g.get("trials")} trials, {len(front)} on the run\'s '
             f"Pareto front; objectives: {html.escape(', '.join(g.get('objectives', [])))}.</p>{plot}"
             f"<h3>Pareto front</h3>{_table(front, cols, 'front global')}")  # fmt: skip
    return html_, {"trials": trials, "metrics": metrics}


def comparison(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """Per run: method, trials, wall time, front size and hypervolume against one shared reference
    (worst accuracy and 1.1x the largest BOPs over all the fronts), from each run's pareto.json."""
    from codesign.search.objectives import shared_hypervolumes

    rows = []
    for d in run_dirs:
        p = d / "pareto.json"
        if not p.is_file():
            raise CodesignError(f"{d}: not a search run folder (no pareto.json)")
        g = json.loads(p.read_text())
        pts = [(r["accuracy"], r["bops"]) for r in g["pareto"]]
        rows.append({"run": d.name, "method": g.get("method", "nsga2"), "trials": g.get("trials"), "front": len(pts),
                     "wall_s": g.get("wall_seconds"), "points": pts})  # fmt: skip
    if any(r["points"] for r in rows):
        hv, _ = shared_hypervolumes({i: r["points"] for i, r in enumerate(rows)})
        for i, r in enumerate(rows):
            r["hypervolume"] = hv[i]
    return rows


def _compare_section(run_dir: Path, others: list[Path]) -> str:
    if not others:
        return ""
    rows = comparison([run_dir, *others])
    fronts = [(f"{r['run']} ({r['method']})", [(b, a) for a, b in r["points"]]) for r in rows]
    img = _plot([], [], "BOPs", "Pareto fronts compared", fronts=fronts)
    cols = ["run", "method", "trials", "front", "wall_s", "hypervolume"]
    note = ("<p>Hypervolume in (1 - accuracy, log10 BOPs), both minimised, against one reference point for all runs "
            "(their worst accuracy, 1.1x their largest BOPs): larger is better. Wall time: every session of the run.</p>")  # fmt: skip
    return f'<h2 id="compare">Methods compared</h2>{_img(img, "fronts compared")}{note}{_table(rows, cols, "compare")}'


def local_curves(loc: dict[str, Any]) -> dict[str, Any]:
    """The local stage's accuracy-vs-sparsity curves: one per (candidate, bit width), its pruning rounds in order."""
    on_front = {(r["candidate"], r["bits"], r["round"]) for r in loc["pareto"]}
    curves: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for r in loc["results"]:
        point = {k: r[k] for k in ("sparsity", "accuracy", "round", "bops", "LUT") if k in r}
        point["front"] = (r["candidate"], r["bits"], r["round"]) in on_front
        curves.setdefault((r["candidate"], r["bits"]), []).append(point)
    return {
        "bits": sorted({b for _, b in curves}),
        "curves": [{"candidate": c, "bits": b, "points": sorted(pts, key=lambda q: q["round"])} for (c, b), pts in sorted(curves.items())],
        "float": [{"trial": k, "accuracy": v} for k, v in loc.get("float_accuracy", {}).items()],
    }  # fmt: skip


def _local_section(run_dir: Path) -> tuple[str, dict[str, Any]]:
    p = run_dir / "local_pareto.json"
    if not p.is_file():
        return "<h2>Local search</h2><p>No local stage (local_pareto.json) in this folder.</p>", {}
    loc = json.loads(p.read_text())
    res, front = loc["results"], loc["pareto"]
    chosen_file = run_dir / "chosen.json"
    chosen = json.loads(chosen_file.read_text())["model"] if chosen_file.is_file() else None
    hlines = [(v, f"float version (trial {k})") for k, v in loc.get("float_accuracy", {}).items()]
    out = ('<h2 id="local">Local search front (QAT + pruning)</h2><h3>Accuracy vs weight sparsity, per bit width</h3>'
           '<p>One curve per (global candidate, bit width) over its pruning rounds; black rings: the local front; '
           'dashed: the float versions.</p><svg id="local-plot" viewBox="0 0 760 420" width="760" height="420" '
           'xmlns="http://www.w3.org/2000/svg"></svg>')  # fmt: skip
    for key, label in (("bops", "BOPs"), ("LUT", "estimated LUT")):
        if not all(key in r for r in res):
            continue
        marks = [(chosen[key], chosen["accuracy"], "chosen (compiled)")] if chosen and key in chosen else []
        img = _plot([(r[key], r["accuracy"]) for r in res], [(r[key], r["accuracy"]) for r in front], label,
                    f"local front: accuracy vs {label}", marks, hlines)  # fmt: skip
        out += _img(img, f"local front {key}")
    floats = ", ".join(f"trial {k}: {v:.4f}" for k, v in loc.get("float_accuracy", {}).items())
    out += f"<p>Float accuracy of the candidates' architectures: {html.escape(floats)}.</p>"
    cols = ["rank", "candidate", "bits", "round", "accuracy", "float_accuracy", "sparsity", "bops"]
    cols += [c for c in ("LUT", "FF", "DSP", "latency") if any(c in r for r in front)]
    return out + _table(front, cols, "front local") + _distill_table(loc), local_curves(loc)


def _distill_table(loc: dict[str, Any]) -> str:
    """With ``local.distill``: the dense quantized models' accuracy with and without the float teacher."""
    rows = loc.get("distillation")
    if not rows:
        return ""
    kd = loc.get("distill", {})
    note = (f"<p>Knowledge distillation from the float twin (alpha {kd.get('alpha')}, temperature "
            f"{kd.get('temperature')}): round-0 (unpruned) validation accuracy with and without the teacher, "
            "same hyper-parameters and seed.</p>")  # fmt: skip
    cols = ["candidate", "bits", "accuracy", "accuracy_no_distill", "gain", "teacher_accuracy"]
    return f'<h3 id="distillation">Distillation</h3>{note}{_table(rows, cols, "distillation")}'


def _chosen_section(run_dir: Path) -> str:
    p = run_dir / "chosen.json"
    if not p.is_file():
        return "<h2>Chosen model</h2><p>Not compiled yet (run with --compile).</p>"
    from codesign.frontends import load
    from codesign.passes.cost import cost_report

    ch = json.loads(p.read_text())
    m = ch["model"]
    rep = cost_report(load(run_dir / ch["file"]))
    layers = [layer.to_dict() for layer in rep.layers]
    for row in layers:
        row["in_shape"], row["out_shape"] = str(row["in_shape"]), str(row["out_shape"])
    cols = list(LAYER_COLS)
    v = ch.get("verify") or {}
    est = (ch.get("estimates") or {}).get("totals", {})
    cmp_rows = [
        {"quantity": "accuracy (validation)", "estimated": m["accuracy"], "verified": None},
        {"quantity": "bit-exact share (C-sim vs IR reference)", "estimated": 1.0, "verified": v.get("bit_exact_share")},
        {"quantity": "max |diff|", "estimated": 0.0, "verified": v.get("max_abs_diff")},
        {"quantity": "argmax agreement", "estimated": 1.0, "verified": v.get("argmax_agreement")},
    ] + [{"quantity": k, "estimated": est[k], "verified": None} for k in ("LUT", "FF", "DSP", "BRAM_18K", "latency_cycles") if k in est]  # fmt: skip
    head = (f"trial {m['candidate']}, {m['bits']} bit, pruning round {m['round']}: accuracy {m['accuracy']:.4f} "
            f"(float {m.get('float_accuracy') or float('nan'):.4f}), weight sparsity {m.get('sparsity', 0):.1%}, "
            f"target {ch.get('target')}; C-simulation {'bit-exact' if v.get('bit_exact') else 'NOT bit-exact'} "
            f"on {v.get('samples')} samples")  # fmt: skip
    return (f'<h2 id="chosen">Chosen model</h2><p>{html.escape(head)}</p><h3>Per-layer cost</h3>'
            f"{_table(layers, cols, 'layers')}<h3>Estimated vs verified</h3>"
            f"{_table(cmp_rows, ['quantity', 'estimated', 'verified'], 'verify')}")  # fmt: skip


CSS = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#eee}img{max-width:100%;display:block;margin:1em 0}svg{display:block;margin:.5em 0;max-width:100%;height:auto}
.pt{cursor:pointer}.front{fill:#d62728}.dominated{fill:#9a9a9a;fill-opacity:.75}.infeasible{fill:#fff;stroke:#777}
.baseline{fill:#1f77b4}.pt:hover{stroke:#000;stroke-width:2}.controls{margin:.5em 0;font-size:14px}
#tip{position:absolute;display:none;background:#fffff4;border:1px solid #999;padding:4px 8px;font-size:12px;
pointer-events:none;box-shadow:1px 1px 4px #aaa;max-width:360px}"""
#: set before any other script: a JS error leaves a mark on <html> (the browser test reads it)
ERROR_HOOK = ("<script>window.onerror=function(m){document.documentElement.setAttribute('data-js-error',String(m));};"
              "</script>")  # fmt: skip


def write_report(run_dir: str | Path, compare: list[str | Path] = (), progress: Progress | None = None) -> Path:
    """Write RUN_DIR/report.html (atomically) and return its path; ``compare``: other runs whose
    global fronts are drawn on one plot with this one's (e.g. NSGA-II vs DARTS on the same space);
    ``progress(done, total)`` is called per trial costed (the slow part on big runs)."""
    run_dir = Path(run_dir)
    others = [Path(c) for c in compare]
    if not run_dir.is_dir():
        raise CodesignError(f"{run_dir}: no such run folder")
    if not any((run_dir / f).is_file() for f in ("pareto.json", "local_pareto.json")):
        raise CodesignError(f"{run_dir}: not a search run folder (no pareto.json or local_pareto.json)")
    compared = _compare_section(run_dir, others)  # refuses a bad --compare before the slow part
    glob, glob_data = _global_section(run_dir, progress)
    local, local_data = _local_section(run_dir)
    body = glob + compared + local + _chosen_section(run_dir)
    data = {"run": run_dir.name, **glob_data, "local": local_data or None}
    script = Path(__file__).with_name("report.js").read_text()
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>codesign report: {html.escape(run_dir.name)}</title>"
            f"<style>{CSS}</style>{ERROR_HOOK}</head><body><h1>codesign report: {html.escape(run_dir.name)}</h1>{body}"
            f'<div id="tip"></div><script type="application/json" id="report-data">{_script_json(data)}</script>'
            f"<script>{script}</script></body></html>")  # fmt: skip
    out, tmp = run_dir / REPORT, run_dir / f".{REPORT}.tmp"
    try:
        tmp.write_text(page)
        os.replace(tmp, out)
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out
