"""``codesign compile``: one IR model + one target -> one finished output folder.

The steps every backend shares live here once: resolve the target, write into a temp
folder and move it into place, and record what was compiled in ``codesign.json``
(model, options, cost-pass numbers, types, verification) next to the project.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codesign.backends.output import atomic_output_dir, check_destination
from codesign.backends.targets import Target, get_target
from codesign.errors import CodesignError
from codesign.ir.model import Model

BACKENDS = ("hls4ml", "finn", "rtl")  # rtl: codesign.backends.rtl_backend.compile_rtl
MANIFEST = "codesign.json"


@dataclass
class CompileResult:
    """Where the project went and what ``codesign.json`` says about it."""

    output: Path
    backend: str
    target: Target
    manifest: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def verify(self) -> dict[str, Any] | None:
        return self.manifest.get("verify")


def _sha256(path: Path | None) -> str | None:
    if path is None or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _manifest(
    ir: Model, source: Path | None, target: Target, backend: str, options: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    from codesign import __version__
    from codesign.passes.cost import cost_report

    report = cost_report(ir)
    return {
        "codesign_version": __version__,
        "model": {"path": str(source) if source else None, "sha256": _sha256(source), "inputs": {n: ir.shape(n) for n in ir.inputs},
                  "outputs": {n: ir.shape(n) for n in ir.outputs}},
        "backend": backend,
        "target": target.to_dict(),
        "options": options,
        "cost": report.to_dict(),
        **extra,
    }  # fmt: skip


def _estimates(ir: Model, target: Target, clock_ns: float, strategy: str, reuse: Any, io_type: str) -> dict[str, Any]:
    """The project's resource/latency estimate and fit on the target (``codesign.passes.estimate``)."""
    try:
        from codesign.passes.estimate import estimate

        report = estimate(
            ir, "hls4ml", target=target.part, clock_ns=clock_ns,
            strategy=strategy if strategy in ("latency", "resource") else "latency", reuse_factor=reuse, io_type=io_type,
        )  # fmt: skip
        fit = report.fits(dict(target.resources))
        return {"estimator": report.estimator, "totals": report.totals, "fits": fit.to_dict()}
    except ImportError:
        return {"error": "no estimator in this installation"}
    except Exception as exc:  # noqa: BLE001 - an estimate is advisory: never fail a compile over it
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, default=_jsonable) + "\n")


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


@dataclass
class FloatReference:
    """A float model, the calibration inputs its types were chosen on, and what the selection chose."""

    model: Model
    inputs: Any
    selection: dict[str, Any]
    verify: dict[str, Any] | None = None

    def check(self, ir: Model, build: Any) -> None:
        """C-simulation vs the float model (onnxruntime) on the calibration inputs."""
        from codesign.backends.verify import hls4ml_outputs
        from codesign.passes.precision import quality, run_outputs

        got = hls4ml_outputs(ir, build, self.inputs)
        q = quality(run_outputs(self.model, self.inputs), got)
        self.verify = {"samples": len(self.inputs), **q.to_dict()}

    def to_manifest(self) -> dict[str, Any]:
        return {"precision_selection": self.selection, "verify_float": self.verify}


def compile_hls4ml(
    ir: Model,
    target: str | Target,
    output: str | Path,
    *,
    options: Any = None,
    force: bool = False,
    verify: bool = False,
    samples: int = 100,
    source: Path | None = None,
    float_reference: FloatReference | None = None,
) -> CompileResult:
    """Convert, write (and optionally C-simulate and verify) an hls4ml project at ``output``.

    ``float_reference``: the float model ``ir`` was typed from and its calibration inputs;
    with ``verify`` the C-simulation is also compared with it on those inputs.
    """
    from codesign.backends import hls4ml_backend as hb
    from codesign.backends.verify import verify_hls4ml

    tgt = target if isinstance(target, Target) else get_target(target)
    if "hls4ml" not in tgt.backends:
        raise CodesignError(f"target {tgt.name} does not support the hls4ml backend")
    opts = options or hb.Hls4mlOptions()
    if verify and samples < 1:
        raise CodesignError("--samples must be >= 1")
    final = Path(output).absolute()
    check_destination(final, force, keep=source)
    timings: dict[str, float] = {}
    with atomic_output_dir(final, force, keep=source) as tmp:
        t0 = time.perf_counter()
        build = hb.convert(ir, tgt, opts, tmp)
        timings["convert_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        hb.write(build)
        timings["write_s"] = time.perf_counter() - t0
        report = None
        if verify:
            t0 = time.perf_counter()
            hb.compile_csim(build)
            timings["csim_build_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            report = verify_hls4ml(ir, build, samples)
            if float_reference is not None:
                float_reference.check(ir, build)
            timings["verify_s"] = time.perf_counter() - t0
        hb.fix_output_dir(tmp, final)
        build.lowered.save(tmp / "lowered.onnx")
        manifest = _manifest(
            ir, source, tgt, "hls4ml",
            {**opts.to_dict(), "clock_ns": build.clock_ns, "project_name": opts.project_name},
            {
                "estimates": _estimates(
                    ir, tgt, build.clock_ns, opts.strategy, {"*": opts.reuse_factor, **opts.layer_reuse}
                    if opts.layer_reuse else opts.reuse_factor, "io_" + opts.io,
                ),
                "precision": build.precision.to_dict(),
                "hls4ml": {"version": _version("hls4ml"), "layers": build.layer_types()},
                "verify": report.to_dict() if report else None,
                **(float_reference.to_manifest() if float_reference is not None else {}),
                "timings": timings,
            },
        )  # fmt: skip
        _write_manifest(tmp, manifest)
    return CompileResult(final, "hls4ml", tgt, manifest, timings)


def compile_finn(
    ir: Model,
    target: str | Target,
    output: str | Path,
    *,
    options: Any = None,
    force: bool = False,
    inputs: Any = None,
    source: Path | None = None,
) -> CompileResult:
    """Write a FINN ``build_dataflow`` folder (model, config, verification pair, README)."""
    from codesign.backends import finn_backend as fb

    tgt = target if isinstance(target, Target) else get_target(target)
    if "finn" not in tgt.backends:
        raise CodesignError(f"target {tgt.name} does not support the FINN backend")
    opts = options or fb.FinnOptions()
    final = Path(output).absolute()
    check_destination(final, force, keep=source)
    timings: dict[str, float] = {}
    with atomic_output_dir(final, force, keep=source) as tmp:
        t0 = time.perf_counter()
        info = fb.write_folder(ir, tgt, opts, tmp, inputs=inputs)
        timings["write_s"] = time.perf_counter() - t0
        manifest = _manifest(ir, source, tgt, "finn", opts.to_dict(), {"finn": info, "timings": timings})
        _write_manifest(tmp, manifest)
    return CompileResult(final, "finn", tgt, manifest, timings)


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


__all__ = ["BACKENDS", "MANIFEST", "CompileResult", "compile_finn", "compile_hls4ml"]
