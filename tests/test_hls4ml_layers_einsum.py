"""MatMul of two computed tensors (attention) -> hls4ml's Einsum, C-simulated bit-exact against the IR."""

from __future__ import annotations

import pytest
from hls4ml_graphs import Graph, assert_bit_exact, csim, layer_classes

from codesign.backends.hls4ml_layers.einsum import matmul_equation

pytest.importorskip("hls4ml")


def _lowered(proto):
    from codesign.backends.hls4ml_backend import lower_model
    from codesign.frontends import load

    return lower_model(load(proto))


@pytest.mark.parametrize(
    ("a", "b", "eq", "a_shape", "b_shape"),
    [
        ([1, 4, 6], [1, 6, 5], "bc,cd->bd", (4, 6), (6, 5)),  # batch of 1 left out
        ([1, 2, 4, 6], [1, 2, 6, 5], "bcd,bde->bce", (2, 4, 6), (2, 6, 5)),  # heads: an in-place axis
        ([1, 2, 4, 5], [1, 5, 3], "bcd,de->bce", (2, 4, 5), (5, 3)),  # v broadcast over the heads
        ([1, 1, 4, 5], [1, 3, 5, 2], "cd,bde->bce", (4, 5), (3, 5, 2)),  # a size-1 head axis broadcast
        ([1, 4, 1], [1, 1, 3], "b,d->bd", (4,), (3,)),  # inner size 1: an outer product
    ],
)
def test_matmul_equation_follows_onnx_broadcasting(a, b, eq, a_shape, b_shape):
    import numpy as np
    from hls4ml.utils.einsum_utils import _exec_einsum, parse_einsum

    assert matmul_equation(a, b) == (eq, a_shape, b_shape)
    rng = np.random.default_rng(0)
    x, y = rng.integers(-4, 5, size=a).astype(float), rng.integers(-4, 5, size=b).astype(float)
    recipe = parse_einsum(eq, a_shape, b_shape)
    got = _exec_einsum(recipe, x.reshape(a_shape), y.reshape(b_shape))  # hls4ml's own reference of its kernel
    assert np.array_equal(np.ravel(got), np.matmul(x, y).ravel())  # same row-major data: size-1 axes dropped


def test_matmul_equation_refuses_shapes_that_do_not_multiply():
    with pytest.raises(ValueError, match=r"batch dimensions do not broadcast \(\[1, 2, 4, 5\] @ \[1, 3, 5, 2\]\)"):
        matmul_equation([1, 2, 4, 5], [1, 3, 5, 2])


def _shape(g: Graph, shape: list[int]) -> str:
    """An int64 shape initializer (Reshape's second input)."""
    import numpy as np
    from onnx import numpy_helper

    name = g._name("shape")
    g.inits.append(numpy_helper.from_array(np.asarray(shape, dtype=np.int64), name))
    return name


def _attention(heads: int = 0) -> Graph:
    """q @ k^T -> Quant -> @ v (no Softmax): three quantized inputs, ``heads`` > 0 adds a head axis."""
    lead = (heads,) if heads else ()
    g = Graph((*lead, 4, 6))
    q = g.quant("x", 6, -3)
    k = g.quant(g.input("k", (*lead, 5, 6)), 5, -2)
    v = g.quant(g.input("v", (5, 3)), 4, -2, signed=False)  # heads: broadcast over them
    perm = [0, 1, 3, 2] if heads else [0, 2, 1]
    logits = g.node("MatMul", [q, g.node("Transpose", [k], name="k_t", perm=perm)], name="att_logits")
    att = g.quant(logits, 6, -1)  # requantized: the exact accumulator is cut to 6 bits
    z = g.node("MatMul", [att, v], name="z_mm")
    g.out = g.quant(z, 8, -1)
    return g


def test_attention_without_softmax_is_bit_exact(tmp_path):
    g = _attention()
    assert_bit_exact(csim(g.model(g.out, (4, 3)), tmp_path))
    classes = layer_classes(tmp_path)
    assert classes["att_logits"] == "Einsum" and classes["z_mm"] == "Einsum"


def test_einsum_stays_latency_under_the_resource_strategy(tmp_path):
    """hls4ml's Einsum template asserts the Latency strategy: ``--strategy resource`` leaves it Latency."""
    import json

    g = _attention()
    assert_bit_exact(csim(g.model(g.out, (4, 3)), tmp_path, strategy="resource"))
    cfg = json.loads((tmp_path / "prj" / "codesign.json").read_text())
    assert cfg["options"]["strategy"] == "resource"
    text = (tmp_path / "prj" / "hls4ml_config.yml").read_text()
    assert "Strategy: Resource" in text and "Strategy: Latency" in text


def test_batched_heads_with_a_broadcast_operand_are_bit_exact(tmp_path):
    """Rank-3 (per sample) q/k over 2 heads; v (5, 3) is broadcast over the heads as ONNX MatMul does."""
    g = _attention(heads=2)
    assert_bit_exact(csim(g.model(g.out, (2, 4, 3)), tmp_path))


def test_attention_softmax_normalises_each_row(tmp_path):
    """softmax(q k^T) over the last axis: one softmax per query row (hls4ml's n_outer). hls4ml normalised all
    4x5 scores as one vector (every probability ~4x too small); now within one output step of the IR's float exp."""
    g = Graph((4, 6))
    k = g.node("Transpose", [g.quant(g.input("k", (5, 6)), 5, -2)], name="k_t", perm=[0, 2, 1])
    logits = g.quant(g.node("MatMul", [g.quant("x", 6, -3), k], name="att_logits"), 6, -1)
    p = g.quant(g.node("Softmax", [logits], name="att_softmax", axis=-1), 7, -6, signed=False)
    report = csim(g.model(p, (4, 5)), tmp_path)
    assert report["max_abs_diff"] <= 2.0**-6, report
    assert report["reference_peak"] >= 0.5  # rows, not the whole tensor: a row's largest probability


