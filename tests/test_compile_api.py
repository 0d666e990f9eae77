"""``codesign.compile``: one API for every backend; refusals before expensive work; bounded C-sim builds."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import ROOT, tfc_path
from helpers import mlp_proto
from onnx import TensorProto, helper, numpy_helper

import codesign
from codesign.backends import csim
from codesign.backends.compile import CompileResult
from codesign.errors import CodesignError, UnsupportedModelError
from codesign.frontends import load

EXAMPLE = ROOT / "examples" / "jet_tagger_mlp.onnx"


def _float_mlp_with(op: str, tmp_path: Path) -> Path:
    """The float MLP of ``helpers.mlp_proto`` with its first two ReLUs replaced by ``op``."""
    m = mlp_proto()
    for node in m.graph.node:
        if node.name in ("relu0", "relu1"):
            node.op_type = op
    path = tmp_path / f"mlp_{op.lower()}.onnx"
    onnx.save(m, path)
    return path


def _conv_model(size: int, channels: int) -> onnx.ModelProto:
    """A float 3x3 Conv (``channels`` -> ``channels``) on a ``size`` x ``size`` image."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(channels, channels, 3, 3)).astype(np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv0", pads=[1, 1, 1, 1])
    graph = helper.make_graph(
        [node], "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, size, size])], [w],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_import_codesign_stays_light():
    """``codesign.compile`` is exported lazily: importing codesign loads neither hls4ml, torch nor onnxruntime."""
    code = "import sys, codesign; assert callable(codesign.compile); print(sorted(m for m in ('hls4ml', 'torch', 'onnxruntime') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_backend_and_option_are_refused_by_name(tmp_path):
    with pytest.raises(CodesignError, match=r"--backend must be one of hls4ml, finn, rtl, not 'vivado'"):
        codesign.compile(EXAMPLE, "vu13p", "vivado", output=tmp_path / "a")
    with pytest.raises(CodesignError, match=r"rtl backend: unknown option 'io'"):
        codesign.compile(EXAMPLE, "vu13p", "rtl", output=tmp_path / "b", io="stream")
    with pytest.raises(CodesignError, match=r"finn backend: unknown option 'strategy'"):
        codesign.compile(EXAMPLE, "vu13p", "finn", output=tmp_path / "c", verify=True, strategy="resource")
    assert not any(tmp_path.iterdir())


def test_float_model_with_unsupported_op_is_refused_in_seconds(tmp_path):
    """The refusal names every op and node, comes before the float-type search, and writes nothing."""
    path = _float_mlp_with("Cosh", tmp_path)
    t0 = time.perf_counter()
    with pytest.raises(UnsupportedModelError, match=r"hls4ml cannot express op Cosh at relu0, relu1"):
        codesign.compile(path, "vu13p", output=tmp_path / "out", verify=True)
    assert time.perf_counter() - t0 < 10.0
    assert not (tmp_path / "out").exists()


def test_attribute_limit_is_refused_before_the_type_search(tmp_path):
    """A supported op with attributes hls4ml cannot express (Clip(-2, 3)) is refused at lowering, in seconds."""
    m = mlp_proto()
    m.graph.initializer.extend([numpy_helper.from_array(np.float32(v), n) for n, v in (("lo", -2.0), ("hi", 3.0))])
    relu = next(n for n in m.graph.node if n.name == "relu0")
    relu.op_type = "Clip"
    relu.input.extend(["lo", "hi"])
    path = tmp_path / "clip.onnx"
    onnx.save(m, path)
    t0 = time.perf_counter()
    with pytest.raises(UnsupportedModelError, match=r"hls4ml cannot express Clip relu0: only Clip\(0, 6\)"):
        codesign.compile(path, "vu13p", output=tmp_path / "out", verify=True)
    assert time.perf_counter() - t0 < 10.0  # the float type search (tens of seconds here) never ran
    assert not (tmp_path / "out").exists()


def test_cli_refusal_is_one_line_exit_2(tmp_path):
    path = _float_mlp_with("Cosh", tmp_path)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "codesign.cli", "compile", str(path), "-t", "vu13p", "-o",
                        str(tmp_path / "out"), "--verify"], cwd=ROOT, check=False, capture_output=True, text=True)  # fmt: skip
    assert time.perf_counter() - t0 < 20.0  # a fresh interpreter importing hls4ml, on a shared machine
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == "codesign: error: hls4ml cannot express op Cosh at relu0, relu1"
    assert "float model" not in r.stdout  # no type search ran


def test_finn_backend_through_the_api(tmp_path):
    tfc_model = tfc_path("TFC_2W2A")
    result = codesign.compile(tfc_model, "pynq-z2", "finn", output=tmp_path / "finn")
    assert isinstance(result, CompileResult) and result.backend == "finn" and result.passed is None
    assert (tmp_path / "finn" / "dataflow_build_config.json").is_file()
    assert result.manifest["model"]["path"] == str(tfc_model)
    x, y = np.load(tmp_path / "finn" / "input.npy"), np.load(tmp_path / "finn" / "expected_output.npy")
    assert x.shape == (1, 1, 28, 28) or x.size == 784
    assert y.size == 10


