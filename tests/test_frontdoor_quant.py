"""Front door: every quantizer spelling becomes canonical QONNX; bad quantizers are refused.

Tiny hand-built graphs (Quant/BipolarQuant/Trunc in every domain exporters use, optional
attributes left out) plus the real Brevitas VGG10 whose Quant nodes lack ``rounding_mode``.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import shared_path
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.infer_shapes import InferShapes

import codesign
from codesign.errors import CodesignError, UnsupportedModelError
from codesign.ir.quant import QONNX_DOMAIN
from codesign.passes.quantizers import SPEC_DEFAULTS


def quant_proto(domain: str = QONNX_DOMAIN, bits: float = 4.0, scale=0.25, zero=0.0, op: str = "Quant",
                **attrs) -> onnx.ModelProto:  # fmt: skip
    """x -> Quant(domain, attrs) -> MatMul(W quantized by the same spelling) -> y, 1x4 -> 1x3."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(np.asarray(scale, dtype=np.float32), "s"),
        numpy_helper.from_array(np.asarray(zero, dtype=np.float32), "z"),
        numpy_helper.from_array(np.asarray(bits, dtype=np.float32), "b"),
        numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "W"),
    ]
    if op == "Quant":
        qa = helper.make_node("Quant", ["x", "s", "z", "b"], ["xq"], name="qa", domain=domain, **attrs)
        qw = helper.make_node("Quant", ["W", "s", "z", "b"], ["Wq"], name="qw", domain=domain, **attrs)
    elif op == "BipolarQuant":
        qa = helper.make_node("BipolarQuant", ["x", "s"], ["xq"], name="qa", domain=domain)
        qw = helper.make_node("BipolarQuant", ["W", "s"], ["Wq"], name="qw", domain=domain)
    else:  # Trunc after a Quant
        inits.append(numpy_helper.from_array(np.asarray(2.0, dtype=np.float32), "ob"))
        qa = helper.make_node("Trunc", ["x", "s", "z", "b", "ob"], ["xq"], name="qa", domain=domain, **attrs)
        qw = helper.make_node("Quant", ["W", "s", "z", "b"], ["Wq"], name="qw", domain=domain)
    mm = helper.make_node("MatMul", ["xq", "Wq"], ["y"], name="mm")
    graph = helper.make_graph([qa, qw, mm], "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)  # fmt: skip
    opsets = [helper.make_opsetid("", 13)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=opsets)


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


@pytest.mark.parametrize("domain", ["qonnx", "onnx.brevitas", "qonnx.custom_op.general", "", "finn.custom_op.general"])
@pytest.mark.parametrize("op", ["Quant", "BipolarQuant", "Trunc"])
def test_every_domain_becomes_canonical_with_spec_defaults(domain, op):
    proto = quant_proto(domain, op=op)
    model = codesign.load(proto)
    nodes = {n.name: n for n in model.nodes}
    assert {n.domain for n in model.nodes if n.op_type == op} == {QONNX_DOMAIN}
    for node in nodes.values():
        for key, value in SPEC_DEFAULTS.get(node.op_type, {}).items():
            got = _attrs(node)[key]
            assert (got.decode() if isinstance(got, bytes) else got) == value, (node.name, key)
    # the canonical model computes what the spec says: qonnx execution of the original (in
    # the canonical domain, defaults written) equals the IR's, on values that hit .5 ties
    x = np.array([[0.125, -0.375, 0.6, 1.9]], dtype=np.float32)
    ref = proto_with_domain(proto, QONNX_DOMAIN)
    expected = execute_onnx(ModelWrapper(ref).transform(InferShapes()), {"x": x})["y"]
    got = execute_onnx(model.wrapper, {"x": x})[model.outputs[0]]
    np.testing.assert_array_equal(got, expected)


def proto_with_domain(proto: onnx.ModelProto, domain: str) -> onnx.ModelProto:
    """The same graph with quantizers in ``domain`` and every spec default written by hand."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    for node in out.graph.node:
        if node.op_type in ("Quant", "BipolarQuant", "Trunc"):
            node.domain = domain
            have = {a.name for a in node.attribute}
            node.attribute.extend(
                helper.make_attribute(k, v) for k, v in SPEC_DEFAULTS.get(node.op_type, {}).items() if k not in have
            )
    if not any(o.domain == domain for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(domain, 1))
    return out


def test_missing_narrow_means_spec_zero_not_qonnx_one():
    """qonnx's op code defaults narrow to 1; the spec says 0: -8 must survive a signed 4-bit Quant."""
    model = codesign.load(quant_proto(bits=4.0, scale=1.0))
    assert _attrs(model.node("qa"))["narrow"] == 0
    out = execute_onnx(
        model.wrapper, {"x": np.array([[-8.0, -9.0, 7.0, 9.0]], dtype=np.float32)}, return_full_exec_context=True
    )
    np.testing.assert_array_equal(out["xq"], [[-8.0, -8.0, 7.0, 7.0]])
    assert model.dtype("xq").name == "INT4"


def test_explicit_attributes_are_kept():
    model = codesign.load(quant_proto(signed=0, narrow=1, rounding_mode="FLOOR"))
    assert _attrs(model.node("qa")) == {"signed": 0, "narrow": 1, "rounding_mode": b"FLOOR"}


def test_intquant_is_read_as_quant_and_compiles_bit_exact(tmp_path):
    """qonnx >= 0.4's name for the integer quantizer (Quant is its alias): hls4ml refused "op IntQuant"."""
    proto = quant_proto(narrow=1)
    for node in proto.graph.node:
        node.op_type = "IntQuant" if node.op_type == "Quant" else node.op_type
    model = codesign.load(proto)
    assert {n.op_type for n in model.graph.node} >= {"Quant"} and "IntQuant" not in {
        n.op_type for n in model.graph.node
    }
    result = codesign.compile(proto, "vu13p", output=tmp_path / "o", verify=True, samples=20)
    assert result.passed and result.manifest["verify"]["bit_exact"] is True


def test_vgg10_quant_nodes_get_rounding_mode():
    path = shared_path("models", "Xilinx+brevitas-radioml-challenge-21", "sandbox", "notebooks", "models",
                       "pretrained_VGG10_w8a8_20_export.onnx")  # fmt: skip
    raw = onnx.load(path)
    assert any("rounding_mode" not in {a.name for a in n.attribute} for n in raw.graph.node if n.op_type == "Quant")
    model = codesign.load(path)
    quants = [n for n in model.nodes if n.op_type == "Quant"]
    assert quants and all(_attrs(n)["rounding_mode"] == b"ROUND" and "narrow" in _attrs(n) for n in quants)


def multithreshold_proto(out_dtype: str | None) -> onnx.ModelProto:
    thr = numpy_helper.from_array(np.array([[-1.0, 0.0, 1.0]] * 4, dtype=np.float32), "thr")
    attrs = {} if out_dtype is None else {"out_dtype": out_dtype}
    node = helper.make_node("MultiThreshold", ["x", "thr"], ["y"], name="mt", domain="finn.custom_op.general", **attrs)
    graph = helper.make_graph([node], "mt", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [thr])  # fmt: skip
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("finn.custom_op.general", 1)]
    )


