"""Small models built in the tests themselves (no ../shared needed)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def mlp_proto(sizes=(16, 64, 32, 32, 5), seed: int = 0, names: dict[str, str] | None = None) -> onnx.ModelProto:
    """A float MatMul+Add+Relu MLP as a plain ONNX ModelProto (opset 13)."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    x = "x"
    for k, (a, b) in enumerate(itertools.pairwise(sizes)):
        w = numpy_helper.from_array((rng.normal(size=(a, b)) / np.sqrt(a)).astype(np.float32), f"w{k}")
        bias = numpy_helper.from_array((rng.normal(size=(b,)) * 0.1).astype(np.float32), f"b{k}")
        inits += [w, bias]
        nodes.append(helper.make_node("MatMul", [x, f"w{k}"], [f"mm{k}"], name=f"dense{k}"))
        nodes.append(helper.make_node("Add", [f"mm{k}", f"b{k}"], [f"z{k}"], name=f"bias{k}"))
        x = f"z{k}"
        if k < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [x], [f"a{k}"], name=f"relu{k}"))
            x = f"a{k}"
    nodes.append(helper.make_node("Identity", [x], ["y"], name="out"))
    for node in nodes:
        if names and node.name in names:
            node.name = names[node.name]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", sizes[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", sizes[-1]])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def load_example_builder():
    """examples/make_jet_tagger.py as a fresh module (its Brevitas 16-64-32-32-5 MLP builder).

    Fresh per call, so a test may change its module-level bit widths without affecting others.
    """
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / "make_jet_tagger.py"
    spec = importlib.util.spec_from_file_location("make_jet_tagger", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def export_brevitas_mlp(out, seed: int = 1, weight_bits: tuple[int, ...] | None = None):
    """Export the example's Brevitas MLP as QONNX to ``out`` (optionally with other per-layer weight bits)."""
    builder = load_example_builder()
    if weight_bits is not None:
        builder.WEIGHT_BITS = tuple(weight_bits)
    return builder.export(out, seed=seed)


def toy_npz(tmp_path: Path, n: int) -> Path:
    """A seeded 5-feature, 2-class .npz (arrays ``x`` and ``label``) for small search runs."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    y = ((x[:, 0] + x[:, 1] * x[:, 2]) > 0.3).astype(np.int64)
    path = tmp_path / "toy.npz"
    np.savez(path, x=x, label=y)
    return path
