"""``codesign report RUN_DIR``: a self-contained, interactive HTML page (every trial, both fronts, per-layer tables),
rendered in headless Chromium."""

from __future__ import annotations

import base64
import html
import json
import re
import resource
import shutil
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path
from typer.testing import CliRunner

pytest.importorskip("brevitas")
pytest.importorskip("optuna")

from codesign.cli import app
from codesign.search.local import LocalSpec
from codesign.search.pipeline import CompileSpec, PipelineConfig, run_pipeline
from codesign.search.space import parse_space

SPACE = {
    "name": "tiny_report", "target": "vu13p", "data": {"dataset": "magic", "max_rows": 2000, "seed": 1},
    "model": {"layers": {"min": 1, "max": 1}, "width": [4, 8], "activation": ["relu"], "norm": ["none"],
              "dropout": [0.0], "bits": [8]},
    "training": {"epochs": 1, "batch_size": 128, "learning_rate": [0.01], "l1": [0.0]},
    "objectives": ["accuracy", "bops"], "search": {"trials": 2, "population": 2, "seed": 0},
}  # fmt: skip


@pytest.fixture(scope="module")
def compiled_run(tmp_path_factory):
    """global -> local (6 and 8 bit, 2 pruning rounds) -> compile + C-sim, on a MAGIC subset."""
    shared_path("data", "magic", "magic04.data")
    cfg = PipelineConfig(
        parse_space(SPACE),
        LocalSpec(bits=[6, 8], tpe_trials=1, epochs=[2], batch_size=[128], prune_rounds=2),
        CompileSpec(samples=50, tolerance=0.05),
    )
    run_dir = tmp_path_factory.mktemp("report") / "run"
    out = run_pipeline(cfg, run_dir, stage="all", compile=True)
    return run_dir, out


def test_pipeline_compiles_the_chosen_model_bit_exact(compiled_run):
    run_dir, _out = compiled_run
    chosen = json.loads((run_dir / "chosen.json").read_text())
    assert chosen["verify"]["bit_exact"] is True and chosen["verify"]["samples"] == 50
    assert chosen["verify"]["max_abs_diff"] == 0.0
    local = json.loads((run_dir / "local_pareto.json").read_text())
    ok = [r for r in local["pareto"] if r["accuracy"] >= r["float_accuracy"] - 0.05]
    if ok:  # the rule: cheapest within tolerance of the float version
        assert chosen["model"]["bops"] == min(r["bops"] for r in ok)
    assert (run_dir / "hls4ml" / "codesign.json").is_file()


def _report_data(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.DOTALL)
    assert m, "no report data"
    return json.loads(m.group(1))


def _stored_trials(run_dir: Path) -> dict[int, dict]:
    with sqlite3.connect(run_dir / "trials.sqlite") as db:
        return {tid: json.loads(m) for tid, m in db.execute("SELECT id, metrics FROM trials")}


