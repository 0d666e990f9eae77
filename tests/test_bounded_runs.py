"""Big spatial models never run away: batches fit a memory budget, sample counts a work/time budget, or a refusal
in seconds (issues 14, 15: the ESPCN super-resolution nets, 512x512 convs, a 111x111-pixel conv on rtl)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
from conftest import ROOT, shared_path
from onnx import TensorProto, helper, numpy_helper

import codesign
from codesign.backends import csim
from codesign.errors import CodesignError, UnsupportedModelError
from codesign.frontends import load
from codesign.passes import workload
from codesign.passes.calibrate import calibrate
from codesign.passes.precision import SelectPrecision, criterion_for, quality, run_outputs

ESPCN = ("models", "fastmachinelearning+qonnx", "src", "qonnx", "data", "onnx", "bsd300x3-espcn", "nn_resize")


def _conv(size: int, cin: int, cout: int, seed: int = 0) -> onnx.ModelProto:
    """Float Conv(3x3, pad 1) -> Relu on a ``size`` x ``size`` image: an image in, an image out."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array((rng.normal(size=(cout, cin, 3, 3)) / 3).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv0", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"], name="relu0")]  # fmt: skip
    graph = helper.make_graph(
        nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, size, size])], [w],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_sample_cost_counts_dense_macs_and_every_activation():
    m = load(_conv(16, 3, 8))
    cost = workload.sample_cost(m)
    assert cost.macs == 8 * 3 * 9 * 16 * 16
    assert cost.activation_bytes == 4 * (3 + 8 + 8) * 16 * 16 and cost.largest_bytes == 4 * 8 * 16 * 16
    assert workload.samples_within(1000, 1e9, 1e10, 4) == 10
    assert workload.samples_within(1000, 1e11, 1e10, 4) == 4  # never below the minimum
    assert workload.samples_within(3, 1e11, 1e10, 4) == 3  # nor above what was asked


def test_calibration_batches_fit_the_memory_budget_with_the_same_ranges(monkeypatch):
    """A budget smaller than one sample runs one sample per batch; the ranges are those of one big batch."""
    m = load(_conv(16, 3, 8))
    x = np.random.default_rng(1).normal(size=(12, 3, 16, 16)).astype(np.float32)
    whole = calibrate(m, x)
    monkeypatch.setenv("CODESIGN_BATCH_MEMORY_GB", str(1000 / (1 << 30)))  # 1000 bytes
    assert workload.batch_size(m, 512) == 1
    cut = calibrate(m, x)
    assert cut.samples == 12 and cut.ranges == whole.ranges
    monkeypatch.setenv("CODESIGN_BATCH_MEMORY_GB", "lots")
    with pytest.raises(CodesignError, match=r"^CODESIGN_BATCH_MEMORY_GB='lots': expected a number of GiB$"):
        workload.batch_size(m, 512)


def test_image_outputs_get_an_error_tolerance_not_top1():
    """An image (or map) output has no class: top-1 over its pixels meant nothing (the ESPCN search chased it)."""
    ref = np.random.default_rng(0).normal(size=(5, 3, 8, 8))
    crit = criterion_for(ref, None)
    assert crit.kind == "max_abs_error" and crit.value == pytest.approx(0.01 * np.abs(ref).max())
    assert quality(ref, ref + 0.5).top1 is None
    scores = np.random.default_rng(0).normal(size=(5, 1, 10))
    assert criterion_for(scores, None).kind == "top1" and quality(scores, scores).top1 == 1.0


