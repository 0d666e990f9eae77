"""The IR model, datatypes, graph view, validation and the pass contract (qonnx interop)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from helpers import mlp_proto
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.gemm_to_matmul import GemmToMatMul
from qonnx.transformation.general import GiveReadableTensorNames

import codesign
from codesign.errors import ValidationError
from codesign.ir import Model, parse_dtype
from codesign.ir.validate import problems
from codesign.passes.base import FunctionalPass, PassManager, PassResult, QonnxPass, Sequential
from codesign.passes.cost import CostAnalysis, cost_report


@pytest.mark.parametrize(
    "name,bits,integer", [("INT8", 8, True), ("UINT4", 4, True), ("BIPOLAR", 1, True), ("FIXED<16,6>", 16, False),
                          ("SCALEDINT<8>", 8, False), ("FLOAT32", 32, False)],
)  # fmt: skip
def test_datatypes_parse(name, bits, integer):
    dt = parse_dtype(name)
    assert dt.bitwidth() == bits and dt.is_integer() == integer and dt.name == name


def test_unknown_datatype():
    with pytest.raises(ValueError, match="unknown QONNX datatype"):
        parse_dtype("INT")


def test_model_basics_symbolic_batch_fixed_and_names_kept():
    model = codesign.load(mlp_proto())
    assert model.inputs == ["x"] and model.outputs == ["y"]
    assert model.shape("x") == (1, 16) and model.shape("z3") == (1, 5)
    assert [n.name for n in model.nodes][:3] == ["dense0", "bias0", "relu0"]
    assert model.dtype("x").name == "FLOAT32"
    assert model.initializer("w0").shape == (16, 64)
    assert model.sparsity("w0") == 0.0 and model.sparsity("x") is None
    assert model.producer("mm0").name == "dense0" and [n.name for n in model.consumers("mm0")] == ["bias0"]


def test_sparsity_is_seen_and_invalidated():
    model = codesign.load(mlp_proto())
    w = model.initializer("w0").copy()
    w[:8] = 0
    model.set_initializer("w0", w)
    assert model.sparsity("w0") == pytest.approx(0.5)
    report = cost_report(model)
    assert report.layers[0].macs == 16 * 64 / 2 and report.layers[0].sparsity == pytest.approx(0.5)


def test_graph_view_is_the_dataflow():
    g = codesign.load(mlp_proto()).graph_view()
    assert g.nodes["dense0"]["op"] == "MatMul" and g.nodes["dense0"]["params"] == ["w0"]
    assert g.has_edge("x", "dense0") and g.has_edge("dense0", "bias0") and g.has_edge("out", "y:out")
    assert g.edges["dense0", "bias0"]["shape"] == (1, 64)
    import networkx as nx

    assert nx.is_directed_acyclic_graph(g) and nx.shortest_path_length(g, "x", "y:out") == 13


def test_validate_catches_broken_invariants():
    model = codesign.load(mlp_proto())
    assert problems(model) == []
    model.graph.node[1].name = "dense0"
    model.graph.node[2].input[0] = "nowhere"
    model.invalidate()
    found = problems(model)
    assert any("duplicate node name 'dense0'" in p for p in found)
    assert any("reads 'nowhere' before it is produced" in p for p in found)
    with pytest.raises(ValidationError):
        model.validate()


def _zero_first_weight(model: Model) -> bool:
    w = model.initializer("w0").copy()
    w[:] = 0
    model.set_initializer("w0", w)
    return True


def test_pass_never_mutates_its_input_and_reports_modified():
    model = codesign.load(mlp_proto())
    result = FunctionalPass(_zero_first_weight)(model)
    assert isinstance(result, PassResult) and result.modified
    assert model.sparsity("w0") == 0.0 and result.model.sparsity("w0") == 1.0


def test_codesign_pass_on_plain_modelwrapper_and_protos():
    wrapper = ModelWrapper(codesign.load(mlp_proto()).proto)
    assert FunctionalPass(_zero_first_weight)(wrapper).model.sparsity("w0") == 1.0
    # inside a qonnx flow: ModelWrapper.transform(pass.as_qonnx())
    out = wrapper.transform(FunctionalPass(_zero_first_weight).as_qonnx())
    assert isinstance(out, ModelWrapper) and np.count_nonzero(out.get_initializer("w0")) == 0
    # analysis passes take a ModelProto too
    assert CostAnalysis()(mlp_proto()).info.macs == 16 * 64 + 64 * 32 + 32 * 32 + 32 * 5


def test_qonnx_transformations_run_on_our_model():
    import torch

    from codesign.frontends.torch import from_torch

    torch.manual_seed(0)
    model = from_torch(torch.nn.Sequential(torch.nn.Linear(4, 3)), torch.zeros(1, 4))
    assert [n.op_type for n in model.nodes] == ["Gemm"]
    lowered = model.transform(GemmToMatMul())
    assert [n.op_type for n in lowered.nodes] == ["Transpose", "MatMul", "Add"]  # transB=1 weight transposed
    assert [n.op_type for n in model.nodes] == ["Gemm"]  # the input model is untouched
    renamed = QonnxPass(GiveReadableTensorNames())(model)
    assert renamed.modified


def test_sequential_and_pass_manager_compose():
    model = codesign.load(mlp_proto())
    calls = []

    def count(m: Model) -> bool:
        calls.append(1)
        return len(calls) < 3  # modified twice, then stable

    result = PassManager([count], steps=10, check=True)(model)
    assert result.modified and len(calls) == 3
    seq = Sequential(FunctionalPass(_zero_first_weight), CostAnalysis())
    assert seq(model).model.sparsity("w0") == 1.0


def test_save_roundtrip_loads_in_plain_onnxruntime(tmp_path):
    import onnxruntime as ort

    model = codesign.load(mlp_proto())
    path = model.save(tmp_path / "m.onnx")
    onnx.checker.check_model(str(path))
    x = np.ones((1, 16), dtype=np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ref = ort.InferenceSession(mlp_proto().SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], ref.run(None, {"x": x})[0], rtol=1e-6)
    assert codesign.load(path).shape("y") == (1, 5)


def test_brevitas_module_frontend_matches_brevitas_forward():
    import torch
    from brevitas import nn as qnn
    from brevitas.quant import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint

    from codesign.backends.reference import execute
    from codesign.frontends.torch import from_torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True),
        qnn.QuantLinear(16, 32, bias=False, weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=4),
        qnn.QuantReLU(act_quant=Int8ActPerTensorFixedPoint.let(signed=False), return_quant_tensor=True),
        qnn.QuantLinear(32, 5, bias=False, weight_quant=Int8WeightPerTensorFixedPoint),
    )
    net.eval()
    x = torch.randn(64, 16)
    model = from_torch(net, x[:1])
    quant_nodes = [n for n in model.nodes if n.op_type == "Quant"]
    assert len(quant_nodes) == 4 and all(n.domain == "qonnx.custom_op.general" for n in quant_nodes)
    mm = [layer for layer in cost_report(model).layers if layer.macs]
    assert [layer.weight_dtype for layer in mm] == ["SCALEDINT<4>", "SCALEDINT<8>"]
    with torch.no_grad():
        expect = net(x).numpy()
    np.testing.assert_allclose(execute(model, x.numpy())[model.outputs[0]], expect, atol=1e-5)