def test_ir_model_passes_through_and_options_reach_the_backend(tmp_path):
    ir = load(EXAMPLE)
    result = codesign.compile(ir, "vu13p", output=tmp_path / "p", io="stream", reuse_factor=2, clock_ns=4.0)
    opts = result.manifest["options"]
    assert (opts["io"], opts["reuse_factor"], opts["clock_ns"]) == ("stream", 2, 4.0)
    assert result.manifest["csim"]["cost"]["weights"] == 16 * 64 + 64 * 32 + 32 * 32 + 32 * 5


# ------------------------------------------------------------------ C-simulation cost, memory and stack
def test_csim_cost_counts_dense_and_conv_multipliers():
    from codesign.backends.hls4ml_backend import lower_model

    dense = csim.csim_cost(lower_model(load(EXAMPLE)))
    assert dense.weights == dense.parallel_mults == 16 * 64 + 64 * 32 + 32 * 32 + 32 * 5
    assert not dense.has_conv and dense.largest_mults == 64 * 32
    conv = csim.csim_cost(lower_model(load(_conv_model(32, 8))), reuse=2)
    assert conv.weights == 8 * 8 * 9 and conv.has_conv
    assert conv.stream_mults == 8 * 8 * 9 // 2 and conv.parallel_mults == 8 * 8 * 9 // 2 * 32 * 32


def test_large_conv_switches_to_io_stream_and_huge_model_is_refused(tmp_path):
    """A conv too large to unroll is built io_stream (said in one line); one over the memory cap is refused."""
    from codesign.backends.hls4ml_backend import lower_model

    big = csim.csim_cost(lower_model(load(_conv_model(128, 16))))  # 2,304 weights x 16,384 pixels
    io, why = csim.plan_io(big, "parallel", 4.0)
    assert io == "stream" and "37,748,736 multipliers" in why and "io_stream" in why
    assert csim.plan_io(big, "stream", 4.0) == ("stream", None)
    assert csim.plan_io(csim.CsimCost(weights=4096 * 4096), "parallel", 4.0) == ("parallel", None)  # ~2.9 GiB
    huge = csim.CsimCost(weights=40_000_000, largest_layer="dense0")
    with pytest.raises(csim.CsimLimitError, match=r"40,000,000 weights needs ~6\.2 GiB .* over the 4 GiB limit"):
        csim.plan_io(huge, "parallel", 4.0)
    msgs: list[str] = []
    model = _conv_model(128, 16)
    path = tmp_path / "conv.onnx"
    onnx.save(model, path)
    with pytest.raises(
        CodesignError, match=r"needs ~0\.6 GiB for g\+\+, over the 0\.1 GiB limit"
    ):  # refused before any g++ or type search
        codesign.compile(path, "vu13p", output=tmp_path / "o", verify=True, csim_memory_gb=0.1, log=msgs.append)
    assert msgs == [] and not (tmp_path / "o").exists()


def test_gpp_over_its_memory_cap_is_one_line(tmp_path, monkeypatch):
    """g++ under a cap too small for it: a CsimLimitError naming the limit, no output folder."""
    monkeypatch.setattr(csim, "BASE_GB", 0.0)  # let the plan pass so that g++ itself meets the cap
    with pytest.raises(
        csim.CsimLimitError, match=r"C-simulation build \(g\+\+\) ran out of its 0\.15 GiB memory limit"
    ):
        codesign.compile(EXAMPLE, "vu13p", output=tmp_path / "o", verify=True, samples=5, csim_memory_gb=0.15)
    assert not (tmp_path / "o").exists()


def test_with_stack_gives_the_thread_its_stack_and_reraises():
    seen = {}

    def probe() -> int:
        seen["name"] = threading.current_thread().name
        return 7

    before = threading.stack_size()
    assert csim.with_stack(probe, 256 << 20) == 7 and seen["name"] == "codesign-csim"
    assert threading.stack_size() == before
    with pytest.raises(ZeroDivisionError):
        csim.with_stack(lambda: 1 / 0, 64 << 20)
    assert csim.stack_bytes(csim.CsimCost(largest_mults=16_777_216)) == 512 << 20


def test_relocate_libraries_rewrites_the_baked_path(tmp_path):
    tmp, final = tmp_path / ".prj.tmp-abcdef12", tmp_path / "prj"
    (tmp / "firmware").mkdir(parents=True)
    lib = tmp / "firmware" / "myproject-1.so"
    lib.write_bytes(b"\0junk" + str(tmp).encode() + b"/firmware/weights\0more")
    assert csim.relocate_libraries(tmp, final) == []
    data = lib.read_bytes()
    assert str(tmp).encode() not in data
    baked = data[5 : data.index(b"\0", 5)].decode()
    assert Path(baked) == final / "firmware" / "weights" and len(baked) == len(f"{tmp}/firmware/weights")
    lib.write_bytes(b"\0junk" + str(tmp).encode() + b"/firmware/weights\0more")
    longer = tmp_path / ("x" * 40)
    assert csim.relocate_libraries(tmp, longer) == ["myproject-1.so"] and not lib.exists()
