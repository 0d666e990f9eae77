"""The open RTL backend: IR -> alkaid -> Verilog (or VHDL), checked in iverilog, counted by yosys.

hls4ml and FINN end in vendor HLS tools nobody can run in CI; alkaid turns fixed-point
dense layers into multiplier-free shift-add RTL with nothing but numpy. The IR (dense,
Conv1d/2d as unrolled im2col, Add, Relu, BatchNorm ...) is traced through the ``da``
estimator's tracer (:func:`codesign.passes.estimate.da_model.trace_model`, one tracer
for both), pipelined at ``latency_cutoff`` alkaid delay units per stage, and
written with alkaid's own Vivado/Quartus TCL and XDC/SDC constraints, plus a testbench.

Rounding: QONNX ``Quant(rounding_mode=ROUND)`` rounds half to even (``np.round``), alkaid
rounds half up (``floor(x + 1/2)``). The RTL is traced with ``exact_rounding=True``
(:func:`codesign.passes.estimate.da_model.round_exact`): every ROUND/HALF_EVEN quantizer
that drops fraction bits adds ``2^-(f+1) - 2^-fx`` plus its own target LSB (shifted to
the input LSB) and then truncates, which is exactly half to even, for two adders per
element; QONNX ``HALF_UP`` (half away from zero) uses ``x >= 0`` instead of the LSB;
``FLOOR`` is alkaid's truncation; CEIL/UP/DOWN/HALF_DOWN are refused by name. So the RTL
equals the IR's reference execution bit for bit, not just alkaid's own model of it.

Verification (``verify=True``) draws inputs on the input port's fixed-point grid (a
float input read only by ``BipolarQuant`` is a one-bit port ``b`` standing for ``2*b - 1``,
which the reference is fed) and compares the reference with (1) alkaid's bit-exact interpreter and (2) an iverilog
simulation of the written Verilog, which also measures the latency in clock cycles (the
first cycle the output is no longer X after the first vector enters). ``synth=True``
runs ``yosys synth_xilinx -family xcup -flatten`` and reports yosys' own LUT/FF/CARRY
cell counts (not Vivado's).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from codesign.backends.output import atomic_output_dir, check_destination
from codesign.backends.targets import Target, get_target
from codesign.errors import CodesignError, UnsupportedModelError
from codesign.ir.model import Model

HDLS = ("verilog", "vhdl")
#: Debian packages that provide each external tool.
TOOL_PACKAGES = {"iverilog": "iverilog", "vvp": "iverilog", "yosys": "yosys"}
#: Extra clock cycles the testbench runs after the last vector (upper bound on the latency it can see).
FLUSH_CYCLES = 64


@dataclass
class RtlOptions:
    """What the RTL project is built with."""

    latency_cutoff: float = 5.0
    hdl: str = "verilog"
    clock_ns: float | None = None
    project_name: str = "model"

    def validate(self) -> None:
        if self.hdl not in HDLS:
            raise CodesignError(f"--hdl must be one of {', '.join(HDLS)}, not {self.hdl!r}")
        if not self.latency_cutoff > 0:
            raise CodesignError("--latency-cutoff must be > 0 (alkaid delay units per pipeline stage)")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.project_name):
            raise CodesignError(f"project name {self.project_name!r} is not a Verilog identifier")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def require_tool(tool: str) -> str:
    """The tool's path, or a one-line error naming the Debian package to install."""
    path = shutil.which(tool)
    if path is None:
        pkg = TOOL_PACKAGES.get(tool, tool)
        raise CodesignError(f"{tool} not found: install the Debian package '{pkg}' (apt-get install -y {pkg})")
    return path


# ------------------------------------------------------------------ trace + write
def trace(ir: Model, opts: RtlOptions) -> tuple[Any, Any]:
    """(CombLogic, Pipeline) of the whole model with QONNX-exact rounding."""
    from codesign.passes.estimate.da_model import check_supported, check_unrolled, trace_model

    try:
        from alkaid.codegen import RTLModel
    except ImportError:
        raise UnsupportedModelError("the rtl backend needs alkaid: pip install alkaid") from None
    try:
        check_supported(ir)
        check_unrolled(ir)  # before alkaid solves a constant-matrix multiply per output pixel for hours
        comb = trace_model(ir, opts.latency_cutoff, exact_rounding=True)
    except UnsupportedModelError as exc:  # the shared tracer words it for the estimator
        msg = str(exc).replace("the 'da' estimator", "alkaid")
        raise UnsupportedModelError(f"rtl backend: {msg}") from None
    # alkaid fuses ternary adders, then pipelines at latency_cutoff: this FSM is what gets written and counted
    return comb, RTLModel(comb, ".", latency_cutoff=opts.latency_cutoff, print_latency=False).fsm


