"""Whether a verification passed: what a model must meet, and whether it met it.

A power-of-two quantized model (every quantizer's scale a power of two, zero point 0, no
table-approximated activation) must come out of every backend bit-exact; a float model
typed by the precision selection must meet its tolerance against the float model; other
quantized models must meet the float-model default (top-1 agreement >= 99.5% for class
scores, else 1% of the output's peak). ``codesign compile --verify`` exits
:data:`codesign.errors.EXIT_VERIFY_FAILED` when this says no.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from codesign.ir.model import Model

#: hls4ml implements these as lookup tables: no model holding one can be bit-exact.
TABLE_OPS = ("Sigmoid", "Softmax", "Tanh", "Exp", "Log", "Elu", "Selu", "Softplus", "Softsign", "HardSigmoid", "Erf")
QUANTIZERS = ("Quant", "BipolarQuant", "MultiThreshold", "FloatQuant", "Trunc")


@dataclass
class Verdict:
    """The verification's pass/fail, what was required and what was measured, in one line."""

    passed: bool
    required: str
    measured: str

    def line(self) -> str:
        return (
            f"verification {'passed' if self.passed else 'FAILED'}: required {self.required}, measured {self.measured}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pow2(value: np.ndarray | None) -> bool:
    if value is None:
        return False
    v = np.asarray(value, dtype=np.float64).ravel()
    mantissa, _ = np.frexp(v)
    return bool(v.size) and bool(np.all(v > 0)) and bool(np.all(mantissa == 0.5))


def expects_bit_exact(ir: Model) -> tuple[bool, str]:
    """(True, why) when ``ir`` is quantized with power-of-two scales only and has no table-approximated op."""
    quants = [n for n in ir.graph.node if n.op_type in QUANTIZERS]
    if not quants:
        return False, "float model"
    for n in quants:
        if n.op_type == "BipolarQuant":
            if not _pow2(ir.constant(n.input[1])):
                return False, f"quantizer {n.name} has a non-power-of-two scale"
            continue
        if n.op_type == "Trunc":  # power-of-two in and out scales: a shift (lowered to two Quants)
            outs = [n.input[1]] + ([n.input[4]] if len(n.input) >= 6 else [])
            if not all(_pow2(ir.constant(t)) for t in outs):
                return False, f"Trunc {n.name} has a non-power-of-two scale"
            if np.any(np.asarray(ir.constant(n.input[2])) != 0):
                return False, f"Trunc {n.name} has a non-zero zero point"
            continue
        if n.op_type != "Quant":
            return False, f"{n.op_type} {n.name} is not a fixed-point quantizer"
        if not _pow2(ir.constant(n.input[1])):
            return False, f"quantizer {n.name} has a non-power-of-two scale"
        zero = ir.constant(n.input[2])
        if zero is None or np.any(np.asarray(zero) != 0):
            return False, f"quantizer {n.name} has a non-zero zero point"
    tables = [n for n in ir.graph.node if n.op_type in TABLE_OPS]
    if tables:
        return False, f"{tables[0].op_type} {tables[0].name} is a lookup table in hardware"
    return True, "power-of-two quantized"


#: A float32 op chain after a model's last quantizer (e.g. Brevitas' output affine) rounds in ways no
#: fixed-point type reproduces; such outputs must match to this fraction of their peak (~8 float32 ulps).
FLOAT_TAIL_RTOL = 2.0**-20


def float_tail(ir: Model) -> list[str]:
    """Graph outputs computed in float after the last quantizer (their IR datatype is FLOAT32)."""
    return [o.name for o in ir.graph.output if ir.dtype(o.name).name == "FLOAT32"]


def judge_hls4ml(ir: Model, report: dict[str, Any], float_verify: dict[str, Any] | None = None,
                 criterion: Any = None) -> Verdict:  # fmt: skip
    """The hls4ml C-simulation's verdict from ``codesign.json``'s ``verify`` (+ ``verify_float``)."""
    from codesign.passes.precision import TOP1, Criterion, Quality

    exact, _why = expects_bit_exact(ir)
    top1 = report.get("argmax_agreement")
    top1_txt = f", top-1 agreement {top1:.2%}" if top1 is not None else ""
    if float_verify is not None and criterion is not None:  # a float model typed by the selection
        q = Quality.from_dict(float_verify)
        return Verdict(criterion.met(q, margin=False), f"{criterion.describe()} vs the float model", q.describe())
    code = report.get("same_code_share")
    code_txt = f" ({code:.2%} on the output quantizer's reference code)" if code is not None else ""
    measured = (f"{report['bit_exact_share']:.2%} of outputs bit-exact{code_txt}, "
                f"max abs diff {report['max_abs_diff']:.3g}{top1_txt}")  # fmt: skip
    if exact and float_tail(ir):
        limit = FLOAT_TAIL_RTOL * max(float(report.get("reference_peak") or 0.0), 1.0)
        ok = report["max_abs_diff"] <= limit and (top1 is None or top1 == 1.0)
        return Verdict(bool(ok), f"bit-exact up to the float32 output tail: max abs diff <= {limit:.3g}"
                       + (", top-1 agreement 100%" if top1 is not None else ""), measured)  # fmt: skip
    if exact:
        return Verdict(bool(report["bit_exact_share"] == 1.0), "bit-exact (power-of-two quantized)", measured)
    if top1 is not None:
        crit = Criterion("top1", TOP1)
        return Verdict(top1 >= crit.value, f"{crit.describe()} ({_why})", measured)
    limit = 0.01 * max(float(report.get("reference_peak") or 0.0), 1e-6)
    return Verdict(report["max_abs_diff"] <= limit, f"max abs diff <= {limit:.3g} (1% of the peak; {_why})", measured)


def judge_rtl(report: dict[str, Any]) -> Verdict:
    """alkaid RTL is bit-exact by construction: any mismatch (interpreter or iverilog) fails."""
    measured = (f"{report['interpreter']['mismatches']} mismatches in alkaid's interpreter, "
                f"{report['simulation']['mismatches']} in iverilog")  # fmt: skip
    return Verdict(report["mismatches"] == 0, "bit-exact", measured)


def judge_finn(report: dict[str, Any]) -> Verdict:
    """A FINN folder's model.onnx is the IR rewritten (no new arithmetic) and its pair the IR's: any mismatch fails."""
    measured = f"{report['bit_exact_share']:.2%} of outputs bit-exact, max abs diff {report['max_abs_diff']:.3g}"
    return Verdict(bool(report["bit_exact_share"] == 1.0), "bit-exact (model.onnx and the pair vs the IR)", measured)


__all__ = ["TABLE_OPS", "Verdict", "expects_bit_exact", "judge_finn", "judge_hls4ml", "judge_rtl"]
