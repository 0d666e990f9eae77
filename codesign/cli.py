"""The ``codesign`` command.

Every command reports a user error as one line on stderr and exits 2 (internal errors:
one line and exit 1; ``CODESIGN_DEBUG=1`` shows the traceback). Heavy libraries (torch,
hls4ml) are imported inside the commands that need them, so ``inspect`` starts fast.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Hardware-aware neural-network codesign for FPGAs on one QONNX IR.",
)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", help="print the version and exit"),
) -> None:
    """Hardware-aware neural-network codesign for FPGAs on one QONNX IR."""
    if version:
        from codesign import __version__

        typer.echo(f"codesign {__version__}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(2)


def fail(message: str, code: int = 2) -> None:
    """Print one line on stderr and exit."""
    typer.echo(f"codesign: error: {message}", err=True)
    raise typer.Exit(code)


def cli_command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn CodesignError (and any stray exception) into a one-line error."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from codesign.errors import CodesignError

        warnings.filterwarnings("ignore")
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except CodesignError as exc:
            fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except Exception as exc:
            if os.environ.get("CODESIGN_DEBUG"):
                raise
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            fail(f"internal error: {type(exc).__name__}: {msg[:300]} (CODESIGN_DEBUG=1 shows the traceback)", code=1)

    return wrapper


def parse_input_shapes(specs: list[str] | None) -> dict[str, tuple[int, ...]]:
    """``NAME=1,16`` -> {"NAME": (1, 16)}."""
    from codesign.errors import CodesignError

    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs or []:
        name, sep, dims = spec.rpartition("=")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = tuple(int(d) for d in dims.split(","))
        except ValueError:
            raise CodesignError(f"--input-shape {spec!r}: expected NAME=D0,D1,...") from None
    return shapes


def load_for_cli(model: Path, input_shape: list[str] | None = None):
    from codesign.frontends import load

    return load(model, input_shapes=parse_input_shapes(input_shape))


def _fmt_shape(shape: tuple[int, ...] | None) -> str:
    return "?" if shape is None else "x".join(str(d) for d in shape)


def _fmt_num(x: float) -> str:
    if x == 0:
        return "0"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.4g}"


def write_text_output(path: Path, text: str) -> None:
    """Write a small text artefact atomically, with a one-line error if impossible."""
    from codesign.errors import OutputError

    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"cannot write {path}: folder {folder} does not exist")
    tmp = folder / f".{path.name}.tmp"
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


@app.command()
@cli_command
def inspect(
    model: Path = typer.Argument(..., help="ONNX or QONNX model file"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable JSON on stdout"),
    graph: Path | None = typer.Option(None, "--graph", help="write the dataflow graph as .svg or .dot"),
    bops: str = typer.Option("qonnx", "--bops", help="BOPs definition: qonnx (MACs*b_a*b_w) or nac (with accumulator)"),
    input_shape: list[str] | None = typer.Option(None, "--input-shape", help="NAME=D0,D1,... for dynamic inputs"),
    target: str | None = typer.Option(None, "--target", help="also estimate resources/latency on this FPGA target"),
    ranges: bool = typer.Option(
        False, "--ranges", help="per-tensor value ranges on --calib data (or synthetic N(0,1))"
    ),
    calib: Path | None = typer.Option(
        None, "--calib", help="with --ranges: .npy inputs (.npz by input name) to profile on"
    ),
    plot: Path | None = typer.Option(None, "--plot", help="with --ranges: per-layer range plot as .png"),
) -> None:
    """Per-layer cost table: shapes, datatypes, params, sparsity, MACs, BOPs (+ estimates with --target)."""
    from codesign.errors import CodesignError

    if ranges or calib is not None or plot is not None:
        _inspect_ranges(model, input_shape, calib, plot, json_out)
        return
    from codesign.passes.cost import BOPS_DEFINITIONS, cost_report

    if bops not in BOPS_DEFINITIONS:
        raise CodesignError(f"--bops must be one of {', '.join(BOPS_DEFINITIONS)}, not {bops!r}")
    if graph is not None and graph.suffix.lower() not in (".svg", ".dot"):
        raise CodesignError(f"--graph {graph}: use a .svg or .dot file name")
    resources = _target_resources(target)
    ir = load_for_cli(model, input_shape)
    report = cost_report(ir, bops)
    est, verdict = _estimate_on(ir, target, resources) if target is not None else (None, None)
    if graph is not None:
        from codesign.ir.graph import to_dot, to_svg

        write_text_output(graph, to_svg(ir) if graph.suffix.lower() == ".svg" else to_dot(ir))
    if json_out:
        payload = {"model": str(model), "inputs": {n: ir.shape(n) for n in ir.inputs}, **report.to_dict()}
        if est is not None:
            payload["estimate"] = {**est.to_dict(), "fits": verdict.to_dict()}
        typer.echo(json.dumps(payload, indent=2, default=float))
        return
    _print_cost_table(str(model), report)
    if est is not None:
        _print_estimate_table(str(model), est, verdict)


def _target_resources(target: str | None) -> Any:
    """The target's resources (a bad name fails here, in one line, before any loading)."""
    if target is None:
        return None
    from codesign.passes.estimate import target_resources

    return target_resources(target)