@dataclass(frozen=True)
class PortFormat:
    """Uniform per-element format of the ``<name>_wrapper`` ports: width, fraction bits, signedness."""

    count: int
    width: int
    frac: int
    signed: bool

    @classmethod
    def of(cls, kifs: np.ndarray) -> PortFormat:
        k, i, f = (int(np.max(a)) for a in kifs)
        return cls(count=int(np.shape(kifs)[1]), width=k + i + f, frac=f, signed=bool(k))

    @property
    def bits(self) -> int:
        return self.count * self.width

    def pack(self, rows: np.ndarray) -> list[str]:
        """One hex word per sample: element j at bits [width*j, width*(j+1))."""
        ints = np.floor(np.asarray(rows, dtype=np.float64) * 2.0**self.frac).astype(np.int64)
        mask = (1 << self.width) - 1
        digits = (self.bits + 3) // 4
        out = []
        for row in ints:
            word = 0
            for j, v in enumerate(row):
                word |= (int(v) & mask) << (self.width * j)
            out.append(f"{word:0{digits}x}")
        return out

    def unpack(self, word: int) -> list[float]:
        mask = (1 << self.width) - 1
        vals = []
        for j in range(self.count):
            v = (word >> (self.width * j)) & mask
            if self.signed and v >> (self.width - 1):
                v -= 1 << self.width
            vals.append(v * 2.0**-self.frac)
        return vals


def io_kifs(pipe: Any) -> tuple[np.ndarray, np.ndarray]:
    """(k, i, f) rows per element of the input and output ports of an alkaid ``FSM`` (or ``CombLogic``)."""
    if hasattr(pipe, "inp_kifs"):
        return np.asarray(pipe.inp_kifs, dtype=np.int64), np.asarray(pipe.out_kifs, dtype=np.int64)
    return tuple(np.array(sig.precisions, dtype=np.int64).T for sig in (pipe.inp_signals[0], pipe.out_signals[0]))


def port_formats(pipe: Any) -> tuple[PortFormat, PortFormat]:
    kin, kout = io_kifs(pipe)
    return PortFormat.of(kin), PortFormat.of(kout)


_TESTBENCH = """`timescale 1ns/1ps
// Streams sim/inputs.hex (one vector per line, one per clock) through {top}_wrapper and
// writes the output seen before every rising edge to outputs.hex; X until the pipeline fills.
module tb_{top};
  localparam NI = {ni}, NO = {no}, FLUSH = {flush};
  reg clk = 0;
  reg [NI-1:0] x;
  wire [NO-1:0] y;
  integer fi, fo, r, extra;
  {top}_wrapper dut(.clk(clk), .model_inp(x), .model_out(y));
  always #1 clk = ~clk;
  initial begin
    fi = $fopen("inputs.hex", "r");
    fo = $fopen("outputs.hex", "w");
    x = {{NI{{1'bx}}}};
    extra = 0;
    while (extra < FLUSH) begin
      @(negedge clk);
      $fdisplay(fo, "%h", y);
      r = $fscanf(fi, "%h\\n", x);
      if (r != 1) begin x = {{NI{{1'bx}}}}; extra = extra + 1; end
    end
    $fclose(fo);
    $finish;
  end
endmodule
"""


def write_project(pipe: Any, tgt: Target, opts: RtlOptions, folder: Path) -> dict[str, Any]:
    """alkaid's RTL project (sources, TCL, constraints) plus our testbench into ``folder``."""
    from alkaid.codegen import RTLModel

    clock = opts.clock_ns or tgt.default_clock_ns
    rtl = RTLModel(pipe, folder, prj_name=opts.project_name, flavor=opts.hdl, part_name=tgt.part, clock_period=clock,
                   print_latency=False, ternary_fuse=False)  # fmt: skip
    rtl.write()
    fin, fout = port_formats(pipe)
    if opts.hdl == "verilog":
        (folder / "sim" / f"tb_{opts.project_name}.v").write_text(
            _TESTBENCH.format(top=opts.project_name, ni=fin.bits, no=fout.bits, flush=FLUSH_CYCLES)
        )
    return {
        "hdl": opts.hdl,
        "clock_ns": clock,
        "stages": int(rtl.latency),  # pipeline stages alkaid schedules (the testbench adds the input register)
        "alkaid_cost": float(sum(float(c.cost) for c in pipe.logic.values())),
        "reg_bits": int(rtl.reg_bits),
        "input_port": asdict(fin),
        "output_port": asdict(fout),
    }


def verilog_sources(folder: Path, top: str) -> list[Path]:
    """The design's Verilog files, wrapper included (lookup_table.v needs memfiles and is unused by dense logic)."""
    src = folder / "src"
    files = [p for p in sorted((src / "static").glob("*.v")) if p.name != "lookup_table.v"]
    return files + sorted(src.glob("logic*.v")) + [src / f"{top}.v", src / f"{top}_wrapper.v"]


