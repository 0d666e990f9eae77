"""``codesign compile``: one IR model + one target -> one finished output folder.

The steps every backend shares live here once: resolve the target, write into a temp
folder and move it into place, and record what was compiled in ``codesign.json``
(model, options, cost-pass numbers, types, verification) next to the project.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codesign.backends.hls4ml_layers.base import LayerRefused
from codesign.backends.output import atomic_output_dir, check_destination
from codesign.backends.progress import step
from codesign.backends.targets import Target, get_target
from codesign.backends.verdict import Verdict
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
    #: the lines a command line shows (float types chosen, io switch ...), also passed to ``log`` as they happen
    messages: list[str] = field(default_factory=list)

    @property
    def verify(self) -> dict[str, Any] | None:
        return self.manifest.get("verify")

    @property
    def passed(self) -> bool | None:
        """Whether ``--verify`` met what the model requires (None when not verified)."""
        v = self.manifest.get("verdict")
        return None if not v else bool(v["passed"])

    @property
    def verdict_line(self) -> str | None:
        v = self.manifest.get("verdict")
        return None if not v else Verdict(**v).line()


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
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, default=_jsonable) + "\n")


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


Log = Callable[[str], None]


def _quiet_log(line: str) -> None:
    """The default ``log``: library callers get the lines in ``CompileResult.messages`` only."""


@dataclass
class FloatReference:
    """A float model, the calibration inputs its types were chosen on, and what the selection chose."""

    model: Model
    inputs: Any
    selection: dict[str, Any]
    verify: dict[str, Any] | None = None
    #: the selection's tolerance (a ``codesign.passes.precision.Criterion``): what verification must meet
    criterion: Any = None

    def check(self, got: list[Any]) -> None:
        """The C-simulation's outputs ``got`` (in output order) on the first calibration inputs vs the float model."""
        from codesign.backends.reference import take
        from codesign.passes.precision import quality_all, run_all_outputs

        n = len(got[0])
        q = quality_all(run_all_outputs(self.model, take(self.inputs, slice(n))), got)
        self.verify = {"samples": n, **q.to_dict()}

    def to_manifest(self) -> dict[str, Any]:
        return {"precision_selection": self.selection, "verify_float": self.verify}


def select_float_precision(
    ir: Model, target: Target, calib: Any = None, tolerance: float | None = None, log: Log = _quiet_log
) -> tuple[Model, FloatReference | None]:
    """Float model -> (typed IR, FloatReference); quantized models pass through unchanged.

    Per-layer fixed-point types are chosen on ``calib`` (an array (N, ...) for a single input, else a dict of
    them by input name), else on a
    synthetic N(0, 1) set (said so), to meet ``tolerance`` (else top-1 >= 99.5% / 1% of the peak).
    """
    from codesign.passes.precision import SelectPrecision, is_float_model

    if not is_float_model(ir):
        if calib is not None or tolerance is not None:
            raise CodesignError("--calib/--tolerance choose types for float models; this model is already quantized")
        return ir, None
    if calib is not None and not hasattr(calib, "shape") and not isinstance(calib, Mapping):
        raise CodesignError("--calib: give an array (N, ...) for a single input, or one per input name (.npz)")
    with step("float model: choosing per-layer fixed-point types"):
        result = SelectPrecision(calib, tolerance, target=target.part)(ir)
    info = result.info
    log(f"float model: per-layer fixed-point types chosen for {info.criterion.describe()} on {info.data_source}")
    for layer, types in info.types.items():
        log(f"  {layer}: " + ", ".join(f"{k} {v}" for k, v in types.items()))
    return result.model, FloatReference(ir, info.inputs, info.to_dict(), criterion=info.criterion)


