"""Backend output vs the IR's reference execution, on the same inputs.

Inputs are drawn on the grid of the input type the backend was given, so the
float -> fixed conversion at the accelerator's port is exact and any difference is the
backend's own arithmetic: power-of-two models must come out bit-exact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from codesign.backends.precision import DEFAULT_INPUT, Fixed
from codesign.backends.reference import ReferenceExecutor
from codesign.ir.model import Model

#: Range and grid for inputs the IR does not type (float models): hls4ml's default input type.
FLOAT_INPUT_TYPE = DEFAULT_INPUT


@dataclass
class VerifyReport:
    """How far the backend's outputs are from the reference: max |diff| and the bit-exact share."""

    samples: int
    outputs: int
    max_abs_diff: float
    mean_abs_diff: float
    bit_exact_share: float
    argmax_agreement: float | None
    input_types: dict[str, str]

    @property
    def bit_exact(self) -> bool:
        return self.bit_exact_share == 1.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bit_exact"] = self.bit_exact
        return d

    def summary(self) -> str:
        exact = "bit-exact" if self.bit_exact else f"{self.bit_exact_share:.2%} of outputs bit-exact"
        top1 = f", top-1 agreement {self.argmax_agreement:.2%}" if self.argmax_agreement is not None else ""
        return f"verified {self.samples} samples: {exact}, max abs diff {self.max_abs_diff:.3g}{top1}"


def sample_inputs(model: Model, types: dict[str, Fixed], n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` random inputs per model input, exactly representable in its (given or default) type."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in model.inputs:
        shape = (n, *model.shape(name)[1:])
        t = types.get(name)
        if t is None:  # a float input: unit-scale values on the default type's grid
            x = FLOAT_INPUT_TYPE.grid(rng.normal(0.0, 1.0, size=shape))
        elif t.signed:  # cover the type's range, a quarter of samples beyond the quantizer's
            x = t.grid(rng.normal(0.0, min(t.hi, -t.lo) / 2, size=shape))
        else:
            x = t.grid(rng.uniform(0.0, t.hi, size=shape))
        out[name] = x.astype(np.float32)
    return out


def reference_outputs(model: Model, x: np.ndarray) -> np.ndarray:
    """The reference output for each sample, one sample at a time.

    The IR is normalised to batch 1; exporters bake that batch into Reshape/Flatten
    targets, so a re-batched run can fail or mix samples. Per-sample runs cannot.
    """
    executor = ReferenceExecutor(model)
    name = model.outputs[0]
    return np.concatenate([executor.run(x[i : i + 1])[name] for i in range(x.shape[0])], axis=0)


def channels_perm(ir_shape: tuple[int, ...], lowered_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The permutation taking an IR tensor to the lowered (channels-last) layout, None if identical."""
    if tuple(ir_shape) == tuple(lowered_shape):
        return None
    rank = len(ir_shape)
    perm = (0, *range(2, rank), 1)
    if rank >= 3 and tuple(ir_shape[p] for p in perm) == tuple(lowered_shape):
        return perm
    return None


def compare(reference: np.ndarray, got: np.ndarray, input_types: dict[str, str]) -> VerifyReport:
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(got, dtype=np.float64).reshape(ref.shape)
    diff = np.abs(ref - out)
    argmax = None
    if ref.ndim == 2 and ref.shape[1] > 1:
        argmax = float(np.mean(ref.argmax(axis=1) == out.argmax(axis=1)))
    return VerifyReport(
        samples=int(ref.shape[0]),
        outputs=int(ref.size),
        max_abs_diff=float(diff.max(initial=0.0)),
        mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
        bit_exact_share=float(np.mean(ref == out)) if ref.size else 1.0,
        argmax_agreement=argmax,
        input_types=input_types,
    )


def verify_hls4ml(ir: Model, build: Any, samples: int = 100, seed: int = 0) -> VerifyReport:
    """hls4ml C-simulation (already compiled) vs the IR's reference execution."""
    lowered = build.lowered
    if len(ir.inputs) != 1 or len(ir.outputs) != 1:
        from codesign.errors import CodesignError

        raise CodesignError("--verify supports models with one input and one output")
    given = build.precision.input.get(lowered.inputs[0])
    types = {ir.inputs[0]: given} if given is not None else {}
    feeds = sample_inputs(ir, types, samples, seed)
    x = feeds[ir.inputs[0]]
    ref = reference_outputs(ir, x)
    got = hls4ml_outputs(ir, build, x)
    return compare(ref, got, {ir.inputs[0]: (given or FLOAT_INPUT_TYPE).hls()})


def hls4ml_outputs(ir: Model, build: Any, x: np.ndarray) -> np.ndarray:
    """The C-simulation's output for IR-layout inputs ``x``, in the IR's output layout."""
    from codesign.backends.hls4ml_backend import quiet

    lowered = build.lowered
    in_perm = channels_perm(ir.shape(ir.inputs[0]), lowered.shape(lowered.inputs[0]))
    hx = np.ascontiguousarray(x.transpose(in_perm) if in_perm else x)
    with quiet():
        got = np.asarray(build.hls_model.predict(hx))
    got = got.reshape((len(x), *lowered.shape(lowered.outputs[0])[1:]))
    if lowered.dtype(lowered.outputs[0]).name == "BIPOLAR" and np.isin(got, (0.0, 1.0)).all():
        got = 2.0 * got - 1.0  # hls4ml carries bipolar values as one bit, 0 meaning -1
    out_perm = channels_perm(ir.shape(ir.outputs[0]), lowered.shape(lowered.outputs[0]))
    if out_perm:
        got = got.transpose(np.argsort(out_perm))
    return got


__all__ = [
    "VerifyReport", "channels_perm", "compare", "hls4ml_outputs", "reference_outputs", "sample_inputs", "verify_hls4ml",
]  # fmt: skip
