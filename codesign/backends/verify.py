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
from codesign.backends.reference import ReferenceExecutor, Samples, as_samples, n_samples, take
from codesign.ir.model import Model

#: Samples traced layer by layer when outputs differ (each one C-sim call with every layer's output saved).
MAX_TRACED = 8
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
    #: the largest |reference output| (what a relative tolerance is taken of)
    reference_peak: float | None = None
    #: indices of the first samples whose outputs differ (where a divergence is looked for)
    mismatched: list[int] | None = None
    #: the first hls4ml layer whose traced output differs from the IR's tensor there
    divergence: dict[str, Any] | None = None
    #: what the samples were: random on the input types' grids, or a float model's calibration inputs
    source: str = "random"
    #: share of outputs on the reference's code of a non-power-of-two output quantizer (whose
    #: ``q * s`` no fixed type holds exactly, so bit-exactness cannot be asked of it)
    same_code_share: float | None = None

    @property
    def bit_exact(self) -> bool:
        return self.bit_exact_share == 1.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bit_exact"] = self.bit_exact
        return d

    def summary(self) -> str:
        exact = "bit-exact" if self.bit_exact else f"{self.bit_exact_share:.2%} of outputs bit-exact"
        if not self.bit_exact and self.same_code_share is not None:
            exact += f" ({self.same_code_share:.2%} on the output quantizer's reference code)"
        top1 = f", top-1 agreement {self.argmax_agreement:.2%}" if self.argmax_agreement is not None else ""
        what = (
            f"verified {self.samples} samples"
            if self.source == "random"
            else (f"vs the typed IR (its fixed-point types) on {self.samples} {self.source} inputs")
        )
        line = f"{what}: {exact}, max abs diff {self.max_abs_diff:.3g}{top1}"
        d = self.divergence
        if d and d.get("layer"):
            line += f"; first divergence at layer {d['layer']} ({d['class']}): max abs diff {d['max_abs_diff']:.3g}"
        return line


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


def reference_output_arrays(model: Model, x: Samples | np.ndarray) -> dict[str, np.ndarray]:
    """Every reference output for each sample (by input name; an array feeds a single input), one at a time.

    The IR is normalised to batch 1; exporters bake that batch into Reshape/Flatten
    targets, so a re-batched run can fail or mix samples. Per-sample runs cannot.
    """
    executor = ReferenceExecutor(model)
    x = as_samples(model, x)
    runs = [executor.run(take(x, slice(i, i + 1))) for i in range(n_samples(x))]
    return {name: np.concatenate([r[name] for r in runs], axis=0) for name in model.outputs}


def reference_outputs(model: Model, x: Samples | np.ndarray) -> np.ndarray:
    """The reference's first output for each sample (see :func:`reference_output_arrays`)."""
    return reference_output_arrays(model, x)[model.outputs[0]]


def port_perm(ir: Model, ir_name: str, lowered: Model, name: str) -> tuple[int, ...] | None:
    """The permutation taking IR input/output ``ir_name`` to lowered ``name``: the layout pass's record (shapes alone
    took a 3x3x3 input for channels-first), else by shape (a model the layout pass never ran on)."""
    from codesign.backends.layout import channels_last_ports, to_last

    ports, shape = channels_last_ports(lowered), ir.shape(ir_name)
    if ports is None or shape is None:
        return channels_perm(ir.shape(ir_name), lowered.shape(name))
    return tuple(to_last(len(shape))) if name in ports and len(shape) >= 3 else None


