"""``codesign report RUN_DIR``: a self-contained HTML page with both fronts and the chosen model's table."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

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


def test_report_has_both_fronts_and_the_layer_table(compiled_run):
    from codesign.frontends import load
    from codesign.passes.cost import cost_report

    run_dir, _ = compiled_run
    r = CliRunner().invoke(app, ["report", str(run_dir)])
    assert r.exit_code == 0, r.output
    page = (run_dir / "report.html").read_text()
    assert 'id="global"' in page and 'id="local"' in page and 'id="chosen"' in page
    pngs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(pngs) >= 3  # global front, local accuracy vs BOPs, local accuracy vs LUT
    assert all(base64.b64decode(p)[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert not re.search(r'(src|href)="(https?:|file:|/)', page)  # self-contained
    chosen = json.loads((run_dir / "chosen.json").read_text())
    for layer in cost_report(load(run_dir / chosen["file"])).layers:
        assert f"<td>{layer.name}</td>" in page
    assert "C-simulation bit-exact" in page
    global_rows = json.loads((run_dir / "pareto.json").read_text())["pareto"]
    assert page.count("<tr>") >= len(global_rows) + len(
        json.loads((run_dir / "local_pareto.json").read_text())["pareto"]
    )


def test_report_errors(tmp_path):
    r = CliRunner().invoke(app, ["report", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "no such run folder" in r.output
    r = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert r.exit_code == 2 and "not a search run folder" in r.output


@pytest.mark.slow
def test_report_renders_in_headless_chromium(compiled_run, tmp_path):
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("needs /usr/bin/chromium")
    run_dir, _ = compiled_run
    CliRunner().invoke(app, ["report", str(run_dir)])
    shot = tmp_path / "shot.png"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}", "--window-size=1200,2400",
         (run_dir / "report.html").as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
