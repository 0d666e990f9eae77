"""Post-training quantization on the IR: QONNX ``Quant`` nodes for weights, biases, inputs.

Every MatMul/Gemm/Conv with static weights gets a weight quantizer, a bias quantizer
(its Add constant, or its C/B input) and an activation quantizer on its input, with
per-layer bit widths resolved like hls4ml's ``name`` granularity (layer name first,
then op type, then the default). Scales are powers of two by default, which is
exactly the ``ap_fixed`` fixed-point hls4ml implements; float scales are an option.
Activation ranges come from calibration data, or, without data, from an estimate
built on the weight and BatchNorm statistics (:mod:`codesign.passes.calibrate`).
Models that already carry quantizers are re-quantized in place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper

from codesign.errors import CodesignError
from codesign.ir.model import Model
from codesign.ir.quant import QONNX_DOMAIN
from codesign.passes.base import Pass, PassResult
from codesign.passes.calibrate import Calibration, calibrate, estimate_ranges, quant_grid
from codesign.passes.clean import FoldBatchNorm, RemoveIdentity
from codesign.passes.graph_edit import (
    add_initializer,
    finish,
    fresh_name,
    insert_after,
    make_node,
    replace_initializer,
)

MAC_OPS = frozenset({"MatMul", "Gemm", "Conv"})
WEIGHT_QUANTS = frozenset({"Quant", "BipolarQuant"})
ROUNDING_MODES = ("ROUND", "ROUND_TO_ZERO", "CEIL", "FLOOR", "HALF_UP", "HALF_EVEN")
SCALES = ("pow2", "float")
KINDS = ("weight", "bias", "act")


# ------------------------------------------------------------------ configuration
@dataclass
class LayerBits:
    """Resolved bit widths of one layer; None leaves that tensor float."""

    weight: int | None
    bias: int | None
    act: int | None


@dataclass
class QuantConfig:
    """What to quantize and how.

    ``layers`` maps a node name or an op type to an int (all three widths), a dict
    ``{"weight": 4, "bias": 8, "act": 6}`` (missing keys use the defaults) or None /
    0 (keep the layer float). Names win over op types, like hls4ml's ``name``
    granularity over ``type``.
    """

    bits: int = 8
    weight_bits: int | None = None
    bias_bits: int | None = None
    act_bits: int | None = None
    layers: dict[str, Any] = field(default_factory=dict)
    act_signed: bool | None = None  # None: unsigned where the range is non-negative
    narrow: bool = False
    rounding_mode: str = "ROUND"
    scale: str = "pow2"
    per_channel: bool = False
    bias_correction: bool = True  # shift biases by the mean output error of quantized weights
    #: activation scales may clip calibration outliers (MSE-best); False keeps the whole calibrated range,
    #: as a max-abs-error tolerance needs (a subsample's MSE never sees the rare values it clips)
    clip_outliers: bool = True

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise CodesignError(f"scale must be one of {', '.join(SCALES)}, not {self.scale!r}")
        if self.rounding_mode.upper() not in ROUNDING_MODES:
            raise CodesignError(f"rounding mode must be one of {', '.join(ROUNDING_MODES)}, not {self.rounding_mode!r}")
        self.rounding_mode = self.rounding_mode.upper()
        for width in (self.bits, self.weight_bits, self.bias_bits, self.act_bits):
            _check_bits(width)

    def resolve(self, node: onnx.NodeProto) -> LayerBits:
        base = LayerBits(
            self.weight_bits if self.weight_bits is not None else self.bits,
            self.bias_bits if self.bias_bits is not None else self.bits,
            self.act_bits if self.act_bits is not None else self.bits,
        )
        spec = self.layers.get(node.name, self.layers.get(node.op_type, ...))
        if spec is ...:
            return base
        if not spec:
            return LayerBits(None, None, None)
        if isinstance(spec, int):
            _check_bits(spec)
            return LayerBits(spec, spec, spec)
        if isinstance(spec, Mapping):
            unknown = set(spec) - set(KINDS)
            if unknown:
                raise CodesignError(f"layer {node.name!r}: unknown keys {sorted(unknown)}; use weight, bias, act")
            for v in spec.values():
                _check_bits(v or None)
            return LayerBits(*(spec[k] or None if k in spec else getattr(base, k) for k in KINDS))
        raise CodesignError(f"layer {node.name!r}: bit width must be an int or a dict, not {type(spec).__name__}")


def _check_bits(width: int | None) -> None:
    if width is not None and (not isinstance(width, (int, np.integer)) or not 1 <= width <= 32):
        raise CodesignError(f"bit width must be an integer from 1 to 32, not {width!r}")


# ------------------------------------------------------------------ scales
def _pow2_ceil(x: np.ndarray) -> np.ndarray:
    return np.exp2(np.ceil(np.log2(x)))


def _int_max(bits: int, signed: bool, narrow: bool) -> int:
    return 2 ** (bits - 1) - 1 if signed else 2**bits - 1 - int(narrow)


def _int_min(bits: int, signed: bool, narrow: bool) -> int:
    return -(2 ** (bits - 1)) + int(narrow) if signed else 0


def best_pow2(values: np.ndarray, bits: int, signed: bool, narrow: bool, tries: int = 4, peak: float = 0.0) -> float:
    """The power-of-two scale with the least squared error on ``values``.

    The smallest scale that clips nothing wastes up to one bit when the maximum is an
    outlier; trying a few halvings (clipping the outliers) recovers it, as ap_fixed
    users do by hand when they pick the integer bits. ``peak``: the tensor's true largest
    magnitude when ``values`` is a subsample (which may miss it): the search starts there.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    lo_q, hi_q = _int_min(bits, signed, narrow), _int_max(bits, signed, narrow)
    m = float(np.max(values)) if not signed else float(np.max(np.abs(values)))
    m = max(m, float(peak))
    if m <= 0:
        return 1.0
    start = float(_pow2_ceil(np.asarray(m / max(hi_q, 1))))
    best, best_err = start, math.inf
    for k in range(tries):
        scale = start / 2**k
        err = float(np.sum((np.clip(np.round(values / scale), lo_q, hi_q) * scale - values) ** 2))
        if err < best_err:
            best, best_err = scale, err
    return best