def test_multithreshold_without_out_dtype_gets_finns_default():
    model = codesign.load(multithreshold_proto(None))
    assert _attrs(model.node("mt"))["out_dtype"] == b"UINT2"  # 3 thresholds: 0..3
    assert model.dtype("y").name == "UINT2"
    x = np.array([[-2.0, -0.5, 0.5, 2.0]], dtype=np.float32)
    np.testing.assert_array_equal(execute_onnx(model.wrapper, {"x": x})["y"], [[0, 1, 2, 3]])


BAD_QUANT = [
    ({"bits": 0.0}, "bit width 0 is not an integer in 1..32"),
    ({"bits": -1.0}, "bit width -1 is not an integer"),
    ({"bits": 2.5}, "bit width 2.5 is not an integer"),
    ({"bits": 1000.0}, "bit width 1000 is not an integer"),
    ({"bits": 1e30}, "bit width 1e\\+30 is not an integer"),
    ({"bits": float("nan")}, "bit width nan"),
    ({"scale": 0.0}, "scale must be finite and > 0, got 0"),
    ({"scale": -1.0}, "scale must be finite and > 0, got -1"),
    ({"scale": float("nan")}, "scale must be finite and > 0, got nan"),
    ({"scale": float("inf")}, "scale must be finite and > 0, got inf"),
    ({"scale": [0.5, 0.5, 0.5, 0.5, 0.5]}, "scale of shape \\(5,\\) does not broadcast"),
    ({"zero": float("nan")}, "zero point must be finite and integral"),
    ({"zero": 0.5}, "zero point must be finite and integral"),
    ({"signed": 5}, "signed=5, must be 0 or 1"),
    ({"narrow": -1}, "narrow=-1, must be 0 or 1"),
    ({"rounding_mode": "SIDEWAYS"}, "unknown rounding_mode 'SIDEWAYS'"),
]


@pytest.mark.parametrize("kwargs,message", BAD_QUANT, ids=[m[:24] for _, m in BAD_QUANT])
def test_invalid_quantizer_refused_naming_node(kwargs, message):
    with pytest.raises(UnsupportedModelError, match=f"node 'q[aw]' \\(Quant\\): {message}"):
        codesign.load(quant_proto(**kwargs))


def test_valid_32_bit_and_1_bit_quantizers_load():
    assert codesign.load(quant_proto(bits=32.0)).dtype("xq").name == "SCALEDINT<32>"
    assert codesign.load(quant_proto(bits=1.0, scale=1.0)).dtype("xq").name == "BIPOLAR"


def test_huge_bit_width_refused_fast():
    """1e30 bits used to hang datatype inference at 6 GiB (2**(bits-1) as a Python int)."""
    import time

    t0 = time.perf_counter()
    with pytest.raises(CodesignError, match="bit width"):
        codesign.load(quant_proto(bits=1e30))
    assert time.perf_counter() - t0 < 30.0  # a hang guard: it used to hang at 6 GiB
