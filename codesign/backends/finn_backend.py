"""The IR as a FINN ``build_dataflow`` folder: model, build config, verification pair, README.

FINN does the hardware mapping itself (streamlining, folding, HLS/RTL layers); what it
needs from us is a clean QONNX model with ``Quant`` in ``qonnx.custom_op.general`` (its
QONNX step matches that domain), a ``dataflow_build_config.json`` whose fields are FINN's
own ``DataflowBuildConfig`` fields, and a reference input/output pair its verification
steps check against. FINN is not imported: its pinned dependencies do not coexist with
this environment, so the config is checked against FINN's field names and enums here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from codesign.backends.lowering import lower, lower_for_finn, refuse_unsupported
from codesign.backends.precision import INPUT_GUARD_FRAC, Fixed, input_type
from codesign.backends.reference import execute
from codesign.backends.targets import Target
from codesign.backends.verify import VerifyReport, sample_inputs
from codesign.errors import CodesignError
from codesign.ir.model import Model

#: ``finn.builder.build_dataflow_config.DataflowBuildConfig`` field names (FINN v0.10 / main).
FINN_CONFIG_FIELDS = frozenset(
    {
        "output_dir", "synth_clk_period_ns", "generate_outputs", "specialize_layers_config_file",
        "folding_config_file", "target_fps", "folding_two_pass_relaxation", "verify_steps", "verify_input_npy",
        "verify_expected_output_npy", "verify_save_full_context", "verify_save_rtlsim_waveforms",
        "stitched_ip_gen_dcp", "signature", "mvau_wwidth_max", "standalone_thresholds", "minimize_bit_width",
        "board", "shell_flow_type", "fpga_part", "auto_fifo_depths", "split_large_fifos", "auto_fifo_strategy",
        "force_python_rtlsim", "large_fifo_mem_style", "fifosim_input_throttle", "fifosim_save_waveform",
        "hls_clk_period_ns", "default_swg_exception", "vitis_platform", "vitis_floorplan_file",
        "vitis_opt_strategy", "save_intermediate_models", "enable_hw_debug", "enable_build_pdb_debug", "verbose",
        "steps", "start_step", "stop_step", "max_multithreshold_bit_width", "rtlsim_batch_size",
        "rtlsim_use_vivado_comps", "input_range_info",
    }
)  # fmt: skip
FINN_REQUIRED = ("output_dir", "synth_clk_period_ns", "generate_outputs")
#: FINN's enums, by field (DataflowOutputType, ShellFlowType, VerificationStepType).
FINN_ENUMS: dict[str, frozenset[str]] = {
    "generate_outputs": frozenset(
        {"stitched_ip", "estimate_reports", "out_of_context_synth", "rtlsim_performance", "bitfile", "pynq_driver",
         "deployment_package"}
    ),
    "shell_flow_type": frozenset({"vivado_zynq", "vitis_alveo"}),
    "verify_steps": frozenset(
        {"finn_onnx_python", "initial_python", "streamlined_python", "folded_hls_cppsim", "node_by_node_rtlsim",
         "stitched_ip_rtlsim"}
    ),
}  # fmt: skip
#: Ops FINN's QONNX ingestion (``step_qonnx_to_finn``) cannot take.
FINN_UNSUPPORTED = {"FloatQuant": "FINN has no minifloat support", "IntQuant": "not handled by FINN's QONNX step"}
#: Share of the target's LUTs the folding estimate may plan for (the rest: FIFOs, DMA, shell).
LUT_SHARE = 0.5

README = """# FINN build folder (written by codesign)

Model: `model.onnx` (cleaned QONNX, quantizers in `qonnx.custom_op.general`).
Target: {target} ({part}){board_line}.

Run FINN's dataflow build on this folder. Xilinx FINN (inside its docker environment):

    ./run-docker.sh build_dataflow {folder}

or finn-plus (from this folder):

    finn build dataflow_build_config.json model.onnx

