"""Classes of failure the full fuzz run found (docs/fuzzing.md), each on a tiny graph built here.

- compile of a model whose declared input is 2**40 wide hit MemoryError in qonnx's executor
  (it allocates every tensor of the graph at once): now one line naming the largest tensor;
- onnxruntime's coloured ERROR log reached stderr before our one-line error (multiline);
- qonnx's tensor renaming (hls4ml/FINN lowering) was quadratic: a 2,000-node chain took minutes;
- float-model type selection ran 1,000 synthetic samples whatever their size (minutes, GiBs);
- a byte flip in a BIPOLAR-annotated weight (FINN's build_dataflow model) stopped qonnx's executor
  with a multi-line "Rounding error is too high" (internal error): now refused at load, naming it;
- onnxruntime rejecting a graph (Relu on int64 indices at opset 11) or failing on it was an internal
  error: the reference's sessions refuse it in one line naming onnxruntime's reason.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.general import GiveReadableTensorNames

import codesign
from codesign.backends.lowering import CIdentifierNames, ReadableTensorNames, refuse_oversized
from codesign.errors import UnsupportedModelError
from codesign.ir.model import Model
from codesign.passes.base import QonnxPass
from codesign.passes.precision import MIN_SYNTHETIC, synthetic_count

ROOT = Path(__file__).resolve().parent.parent


def _model(nodes, inits=(), in_shape=(1, 4), out_shape=(1, 4), opset=13) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None if out_shape is None else list(out_shape))],
                              list(inits))  # fmt: skip
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _const(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


# ------------------------------------------------------------------ activations over the limit
def test_compile_refuses_a_2_to_the_40_wide_input_in_one_line(tmp_path):
    """fuzz: `input dim 3=2**40` on bsd300x3 float_model -> MemoryError (1.5 PiB) while lowering for hls4ml."""
    wide = _model([helper.make_node("Relu", ["x"], ["y"], name="relu")], in_shape=(1, 2**40), out_shape=(1, 2**40))
    out = tmp_path / "out"
    with pytest.raises(UnsupportedModelError) as exc:
        codesign.compile(wide, "vu13p", "hls4ml", output=out)
    msg = str(exc.value)
    assert "\n" not in msg and "activations of one sample take 8,192.0 GiB" in msg, msg
    assert "of shape (1, 1099511627776)" in msg and "CODESIGN_MAX_ACTIVATION_BYTES" in msg, msg
    assert not out.exists()


def test_activation_limit_is_settable_and_names_the_largest_tensor(monkeypatch):
    w = _const("w", np.ones((4, 64)))
    m = codesign.load(_model([helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
                              helper.make_node("Relu", ["h"], ["y"], name="relu")], [w], out_shape=[1, 64]))  # fmt: skip
    refuse_oversized(m, "hls4ml")  # 4 + 64 + 64 values: far below the default
    monkeypatch.setenv("CODESIGN_MAX_ACTIVATION_BYTES", "256")
    with pytest.raises(
        UnsupportedModelError, match=r"largest: '(h|y)' of shape \(1, 64\)\), over the 2\.38419e-07 GiB"
    ):
        refuse_oversized(m, "hls4ml")


# ------------------------------------------------------------------ third-party logs
def test_onnxruntime_errors_arrive_as_one_exception_not_a_log(tmp_path):
    """fuzz: light_squeezenet compile printed onnxruntime's coloured [E:onnxruntime:...] lines before ours."""
    shape = helper.make_node("Cast", ["flat"], ["s"], name="cast", to=TensorProto.INT64)
    nodes = [helper.make_node("Reshape", ["x", "minus1"], ["flat"], name="flatten"), shape,
             helper.make_node("Reshape", ["x", "s"], ["y"], name="bad_reshape")]  # fmt: skip
    minus1 = numpy_helper.from_array(np.array([-1], dtype=np.int64), "minus1")
    path = tmp_path / "m.onnx"
    onnx.save(_model(nodes, [minus1], in_shape=(1, 1), out_shape=None), str(path))
    code = (
        "import numpy as np, onnx, codesign.frontends.onnx_file as f\n"
        "from qonnx.core.modelwrapper import ModelWrapper\n"
        "from codesign.ir.model import Model\nfrom codesign.backends.reference import execute\n"
        "f._quiet_third_party_logs()\n"
        f"m = Model(ModelWrapper(onnx.load({str(path)!r})))\n"
        "try:\n    execute(m, np.full((1, 1), 3.0, np.float32))\nexcept Exception as e:\n    print('raised', type(e).__name__)\n"
    )  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert "raised OnnxruntimeError" in r.stdout, r.stdout + r.stderr  # a CodesignError: one line, exit 2
    assert "onnxruntime" not in r.stderr, r.stderr


