"""``codesign.compile``: the one call from a model to a finished, optionally verified, project.

The CLI, the search pipeline and users all come through here; each backend keeps its own
entry point (:func:`codesign.backends.compile.compile_hls4ml`,
:func:`~codesign.backends.compile.compile_finn`,
:func:`codesign.backends.rtl_backend.compile_rtl`) and this module only checks the options,
loads the model and dispatches, so a bad option is refused before anything is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from codesign.backends.compile import BACKENDS, CompileResult
from codesign.errors import CodesignError

#: Keyword options each backend takes (anything else is refused by name).
OPTIONS: dict[str, tuple[str, ...]] = {
    "hls4ml": ("io", "strategy", "reuse_factor", "layer_reuse", "clock_ns", "project_name", "layer_config", "calib",
               "tolerance", "csim_memory_gb"),
    "rtl": ("latency_cutoff", "hdl", "clock_ns", "synth", "project_name"),
    "finn": ("clock_ns", "target_fps", "reuse_factor", "inputs"),
}  # fmt: skip


def _split(options: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: options.pop(k) for k in keys if k in options and options[k] is not None}


def compile(
    model: Any,
    target: Any,
    backend: str = "hls4ml",
    *,
    output: str | Path,
    force: bool = False,
    verify: bool = False,
    samples: int | None = None,
    source: str | Path | None = None,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    log: Callable[[str], None] | None = None,
    **options: Any,
) -> CompileResult:
    """Compile ``model`` (a path, ModelProto, ModelWrapper or IR Model) for ``target`` with ``backend``.

    ``output``: the project folder (refused if present unless ``force``). ``verify``: hls4ml builds
    and runs the C-simulation, rtl runs alkaid's interpreter and iverilog, finn runs the written
    model.onnx and checks the verification pair (bit-exact vs the IR); ``result.passed`` says
    whether the model met what it must (bit-exact when power-of-two quantized, else its
    tolerance) and ``result.verdict_line`` why. ``log`` receives progress lines as they happen.
    Options: hls4ml ``io``, ``strategy``, ``reuse_factor``, ``layer_reuse``, ``clock_ns``,
    ``calib``, ``tolerance``, ``csim_memory_gb``; rtl ``latency_cutoff``, ``hdl``, ``clock_ns``,
    ``synth``; finn ``clock_ns``, ``target_fps``, ``reuse_factor``, ``inputs``.
    """
    from codesign.backends.targets import get_target

    if backend not in BACKENDS:
        raise CodesignError(f"--backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    unknown = sorted(set(options) - set(OPTIONS[backend]))
    if unknown:
        raise CodesignError(
            f"{backend} backend: unknown option {unknown[0]!r} (options: {', '.join(OPTIONS[backend])})"
        )
    tgt = get_target(target) if not hasattr(target, "part") else target
    opts = dict(options)
    if isinstance(model, (str, Path)) and source is None:
        source = Path(model)
    ir = _load(model, input_shapes)
    say = log or (lambda line: None)
    common = {"force": force, "source": Path(source) if source is not None else None}
    if backend == "hls4ml":
        from codesign.backends.compile import compile_hls4ml
        from codesign.backends.hls4ml_backend import Hls4mlOptions

        extra = _split(opts, ("calib", "tolerance", "csim_memory_gb"))
        hopts = Hls4mlOptions(**_split(opts, OPTIONS["hls4ml"]))
        return compile_hls4ml(ir, tgt, output, options=hopts, verify=verify, samples=100 if samples is None else samples, log=say,
                              choose_types=True, **common, **extra)  # fmt: skip
    if backend == "rtl":
        from codesign.backends.rtl_backend import RtlOptions, compile_rtl

        synth = bool(opts.pop("synth", False))
        ropts = RtlOptions(**_split(opts, OPTIONS["rtl"]))
        return compile_rtl(
            ir,
            tgt,
            output,
            options=ropts,
            verify=verify,
            samples=500 if samples is None else samples,
            synth=synth,
            **common,
        )
    from codesign.backends.compile import compile_finn
    from codesign.backends.finn_backend import FinnOptions

    inputs = opts.pop("inputs", None)
    return compile_finn(ir, tgt, output, options=FinnOptions(**_split(opts, OPTIONS["finn"])), inputs=inputs,
                        verify=verify, samples=100 if samples is None else samples, **common)  # fmt: skip


def _load(model: Any, input_shapes: dict[str, tuple[int, ...]] | None) -> Any:
    """The IR of ``model``; an IR Model passes through untouched when no shapes are given."""
    from codesign.ir.model import Model

    if isinstance(model, Model) and not input_shapes:
        return model
    from codesign.frontends import load

    return load(model, input_shapes=input_shapes or {})


__all__ = ["OPTIONS", "CompileResult", "compile"]