def _estimate_on(ir: Any, target: str, resources: Any, **settings: Any) -> tuple[Any, Any]:
    """hls4ml-analytic estimate at the target's default clock, and whether it fits."""
    from codesign.backends.targets import get_target
    from codesign.passes.estimate import EstimateConfig, get_estimator

    config = EstimateConfig(target, settings.pop("clock_ns", None) or get_target(target).default_clock_ns, **settings)
    report = get_estimator("hls4ml", config)(ir).info
    return report, report.fits(resources, 100.0)


def _inspect_ranges(model: Path, input_shape: list[str] | None, calib: Path | None, plot: Path | None,
                    json_out: bool) -> None:  # fmt: skip
    """``inspect --ranges``: the numerical profile the float-model precision selection starts from."""
    from codesign.errors import CodesignError
    from codesign.passes.precision import profile_ranges

    if plot is not None and plot.suffix.lower() != ".png":
        raise CodesignError(f"--plot {plot}: use a .png file name")
    data = _load_calibration(calib) if calib is not None else None
    rows, source = profile_ranges(load_for_cli(model, input_shape), data)
    if plot is not None:
        _plot_ranges(rows, plot, f"{model.name}: {source.split(';')[0]}")
    if json_out:
        typer.echo(json.dumps({"model": str(model), "data": source, "tensors": [r.to_dict() for r in rows]}, indent=2))
        return
    typer.echo(f"ranges on {source}")
    typer.echo(f"{'layer':40} {'kind':12} {'min':>11} {'max':>11} {'int bits':>8}  tensor")
    for r in rows:
        typer.echo(f"{r.layer[:40]:40} {r.kind:12} {r.lo:11.4g} {r.hi:11.4g} {r.integer_bits:8d}  {r.tensor}")