def weight_scale(
    w: np.ndarray, bits: int, cfg: QuantConfig, axis: int | None, x_rows: np.ndarray | None = None
) -> np.ndarray:
    """Scale for ``w``, per tensor or per output channel on ``axis``.

    Power-of-two scales are chosen by least squared error: on the layer's output
    ``x_rows @ w`` when calibration rows of a 2-D weight's input are known (the error
    that matters), else on the weights themselves.
    """
    rows = w.reshape(1, -1) if axis is None else np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    qmax = max(_int_max(bits, True, cfg.narrow), 1)
    if cfg.scale != "pow2":
        m = np.abs(rows).max(axis=1)
        scale = np.where(m > 0, m, 1.0) / qmax
    elif x_rows is not None and w.ndim == 2:
        scale = _output_mse_pow2(w, bits, cfg, axis, x_rows)
    else:
        scale = np.array([best_pow2(r, bits, True, cfg.narrow) for r in rows])
    if axis is None:
        return np.float32(np.asarray(scale).reshape(-1)[0])
    shape = [1] * w.ndim
    shape[axis] = w.shape[axis]
    return np.asarray(scale).reshape(shape).astype(np.float32)


def _output_mse_pow2(w: np.ndarray, bits: int, cfg: QuantConfig, axis: int | None, x_rows: np.ndarray) -> np.ndarray:
    """Per-tensor or per-column power-of-two scale minimising ||X (W_q - W)||^2."""
    wk = w if axis in (None, 1) else w.T  # (K, C): columns are output channels
    x = x_rows.reshape(len(x_rows), -1).astype(np.float64)
    if x.shape[1] != wk.shape[0]:
        return np.array([best_pow2(r, bits, True, cfg.narrow) for r in (wk.reshape(1, -1) if axis is None else wk.T)])
    lo_q, hi_q = _int_min(bits, True, cfg.narrow), _int_max(bits, True, cfg.narrow)
    if axis is None:
        m = float(np.abs(wk).max()) or 1.0
        start = np.array([float(_pow2_ceil(np.asarray(m / max(hi_q, 1))))])
    else:  # every column at once (one product per candidate, not one per column: float models took minutes)
        m = np.abs(wk).max(axis=0)
        start = np.array([float(_pow2_ceil(np.asarray(v / max(hi_q, 1)))) for v in np.where(m > 0, m, 1.0)])
    cols = wk.reshape(wk.shape[0], -1) if axis is not None else wk.reshape(-1, 1) if wk.ndim == 1 else wk
    best_err, best = np.full(len(start), np.inf), start.copy()
    for k in range(4):
        s = start / 2**k
        if axis is None:
            dq = np.clip(np.round(wk / s[0]), lo_q, hi_q) * s[0] - wk
            err = np.array([float(np.sum((x @ dq) ** 2))])
        else:
            dq = np.clip(np.round(cols / s), lo_q, hi_q) * s - cols
            err = np.sum((x @ dq) ** 2, axis=0)
        take = (err < best_err) | ((err == best_err) & (s < best))  # min((err, s)) per column
        best_err, best = np.where(take, err, best_err), np.where(take, s, best)
    return best


