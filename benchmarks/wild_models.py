"""Generated exporter zoo: realistic models from exporters available here, through codesign like real_models.py.

Writes PyTorch float models (``torch.onnx.export(dynamo=False)``, opsets 9-17; some also with the
dynamo exporter, torch's default) and onnxruntime static-quantized versions of some (QDQ
per-tensor/per-channel, int8/uint8, and QOperator) into a cache folder outside the repository (``--out``, default ``~/.cache/codesign/wild``; kept between
runs, ``--regen`` rewrites), then runs each through ``codesign inspect`` and
``codesign compile --target vu13p --backend hls4ml --verify`` with real_models.py's subprocess
runner (timeout + address-space cap) and classifier, and prints one table with totals. Keras and
TFLite-int8 models (tf2onnx) join when ``benchmarks/wild/keras_zoo.py`` has written them (it needs
TensorFlow, which codesign's install leaves out).

    PYTHONPATH=. python benchmarks/wild_models.py [--models 'torch/jet*'] [--timeout 300] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.real_models import Row, codesign_steps, is_quantized, table

DEFAULT_OUT = Path.home() / ".cache" / "codesign" / "wild"


def generate(out: Path, pattern: str, regen: bool) -> dict[str, tuple[Path, str]]:
    """{``family/name.onnx``: (path, note)} of every zoo entry matching ``pattern`` (globs, comma-separated)."""
    from benchmarks.wild import keras_zoo, qdq_zoo, torch_zoo

    globs = pattern.split(",")

    def wanted(key: str) -> bool:
        return any(fnmatch.fnmatch(key, g) for g in globs)

    floats = {e.name: e for e in torch_zoo.ENTRIES}
    models: dict[str, tuple[Path, str]] = {}

    def float_model(name: str) -> Path:
        path = out / "torch" / f"{name}.onnx"
        if regen or not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            print(f"  exporting torch/{name} (opset {floats[name].opset})", file=sys.stderr, flush=True)
            torch_zoo.export(floats[name], path)
        return path

    for e in torch_zoo.ENTRIES:
        key = f"torch/{e.name}.onnx"
        if wanted(key):
            models[key] = (float_model(e.name), f"opset {e.opset}; {e.note}".rstrip("; "))
    for q in qdq_zoo.ENTRIES:
        key = f"ort-{q.fmt.lower()}/{q.name}.onnx"
        if not wanted(key):
            continue
        path = out / f"ort-{q.fmt.lower()}" / f"{q.name}.onnx"
        if regen or not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            print(f"  quantizing {key}", file=sys.stderr, flush=True)
            qdq_zoo.quantize(q, float_model(q.source), path, floats[q.source].shape)
        models[key] = (path, f"from {q.source}; {q.note}")
    for e in torch_zoo.ENTRIES:  # torch's default exporter since 2.9 (opset 20, its own op spellings)
        key = f"torch-dynamo/{e.name}.onnx"
        if e.dynamo and wanted(key):
            path = out / "torch-dynamo" / f"{e.name}.onnx"
            if regen or not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                print(f"  exporting {key} (dynamo)", file=sys.stderr, flush=True)
                torch_zoo.export(e, path, dynamo=True)
            models[key] = (path, f"dynamo exporter; {e.note}".rstrip("; "))
    for key, note in keras_zoo.NOTES.items():  # written by keras_zoo.py in a TensorFlow environment, if at all
        if wanted(key) and (out / key).exists():
            models[key] = (out / key, note)
    return models


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"model cache folder (default {DEFAULT_OUT})")
    ap.add_argument("--models", default="*", help="globs on family/name.onnx, comma-separated (default: all)")
    ap.add_argument("--regen", action="store_true", help="re-export models already in the cache")
    ap.add_argument("--generate-only", action="store_true", help="write the models, run nothing")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per step (default 300)")
    ap.add_argument("--memory-gb", type=float, default=6.0, help="address-space cap per step (default 6 GiB)")
    ap.add_argument("--samples", type=int, default=100, help="verification samples (default 100)")
    ap.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = ap.parse_args()
    models = generate(args.out.expanduser(), args.models, args.regen)
    if not models:
        sys.exit(f"wild_models: no model matches --models {args.models!r}")
    if args.generate_only:
        print("\n".join(f"{p}  ({note})" for p, note in models.values()))
        return
    print(f"{len(models)} models, timeout {args.timeout:g} s, memory {args.memory_gb:g} GiB", file=sys.stderr)
    t0, rows = time.perf_counter(), []
    for key, (path, _note) in models.items():
        row = Row(key, is_quantized(path), codesign_steps(path, False, args, backends=["hls4ml"]))
        rows.append(row)
        print(f"  {key}: " + "; ".join(f"{k} {v.cell()}" for k, v in row.steps.items()), file=sys.stderr, flush=True)
        text = table(rows, cols=("inspect", "hls4ml")) + "\n\n" + "\n".join(
            f"- `{Path(k).stem}`: {models[k][1]}" for k in (r.model for r in rows)
        ) + f"\n\n{len(rows)} of {len(models)} models in {time.perf_counter() - t0:.0f} s.\n"  # fmt: skip
        if args.markdown:
            args.markdown.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