def _plot_ranges(rows: list, path: Path, title: str) -> None:
    """hls4ml-style numerical profile: one horizontal bar per tensor, log2 of |value| on x."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from codesign.errors import OutputError

    colors = {
        "input": "gray",
        "weight": "tab:blue",
        "bias": "tab:orange",
        "accumulator": "tab:red",
        "activation": "tab:green",
    }
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(rows) + 1.5))
    for i, r in enumerate(rows):
        top = max(abs(r.lo), abs(r.hi), 2.0**-24)
        ax.barh(i, np.log2(top) + 24, left=-24, color=colors.get(r.kind, "k"))
    ax.set_xlim(-24, max(np.log2(max(abs(r.lo), abs(r.hi), 1.0)) for r in rows) + 2)
    ax.set_yticks(range(len(rows)), [f"{r.layer[:28]} {r.kind}" for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("log2 of the largest |value| (the integer bits a type needs: this + 1 for the sign)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)


def _print_cost_table(title: str, report: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{title}  (BOPs: {report.bops_definition})", show_lines=False)
    for col, justify in (
        ("layer", "left"), ("op", "left"), ("in", "right"), ("out", "right"), ("weight", "left"),
        ("act", "left"), ("params", "right"), ("sparsity", "right"), ("MACs", "right"), ("BOPs", "right"),
    ):  # fmt: skip
        table.add_column(col, justify=justify)
    for layer in report.layers:
        table.add_row(
            layer.name, layer.op, _fmt_shape(layer.in_shape), _fmt_shape(layer.out_shape), layer.weight_dtype or "-",
            layer.act_dtype, _fmt_num(layer.params), f"{layer.sparsity:.1%}" if layer.params else "-",
            _fmt_num(layer.macs), _fmt_num(layer.bops),
        )  # fmt: skip
    t = report.totals
    table.add_section()
    table.add_row(
        "total",
        "",
        "",
        "",
        "",
        "",
        _fmt_num(t["params"]),
        f"{t['sparsity']:.1%}",
        _fmt_num(t["macs"]),
        _fmt_num(t["bops"]),
    )
    console = Console(width=max(120, Console().width))
    console.print(table)
    console.print(
        f"weight memory {_fmt_num(t['weight_bits'])} bits, activation memory {_fmt_num(t['act_bits'])} bits"
        + (f"; ops without a cost model: {', '.join(report.unsupported)}" if report.unsupported else "")
    )


# --- compression commands (issue 3): insert below this line ---
def _parse_layer_bits(specs: list[str] | None) -> dict[str, Any]:
    """``NAME=4``, ``NAME=float``, ``NAME=weight:4,act:6`` (also w/b/a) -> QuantConfig.layers."""
    from codesign.errors import CodesignError

    short = {"w": "weight", "b": "bias", "a": "act", "weight": "weight", "bias": "bias", "act": "act"}
    layers: dict[str, Any] = {}
    for spec in specs or []:
        name, sep, value = spec.rpartition("=")
        try:
            if not sep or not name:
                raise ValueError
            if value.lower() in ("float", "none", "0"):
                layers[name] = None
            elif value.isdigit():
                layers[name] = int(value)
            else:
                pairs = (item.split(":") for item in value.split(","))
                layers[name] = {short[k.strip().lower()]: (None if v.lower() == "float" else int(v)) for k, v in pairs}
        except (ValueError, KeyError):
            raise CodesignError(f"--layer {spec!r}: expected NAME=BITS, NAME=float or NAME=weight:4,act:6") from None
    return layers


def _load_calibration(path: Path) -> Any:
    import numpy as np

    from codesign.errors import CodesignError

    if not path.is_file():
        raise CodesignError(f"--calib {path}: no such file")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CodesignError(f"--calib {path}: not a .npy/.npz array ({str(exc).splitlines()[0][:120]})") from None
    if hasattr(data, "files"):  # .npz: one array per model input, or a single array
        data = {k: data[k] for k in data.files}
        return next(iter(data.values())) if len(data) == 1 else data
    return data.astype(np.float32)


def _check_output_path(out: Path, model: Path) -> None:
    from codesign.errors import OutputError

    if out.resolve() == model.resolve():
        raise OutputError(f"-o {out}: refusing to overwrite the input model")
    if out.is_dir():
        raise OutputError(f"-o {out}: is a folder; give a .onnx file name")


def _bops_mac(report: Any) -> float:
    return float(sum(layer.bops for layer in report.layers if layer.op in ("MatMul", "Gemm", "Conv")))


@app.command()
@cli_command
def quantize(
    model: Path = typer.Argument(..., help="ONNX or QONNX model file"),
    output: Path = typer.Option(..., "-o", "--output", help="quantized QONNX model to write (.onnx)"),
    bits: int = typer.Option(8, "--bits", help="default bit width of weights, biases and layer inputs"),
    layer: list[str] | None = typer.Option(
        None, "--layer", help="per-layer width: NAME=BITS, NAME=float, NAME=weight:4,act:6 (NAME may be an op type)"
    ),
    calib: Path | None = typer.Option(
        None,
        "--calib",
        help="calibration inputs (.npy, N x input shape; several inputs: .npz by input name); else ranges are estimated",
    ),
    scale: str = typer.Option("pow2", "--scale", help="pow2 (fixed point, ap_fixed) or float"),
    per_channel: bool = typer.Option(False, "--per-channel", help="one weight scale per output channel"),
    weight_bits: int | None = typer.Option(None, "--weight-bits", help="override --bits for weights"),
    bias_bits: int | None = typer.Option(None, "--bias-bits", help="override --bits for biases"),
    act_bits: int | None = typer.Option(None, "--act-bits", help="override --bits for layer inputs"),
    rounding: str = typer.Option("ROUND", "--rounding", help="ROUND, ROUND_TO_ZERO, CEIL, FLOOR, HALF_UP, HALF_EVEN"),
    narrow: bool = typer.Option(False, "--narrow", help="narrow range (symmetric integers)"),
    input_range: str | None = typer.Option(
        None, "--input-range", help="LO,HI of the inputs when no --calib is given (default: N(0,1))"
    ),
    json_out: bool = typer.Option(False, "--json", help="machine-readable summary on stdout"),
    input_shape: list[str] | None = typer.Option(None, "--input-shape", help="NAME=D0,D1,... for dynamic inputs"),
) -> None:
    """Post-training quantization: insert QONNX Quant nodes (weights, biases, inputs)."""
    from codesign.errors import CodesignError
    from codesign.passes.cost import cost_report
    from codesign.passes.quantize import QuantConfig, Quantize

    _check_output_path(output, model)
    rng = None
    if input_range is not None:
        try:
            lo, hi = (float(v) for v in input_range.split(","))
            rng = (lo, hi)
        except ValueError:
            raise CodesignError(f"--input-range {input_range!r}: expected LO,HI") from None
    config = QuantConfig(
        bits=bits, weight_bits=weight_bits, bias_bits=bias_bits, act_bits=act_bits, layers=_parse_layer_bits(layer),
        narrow=narrow, rounding_mode=rounding, scale=scale, per_channel=per_channel,
    )  # fmt: skip
    ir = load_for_cli(model, input_shape)
    macs = [n for n in ir.graph.node if n.op_type in ("MatMul", "Gemm", "Conv")]
    unknown = {k for k in config.layers if k not in {n.name for n in macs} | {n.op_type for n in macs}}
    if unknown:
        raise CodesignError(
            f"--layer {sorted(unknown)[0]!r}: no MatMul/Gemm/Conv layer or op type of that name in {model}"
        )
    data = _load_calibration(calib) if calib is not None else None
    result = Quantize(config, data, input_range=rng)(ir)
    result.model.validate()
    result.model.save(output)
    info = result.info
    before, after = cost_report(ir), cost_report(result.model)
    summary = {
        "model": str(model), "output": str(output), "ranges": info.ranges_source,
        "layers": {k: {kind: v.get("bits") for kind, v in row.items() if isinstance(v, dict)} for k, row in info.layers.items()},
        "float_layers": info.float_layers, "requantized": info.requantized, "folded_batchnorm": info.folded_batchnorm,
        "bops_mac_before": _bops_mac(before), "bops_mac_after": _bops_mac(after),
    }  # fmt: skip
    if json_out:
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(f"wrote {output}: {len(info.layers)} layers quantized; activation ranges: {info.ranges_source}")
    for name, widths in summary["layers"].items():
        typer.echo(f"  {name}: " + ", ".join(f"{k} {v}b" for k, v in widths.items()))
    for name, why in info.float_layers.items():
        typer.echo(f"  left float: {name} ({why})")
    ratio = summary["bops_mac_before"] / summary["bops_mac_after"] if summary["bops_mac_after"] else float("inf")
    typer.echo(
        f"BOPs (MAC layers) {_fmt_num(summary['bops_mac_before'])} -> {_fmt_num(summary['bops_mac_after'])} ({ratio:.1f}x)"
    )


@app.command()
@cli_command
def prune(
    model: Path = typer.Argument(..., help="ONNX or QONNX model file"),
    output: Path = typer.Option(..., "-o", "--output", help="pruned model to write (.onnx)"),
    sparsity: float | None = typer.Option(
        None, "--sparsity", help="share of weights zeroed (or, with --structured, of channels removed per layer)"
    ),
    structured: bool = typer.Option(False, "--structured", help="remove whole neurons/channels (shapes shrink)"),
    scope: str = typer.Option("layer", "--scope", help="unstructured: 'layer' (each layer to the target) or 'global'"),
    criterion: str = typer.Option("l1", "--criterion", help="structured: 'l1' (incoming weights) or 'outgoing'"),
    pattern: str | None = typer.Option(
        None, "--pattern", help="N:M pattern pruning, e.g. 2:4 (keep N of every M inputs); no --sparsity"
    ),
    norm: str | None = typer.Option(
        None, "--norm", help="structured: rank channels by 'l1' or 'l2' norm of incoming weights"
    ),
    target: str | None = typer.Option(
        None, "--estimate", help="also report hls4ml-estimated resources on this part (e.g. vu13p)"
    ),
    json_out: bool = typer.Option(False, "--json", help="machine-readable summary on stdout"),
    input_shape: list[str] | None = typer.Option(None, "--input-shape", help="NAME=D0,D1,... for dynamic inputs"),
) -> None:
    """Magnitude pruning (zeros the cost passes discount) or structured channel removal."""
    from codesign.errors import CodesignError
    from codesign.passes.cost import cost_report
    from codesign.passes.prune import MagnitudePrune, StructuredPrune
    from codesign.passes.prune_nm import NMPrune, estimated_resources, parse_pattern

    _check_output_path(output, model)
    if pattern is not None and (structured or sparsity is not None):
        raise CodesignError("--pattern N:M fixes the sparsity; drop --sparsity/--structured")
    if pattern is None and sparsity is None:
        raise CodesignError("give --sparsity (or --pattern N:M)")
    if norm is not None and not structured:
        raise CodesignError("--norm ranks channels: it needs --structured")
    if pattern is not None:
        pass_ = NMPrune(*parse_pattern(pattern))
    elif structured:
        pass_ = StructuredPrune(fraction=sparsity, criterion=norm or criterion)
    else:
        pass_ = MagnitudePrune(sparsity, scope)
    ir = load_for_cli(model, input_shape)
    result = pass_(ir)
    result.model.validate()
    result.model.save(output)
    before, after = cost_report(ir).totals, cost_report(result.model).totals
    summary = {
        "model": str(model), "output": str(output), "structured": structured, "layers": result.info.layers,
        "skipped": result.info.skipped, "weight_sparsity": result.info.sparsity, "before": before, "after": after,
    }  # fmt: skip
    if target is not None:
        summary["estimate"] = {"target": target, "before": estimated_resources(ir, target),
                               "after": estimated_resources(result.model, target)}  # fmt: skip
    if json_out:
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(f"wrote {output}")
    for name, row in result.info.layers.items():
        if structured:
            typer.echo(f"  {name}: removed {len(row['removed'])} of {row['channels']} channels")
        else:
            typer.echo(f"  {name}: sparsity {row['before']:.1%} -> {row['after']:.1%}")
    for name, why in result.info.skipped.items():
        typer.echo(f"  kept: {name} ({why})")
    typer.echo(
        f"params {_fmt_num(before['params'])} -> {_fmt_num(after['params'])}, sparsity {before['sparsity']:.1%} -> "
        f"{after['sparsity']:.1%}, MACs {_fmt_num(before['macs'])} -> {_fmt_num(after['macs'])}, "
        f"BOPs {_fmt_num(before['bops'])} -> {_fmt_num(after['bops'])}"
    )
    if target is not None:
        est = summary["estimate"]
        typer.echo(
            f"estimated on {target} (hls4ml, reuse 1): "
            + ", ".join(
                f"{k} {_fmt_num(est['before'][k])} -> {_fmt_num(est['after'][k])}" for k in ("LUT", "FF", "DSP")
            )
        )


# --- backend commands (issue 4): insert below this line ---
def _parse_reuse(specs: list[str] | None) -> tuple[int | None, dict[str, int]]:
    """``--reuse-factor 4`` (global) and ``--reuse-factor LAYER=8`` (per layer) -> (global, {layer: n})."""
    from codesign.errors import CodesignError

    glob: int | None = None
    layers: dict[str, int] = {}
    for spec in specs or []:
        name, sep, value = spec.rpartition("=")
        try:
            n = int(value)
        except ValueError:
            raise CodesignError(f"--reuse-factor {spec!r}: expected N or LAYER=N") from None
        if sep:
            layers[name] = n
        else:
            glob = n
    return glob, layers


@app.command()
@cli_command
def compile(
    model: Path = typer.Argument(..., help="ONNX or QONNX model file"),
    target: str = typer.Option(..., "--target", "-t", help="FPGA target (codesign targets) or a full part name"),
    output: Path = typer.Option(..., "--output", "-o", help="output folder (refused if it exists, unless --force)"),
    backend: str = typer.Option("hls4ml", "--backend", help="hls4ml, finn or rtl (alkaid Verilog, vendor-free)"),
    io: str = typer.Option("parallel", "--io", help="hls4ml I/O: parallel or stream"),
    strategy: str = typer.Option("latency", "--strategy", help="hls4ml strategy: latency, resource or da"),
    reuse_factor: list[str] | None = typer.Option(None, "--reuse-factor", help="N (global) or LAYER=N; repeatable"),
    clock: float | None = typer.Option(None, "--clock", help="clock period in ns (default: the target's)"),
    force: bool = typer.Option(False, "--force", help="replace an existing output folder"),
    verify: bool = typer.Option(
        False,
        "--verify",
        help="hls4ml: C-simulate, rtl: simulate (iverilog), finn: run the written model and pair, vs the "
        "reference; exit 3 if it fails",
    ),
    samples: int = typer.Option(
        100,
        "--samples",
        help="random samples for --verify (a float model is verified on its calibration inputs instead)",
    ),
    latency_cutoff: float = typer.Option(5.0, "--latency-cutoff", help="rtl: alkaid delay (~ns) per pipeline stage"),
    hdl: str = typer.Option("verilog", "--hdl", help="rtl: verilog or vhdl"),
    synth: bool = typer.Option(False, "--synth", help="rtl: yosys synth_xilinx, report yosys LUT/FF/CARRY"),
    target_fps: int | None = typer.Option(None, "--target-fps", help="FINN: frames/s target (default: from estimates)"),
    inputs: Path | None = typer.Option(None, "--inputs", help="FINN: .npy sample for input.npy/expected_output.npy"),
    input_shape: list[str] | None = typer.Option(None, "--input-shape", help="NAME=D0,D1,... for dynamic inputs"),
    calib: Path | None = typer.Option(
        None,
        "--calib",
        help="float models: inputs to choose fixed-point types on (.npy; several inputs: .npz by input name)",
    ),
    tolerance: float | None = typer.Option(
        None, "--tolerance", help="float models: max abs output error (default: top-1 agreement >= 99.5%)"
    ),
) -> None:
    """Compile a model for an FPGA target: an hls4ml project, a FINN build folder or rtl (alkaid).

    A float model compiled with hls4ml first gets per-layer fixed-point types chosen on
    calibration data (``--calib``, else a synthetic N(0, 1) set, said so) to meet ``--tolerance``.
    ``--verify`` exits 3 when the model misses what it must meet (bit-exact when power-of-two
    quantized, else its tolerance).
    """
    import numpy as np

    from codesign.backends.api import compile as compile_model
    from codesign.backends.targets import get_target
    from codesign.errors import EXIT_VERIFY_FAILED, CodesignError

    tgt = get_target(target)  # a bad target: one line, before loading
    rf, layer_rf = _parse_reuse(reuse_factor)
    options: dict[str, Any] = {"clock_ns": clock}
    if backend == "hls4ml":
        options.update(io=io, strategy=strategy, reuse_factor=rf or 1, layer_reuse=layer_rf, tolerance=tolerance,
                       calib=_load_calibration(calib) if calib is not None else None)  # fmt: skip
    elif backend == "rtl":
        options.update(latency_cutoff=latency_cutoff, hdl=hdl, synth=synth)
    elif backend == "finn":
        sample = None
        if inputs is not None:
            try:
                sample = np.load(inputs)
            except (OSError, ValueError) as exc:
                raise CodesignError(f"--inputs {inputs}: cannot read .npy ({exc})") from None
        options.update(target_fps=target_fps, reuse_factor=rf, inputs=sample)
    result = compile_model(
        model, tgt, backend, output=output, force=force, verify=verify, samples=samples,
        input_shapes=parse_input_shapes(input_shape), log=typer.echo, **options,
    )  # fmt: skip
    for line in _result_lines(result):
        typer.echo(line)
    if result.passed is False:
        fail(result.verdict_line or "verification failed", code=EXIT_VERIFY_FAILED)


def _result_lines(result: Any) -> list[str]:
    """What ``codesign compile`` prints about a finished project."""
    from codesign.backends.verify import VerifyReport

    tgt, m = result.target, result.manifest
    if result.backend == "rtl":
        info = m["rtl"]
        lines = [(f"rtl ({info['hdl']}) project for {tgt.name} ({tgt.part}) written to {result.output}: {info['stages']} "
                 f"pipeline stages, alkaid cost {info['alkaid_cost']:.0f} adder bits, {info['reg_bits']} register bits")]  # fmt: skip
        v = m.get("verify")
        if v:
            lines.append(f"verified {v['samples']} samples vs the reference: {v['interpreter']['mismatches']} mismatches "
                         f"in alkaid's interpreter, {v['simulation']['mismatches']} in iverilog; latency "
                         f"{v['latency_cycles']} clock cycles")  # fmt: skip
        s = m.get("synth")
        if s:
            lines.append(f"{s['counted_by']}: LUT {s['LUT']}, FF {s['FF']}, CARRY {s['CARRY']}")
        return lines
    totals = m["cost"]["totals"]
    lines = [(f"{result.backend} {'project' if result.backend == 'hls4ml' else 'build folder'} for {tgt.name} "
             f"({tgt.part}) written to {result.output}: {_fmt_num(totals['macs'])} MACs, {_fmt_num(totals['bops'])} BOPs")]  # fmt: skip
    if result.verify:
        keys = VerifyReport.__dataclass_fields__
        lines.append(VerifyReport(**{k: v for k, v in result.verify.items() if k in keys}).summary())
    f = m.get("verify_float")
    if f:
        top1 = f.get("top1_agreement")
        lines.append(f"vs the float model (onnxruntime) on {f['samples']} calibration inputs: max abs error "
                     f"{f['max_abs_error']:.3g}" + (f", top-1 agreement {top1:.2%}" if top1 is not None else ""))  # fmt: skip
    if result.passed:
        lines.append(result.verdict_line)
    return lines


@app.command()
@cli_command
def targets(json_out: bool = typer.Option(False, "--json", help="machine-readable JSON on stdout")) -> None:
    """List FPGA targets: part, resources, default clock, backends."""
    from codesign.backends.targets import RESOURCE_KEYS, list_targets

    items = list_targets()
    if json_out:
        typer.echo(json.dumps({t.name: t.to_dict() for t in items}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="FPGA targets (device totals from vendor data sheets)")
    for col in ("target", "part", *RESOURCE_KEYS, "clock ns", "backends", "board"):
        table.add_column(col, justify="right" if col in RESOURCE_KEYS or col == "clock ns" else "left")
    for t in items:
        board = ", ".join(b for b in (t.hls4ml_board, t.finn_board) if b) or "-"
        table.add_row(
            t.name, t.part, *(f"{t.resources.get(k, 0):,}" for k in RESOURCE_KEYS), f"{t.default_clock_ns:g}",
            ", ".join(t.backends), board,
        )  # fmt: skip
    Console(width=max(140, Console().width)).print(table)


# --- estimation commands (issue 5): insert below this line ---
@app.command()
@cli_command
def estimate(
    model: Path = typer.Argument(..., help="ONNX or QONNX model file"),
    target: str | None = typer.Option(None, "--target", help="FPGA target (codesign targets), e.g. vu13p"),
    estimator: str = typer.Option(
        "hls4ml", "--estimator", help="hls4ml (analytic), da (alkaid, multiplier-free) or rule4ml (learned)"
    ),
    strategy: str = typer.Option("latency", "--strategy", help="hls4ml strategy: latency or resource"),
    reuse_factor: int = typer.Option(1, "--reuse-factor", help="hls4ml reuse factor (all layers)"),
    clock: float | None = typer.Option(None, "--clock", help="clock period in ns (default: the target's, else 5)"),
    io_type: str = typer.Option("io_parallel", "--io-type", help="io_parallel or io_stream"),
    tool: str | None = typer.Option(None, "--tool", help="HLS tool the design is synthesised with: vivado or vitis"),
    budget: float = typer.Option(100.0, "--budget", help="percent of the target a design may use to fit"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable JSON on stdout"),
    input_shape: list[str] | None = typer.Option(None, "--input-shape", help="NAME=D0,D1,... for dynamic inputs"),
) -> None:
    """Per-layer LUT/FF/DSP/BRAM/latency estimate, totals, % of the target and whether it fits."""
    from codesign.passes.estimate import EstimateConfig, get_estimator, target_resources

    resources = target_resources(target) if target is not None else None  # bad target: one line, before loading
    if clock is None and target is not None:
        from codesign.backends.targets import get_target

        clock = get_target(target).default_clock_ns
    config = EstimateConfig(target, clock or 5.0, strategy, reuse_factor, io_type, tool)
    est = get_estimator(estimator, config)
    ir = load_for_cli(model, input_shape)
    report = est(ir).info
    verdict = report.fits(resources, budget) if resources is not None else None
    if json_out:
        payload = {"model": str(model), **report.to_dict(), "fits": verdict.to_dict() if verdict else None}
        typer.echo(json.dumps(payload, indent=2, default=float))
        return
    _print_estimate_table(str(model), report, verdict)


def _print_estimate_table(title: str, report: Any, verdict: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from codesign.passes.estimate import RESOURCES

    c = report.config
    table = Table(
        title=f"{title}  ({report.estimator}: {c.strategy}, RF {c.reuse_factor}, {c.io_type}, {c.clock_ns:g} ns"
        + (f", {c.tool})" if c.tool else ")")
    )
    for col in ("layer", "op", *RESOURCES, "latency", "II", "note"):
        table.add_column(col, justify="left" if col in ("layer", "op", "note") else "right")
    for r in report.layers:
        table.add_row(
            r.name, r.op, *(_fmt_num(getattr(r, k)) for k in RESOURCES), str(r.latency_cycles), str(r.ii), r.note
        )
    t = report.totals
    table.add_section()
    table.add_row("total", "", *(_fmt_num(t[k]) for k in RESOURCES), str(t["latency_cycles"]), str(t["ii"]), "")
    if verdict is not None:
        table.add_row(f"% of {c.target}", "", *(f"{verdict.usage[k]['percent']:.2f}%" for k in RESOURCES), "", "", "")
    console = Console(width=max(140, Console().width))
    console.print(table)
    line = f"latency {t['latency_cycles']} cycles = {t['latency_ns']:.4g} ns, II {t['ii']} cycles"
    if verdict is not None:
        word = "fits" if verdict.ok else "does NOT fit"
        line += f"; {word} in {verdict.budget_pct:g}% of {c.target} (limiting: {verdict.limiting})"
    if report.unsupported:
        line += f"; ops without a cost model: {', '.join(report.unsupported)}"
    console.print(line)
    if report.interval:
        band = ", ".join(f"{k} {_fmt_num(lo)}-{_fmt_num(hi)}" for k, (lo, hi) in report.interval.items() if hi > 0)
        console.print(f"90% interval: {band}")
    if report.extrapolated:
        console.print(f"extrapolates beyond the calibration data: {'; '.join(report.extrapolated)}")


# --- search commands (issue 7): insert below this line ---


@app.command()
@cli_command
def search(
    space: Path = typer.Argument(..., help="search-space YAML (see examples/search/)"),
    output: Path | None = typer.Option(None, "-o", "--output", help="run folder (default: runs/<space name>)"),
    trials: int | None = typer.Option(None, "--trials", min=1, help="trials to run in total (default: the YAML's)"),
    workers: int = typer.Option(1, "--workers", min=1, help="local worker processes for training"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in -o from its trial store"),
    cluster: str | None = typer.Option(
        None,
        "--cluster",
        help="train on a Dask cluster: tcp://HOST:PORT (a running scheduler) or local:N (N local workers)",
    ),
    stage: str = typer.Option(
        "global", "--stage", help="global (NSGA-II or DARTS), local (QAT + TPE + pruning on its front) or all"
    ),
    compile_: bool = typer.Option(
        False,
        "--compile",
        help="compile the chosen model (local front; global front with --stage global) and verify it",
    ),
    method: str | None = typer.Option(
        None, "--method", help="global search method: nsga2 or darts (default: the YAML's)"
    ),
    proxy: str | None = typer.Option(
        None, "--proxy", help="zero-cost proxy pre-screening NSGA-II offspring: synflow, naswot, grad_norm or none"
    ),
    distill: bool | None = typer.Option(
        None,
        "--distill/--no-distill",
        help="local stage: distil from the float twin (default: the YAML's local.distill)",
    ),
    optuna_storage: str | None = typer.Option(
        None,
        "--optuna-storage",
        help="also write every trial, as it finishes, into an Optuna study: sqlite:///FILE.db or a journal file",
    ),
    study_name: str | None = typer.Option(
        None, "--study-name", help="the Optuna study's name (default: the run folder's)"
    ),
    device: str | None = typer.Option(
        None,
        "--device",
        help="train on auto (CUDA when present), cpu, cuda or cuda:N (default: the YAML's training.device)",
    ),
) -> None:
    """Architecture search: global NSGA-II or DARTS (accuracy vs BOPs/resources), local QAT + pruning, compile."""
    from codesign.errors import CodesignError
    from codesign.search.data import load_dataset
    from codesign.search.pipeline import STAGES, load_pipeline, run_pipeline

    if stage not in STAGES:
        raise CodesignError(f"--stage must be one of {', '.join(STAGES)}, not {stage!r}")
    cfg = load_pipeline(space)
    if method is not None or proxy is not None or device is not None:
        from codesign.search.space import override_search

        cfg.space = override_search(cfg.space, space, method=method, proxy=proxy, device=device)
        if device is not None:
            from dataclasses import replace

            cfg.local = replace(cfg.local, device=None)  # --device wins over local.device too
    if distill is not None:  # --distill keeps the YAML's alpha/temperature, else the defaults
        from dataclasses import replace

        cfg.local = replace(cfg.local, distill=(cfg.local.distill or True) if distill else None)
    spec = cfg.space
    if trials is not None and spec.search.method == "darts":
        raise CodesignError(
            "--trials applies to method nsga2; darts trains one net per budget x derive_top x learning rate"
        )
    if compile_ and not spec.target:  # before any training, not after it
        raise CodesignError(f"{space}: --compile needs a 'target' in the search space")
    if optuna_storage:  # a bad URL fails before the data is loaded
        from codesign.search.optuna_study import open_storage

        open_storage(optuna_storage)
    study = {"optuna_storage": optuna_storage, "study_name": study_name}
    from codesign.search.device import resolve_device

    resolve_device(spec.training.device)  # a missing GPU is refused before any data is loaded
    data = load_dataset(spec.data)  # data errors surface before the progress bar starts
    if stage == "global" and not compile_:
        _search_global(spec, data, output, trials, workers, resume, cluster, **study)
        return

    def echo(line: str) -> None:
        typer.echo(line, err=True)

    out = run_pipeline(
        cfg, output, stage=stage, compile=compile_, resume=resume, log=echo, data=data,
        run_global=lambda sp, rd, resume, data: _search_global(sp, data, rd, trials, workers, resume, cluster, **study),
    )  # fmt: skip
    if out.local_summary is not None:
        ls = out.local_summary
        typer.echo(
            f"local stage: {len(ls.results)} QAT/pruning results in {out.run_dir}; local Pareto front: {len(ls.front)}"
        )
        for r in ls.front[:10]:
            m = r["metrics"]
            typer.echo(f"  trial {r['candidate']:>4} w{r['bits']} round {r['round']:>2}  acc {m['accuracy']:.4f}  "
                       f"sparsity {m['sparsity']:.3f}  BOPs {_fmt_num(m['bops']):>7}" + (f"  LUT {m['LUT']:.0f}" if "LUT" in m else ""))  # fmt: skip
    if out.chosen is not None:
        v, m = out.chosen["verify"] or {}, out.chosen["model"]
        if out.chosen["project"]:
            typer.echo(f"compiled trial {m['candidate']} w{m['bits']} round {m['round']} (acc {m['accuracy']:.4f}, sparsity "
                       f"{m['sparsity']:.3f}) -> {out.run_dir / out.chosen['project']}: "
                       f"{'bit-exact' if v.get('bit_exact') else 'NOT bit-exact'} on {v.get('samples')} samples")  # fmt: skip
        if out.chosen.get("finn"):
            typer.echo(f"FINN build folder for trial {m['candidate']} -> {out.run_dir / out.chosen['finn']['folder']}")


def _search_global(spec: Any, data: Any, output: Path | None, trials: int | None, workers: int, resume: bool,
                   cluster: str | None, **study: Any) -> Any:  # fmt: skip
    """The global stage with its progress bar and summary lines (returns the RunSummary)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from codesign.search.run import check_unlocked, run_search

    check_unlocked(output, spec)
    total = trials or spec.search.trials
    if spec.search.method == "darts":
        from codesign.search.darts import planned_trials

        total = planned_trials(spec)
    console = Console(stderr=True)
    columns = (
        BarColumn(bar_width=12), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )  # fmt: skip
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("search", total=total, status="gen 0: training")

        def on_progress(p: Any) -> None:
            best = " ".join(f"{k[:4]} {_fmt_num(v) if k != 'accuracy' else f'{v:.4f}'}" for k, v in p.best.items())
            bar.update(
                task, completed=min(p.done, total), status=f"gen {p.generation} front {p.pareto_size} best {best}"
            )

        summary = run_search(
            spec,
            output,
            trials=total,
            workers=workers,
            resume=resume,
            on_progress=on_progress,
            data=data,
            cluster=cluster,
            **study,
        )
        bar.update(task, completed=min(summary.trials, total))
    typer.echo(f"{summary.trials} trials in {summary.run_dir}; Pareto front: {len(summary.pareto)} candidates")
    if study.get("optuna_storage"):
        typer.echo(f"Optuna study {study.get('study_name') or summary.run_dir.name!r} in {study['optuna_storage']} "
                   f"(view: optuna-dashboard {study['optuna_storage']})")  # fmt: skip
    if summary.trials and not summary.pareto:
        typer.echo("  no feasible candidate: every trial breaks a budget in 'constraints'")
    for t in summary.pareto[:10]:
        typer.echo(
            f"  trial {t.id:>4}  acc {t.metrics['accuracy']:.4f}  BOPs {_fmt_num(t.metrics['bops']):>7}  {t.genome.label()}"
        )
    for b in summary.baselines:
        best = summary.best_vs_baseline(b)
        line = f"baseline {b.name}: acc {b.metrics['accuracy']:.4f}, BOPs {_fmt_num(b.metrics['bops'])}"
        if best is not None:
            line += f"; cheapest searched model at least as accurate: trial {best.id}, {b.metrics['bops'] / best.metrics['bops']:.1f}x fewer BOPs"
        typer.echo(line)
    return summary