Outputs go to `{output_dir}/` here: {outputs}.
`input.npy` / `expected_output.npy` are one sample and its output from codesign's
reference execution (qonnx); FINN checks them at the steps {verify}.
Throughput target: {fps} frames/s ({fps_why}).
"""


class FinnConfigError(CodesignError):
    """A dataflow_build_config.json field FINN would reject."""


@dataclass
class FinnOptions:
    """What ``codesign compile --backend finn`` lets a user choose."""

    clock_ns: float | None = None
    target_fps: int | None = None
    reuse_factor: int | None = None
    generate_outputs: list[str] | None = None
    verify_steps: list[str] = field(default_factory=lambda: ["initial_python", "streamlined_python"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "clock_ns": self.clock_ns, "target_fps": self.target_fps, "reuse_factor": self.reuse_factor,
            "generate_outputs": self.generate_outputs, "verify_steps": list(self.verify_steps),
        }  # fmt: skip


def validate_config(cfg: dict[str, Any]) -> None:
    """Raise :class:`FinnConfigError` unless FINN's ``DataflowBuildConfig.from_json`` would accept ``cfg``."""
    unknown = sorted(set(cfg) - FINN_CONFIG_FIELDS)
    if unknown:
        raise FinnConfigError(f"not DataflowBuildConfig fields: {', '.join(unknown)}")
    missing = [k for k in FINN_REQUIRED if k not in cfg]
    if missing:
        raise FinnConfigError(f"dataflow_build_config.json lacks required fields: {', '.join(missing)}")
    for key, allowed in FINN_ENUMS.items():
        value = cfg.get(key)
        values = value if isinstance(value, list) else [value] if value is not None else []
        bad = [v for v in values if v not in allowed]
        if bad:
            raise FinnConfigError(f"{key}: {', '.join(map(str, bad))} not one of {', '.join(sorted(allowed))}")
    if not isinstance(cfg["synth_clk_period_ns"], (int, float)) or cfg["synth_clk_period_ns"] <= 0:
        raise FinnConfigError("synth_clk_period_ns must be a positive number")
    if cfg.get("board") is None and cfg.get("fpga_part") is None:
        raise FinnConfigError("one of board or fpga_part is required")


def folding_fps(ir: Model, target: Target, clock_ns: float, reuse_factor: int | None) -> tuple[int, str]:
    """Target frames/s from our cost numbers: the fully parallel rate divided by a folding factor.

    A fully unfolded FINN MVAU costs about one LUT per weight bit x activation bit, i.e.
    the model's BOPs; the folding factor is the smallest one that fits those into
    ``LUT_SHARE`` of the target's LUTs (or the user's ``--reuse-factor``).
    """
    from codesign.passes.cost import cost_report

    bops = cost_report(ir).bops
    budget = LUT_SHARE * target.resources.get("LUT", 0)
    fold = reuse_factor or max(1, math.ceil(bops / budget) if budget else 1)
    fps = int(1e9 / clock_ns / fold)
    why = (
        f"--reuse-factor {fold}"
        if reuse_factor
        else f"{bops:.3g} BOPs over {LUT_SHARE:.0%} of {int(budget / LUT_SHARE)} LUTs: fold {fold}"
    )
    return fps, why


def build_config(ir: Model, target: Target, options: FinnOptions, has_pair: bool) -> tuple[dict[str, Any], str]:
    """The ``dataflow_build_config.json`` content (validated) and the reason for its fps target."""
    clock = float(options.clock_ns or target.default_clock_ns)
    fps, why = (
        (options.target_fps, "--target-fps")
        if options.target_fps
        else folding_fps(ir, target, clock, options.reuse_factor)
    )
    on_board = target.finn_board is not None and target.shell_flow_type is not None
    outputs = options.generate_outputs or (
        ["estimate_reports", "bitfile", "pynq_driver", "deployment_package"]
        if on_board
        else ["estimate_reports", "stitched_ip", "out_of_context_synth"]
    )
    cfg: dict[str, Any] = {
        "output_dir": "output",
        "synth_clk_period_ns": clock,
        "target_fps": fps,
        "generate_outputs": outputs,
        "enable_build_pdb_debug": False,
        "save_intermediate_models": True,
    }
    if on_board:
        cfg["board"] = target.finn_board
        cfg["shell_flow_type"] = target.shell_flow_type
    else:
        cfg["fpga_part"] = target.part
    if has_pair and options.verify_steps:
        cfg["verify_steps"] = list(options.verify_steps)
        cfg["verify_input_npy"] = "input.npy"
        cfg["verify_expected_output_npy"] = "expected_output.npy"
    validate_config(cfg)
    return cfg, why


