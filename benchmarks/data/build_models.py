"""Rebuild the models of ``hls4ml_synth.csv`` and ``hls4ml_baselines.csv`` as QONNX graphs, through codesign's frontend.

The wa-hls4ml 3-layer runs synthesise Dense stacks whose weights are ``ap_fixed<prec>`` and
whose activations keep hls4ml's default ``ap_fixed<16,6>``: so each row becomes
``x (float) -> [MatMul(Quant(W, prec)) -> Relu]* -> MatMul(Quant(W, prec))``, which the
estimator costs at prec-bit weights and 16-bit data. Weights are seeded random numbers:
with a reuse factor > 1 hls4ml shares multipliers, so the weight values do not change the
design.

    from build_models import load_row; model = load_row(row)

hls4ml's repository baselines (``hls4ml_baselines.csv``) are its keras API test models
(``test/pytest/test_keras_api.py``), rebuilt as the ONNX graphs hls4ml would see: float
tensors (hls4ml's default ``ap_fixed<16,6>``; the depthwise 2D test's ``fixed<32,12>``
default becomes 32-bit Quant nodes), seeded weights drawn like keras' initialisers (with
reuse factor 1 the weight values matter: zero and +-2^k weights cost nothing).
"""

from __future__ import annotations

import csv
import sys
import zlib
from itertools import pairwise
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from estimator_synth_gen import _quant, dense_model

CSV = Path(__file__).resolve().parent / "hls4ml_synth.csv"
BASELINES_CSV = Path(__file__).resolve().parent / "hls4ml_baselines.csv"
#: Baselines of a third tool version (Vitis HLS 2023.1), same models: never fitted, the held-out check.
HOLDOUT_CSV = Path(__file__).resolve().parent / "hls4ml_baselines_holdout.csv"


def read_rows(path: Path = CSV) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def build_dense_stack(widths: list[int], w_bits: int, seed: int = 0) -> onnx.ModelProto:
    """Float input -> Dense(+ReLU) stack with ``w_bits``-bit Quant weights (hls4ml's default data type elsewhere)."""
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    cur = "x"
    n_layers = len(widths) - 1
    for li, (n_in, n_out) in enumerate(pairwise(widths)):
        inits.append(numpy_helper.from_array(rng.uniform(-1, 1, (n_in, n_out)).astype(np.float32), f"w{li}"))
        nodes.append(_quant(f"qw{li}", f"w{li}", 2.0 ** -(w_bits - 1), w_bits, 1, inits))
        nodes.append(helper.make_node("MatMul", [cur, f"qw{li}_out"], [f"mm{li}"], name=f"dense{li}"))
        cur = f"mm{li}"
        if li < n_layers - 1:
            nodes.append(helper.make_node("Relu", [cur], [f"relu{li}"], name=f"relu{li}"))
            cur = f"relu{li}"
    return dense_model(nodes, inits, cur, "dense_stack", widths[0], widths[-1])


def widths_of(row: dict[str, str]) -> list[int]:
    return [int(x) for x in row["widths"].split("-")]


def load_row(row: dict[str, str]):
    """The row's model as a normalised codesign IR (cached per architecture and precision)."""
    key = (row["widths"], row["w_bits"])
    hit = _CACHE.get(key)
    if hit is None:
        from codesign.frontends import load

        seed = zlib.crc32(f"{key}".encode())
        hit = _CACHE[key] = load(build_dense_stack(widths_of(row), int(row["w_bits"]), seed))
    return hit


_CACHE: dict[tuple[str, str], object] = {}

#: keras activations of hls4ml's test models -> ONNX (op, attributes): the test's LeakyReLU(alpha=1.0), PReLU's slope
#: initialised to zeros (test/pytest/test_keras_api.py, test_activations).
ACTIVATIONS = {"relu": ("Relu", {}), "leaky_relu": ("LeakyRelu", {"alpha": 1.0}), "elu": ("Elu", {"alpha": 1.0}),
               "sigmoid": ("Sigmoid", {}), "prelu": ("PRelu", {})}  # fmt: skip


def _onnx_model(nodes: list, inits: list, in_shape: list[int], out: str, out_shape: list[int]) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "baseline", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, out_shape)], initializer=inits)  # fmt: skip
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("qonnx.custom_op.general", 1)]
    )
    model.ir_version = 8
    return model


