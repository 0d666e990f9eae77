"""The segmented reference executor gives qonnx's ``execute_onnx`` results, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import all_shared_models

from codesign.backends.segments import SegmentedExecutor
from codesign.frontends import load


def _feeds(model, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name in model.inputs:
        dt = model.dtype(name)
        x = rng.normal(0.0, 2.0, size=model.shape(name)).astype(np.float32)
        out[name] = np.round(x) if dt.is_integer() else x
        if dt.is_integer() and not dt.signed():
            out[name] = np.abs(out[name])
    return out


def _custom(path) -> bool:
    try:
        model = load(path)
    except Exception:
        return False
    return any(n.domain not in ("", "ai.onnx") for n in model.graph.node) and model.proto.ByteSize() < 40_000_000


@pytest.mark.parametrize("path", [p for p in all_shared_models() if _custom(p)], ids=lambda p: p.name)
def test_segments_equal_qonnx_on_every_shared_quantized_model(path):
    """Every shared model with QONNX custom ops: every graph output equal to qonnx's, on two random inputs."""
    from qonnx.core.onnx_exec import execute_onnx

    model = load(path)
    executor = SegmentedExecutor(model)
    for seed in (0, 1):
        feeds = _feeds(model, seed)
        want = execute_onnx(model.wrapper, feeds)
        got = executor.run(feeds)
        for name in model.outputs:
            assert np.array_equal(got[name], want[name]), (path.name, name)


def test_a_long_chain_is_a_handful_of_sessions():
    """A Quant chain of 2,000 nodes alternates runs and custom nodes: one session per run, built once."""
    import sys

    sys.path.insert(0, str(__import__("conftest").ROOT / "benchmarks"))
    from load_scaling import quant_chain

    from codesign.backends.segments import _Run

    model = load(quant_chain(200))
    executor = SegmentedExecutor(model)
    runs = [s for s in executor.steps if isinstance(s, _Run)]
    quants = sum(n.op_type == "Quant" for n in model.graph.node)
    assert len(runs) <= quants + 1 < len(model.graph.node)
    from qonnx.core.onnx_exec import execute_onnx

    feeds = _feeds(model)
    assert np.array_equal(executor.run(feeds)[model.outputs[0]], execute_onnx(model.wrapper, feeds)[model.outputs[0]])