def act_scale(
    lo: float, hi: float, bits: int, signed: bool, cfg: QuantConfig, sample: np.ndarray | None = None
) -> np.float32:
    """Scale for an activation in [lo, hi]; with calibration samples, the MSE-best power of 2."""
    m = max(hi, -lo if signed else 0.0)
    if cfg.scale == "pow2" and cfg.clip_outliers and sample is not None and sample.size:  # from the whole range
        return np.float32(best_pow2(sample, bits, signed, cfg.narrow, peak=m))
    m = m if m > 0 else 1.0
    scale = m / _int_max(bits, signed, cfg.narrow)
    return np.float32(_pow2_ceil(np.asarray(scale)) if cfg.scale == "pow2" else scale)


# ------------------------------------------------------------------ graph edits
def _weight_axis(model: Model, node: onnx.NodeProto, ndim: int) -> int:
    """Axis of the weight tensor that indexes output channels."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        for a in node.attribute:
            if a.name == "transB" and a.i:
                return 0
    return ndim - 1


def _float_source(model: Model, name: str) -> tuple[str | None, onnx.NodeProto | None]:
    """(float initializer behind ``name``, existing quantizer in between or None)."""
    if model.initializer(name) is not None:
        return name, None
    producer = model.producer(name)
    if producer is not None and producer.op_type in WEIGHT_QUANTS and model.initializer(producer.input[0]) is not None:
        return producer.input[0], producer
    return None, None


def _quant_node(
    model: Model, src: str, out: str, scale: np.ndarray, bits: int, signed: bool, cfg: QuantConfig, base: str
):
    s = add_initializer(model, f"{base}_scale", np.asarray(scale, dtype=np.float32))
    z = add_initializer(model, f"{base}_zeropt", np.float32(0.0))
    b = add_initializer(model, f"{base}_bitwidth", np.float32(bits))
    return make_node(
        model, "Quant", [src, s, z, b], [out], f"{base}_quant",
        domain=QONNX_DOMAIN, signed=int(signed), narrow=int(cfg.narrow), rounding_mode=cfg.rounding_mode,
    )  # fmt: skip


def _bipolar_node(model: Model, src: str, out: str, scale: np.ndarray, base: str):
    s = add_initializer(model, f"{base}_scale", np.asarray(scale, dtype=np.float32))
    return make_node(model, "BipolarQuant", [src, s], [out], f"{base}_quant", domain=QONNX_DOMAIN)


def _quantize_constant(
    model: Model,
    node: onnx.NodeProto,
    index: int,
    bits: int,
    cfg: QuantConfig,
    axis_fn,
    base: str,
    x_rows: np.ndarray | None = None,
) -> dict:
    """Put a fresh quantizer on ``node.input[index]`` (dropping a previous one)."""
    name = node.input[index]
    src, old = _float_source(model, name)
    if src is None:
        return {}
    if old is not None:
        # re-quantize what the layer computes with (the trained quantized values), not
        # the latent float weights a QAT model never used at inference
        effective = model.constant(name)
        if len(model.consumers(old.output[0])) == 1:
            model.graph.node.remove(old)
            model.invalidate()
        src = add_initializer(model, f"{base}_effective", effective.astype(np.float32))
    w = model.initializer(src).astype(np.float64)
    axis = axis_fn(w.ndim) if (cfg.per_channel and w.ndim > 1) else None
    out = f"{base}_q"
    out = fresh_name(model, out)
    if bits == 1:
        mean_abs = float(np.mean(np.abs(w))) or 1.0
        scale = np.float32(_pow2_ceil(np.asarray(mean_abs)) if cfg.scale == "pow2" else mean_abs)
        qnode = _bipolar_node(model, src, out, scale, base)
    else:
        if node.op_type == "Gemm" and index == 1 and x_rows is not None and axis is None and _transposed_b(node):
            w_for_rows = w.T
        else:
            w_for_rows = w
        scale = weight_scale(
            w_for_rows, bits, cfg, None if axis is None else (1 if w_for_rows is not w else axis), x_rows
        )
        qnode = _quant_node(model, src, out, scale, bits, True, cfg, base)
    model.graph.node.insert(0, qnode)
    node.input[index] = out
    model.invalidate()
    return {"bits": bits, "scale": np.asarray(scale).tolist() if np.size(scale) == 1 else "per-channel",
            "requantized": old is not None}  # fmt: skip


def _transposed_b(node: onnx.NodeProto) -> bool:
    return any(a.name == "transB" and a.i for a in node.attribute)


def _bias_site(model: Model, mac: onnx.NodeProto) -> tuple[onnx.NodeProto, int] | None:
    """(node, input index) holding ``mac``'s bias: Gemm/Conv input 2, or the Add after a MatMul."""
    if mac.op_type in ("Gemm", "Conv"):
        return (mac, 2) if len(mac.input) > 2 and mac.input[2] else None
    consumers = model.consumers(mac.output[0])
    if len(consumers) != 1 or consumers[0].op_type != "Add":
        return None
    add = consumers[0]
    for k, name in enumerate(add.input):
        if name != mac.output[0] and _float_source(model, name)[0] is not None:
            return add, k
    return None