def test_report_has_every_trial_both_fronts_and_the_layer_tables(compiled_run):
    from codesign.frontends import load
    from codesign.passes.cost import cost_report

    run_dir, _ = compiled_run
    r = CliRunner().invoke(app, ["report", str(run_dir)])
    assert r.exit_code == 0, r.output
    page = (run_dir / "report.html").read_text()
    assert 'id="global"' in page and 'id="local"' in page and 'id="chosen"' in page
    assert 'id="global-plot"' in page and 'id="local-plot"' in page
    pngs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(pngs) >= 2  # local accuracy vs BOPs, local accuracy vs LUT
    assert all(base64.b64decode(p)[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert not re.search(r'(src|href)="(https?:|file:|/)', page)  # self-contained
    assert "<script src" not in page
    data = _report_data(page)
    stored = _stored_trials(run_dir)
    assert sorted(t["id"] for t in data["trials"]) == sorted(stored)
    pareto = json.loads((run_dir / "pareto.json").read_text())["pareto"]
    for t in data["trials"]:
        assert t["m"] == stored[t["id"]]
        assert t["layers"], t  # per-layer rows of the cost pass, whose BOPs add up to the trial's
        assert sum(row["bops"] for row in t["layers"]) == pytest.approx(t["m"]["bops"])
        assert t["pareto"] == (t["id"] in {r["trial"] for r in pareto})
    assert {m["key"] for m in data["metrics"]} >= {"bops"}
    # the local stage: one curve point per QAT/pruning result, the front marked
    local = json.loads((run_dir / "local_pareto.json").read_text())
    pts = [p for c in data["local"]["curves"] for p in c["points"]]
    assert len(pts) == len(local["results"]) and sum(p["front"] for p in pts) == len(local["pareto"])
    assert data["local"]["bits"] == [6, 8]
    chosen = json.loads((run_dir / "chosen.json").read_text())
    for layer in cost_report(load(run_dir / chosen["file"])).layers:
        assert f"<td>{layer.name}</td>" in page
    assert "C-simulation bit-exact" in page


def test_report_errors(tmp_path):
    r = CliRunner().invoke(app, ["report", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "no such run folder" in r.output
    r = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert r.exit_code == 2 and "not a search run folder" in r.output


CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--enable-logging=stderr", "--v=0",
)  # fmt: skip
#: appended to a copy of the page: hover and click the first trial point, as a user would
INTERACT = """<script>(function(){var p=document.querySelector('#global-plot .pt');
var r=p.getBoundingClientRect();var o={bubbles:true,clientX:r.x+2,clientY:r.y+2};
p.dispatchEvent(new MouseEvent('mousemove',o));p.dispatchEvent(new MouseEvent('click',o));
var s=document.getElementById('xmetric');s.selectedIndex=s.options.length-1;s.dispatchEvent(new Event('change'));
document.documentElement.setAttribute('data-clicked',p.getAttribute('data-trial'));})();</script>"""


def _chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("needs chromium (`make tools` installs it: apt-get install -y chromium)")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:  # V8 reserves terabytes of address space: chromium aborts under `ulimit -v`
        pytest.skip(f"chromium cannot start under a virtual-memory limit (ulimit -v {hard // 1024}); run without it")
    profile = tmp_path / f"profile{len(list(tmp_path.glob('profile*')))}"

    def lift_soft_limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))

    return subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=120, check=True, preexec_fn=lift_soft_limit if soft != hard else None)  # fmt: skip


def test_report_renders_in_headless_chromium(compiled_run, tmp_path):
    """The page renders in a real browser: a non-blank screenshot, one SVG point per trained trial,
    no JS error; hovering a point shows its numbers, clicking it opens its per-layer table, the x axis switches.
    (Chromium does not start under a virtual-memory cap: run this without `ulimit -v`.)"""
    from PIL import Image

    run_dir, _ = compiled_run
    assert CliRunner().invoke(app, ["report", str(run_dir)]).exit_code == 0
    page = (run_dir / "report.html").read_text()
    data = _report_data(page)
    shot = tmp_path / "shot.png"
    run = _chromium([f"--screenshot={shot}", "--window-size=1100,1400", (run_dir / "report.html").as_uri()], tmp_path)
    assert "Uncaught" not in run.stderr, run.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert img.shape == (1400, 1100) and img.std() > 10  # not a blank page
    assert (img[:700] < 128).mean() > 0.01  # axes, text and points drawn in the top half

    live = tmp_path / "interact.html"
    live.write_text(page.replace("</body>", INTERACT + "</body>"))
    dom = _chromium(["--dump-dom", live.as_uri()], tmp_path)
    assert "Uncaught" not in dom.stderr, dom.stderr[-2000:]
    html_tag = re.search(r"<html[^>]*>", dom.stdout).group(0)
    assert 'data-rendered="1"' in html_tag and "data-js-error" not in html_tag, html_tag
    trained = [t for t in data["trials"] if not t["screened"]]
    svg = re.search(r'<svg id="global-plot".*?</svg>', dom.stdout, re.DOTALL).group(0)
    assert len(re.findall(r'<circle [^>]*class="pt ', svg)) == len(trained) > 0
    assert 'class="front-line"' in svg and f"{data['metrics'][-1]['label']} (log)" in svg  # the x axis, switched
    clicked = int(re.search(r'data-clicked="(\d+)"', html_tag).group(1))
    t = next(t for t in data["trials"] if t["id"] == clicked)
    layers = re.search(r'<div id="layers">(.*?)</div>', dom.stdout, re.DOTALL).group(1)
    assert f"Trial {clicked}:" in layers and all(f"<td>{row['name']}</td>" in layers for row in t["layers"])
    tip = re.search(r'<div id="tip"[^>]*>(.*?)</div>', dom.stdout, re.DOTALL)
    assert "display: block" in tip.group(0) and html.escape(t["label"]) in tip.group(1)
    local = re.search(r'<svg id="local-plot".*?</svg>', dom.stdout, re.DOTALL).group(0)
    assert len(re.findall(r'class="lpt"', local)) == sum(len(c["points"]) for c in data["local"]["curves"])