# ------------------------------------------------------------------ verification
def sample_port_inputs(ir: Model, pipe: Any, n: int, seed: int = 0) -> np.ndarray:
    """``n`` IR-shaped inputs spread over each input element's own fixed-point grid (all representable)."""
    rng = np.random.default_rng(seed)
    k, i, f = io_kifs(pipe)[0]
    span = 2.0 ** (i + f)  # 2^(integer + fraction bits): the element's number of steps per sign
    ints = np.floor(rng.uniform(-k * span, span, size=(n, len(k))))
    shape = (n, *ir.shape(ir.inputs[0])[1:])
    return (ints * 2.0**-f).reshape(shape).astype(np.float32)


def port_to_model(ir: Model, x: np.ndarray) -> np.ndarray:
    """The model input each port vector stands for: ``2*b - 1`` on a bipolar port (see ``bipolar_port``)."""
    from codesign.passes.estimate.da_model import bipolar_port

    return (2.0 * x - 1.0).astype(np.float32) if bipolar_port(ir, ir.inputs[0]) else x


def simulate(folder: Path, top: str, fin: PortFormat, fout: PortFormat, x: np.ndarray) -> tuple[np.ndarray, int]:
    """iverilog simulation of the written project on ``x``: (outputs per sample, latency in cycles)."""
    iverilog, vvp = require_tool("iverilog"), require_tool("vvp")
    tb = folder / "sim" / f"tb_{top}.v"
    with tempfile.TemporaryDirectory(prefix="codesign-sim-") as tmp:
        work = Path(tmp)
        (work / "inputs.hex").write_text("\n".join(fin.pack(x.reshape(len(x), -1))) + "\n")
        files = [str(p) for p in verilog_sources(folder, top)] + [str(tb)]
        res = subprocess.run(
            [iverilog, "-g2012", "-o", str(work / "tb.vvp"), *files], check=False, capture_output=True, text=True
        )
        if res.returncode:
            raise CodesignError(f"iverilog failed: {(res.stderr or res.stdout).strip().splitlines()[0]}")
        res = subprocess.run([vvp, "-n", str(work / "tb.vvp")], cwd=work, check=False, capture_output=True, text=True)
        if res.returncode:
            raise CodesignError(f"vvp failed: {(res.stderr or res.stdout).strip().splitlines()[0]}")
        lines = (work / "outputs.hex").read_text().split()
    valid = [i for i, ln in enumerate(lines) if not re.search(r"[xXzZ]", ln)]
    if not valid:
        raise CodesignError("simulation: the output never became valid")
    latency = valid[0]
    words = lines[latency : latency + len(x)]
    if len(words) < len(x) or any(re.search(r"[xXzZ]", w) for w in words):
        raise CodesignError(f"simulation: fewer than {len(x)} valid outputs after {latency} cycles")
    return np.array([fout.unpack(int(w, 16)) for w in words]), latency


def verify_rtl(ir: Model, comb: Any, pipe: Any, folder: Path, top: str, samples: int, seed: int = 0) -> dict[str, Any]:
    """Reference vs alkaid's interpreter and vs the iverilog simulation; mismatches must be 0."""
    from codesign.backends.verify import compare, reference_outputs

    if len(ir.inputs) != 1 or len(ir.outputs) != 1:
        raise CodesignError("--verify supports models with one input and one output")
    fin, fout = port_formats(pipe)
    x = sample_port_inputs(ir, pipe, samples, seed)
    ref = reference_outputs(ir, port_to_model(ir, x)).reshape(samples, -1)
    port = {ir.inputs[0]: f"{'s' if fin.signed else 'u'}fixed<{fin.width},{fin.width - fin.frac}>"}
    out: dict[str, Any] = {"samples": samples}
    t0 = time.perf_counter()
    interp = np.asarray(comb.predict(x.reshape(samples, -1)), dtype=np.float64)
    out["interpreter"] = {**compare(ref, interp, port).to_dict(), "mismatches": int(np.sum(ref != interp)),
                          "seconds": round(time.perf_counter() - t0, 3)}  # fmt: skip
    t0 = time.perf_counter()
    sim, latency = simulate(folder, top, fin, fout, x)
    out["simulation"] = {**compare(ref, sim, port).to_dict(), "mismatches": int(np.sum(ref != sim)),
                         "latency_cycles": latency, "seconds": round(time.perf_counter() - t0, 3)}  # fmt: skip
    out["mismatches"] = out["interpreter"]["mismatches"] + out["simulation"]["mismatches"]
    out["latency_cycles"] = latency
    return out