def test_a_graph_onnxruntime_rejects_is_refused_in_one_line(tmp_path):
    """fuzz: `chain 2000` on FINN's build_dataflow model put Relu (opset 11: float only) on TopK's int64 indices;
    onnxruntime's InvalidGraph while building the reference session was an internal error."""
    k = numpy_helper.from_array(np.array([2], dtype=np.int64), "k")
    nodes = [helper.make_node("TopK", ["x", "k"], ["v", "i"], name="topk"),
             helper.make_node("Relu", ["i"], ["y"], name="relu_on_indices")]  # fmt: skip
    m = _model(nodes, [k], out_shape=(1, 2), opset=11)
    m.graph.output[0].type.tensor_type.elem_type = TensorProto.INT64
    with pytest.raises(UnsupportedModelError) as exc:
        codesign.compile(m, "vu13p", "finn", output=tmp_path / "out")
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("onnxruntime cannot load the model: [ONNXRuntimeError]"), msg
    assert "node (relu_on_indices)" in msg, msg
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ linear tensor renaming
def _branchy() -> onnx.ModelProto:
    """Two branches listed out of qonnx's sort order, an initializer-first Add, a shared input."""
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["a"], name="mm1"),
        helper.make_node("MatMul", ["x", "w2"], ["b"], name="mm2"),
        helper.make_node("Relu", ["b"], ["rb"], name="relu_b"),
        helper.make_node("Add", ["bias", "a"], ["ab"], name="add_bias"),
        helper.make_node("Mul", ["ab", "rb"], ["y"], name="mul"),
    ]  # fmt: skip
    inits = [_const("w1", np.ones((4, 3))), _const("w2", np.ones((4, 3))), _const("bias", np.ones(3))]
    return _model(nodes, inits, out_shape=[1, 3])


@pytest.mark.parametrize("build", ["branchy", "mlp"])
def test_readable_tensor_names_are_qonnx_s(build):
    from helpers import mlp_proto

    m = codesign.load(_branchy() if build == "branchy" else mlp_proto())
    m = CIdentifierNames()(m).model
    ours = ReadableTensorNames()(m).model
    theirs = QonnxPass(GiveReadableTensorNames())(m).model
    assert ours.proto.graph == theirs.proto.graph
    add = next(n for n in ours.graph.node if n.op_type == "Add")
    assert list(add.input)[1].endswith("_param0")  # qonnx's initializer-last order, then named


def test_readable_tensor_names_take_linear_time():
    """fuzz: `chain 2000` compiles timed out in qonnx's rename_tensor (a scan of the graph per tensor)."""
    n = 3000
    nodes = [helper.make_node("Relu" if k % 2 else "Identity", ["x" if k == 0 else f"t{k - 1}"],
                              ["y" if k == n - 1 else f"t{k}"], name=f"n{k}") for k in range(n)]  # fmt: skip
    m = Model(ModelWrapper(_model(nodes, out_shape=[1, 4])))
    t0 = time.perf_counter()
    out = ReadableTensorNames()(m).model
    assert time.perf_counter() - t0 < 5.0  # qonnx: ~1 min here
    assert out.graph.node[0].input[0] == "global_in" and out.graph.node[-1].output[0] == "global_out"
    assert out.graph.node[1].input[0] == "n0_out0"


# ------------------------------------------------------------------ bounded synthetic calibration
def test_synthetic_samples_shrink_with_the_activation_size():
    """fuzz: residual_block_clean (1x1x200x200, float) spent minutes on 1,000 synthetic samples per evaluation."""
    w = _const("w", np.ones((14, 1, 8, 8)))
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[8, 8], strides=[4, 4])
    big = codesign.load(_model([conv], [w], in_shape=(1, 1, 200, 200), out_shape=(1, 14, 49, 49)))
    per = 200 * 200 + 14 * 49 * 49
    assert synthetic_count(big, 1000) == 32_000_000 // per  # 426, not 1,000
    small = codesign.load(_model([helper.make_node("Relu", ["x"], ["y"], name="r")]))
    assert synthetic_count(small, 1000) == 1000
    huge = codesign.load(
        _model(
            [helper.make_node("Relu", ["x"], ["y"], name="r")],
            in_shape=(1, 3, 2048, 2048),
            out_shape=(1, 3, 2048, 2048),
        )
    )
    assert synthetic_count(huge, 1000) == MIN_SYNTHETIC


def test_output_mse_scales_are_the_per_column_search_s():
    """The vectorised per-column power-of-two search (fuzz: dense_big_keras type selection) picks what the loop did."""
    from codesign.passes.quantize import QuantConfig, _int_max, _int_min, _output_mse_pow2, _pow2_ceil

    def per_column(w, bits, x):  # the former loop: min((error, scale)) over 4 candidates, per column
        lo, hi, out = _int_min(bits, True, False), _int_max(bits, True, False), []
        for c in range(w.shape[1]):
            col = w[:, [c]]
            start = float(_pow2_ceil(np.asarray((float(np.abs(col).max()) or 1.0) / hi)))
            errs = [(float(np.sum((x @ (np.clip(np.round(col / s), lo, hi) * s - col)) ** 2)), s)
                    for s in (start / 2**k for k in range(4))]  # fmt: skip
            out.append(min(errs)[1])
        return np.array(out)

    rng = np.random.default_rng(0)
    for trial in range(20):
        k, c = rng.integers(1, 40, size=2)
        w = rng.normal(size=(k, c)) * 10.0 ** rng.integers(-3, 2)
        w[:, 0] = 0 if trial % 4 == 0 else w[:, 0]
        x = rng.normal(size=(50, k)).astype(np.float32).astype(np.float64)
        for bits in (2, 5, 8):
            np.testing.assert_array_equal(
                _output_mse_pow2(w, bits, QuantConfig(bits=bits), 1, x), per_column(w, bits, x)
            )


