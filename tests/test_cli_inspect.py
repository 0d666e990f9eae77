"""`codesign inspect`: table, JSON, graph pictures, and a fast start without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest
from helpers import mlp_proto


@pytest.fixture
def mlp_file(tmp_path: Path) -> Path:
    path = tmp_path / "mlp.onnx"
    path.write_bytes(mlp_proto().SerializeToString())
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "codesign.cli", *args], capture_output=True, text=True)


def test_table_has_every_layer_and_totals(mlp_file: Path):
    proc = run("inspect", str(mlp_file))
    assert proc.returncode == 0, proc.stderr
    for text in ("dense0", "MatMul", "1x16", "FLOAT32", "total", "4.39k"):
        assert text in proc.stdout, text
    # MACs 16*64+64*32+32*32+32*5 = 4256 -> BOPs 4256*32*32
    assert "4.26k" in proc.stdout and "4.36M" in proc.stdout


def test_json_totals(mlp_file: Path):
    payload = json.loads(run("inspect", str(mlp_file), "--json").stdout)
    assert payload["totals"]["macs"] == 4256 and payload["totals"]["bops"] == 4256 * 32 * 32
    assert payload["totals"]["params"] == 16 * 64 + 64 + 64 * 32 + 32 + 32 * 32 + 32 + 32 * 5 + 5
    assert payload["inputs"] == {"x": [1, 16]}
    assert [layer["name"] for layer in payload["layers"]][:2] == ["dense0", "bias0"]
    nac = json.loads(run("inspect", str(mlp_file), "--json", "--bops", "nac").stdout)
    assert nac["bops_definition"] == "nac" and nac["totals"]["bops"] > payload["totals"]["bops"]


def test_graph_svg_and_dot(mlp_file: Path, tmp_path: Path):
    assert run("inspect", str(mlp_file), "--graph", str(tmp_path / "g.svg")).returncode == 0
    svg = ElementTree.parse(tmp_path / "g.svg").getroot()
    texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert "dense0" in texts and "MatMul" in texts
    assert run("inspect", str(mlp_file), "--graph", str(tmp_path / "g.dot")).returncode == 0
    dot = (tmp_path / "g.dot").read_text()
    assert dot.startswith("digraph") and "MatMul\\ndense0" in dot and dot.count("->") == 13


def test_inspect_does_not_import_torch_or_tensorflow(mlp_file: Path):
    code = (
        "import sys; from codesign.cli import app\n"
        "try:\n    app([" + repr("inspect") + ", " + repr(str(mlp_file)) + ", '--json'])\n"
        "except SystemExit: pass\n"
        "bad = [m for m in ('torch', 'tensorflow', 'hls4ml', 'brevitas') if m in sys.modules]\n"
        "print('HEAVY', bad, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in proc.stderr, proc.stderr


def test_version_and_help():
    assert run("--version").stdout.startswith("codesign ")
    assert "inspect" in run("--help").stdout


def test_inspect_with_target_includes_estimates(mlp_file: Path):
    payload = json.loads(run("inspect", str(mlp_file), "--json", "--target", "vu13p").stdout)
    est = payload["estimate"]
    assert est["config"]["target"] == "vu13p" and est["fits"]["usage"]["LUT"]["available"] == 1728000
    # wide (>= 9-bit) products of constants with >= 3 CSD digits map to DSPs (the rest are shift-adds): at most
    # one per multiplier at reuse factor 1 (3240 of 4256 for these 16-bit weights)
    assert 0.7 * 4256 <= est["totals"]["DSP"] <= 4256
    assert est["totals"] == json.loads(run("estimate", str(mlp_file), "--json", "--target", "vu13p").stdout)["totals"]
    proc = run("inspect", str(mlp_file), "--target", "nope")
    assert proc.returncode == 2 and "unknown target 'nope'" in proc.stderr