def channels_perm(ir_shape: tuple[int, ...], lowered_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The permutation taking an IR tensor to the lowered (channels-last) layout, None if identical."""
    if tuple(ir_shape) == tuple(lowered_shape):
        return None
    rank = len(ir_shape)
    perm = (0, *range(2, rank), 1)
    if rank >= 3 and tuple(ir_shape[p] for p in perm) == tuple(lowered_shape):
        return perm
    return None


def top1_agreement(ref: np.ndarray, out: np.ndarray, step: float | None = None) -> float:
    """Share of rows whose top class in ``out`` is a top class of ``ref``: scores tied in exact arithmetic
    (binary/ternary nets' integer logits) count as ties, whatever float32 rounding says (within 8 ulps of the peak),
    and so do scores within ``step``, the output quantizer's step, of a model that cannot be bit-exact: the
    reference cannot tell those classes apart at its own output resolution.
    """
    from codesign.backends.verdict import FLOAT_TAIL_RTOL

    tie = max(FLOAT_TAIL_RTOL * max(float(np.abs(ref).max(initial=0.0)), 1.0), step or 0.0)
    picked = np.take_along_axis(ref, out.argmax(axis=1)[:, None], axis=1)[:, 0]
    return float(np.mean(ref.max(axis=1) - picked <= tie))


def output_code_scale(model: Model, output: str | None = None) -> float | None:
    """The scale of a per-tensor non-power-of-two Quant that produces ``output`` (the first), else None."""
    from codesign.backends.precision import pow2_exponent

    producer = model.producer(output or model.outputs[0])
    if producer is None or producer.op_type != "Quant" or len(producer.input) < 2:
        return None
    scale = model.constant(producer.input[1])
    if scale is None or np.size(scale) != 1 or pow2_exponent(scale) is not None:
        return None
    return float(np.asarray(scale).ravel()[0])


def output_step(model: Model, output: str) -> float | None:
    """The step of the per-tensor quantizer that produces ``output`` (through a zero-point Add/Sub), else None."""
    producer = model.producer(output)
    if producer is not None and producer.op_type in ("Add", "Sub") and model.constant(producer.input[1]) is not None:
        producer = model.producer(producer.input[0])
    if producer is None or producer.op_type != "Quant" or len(producer.input) < 2:
        return None
    scale = model.constant(producer.input[1])
    return float(np.asarray(scale).ravel()[0]) if scale is not None and np.size(scale) == 1 else None


def compare(
    reference: np.ndarray,
    got: np.ndarray,
    input_types: dict[str, str],
    code_scale: float | None = None,
    tie_step: float | None = None,
) -> VerifyReport:
    """The report for ``got`` against ``reference`` (``code_scale``: the output quantizer's non-power-of-two scale;
    ``tie_step``: class scores this close count as tied in the top-1 agreement)."""
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(got, dtype=np.float64).reshape(ref.shape)
    diff = np.abs(ref - out)
    argmax = None
    flat_ref, flat_out = ref.reshape(len(ref), -1), out.reshape(len(ref), -1)
    if ref.ndim >= 2 and flat_ref.shape[1] > 1 and max(ref.shape[1:]) == flat_ref.shape[1]:  # class scores
        argmax = top1_agreement(flat_ref, flat_out, tie_step)
    bad = np.flatnonzero((flat_ref != flat_out).any(axis=1))[:MAX_TRACED].tolist()
    return VerifyReport(
        samples=int(ref.shape[0]),
        outputs=int(ref.size),
        max_abs_diff=float(diff.max(initial=0.0)),
        mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
        bit_exact_share=float(np.mean(ref == out)) if ref.size else 1.0,
        argmax_agreement=argmax,
        input_types=input_types,
        reference_peak=float(np.abs(ref).max(initial=0.0)),
        mismatched=bad,
        same_code_share=_same_code_share(ref, out, code_scale),
    )


def _same_code_share(ref: np.ndarray, out: np.ndarray, scale: float | None) -> float | None:
    return float(np.mean(np.round(ref / scale) == np.round(out / scale))) if scale else None


def compare_outputs(
    reference: dict[str, np.ndarray],
    got: dict[str, np.ndarray],
    input_types: dict[str, str],
    code_scales: dict[str, float | None] | None = None,
    tie_steps: dict[str, float | None] | None = None,
) -> VerifyReport:
    """One report over every output: worst diff, pooled shares, the lowest top-1 of the class-score outputs."""
    reports = [compare(reference[k], got[k], input_types, (code_scales or {}).get(k), (tie_steps or {}).get(k))
               for k in reference]  # fmt: skip
    if len(reports) == 1:
        return reports[0]
    sizes = np.array([r.outputs for r in reports], dtype=np.float64)

    def pooled(values: list[float]) -> float:
        return float(np.dot(values, sizes) / max(sizes.sum(), 1.0))

    top1 = [r.argmax_agreement for r in reports if r.argmax_agreement is not None]
    codes = [r.same_code_share if r.same_code_share is not None else r.bit_exact_share for r in reports]
    return VerifyReport(
        samples=reports[0].samples,
        outputs=int(sizes.sum()),
        max_abs_diff=max(r.max_abs_diff for r in reports),
        mean_abs_diff=pooled([r.mean_abs_diff for r in reports]),
        bit_exact_share=pooled([r.bit_exact_share for r in reports]),
        argmax_agreement=min(top1) if top1 else None,
        input_types=input_types,
        reference_peak=max(r.reference_peak or 0.0 for r in reports),
        mismatched=sorted({i for r in reports for i in r.mismatched or []})[:MAX_TRACED],
        same_code_share=pooled(codes) if any(r.same_code_share is not None for r in reports) else None,
    )  # fmt: skip


def hls4ml_inputs(ir: Model, lowered: Model, x: Samples) -> dict[str, np.ndarray]:
    """IR-layout inputs ``x`` by lowered input name, each in the (channels-last) layout hls4ml takes."""
    out = {}
    for ir_name, name in zip(ir.inputs, lowered.inputs):
        perm = port_perm(ir, ir_name, lowered, name)
        out[name] = np.ascontiguousarray(x[ir_name].transpose(perm) if perm else x[ir_name])
    return out


def hls4ml_feed(hx: dict[str, np.ndarray]) -> np.ndarray | list[np.ndarray]:
    """What hls4ml's ``predict``/``trace`` take: the array of a single input, else one array per input in order."""
    arrays = list(hx.values())
    return arrays[0] if len(arrays) == 1 else arrays


def verify_inputs(ir: Model, build: Any, samples: int, seed: int = 0) -> tuple[Samples, dict[str, str]]:
    """The verification's inputs by name (on the grid of hls4ml's type for each) and those types."""
    lowered = build.lowered
    given = {ir_name: build.precision.input.get(name) for ir_name, name in zip(ir.inputs, lowered.inputs)}
    types = {k: t for k, t in given.items() if t is not None}
    x = sample_inputs(ir, types, samples, seed)
    return x, {k: (t or FLOAT_INPUT_TYPE).hls() for k, t in given.items()}


def verify_hls4ml_on(
    ir: Model, build: Any, x: Samples, budget_s: float | None = None, source: str = "calibration"
) -> tuple[VerifyReport, dict[str, np.ndarray], Samples]:
    """C-simulation vs the (typed) IR on inputs ``x`` (``source``: random ones from :func:`verify_inputs`, or a
    float model's calibration set) cast as hls4ml's input ports cast them (the identity on random ones, already
    on those grids): the report, the C-sim outputs, and the cast inputs they were run on."""
    types, cast, got = _simulate(ir, build, x, budget_s)
    return _report(ir, types, cast, got, source)


def extend_verify(
    ir: Model, build: Any, done: tuple[Samples, dict[str, np.ndarray]], x: Samples, budget_s: float, source: str
) -> tuple[VerifyReport, dict[str, np.ndarray], Samples]:
    """:func:`verify_hls4ml_on` over ``done`` (cast inputs, C-sim outputs already run) plus new inputs ``x``."""
    types, cast, got = _simulate(ir, build, x, budget_s)
    both = {k: np.concatenate([done[0][k], cast[k]]) for k in cast}
    return _report(ir, types, both, {k: np.concatenate([done[1][k], got[k]]) for k in got}, source)


def _simulate(
    ir: Model, build: Any, x: Samples, budget_s: float | None
) -> tuple[dict[str, Any], Samples, dict[str, np.ndarray]]:
    """Inputs cast to hls4ml's port types, C-simulated within ``budget_s``: (port types, the inputs run, outputs)."""
    types = {ir_name: build.precision.input.get(name) or FLOAT_INPUT_TYPE
             for ir_name, name in zip(ir.inputs, build.lowered.inputs)}  # fmt: skip
    cast = {k: types[k].cast(v).astype(np.float32) for k, v in as_samples(ir, x).items()}
    got = hls4ml_outputs_within(ir, build, cast, budget_s, every_output=True)
    return types, take(cast, slice(n_samples(got))), got


def _report(
    ir: Model, types: dict[str, Any], cast: Samples, got: dict[str, np.ndarray], source: str
) -> tuple[VerifyReport, dict[str, np.ndarray], Samples]:
    from codesign.backends.verdict import expects_bit_exact

    steps = {} if expects_bit_exact(ir)[0] else {k: output_step(ir, k) for k in ir.outputs}
    report = compare_outputs(reference_output_arrays(ir, cast), got, {k: t.hls() for k, t in types.items()},
                             {k: output_code_scale(ir, k) for k in ir.outputs}, steps)  # fmt: skip
    report.source = source
    return report, got, cast


def hls4ml_outputs_within(
    ir: Model, build: Any, x: Samples, budget_s: float | None = None, every_output: bool = False
) -> Any:
    """The C-simulation's (first, or ``every_output`` by name) outputs for the first samples of ``x``
    that fit ``budget_s`` seconds (at least one).

    The first sample is timed and the rest cut to what the budget leaves, so a loaded machine
    verifies fewer samples instead of running past the estimate the plan was made with.
    """
    import time

    from codesign.passes.workload import samples_within

    def fetch(part: Samples) -> Any:
        return hls4ml_output_arrays(ir, build, part) if every_output else hls4ml_outputs(ir, build, part)

    total = n_samples(x)
    if budget_s is None or total <= 1:
        return fetch(x)
    t0 = time.monotonic()
    first = fetch(take(x, slice(1)))
    spent = time.monotonic() - t0
    n = 1 + samples_within(total - 1, spent, budget_s - spent, minimum=0)
    if n <= 1:
        return first
    rest = fetch(take(x, slice(1, n)))
    if every_output:
        return {k: np.concatenate([first[k], rest[k]]) for k in first}
    return np.concatenate([first, rest])


def hls4ml_outputs(ir: Model, build: Any, x: Samples | np.ndarray) -> np.ndarray:
    """The C-simulation's first output for IR-layout inputs ``x`` (see :func:`hls4ml_output_arrays`)."""
    return hls4ml_output_arrays(ir, build, x)[ir.outputs[0]]


def hls4ml_output_arrays(ir: Model, build: Any, x: Samples | np.ndarray) -> dict[str, np.ndarray]:
    """The C-simulation's outputs for IR-layout inputs ``x`` by IR output name, in the IR's layouts.

    ``predict`` runs in a thread whose stack holds the largest layer (hls4ml keeps its arrays there).
    """
    from codesign.backends.csim import csim_cost, isolated, stack_bytes, with_stack
    from codesign.backends.hls4ml_backend import quiet

    x = as_samples(ir, x)  # a single-input model's plain array too
    lowered = build.lowered
    hx = hls4ml_inputs(ir, lowered, x)
    with quiet():
        stack = stack_bytes(csim_cost(lowered))
        raw = isolated(lambda: with_stack(lambda: build.hls_model.predict(hls4ml_feed(hx)), stack))
    n = n_samples(x)
    raw = [raw] if len(lowered.outputs) == 1 else list(raw)  # hls4ml: one array per output when several
    out = {}
    for ir_name, name, got in zip(ir.outputs, lowered.outputs, raw):
        got = np.asarray(got).reshape((n, *lowered.shape(name)[1:]))
        if lowered.dtype(name).name == "BIPOLAR" and np.isin(got, (0.0, 1.0)).all():
            got = 2.0 * got - 1.0  # hls4ml carries bipolar values as one bit, 0 meaning -1
        out_perm = port_perm(ir, ir_name, lowered, name)
        out[ir_name] = got.transpose(np.argsort(out_perm)) if out_perm else got
    return out


def _layer_key(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").lower()


def _name_keys(name: str) -> list[str]:
    """IR node names an hls4ml layer may come from: its own, or without the prefix/suffix hls4ml adds
    (``Dense_<node>`` for a fused MatMul+Add, ``<node>_act`` for a quantizer made an activation)."""
    keys = [_layer_key(name)]
    if "_" in name:
        keys += [_layer_key(name.split("_", 1)[1]), _layer_key(name.rsplit("_", 1)[0])]
    return keys


def _candidates(lowered: Model, node: Any, stops: set[str]) -> list[str]:
    """Tensors an hls4ml layer named after ``node`` may hold: its output and the single-consumer
    chain after it (a bias Add or requantizer hls4ml fused into the layer), up to the next layer."""
    out, seen = [], 0
    while node is not None and seen < 8:
        out.append(node.output[0])
        consumers = lowered.consumers(node.output[0])
        if len(consumers) != 1 or _layer_key(consumers[0].name) in stops:
            break
        node, seen = consumers[0], seen + 1
    return out


def quant_inner_layers(lowered: Model) -> set[str]:
    """hls4ml layers inside a non-power-of-two Quant's scale -> cast -> rescale (``hls4ml_layers.core.quant``):
    named after the Quant, they hold ``x / s + z`` and its codes, never the IR tensor (q - z) * s."""
    from codesign.backends.precision import quant_type

    return {
        f"{n.name}{suffix}"
        for n in lowered.nodes_of(["Quant"])
        if quant_type(lowered, n) is None
        for suffix in ("_scale", "_act")
    }


def first_divergence(ir: Model, build: Any, x: Samples, memory_gb: float | None = None) -> dict[str, Any] | None:
    """The first hls4ml layer (in dataflow order) whose traced C-sim output differs from the IR's.

    hls4ml's ``trace`` (a C-sim rebuilt with every layer's output saved) is compared with the
    lowered IR run by qonnx with every intermediate tensor kept; a layer is matched to the IR
    node of its name and the tensors fused into it. None when nothing could be matched.
    """
    from hls4ml.model.types import XnorPrecisionType
    from qonnx.core.onnx_exec import execute_onnx

    from codesign.backends.csim import (
        csim_cost,
        isolated,
        memory_limit_gb,
        memory_limited_build,
        stack_bytes,
        with_stack,
    )  # fmt: skip
    from codesign.backends.hls4ml_backend import quiet

    hm, lowered = build.hls_model, build.lowered
    hx, n = hls4ml_inputs(ir, lowered, x), n_samples(x)
    layers = list(hm.get_layers())
    for layer in layers:
        layer.set_attr("trace", True)
    try:
        with quiet(), memory_limited_build(memory_limit_gb(memory_gb)):
            stack = stack_bytes(csim_cost(lowered))
            _, traces = isolated(lambda: with_stack(lambda: hm.trace(hls4ml_feed(hx)), stack))
        contexts = [execute_onnx(lowered.wrapper, take(hx, slice(i, i + 1)), return_full_exec_context=True)
                    for i in range(n)]  # fmt: skip
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        return {"layer": None, "note": f"could not trace the layers: {type(exc).__name__}: {first}"}
    finally:
        for layer in layers:
            layer.set_attr("trace", False)
        hm.config.trace_output = False
        with quiet():
            hm.write()  # the shipped sources without the trace hooks (the loaded library keeps working)
    nodes = {_layer_key(n.name): n for n in lowered.graph.node}
    stops = {k for layer in layers for k in _name_keys(layer.name)}
    inner = quant_inner_layers(lowered)
    matched = 0
    for layer in layers:
        if layer.name in inner:
            continue  # x / s and its codes: no IR tensor holds them (the rescale's output is the Quant's)
        node = next((nodes[k] for k in _name_keys(layer.name) if k in nodes), None)
        data = traces.get(layer.name)
        if node is None or data is None:
            continue
        got = np.asarray(data, dtype=np.float64).reshape(n, -1)
        if isinstance(layer.get_output_variable().type.precision, XnorPrecisionType):
            got = 2.0 * got - 1.0  # hls4ml's 1-bit code of a bipolar value: 0 -> -1
        diffs = []
        for tensor in _candidates(lowered, node, stops):
            ref = np.stack([np.asarray(c[tensor], dtype=np.float64).ravel() for c in contexts])
            if ref.shape == got.shape:
                diffs.append(float(np.abs(ref - got).max(initial=0.0)))
        if not diffs:
            continue
        matched += 1
        if min(diffs) > 0:
            return {"layer": layer.name, "class": layer.class_name, "max_abs_diff": min(diffs), "samples": n,
                    "layers_matched_before": matched - 1}  # fmt: skip
    return {"layer": None, "note": f"{matched} layers matched the IR exactly; the difference arises after them"}


__all__ = [
    "MAX_TRACED", "VerifyReport", "channels_perm", "compare", "compare_outputs", "first_divergence", "hls4ml_feed",
    "hls4ml_inputs", "hls4ml_output_arrays", "hls4ml_outputs", "hls4ml_outputs_within", "output_code_scale", "output_step", "port_perm", "quant_inner_layers",
    "reference_output_arrays", "reference_outputs", "sample_inputs", "verify_hls4ml_on",
    "verify_inputs",
]  # fmt: skip