# --- report commands (issue 8): insert below this line ---


@app.command()
@cli_command
def report(
    run_dir: Path = typer.Argument(..., help="a search run folder (codesign search -o RUN_DIR)"),
    compare: list[Path] | None = typer.Option(
        None, "--compare", help="another run folder whose global front goes on the same plot (repeatable)"
    ),
) -> None:
    """Write RUN_DIR/report.html: every trial (interactive), both fronts, per-layer tables, estimated vs verified."""
    from codesign.search.report import write_report

    with _TrialProgress("costing trials") as progress:
        out = write_report(run_dir, compare or [], progress=progress)
    typer.echo(f"wrote {out}")


class _TrialProgress:
    """``progress(done, total)`` callback drawing a bar on stderr from its first call (not while inputs are checked)."""

    def __init__(self, label: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn(label), BarColumn(bar_width=20), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=Console(stderr=True), transient=True)  # fmt: skip
        self.task = self.bar.add_task(label, total=None)

    def __call__(self, done: int, total: int) -> None:
        if not self.bar.live.is_started:
            self.bar.start()
        self.bar.update(self.task, completed=done, total=total)

    def __enter__(self) -> _TrialProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar.live.is_started:
            self.bar.stop()


@app.command("export-study")
@cli_command
def export_study(
    run_dir: Path = typer.Argument(..., help="a search run folder (codesign search -o RUN_DIR)"),
    url: str = typer.Argument(
        ..., help="Optuna storage: sqlite:///FILE.db (any SQLAlchemy URL) or a journal file path"
    ),
    study_name: str | None = typer.Option(None, "--study-name", help="the study's name (default: the run folder's)"),
) -> None:
    """Write a finished run's trials (trials.sqlite) into an Optuna study, for optuna-dashboard."""
    from codesign.search.optuna_study import export_run

    with _TrialProgress("exporting trials") as progress:
        study, added = export_run(run_dir, url, study_name, progress)
    typer.echo(f"{added} trials added to Optuna study {study.study_name!r} in {url} ({len(study.trials)} in all; "
               f"view: optuna-dashboard {url})")  # fmt: skip


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except SystemExit as exc:
        code = exc.code
        sys.exit(code)


if __name__ == "__main__":
    main()
