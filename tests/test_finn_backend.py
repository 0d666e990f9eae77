"""`codesign compile --backend finn`: build folders FINN's build_dataflow accepts, with verified pairs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import QDATA, SHARED, TFC, ZOO, shared_path
from typer.testing import CliRunner

from codesign.backends.compile import compile_finn
from codesign.backends.finn_backend import (
    FINN_CONFIG_FIELDS,
    FinnConfigError,
    FinnOptions,
    build_config,
    validate_config,
)
from codesign.backends.reference import execute
from codesign.backends.targets import get_target
from codesign.cli import app
from codesign.errors import UnsupportedModelError
from codesign.frontends import load

KWS = ZOO / "GSCV2" / "kwsmlp_w3a3" / "kwsmlp_w3a3.onnx"
KWS_DATA = SHARED / "models" / "Xilinx+finn-examples" / "build" / "kws"


def _rel(path: Path) -> tuple[str, ...]:
    return path.relative_to(SHARED).parts


def _reference_reproduces(folder: Path) -> np.ndarray:
    """Load the folder's model the way FINN would (a plain file) and check the pair against it."""
    model = load(folder / "model.onnx")
    x = np.load(folder / "input.npy")
    expected = np.load(folder / "expected_output.npy")
    got = execute(model, x)[model.outputs[0]]
    np.testing.assert_array_equal(got, expected)
    return expected


@pytest.fixture(scope="module")
def tfc_folder(tmp_path_factory) -> Path:
    src = shared_path(*_rel(TFC / "TFC_2W2A.onnx"))
    out = tmp_path_factory.mktemp("finn") / "tfc"
    compile_finn(load(src), "pynq-z2", out, source=src)
    return out


def test_tfc_folder_is_complete(tfc_folder):
    names = sorted(p.name for p in tfc_folder.iterdir())
    assert names == [
        "README.md",
        "codesign.json",
        "dataflow_build_config.json",
        "expected_output.npy",
        "input.npy",
        "model.onnx",
    ]
    cfg = json.loads((tfc_folder / "dataflow_build_config.json").read_text())
    validate_config(cfg)
    assert cfg["board"] == "Pynq-Z2" and cfg["shell_flow_type"] == "vivado_zynq"
    assert cfg["synth_clk_period_ns"] == 10.0 and cfg["enable_build_pdb_debug"] is False
    assert cfg["target_fps"] > 0 and "bitfile" in cfg["generate_outputs"]
    assert cfg["verify_input_npy"] == "input.npy"
    assert "build_dataflow" in (tfc_folder / "README.md").read_text()


def test_tfc_model_has_quant_in_the_qonnx_domain(tfc_folder):
    proto = onnx.load(tfc_folder / "model.onnx")
    quants = [n for n in proto.graph.node if n.op_type in ("Quant", "BipolarQuant")]
    assert quants and all(n.domain == "qonnx.custom_op.general" for n in quants)
    onnx.checker.check_model(proto)


def test_tfc_pair_is_reproduced_by_the_reference(tfc_folder):
    expected = _reference_reproduces(tfc_folder)
    assert expected.shape == (1, 10)
    x = np.load(tfc_folder / "input.npy")
    assert x.shape == (1, 1, 28, 28) and x.dtype == np.float32


def test_kws_folder_with_the_finn_examples_input(tmp_path):
    """With finn-examples' own KWS input, our expected output has its label (3) as argmax."""
    src = shared_path(*_rel(KWS))
    sample = np.load(shared_path(*_rel(KWS_DATA / "input.npy")))
    label = np.load(shared_path(*_rel(KWS_DATA / "expected_output.npy")))
    out = tmp_path / "kws"
    compile_finn(load(src), "vu13p", out, inputs=sample)
    expected = _reference_reproduces(out)
    assert int(expected.argmax()) == int(label[0]) == 3
    cfg = json.loads((out / "dataflow_build_config.json").read_text())
    assert cfg["fpga_part"] == "xcvu13p-flga2577-2-e" and "board" not in cfg  # a bare device: part, no shell
    assert "stitched_ip" in cfg["generate_outputs"]


def test_kws_folder_with_sampled_input(tmp_path):
    src = shared_path(*_rel(KWS))
    compile_finn(load(src), "kv260", tmp_path / "kws")
    _reference_reproduces(tmp_path / "kws")
    cfg = json.loads((tmp_path / "kws" / "dataflow_build_config.json").read_text())
    assert cfg["board"] == "KV260_SOM"


