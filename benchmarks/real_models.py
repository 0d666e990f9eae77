"""Every real model in ../shared through codesign, beside plain hls4ml's documented path, in one table.

For each model (``--models GLOB`` on the path under ../shared/models): ``codesign inspect``,
``codesign compile --backend hls4ml --verify`` and, for quantized models, ``--backend finn``
and ``--backend rtl --verify``; each one a subprocess under ``--timeout`` seconds and a
``--memory-gb`` address-space cap, classified as verified / compiled / verify FAILED /
refused: reason / internal error / timeout / OOM / crash. Beside it, plain hls4ml's
documented ONNX path on the same file (qonnx cleanup, ConvertToChannelsLastAndClean,
GemmToMatMul, ``convert_from_onnx_model``, ``compile``, ``predict`` vs qonnx execution),
in the same kind of subprocess.

    PYTHONPATH=. python benchmarks/real_models.py [--models '*TFC*'] [--timeout 600] [--jobs 1]
        [--samples 100] [--markdown docs/real_models.md]
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CODESIGN_SHARED", ROOT.parent / "shared"))
QUANTIZERS = {"Quant", "BipolarQuant", "MultiThreshold", "FloatQuant", "QuantizeLinear"}
TARGET = "vu13p"


@dataclass
class Outcome:
    """One step's result: a class (verified, refused, ...), a short detail and the wall time."""

    kind: str
    detail: str = ""
    seconds: float = 0.0

    def cell(self) -> str:
        text = self.kind + (f": {self.detail}" if self.detail else "")
        return f"{text[:110]} ({self.seconds:.0f} s)"


@dataclass
class Row:
    model: str
    quantized: bool
    steps: dict[str, Outcome] = field(default_factory=dict)


def _limits(memory_gb: float):
    cap = int(memory_gb * (1 << 30))

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        os.setsid()  # its own process group: a timeout kills g++ too

    return apply


def run_step(cmd: list[str], timeout: float, memory_gb: float) -> tuple[int | None, str, str, float]:
    """(exit code or None on timeout, stdout, stderr, seconds) of ``cmd`` under the limits."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore", "TERM": "dumb"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_limits(memory_gb)
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err, time.perf_counter() - t0
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return None, out, err, time.perf_counter() - t0


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def classify(rc: int | None, out: str, err: str, seconds: float, verify: bool) -> Outcome:
    """The outcome class of one codesign command from its exit code and last stderr line."""
    line = _last_line(err).removeprefix("codesign: error: ")
    if rc is None:
        return Outcome("timeout", "", seconds)
    if rc == 0:
        return Outcome("verified" if verify else "ok", "", seconds)
    if rc == 3:
        return Outcome("verify FAILED", line.split("measured ", 1)[-1], seconds)
    if rc == 2:
        return Outcome("refused", line, seconds)
    if rc == 1:
        kind = "OOM" if "MemoryError" in line else "internal error"
        return Outcome(kind, line.removeprefix("internal error: ").split(":")[0], seconds)
    if rc < 0:
        sig = signal.Signals(-rc).name
        return Outcome("OOM" if sig == "SIGKILL" else f"crash ({sig})", "", seconds)
    if "MemoryError" in err or "bad_alloc" in err:
        return Outcome("OOM", "", seconds)
    return Outcome(f"exit {rc}", line, seconds)


def is_quantized(path: Path) -> bool:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return any(n.op_type in QUANTIZERS for n in model.graph.node)


def codesign_steps(
    path: Path, quantized: bool, args: argparse.Namespace, backends: list[str] | None = None
) -> dict[str, Outcome]:
    """inspect, then compile with each backend (default: hls4ml, and FINN + rtl for quantized models)."""
    py = [sys.executable, "-m", "codesign.cli"]
    steps: dict[str, Outcome] = {}
    rc, out, err, s = run_step([*py, "inspect", str(path), "--json"], args.timeout, args.memory_gb)
    steps["inspect"] = classify(rc, out, err, s, verify=False)
    if backends is None:
        backends = ["hls4ml", "finn", "rtl"] if quantized else ["hls4ml"]
    for backend in backends:
        verify = backend != "finn"
        with tempfile.TemporaryDirectory(prefix="codesign-bench-") as tmp:
            cmd = [*py, "compile", str(path), "-t", TARGET, "-o", str(Path(tmp) / "out"), "--backend", backend]
            if verify:
                cmd += ["--verify", "--samples", str(args.samples)]
            rc, out, err, s = run_step(cmd, args.timeout, args.memory_gb)
        steps[backend] = classify(rc, out, err, s, verify=verify)
    return steps


# ------------------------------------------------------------------ plain hls4ml, as its docs show it
PLAIN_STAGES = ("load", "cleanup", "channels-last", "gemm-to-matmul", "config", "convert", "compile", "predict")


def plain_hls4ml(path: str, out_dir: str, samples: int) -> dict:
    """hls4ml's documented QONNX path; returns {stage reached, error or agreement numbers}."""
    import warnings

    warnings.filterwarnings("ignore")
    import numpy as np

    stage = "load"
    try:
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.core.onnx_exec import execute_onnx
        from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
        from qonnx.transformation.gemm_to_matmul import GemmToMatMul
        from qonnx.util.cleanup import cleanup_model

        model = ModelWrapper(path)
        stage = "cleanup"
        model = cleanup_model(model)
        stage = "channels-last"
        model = model.transform(ConvertToChannelsLastAndClean())
        stage = "gemm-to-matmul"
        model = cleanup_model(model.transform(GemmToMatMul()))
        import hls4ml

        stage = "config"
        config = hls4ml.utils.config.config_from_onnx_model(
            model, granularity="name", backend="Vitis", default_precision="fixed<16,6>"
        )
        stage = "convert"
        hls_model = hls4ml.converters.convert_from_onnx_model(
            model, output_dir=out_dir, backend="Vitis", io_type="io_parallel", hls_config=config
        )
        stage = "compile"
        hls_model.compile()
        stage = "predict"
        name = model.graph.input[0].name
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in model.get_tensor_shape(name)]
        x = np.random.default_rng(0).normal(size=(samples, *shape[1:])).astype(np.float32)
        got = np.asarray(hls_model.predict(x)).reshape(samples, -1)
        out_name = model.graph.output[0].name
        ref = np.stack(
            [np.asarray(execute_onnx(model, {name: x[i : i + 1]})[out_name]).ravel() for i in range(samples)]
        )
        diff = float(np.abs(ref - got).max())
        top1 = float(np.mean(ref.argmax(1) == got.argmax(1))) if ref.shape[1] > 1 else None
        return {"stage": "done", "max_abs_diff": diff, "top1": top1, "bit_exact": bool(np.all(ref == got))}
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:80]
        return {"stage": stage, "error": f"{type(exc).__name__}: {first}"}