def _weight_error_delta(
    model: Model, mac: onnx.NodeProto, w_float: np.ndarray, mean_x: np.ndarray
) -> np.ndarray | None:
    """E[x] applied to (W_q - W): the mean output shift quantized weights cause, per channel."""
    w_q = model.constant(mac.input[1])
    if w_q is None:
        return None
    dw = w_q.astype(np.float64) - w_float
    if mac.op_type == "MatMul":
        return (
            np.asarray(mean_x, dtype=np.float64).reshape(-1, dw.shape[0])[-1] @ dw
            if mean_x.size == dw.shape[0]
            else None
        )
    if mac.op_type == "Gemm":
        attrs = {a.name: helper.get_attribute_value(a) for a in mac.attribute}
        if attrs.get("transA", 0) or mean_x.size != (dw.shape[1] if attrs.get("transB", 0) else dw.shape[0]):
            return None
        dw = dw.T if attrs.get("transB", 0) else dw
        return float(attrs.get("alpha", 1.0)) / float(attrs.get("beta", 1.0) or 1.0) * (mean_x.reshape(-1) @ dw)
    if mac.op_type == "Conv" and mac.domain == "" and mean_x.ndim >= 2:
        group = next((a.i for a in mac.attribute if a.name == "group"), 1)
        if group != 1:
            return None
        per_channel = mean_x.reshape(mean_x.shape[0], -1).mean(axis=1)
        return dw.reshape(dw.shape[0], dw.shape[1], -1).sum(axis=2) @ per_channel
    return None


def _correct_bias(model: Model, mac: onnx.NodeProto, site: tuple[onnx.NodeProto, int], ranges: Calibration) -> str:
    """Bias correction (Nagel et al. 2019): b -= E[x] (W_q - W), so errors average out."""
    mean_x = ranges.means.get(mac.input[0])
    w_src, _ = _float_source(model, mac.input[1])
    b_src, _ = _float_source(model, site[0].input[site[1]])
    if mean_x is None or w_src is None or b_src is None:
        return "skipped (no input mean)"
    delta = _weight_error_delta(model, mac, model.initializer(w_src).astype(np.float64), np.asarray(mean_x))
    bias = model.initializer(b_src).astype(np.float64)
    if delta is None or bias.size != delta.size:
        return "skipped (layout not supported)"
    replace_initializer(model, b_src, (bias - delta.reshape(bias.shape)).astype(np.float32))
    return f"applied (max shift {float(np.abs(delta).max()):.3g})"


def _per_channel_mean(mac: onnx.NodeProto, diff: np.ndarray) -> np.ndarray:
    """Average a per-element output shift over everything but the output channel."""
    if mac.op_type == "Conv" and diff.ndim >= 2 and not mac.domain:
        return diff.reshape(diff.shape[0], -1).mean(axis=1)  # (C, H, W): channels first
    return diff.reshape(-1, diff.shape[-1]).mean(axis=0)


