"""Validation at the door and bounded resources: one-line refusals, linear-time loading.

Each bad file is refused before any expensive work with one line naming node and problem;
through the CLI that is exit 2 and exactly one stderr line.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import codesign
from codesign.errors import ModelLoadError, UnsupportedModelError
from codesign.ir.model import Model
from codesign.passes.cost import cost_report

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "codesign.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def graph_model(nodes, inits=(), in_shape=(1, 4), out_shape=None, opset=13, outputs=True) -> onnx.ModelProto:
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)] if outputs else []
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))], outs, list(inits)
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def huge_constant_of_shape() -> onnx.ModelProto:
    """A 16384 x 16384 float constant (1 GiB) built from a few bytes, added to the input."""
    shape = numpy_helper.from_array(np.array([16384, 16384], dtype=np.int64), "shape")
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["c"], name="big"),
             helper.make_node("Add", ["x", "c"], ["y"], name="add")]  # fmt: skip
    return graph_model(nodes, [shape], in_shape=(1, 16384))


def conv_model(group: int, cin: int = 4) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones((4, max(1, cin // max(group, 1)), 3, 3), dtype=np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", group=group, kernel_shape=[3, 3])
    return graph_model([node], [w], in_shape=(1, cin, 8, 8))


def test_huge_folded_constant_refused_fast_and_small():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(
        UnsupportedModelError, match=r"node 'big' \(ConstantOfShape\) would fold to a constant of 268435456 elements"
    ):
        codesign.load(huge_constant_of_shape())
    assert time.perf_counter() - t0 < 20.0  # a hang guard (ms in practice); speed lives in benchmarks/
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: nothing near 1 GiB allocated


def test_fold_limit_is_settable(monkeypatch):
    """A 4 kB constant folds by default and is refused under a 1 kB limit."""
    shape = numpy_helper.from_array(np.array([1, 512], dtype=np.int64), "shape")
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["c"], name="c512"),
        helper.make_node("Add", ["x", "c"], ["y"]),
    ]
    proto = graph_model(nodes, [shape], in_shape=(1, 512))
    assert "ConstantOfShape" not in [n.op_type for n in codesign.load(proto).nodes]
    monkeypatch.setenv("CODESIGN_MAX_FOLD_BYTES", "1024")
    with pytest.raises(UnsupportedModelError, match="c512.*constant-folding limit"):
        codesign.load(proto)


@pytest.mark.parametrize("group,cin,message", [
    (0, 4, "group=0, must be >= 1"),
    (3, 4, "group=3 does not divide its 4 input channels"),
])  # fmt: skip
def test_conv_group_refused(group, cin, message):
    with pytest.raises(UnsupportedModelError, match=message):
        codesign.load(conv_model(group, cin))


def test_conv_stride_zero_refused():
    w = numpy_helper.from_array(np.ones((4, 4, 3, 3), dtype=np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", strides=[0, 1])
    with pytest.raises(UnsupportedModelError, match=r"node 'conv' \(Conv\): strides=\[0, 1\], each must be >= 1"):
        codesign.load(graph_model([node], [w], in_shape=(1, 4, 8, 8)))


def test_no_graph_output_refused():
    with pytest.raises(UnsupportedModelError, match="graph has no outputs"):
        codesign.load(graph_model([helper.make_node("Relu", ["x"], ["y"])], outputs=False))


def test_unsupported_opset_refused():
    with pytest.raises(UnsupportedModelError, match="opset 99 is not supported"):
        codesign.load(graph_model([helper.make_node("Relu", ["x"], ["y"])], opset=99))


def invalid_utf8_bytes() -> bytes:
    proto = graph_model([helper.make_node("Relu", ["x"], ["y"], name="ZZZZ")])
    return proto.SerializeToString().replace(b"ZZZZ", b"Z\xff\xfeZ")


def test_invalid_utf8_refused():
    with pytest.raises(ModelLoadError, match=r"invalid UTF-8 in string field model\.graph\.node\[0\]\.name"):
        codesign.load(invalid_utf8_bytes())


def external_data_model(tmp_path: Path, offset: int, length: int) -> Path:
    (tmp_path / "w.bin").write_bytes(np.ones(16, dtype=np.float32).tobytes())
    w = onnx.TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 4])
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "w.bin"), ("offset", str(offset)), ("length", str(length))):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    proto = graph_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [w], out_shape=[1, 4])
    path = tmp_path / "m.onnx"
    path.write_bytes(proto.SerializeToString())
    return path


@pytest.mark.parametrize("offset,length,message", [
    (-4, 64, "negative external-data offset -4"),
    (0, -1, "negative external-data length -1"),
    (32, 64, "bytes 32..96 past the end of w.bin \\(64 bytes\\)"),
])  # fmt: skip
def test_external_data_extent_checked(tmp_path, offset, length, message):
    with pytest.raises(ModelLoadError, match=message):
        codesign.load(external_data_model(tmp_path, offset, length))


def test_external_data_in_bounds_loads(tmp_path):
    model = codesign.load(external_data_model(tmp_path, 0, 64))
    np.testing.assert_array_equal(model.initializer("w"), np.ones((4, 4), dtype=np.float32))


def test_cost_on_unknown_intermediate_shape_is_one_line_error():
    """NonZero's output length depends on data: a MatMul after it cannot be costed."""
    nodes = [helper.make_node("NonZero", ["x"], ["nz"]), helper.make_node("Cast", ["nz"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("MatMul", ["f", "w"], ["y"], name="mm")]  # fmt: skip
    w = numpy_helper.from_array(np.ones((7, 3), dtype=np.float32), "w")
    with pytest.raises(UnsupportedModelError, match=r"node 'mm' \(MatMul\): shape of tensor 'f' is unknown"):
        cost_report(Model(graph_model(nodes, [w])))


def test_load_time_linear_in_node_count():
    """5x the nodes may take at most 12x the time (quadratic would be 25x; qonnx's datatype inference was worse)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from load_scaling import time_load_and_cost

    time_load_and_cost(200)  # warm imports
    small = sum(time_load_and_cost(500)[:2])
    large = sum(time_load_and_cost(2500)[:2])
    assert large < 12 * small + 1.0, (small, large)


CLI_CASES = {
    "bits_1e30": lambda: __import__("test_frontdoor_quant").quant_proto(bits=1e30).SerializeToString(),
    "group_0": lambda: conv_model(0).SerializeToString(),
    "huge_constant": lambda: huge_constant_of_shape().SerializeToString(),
    "invalid_utf8": invalid_utf8_bytes,
    "no_outputs": lambda: graph_model([helper.make_node("Relu", ["x"], ["y"])], outputs=False).SerializeToString(),
}
CLI_NEEDLES = {"bits_1e30": "bit width 1e+30", "group_0": "group=0", "huge_constant": "constant-folding limit",
               "invalid_utf8": "invalid UTF-8", "no_outputs": "no outputs"}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_inspect_refuses_in_one_line(tmp_path, case):
    path = tmp_path / "bad.onnx"
    path.write_bytes(CLI_CASES[case]())
    proc = run_cli("inspect", str(path))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("codesign: error: "), proc.stderr
    assert CLI_NEEDLES[case] in proc.stderr and "Traceback" not in proc.stderr
