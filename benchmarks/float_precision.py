"""Data-driven fixed-point types vs a uniform ``fixed<32,16>``-width baseline, per float model.

For every float model in ../shared that hls4ml can express: the types chosen by
:class:`codesign.passes.precision.SelectPrecision` (default tolerance: top-1 >= 99.5%
for classifiers, max abs error <= 1% of the output peak otherwise) on 1,000 synthetic
N(0, 1) inputs, their quality against the float model (onnxruntime) and their estimated
LUT/DSP, next to every tensor at 32 bits. With ``--csim`` each chosen model is also
compiled to an hls4ml C-simulation and compared with onnxruntime on the same inputs.

Usage: python benchmarks/float_precision.py [--csim] [--models two_layer_keras,...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT.parent / "shared" / "models" / "fastmachinelearning+example-models" / "onnx"
MODELS = (
    "two_layer_keras", "two_layer_pytorch", "three_layer_keras", "three_layer_pytorch", "three_layer_bn_keras",
    "dense_big_keras", "conv1d_small_keras", "conv2d_small_keras", "conv2d_small_mp_keras",
)  # fmt: skip


def run(name: str, csim: bool) -> dict:
    from codesign.frontends import load
    from codesign.passes.precision import (
        estimated_cost,
        quality,
        run_outputs,
        select_precision,
        uniform_types,
    )

    ir = load(EXAMPLES / f"{name}.onnx")
    t0 = time.perf_counter()
    chosen = select_precision(ir, target="vu13p")
    seconds = time.perf_counter() - t0
    info = chosen.info
    x = info.inputs
    ref = run_outputs(ir, x)
    wide = uniform_types(ir, 32, x)
    row = {
        "model": name,
        "criterion": info.criterion.describe(),
        "chosen": info.quality,
        "chosen_cost": estimated_cost(chosen.model, "vu13p"),
        "uniform32": quality(ref, run_outputs(wide, x)),
        "uniform32_cost": estimated_cost(wide, "vu13p"),
        "widths": sorted({b for layer in info.bits.values() for b in layer.values()}),
        "select_s": seconds,
    }
    if csim:
        from codesign.backends.compile import FloatReference, compile_hls4ml

        ref_obj = FloatReference(ir, x, info.to_dict())
        with tempfile.TemporaryDirectory() as tmp:
            compile_hls4ml(chosen.model, "vu13p", Path(tmp) / "p", verify=True, samples=10, float_reference=ref_obj)
        row["csim"] = ref_obj.verify
    return row


def main() -> None:
    warnings.filterwarnings("ignore")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csim", action="store_true", help="also build hls4ml C-sim and compare with onnxruntime")
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args()
    head = f"{'model':22} {'criterion':30} {'chosen: err / top1':22} {'LUT':>8} {'DSP':>6}  {'uniform32: err / top1':22} {'LUT':>8} {'DSP':>6}  widths"
    print(head + ("   C-sim vs onnxruntime" if args.csim else ""))
    for name in args.models.split(","):
        r = run(name, args.csim)
        c, u = r["chosen"], r["uniform32"]
        fmt = lambda q: f"{q.max_abs_error:.2e} / {'-' if q.top1 is None else f'{q.top1:.1%}'}"
        line = (
            f"{name:22} {r['criterion']:30} {fmt(c):22} {r['chosen_cost']['LUT']:8.0f} {r['chosen_cost']['DSP']:6.0f}  "
            f"{fmt(u):22} {r['uniform32_cost']['LUT']:8.0f} {r['uniform32_cost']['DSP']:6.0f}  "
            f"{r['widths'][0]}-{r['widths'][-1]} bits"
        )
        if "csim" in r:
            v = r["csim"]
            top1 = "-" if v["top1_agreement"] is None else f"{v['top1_agreement']:.1%}"
            line += f"   {v['max_abs_error']:.2e} / {top1}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
