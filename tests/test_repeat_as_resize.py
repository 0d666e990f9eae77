"""Keras 3 UpSampling2D through tf2onnx (Unsqueeze -> Tile -> [Transpose] -> Reshape, twice) -> nearest Resizes."""

from __future__ import annotations

import numpy as np
import pytest
from hls4ml_graphs import Graph, assert_bit_exact, csim
from onnx import numpy_helper

from codesign.frontends import load


def _ints(g: Graph, name: str, values: list[int]) -> str:
    g.inits.append(numpy_helper.from_array(np.asarray(values, dtype=np.int64), name))
    return name


def _upsampled(g: Graph, x: str) -> str:
    """x (1, 2, 3, 4) NCHW -> repeat H (Transpose to NHWC in between, as tf2onnx pushes it) -> repeat W -> NCHW."""
    h = g.node("Unsqueeze", [x, _ints(g, "ax1", [3])], name="rep_h_unsqueeze")
    h = g.node("Tile", [h, _ints(g, "reps1", [1, 1, 1, 2, 1])], name="rep_h_tile")
    h = g.node("Transpose", [h], name="to_nhwc", perm=[0, 2, 3, 4, 1])
    h = g.node("Reshape", [h, _ints(g, "shape1", [1, 6, 4, 2])], name="rep_h_merge")
    h = g.node("Unsqueeze", [h, _ints(g, "ax2", [3])], name="rep_w_unsqueeze")
    h = g.node("Tile", [h, _ints(g, "reps2", [1, 1, 1, 2, 1])], name="rep_w_tile")
    h = g.node("Reshape", [h, _ints(g, "shape2", [1, 6, 8, 2])], name="rep_w_merge")
    return g.node("Transpose", [h], name="to_nchw", perm=[0, 3, 1, 2])


def test_repeats_become_nearest_resizes_with_the_same_values():
    from codesign.backends.reference import predict

    g = Graph((2, 3, 4))
    proto = g.model(g.node("Flatten", [_upsampled(g, "x")], name="flat"), (96,))
    model = load(proto)
    ops = [n.op_type for n in model.graph.node]
    assert "Tile" not in ops and ops.count("Resize") == 2 and "Transpose" not in ops, ops
    x = np.random.default_rng(0).normal(size=(5, 2, 3, 4)).astype(np.float32)
    want = np.repeat(np.repeat(x, 2, axis=2), 2, axis=3).reshape(5, -1)
    got = np.asarray(predict(model, x)).reshape(5, -1)
    np.testing.assert_array_equal(got, want)


def test_repeated_upsampling_compiles_bit_exact(tmp_path):
    pytest.importorskip("hls4ml")
    g = Graph((2, 3, 4))
    y = g.node("Flatten", [_upsampled(g, g.quant("x", 8, -4))], name="flat")
    assert_bit_exact(csim(g.model(y, (96,)), tmp_path))