def grid_types(model: Model) -> dict[str, Fixed]:
    """Each quantized input's grid for drawn samples: the input quantizer's own, without rounding ties (which
    FINN's thresholds break upwards where QONNX's Quant rounds half to even)."""
    types = {}
    for name in model.inputs:
        t = input_type(model, name)
        if t is not None and not model.dtype(name).is_integer():
            t = Fixed(t.width - INPUT_GUARD_FRAC, t.integer, t.signed)
        if t is not None:
            types[name] = t
    return types


def reference_pair(model: Model, inputs: np.ndarray | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(input, expected output) for FINN's verification: the given sample or one drawn on the input grid."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise CodesignError("the FINN backend writes a verification pair only for one-input, one-output models")
    name = model.inputs[0]
    shape = model.shape(name)
    if inputs is None:
        x = sample_inputs(model, grid_types(model), 1, seed)[name]
    else:
        x = np.asarray(inputs, dtype=np.float32)
        if x.shape != tuple(shape):
            if x.size != int(np.prod(shape)):
                raise CodesignError(f"--inputs has shape {x.shape}; the model input {name!r} is {tuple(shape)}")
            x = x.reshape(shape)
    y = execute(model, {name: x})[model.outputs[0]]
    return x, y


def verify_folder(ir: Model, folder: Path, samples: int, seed: int = 0) -> VerifyReport:
    """The folder as FINN reads it vs the IR's reference: model.onnx (read back from disk) on input.npy and
    ``samples - 1`` more inputs on the input grid, and expected_output.npy (what FINN checks against) on input.npy."""
    import onnx

    from codesign.backends.verify import FLOAT_INPUT_TYPE, compare, output_code_scale, reference_outputs

    written = Model(onnx.load(str(folder / "model.onnx")))
    name, types = ir.inputs[0], grid_types(ir)
    pair_x, pair_y = np.load(folder / "input.npy"), np.load(folder / "expected_output.npy")
    drawn = sample_inputs(ir, types, max(0, samples - 1), seed + 1)[name]
    x = np.concatenate([pair_x.reshape(1, *drawn.shape[1:]), drawn]).astype(np.float32)
    ref = reference_outputs(ir, {name: x})
    got = reference_outputs(written, {written.inputs[0]: x.reshape(len(x), *written.shape(written.inputs[0])[1:])})
    got = got.reshape(ref.shape)
    # the pair as a last row: expected_output.npy must be the IR's output on input.npy too
    ref, got = np.concatenate([ref, ref[:1]]), np.concatenate([got, pair_y.reshape(ref[:1].shape)])
    report = compare(
        ref, got, {name: (types.get(name) or FLOAT_INPUT_TYPE).hls()}, output_code_scale(ir, ir.outputs[0])
    )
    report.samples = len(x)
    return report


def write_folder(
    ir: Model, target: Target, options: FinnOptions, folder: Path, *, inputs: np.ndarray | None = None
) -> dict[str, Any]:
    """Write model.onnx, dataflow_build_config.json, input/expected_output.npy and README.md into ``folder``."""
    lowered = lower(ir, lower_for_finn(), "FINN")
    refuse_unsupported(
        lowered, {n.op_type for n in lowered.graph.node} - set(FINN_UNSUPPORTED), "FINN", FINN_UNSUPPORTED
    )
    lowered.save(folder / "model.onnx")
    x, y = reference_pair(lowered, inputs)
    np.save(folder / "input.npy", x)
    np.save(folder / "expected_output.npy", y)
    cfg, why = build_config(ir, target, options, has_pair=True)
    (folder / "dataflow_build_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    board = f", board {target.finn_board} ({target.shell_flow_type})" if "board" in cfg else ""
    (folder / "README.md").write_text(
        README.format(
            target=target.name, part=target.part, board_line=board, folder="<path to this folder>",
            output_dir=cfg["output_dir"], outputs=", ".join(cfg["generate_outputs"]),
            verify=", ".join(cfg.get("verify_steps", [])) or "(none)", fps=cfg["target_fps"], fps_why=why,
        )
    )  # fmt: skip
    return {"config": cfg, "ops": sorted({n.op_type for n in lowered.graph.node}), "input_shape": list(x.shape),
            "output_shape": list(y.shape)}  # fmt: skip


__all__ = [
    "FINN_CONFIG_FIELDS",
    "FinnConfigError",
    "FinnOptions",
    "build_config",
    "grid_types",
    "reference_pair",
    "validate_config",
    "verify_folder",
    "write_folder",
]