def test_exact_accumulator_types_follow_the_operand_types():
    """q fixed<6,3> x k^T fixed<5,3> over 6 terms: 5 fractional bits, range 6 * 4 * 4 = 96 -> fixed<13,8>."""
    from codesign.backends.precision import derive

    g = _attention()
    lowered = _lowered(g.model(g.out, (4, 3)))
    types = derive(lowered).layers["att_logits"].types
    assert types["accum"].hls() == "fixed<13,8>" and types["result"] == types["accum"]


def test_csim_cost_counts_the_activation_products():
    """No weights, but C-simulation time: 4x5 logits over 6 terms + 4x3 outputs over 5 terms."""
    from codesign.backends.csim import csim_cost

    g = _attention()
    cost = csim_cost(_lowered(g.model(g.out, (4, 3))))
    assert (cost.macs, cost.weights, cost.parallel_mults) == (4 * 5 * 6 + 4 * 3 * 5, 0, 0)


def _conv_attention() -> tuple[Graph, str]:
    """BraggNN's block: conv -> Reshape (C, positions) -> q^T k -> Quant -> @ v^T -> Transpose -> Reshape -> conv."""
    g = Graph((3, 3, 4))  # 12 positions of 4 channels
    x = g.quant("x", 6, -3)
    flat = _shape(g, [1, 4, 12])
    qkv = []
    for t in "qkv":
        c = g.node("Conv", [x, g.weight((4, 3, 1, 1)), g.bias(4)], name=f"{t}_conv", kernel_shape=[1, 1])
        qkv.append(g.node("Reshape", [g.quant(c, 6, -3), flat], name=f"{t}_flat"))
    q, k, v = qkv
    q_t = g.node("Transpose", [q], name="q_t", perm=[0, 2, 1])
    att = g.quant(g.node("MatMul", [q_t, k], name="att_logits"), 6, -1)  # (1, 12, 12)
    z = g.node("MatMul", [att, g.node("Transpose", [v], name="v_t", perm=[0, 2, 1])], name="z_mm")  # (1, 12, 4)
    z = g.node("Reshape", [g.node("Transpose", [z], name="z_t", perm=[0, 2, 1]), _shape(g, [1, 4, 3, 4])], name="z_r")
    z = g.quant(z, 8, -1)
    y = g.node("Conv", [z, g.weight((2, 4, 1, 1)), g.bias(2)], name="out_conv", kernel_shape=[1, 1])
    return g, g.quant(g.node("Flatten", [y], name="flat_out"), 10, -2)


def test_attention_after_convs_reads_channels_first_operands(tmp_path):
    """The convs' outputs are stored channels-last: the Reshapes must see channels-first data, or every
    position would be mixed with the wrong channel (the IR reference would disagree)."""
    g, y = _conv_attention()
    assert_bit_exact(csim(g.model(y, (24,)), tmp_path))
    assert layer_classes(tmp_path)["z_mm"] == "Einsum"


def test_io_stream_switch_is_skipped_for_a_model_io_stream_cannot_express(tmp_path, monkeypatch):
    """A big conv model is built io_stream instead of unrolled; one with attention stays io_parallel (BraggNN's
    search winner: 1.2M multipliers was refused outright)."""
    import codesign
    from codesign.backends import csim as csim_module

    monkeypatch.setattr(csim_module, "PARALLEL_MULT_LIMIT", 200)  # 528 unrolled: 2.6x, within KEEP_PARALLEL_FACTOR
    g, y = _conv_attention()
    msgs: list[str] = []
    result = codesign.compile(g.model(y, (24,)), "vu13p", output=tmp_path / "o", verify=True, samples=10,
                              log=msgs.append)  # fmt: skip
    assert any(m.startswith("io_parallel would unroll 528 multipliers (> 200; largest q_conv), but io_stream cannot "
                            "express it (hls4ml cannot express MatMul att_logits: ") and m.endswith("kept io_parallel")
               for m in msgs), msgs  # fmt: skip
    assert result.manifest["options"]["io"] == "parallel"
    assert_bit_exact(result.verify)


def test_far_too_big_for_io_parallel_and_not_streamable_is_refused_at_once(tmp_path, monkeypatch):
    """Over KEEP_PARALLEL_FACTOR x the limit (light_squeezenet: 333x, g++ ran out of memory after 48 s): one line."""
    import codesign
    from codesign.backends import csim as csim_module

    monkeypatch.setattr(csim_module, "PARALLEL_MULT_LIMIT", 100)  # 528: 5.3x
    g, y = _conv_attention()
    with pytest.raises(csim_module.CsimLimitError, match=r"would unroll 528 multipliers \(> 100; largest q_conv\), "
                                                          r"and io_stream cannot express it \(hls4ml cannot express "
                                                          r"MatMul att_logits"):  # fmt: skip
        codesign.compile(g.model(y, (24,)), "vu13p", output=tmp_path / "o", verify=True, samples=10)
    assert not (tmp_path / "o").exists()


def test_activation_matmul_is_refused_in_io_stream_naming_the_node():
    from codesign.backends import hls4ml_layers
    from codesign.backends.precision import derive
    from codesign.errors import UnsupportedModelError

    g = _attention()
    lowered = _lowered(g.model(g.out, (4, 3)))
    hls4ml_layers.build(lowered, derive(lowered))  # io_parallel takes it
    with pytest.raises(UnsupportedModelError, match="hls4ml cannot express MatMul att_logits: .* io_parallel only"):
        hls4ml_layers.build(lowered, derive(lowered), io="stream")
