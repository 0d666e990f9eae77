"""Wall time of `codesign compile` (interpreter start included) next to hls4ml's own convert+write.

Both produce a written hls4ml project for the same model (default: the shipped
16-64-32-32-5 jet-tagger MLP). codesign's number is the whole command as a user runs
it; hls4ml's is ``config_from_onnx_model`` + ``convert_from_onnx_model`` + ``write()``
inside an already-started interpreter with hls4ml already imported, on the graph after
the same qonnx cleanup hls4ml's documentation asks for.

Usage: python benchmarks/compile_time.py [MODEL.onnx] [--repeat N]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "examples" / "jet_tagger_mlp.onnx"


def codesign_cli_wall(model: Path, out: Path) -> float:
    exe = Path(sys.executable).with_name("codesign")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "codesign.cli"]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [*cmd, "compile", str(model), "-t", "vu13p", "-o", str(out), "--force"],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"codesign compile failed: {proc.stderr.strip()}")
    return wall


def hls4ml_convert_write(model: Path, out: Path) -> tuple[float, float]:
    """(hls4ml convert+write seconds, the qonnx cleanup before it) in this process."""
    import hls4ml
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    t0 = time.perf_counter()
    w = cleanup_model(ModelWrapper(str(model)))
    w = w.transform(ConvertToChannelsLastAndClean())
    w = w.transform(GemmToMatMul())
    w = cleanup_model(w)
    t_clean = time.perf_counter() - t0
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        cfg = hls4ml.utils.config_from_onnx_model(w, granularity="name", backend="Vitis")
        hm = hls4ml.converters.convert_from_onnx_model(
            w, output_dir=str(out), backend="Vitis", part="xcvu13p-flga2577-2-e", hls_config=cfg
        )
        hm.write()
    return time.perf_counter() - t0, t_clean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    with tempfile.TemporaryDirectory() as tmp:
        cli = [codesign_cli_wall(args.model, Path(tmp) / f"cs{i}") for i in range(args.repeat)]
        t0 = time.perf_counter()
        import hls4ml  # noqa: F401 - timed separately: the import alone is most of a cold start

        t_import = time.perf_counter() - t0
        runs = [hls4ml_convert_write(args.model, Path(tmp) / f"h{i}") for i in range(args.repeat)]
    conv = [r[0] for r in runs]
    clean = [r[1] for r in runs]
    print(f"model: {args.model}  (runs: {args.repeat}, median shown)")
    print(
        f"codesign compile, whole command incl. interpreter start : {statistics.median(cli):6.2f} s  (min {min(cli):.2f})"
    )
    print(
        f"hls4ml convert + write, warm interpreter                 : {statistics.median(conv):6.2f} s  (min {min(conv):.2f})"
    )
    print(f"  + qonnx cleanup/channels-last/GemmToMatMul before it    : {statistics.median(clean):6.2f} s")
    print(f"  + 'import hls4ml' once                                  : {t_import:6.2f} s")
    print(f"criterion: codesign compile < 3 s wall -> {'OK' if statistics.median(cli) < 3.0 else 'FAIL'}")


if __name__ == "__main__":
    main()