def _reuse_map(opts: Any) -> int | dict[str, int]:
    return {"*": opts.reuse_factor, **opts.layer_reuse} if opts.layer_reuse else opts.reuse_factor


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
    calib: Any = None,
    tolerance: float | None = None,
    csim_memory_gb: float | None = None,
    choose_types: bool = False,
    log: Log = _quiet_log,
) -> CompileResult:
    """Convert, write (and optionally C-simulate and verify) an hls4ml project at ``output``.

    Order: options and destination checked, the model lowered and every op hls4ml cannot
    express refused (seconds), the C-simulation's cost planned (io_stream for conv models too
    large for io_parallel; refused over the g++ memory cap), a float model typed with
    ``choose_types`` (on ``calib`` to meet ``tolerance``; or pass its ``float_reference``;
    else hls4ml's default types), then hls4ml runs.
    ``float_reference``: the float model ``ir`` was typed from and its calibration inputs;
    with ``verify`` the C-simulation is also compared with it on those inputs.
    """
    from dataclasses import replace

    from codesign.backends import csim
    from codesign.backends import hls4ml_backend as hb
    from codesign.backends.reference import n_samples, take
    from codesign.backends.verdict import judge_hls4ml
    from codesign.backends.verify import extend_verify, first_divergence, verify_hls4ml_on, verify_inputs
    from codesign.passes.precision import is_float_model

    tgt = target if isinstance(target, Target) else get_target(target)
    if "hls4ml" not in tgt.backends:
        raise CodesignError(f"target {tgt.name} does not support the hls4ml backend")
    opts = options or hb.Hls4mlOptions()
    opts.check()
    if verify and samples < 1:
        raise CodesignError("--samples must be >= 1")
    memory_gb = csim.memory_limit_gb(csim_memory_gb)
    final = Path(output).absolute()
    check_destination(final, force, keep=source)
    timings: dict[str, float] = {}
    messages: list[str] = []

    def say(line: str) -> None:
        messages.append(line)
        log(line)

    t0 = time.perf_counter()
    with step("lowering the model for hls4ml"):
        lowered = hb.lower_model(ir)  # refuses, naming every op and node hls4ml cannot express
        untyped = choose_types and float_reference is None and is_float_model(ir)  # types chosen below
        hb.check_expressible(lowered, opts.io, untyped)  # and every attribute limit, before type selection
    timings["lower_s"] = time.perf_counter() - t0
    cost = csim.csim_cost(lowered, _reuse_map(opts))  # a float model's lowering has the same layers
    io, why = csim.plan_io(cost, opts.io, memory_gb if verify else float("inf"))
    if why:
        try:
            hb.check_expressible(lowered, io, untyped)  # io_stream's own limits (pools, Einsum), before type selection
        except LayerRefused as exc:  # the switch is a preference: a model io_stream cannot express stays unrolled
            unrolled = why.split(": building")[0]  # "io_parallel would unroll N multipliers (...)"
            if cost.parallel_mults > csim.KEEP_PARALLEL_FACTOR * csim.PARALLEL_MULT_LIMIT:  # unless g++ cannot build it
                raise csim.CsimLimitError(f"{unrolled}, and io_stream cannot express it ({exc})") from None
            io, why = opts.io, f"{unrolled}, but io_stream cannot express it ({exc}): kept io_{opts.io}"
        say(why)
        opts = replace(opts, io=io)
    csim_budget = csim.time_limit_s() if verify else 0.0
    if verify:  # refused here, in seconds, when one sample alone is over the budget
        samples, cut = csim.plan_samples(cost, opts.io, samples, csim_budget)
        if cut:
            say(cut)
    lowered_from = ir  # the typed model below is another model: it is lowered afresh (its Quant nodes)
    if float_reference is None and choose_types:
        t0 = time.perf_counter()
        ir, float_reference = select_float_precision(ir, tgt, calib, tolerance, say)
        if float_reference is not None:
            timings["precision_s"] = time.perf_counter() - t0
    with atomic_output_dir(final, force, keep=source) as tmp:
        t0 = time.perf_counter()
        with step("converting with hls4ml"), _lowered_once(hb, lowered_from, lowered):
            build = hb.convert(ir, tgt, opts, tmp)
        timings["convert_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        with step("writing the hls4ml project"):
            hb.write(build)
        timings["write_s"] = time.perf_counter() - t0
        report = verdict = None
        if verify:
            t0 = time.perf_counter()
            with (
                step(f"building the C-simulation (g++, at most {memory_gb:g} GiB)"),
                csim.memory_limited_build(memory_gb),
            ):
                hb.compile_csim(build)
            timings["csim_build_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            with step(f"C-simulating {samples} samples against the reference"):
                if float_reference is not None:  # one C-sim run on the calibration inputs: vs typed IR and float
                    n_float = csim.plan_samples(cost, opts.io, n_samples(float_reference.inputs), csim_budget)[0]
                    x, source = take(float_reference.inputs, slice(n_float)), "calibration"
                else:
                    x, source = verify_inputs(ir, build, samples)[0], "random"
                report, got, x = verify_hls4ml_on(ir, build, x, csim_budget, source)
                if float_reference is not None:
                    float_reference.check([got[k] for k in ir.outputs])
            verdict = judge_hls4ml(ir, report.to_dict(), float_reference.verify if float_reference else None,
                                   float_reference.criterion if float_reference else None)  # fmt: skip
            more = _samples_to_settle(verdict, float_reference)
            if more:
                say(
                    f"--verify: {float_reference.verify['top1_flips']} flip(s) in {n_samples(x)} samples decide the "
                    f"top-1 verdict: C-simulating up to {more} more calibration inputs (budget {2 * csim_budget:g} s)"
                )
                with step(f"C-simulating up to {more} more samples"):
                    report, got, x = extend_verify(
                        ir,
                        build,
                        (x, got),
                        take(float_reference.inputs, slice(n_samples(x), n_samples(x) + more)),
                        2 * csim_budget,
                        source,
                    )
                    float_reference.check([got[k] for k in ir.outputs])
                verdict = judge_hls4ml(ir, report.to_dict(), float_reference.verify, float_reference.criterion)
            if not verdict.passed and report.mismatched:
                with step("locating the first diverging layer (hls4ml trace: one more g++ build)"):
                    report.divergence = first_divergence(ir, build, take(x, report.mismatched), memory_gb)
            timings["verify_s"] = time.perf_counter() - t0
        hb.fix_output_dir(tmp, final)
        dropped = csim.relocate_libraries(tmp, final)
        build.lowered.save(tmp / "lowered.onnx")
        manifest = _manifest(
            ir, source, tgt, "hls4ml",
            {**opts.to_dict(), "clock_ns": build.clock_ns, "project_name": opts.project_name},
            {
                "estimates": _estimates(ir, tgt, build.clock_ns, opts.strategy, _reuse_map(opts), "io_" + opts.io),
                "precision": build.precision.to_dict(),
                "hls4ml": {"version": _version("hls4ml"), "layers": build.layer_types()},
                "csim": {"cost": {k: v for k, v in cost.to_dict().items() if k != "layers"}, "io_switch": why,
                         "memory_limit_gb": memory_gb, "dropped_libraries": dropped},
                "verify": report.to_dict() if report else None,
                "verdict": verdict.to_dict() if verdict else None,
                **(float_reference.to_manifest() if float_reference is not None else {}),
                "timings": timings,
            },
        )  # fmt: skip
        _write_manifest(tmp, manifest)
    return CompileResult(final, "hls4ml", tgt, manifest, timings, messages)


#: flips that more samples may still settle: at most this many, each 0.5% only below 200 samples
MAX_SETTLED_FLIPS = 2


def _samples_to_settle(verdict: Any, ref: FloatReference | None) -> int:
    """More calibration inputs to C-simulate when a float classifier failed on a flip or two that a bigger
    sample would put within the bar (one flip is 0.5% of 200): 0 when not so, or none are left.

    The verdict is then on every sample run; a model whose flips keep coming still fails.
    """
    if verdict.passed or ref is None or ref.verify is None or ref.criterion is None:
        return 0
    crit, flips = ref.criterion, int(ref.verify.get("top1_flips") or 0)
    if crit.kind != "top1" or crit.parts or not 0 < flips <= MAX_SETTLED_FLIPS:
        return 0
    from codesign.backends.reference import n_samples

    done, left = ref.verify["samples"], n_samples(ref.inputs) - ref.verify["samples"]
    needed = math.ceil(round(flips / (1.0 - crit.value), 6))  # samples at which these flips meet the bar
    return max(0, min(left, max(needed - done, done)))


@contextlib.contextmanager
def _lowered_once(hb: Any, ir: Model, lowered: Model) -> Iterator[None]:
    """Inside, the backend's ``lower_model(ir)`` returns the lowering already made for the refusal check.

    Only for that very ``ir``: a model typed since (another object) gets its own lowering.
    """
    original = hb.lower_model
    hb.lower_model = lambda model: lowered if model is ir else original(model)
    try:
        yield
    finally:
        hb.lower_model = original


def compile_finn(
    ir: Model,
    target: str | Target,
    output: str | Path,
    *,
    options: Any = None,
    force: bool = False,
    inputs: Any = None,
    source: Path | None = None,
    verify: bool = False,
    samples: int = 100,
) -> CompileResult:
    """Write a FINN ``build_dataflow`` folder (model, config, verification pair, README); with ``verify`` the
    written model and pair are checked against the IR's reference on ``samples`` inputs."""
    from codesign.backends import finn_backend as fb
    from codesign.backends.verdict import judge_finn

    tgt = target if isinstance(target, Target) else get_target(target)
    if "finn" not in tgt.backends:
        raise CodesignError(f"target {tgt.name} does not support the FINN backend")
    if verify and samples < 1:
        raise CodesignError("--samples must be >= 1")
    opts = options or fb.FinnOptions()
    final = Path(output).absolute()
    check_destination(final, force, keep=source)
    timings: dict[str, float] = {}
    with atomic_output_dir(final, force, keep=source) as tmp:
        t0 = time.perf_counter()
        info = fb.write_folder(ir, tgt, opts, tmp, inputs=inputs)
        timings["write_s"] = time.perf_counter() - t0
        report = None
        if verify:
            t0 = time.perf_counter()
            report = fb.verify_folder(ir, tmp, samples).to_dict()
            timings["verify_s"] = time.perf_counter() - t0
        verdict = judge_finn(report).to_dict() if report else None
        manifest = _manifest(ir, source, tgt, "finn", opts.to_dict(),
                             {"finn": info, "timings": timings, "verify": report, "verdict": verdict})  # fmt: skip
        _write_manifest(tmp, manifest)
    return CompileResult(final, "finn", tgt, manifest, timings)


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


__all__ = ["BACKENDS", "MANIFEST", "CompileResult", "FloatReference", "compile_finn", "compile_hls4ml",
           "select_float_precision"]  # fmt: skip