def test_precision_search_cuts_samples_and_evaluations_to_its_work_budget(monkeypatch):
    m = load(_conv(8, 2, 4))
    macs = workload.sample_cost(m).macs  # 4,608
    monkeypatch.setattr(workload, "EVAL_MACS", 50 * macs)
    monkeypatch.setattr(workload, "SEARCH_MACS", 50 * macs * 6)
    info = SelectPrecision()(m).info
    assert len(info.inputs[m.inputs[0]]) == 50 and "(50 samples, seed 0)" in info.data_source
    assert "cut from 1000: 4.61e+03 MACs per sample" in info.data_source
    assert info.evaluation_limit == 6 and info.evaluations <= 6 + 1
    data = np.random.default_rng(2).normal(size=(200, 2, 8, 8)).astype(np.float32)
    info = SelectPrecision(data)(m).info
    x = info.inputs[m.inputs[0]]
    assert len(x) == 50 and info.data_source.startswith("calibration data (50 of 200 samples, evenly spaced")
    assert np.array_equal(x[-1], data[-1])


def test_csim_samples_fit_the_time_budget_or_are_refused_in_seconds():
    cost = csim.CsimCost(macs=100_000_000)  # ~20 s per sample io_stream, ~2.5 s io_parallel
    assert csim.plan_samples(cost, "parallel", 10, 120.0) == (10, None)
    n, why = csim.plan_samples(cost, "stream", 50, 120.0)
    assert n == 6 and why.startswith("--verify: C-simulating 6 of the 50 samples (~20.0 s each")
    assert csim.plan_samples(cost, "stream", 50, 10.0)[0] == 1  # within 3x: one sample, timed, decides the rest
    with pytest.raises(csim.CsimLimitError, match=r"one sample \(100,000,000 multiplies, io_stream\) would take ~20 s, "
                                                   r"over 3x the 5 s budget; raise CODESIGN_CSIM_SECONDS"):  # fmt: skip
        csim.plan_samples(cost, "stream", 50, 5.0)


def test_big_float_conv_verify_is_refused_before_the_type_search(tmp_path):
    """A 256x256, 64-channel float conv: ~483 s of io_stream C-sim per sample; refused in seconds, no folder."""
    path = tmp_path / "conv.onnx"
    onnx.save(_conv(256, 64, 64), path)
    msgs: list[str] = []
    t0 = time.monotonic()
    with pytest.raises(csim.CsimLimitError, match=r"one sample \(2,415,919,104 multiplies, io_stream\) would take "
                                                   r"~483 s, over 3x the 120 s budget"):  # fmt: skip
        codesign.compile(path, "vu13p", output=tmp_path / "o", verify=True, log=msgs.append)
    assert time.monotonic() - t0 < 30 and not (tmp_path / "o").exists()
    assert msgs == [("io_parallel would unroll 2,415,919,104 multipliers (> 1,048,576; largest conv0): building "
                    "io_stream instead (36,864)")]  # fmt: skip


def _cap_8gib() -> None:
    """The child's address space: 8 GiB, or the caller's own hard limit when that is lower."""
    import resource

    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    cap = 8 << 30 if hard == resource.RLIM_INFINITY else min(8 << 30, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def test_espcn_float_verify_is_one_line_in_seconds(tmp_path):
    """The real ESPCN float net (a MemoryError under 8 GiB before): one line, exit 2, under an 8 GiB cap."""
    model = shared_path(*ESPCN, "float_model.onnx")
    cmd = [sys.executable, "-m", "codesign.cli", "compile", str(model), "--target", "vu13p", "--verify",
           "-o", str(tmp_path / "o")]  # fmt: skip
    t0 = time.monotonic()
    env = {**os.environ, "CODESIGN_CSIM_SECONDS": "60"}  # its ~208 s sample runs under the default 120 s x 3
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300, preexec_fn=_cap_8gib, env=env)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        (
            "codesign: error: --verify: C-simulating one sample (1,041,235,968 multiplies, io_stream) would take ~208 s, "
            "over 3x the 60 s budget; raise CODESIGN_CSIM_SECONDS, or compile without --verify"
        )
    ]
    assert time.monotonic() - t0 < 120 and not (tmp_path / "o").exists()


