"""Generate the estimator ground truth: a spread of quantized MLPs, synthesised with yosys.

Each MLP (widths 8-128, 2-6 layers, 2-8 bit weights, 0-80% sparsity, 3-8 bit
activations) is built as a QONNX graph, traced to RTL by alkaid (da4ml's successor; multiplier-free
distributed-arithmetic design), and synthesised with
``yosys synth_xilinx -family xcup -flatten; stat``. The LUT/FF/CARRY counts go to
``benchmarks/data/estimator_synth.csv`` so that ``estimator_accuracy.py`` re-runs in
seconds. Takes minutes per model; not part of CI.

    .venv/bin/python benchmarks/estimator_synth_gen.py [--only NAME] [--jobs 1]

Needs ``apt-get install yosys iverilog`` and ``pip install alkaid``. The specs are
deterministic (seeded), so the accuracy benchmark rebuilds the same models.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CSV = ROOT / "benchmarks" / "data" / "estimator_synth.csv"
LATENCY_CUTOFF = 5.0
#: alkaid-estimated LUT cap per model, so that synthesis stays within minutes.
MAX_LUT = 40_000
N_MODELS = 18
FIELDS = [
    "name", "widths", "w_bits", "a_bits", "sparsity", "seed", "yosys_lut", "yosys_ff", "yosys_carry",
    "yosys_lut_by_size", "alkaid_full_lut", "alkaid_full_ff", "stages", "synth_s",
    "cost_add", "cost_relu", "cost_cadd", "cost_mux", "cost_other", "sim_latency",
]  # fmt: skip
CLASS_FIELDS = {f"cost_{k}": k for k in ("add", "relu", "cadd", "mux", "other")}


@dataclass(frozen=True)
class MlpSpec:
    name: str
    widths: tuple[int, ...]
    w_bits: int
    a_bits: int
    sparsity: float
    seed: int


def _quant(name: str, x: str, scale: float, bits: int, signed: int, inits: list) -> onnx.NodeProto:
    inits += [
        numpy_helper.from_array(np.array(scale, dtype=np.float32), f"{name}_s"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), f"{name}_z"),
        numpy_helper.from_array(np.array(float(bits), dtype=np.float32), f"{name}_b"),
    ]
    return helper.make_node(
        "Quant", [x, f"{name}_s", f"{name}_z", f"{name}_b"], [f"{name}_out"], name=name,
        domain="qonnx.custom_op.general", signed=signed, narrow=0, rounding_mode="ROUND",
    )  # fmt: skip


def build_mlp(spec: MlpSpec) -> onnx.ModelProto:
    """A QONNX MLP: Quant(input) -> [MatMul(Quant(W)) -> Relu -> Quant]* -> MatMul(Quant(W))."""
    rng = np.random.default_rng(spec.seed)
    nodes, inits = [], []
    a_scale = 2.0 ** -(spec.a_bits - 3)  # activations in [-4, 4) / [0, 8)
    nodes.append(_quant("q_in", "x", a_scale, spec.a_bits, 1, inits))
    cur = "q_in_out"
    n_layers = len(spec.widths) - 1
    for li in range(n_layers):
        n_in, n_out = spec.widths[li], spec.widths[li + 1]
        w = rng.uniform(-1, 1, (n_in, n_out)).astype(np.float32)
        if spec.sparsity > 0:
            cut = np.quantile(np.abs(w), spec.sparsity)
            w[np.abs(w) < cut] = 0.0
        inits.append(numpy_helper.from_array(w, f"w{li}"))
        nodes.append(_quant(f"qw{li}", f"w{li}", 2.0 ** -(spec.w_bits - 1), spec.w_bits, 1, inits))
        nodes.append(helper.make_node("MatMul", [cur, f"qw{li}_out"], [f"mm{li}"], name=f"dense{li}"))
        cur = f"mm{li}"
        if li < n_layers - 1:
            nodes.append(helper.make_node("Relu", [cur], [f"relu{li}"], name=f"relu{li}"))
            nodes.append(_quant(f"qa{li}", f"relu{li}", a_scale, spec.a_bits, 0, inits))
            cur = f"qa{li}_out"
    return dense_model(nodes, inits, cur, spec.name, spec.widths[0], spec.widths[-1])


def dense_model(
    nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], last: str, name: str, n_in: int, n_out: int
) -> onnx.ModelProto:
    """``x (1, n_in)`` -> nodes -> ``y (1, n_out)`` as a QONNX model (the benchmarks' dense stacks share this)."""
    nodes.append(helper.make_node("Identity", [last], ["y"], name="out"))
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n_out])],
        initializer=inits,
    )  # fmt: skip
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("qonnx.custom_op.general", 1)]
    )
    model.ir_version = 8
    return model


