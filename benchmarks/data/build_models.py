"""Rebuild the models of ``hls4ml_synth.csv`` as QONNX graphs, through codesign's own frontend.

The wa-hls4ml 3-layer runs synthesise Dense stacks whose weights are ``ap_fixed<prec>`` and
whose activations keep hls4ml's default ``ap_fixed<16,6>``: so each row becomes
``x (float) -> [MatMul(Quant(W, prec)) -> Relu]* -> MatMul(Quant(W, prec))``, which the
estimator costs at prec-bit weights and 16-bit data. Weights are seeded random numbers:
with a reuse factor > 1 hls4ml shares multipliers, so the weight values do not change the
design.

    from build_models import load_row; model = load_row(row)
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


if __name__ == "__main__":
    rows = read_rows()
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    for row in rows:
        m = load_row(row)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            onnx.save(m.proto, out / f"{row['widths']}_{row['w_bits']}b.onnx")
    print(f"{len(rows)} rows, {len(_CACHE)} distinct models rebuilt")
