"""codesign's linear-time stand-ins for quadratic qonnx cleanup steps give qonnx's graphs."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.datatype import DataType

from codesign.ir.model import Model


def _shared_params() -> Model:
    """Two Muls and an Add reading one constant (first input), a Quant bit width shared by two Quants."""
    c = numpy_helper.from_array(np.full((4,), 0.5, dtype=np.float32), "c")
    s = numpy_helper.from_array(np.asarray(0.25, dtype=np.float32), "s")
    z = numpy_helper.from_array(np.asarray(0.0, dtype=np.float32), "z")
    b = numpy_helper.from_array(np.asarray(4.0, dtype=np.float32), "b")
    q = dict(domain="qonnx.custom_op.general", signed=1, narrow=0, rounding_mode="ROUND")
    nodes = [
        helper.make_node("Mul", ["c", "x"], ["m1"], name="mul1"),
        helper.make_node("Quant", ["m1", "s", "z", "b"], ["q1"], name="quant1", **q),
        helper.make_node("Mul", ["q1", "c"], ["m2"], name="mul2"),
        helper.make_node("Add", ["c", "m2"], ["a"], name="add"),
        helper.make_node("Quant", ["a", "s", "z", "b"], ["y"], name="quant2", **q),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [c, s, z, b])  # fmt: skip
    model = Model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    model.wrapper.set_tensor_datatype("c", DataType["INT4"])
    return model


def test_unique_parameter_tensors_reads_each_initializer_once_like_qonnx():
    from qonnx.transformation.general import GiveUniqueParameterTensors

    from codesign.passes.tidy import UniqueParameterTensors

    ours, theirs = _shared_params(), _shared_params()
    result = UniqueParameterTensors()(ours)
    assert result.modified
    ours = result.model
    theirs = Model(theirs.wrapper.transform(GiveUniqueParameterTensors(), cleanup=False).model)
    for m in (ours, theirs):
        reads = [i for n in m.graph.node for i in n.input if m.initializer(i) is not None]
        assert len(reads) == len(set(reads)) == 9 and len(m.graph.initializer) == 9
    copies = [n.input[1] for n in ours.graph.node if n.name == "mul2"] + [ours.graph.node[3].input[0]]
    for name in copies:  # each copy holds the value and the datatype of the tensor it copies
        assert np.array_equal(ours.initializer(name), np.full((4,), 0.5)) and ours.dtype(name).name == "INT4"
    assert not UniqueParameterTensors()(ours).modified


def test_commutative_constants_go_last_like_qonnx():
    from qonnx.transformation.general import SortCommutativeInputsInitializerLast

    from codesign.backends.lowering import _initializers_last

    ours, theirs = _shared_params(), _shared_params()
    _initializers_last(ours.graph)
    theirs = theirs.wrapper.transform(SortCommutativeInputsInitializerLast(), cleanup=False).model
    assert [list(n.input) for n in ours.graph.node] == [list(n.input) for n in theirs.graph.node]
    assert list(ours.graph.node[0].input) == ["x", "c"] and list(ours.graph.node[3].input) == ["m2", "c"]


def test_same_shape_initializer_update_is_in_place_and_seen():
    """Model.set_initializer: the in-place path drops the values derived from the old constant."""
    m = _shared_params()
    assert np.array_equal(m.constant("c"), np.full((4,), 0.5))
    m.set_initializer("c", np.full((4,), 1.5, dtype=np.float32))
    assert np.array_equal(m.constant("c"), np.full((4,), 1.5)) and len(m.graph.initializer) == 4
    m.set_initializer("c", np.zeros((2, 2), dtype=np.float32))  # another shape: qonnx's path
    assert m.shape("c") == (2, 2) and np.array_equal(m.constant("c"), np.zeros((2, 2)))
