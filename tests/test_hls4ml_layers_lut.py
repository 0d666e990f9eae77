"""Exp/Erf/Abs/Sqrt/... as hls4ml UnaryLUTs: one entry per input value, bit-exact when a Quant reads the result."""

from __future__ import annotations

import numpy as np
import pytest
from hls4ml_graphs import Graph, assert_bit_exact, csim, layer_classes

pytest.importorskip("hls4ml")


@pytest.mark.parametrize("op", ["Exp", "Erf", "Sqrt", "Reciprocal"])
def test_quantized_functions_are_bit_exact_tables(tmp_path, op):
    signed = op not in ("Sqrt", "Reciprocal")
    g = Graph((16,))
    h = g.quant(g.node("MatMul", [g.quant("x", 8, -4), g.weight((16, 12))], name="fc"), 8, -4, signed=signed)
    h = g.quant(g.node(op, [h], name="f"), 8, -3)
    assert_bit_exact(csim(g.model(g.node("MatMul", [h, g.weight((12, 4))], name="out"), (4,)), tmp_path))
    assert layer_classes(tmp_path)["f"] == "UnaryLUT"


def test_table_grid_is_in_raw_bit_order():
    from codesign.backends.hls4ml_layers.lut import grid
    from codesign.backends.precision import Fixed

    np.testing.assert_array_equal(grid(Fixed(3, 1)), [0.0, 0.25, 0.5, 0.75, -1.0, -0.75, -0.5, -0.25])
    np.testing.assert_array_equal(grid(Fixed(2, 2, signed=False)), [0.0, 1.0, 2.0, 3.0])


def test_a_wide_input_is_refused_naming_the_node():
    from codesign.backends.compile import compile_hls4ml
    from codesign.errors import UnsupportedModelError
    from codesign.frontends import load

    g = Graph((16,))
    h = g.node("Exp", [g.node("MatMul", [g.quant("x", 8, -4), g.weight((16, 4))], name="fc")], name="e")
    with pytest.raises(UnsupportedModelError, match="Exp e: its input type fixed<.*> has .* bits: a lookup table"):
        compile_hls4ml(load(g.model(h, (4,))), "vu13p", "/nonexistent-never-written")


def test_float_gelu_gets_a_quantized_table_input_and_verifies(tmp_path):
    """Exact GELU (x * (1 + erf(x / sqrt 2)) / 2, torch's default export): the type selection quantizes Erf's input to
    LUT_INPUT_BITS, so the table has 2**12 entries; C-sim vs the float model within the top-1 bar."""
    import codesign

    g = Graph((16,))
    h = g.node("MatMul", ["x", g.const(np.random.default_rng(0).normal(size=(16, 24)) / 4)], name="fc")
    e = g.node("Erf", [g.node("Div", [h, g.const(np.float32(np.sqrt(2.0)))], name="scale")], name="erf")
    gelu = g.node("Mul", [g.node("Mul", [h, g.node("Add", [e, g.const(1.0)], name="one")], name="gate"),
                          g.const(0.5)], name="half")  # fmt: skip
    y = g.node("MatMul", [gelu, g.const(np.random.default_rng(1).normal(size=(24, 5)) / 4)], name="out")
    result = codesign.compile(g.model(y, (5,)), "vu13p", output=tmp_path / "prj", verify=True, samples=200)
    assert result.passed, result.verdict_line
    assert layer_classes(tmp_path)["erf"] == "UnaryLUT"