# ------------------------------------------------------------------ synthesis
def parse_stat(text: str) -> dict[str, int]:
    """Cell counts from yosys ``stat`` output: ``NAME COUNT`` (yosys < 0.45) or ``COUNT NAME`` lines."""
    cells: dict[str, int] = {}
    for line in text.splitlines():
        m = re.fullmatch(r"\s+([A-Z][A-Z0-9_]+)\s+(\d+)\s*", line) or re.fullmatch(
            r"\s+(\d+)\s+([A-Z][A-Z0-9_]+)\s*", line
        )
        if m:
            name, count = (m[1], m[2]) if m[1][0].isalpha() else (m[2], m[1])
            cells[name] = int(count)
    return cells


def yosys_counts(cells: dict[str, int]) -> dict[str, Any]:
    luts = {k: v for k, v in cells.items() if re.fullmatch(r"LUT\d", k)}
    return {
        "counted_by": "yosys synth_xilinx -family xcup -flatten (not Vivado)",
        "LUT": sum(luts.values()),
        "FF": sum(v for k, v in cells.items() if k.startswith("FD")),
        "CARRY": sum(v for k, v in cells.items() if k.startswith("CARRY")),
        "LUT_by_size": luts,
    }


def synthesize(folder: Path, top: str) -> dict[str, Any]:
    """``yosys synth_xilinx -family xcup -flatten`` of the written Verilog; yosys' own cell counts."""
    yosys = require_tool("yosys")
    # yosys runs in ``folder`` on paths relative to it: the output path (spaces, ``;``...) never enters the script
    names = [str(p.relative_to(folder)) for p in verilog_sources(folder, top)]
    files = " ".join(names)
    if not all(re.fullmatch(r"[\w./-]+", n) for n in names + [top]):
        raise CodesignError(f"yosys: refusing unsafe Verilog file names or top {top!r} in the script")
    script = f"read_verilog -sv {files}; synth_xilinx -family xcup -flatten -top {top}; tee -o /dev/stdout stat"
    t0 = time.perf_counter()
    res = subprocess.run([yosys, "-q", "-p", script], check=False, capture_output=True, text=True, cwd=folder)
    if res.returncode:
        raise CodesignError(f"yosys failed: {(res.stderr or res.stdout).strip().splitlines()[-1]}")
    (folder / "yosys_stat.txt").write_text(res.stdout)
    return {**yosys_counts(parse_stat(res.stdout)), "seconds": round(time.perf_counter() - t0, 1)}


# ------------------------------------------------------------------ the compile step
def compile_rtl(
    ir: Model,
    target: str | Target,
    output: str | Path,
    *,
    options: RtlOptions | None = None,
    force: bool = False,
    verify: bool = False,
    samples: int = 500,
    synth: bool = False,
    source: Path | None = None,
) -> Any:
    """Trace, write (and optionally simulate and synthesise) an RTL project at ``output``, atomically."""
    from codesign.backends.compile import CompileResult, _manifest, _version, _write_manifest
    from codesign.backends.verdict import judge_rtl

    tgt = target if isinstance(target, Target) else get_target(target)
    opts = options or RtlOptions()
    opts.validate()
    if verify and samples < 1:
        raise CodesignError("--samples must be >= 1")
    if (verify or synth) and opts.hdl != "verilog":
        raise CodesignError("--verify/--synth run iverilog/yosys on Verilog: use --hdl verilog")
    if verify:
        require_tool("iverilog")
    if synth:
        require_tool("yosys")
    final = Path(output).absolute()
    check_destination(final, force, keep=source)
    timings: dict[str, float] = {}
    with atomic_output_dir(final, force, keep=source) as tmp:
        t0 = time.perf_counter()
        comb, pipe = trace(ir, opts)
        timings["trace_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        info = write_project(pipe, tgt, opts, tmp)
        timings["write_s"] = time.perf_counter() - t0
        report = synth_report = None
        if verify:
            t0 = time.perf_counter()
            report = verify_rtl(ir, comb, pipe, tmp, opts.project_name, samples)
            timings["verify_s"] = time.perf_counter() - t0
        if synth:
            t0 = time.perf_counter()
            synth_report = synthesize(tmp, opts.project_name)
            timings["synth_s"] = time.perf_counter() - t0
        manifest = _manifest(
            ir, source, tgt, "rtl", opts.to_dict(),
            {"rtl": {**info, "alkaid": _version("alkaid"), "rounding": "QONNX ROUND = half to even, exact"},
             "verify": report, "verdict": judge_rtl(report).to_dict() if report else None, "synth": synth_report,
             "timings": timings},
        )  # fmt: skip
        _write_manifest(tmp, manifest)
    return CompileResult(final, "rtl", tgt, manifest, timings)


__all__ = ["HDLS", "PortFormat", "RtlOptions", "compile_rtl", "parse_stat", "require_tool", "simulate", "synthesize",
           "trace", "verify_rtl", "write_project"]  # fmt: skip