def test_rtl_refuses_a_conv_too_large_to_unroll_in_seconds(tmp_path):
    """qonnx's eltwise_chanlast_testcase: 111x111 pixels of a 27x32 conv; alkaid ran past 60 s (fuzz seed 1)."""
    pytest.importorskip("alkaid")
    from codesign.backends.rtl_backend import compile_rtl
    from codesign.passes.estimate.da_model import MAX_UNROLLED, unrolled_work

    path = shared_path(*ESPCN[:-2], "eltwise_chanlast_testcase.onnx")
    ir = load(path)
    total, worst, share = unrolled_work(ir)
    assert (worst, share) == ("Conv_0", 32 * 27 * 111 * 111) and total > MAX_UNROLLED
    t0 = time.monotonic()
    with pytest.raises(UnsupportedModelError, match=r"^rtl backend: Conv_0: alkaid would unroll 12,767,232 multiplies "
                                                     r"and values \(10,645,344 in Conv_0\), over the 32,768"):  # fmt: skip
        compile_rtl(ir, "vu13p", tmp_path / "o")
    assert time.monotonic() - t0 < 10 and not (tmp_path / "o").exists()


def test_max_error_tolerance_keeps_the_whole_calibrated_range():
    """The calibration subsample misses rare values; MSE-best scales clipped them (ESPCN: 0.47 off at 32 bits)."""
    m = load(_conv(16, 3, 8))
    x = 0.3 * np.random.default_rng(3).normal(size=(200, 3, 16, 16)).astype(np.float32)
    x[0, 0, 0, 0] = x[1, 2, 5, 5] = 3.5  # two rare values in 153,600: the 20,000-value subsample misses them
    calib = calibrate(m, x)
    bits = {"conv0": {"weight": 24, "bias": 24, "act": 24}}
    ref = run_outputs(m, x)
    kept = np.abs(run_outputs(SelectPrecision(x)._quantized(m, calib, bits, clip_outliers=False), x) - ref).max()
    clipped = np.abs(run_outputs(SelectPrecision(x)._quantized(m, calib, bits), x) - ref).max()
    assert kept < 1e-4 < 0.1 < clipped
    info = SelectPrecision(x)(m).info
    assert info.criterion.kind == "max_abs_error" and info.quality.max_abs_error <= 0.8 * info.criterion.value


def test_csim_is_cut_to_the_time_the_first_sample_took(monkeypatch):
    """A loaded machine C-simulates fewer samples rather than running past the plan's budget."""
    from codesign.backends import verify

    calls: list[int] = []

    def slow(ir, build, x):  # 0.2 s per sample
        calls.append(len(x["in"]))
        time.sleep(0.2 * len(x["in"]))
        return x["in"][:, :2]

    monkeypatch.setattr(verify, "hls4ml_outputs", slow)
    x = {"in": np.arange(50.0)[:, None] * np.ones((1, 3))}
    got = verify.hls4ml_outputs_within(None, None, x, budget_s=1.0)
    assert calls[0] == 1 and 2 <= len(got) <= 5 and got[:, 0].tolist() == list(range(len(got)))
    assert len(verify.hls4ml_outputs_within(None, None, {"in": np.zeros((7, 3))})) == 7  # no budget: all of them


def test_an_abort_inside_the_csimulation_is_one_error_not_a_dead_process():
    """hls4ml's C++ asserts abort: the C-simulation runs in a forked child, its last stderr line reported."""
    import os as _os

    def boom() -> None:
        _os.write(2, b"nnet_pooling_stream.h:102: Assertion `pool_height == stride_height' failed.\n")
        _os.abort()

    with pytest.raises(csim.CsimAbortedError, match=r"aborted \(SIGABRT\): nnet_pooling_stream.h:102: Assertion"):
        csim.isolated(boom)
    assert csim.isolated(lambda: np.arange(3)).tolist() == [0, 1, 2]
    with pytest.raises(ZeroDivisionError):
        csim.isolated(lambda: 1 / 0)