def load_spec(spec: MlpSpec):
    """The spec's MLP as a normalised codesign IR model."""
    from codesign.frontends import load

    return load(build_mlp(spec))


def _candidate(rng: np.random.Generator, idx: int) -> MlpSpec:
    n_layers = int(rng.integers(2, 7))
    widths = tuple(int(rng.choice([8, 16, 32, 64, 128])) for _ in range(n_layers)) + (int(rng.choice([5, 8, 10])),)
    return MlpSpec(
        name=f"mlp{idx:02d}", widths=widths, w_bits=int(rng.integers(2, 9)), a_bits=int(rng.integers(3, 9)),
        sparsity=round(float(rng.uniform(0.0, 0.8)), 2), seed=1000 + idx,
    )  # fmt: skip


def lut_proxy(spec: MlpSpec) -> float:
    """Cheap size proxy (non-zero weights x (a_bits + w_bits)), ~ alkaid LUTs within 2x."""
    nnz = sum(a * b for a, b in zip(spec.widths, spec.widths[1:])) * (1 - spec.sparsity)
    return nnz * (spec.a_bits + spec.w_bits)


def specs(n: int = N_MODELS, max_lut: float = MAX_LUT) -> list[MlpSpec]:
    """Deterministic spread of MLPs whose estimated size stays under ``max_lut``."""
    rng = np.random.default_rng(2026)
    out: list[MlpSpec] = []
    idx = 0
    while len(out) < n:
        spec = _candidate(rng, idx)
        idx += 1
        if lut_proxy(spec) <= max_lut:
            out.append(spec)
    return out


def write_rtl(spec: MlpSpec, workdir: Path) -> tuple[object, object, Path]:
    """alkaid's RTL for ``spec`` in ``workdir/<name>``: (CombLogic, RTLModel, src folder)."""
    from alkaid.codegen import RTLModel

    from codesign.passes.estimate.da_model import trace_model

    comb = trace_model(load_spec(spec), LATENCY_CUTOFF)
    rtl = RTLModel(comb, workdir / spec.name, prj_name=spec.name, latency_cutoff=LATENCY_CUTOFF, print_latency=False)
    rtl.write()
    return comb, rtl, workdir / spec.name / "src"


def synthesise(spec: MlpSpec, workdir: Path) -> dict[str, object]:
    """alkaid RTL for ``spec`` -> yosys synth_xilinx -> LUT/FF/CARRY counts."""
    from codesign.backends.rtl_backend import parse_stat, verilog_sources  # shared with the rtl backend

    comb, rtl, src = write_rtl(spec, workdir)
    files = [str(p) for p in verilog_sources(src.parent, spec.name)[:-1]]  # the wrapper pads ports: not synthesised
    script = f"read_verilog -sv {' '.join(files)}; synth_xilinx -family xcup -flatten -top {spec.name}; stat"
    t0 = time.time()
    res = subprocess.run(["yosys", "-q", "-p", script.replace("; stat", "; tee -o /dev/stdout stat")],
                         capture_output=True, text=True, check=True)  # fmt: skip
    cells = parse_stat(res.stdout)
    in_bits, out_bits = io_bits(src, spec.name)
    sim = simulate_latency(src, spec.name, in_bits, out_bits, spec.seed)
    luts = {k: v for k, v in cells.items() if re.fullmatch(r"LUT\d", k)}
    return {
        "yosys_lut": sum(luts.values()),
        "yosys_ff": sum(v for k, v in cells.items() if k.startswith("FD")),
        "yosys_carry": sum(v for k, v in cells.items() if k.startswith("CARRY")),
        "yosys_lut_by_size": " ".join(f"{k}:{v}" for k, v in sorted(luts.items())),
        "alkaid_full_lut": float(comb.cost),
        "alkaid_full_ff": float(rtl.reg_bits),
        "stages": int(rtl.latency),
        "synth_s": round(time.time() - t0, 1),
        **class_columns(comb),
        "sim_latency": sim,
    }


_TESTBENCH = """`timescale 1ns/1ps
module tb;
  reg clk = 0; reg [{nin}:0] x = 0; wire [{nout}:0] y; reg [{nout}:0] y0; integer t;
  {top} dut(.clk(clk), .model_inp(x), .model_out(y));
  always #1 clk = ~clk;
  initial begin
    repeat (64) @(posedge clk);
    y0 = y; x = {value};
    for (t = 1; t < 64; t = t + 1) begin
      @(posedge clk); #0.1;
      if (y !== y0) begin $display("LATENCY %0d", t); $finish; end
    end
    $display("LATENCY -1"); $finish;
  end
endmodule
"""


