"""Fixed-point precision selection for float models: the narrowest types that keep the answer.

A float ONNX export compiled with one blanket type (hls4ml's ``fixed<16,6>``) can change
the model's answers. This pass profiles the model on calibration data (or a described
synthetic distribution), quantizes every MAC layer's weights, bias and input with
power-of-two scales (:mod:`codesign.passes.quantize`: integer bits from the calibrated
ranges, so every backend sees exact ``ap_fixed`` types), and then narrows the widths
greedily, cheapest-first by the project's resource estimate, keeping each step only if
the quantized IR still meets the output tolerance against the float model:
top-1 agreement >= 99.5% for classifiers, max abs error <= ``tolerance`` otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from codesign.errors import CodesignError, OnnxruntimeError
from codesign.ir.model import Model
from codesign.ir.quant import QONNX_DOMAIN
from codesign.passes.base import Pass, PassResult
from codesign.passes.calibrate import Calibration, calibrate
from codesign.passes.graph_edit import add_initializer, fresh_name, insert_after, make_node
from codesign.passes.quantize import KINDS, MAC_OPS, QuantConfig, Quantize, act_scale

#: Default top-1 agreement a classifier must keep (the issue's acceptance bar).
TOP1 = 0.995
#: Default regression tolerance, as a fraction of the float output's peak magnitude.
REL_TOLERANCE = 0.01
#: Widths tried for the uniform starting point, narrowest first.
START_BITS = (12, 16, 20, 24, 28, 32)
MIN_BITS = 2
#: Selection keeps this much margin (top-1 share / fraction of tolerance) for the backend's own rounding.
TOP1_MARGIN = 0.003
ERR_MARGIN = 0.8
#: Width of a Softmax's input: hls4ml's stable Softmax indexes its exp table with the input's bits,
#: so a quantizer there makes the table lookup exact and the IR models it.
SOFTMAX_INPUT_BITS = 13
#: Elementwise functions hls4ml computes by a lookup table over every value of their input
#: (``backends/hls4ml_layers/lut.py``), and the input width a float model's selection gives them.
LUT_OPS = ("Exp", "Log", "Sqrt", "Reciprocal", "Erf", "Abs", "Neg", "Sin", "Cos", "Floor", "Ceil", "Round", "Sign")
LUT_INPUT_BITS = 12
#: Synthetic samples are cut to this many activation values (one float32 each) per evaluation, but
#: never below MIN_SYNTHETIC: 1,000 samples of a 200x200 conv model took minutes per selection.
SYNTHETIC_BUDGET = 32_000_000
MIN_SYNTHETIC = 16
SYNTHETIC = "synthetic N(0, 1) per input element ({n} samples, seed {seed}); pass --calib X.npy for real data"


@dataclass
class Quality:
    """How close a quantized model's outputs are to the float model's."""

    max_abs_error: float
    top1: float | None
    #: samples whose top-1 differs, and the largest float top-1/top-2 margin among them (how near a tie they were)
    flips: int | None = None
    flip_margin: float | None = None
    #: per output, for a model with several (the fields above are then the worst over them)
    parts: dict[str, Quality] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"max_abs_error": self.max_abs_error, "top1_agreement": self.top1}
        if self.flips:
            d.update(top1_flips=self.flips, max_flip_margin=self.flip_margin)
        if self.parts:
            d["outputs"] = {k: q.to_dict() for k, q in self.parts.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Quality:
        """The inverse of :meth:`to_dict` (a manifest's ``verify_float``)."""
        parts = {k: cls.from_dict(v) for k, v in d["outputs"].items()} if d.get("outputs") else None
        return cls(float(d["max_abs_error"]), d.get("top1_agreement"), d.get("top1_flips"), d.get("max_flip_margin"),
                   parts)  # fmt: skip

    def describe(self) -> str:
        """``max abs error E[, top-1 agreement P (N flips, float top-2 margin <= M)]``."""
        text = f"max abs error {self.max_abs_error:.3g}"
        if self.top1 is not None:
            text += f", top-1 agreement {self.top1:.2%}"
            if self.flips:
                text += f" ({self.flips} flipped, float top-2 margin <= {self.flip_margin:.2g})"
        return text


@dataclass
class Criterion:
    """The output tolerance: a top-1 share for classifiers, else a max abs error."""

    kind: str  # "top1" or "max_abs_error"
    value: float
    #: per output, for a model with several: met only when every output meets its own
    parts: dict[str, Criterion] | None = None

    def met(self, q: Quality, margin: bool = True) -> bool:
        if self.parts:
            return q.parts is not None and all(c.met(q.parts[k], margin) for k, c in self.parts.items())
        if self.kind == "top1":
            need = min(1.0, self.value + TOP1_MARGIN) if margin else self.value
            return q.top1 is not None and q.top1 >= need
        return q.max_abs_error <= (self.value * ERR_MARGIN if margin else self.value)

    def describe(self) -> str:
        if self.parts:
            return "; ".join(f"{k}: {c.describe()}" for k, c in self.parts.items())
        return f"top-1 agreement >= {self.value:.1%}" if self.kind == "top1" else f"max abs error <= {self.value:.4g}"


@dataclass
class PrecisionInfo:
    """What was chosen and why: per-layer bits and types, quality, cost, data source."""

    bits: dict[str, dict[str, int]]
    types: dict[str, dict[str, str]]
    quality: Quality
    criterion: Criterion
    data_source: str
    cost: dict[str, float] = field(default_factory=dict)
    evaluations: int = 0
    #: the search's evaluation cap (cut from ``max_evaluations`` to fit the work budget on big models)
    evaluation_limit: int = 0
    #: the inputs the types were chosen on, by input name (verification reuses them; not in ``to_dict``)
    inputs: dict[str, np.ndarray] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "criterion": self.criterion.describe(),
            "data": self.data_source,
            "quality": self.quality.to_dict(),
            "layers": {k: {"bits": self.bits[k], "types": self.types.get(k, {})} for k in self.bits},
            "cost": self.cost,
            "evaluations": self.evaluations,
            "evaluation_limit": self.evaluation_limit,
        }