def test_target_fps_follows_estimates_and_options():
    ir = load(shared_path(*_rel(TFC / "TFC_2W2A.onnx")))
    small, why_small = build_config(ir, get_target("pynq-z2"), FinnOptions(), True)
    big, _ = build_config(ir, get_target("vu13p"), FinnOptions(), True)
    # a 25x smaller device must fold more (or equal), at its 2x slower clock
    assert small["target_fps"] <= big["target_fps"] / 2 and "LUTs" in why_small
    fixed, why = build_config(ir, get_target("vu13p"), FinnOptions(target_fps=1234), True)
    assert fixed["target_fps"] == 1234 and why == "--target-fps"
    folded, _ = build_config(ir, get_target("vu13p"), FinnOptions(reuse_factor=10, clock_ns=4.0), True)
    assert folded["target_fps"] == int(1e9 / 4.0 / 10) and folded["synth_clk_period_ns"] == 4.0


def test_config_validation_uses_finn_field_names():
    assert {"output_dir", "synth_clk_period_ns", "generate_outputs", "board", "fpga_part"} <= FINN_CONFIG_FIELDS
    ok = {"output_dir": "o", "synth_clk_period_ns": 5.0, "generate_outputs": ["estimate_reports"], "fpga_part": "x"}
    validate_config(ok)
    with pytest.raises(FinnConfigError, match="not DataflowBuildConfig fields: clock"):
        validate_config({**ok, "clock": 5})
    with pytest.raises(FinnConfigError, match="generate_outputs: bitstream"):
        validate_config({**ok, "generate_outputs": ["bitstream"]})
    with pytest.raises(FinnConfigError, match="lacks required"):
        validate_config({"output_dir": "o"})
    with pytest.raises(FinnConfigError, match="board or fpga_part"):
        validate_config({k: v for k, v in ok.items() if k != "fpga_part"})


def test_finn_refuses_floatquant(tmp_path):
    src = shared_path(*_rel(QDATA / "floatquant_exec" / "qonnx_act_weight_fp8.onnx"))
    with pytest.raises(UnsupportedModelError, match="FloatQuant"):
        compile_finn(load(src), "zcu104", tmp_path / "fp8")
    assert not list(tmp_path.iterdir())


def test_cli_finn(tmp_path):
    src = shared_path(*_rel(TFC / "TFC_2W2A.onnx"))
    out = tmp_path / "tfc"
    r = CliRunner().invoke(
        app, ["compile", str(src), "-t", "zcu104", "--backend", "finn", "-o", str(out), "--target-fps", "5000"]
    )
    assert r.exit_code == 0, r.output
    assert "finn build folder for zcu104" in r.output
    assert json.loads((out / "dataflow_build_config.json").read_text())["target_fps"] == 5000
    r = CliRunner().invoke(app, ["compile", str(src), "-t", "zcu104", "--backend", "finn", "-o", str(out)])
    assert r.exit_code == 2 and "already exists" in r.output
    r = CliRunner().invoke(app, ["compile", str(src), "-t", "zcu104", "--backend", "vivado", "-o", str(tmp_path / "v")])
    assert r.exit_code == 2 and "--backend must be one of hls4ml, finn" in r.output


EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "jet_tagger_mlp.onnx"


def test_verify_runs_the_written_model_and_pair_bit_exact(tmp_path):
    """--verify: model.onnx read back from the folder and expected_output.npy equal the IR's reference."""
    out = tmp_path / "jet"
    r = CliRunner().invoke(app, ["compile", str(EXAMPLE), "-t", "vu13p", "--backend", "finn", "-o", str(out),
                                 "--verify", "--samples", "16"])  # fmt: skip
    assert r.exit_code == 0, r.output
    v = json.loads((out / "codesign.json").read_text())
    assert v["verify"]["samples"] == 16 and v["verify"]["outputs"] == 17 * 5 and v["verify"]["bit_exact"], v["verify"]
    assert v["verdict"]["passed"] and "verified 16 samples: bit-exact, max abs diff 0" in r.output, r.output


def test_verify_exits_3_on_a_pair_off_the_reference(tmp_path, monkeypatch):
    """A wrong expected_output.npy (what FINN would check its build against) fails --verify with exit 3."""
    from codesign.backends import finn_backend as fb

    right = fb.reference_pair
    monkeypatch.setattr(fb, "reference_pair", lambda m, x: (lambda p: (p[0], p[1] + 0.25))(right(m, x)))
    out = tmp_path / "jet"
    r = CliRunner().invoke(app, ["compile", str(EXAMPLE), "-t", "vu13p", "--backend", "finn", "-o", str(out),
                                 "--verify", "--samples", "4"])  # fmt: skip
    assert r.exit_code == 3, r.output
    assert "verification FAILED: required bit-exact (model.onnx and the pair vs the IR)" in r.output, r.output
    assert "max abs diff 0.25" in r.output and (out / "codesign.json").is_file()