def io_bits(src: Path, top: str) -> tuple[int, int]:
    """Input and output port widths of alkaid's top module."""
    text = (src / f"{top}.v").read_text()
    found = re.search(r"input (?:wire )?\[(\d+):0\] model_inp.*?output reg \[(\d+):0\] model_out", text, re.DOTALL)
    return int(found.group(1)) + 1, int(found.group(2)) + 1


def simulate_latency(src: Path, top: str, n_in_bits: int, n_out_bits: int, seed: int) -> int:
    """Clock cycles from a changed input to a changed output, by iverilog simulation (-1: no change seen)."""
    rng = np.random.default_rng(seed)
    value = f"{n_in_bits}'h" + "".join(rng.choice(list("0123456789abcdef"), size=(n_in_bits + 3) // 4))
    tb = src / "tb.v"
    tb.write_text(_TESTBENCH.format(nin=n_in_bits - 1, nout=n_out_bits - 1, top=top, value=value))
    from codesign.backends.rtl_backend import verilog_sources

    files = [str(p) for p in verilog_sources(src.parent, top)[:-1]] + [str(tb)]
    subprocess.run(["iverilog", "-g2012", "-o", str(src / "tb.vvp"), *files], check=True, capture_output=True)
    out = subprocess.run(["vvp", "-n", str(src / "tb.vvp")], check=True, capture_output=True, text=True).stdout
    return int(re.search(r"LATENCY (-?\d+)", out).group(1))


def class_columns(comb) -> dict[str, float]:
    """alkaid cost per op class, as CSV columns (the da estimator's calibration inputs)."""
    from codesign.passes.estimate.da_model import op_class_costs

    costs = op_class_costs(comb)
    return {col: costs[k] for col, k in CLASS_FIELDS.items()}


def row_classes(row: dict[str, str]) -> dict[str, float]:
    """The per-class alkaid costs stored in a CSV row."""
    return {k: float(row[col]) for col, k in CLASS_FIELDS.items()}


def annotate(path: Path) -> None:
    """Fill missing per-class cost and simulated-latency columns of existing rows (re-traces, no synthesis)."""
    rows = read_rows(path)
    with tempfile.TemporaryDirectory(prefix="estsim-") as tmp:
        for row in rows:
            if row.get("cost_add") and row.get("sim_latency"):
                continue
            spec = spec_of_row(row)
            comb, _, src = write_rtl(spec, Path(tmp))
            row.update(class_columns(comb))
            row["sim_latency"] = simulate_latency(src, spec.name, *io_bits(src, spec.name), spec.seed)
            print(f"{spec.name}: simulated latency {row['sim_latency']} cycles", flush=True)
    write_rows(path, rows)


def write_rows(path: Path, rows: list[dict]) -> None:
    """Rewrite the CSV atomically."""
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def read_rows(path: Path = CSV) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open() as fh:
        return list(csv.DictReader(fh))


def spec_of_row(row: dict[str, str]) -> MlpSpec:
    """Rebuild the spec a CSV row was synthesised from."""
    return MlpSpec(
        name=row["name"], widths=tuple(int(w) for w in row["widths"].split("-")), w_bits=int(row["w_bits"]),
        a_bits=int(row["a_bits"]), sparsity=float(row["sparsity"]), seed=int(row["seed"]),
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="synthesise one spec by name")
    ap.add_argument("--n", type=int, default=N_MODELS)
    ap.add_argument("--csv", type=Path, default=CSV)
    ap.add_argument("--annotate", action="store_true", help="only add per-class alkaid costs to existing rows")
    args = ap.parse_args()
    if args.annotate:
        annotate(args.csv)
        return
    done = {r["name"] for r in read_rows(args.csv)}
    todo = [s for s in specs(args.n) if s.name not in done and (args.only is None or s.name == args.only)]
    todo.sort(key=lut_proxy)  # small designs first, so a partial run still covers the spread
    new_file = not args.csv.exists()
    with tempfile.TemporaryDirectory(prefix="estsynth-") as tmp:
        for spec in todo:
            row = {
                "name": spec.name, "widths": "-".join(map(str, spec.widths)), "w_bits": spec.w_bits,
                "a_bits": spec.a_bits, "sparsity": spec.sparsity, "seed": spec.seed, **synthesise(spec, Path(tmp)),
            }  # fmt: skip
            with args.csv.open("a", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=FIELDS)
                if new_file:
                    writer.writeheader()
                    new_file = False
                writer.writerow(row)
            print(
                f"{spec.name}: {row['yosys_lut']} LUT (alkaid {row['alkaid_full_lut']:.0f}) in {row['synth_s']} s",
                flush=True,
            )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