def synthetic_inputs(model: Model, n: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
    """The documented stand-in for calibration data: N(0, 1) per element of every input, by input name."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in model.inputs:
        shape = model.shape(name)
        if shape is None:
            raise CodesignError(f"input {name!r} has no static shape; pass --input-shape")
        out[name] = rng.normal(size=(n, *shape[1:])).astype(np.float32)
    return out


def synthetic_count(model: Model, wanted: int) -> int:
    """How many synthetic samples to draw: ``wanted``, fewer when one sample's activations are large."""
    from codesign.passes.shapes import activation_sizes

    per_sample = max(1, sum(activation_sizes(model).values()))
    return max(min(wanted, MIN_SYNTHETIC), min(wanted, SYNTHETIC_BUDGET // per_sample))


def run_outputs(model: Model, x: Mapping[str, np.ndarray] | np.ndarray) -> np.ndarray:
    """First output of ``model`` on ``x``: batched, per sample where the graph pins batch 1."""
    from codesign.backends.reference import ReferenceExecutor, as_samples, n_samples, predict, take

    x = as_samples(model, x)
    try:
        return np.asarray(predict(model, x), dtype=np.float64)
    except OnnxruntimeError:
        pass  # the graph pins batch 1 (keras Reshape targets): per sample below
    except CodesignError:
        raise
    except Exception:
        pass
    executor = ReferenceExecutor(model)
    name = model.outputs[0]
    rows = [executor.run(take(x, slice(i, i + 1)))[name] for i in range(n_samples(x))]
    return np.concatenate(rows).astype(np.float64)


def run_all_outputs(model: Model, x: Mapping[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
    """Every output of ``model`` on ``x``, by name (one entry: :func:`run_outputs`)."""
    if len(model.outputs) == 1:
        return {model.outputs[0]: run_outputs(model, x)}
    from codesign.backends.reference import ReferenceExecutor, as_samples, n_samples, take

    x = as_samples(model, x)
    executor = ReferenceExecutor(model)
    rows = [executor.run(take(x, slice(i, i + 1))) for i in range(n_samples(x))]
    return {k: np.concatenate([r[k] for r in rows]).astype(np.float64) for k in model.outputs}


def quality_all(reference: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray] | list[np.ndarray]) -> Quality:
    """:func:`quality` of every output (``got`` by name, or in ``reference``'s order); several: the worst, with parts."""
    outs = list(got.values()) if isinstance(got, Mapping) else list(got)
    parts = {k: quality(ref, out) for (k, ref), out in zip(reference.items(), outs)}
    if len(parts) == 1:
        return next(iter(parts.values()))
    top1 = [q.top1 for q in parts.values() if q.top1 is not None]
    flips = sum(q.flips or 0 for q in parts.values())
    margins = [q.flip_margin for q in parts.values() if q.flip_margin is not None]
    return Quality(max(q.max_abs_error for q in parts.values()), min(top1) if top1 else None, flips or None,
                   max(margins) if margins else None, parts)  # fmt: skip


def criterion_all(reference: Mapping[str, np.ndarray], tolerance: float | None) -> Criterion:
    """:func:`criterion_for` of every output; several: each output must meet its own."""
    parts = {k: criterion_for(ref, tolerance) for k, ref in reference.items()}
    if len(parts) == 1:
        return next(iter(parts.values()))
    top1 = any(c.kind == "top1" for c in parts.values())
    return Criterion("top1" if top1 else "max_abs_error", 0.0, parts)


def class_scores(reference: np.ndarray) -> bool:
    """Whether per-sample outputs are one vector of several scores (an image or a map has no top-1)."""
    ref = np.asarray(reference)
    return ref.ndim >= 2 and sum(d > 1 for d in ref.shape[1:]) == 1


def quality(reference: np.ndarray, got: np.ndarray) -> Quality:
    """Max abs error and (for class-score outputs) top-1 agreement of ``got`` vs ``reference``."""
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    out = np.asarray(got, dtype=np.float64).reshape(ref.shape)
    err = float(np.abs(ref - out).max(initial=0.0))
    if not class_scores(reference):
        return Quality(err, None)
    flipped = ref.argmax(1) != out.argmax(1)
    top2 = np.sort(ref[flipped], axis=1)[:, -2:]
    margin = float((top2[:, 1] - top2[:, 0]).max()) if flipped.any() else None
    return Quality(err, float(np.mean(~flipped)), int(flipped.sum()), margin)


def criterion_for(reference: np.ndarray, tolerance: float | None) -> Criterion:
    """``--tolerance`` if given; else top-1 for class-score outputs, else 1% of the output's peak."""
    if tolerance is not None:
        if not tolerance > 0:
            raise CodesignError(f"--tolerance must be a positive max abs error, not {tolerance}")
        return Criterion("max_abs_error", float(tolerance))
    ref = np.asarray(reference).reshape(len(reference), -1)
    if class_scores(reference):
        return Criterion("top1", TOP1)
    return Criterion("max_abs_error", REL_TOLERANCE * max(float(np.abs(ref).max()), 1e-6))


def layer_types(model: Model) -> dict[str, dict[str, str]]:
    """Per MAC layer, the ap_fixed type each of its Quant inputs means (weight, bias, input)."""
    from codesign.backends.precision import quant_type

    out: dict[str, dict[str, str]] = {}
    for node in model.nodes_of(list(MAC_OPS)):
        row = {}
        for kind, name in (("input", node.input[0]), ("weight", node.input[1])):
            producer = model.producer(name)
            t = quant_type(model, producer) if producer is not None else None
            if t is not None:
                row[kind] = t.hls()
        bias = _bias_quant(model, node)
        if bias is not None:
            row["bias"] = bias
        out[node.name] = row
    return out


def _bias_quant(model: Model, node) -> str | None:
    from codesign.backends.precision import quant_type

    names = list(node.input[2:3])
    if node.op_type == "MatMul":
        cons = model.consumers(node.output[0])
        if len(cons) == 1 and cons[0].op_type == "Add":
            names = [n for n in cons[0].input if n != node.output[0]]
    for name in names:
        producer = model.producer(name) if name else None
        t = quant_type(model, producer) if producer is not None else None
        if t is not None:
            return t.hls()
    return None


#: Ops that only move elements: a per-tensor quantizer commutes with them exactly.
_MOVES = frozenset({"Flatten", "Reshape", "Transpose", "Identity", "Dropout", "Squeeze", "Unsqueeze"})


def hoist_quantizers(model: Model) -> Model:
    """Move per-tensor activation Quants above Flatten/Reshape/Transpose chains onto the producing op (in place).

    Same values (quantization is elementwise), but the hardware then types the producer's
    own output (hls4ml fuses a Quant into the Relu before it) instead of passing it through
    an untyped, default-precision reshaping layer.
    """
    changed = False
    for quant in [n for n in model.graph.node if n.op_type == "Quant"]:
        scale = model.constant(quant.input[1])
        if scale is None or np.asarray(scale).size != 1 or model.constant(quant.input[0]) is not None:
            continue
        chain = []
        producer = model.producer(quant.input[0])
        while producer is not None and producer.op_type in _MOVES and len(model.consumers(producer.output[0])) == 1:
            chain.append(producer)
            producer = model.producer(producer.input[0])
        if not chain or model.constant(chain[-1].input[0]) is not None:
            continue
        top, q_out = chain[-1], quant.output[0]
        src = top.input[0]
        # quantize src under the Quant's output name' twin, then let the move chain carry it
        new_out = fresh_name(model, f"{src}_q")
        quant.input[0], quant.output[0] = src, new_out
        top.input[0] = new_out
        for c in model.consumers(q_out):
            for k, name in enumerate(c.input):
                if name == q_out:
                    c.input[k] = chain[0].output[0]
        graph_outputs = [o for o in model.graph.output if o.name == q_out]
        for o in graph_outputs:
            o.name = chain[0].output[0]
        model.invalidate()
        changed = True
    if changed:
        from codesign.passes.graph_edit import finish

        model = finish(model, True).model
    return model


def quantize_table_inputs(model: Model, calib: Calibration, cfg: QuantConfig) -> Model:
    """A signed power-of-two Quant on every Softmax input (SOFTMAX_INPUT_BITS) and every lookup-table function's
    (LUT_INPUT_BITS: the table has one entry per input value), sized to its calibrated range."""
    bits_of = {"Softmax": SOFTMAX_INPUT_BITS, **dict.fromkeys(LUT_OPS, LUT_INPUT_BITS)}
    for node in [n for n in model.graph.node if n.op_type in bits_of and n.domain in ("", "ai.onnx")]:
        x, bits = node.input[0], bits_of[node.op_type]
        producer = model.producer(x)
        if producer is not None and producer.op_type == "Quant":
            continue
        rng = calib.range(x)
        if rng is None:
            continue
        scale = act_scale(rng[0], rng[1], bits, True, cfg)
        base = f"{node.name}_in"
        out = fresh_name(model, f"{x}_q{bits}")
        ins = [
            x,
            add_initializer(model, f"{base}_scale", np.float32(scale)),
            add_initializer(model, f"{base}_zeropt", np.float32(0.0)),
            add_initializer(model, f"{base}_bitwidth", np.float32(bits)),
        ]
        q = make_node(model, "Quant", ins, [out], f"{base}_quant", domain=QONNX_DOMAIN, signed=1, narrow=0,
                      rounding_mode="ROUND")  # fmt: skip
        insert_after(model, producer, q)
        node.input[0] = out
        model.invalidate()
    if any(n.op_type in bits_of for n in model.graph.node):
        from codesign.passes.shapes import infer_shapes

        infer_shapes(model)
    return model


class SelectPrecision(Pass):
    """Float model -> the same model with per-layer power-of-two Quant nodes meeting a tolerance."""

    def __init__(
        self,
        data: np.ndarray | None = None,
        tolerance: float | None = None,
        samples: int = 1000,
        target: str | None = None,
        start_bits: tuple[int, ...] = START_BITS,
        min_bits: int = MIN_BITS,
        max_evaluations: int = 300,
    ):
        self.data = data
        self.tolerance = tolerance
        self.samples = samples
        self.target = target
        self.start_bits = start_bits
        self.min_bits = min_bits
        self.max_evaluations = max_evaluations

    # --- helpers
    def _inputs(self, model: Model) -> tuple[dict[str, np.ndarray], str]:
        """The calibration set by input name, cut to :data:`~codesign.passes.workload.EVAL_MACS` per evaluation."""
        from codesign.backends.reference import as_samples, n_samples, take
        from codesign.passes.workload import EVAL_MACS, MIN_SAMPLES, sample_cost, samples_within

        macs = sample_cost(model).macs
        if self.data is None:
            n = min(samples_within(self.samples, macs, EVAL_MACS, MIN_SAMPLES), synthetic_count(model, self.samples))
            cut = f"; cut from {self.samples}: {macs:.3g} MACs per sample" if n < self.samples else ""
            return synthetic_inputs(model, n), SYNTHETIC.format(n=n, seed=0) + cut
        if not isinstance(self.data, Mapping) and np.asarray(self.data).ndim == 0:
            raise CodesignError("calibration data is empty")
        x = as_samples(model, self.data)
        total = n_samples(x)
        if total == 0:
            raise CodesignError("calibration data is empty")
        n = samples_within(total, macs, EVAL_MACS, MIN_SAMPLES)
        if n < total:  # evenly spaced: data sorted by class keeps every class
            picked = take(x, np.linspace(0, total - 1, n).round().astype(int))
            return picked, f"calibration data ({n} of {total} samples, evenly spaced: {macs:.3g} MACs per sample)"
        return x, f"calibration data ({total} samples)"

    def _quantized(
        self, model: Model, calib: Calibration, bits: dict[str, dict[str, int]], clip_outliers: bool = True
    ) -> Model:
        cfg = QuantConfig(bits=32, layers={k: dict(v) for k, v in bits.items()}, act_signed=None,
                          clip_outliers=clip_outliers)  # fmt: skip
        return hoist_quantizers(quantize_table_inputs(Quantize(cfg, calib)(model).model, calib, cfg))

    def _cost(self, model: Model) -> tuple[float, dict[str, float]]:
        """LUT + DSP of the project's hls4ml estimate (total, and per layer)."""
        from codesign.passes.estimate import estimate

        report = estimate(model, "hls4ml", target=self.target)
        per = {r.name: float(r.LUT + r.DSP) for r in report.layers}
        return float(sum(per.values())), per

    def call(self, model: Model) -> PassResult:
        if any(n.op_type in ("Quant", "BipolarQuant", "MultiThreshold") for n in model.graph.node):
            raise CodesignError("model is already quantized; precision selection is for float models")
        layers = [n.name for n in model.nodes_of(list(MAC_OPS))]
        if not layers:
            raise CodesignError("model has no MatMul/Gemm/Conv layer to choose types for")
        from codesign.backends.reference import n_samples
        from codesign.passes.workload import MIN_EVALUATIONS, SEARCH_MACS, sample_cost, samples_within

        x, source = self._inputs(model)
        max_evaluations = samples_within(
            self.max_evaluations, n_samples(x) * sample_cost(model).macs, SEARCH_MACS, MIN_EVALUATIONS
        )
        reference = run_all_outputs(model, x)
        crit = criterion_all(reference, self.tolerance)
        calib = calibrate(model, x)
        evals = 0

        def evaluate(bits: dict[str, dict[str, int]]) -> tuple[Model, Quality]:
            nonlocal evals
            evals += 1
            q = self._quantized(model, calib, bits, clip_outliers=crit.kind == "top1")
            return q, quality_all(reference, run_all_outputs(q, x))

        bits: dict[str, dict[str, int]] = {}
        best: tuple[Model, Quality] | None = None
        for b in self.start_bits:
            bits = {name: {k: b for k in KINDS} for name in layers}
            best = evaluate(bits)
            if crit.met(best[1]):
                break
        else:
            raise CodesignError(
                f"no uniform width up to {self.start_bits[-1]} bits meets {crit.describe()} "
                f"(best: max abs error {best[1].max_abs_error:.3g}, top-1 {best[1].top1})"
            )
        current, q_now = best
        total, per = self._cost(current)
        frozen: set[tuple[str, str]] = set()
        step = 2
        while evals < max_evaluations:
            candidates = [
                (layer, kind)
                for layer in layers
                for kind in KINDS
                if (layer, kind) not in frozen and bits[layer][kind] - step >= self.min_bits
            ]
            if not candidates:
                if step == 1:
                    break
                step, frozen = 1, set()
                continue
            # try the layer that costs most first: its bits save the most LUT+DSP
            candidates.sort(key=lambda c: (-per.get(c[0], 0.0), KINDS.index(c[1])))
            accepted = False
            for layer, kind in candidates:
                trial = {k: dict(v) for k, v in bits.items()}
                trial[layer][kind] -= step
                model_t, q_t = evaluate(trial)
                if crit.met(q_t):
                    t_total, t_per = self._cost(model_t)
                    if t_total <= total:
                        bits, current, q_now, total, per = trial, model_t, q_t, t_total, t_per
                        accepted = True
                        break
                frozen.add((layer, kind))
                if evals >= max_evaluations:
                    break
            if not accepted and not candidates:
                break
        info = PrecisionInfo(
            bits=bits,
            types=layer_types(current),
            quality=q_now,
            criterion=crit,
            data_source=source,
            cost={"LUT+DSP": total},
            evaluations=evals,
            evaluation_limit=max_evaluations,
            inputs=x,
        )
        return PassResult(current, True, info)


def uniform_types(model: Model, bits: int, data: Mapping[str, np.ndarray] | np.ndarray) -> Model:
    """Every MAC layer's weight, bias and input at one width (the baseline the selection must beat)."""
    layers = {n.name: {k: bits for k in KINDS} for n in model.nodes_of(list(MAC_OPS))}
    return SelectPrecision(data)._quantized(model, calibrate(model, data), layers)


def estimated_cost(model: Model, target: str | None = None) -> dict[str, float]:
    """LUT and DSP of the project's hls4ml estimate (what the greedy step minimises as LUT+DSP)."""
    from codesign.passes.estimate import estimate

    totals = estimate(model, "hls4ml", target=target).totals
    return {"LUT": float(totals["LUT"]), "DSP": float(totals["DSP"]), "LUT+DSP": float(totals["LUT"] + totals["DSP"])}


@dataclass
class TensorRange:
    """One row of the numerical profile: a tensor, what it is, its range and the integer bits it needs."""

    tensor: str
    layer: str
    kind: str  # weight, bias, accumulator, activation, input
    lo: float
    hi: float

    @property
    def integer_bits(self) -> int:
        """Signed integer bits (sign included) that hold [lo, hi] without saturating."""
        m = max(abs(self.lo), abs(self.hi))
        return 1 if m == 0 else int(np.floor(np.log2(m))) + 2

    def to_dict(self) -> dict[str, Any]:
        return {"tensor": self.tensor, "layer": self.layer, "kind": self.kind, "min": self.lo, "max": self.hi,
                "integer_bits": self.integer_bits}  # fmt: skip


def profile_ranges(model: Model, data: np.ndarray | None = None, samples: int = 1000) -> tuple[list[TensorRange], str]:
    """Per-tensor ranges (weights, biases, accumulators, activations) on ``data`` or the synthetic set."""
    x, source = SelectPrecision(data, samples=samples)._inputs(model)
    calib = calibrate(model, x)
    rows: list[TensorRange] = [
        TensorRange(n, "-", "input", *calib.ranges[n]) for n in model.inputs if n in calib.ranges
    ]
    for node in model.graph.node:
        if node.op_type in MAC_OPS:
            for kind, name in (("weight", node.input[1]), ("bias", node.input[2] if len(node.input) > 2 else "")):
                value = model.constant(name) if name else None
                if value is not None and value.size:
                    rows.append(TensorRange(name, node.name, kind, float(value.min()), float(value.max())))
        if node.op_type == "Add" and any(model.constant(i) is not None for i in node.input):
            producer = next((model.producer(i) for i in node.input if model.producer(i) is not None), None)
            if producer is not None and producer.op_type in MAC_OPS:
                bias = next(i for i in node.input if model.constant(i) is not None)
                value = model.constant(bias)
                rows.append(TensorRange(bias, producer.name, "bias", float(value.min()), float(value.max())))
        for out in node.output:
            if out in calib.ranges:
                kind = "accumulator" if node.op_type in MAC_OPS or node.op_type == "Add" else "activation"
                rows.append(TensorRange(out, node.name, kind, *calib.ranges[out]))
    return rows, source


def select_precision(
    model: Model, data: np.ndarray | None = None, tolerance: float | None = None, **kw: Any
) -> PassResult:
    """Functional form of :class:`SelectPrecision`."""
    return SelectPrecision(data, tolerance, **kw)(model)


def is_float_model(model: Model) -> bool:
    """True when no quantizer pins a type anywhere (what the selection pass is for)."""
    return not any(n.op_type in ("Quant", "BipolarQuant", "MultiThreshold", "FloatQuant") for n in model.graph.node)


__all__ = [
    "Criterion",
    "PrecisionInfo",
    "Quality",
    "SelectPrecision",
    "TensorRange",
    "criterion_all",
    "criterion_for",
    "estimated_cost",
    "is_float_model",
    "layer_types",
    "profile_ranges",
    "quality",
    "quality_all",
    "run_all_outputs",
    "run_outputs",
    "select_precision",
    "synthetic_inputs",
    "uniform_types",
]  # fmt: skip