#: Runs FINN's Vivado-free steps on a folder, with FINN's own verification of our pair.
FINN_CHECK = """
import json, shutil, sys
from pathlib import Path
from finn.util.settings import initialize_dummy_settings
initialize_dummy_settings()
import finn.xsi
finn.xsi.SimEngine = None  # finn-plus imports its simulator eagerly; these steps never simulate
from finn.builder.build_dataflow_config import DataflowBuildConfig, estimate_only_dataflow_steps
import finn.builder.build_dataflow as build
src, work = Path(sys.argv[1]), Path(sys.argv[2])
shutil.copytree(src, work)
cfg = DataflowBuildConfig.from_json((work / "dataflow_build_config.json").read_text())
cfg.output_dir = str(work / "output")
cfg.steps = list(estimate_only_dataflow_steps)
cfg.verify_input_npy, cfg.verify_expected_output_npy = str(work / "input.npy"), str(work / "expected_output.npy")
cfg.verify_steps = ["finn_onnx_python", "initial_python", "streamlined_python"]
build.build_dataflow_cfg(str(work / "model.onnx"), cfg)
verdicts = sorted(p.name for p in (work / "output" / "verification_output").glob("*.npy"))
perf = json.loads((work / "output" / "report" / "estimate_network_performance.json").read_text())
Path(sys.argv[3]).write_text(json.dumps({"verify": verdicts, "fps": perf["estimated_throughput_fps"]}))
"""


def _run_finn(folder: Path, tmp_path: Path) -> dict:
    """FINN (finn-plus, in its own venv: CODESIGN_FINN_PYTHON) runs its estimate-only flow on ``folder``
    with its verification steps on our pair; returns their verdict files and the estimated fps."""
    import os
    import subprocess

    python = os.environ.get("CODESIGN_FINN_PYTHON")
    if not python or not Path(python).exists():
        pytest.skip(
            "set CODESIGN_FINN_PYTHON to a python with finn-plus installed (its pinned deps need their own venv)"
        )
    script = tmp_path / "finn_check.py"
    script.write_text(FINN_CHECK)
    # FINN only reads XILINX_VIVADO's name here (build metadata); its scratch goes under tmp_path
    env = {**os.environ, "XILINX_VIVADO": os.environ.get("XILINX_VIVADO", "/opt/Xilinx/Vivado/2024.2")}
    env["FINN_BUILD_DIR"] = str(tmp_path / "finn_tmp")
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [python, str(script), str(folder), str(tmp_path / "work"), str(out)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900, check=False,
    )  # fmt: skip
    assert out.is_file(), proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(out.read_text())


FINN_VERIFIED = [
    "verify_finn_onnx_python_0_SUCCESS.npy",
    "verify_initial_python_0_SUCCESS.npy",
    "verify_streamlined_python_0_SUCCESS.npy",
]


@pytest.mark.slow
@pytest.mark.parametrize("path, target", [(TFC / "TFC_2W2A.onnx", "pynq-z2"), (KWS, "vu13p")], ids=["tfc", "kws"])
def test_finn_itself_accepts_the_folder(path, target, tmp_path):
    """FINN runs its estimate-only flow on the folder and its verification steps reproduce our
    expected output. No Vivado needed for these steps."""
    src = shared_path(*_rel(path))
    compile_finn(load(src), target, tmp_path / "folder")
    result = _run_finn(tmp_path / "folder", tmp_path)
    assert result["verify"] == FINN_VERIFIED
    assert result["fps"] > 0


SEARCH_MLP = {"widths": (32, 16), "activations": ("relu", "relu"), "norms": ("none", "none"), "bits": 6}
SEARCH_CONV = {
    "widths": (8, 8, 16), "activations": ("relu",) * 3, "norms": ("none",) * 3, "bits": 6,
    "kinds": ("conv2d", "conv2d", "dense"), "kernels": (5, 3, 0), "skips": (False, False, False),
    "pools": ("max", "max", "none"), "input_shape": (1, 28, 28),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("genome", [SEARCH_MLP, SEARCH_CONV], ids=["mlp", "conv"])
def test_finn_accepts_a_search_candidate(genome, tmp_path):
    """What NSGA-II and DARTS derive (Quant, MatMul/Conv, bias on the offset grid, ReLU,
    quantize-then-max-pool) goes through FINN's flow, all verification steps SUCCESS. (A residual
    block does not map to FINN hardware with the default steps: see docs/search.md.)"""
    from codesign.search.genome import Genome, build_ir, random_params

    g = Genome(**genome)
    n_features = int(np.prod(g.input_shape)) if g.input_shape else 10
    compile_finn(build_ir(g, n_features, 2, random_params(g, n_features, 2, seed=4)), "vu13p", tmp_path / "folder")
    result = _run_finn(tmp_path / "folder", tmp_path)
    assert result["verify"] == FINN_VERIFIED and result["fps"] > 0