def build_baseline(key: str, seed: int = 0) -> onnx.ModelProto:
    """One of hls4ml's keras API test models (``model`` column of ``hls4ml_baselines.csv``) as an ONNX graph."""
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    if key.startswith("dense1x"):  # Dense(1 -> n) + activation
        n, act = int(key[7:].split("_")[0]), key.split("_", 1)[1]
        w = rng.uniform(1, 10, (1, n)) if n == 2 else rng.uniform(-(3**0.5), 3**0.5, (1, n))  # U(1,10) / lecun_uniform
        inits.append(numpy_helper.from_array(w.astype(np.float32), "w"))
        nodes.append(helper.make_node("MatMul", ["x", "w"], ["h"], name="dense"))
        op, attrs = ACTIVATIONS[act]
        inputs = ["h"]
        if op == "PRelu":
            inits.append(numpy_helper.from_array(np.zeros(n, np.float32), "slope"))
            inputs.append("slope")
        nodes.append(helper.make_node(op, inputs, ["y"], name=act, **attrs))
        return _onnx_model(nodes, inits, [1, 1], "y", [1, n])
    if key.startswith("dwconv"):  # DepthwiseConv{1,2}D(k=3), valid, zero bias (glorot_uniform weights)
        two_d = key.startswith("dwconv2d")
        spatial = [32, 32] if two_d else [32]
        w = rng.uniform(-0.8, 0.8, [3, 1] + [3] * len(spatial)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, "w"))
        x, wq = "x", "w"
        if two_d:  # the test's default precision fixed<32,12>: 32-bit data and weights, 20 fractional bits
            nodes += [_quant("qx", "x", 2.0**-20, 32, 1, inits), _quant("qw", "w", 2.0**-20, 32, 1, inits)]
            x, wq = "qx_out", "qw_out"
        nodes.append(helper.make_node("Conv", [x, wq], ["y"], name="dwconv", group=3, kernel_shape=[3] * len(spatial)))
        return _onnx_model(nodes, inits, [1, 3, *spatial], "y", [1, 3, *[s - 2 for s in spatial]])
    if key.startswith("conv2d_28x28x3"):  # Conv2D(32, 4x4, stride 4), 'same' = no padding on 28x28
        w = rng.normal(0, 0.05, (32, 3, 4, 4)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, "w"))
        nodes.append(helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[4, 4], strides=[4, 4]))
        return _onnx_model(nodes, inits, [1, 3, 28, 28], "y", [1, 32, 7, 7])
    if "pool" in key:  # (Max|Average)Pooling(1D: 2 on (121,3); 2D: (4,2) on (18,15,3)), strides = pool size
        op = "MaxPool" if key.startswith("max") else "AveragePool"
        same = key.endswith("_same")
        if "pool1d" in key:
            in_sp, k, pads, out_sp = [121], [2], ([0, 1] if same else [0, 0]), ([61] if same else [60])
        else:  # keras 'same': pad along height 2 (1 + 1), width 1 (0 + 1)
            in_sp, k, pads, out_sp = (
                [18, 15],
                [4, 2],
                ([1, 0, 1, 1] if same else [0, 0, 0, 0]),
                ([5, 8] if same else [4, 7]),
            )
        nodes.append(helper.make_node(op, ["x"], ["y"], name="pool", kernel_shape=k, strides=k, pads=pads))
        return _onnx_model(nodes, inits, [1, 3, *in_sp], "y", [1, 3, *out_sp])
    raise KeyError(f"unknown hls4ml baseline model {key!r}")


def load_baseline(row: dict[str, str]):
    """A baseline row's model as a normalised codesign IR (cached per model)."""
    key = ("baseline", row["model"])
    hit = _CACHE.get(key)
    if hit is None:
        from codesign.frontends import load

        hit = _CACHE[key] = load(build_baseline(row["model"], zlib.crc32(row["model"].encode())))
    return hit


if __name__ == "__main__":
    rows = read_rows()
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    for row in rows:
        m = load_row(row)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            onnx.save(m.proto, out / f"{row['widths']}_{row['w_bits']}b.onnx")
    print(f"{len(rows)} rows, {len(_CACHE)} distinct models rebuilt")