def _empirical_bias_correction(
    model: Model, ranges: Calibration, data: Any, info: QuantizeInfo, limit: int = 512
) -> None:
    """Layer by layer, shift each bias so the quantized layer's mean output on the
    calibration data equals the float model's: removes the systematic part of weight,
    activation and upstream errors (empirical bias correction)."""
    sample = data[:limit] if isinstance(data, np.ndarray) else data
    for mac in [n for n in model.graph.node if n.name in info.layers]:
        site = _bias_site(model, mac)
        if site is None:
            continue
        out = site[0].output[0]
        b_src, _ = _float_source(model, site[0].input[site[1]])
        target = ranges.means.get(out)
        if b_src is None or target is None:
            continue
        now = calibrate(model, sample, tensors=[out]).means.get(out)
        if now is None or now.shape != target.shape:
            continue
        delta = _per_channel_mean(mac, now - target)
        bias = model.initializer(b_src).astype(np.float64)
        if bias.size != delta.size:
            continue
        replace_initializer(model, b_src, (bias - delta.reshape(bias.shape)).astype(np.float32))
        model.invalidate()
        info.layers[mac.name]["bias_correction"] = f"empirical (max shift {float(np.abs(delta).max()):.3g})"


# ------------------------------------------------------------------ the pass
@dataclass
class QuantizeInfo:
    """What the pass did: per-layer widths, layers left float (with why), range source."""

    layers: dict[str, dict[str, Any]] = field(default_factory=dict)
    float_layers: dict[str, str] = field(default_factory=dict)
    ranges_source: str = ""
    requantized: list[str] = field(default_factory=list)
    folded_batchnorm: list[str] = field(default_factory=list)