def plain_step(path: Path, args: argparse.Namespace) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="hls4ml-plain-") as tmp:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--plain", str(path), "--plain-out", tmp,
               "--samples", str(args.samples)]  # fmt: skip
        rc, out, err, s = run_step(cmd, args.timeout, args.memory_gb)
    if rc != 0 or not out.strip():
        o = classify(rc, out, err, s, verify=False)
        return Outcome(o.kind if o.kind != "internal error" else "error", o.detail, s)
    res = json.loads(out.strip().splitlines()[-1])
    if res["stage"] != "done":
        return Outcome(f"fails at {res['stage']}", res["error"], s)
    top1 = f", top-1 {res['top1']:.1%}" if res["top1"] is not None else ""
    agreement = "bit-exact" if res["bit_exact"] else f"max diff {res['max_abs_diff']:.3g}"
    return Outcome("C-sim runs", f"{agreement}{top1}", s)


# ------------------------------------------------------------------ the table
def bench_one(path: Path, args: argparse.Namespace) -> Row:
    rel = str(path.relative_to(SHARED / "models"))
    try:
        quantized = is_quantized(path)
    except Exception:
        quantized = False
    row = Row(rel, quantized, codesign_steps(path, quantized, args))
    row.steps["plain hls4ml"] = plain_step(path, args)
    print(f"  {rel}: " + "; ".join(f"{k} {v.kind}" for k, v in row.steps.items()), file=sys.stderr, flush=True)
    return row


def table(rows: list[Row], cols: tuple[str, ...] = ("inspect", "hls4ml", "finn", "rtl", "plain hls4ml")) -> str:
    lines = ["| model | quantized | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 2)]
    for r in rows:
        cells = [r.steps[c].cell() if c in r.steps else "-" for c in cols]
        lines.append(f"| {r.model.split('/')[0]}<br>`{Path(r.model).name}` | {'yes' if r.quantized else 'no'} | "
                     + " | ".join(c.replace("|", "/") for c in cells) + " |")  # fmt: skip
    lines.append("")
    for c in cols:
        counts: dict[str, int] = {}
        for r in rows:
            if c in r.steps:
                counts[r.steps[c].kind] = counts.get(r.steps[c].kind, 0) + 1
        total = sum(counts.values())
        lines.append(
            f"- **{c}** ({total}): " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="*", help="glob on the path under ../shared/models (default: all)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per step (default 600)")
    ap.add_argument("--memory-gb", type=float, default=8.0, help="address-space cap per step (default 8 GiB)")
    ap.add_argument("--jobs", type=int, default=1, help="models benchmarked at once (default 1)")
    ap.add_argument("--samples", type=int, default=100, help="verification samples (default 100)")
    ap.add_argument("--markdown", type=Path, help="also write the table to this file")
    ap.add_argument("--plain", help=argparse.SUPPRESS)
    ap.add_argument("--plain-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.plain:
        print(json.dumps(plain_hls4ml(args.plain, args.plain_out, args.samples)))
        return
    if not (SHARED / "models").is_dir():
        sys.exit(f"real_models: no {SHARED / 'models'} (set CODESIGN_SHARED)")
    paths = [p for p in sorted((SHARED / "models").rglob("*.onnx"))
             if fnmatch.fnmatch(str(p.relative_to(SHARED / "models")), args.models)]  # fmt: skip
    if not paths:
        sys.exit(f"real_models: no model matches --models {args.models!r}")
    if shutil.which("iverilog") is None:
        print("note: iverilog not installed: rtl --verify will be refused", file=sys.stderr)
    print(f"{len(paths)} models, timeout {args.timeout:g} s, memory {args.memory_gb:g} GiB, jobs {args.jobs}",
          file=sys.stderr)  # fmt: skip
    t0 = time.perf_counter()
    done: dict[str, Row] = {}
    lock = threading.Lock()

    def one(path: Path) -> None:
        row = bench_one(path, args)
        with lock:  # the table so far, after every model: an interrupted run still leaves its rows
            done[row.model] = row
            if args.markdown:
                args.markdown.write_text(render(done, len(paths), time.perf_counter() - t0))

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(one, paths))
    print(render(done, len(paths), time.perf_counter() - t0))


def render(done: dict[str, Row], total: int, seconds: float) -> str:
    rows = [done[k] for k in sorted(done)]
    return table(rows) + f"\n\n{len(rows)} of {total} models in {seconds:.0f} s (target {TARGET}).\n"


if __name__ == "__main__":
    main()