# ------------------------------------------------------------------ values off their datatype annotation
def _bipolar_mlp(w: np.ndarray) -> onnx.ModelProto:
    """x -> MatMul(w annotated BIPOLAR) -> y, as FINN's build_dataflow example annotates its weights."""
    m = _model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [_const("w", w)])
    ModelWrapper(m).set_tensor_datatype("w", DataType["BIPOLAR"])
    return m


def test_weight_off_its_annotation_is_refused_at_load_naming_it(tmp_path):
    """fuzz: `flip@0.732802` on Xilinx+finn build_dataflow/model.onnx -> internal error in qonnx's executor."""
    w = np.where(np.arange(16).reshape(4, 4) % 3, 1.0, -1.0)
    assert codesign.load(_bipolar_mlp(w)).dtype("w").name == "BIPOLAR"
    w[2, 1] = -1.72656
    with pytest.raises(UnsupportedModelError) as exc:
        codesign.load(_bipolar_mlp(w))
    assert str(exc.value) == "initializer 'w' is annotated BIPOLAR but holds -1.72656 (1 of 16 values are not BIPOLAR)"
    w[2, 1] = 3.0  # on the integer grid, out of range: qonnx would execute it as 3, a backend as a bipolar weight
    with pytest.raises(UnsupportedModelError, match=r"holds 3 \(1 of 16 values"):
        codesign.compile(_bipolar_mlp(w), "vu13p", "finn", output=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_computed_tensor_off_its_annotation_is_one_line():
    """A tensor whose annotation the executor's sanitising rejects ends in one line naming it, not qonnx's three."""
    from codesign.backends.segments import SegmentedExecutor

    m = _model([helper.make_node("Relu", ["x"], ["y"], name="relu")])
    ModelWrapper(m).set_tensor_datatype("y", DataType["INT2"])
    run = SegmentedExecutor(Model(m)).run
    np.testing.assert_array_equal(run({"x": np.array([[1, 0, -1, 1]], np.float32)})["y"], [[1, 0, 0, 1]])
    with pytest.raises(UnsupportedModelError) as exc:
        run({"x": np.array([[0.5, 0, 0, 0]], np.float32)})
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("reference execution: tensor 'y' (INT2) holds values off its"), msg


def test_an_activation_after_a_softmax_keeps_the_probabilities_grid():
    """Relus appended after a Softmax (fuzz seed 8, chain 500) were typed from hls4ml's default fixed<16,6>, which
    cut the probabilities to 10 fractional bits (C-sim top-1 96.6%); they now follow the Softmax's fixed<18,2>."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from codesign.backends.hls4ml_backend import lower_model
    from codesign.backends.precision import PROBABILITY, derive
    from codesign.frontends import load

    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["s"], name="dense"),
             helper.make_node("Softmax", ["s"], ["p"], name="softmax", axis=-1),
             helper.make_node("Relu", ["p"], ["y"], name="relu")]  # fmt: skip
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], [w])  # fmt: skip
    lowered = lower_model(load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])))
    softmax = next(iter(lowered.nodes_of(["Softmax"])))
    types = derive(lowered).tensors  # (lowering renames tensors)
    assert types[softmax.output[0]] == PROBABILITY and types[lowered.outputs[0]].frac >= PROBABILITY.frac


def test_a_floatquant_missing_an_informative_attribute_gets_its_default():
    """A byte flip renamed FloatQuant's ``has_subnormal`` (fuzz inspect seed 12): qonnx's required-attribute check
    was an internal error; the attributes only inform backends, so the missing ones get qonnx's defaults."""
    from pathlib import Path

    import onnx
    import pytest
    from conftest import all_shared_models

    from codesign.frontends import load

    path = next((p for p in all_shared_models() if p.name == "qonnx_act_weight_fp8.onnx"), None)
    if path is None:
        pytest.skip("../shared's qonnx_act_weight_fp8.onnx is absent")
    proto = onnx.load(str(Path(path)))
    for node in proto.graph.node:
        if node.op_type == "FloatQuant":
            kept = [a for a in node.attribute if a.name != "has_subnormal"]
            node.ClearField("attribute")
            node.attribute.extend(kept)
    model = load(proto)
    fq = next(n for n in model.nodes if n.op_type == "FloatQuant")
    assert {a.name for a in fq.attribute} >= {"has_subnormal", "has_inf", "has_nan", "saturation"}
    from codesign.passes.cost import cost_report

    assert cost_report(model).layers is not None