class Quantize(Pass):
    """Insert/re-set QONNX quantizers per :class:`QuantConfig` (see module docstring)."""

    def __init__(
        self,
        config: QuantConfig | None = None,
        calibration: Any = None,
        input_range: tuple[float, float] | None = None,
        fold_batchnorm: bool = True,
    ):
        self.config = config or QuantConfig()
        reusable = (np.ndarray, Mapping, Calibration, list, tuple)
        if calibration is not None and not isinstance(calibration, reusable) and iter(calibration) is calibration:
            calibration = list(calibration)  # a one-shot iterator: keep the batches for the second pass
        self.calibration = calibration
        self.input_range = input_range
        self.fold_batchnorm = fold_batchnorm

    def _ranges(self, original: Model, prepared: Model) -> Calibration:
        if isinstance(self.calibration, Calibration):
            return self.calibration
        if self.calibration is not None:
            return calibrate(prepared, self.calibration)
        return estimate_ranges(original, self.input_range)

    def call(self, model: Model) -> PassResult:
        info = QuantizeInfo()
        original = model
        if self.fold_batchnorm:
            folded = FoldBatchNorm()(model)
            model = RemoveIdentity(arithmetic=False)(folded.model).model
            info.folded_batchnorm = list(folded.info.folded) if folded.info else []
        ranges = self._ranges(original, model)
        info.ranges_source = ranges.source
        empirical = self.config.bias_correction and self._data() is not None
        act_quants: dict[tuple[str, int, bool], str] = {}
        for node in list(model.graph.node):
            if node.op_type not in MAC_OPS or len(node.input) < 2:
                continue
            self._quantize_layer(model, node, ranges, act_quants, info, analytic=not empirical)
        result = finish(model, bool(info.layers) or bool(info.requantized), info)
        if empirical and info.layers:
            _empirical_bias_correction(result.model, ranges, self._data(), info)
        return result

    def _data(self) -> Any:
        """Raw calibration samples (None when none, or only ranges, were given)."""
        return None if self.calibration is None or isinstance(self.calibration, Calibration) else self.calibration

    def _quantize_layer(self, model, node, ranges, act_quants, info, analytic: bool = True) -> None:
        bits = self.config.resolve(node)
        if bits.weight is None and bits.act is None and bits.bias is None:
            info.float_layers[node.name] = "excluded by configuration"
            return
        if _float_source(model, node.input[1])[0] is None:
            info.float_layers[node.name] = "weights are not static (activation x activation product)"
            return
        row: dict[str, Any] = {}
        axis_fn = lambda ndim: _weight_axis(model, node, ndim)
        if bits.weight is not None:
            x_rows = ranges.rows.get(node.input[0]) if node.op_type in ("MatMul", "Gemm") else None
            row["weight"] = _quantize_constant(
                model, node, 1, bits.weight, self.config, axis_fn, f"{node.name}_w", x_rows
            )
        site = _bias_site(model, node)
        if bits.weight is not None and site is not None and self.config.bias_correction and analytic:
            row["bias_correction"] = _correct_bias(model, node, site, ranges)
        if bits.bias is not None and site is not None:
            bias_node, idx = site
            row["bias"] = _quantize_constant(
                model, bias_node, idx, max(bits.bias, 2), self.config, lambda n: n - 1, f"{node.name}_b"
            )
        if bits.act is not None:
            act = self._quantize_input(model, node, bits.act, ranges, act_quants)
            if isinstance(act, str):
                info.float_layers[node.name] = act
            else:
                row["act"] = act
        if any(r.get("requantized") for r in row.values() if isinstance(r, dict)):
            info.requantized.append(node.name)
        info.layers[node.name] = row

    def _quantize_input(self, model, node, bits: int, ranges: Calibration, cache) -> dict | str:
        """Quantize ``node.input[0]``; returns a description, or why it stayed float."""
        if bits < 2:
            return "1-bit activations need BipolarQuant/MultiThreshold (not produced by this pass)"
        x = node.input[0]
        producer = model.producer(x)
        if producer is not None and producer.op_type == "Quant" and model.constant(x) is None:
            return self._requantize_act(model, producer, bits, ranges)
        rng = ranges.range(x)
        if rng is None:
            return f"no range for its input {x!r} (not calibrated)"
        lo, hi = rng
        signed = self.config.act_signed if self.config.act_signed is not None else lo < 0
        key = (x, bits, signed)
        if key not in cache:
            scale = act_scale(lo, hi, bits, signed, self.config, ranges.sample(x))
            out = fresh_name(model, f"{x}_q{bits}")
            qnode = _quant_node(model, x, out, scale, bits, signed, self.config, f"{node.name}_in")
            insert_after(model, producer, qnode)
            cache[key] = out
        node.input[0] = cache[key]
        model.invalidate()
        return {"bits": bits, "signed": bool(signed), "range": (lo, hi), "scale": float(_scale_of(model, cache[key]))}

    def _requantize_act(self, model, quant: onnx.NodeProto, bits: int, ranges: Calibration) -> dict:
        """An existing activation quantizer: new width over its trained clipping range
        (narrowed to what the calibration data reaches, if any)."""
        signed = bool(next((a.i for a in quant.attribute if a.name == "signed"), 1))
        lo, hi = quant_grid(model, quant) or (-1.0, 1.0)
        sample = None
        data = ranges.range(quant.input[0]) if ranges.samples else None
        if data is not None:
            lo, hi = max(lo, data[0]), min(hi, data[1])
            sample = ranges.sample(quant.input[0])
            sample = None if sample is None else np.clip(sample, lo, hi)
        scale = act_scale(lo, hi, bits, signed, self.config, sample)
        quant.input[1] = add_initializer(model, f"{quant.name}_scale", np.float32(scale))
        quant.input[3] = add_initializer(model, f"{quant.name}_bitwidth", np.float32(bits))
        model.invalidate()
        return {"bits": bits, "signed": signed, "range": (lo, hi), "scale": float(scale), "requantized": True}


def _scale_of(model: Model, quant_out: str) -> float:
    producer = model.producer(quant_out)
    return float(np.asarray(model.initializer(producer.input[1])).max())


def quantize(
    model: Model, bits: int = 8, layers: dict[str, Any] | None = None, calibration: Any = None, **options: Any
) -> PassResult:
    """Functional form: ``quantize(model, 8, {"fc1": 4}, calib_array, scale="float")``."""
    pass_options = {k: options.pop(k) for k in ("input_range", "fold_batchnorm") if k in options}
    config = QuantConfig(bits=bits, layers=dict(layers or {}), **options)
    return Quantize(config, calibration, **pass_options)(model)


__all__ = ["LayerBits", "QuantConfig", "Quantize", "QuantizeInfo", "act_scale", "quantize", "weight_scale"]
