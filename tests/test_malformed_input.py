"""Bad input gets one line naming the problem and exit 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import mlp_proto
from onnx import TensorProto, helper

import codesign
from codesign.errors import ModelLoadError, UnsupportedModelError


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "codesign.cli", *args], capture_output=True, text=True)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("codesign: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def test_missing_file():
    assert_one_line_error(run_cli("inspect", "/nonexistent/model.onnx"), "no such file")


def test_empty_file(tmp_path: Path):
    (tmp_path / "e.onnx").write_bytes(b"")
    assert_one_line_error(run_cli("inspect", str(tmp_path / "e.onnx")), "empty file")


def test_truncated_protobuf(tmp_path: Path):
    data = mlp_proto().SerializeToString()
    (tmp_path / "t.onnx").write_bytes(data[: len(data) // 2])
    assert_one_line_error(run_cli("inspect", str(tmp_path / "t.onnx")), "t.onnx")


def test_random_bytes(tmp_path: Path):
    (tmp_path / "r.onnx").write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert_one_line_error(run_cli("inspect", str(tmp_path / "r.onnx")), "r.onnx")


def test_text_file_is_not_onnx(tmp_path: Path):
    (tmp_path / "m.onnx").write_text("hello, I am not a model\n")
    assert_one_line_error(run_cli("inspect", str(tmp_path / "m.onnx")), "m.onnx")


def test_directory_is_not_a_file(tmp_path: Path):
    assert_one_line_error(run_cli("inspect", str(tmp_path)), "not a file")


def test_external_data_path_traversal_is_refused(tmp_path: Path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.zeros(16 * 64, dtype=np.float32).tobytes())
    folder = tmp_path / "models"
    folder.mkdir()
    proto = mlp_proto()
    w0 = next(t for t in proto.graph.initializer if t.name == "w0")
    w0.ClearField("raw_data")
    w0.ClearField("float_data")
    w0.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", str(16 * 64 * 4))):
        entry = w0.external_data.add()
        entry.key, entry.value = key, value
    path = folder / "evil.onnx"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(ModelLoadError, match="outside the model's folder"):
        codesign.load(path)
    assert_one_line_error(run_cli("inspect", str(path)), "outside the model's folder")
    w0.external_data[0].value = str(secret)  # absolute path
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(ModelLoadError, match="outside the model's folder"):
        codesign.load(path)


def test_external_data_inside_folder_is_loaded(tmp_path: Path):
    proto = mlp_proto()
    onnx.save_model(proto, str(tmp_path / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.data", size_threshold=0)  # fmt: skip
    model = codesign.load(tmp_path / "m.onnx")
    np.testing.assert_array_equal(model.initializer("w0"), onnx.numpy_helper.to_array(mlp_proto().graph.initializer[0]))


def test_size_limit_checked_before_parsing(tmp_path: Path, monkeypatch):
    path = tmp_path / "m.onnx"
    path.write_bytes(mlp_proto().SerializeToString())
    monkeypatch.setenv("CODESIGN_MAX_MODEL_BYTES", "100")
    with pytest.raises(ModelLoadError, match="exceeds the 100-byte model size limit"):
        codesign.load(path)


def test_injection_style_names_are_sanitised(tmp_path: Path):
    evil = 'x"; system("rm -rf ~'
    proto = mlp_proto(names={"dense0": evil, "relu0": "relu0 `whoami`"})
    proto.graph.node[0].output[0] = "mm0;$(reboot)"
    proto.graph.node[1].input[0] = "mm0;$(reboot)"
    model = codesign.load(proto)
    names = [n.name for n in model.nodes]
    tensors = {t for n in model.nodes for t in list(n.input) + list(n.output)}
    for text in names + sorted(tensors):
        for bad in '"; ()`$~ ':
            assert bad not in text, text
    assert "dense1" in names  # safe names are kept as the user wrote them
    from codesign.ir.names import c_identifier

    assert c_identifier(evil) == "x___system__rm__rf__"


def test_unsupported_ops_all_listed_with_node_names():
    proto = mlp_proto()
    proto.graph.node[2].op_type = "FancyAct"
    proto.graph.node[2].domain = "com.example"
    proto.graph.node[5].op_type = "FancyAct"
    proto.graph.node[5].domain = "com.example"
    proto.graph.node[3].op_type = "NotAnOnnxOp"
    proto.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(UnsupportedModelError) as err:
        codesign.load(proto)
    msg = str(err.value)
    assert "com.example.FancyAct (node 'relu0', 'relu1')" in msg and "NotAnOnnxOp (node 'dense1')" in msg
    assert "\n" not in msg


def test_unresolvable_dynamic_shape_is_refused_and_resolvable_with_input_shape(tmp_path: Path):
    proto = mlp_proto()
    proto.graph.input[0].type.tensor_type.shape.dim[1].Clear()
    proto.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "features"
    path = tmp_path / "dyn.onnx"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(UnsupportedModelError, match="dynamic input shape"):
        codesign.load(path)
    assert_one_line_error(run_cli("inspect", str(path)), "dynamic input shape", "x [1, 'features']")
    proc = run_cli("inspect", str(path), "--input-shape", "x=1,16", "--json")
    assert proc.returncode == 0, proc.stderr


def test_wrong_input_shape_name_and_bad_options(tmp_path: Path):
    path = tmp_path / "m.onnx"
    path.write_bytes(mlp_proto().SerializeToString())
    assert_one_line_error(run_cli("inspect", str(path), "--input-shape", "nope=1,16"), "not a model input")
    assert_one_line_error(run_cli("inspect", str(path), "--input-shape", "garbage"), "NAME=D0,D1")
    assert_one_line_error(run_cli("inspect", str(path), "--bops", "magic"), "--bops")
    assert_one_line_error(run_cli("inspect", str(path), "--graph", str(tmp_path / "g.png")), ".svg or .dot")
    assert_one_line_error(run_cli("inspect", str(path), "--graph", str(tmp_path / "nodir" / "g.svg")), "does not exist")


def test_wrong_input_shape_at_execution():
    from codesign.backends.reference import execute
    from codesign.errors import CodesignError

    model = codesign.load(mlp_proto())
    with pytest.raises(CodesignError, match=r"model expects \(N, 16\)"):
        execute(model, np.zeros((2, 15), dtype=np.float32))
