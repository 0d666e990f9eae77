"""The ``hls4ml`` estimator: an analytic model of hls4ml's Vivado/Vitis layer templates.

Microseconds per layer, no training data. Each rule below is hls4ml's, with its source:

* **Multipliers per layer** = weights / reuse factor (``n_in*n_out/RF``; hls4ml's own
  ``VivadoDSPEstimator``, ``hls4ml/optimization/dsp_aware_pruning/objectives/vivado_objectives.py``).
* **DSP vs LUT** (the DSP/LUT split): a product uses DSP48E2 slices only when the weight
  precision is at least 9 bits ("Vivado doesn't use DSP when precision < 9", same file);
  below that Vivado builds it from LUTs. One DSP48E2 multiplies 27x18 bits, wider
  products tile: ``ceil(a/27)*ceil(b/18)`` DSPs (hls4ml issue #31: 18x24 is one DSP48,
  19x24 two). A non-constant LUT multiplier costs ~1.2*a*b LUTs (hls4ml issue #99:
  18x18 LUT multipliers ~365-411 LUTs).
* **Pruned weights**: with ``RF == 1`` (latency strategy, or resource strategy at RF 1,
  "similar to Latency") weights are constants in fully unrolled code, so HLS removes
  multiplications by zero and turns multiplications by +-2^k into wiring (free);
  the remaining constant products become shift-adds, one adder per extra canonical-
  signed-digit of the weight. With ``RF > 1`` multipliers are shared (weights are muxed
  in), so pruning saves nothing (``layer_savings`` in the same hls4ml file).
* **Weight memory**: latency strategy keeps weights in registers/logic; resource strategy
  with RF > 1 stores them in BRAM: ``ceil(n_weights*b_w / (RF*36))`` BRAM_18K (same file).
* **Adder trees**: one adder per non-zero term per output (``k-1`` for ``k`` terms),
  width = product width + 1, capped at the accumulator width; 1 LUT per adder bit on
  UltraScale+ (LUT + CARRY8). Depth ``ceil(log2 k)`` sets the latency.
* **Activations**: ReLU-like = one comparator/mux per element (1 LUT per bit); a leaky
  slope of 1 is the identity, one of 0 or +-2^-k a shift (hls4ml's test models);
  sigmoid/tanh/softmax/... read hls4ml's lookup tables (``table_size`` 1024 entries of
  18 bits = one BRAM_18K, shared by two elements through the dual port); softmax adds an
  exp table, an inverse table and one 18x18 multiplier (DSP) per element.
* **Float tensors** use hls4ml's default precision ``ap_fixed<16,6>`` (16 bits).
* **io_stream** adds FIFOs between layers (SRL LUTs when shallow, BRAM when deep; one
  register per stream bit) and runs convolutions pixel by pixel through a line buffer
  (kernel window in registers, k_h - 1 input rows in SRLs); io_parallel convolutions also
  reuse one kernel per output pixel (ParallelizationFactor 1), so II = pixels * RF.
* **Calibrated regime** (:mod:`.calibration`): Resource-strategy Dense layers with shared
  multipliers snap the reuse factor to hls4ml's closest valid one, and cost LUT/FF with
  per-primitive constants fitted on real hls4ml C-synthesis reports
  (``hls4ml_calibration.json``); latency = effective RF + a fitted pipeline constant.
  Designs whose MAC layers all run at RF 1 (latency strategy) cost LUT/FF as constants
  fitted on hls4ml's own repository baselines times per-primitive counts
  (:meth:`Hls4mlEstimator.unrolled_terms`: each family's analytic LUT/FF, DSP products,
  layers, io_stream FIFOs per HLS tool, streamed-conv control), one set for both io types,
  when every row is inside their range. ``EstimateConfig.tool`` (vivado / vitis) picks the
  per-tool constants; unknown, they take the tools' mean with a wider band.

Every row carries a 90% ``interval`` per resource and latency (from leave-one-out residuals
of the calibration, per regime) and ``extrapolated`` notes when it leaves the calibrated
range; rows no data covers get a factor-of-two band. See ``benchmarks/estimator_accuracy.py``.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from codesign.ir.datatypes import BaseDataType, bitwidth, is_float
from codesign.ir.model import QUANT_OPS, Model
from codesign.passes.cost import MAC_OPS, _attr, _is_weight_quantizer, _mac_geometry, _prod
from codesign.passes.estimate import RESOURCES, EstimateConfig, EstimateReport, Estimator, LayerEstimate
from codesign.passes.estimate.calibration import (
    UNCALIBRATED_BAND,
    dense_counts,
    effective_reuse_factor,
    load_calibration,
)

#: hls4ml's default precision for float tensors: ap_fixed<16,6>.
DEFAULT_BITS = 16
#: Vivado maps a product to DSP48 only from this weight width up (hls4ml VivadoDSPEstimator).
DSP_MIN_WEIGHT_BITS = 9
#: DSP48E2 multiplier port widths (UltraScale/UltraScale+).
DSP_A_BITS, DSP_B_BITS = 27, 18
#: Pipeline stages of a DSP multiplier in hls4ml designs (hls4ml issue #49: NUM_STAGE=3).
DSP_STAGES = 3
#: LUTs per bit-product of a non-constant LUT multiplier (hls4ml issue #99: 18x18 ~ 401 LUTs).
LUT_MULT_PER_BIT2 = 1.2
#: hls4ml activation lookup tables: table_size x table_t (ap_fixed<18,8>).
TABLE_SIZE, TABLE_BITS = 1024, 18
BRAM_BITS = 18 * 1024
#: hls4ml's default clock uncertainty (12.5 %) shortens the usable period.
CLOCK_UNCERTAINTY = 0.125

FREE_OPS = frozenset(
    {"Reshape", "Flatten", "Identity", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Pad", "Dropout", "Gather",
     "Shape", "Slice", "Split", "Cast"}
)  # fmt: skip
COMPARE_OPS = frozenset({"Relu", "LeakyRelu", "PRelu", "Clip", "ThresholdedRelu", "Sign", "HardSigmoid", "Max", "Min"})
TABLE_OPS = frozenset(
    {"Sigmoid", "Tanh", "Selu", "Elu", "Softplus", "Softsign", "Exp", "Log", "Erf", "Gelu", "HardSwish"}
)
POOL_OPS = frozenset({"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"})
ELEMENTWISE_OPS = frozenset({"Add", "Sub", "Mul", "Div", "BatchNormalization"})
#: ONNX QDQ quantizers: like QONNX Quant, they set a layer's precision and cost nothing of their own.
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
#: Gates of hls4ml's recurrent layers (each a Dense over [x, h] plus an activation table).
RECURRENT_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
#: Data movement that hls4ml implements as copies into a registered output (Resize = its UpSampling layers).
COPY_OPS = frozenset({"Resize", "Upsample", "DepthToSpace", "SpaceToDepth", "Tile", "Expand"})


#: Primitive families the unrolled (RF 1) calibration scales: Dense and Conv layers, comparisons, tables, pools,
#: and the run-time dividers Vivado HLS keeps in padded average pools.
FAMILIES = ("dense", "conv", "compare", "table", "pool", "divide")
DIVIDER_NOTE = "rescale divider per output (Vivado HLS)"
#: Families whose pipeline depth differs per HLS tool: streamed activation tables take 3 cycles in Vivado HLS
#: 2020.1, 4 in Vitis HLS (2023.1 and 2024.1 baselines alike); io_parallel tables differ between Vitis versions
#: (2 cycles in 2023.1, 3 in 2024.1), so they keep one pooled depth.
TOOL_DEPTH_FAMILIES = {"io_stream": frozenset({"table"})}


def family_of(row: LayerEstimate) -> str | None:
    """The calibration family of an analytic row (None: wiring, or a layer type no baseline covers)."""
    if row.op in MAC_OPS and not (row.LUT == row.FF == row.DSP == 0 and row.latency_cycles == 0):
        return "conv" if row.op == "Conv" else "dense"
    if row.op in COMPARE_OPS:
        return "compare"
    if row.op in TABLE_OPS or row.op in ("Softmax", "LogSoftmax"):
        return "table"
    if row.op in POOL_OPS:
        return "divide" if row.note.startswith(DIVIDER_NOTE) else "pool"
    return None


def term_constant(consts: dict[str, float], term: str) -> float:
    """A fitted unrolled constant; a per-tool term of an unknown tool (``fifo@None``) takes the tools' mean."""
    if term in consts:
        return consts[term]
    base = term.split("@")[0] + "@"
    tools = [v for k, v in consts.items() if k.startswith(base)]
    return float(np.mean(tools)) if tools else (0.0 if term in ("layers", "dsp") else 1.0)


def bits_of(dt: BaseDataType) -> int:
    """Hardware width of a tensor: its QONNX width, or hls4ml's 16-bit default for floats."""
    return DEFAULT_BITS if is_float(dt) else max(1, bitwidth(dt))


def _csd_digits_loop(x: np.ndarray) -> np.ndarray:
    v = ((3 * x) ^ x) >> 1
    count = np.zeros_like(v)
    while np.any(v):
        count += v & 1
        v >>= 1
    return count


#: CSD digit counts and bit lengths of 0..2^16-1, so that costing 100k weights is two gathers.
_TABLE_RANGE = 1 << 16
_CSD_TABLE = _csd_digits_loop(np.arange(_TABLE_RANGE, dtype=np.int64)).astype(np.int8)
_BITLEN_TABLE = np.concatenate([[0], np.floor(np.log2(np.arange(1, _TABLE_RANGE))) + 1]).astype(np.int8)


def csd_digits(values: np.ndarray) -> np.ndarray:
    """Non-zero digits of each integer in canonical signed-digit (NAF) form: popcount((3x ^ x) >> 1)."""
    x = np.abs(np.asarray(values).astype(np.int64))
    if x.size and x.max() >= _TABLE_RANGE:
        return _csd_digits_loop(x)
    return _CSD_TABLE[x].astype(np.int64)


def bit_length(values: np.ndarray) -> np.ndarray:
    """Bits of ``|x|`` (0 for 0)."""
    x = np.abs(np.asarray(values).astype(np.int64))
    if x.size and x.max() >= _TABLE_RANGE:
        return np.floor(np.log2(np.maximum(x, 1))).astype(np.int64) + (x > 0)
    return _BITLEN_TABLE[x].astype(np.int64)


def weight_integers(model: Model, name: str) -> tuple[np.ndarray, int]:
    """The integer codes the hardware multiplies by, and their declared width.

    A Quant weight gives ``value/scale + zero_point`` at its bit width (hls4ml moves a
    non-power-of-two scale into a separate ApplyAlpha layer); a float weight is
    quantized to ``ap_fixed<16,6>`` like hls4ml's default.
    """
    value = np.asarray(model.constant(name))
    node = model.producer(name)
    if node is not None and node.op_type == "BipolarQuant":
        return np.where(value >= 0, 1, -1).astype(np.int64), 1
    if node is not None and node.op_type in ("Quant", "IntQuant") and len(node.input) >= 4:
        scale = np.asarray(model.constant(node.input[1]), dtype=value.dtype)
        zp = np.asarray(model.constant(node.input[2]), dtype=value.dtype)
        bits = int(np.max(model.constant(node.input[3])))
        ints = value / np.where(scale == 0, 1, scale)
        if np.any(zp):
            ints = ints + zp
        return np.rint(ints).astype(np.int32 if bits <= 31 else np.int64), bits
    dt = model.dtype(name)
    if not is_float(dt) and dt.is_integer():
        return np.round(value).astype(np.int64), bits_of(dt)
    if np.all(value == np.round(value)) and np.abs(value).max(initial=0) < 2**15:
        ints = np.round(value).astype(np.int64)
        return ints, max(1, int(np.abs(ints).max(initial=0)).bit_length() + 1)
    frac = DEFAULT_BITS - 6
    ints = np.clip(np.round(value * 2.0**frac), -(2 ** (DEFAULT_BITS - 1)), 2 ** (DEFAULT_BITS - 1) - 1)
    return ints.astype(np.int64), DEFAULT_BITS


def _is_pow2(x: np.ndarray) -> np.ndarray:
    a = np.abs(x)
    return (a & (a - 1)) == 0


def dsp_per_product(a_bits: int, b_bits: int) -> int:
    """DSP48E2 slices one a x b product needs (27x18 tiles, either operand on the 27-bit port)."""
    return min(math.ceil(a_bits / DSP_A_BITS) * math.ceil(b_bits / DSP_B_BITS),
               math.ceil(b_bits / DSP_A_BITS) * math.ceil(a_bits / DSP_B_BITS))  # fmt: skip


def uses_dsp(a_bits: int, w_bits: int) -> bool:
    """Vivado's DSP/LUT split for a product (see module docstring)."""
    return w_bits >= DSP_MIN_WEIGHT_BITS and a_bits >= 2


def adder_ns(width: float) -> float:
    """Delay of one carry-chain adder on UltraScale+ (LUT + CARRY8 + routing), in ns."""
    return 0.6 + width / 32.0


def mux_luts(ways: int, width: int) -> float:
    """LUT6 cost of a ``ways``:1 multiplexer of ``width`` bits (a LUT6 is a 4:1 mux)."""
    return 0.0 if ways <= 1 else width * math.ceil((ways - 1) / 3)


@dataclass
class MacShape:
    """Geometry of one MAC layer as hls4ml instantiates it."""

    n_in: int  # fan-in of one output
    n_out: int  # outputs computed by one kernel instance
    instances: int  # sequential kernel invocations (output pixels / rows)
    weights: np.ndarray | None  # integer codes, reshaped (n_in, n_out); None for two dynamic operands
    w_bits: int
    a_bits: int
    has_bias: bool

    @property
    def stats(self) -> WeightStats:
        hit = _STATS.get(id(self.weights))
        if hit is not None and hit[0]() is self.weights:
            return hit[1]
        st = weight_stats(self.weights)
        key = id(self.weights)
        _STATS[key] = (weakref.ref(self.weights, lambda _: _STATS.pop(key, None)), st)
        return st


#: Caches keyed by array identity (guarded by weak references): the search and the CLI cost the
#: same weights many times, and the IR replaces its constant arrays whenever they change.
_ORIENTED: dict[tuple[int, str], tuple[Any, np.ndarray, int]] = {}
_STATS: dict[int, tuple[Any, WeightStats]] = {}


def oriented_weights(model: Model, name: str, orient: str) -> tuple[np.ndarray, int]:
    """Integer weights as (fan_in, outputs) and their width (cached per IR constant)."""
    const = model.constant(name)
    key = (id(const), orient)
    hit = _ORIENTED.get(key)
    if hit is not None and hit[0]() is const:
        return hit[1], hit[2]
    ints, bits = weight_integers(model, name)
    if orient == "conv":
        ints = ints.reshape(ints.shape[0], -1).T
    else:
        ints = ints.reshape(-1, ints.shape[-1]) if ints.ndim > 1 else ints.reshape(-1, 1)
        ints = ints.T if orient == "dense_t" else ints
    _ORIENTED[key] = (weakref.ref(const, lambda _: _ORIENTED.pop(key, None)), ints, bits)
    return ints, bits


@dataclass(frozen=True)
class WeightStats:
    """What the latency-strategy cost needs from a constant weight matrix (independent of activations)."""

    n_real: int  # non-zero weights that are not +-2^k: real multiplications
    extra_digits: int  # sum over real weights of (CSD digits - 1): shift-adds per input bit width
    extra_digit_bits: int  # sum of (CSD digits - 1) * bit length of the weight
    max_digits: int
    adders: int  # adder-tree adders: sum over outputs of (non-zero terms - 1)
    max_terms: int
    n_wide: int = 0  # real weights of >= 3 CSD digits: what Vivado maps to a DSP (fewer digits: one shift-add)
    wide_bits: int = 0  # widest of those constants, sign included: the operand width a DSP actually sees


def weight_stats(w: np.ndarray) -> WeightStats:
    """Summarise integer weights (n_in, n_out), in the narrowest integer type for speed."""
    big = int(np.abs(w).max(initial=0))
    w = w.astype(np.int8 if big < 2**6 else np.int16 if big < 2**14 else np.int64, copy=False)
    nz = w != 0
    real = nz & ~_is_pow2(w)  # +-2^k (incl. +-1) is wiring
    terms = np.count_nonzero(nz, axis=0)  # non-zero terms per output
    wr = w[real]
    d1 = csd_digits(wr) - 1
    n_wide = int(np.count_nonzero(d1 >= 2))
    return WeightStats(
        n_real=int(wr.size), extra_digits=int(d1.sum()), extra_digit_bits=int((d1 * bit_length(wr)).sum()),
        max_digits=int(d1.max(initial=0)) + 1, adders=int(np.maximum(terms - 1, 0).sum()),
        max_terms=int(terms.max(initial=1)), n_wide=n_wide,
        wide_bits=int(bit_length(wr[d1 >= 2]).max(initial=0)) + 1,
    )  # fmt: skip


class Hls4mlEstimator(Estimator):
    """Analysis pass: per-layer LUT/FF/DSP/BRAM/latency of the hls4ml implementation."""

    key = "hls4ml"

    def __init__(self, config: EstimateConfig | None = None, **options: Any):
        super().__init__(config, **options)
        self.period = self.config.clock_ns * (1 - CLOCK_UNCERTAINTY)

    # ----------------------------------------------------------------- driver
    def estimate(self, model: Model) -> EstimateReport:
        rows, unsupported = self._analytic_rows(model)
        regime = self._unrolled_regime()
        notes: dict[str, list[str]] = {}
        calibrated = False
        if regime is not None:
            cal = load_calibration()
            for row in rows:
                notes[row.name] = cal.unrolled_extrapolations(
                    regime, row.op, family_of(row), bool(row.LUT or row.FF or row.DSP or row.BRAM_18K),
                    self._unrolled_bits.get(row.name), self.config.clock_ns,
                )  # fmt: skip
            # the constants were fitted on whole designs: all rows inside the baselines' range, or none calibrated
            calibrated = regime in cal.unrolled and not any(notes.values())
            if calibrated:
                self._apply_unrolled(rows, cal.unrolled[regime])
        # glue rows (ReLU, ...) of a calibrated design were part of the calibration totals: they share its band
        regimes = [hit[2] for hit in self._calibrated.values()]
        glue = max(set(regimes), key=regimes.count) if regimes else regime
        for row in rows:
            self._annotate(row, glue, notes.get(row.name), calibrated)
        return EstimateReport(self.key, self.config, rows, sorted(unsupported))

    def _analytic_rows(self, model: Model) -> tuple[list[LayerEstimate], set[str]]:
        """Every node's analytic estimate (shared-multiplier Dense layers already calibrated), FIFOs included."""
        self._calibrated: dict[str, tuple[dict[str, float], int, str, int]] = {}  # row -> counts, RF, regime, w bits
        self._seq: dict[str, int] = {}  # MAC row -> its sequential cycles (RF and pixel loops), not pipeline depth
        # RF-1 MAC row -> (weight bits, data bits, fan-in); compare/table/pool row -> (None, data bits, None)
        self._unrolled_bits: dict[str, tuple[int | None, int, int | None]] = {}
        self._shared = False  # some MAC layer shares its multipliers (RF > 1)
        self._fifo: dict[str, dict[str, float]] = {}  # io_stream row -> LUT/FF of its output FIFO
        self._conv: set[str] = {n.name for n in model.graph.node if n.op_type == "Conv"}
        rows: list[LayerEstimate] = []
        unsupported: set[str] = set()
        for node in model.graph.node:
            if _is_weight_quantizer(model, node):
                continue
            row = self.layer(model, node)
            if row.note == "no cost model":
                unsupported.add(node.op_type)
            if family_of(row) in ("compare", "table", "pool") and node.input:
                self._unrolled_bits[row.name] = (None, self._bits(model, node.input[0]), None)
            rows.append(row)
        if self.config.io_type == "io_stream":
            self._add_fifos(model, rows)
        return rows, unsupported

    def _unrolled_regime(self) -> str | None:
        """``unrolled_<io type>`` when no layer shares multipliers (RF 1 everywhere: the latency-strategy designs)."""
        return None if self._shared or self._calibrated else f"unrolled_{self.config.io_type}"

    def _apply_unrolled(self, rows: list[LayerEstimate], consts: dict[str, Any]) -> None:
        """Each row's LUT/FF = its primitive counts (:meth:`unrolled_terms`) times the fitted constants,
        latency = loops + depth."""
        for row in rows:
            fam = family_of(row)
            if fam is None:
                continue
            terms = self.unrolled_terms(row)
            for res in ("LUT", "FF"):
                setattr(row, res, sum(term_constant(consts[res], t) * v[res] for t, v in terms.items()))
            row.latency_cycles = round(
                self._seq.get(row.name, 0) + term_constant(consts["latency"], self.depth_term(fam))
            )
            row.note = (row.note + ", " if row.note else "") + f"calibrated ({family_of(row)})"

    def _per_tool(self, row: LayerEstimate) -> bool:
        """Whether a row's calibrated cost has a per-HLS-tool constant (:meth:`unrolled_terms`, :meth:`depth_term`)."""
        fam = family_of(row)
        return fam is not None and ("@" in self.depth_term(fam) or any("@" in t for t in self.unrolled_terms(row)))

    def depth_term(self, family: str) -> str:
        """The pipeline-depth constant of a family: per tool for streamed tables (Vitis HLS: one cycle more)."""
        return f"{family}@{self.config.tool}" if family in TOOL_DEPTH_FAMILIES.get(self.config.io_type, ()) else family

    def unrolled_terms(self, row: LayerEstimate) -> dict[str, dict[str, float]]:
        """A row's primitive counts in the unrolled calibration (what the fitted constants multiply).

        Its family's analytic LUT/FF (the FIFO apart), its io_stream FIFO under the HLS tool's
        name (``fifo@vivado``: Vivado HLS keeps shallow FIFOs in SRLs; Vitis registers them),
        the fabric around its DSP products, one per layer (control), and one per streamed conv
        (pixel counters, padding and window control).
        """
        fam = family_of(row)
        if fam is None:
            return {}
        fifo = self._fifo.get(row.name, {"LUT": 0.0, "FF": 0.0})
        terms = {fam: {k: getattr(row, k) - fifo[k] for k in ("LUT", "FF")}, "layers": {"LUT": 1.0, "FF": 1.0}}
        if fifo["LUT"] or fifo["FF"]:
            terms[f"fifo@{self.config.tool}"] = dict(fifo)
        if row.DSP and fam in ("dense", "conv"):
            terms["dsp"] = {"LUT": row.DSP, "FF": row.DSP}
        if fam == "conv" and self.config.io_type == "io_stream":  # pixel counters, padding and window control
            terms["stream_conv"] = {"LUT": 1.0, "FF": 1.0}
        return terms

    def _annotate(
        self, row: LayerEstimate, glue_regime: str | None = None, notes: list[str] | None = None,
        design_calibrated: bool = False,
    ) -> None:  # fmt: skip
        """Interval (90%, from the calibration's LOO residuals) and extrapolation notes of one row."""
        cal = load_calibration()
        cfg = self.config
        hit = self._calibrated.get(row.name)
        costed = bool(row.LUT or row.FF or row.DSP or row.BRAM_18K)
        if hit is not None:
            row.extrapolated = cal.extrapolations(strategy=cfg.strategy, io_type=cfg.io_type, op=row.op,
                                                  rf=hit[1], w_bits=hit[3])  # fmt: skip
            bands = {k: cal.band(hit[2], k, bool(row.extrapolated)) for k in (*RESOURCES, "latency_cycles")}
        elif glue_regime is not None and glue_regime.startswith("unrolled"):
            row.extrapolated = list(notes or [])
            # a design outside the baselines' range keeps its analytic values: the factor-two band, not the fitted one
            calibrated = design_calibrated and (family_of(row) is not None or not costed)
            # a per-tool primitive (io_stream FIFO, streamed table) of an unknown tool: the tools' mean, a wider band
            untold = calibrated and cfg.tool is None and self._per_tool(row)
            bands = {k: cal.band(glue_regime, k, untold) if calibrated else UNCALIBRATED_BAND
                     for k in (*RESOURCES, "latency_cycles")}  # fmt: skip
        else:
            if row.op in MAC_OPS:
                row.extrapolated = cal.extrapolations(strategy=cfg.strategy, io_type=cfg.io_type, op=row.op, rf=None,
                                                      w_bits=None)  # fmt: skip
                if cfg.strategy in cal.ranges["strategy"] and not row.extrapolated:
                    row.extrapolated = ["reuse factor 1 (unshared multipliers) next to shared layers not calibrated"
                                        if row.name in self._unrolled_bits else
                                        "shared multipliers over several kernel instances (conv) not calibrated"]  # fmt: skip
            elif row.op not in cal.ranges["ops"] and costed:
                row.extrapolated = [f"layer type {row.op} not calibrated"]
            if glue_regime is not None and row.op not in MAC_OPS and not row.extrapolated:
                bands = {k: cal.band(glue_regime, k) for k in (*RESOURCES, "latency_cycles")}
            else:
                bands = dict.fromkeys((*RESOURCES, "latency_cycles"), UNCALIBRATED_BAND)
        row.interval = {k: [lo * getattr(row, k), hi * getattr(row, k)] for k, (lo, hi) in bands.items()}

    def calibration_parts(self, model: Model) -> dict[str, Any]:
        """What the calibration fits need from one model: primitive counts of its calibrated layers, the rest.

        Shared-multiplier (Resource, RF > 1) designs: the counts of :func:`dense_counts` and the
        analytic rest. Unrolled (RF 1) designs: analytic LUT/FF per primitive family, layer
        counts and the sequential cycles (RF and pixel loops) that the depth constants add to.
        """
        rows, _ = self._analytic_rows(model)
        counts: dict[str, float] = {}
        rest = {"LUT": 0.0, "FF": 0.0}
        latency_base = 0
        regimes, rfs, w_bits, ops = set(), [], [], {r.op for r in rows}
        families = {f: {"LUT": 0.0, "FF": 0.0, "n": 0.0} for f in FAMILIES}
        terms: dict[str, dict[str, float]] = {}
        depth_terms: dict[str, float] = {}
        other = {"LUT": 0.0, "FF": 0.0, "latency": 0.0}
        for row in rows:
            fam = family_of(row)
            if fam is not None:
                for k in ("LUT", "FF"):
                    families[fam][k] += getattr(row, k)
                families[fam]["n"] += 1
                depth_terms[self.depth_term(fam)] = depth_terms.get(self.depth_term(fam), 0.0) + 1
                for t, v in self.unrolled_terms(row).items():
                    acc = terms.setdefault(t, {"LUT": 0.0, "FF": 0.0})
                    for k in acc:
                        acc[k] += v[k]
            else:
                other["LUT"] += row.LUT
                other["FF"] += row.FF
                other["latency"] += row.latency_cycles
            hit = self._calibrated.get(row.name)
            if hit is None:
                rest["LUT"] += row.LUT
                rest["FF"] += row.FF
                latency_base += row.latency_cycles
                continue
            for k, v in hit[0].items():
                counts[k] = counts.get(k, 0.0) + v
            latency_base += hit[1]
            regimes.add(hit[2])
            rfs.append(hit[1])
            w_bits.append(hit[3])
        unrolled = self._unrolled_regime()
        bits = list(self._unrolled_bits.values())
        return {"counts": counts, "rest": rest, "latency_base": latency_base,
                "regime": unrolled or "+".join(sorted(regimes)),
                "analytic": {k: float(sum(getattr(r, k) for r in rows)) for k in ("DSP", "BRAM_18K")},
                "rfs": rfs, "w_bits": w_bits, "ops": sorted(ops), "families": families, "terms": terms,
                "depth_terms": depth_terms, "other": other,
                "seq": float(sum(self._seq.values())), "mac_bits": bits,
                "fan_in": {n: (("conv" if n in self._conv else "dense"), b[2]) for n, b in self._unrolled_bits.items() if b[2] is not None}}  # fmt: skip

    def layer(self, model: Model, node: onnx.NodeProto) -> LayerEstimate:
        """One node's estimate (dispatch on op type)."""
        op = node.op_type
        if op in MAC_OPS and len(node.input) >= 2:
            return self._mac(model, node)
        if op in FREE_OPS or op in QUANT_OPS or op in QDQ_OPS:
            return LayerEstimate(node.name, op, note="wiring" if op in FREE_OPS else "folded into layer precision")
        n = self._elements(model, node.output[0])
        b = self._bits(model, node.input[0]) if node.input else DEFAULT_BITS
        if op in COMPARE_OPS:
            return self._compare(model, node, n, b)
        if op in TABLE_OPS:
            return self._table(node, n, b, tables=1)
        if op in ("Softmax", "LogSoftmax"):
            return self._softmax(model, node, n, b)
        if op in ELEMENTWISE_OPS:
            return self._elementwise(model, node, n, b)
        if op in POOL_OPS:
            return self._pool(model, node, n, b)
        if op in RECURRENT_GATES:
            return self._recurrent(model, node)
        if op in COPY_OPS:
            linear = op in ("Resize", "Upsample") and _attr(node, "mode", b"nearest") not in (b"nearest", "nearest")
            # nearest: each output a registered copy of an input; (bi)linear: a weighted sum of neighbours per output
            return LayerEstimate(node.name, op, LUT=2.0 * n * b if linear else 0.0, FF=n * b, latency_cycles=1 + linear,
                                 ii=1, note="linear interpolation" if linear else "copy")  # fmt: skip
        if op == "MultiThreshold":
            thresholds = model.constant(node.input[1])
            t = thresholds.shape[-1] if thresholds is not None else 1
            return LayerEstimate(node.name, op, LUT=n * t * b / 2.0, FF=n * bits_of(model.dtype(node.output[0])),
                                 latency_cycles=1, ii=1, note="FINN thresholds")  # fmt: skip
        if op in ("TopK", "ArgMax", "ReduceMax"):
            n_in = self._elements(model, node.input[0])
            return LayerEstimate(node.name, op, LUT=max(n_in - 1, 0) * b * 2, FF=n_in * b,
                                 latency_cycles=max(1, math.ceil(math.log2(max(n_in, 2)))), ii=1)  # fmt: skip
        return LayerEstimate(node.name, op, note="no cost model")

    # ----------------------------------------------------------------- helpers
    @staticmethod
    def _elements(model: Model, name: str) -> int:
        return _prod(model.shape(name)) if name else 0

    @staticmethod
    def _bits(model: Model, name: str) -> int:
        return bits_of(model.dtype(name))

    def _cycles(self, ns: float) -> int:
        return math.ceil(ns / self.period) if ns > 0 else 0

    # ----------------------------------------------------------------- MAC layers
    def mac_shape(self, model: Model, node: onnx.NodeProto) -> MacShape:
        """Fan-in, outputs per kernel, kernel invocations and integer weights of a MatMul/Gemm/Conv."""
        macs, fan_in, w_name = _mac_geometry(model, node)
        out_shape = model.shape(node.output[0]) or (1,)
        a_name = next((i for i in node.input[:2] if i != w_name), node.input[0])
        a_bits = self._bits(model, a_name)
        has_bias = len(node.input) > 2 and bool(node.input[2]) and np.any(model.constant(node.input[2]) != 0)
        if node.op_type == "Conv":
            channels_last = node.domain != ""
            n_out = out_shape[-1] if channels_last else out_shape[1]
            instances = _prod(out_shape[1:-1] if channels_last else out_shape[2:]) or 1
            # (OFM, IFM/g, k...) or channels-last (OFM, k..., IFM/g) -> (fan_in, OFM); grouped convs are
            # one kernel whose outputs each see fan_in inputs
            ints, w_bits = oriented_weights(model, w_name, "conv") if w_name else (None, DEFAULT_BITS)
            return MacShape(fan_in, n_out, instances, ints, w_bits, a_bits, bool(has_bias))
        n_out = out_shape[-1]
        instances = max(1, round(macs / max(fan_in * n_out, 1)))
        if w_name is None:
            w_bits = self._bits(model, node.input[1])
            return MacShape(fan_in, n_out, instances, None, w_bits, a_bits, bool(has_bias))
        transposed = (node.op_type == "Gemm" and bool(_attr(node, "transB", 0)) and w_name == node.input[1]) or (
            w_name == node.input[0]  # W @ x: outputs along W's rows
        )
        ints, w_bits = oriented_weights(model, w_name, "dense_t" if transposed else "dense")
        return MacShape(fan_in, n_out, instances, ints, w_bits, a_bits, bool(has_bias))

    def _mac(self, model: Model, node: onnx.NodeProto) -> LayerEstimate:
        s = self.mac_shape(model, node)
        rf = min(self.config.rf(node.name), max(s.n_in * s.n_out, 1))
        strategy = self.config.strategy
        if strategy == "resource" and rf > 1 and s.weights is not None and s.instances == 1:
            return self._mac_calibrated(node, s)
        float_model = s.a_bits == DEFAULT_BITS and s.w_bits == DEFAULT_BITS
        acc_bits = DEFAULT_BITS if float_model else s.a_bits + s.w_bits + math.ceil(math.log2(max(s.n_in, 2)))
        prod_bits = s.a_bits + s.w_bits
        add_bits = min(prod_bits + 1, acc_bits)
        n_total = s.n_in * s.n_out
        dsp_path = uses_dsp(s.a_bits, s.w_bits)
        const_weights = s.weights is not None and rf == 1  # constants propagate only when nothing is shared
        lut = ff = dsp = bram = 0.0
        mult_ns = 0.0
        if const_weights:
            st = s.stats
            n_real = st.n_real
            if dsp_path:
                # a constant of two CSD digits is one shift-add in LUTs; wider ones take a DSP (hls4ml baselines:
                # conv2d 28x28x3 of N(0, .05) 16-bit weights: 823 predicted vs 740/792 DSPs synthesised)
                # a constant is as wide as its value (hls4ml baselines: 32-bit data x 21-bit constants: 2 DSPs each)
                dsp = float(st.n_wide) * dsp_per_product(s.a_bits, min(s.w_bits, st.wide_bits))
                lut += (n_real - st.n_wide) * prod_bits
                mult_ns = DSP_STAGES * self.period if n_real else 0.0
            else:
                lut += s.a_bits * st.extra_digits + st.extra_digit_bits
                mult_ns = math.ceil(math.log2(max(st.max_digits, 1))) * adder_ns(prod_bits) if n_real else 0.0
            adders = float(st.adders)
            fan_terms = st.max_terms
            depth = math.ceil(math.log2(max(fan_terms, 1)))
            if mult_ns > 0 and not dsp_path:  # LUT products registered before the tree
                ff += float(n_real) * prod_bits
            # DSP products are registered inside the DSP48 (M/P registers): no fabric FFs.
        else:
            n_mult = math.ceil(n_total / rf)
            if dsp_path:
                dsp = n_mult * dsp_per_product(s.a_bits, s.w_bits)
                mult_ns = DSP_STAGES * self.period
            else:
                lut += n_mult * LUT_MULT_PER_BIT2 * s.a_bits * s.w_bits
                mult_ns = adder_ns(prod_bits) * math.ceil(math.log2(max(s.w_bits, 2)))
            ff += n_mult * prod_bits
            # Operand selection: RF-way input mux per multiplier; weights from ROM/BRAM.
            lut += n_mult * mux_luts(rf, s.a_bits)
            if s.weights is not None and strategy == "resource" and rf > 1:
                bram += math.ceil(n_total * s.w_bits / (rf * 36))
            elif s.weights is not None:
                lut += n_mult * s.w_bits * math.ceil(rf / 64) if rf > 1 else 0.0  # LUTROM
            adders = float(n_mult)  # partial sums: one add per product
            fan_terms = max(1, math.ceil(s.n_in / rf))
            depth = math.ceil(math.log2(max(math.ceil(s.n_in / rf), 1))) if rf < s.n_in else 1
            ff += s.n_out * acc_bits  # accumulators
        if s.has_bias:
            adders += s.n_out
        lut += adders * add_bits
        stages = math.ceil(depth * adder_ns(add_bits) / self.period) if depth else 0
        kernel_latency = self._cycles(mult_ns) + stages + 1  # +1 output register
        ff += self._tree_registers(s.n_out, int(fan_terms), depth, add_bits) + s.n_out * acc_bits
        if strategy == "resource" and rf > 1:
            kernel_latency += 2  # BRAM read + accumulator
        ii = rf
        instances = s.instances
        if node.op_type == "Conv" and self.config.io_type == "io_stream":
            # a streamed conv reads every input pixel through its line buffer (baselines: 32x32 -> 1028 cycles)
            in_shape = model.shape(node.input[0]) or ()
            spatial = tuple(in_shape[1:-1] if node.domain != "" else in_shape[2:])
            instances = max(instances, _prod(spatial) or 1)
            lb_lut, lb_ff = self._line_buffer(node, spatial, s.n_in, s.a_bits)
            lut += lb_lut
            ff += lb_ff
        latency = kernel_latency + (rf - 1) + (instances - 1) * rf
        self._seq[node.name] = (rf - 1) + (instances - 1) * rf
        if rf == 1:
            self._unrolled_bits[node.name] = (s.w_bits, s.a_bits, s.n_in)
        else:
            self._shared = True
        return LayerEstimate(
            node.name, node.op_type, LUT=lut, FF=ff, DSP=dsp, BRAM_18K=float(bram),
            latency_cycles=int(latency), ii=int(ii * s.instances),
            note=f"RF={rf} {'DSP' if dsp_path else 'LUT'} mults" + ("" if const_weights else ", shared"),
        )  # fmt: skip

    def _mac_calibrated(self, node: onnx.NodeProto, s: MacShape) -> LayerEstimate:
        """Resource-strategy Dense layer: hls4ml's effective RF, calibrated LUT/FF constants, exact DSP rule."""
        cal = load_calibration()
        rf = effective_reuse_factor(s.n_in, s.n_out, self.config.rf(node.name))
        n_mult = math.ceil(s.n_in * s.n_out / rf)
        dsp_path = uses_dsp(s.a_bits, s.w_bits)
        counts = dense_counts(s.n_in, s.n_out, rf, s.w_bits)
        regime = "dsp" if dsp_path else "lut"
        self._calibrated[node.name] = (counts, rf, regime, s.w_bits)
        return LayerEstimate(
            node.name, node.op_type, LUT=cal.cost("LUT", counts), FF=cal.cost("FF", counts),
            DSP=float(n_mult * dsp_per_product(s.a_bits, s.w_bits)) if dsp_path else 0.0,
            BRAM_18K=float(math.ceil(s.n_in * s.n_out * s.w_bits / (rf * 36))),
            latency_cycles=rf + round(cal.latency_per_layer), ii=rf,
            note=f"RF={rf} {'DSP' if dsp_path else 'LUT'} mults, calibrated ({regime})",
        )  # fmt: skip

    @staticmethod
    def _line_buffer(node: onnx.NodeProto, spatial: tuple[int, ...], fan_in: int, bits: int) -> tuple[float, float]:
        """LUT/FF of a streamed conv's line buffer: the kernel window in registers (fan-in x bits), and k_h - 1
        rows of the input in shift registers (SRL32 LUTs) for 2D kernels (hls4ml's ``nnet_conv_stream.h``)."""
        kernel = list(_attr(node, "kernel_shape", None) or [1])
        window_ff = float(fan_in * bits)
        if len(kernel) < 2 or len(spatial) < 2:
            return 0.0, window_ff
        channels = fan_in // max(_prod(kernel), 1) or 1
        group = int(_attr(node, "group", 1))
        channels = channels * group  # a depthwise kernel sees one channel, its line buffer keeps them all
        rows = kernel[0] - 1
        return float(rows * channels * bits * math.ceil(spatial[-1] / 32)), window_ff

    def _tree_registers(self, n_out: int, terms: int, depth: int, add_bits: int) -> float:
        """FFs at the pipeline cuts of ``n_out`` adder trees of ``terms`` inputs (HLS registers every live partial sum)."""
        per_stage = max(1, int(self.period // adder_ns(add_bits)))
        return float(sum(n_out * math.ceil(terms / 2**lvl) * add_bits for lvl in range(per_stage, depth, per_stage)))

    # ----------------------------------------------------------------- other layers
    def _recurrent(self, model: Model, node: onnx.NodeProto) -> LayerEstimate:
        """LSTM/GRU/RNN as hls4ml builds them: per time step, gate Dense layers over [x, h], gate tables, products."""
        x_shape, w, r = (
            model.shape(node.input[0]) or (1, 1, 1),
            model.constant(node.input[1]),
            model.constant(node.input[2]),
        )
        gates = RECURRENT_GATES[node.op_type]
        dirs = w.shape[0] if w is not None else 1
        hidden = int(_attr(node, "hidden_size", (r.shape[-1] if r is not None else 1)))
        n_in = int(x_shape[-1])
        steps = int(x_shape[0]) if _attr(node, "layout", 0) == 0 else int(x_shape[1])
        b = self._bits(model, node.input[0])
        w_bits = bits_of(model.dtype(node.input[1]))
        rf = self.config.rf(node.name)
        n_mult = math.ceil(dirs * gates * hidden * (n_in + hidden) / rf)
        elementwise = dirs * hidden * (3 if gates == 4 else 2 if gates == 3 else 0)  # c/h updates
        per = dsp_per_product(b, w_bits)
        mults_dsp = uses_dsp(b, w_bits)
        depth = math.ceil(math.log2(max(n_in + hidden, 2)))
        step = (
            rf + DSP_STAGES + math.ceil(depth * adder_ns(b + w_bits) / self.period) + 2 + DSP_STAGES
        )  # gates, tables, c/h
        tables = self._table(node, dirs * hidden * (gates + (1 if gates == 4 else 0)), b, tables=1)
        return LayerEstimate(
            node.name, node.op_type,
            LUT=(0.0 if mults_dsp else n_mult * LUT_MULT_PER_BIT2 * b * w_bits) + n_mult * (b + w_bits) + tables.LUT,
            FF=n_mult * (b + w_bits) + 2 * dirs * hidden * DEFAULT_BITS + tables.FF,
            DSP=float((n_mult if mults_dsp else 0) * per + elementwise * dsp_per_product(b, b)),
            BRAM_18K=tables.BRAM_18K, latency_cycles=steps * step, ii=steps * step,
            note=f"{steps} steps x {gates} gates",
        )  # fmt: skip

    def _compare(self, model: Model, node: onnx.NodeProto, n: int, b: int) -> LayerEstimate:
        """ReLU-like: a comparator/mux per element; a leaky slope of 1 is the identity, one of 0 or +-2^-k a shift."""
        op = node.op_type
        extra = 0.0
        if op in ("LeakyRelu", "PRelu"):
            const = model.constant(node.input[1]) if op == "PRelu" and len(node.input) > 1 else None
            slope = np.asarray(const if op == "PRelu" else _attr(node, "alpha", 0.01), dtype=np.float64).ravel()
            if op == "PRelu" and const is None:
                slope = np.array([0.3])  # a learned slope only known at run time: a real multiplication
            if np.all(slope == 1.0):  # hls4ml's test LeakyReLU(alpha=1.0): both branches are x (baselines: no logic)
                return LayerEstimate(node.name, op, note="slope 1: identity")
            a = np.abs(slope[slope != 0])
            if a.size and not np.all(np.log2(a) % 1 == 0):
                extra = b * n  # alpha*x: one shift-add per element
        return LayerEstimate(node.name, op, LUT=b * n + extra, FF=b * n, latency_cycles=1, ii=1)

    def _table(self, node: onnx.NodeProto, n: int, b: int, tables: int) -> LayerEstimate:
        copies = math.ceil(n / 2) * tables  # dual-port BRAM ROM: two reads per copy per cycle
        per_table = math.ceil(TABLE_SIZE * TABLE_BITS / BRAM_BITS)
        return LayerEstimate(node.name, node.op_type, LUT=n * b, FF=n * TABLE_BITS, BRAM_18K=float(copies * per_table),
                             latency_cycles=2, ii=1, note="lookup table")  # fmt: skip

    def _softmax(self, model: Model, node: onnx.NodeProto, n: int, b: int) -> LayerEstimate:
        row = self._table(node, n, b, tables=1)  # exp table
        row.BRAM_18K += 1  # inverse table (one read)
        row.DSP = float(n * dsp_per_product(TABLE_BITS, TABLE_BITS))  # exp * 1/sum
        depth = math.ceil(math.log2(max(n, 2)))
        row.LUT += max(n - 1, 0) * TABLE_BITS  # sum of exponentials
        row.FF += n * TABLE_BITS * 2
        row.latency_cycles = 2 + math.ceil(depth * adder_ns(TABLE_BITS) / self.period) + 2 + DSP_STAGES + 1
        row.note = "exp/inv tables"
        return row

    def _elementwise(self, model: Model, node: onnx.NodeProto, n: int, b: int) -> LayerEstimate:
        op = node.op_type
        const_idx = next((k for k, i in enumerate(node.input[:2]) if i and model.constant(i) is not None), None)
        if op in ("Add", "Sub"):
            return LayerEstimate(node.name, op, LUT=n * (b + 1), FF=n * (b + 1), latency_cycles=1, ii=1)
        if op == "BatchNormalization" or (op in ("Mul", "Div") and const_idx is not None):
            const = model.constant(node.input[1 if op == "BatchNormalization" else const_idx])
            scale = np.asarray(const, dtype=np.float64).ravel()
            if op == "Div":
                scale = 1.0 / np.where(scale == 0, 1, scale)
            trivial = scale.size > 0 and np.all(
                (scale == 0) | (np.abs(np.log2(np.abs(np.where(scale == 0, 1, scale)))) % 1 == 0)
            )
            if trivial:  # scaling by powers of two is a shift
                return LayerEstimate(node.name, op, note="power-of-two scale: wiring")
            s_bits = DEFAULT_BITS
            row = LayerEstimate(node.name, op, latency_cycles=1, ii=1)
            if uses_dsp(b, s_bits):
                row.DSP = float(n * dsp_per_product(b, s_bits))
                row.latency_cycles = DSP_STAGES
            else:
                row.LUT = n * LUT_MULT_PER_BIT2 * b * s_bits / 2  # constant: about half a generic multiplier
            if op == "BatchNormalization":
                row.LUT += n * (b + s_bits)
                row.latency_cycles += 1
            row.FF = n * (b + s_bits)
            return row
        # Mul/Div of two dynamic tensors: generic multipliers.
        row = LayerEstimate(node.name, op, FF=n * 2 * b, latency_cycles=DSP_STAGES, ii=1)
        if uses_dsp(b, b):
            row.DSP = float(n * dsp_per_product(b, b))
        else:
            row.LUT = n * LUT_MULT_PER_BIT2 * b * b
        return row

    def _pool(self, model: Model, node: onnx.NodeProto, n: int, b: int) -> LayerEstimate:
        n_in = self._elements(model, node.input[0])
        kernel = _attr(node, "kernel_shape", None)
        # the window is the kernel (padding makes the element ratio lie); global pools see every pixel
        window = _prod(kernel) if kernel else max(1, n_in // max(n, 1))
        ops = n * max(window - 1, 0)
        depth = math.ceil(math.log2(max(window, 2)))
        # io_parallel pooling registers its whole input array (hls4ml baselines: FF = inputs x bits + 2)
        lut = ops * b * (2 if node.op_type.endswith("MaxPool") else 1)
        cycles = 1 + math.ceil(depth * adder_ns(b) / self.period)
        row = LayerEstimate(node.name, node.op_type, LUT=lut, FF=n_in * b, latency_cycles=cycles, ii=1)
        if self._keeps_rescale_divider(node):
            # hls4ml rescales a padded average by window / overlap (an int): Vivado HLS 2020.1 keeps a divider and
            # a product per output, ~ b x b x the overlap's bits (baselines: 89-113k LUT, 137-181k FF, 21 cycles
            # for 120-183 outputs; Vitis HLS folds it: ordinary pool)
            div = n * b * b * max(1, window).bit_length()
            row.LUT += div
            row.FF += div
            row.note = DIVIDER_NOTE
        return row

    def _keeps_rescale_divider(self, node: onnx.NodeProto) -> bool:
        """A padded average pool that excludes its padding, synthesised by Vivado HLS (see :meth:`_pool`)."""
        return (self.config.tool == "vivado" and node.op_type == "AveragePool"
                and any(_attr(node, "pads", None) or []) and not _attr(node, "count_include_pad", 0))  # fmt: skip

    # ----------------------------------------------------------------- io_stream
    def _add_fifos(self, model: Model, rows: list[LayerEstimate]) -> None:
        """io_stream: one FIFO per layer output (depth = pixels, width = channels x bits)."""
        by_name = {n.name: n for n in model.graph.node}
        outputs = {o.name for o in model.graph.output}
        for row in rows:
            node = by_name[row.name]
            shape = model.shape(node.output[0])
            if not shape or not (row.LUT or row.FF or row.DSP):  # wiring / folded quantizers: no stream of their own
                continue
            if node.output[0] in outputs:  # the model's output stream is the top-level port, not a FIFO
                row.latency_cycles += 1
                continue
            width = shape[-1] * self._bits(model, node.output[0])
            depth = max(1, _prod(shape[1:-1]))
            lut = width * math.ceil(depth / 32) if depth <= 32 else 0.0  # SRL32, else BRAM
            if not lut:
                row.BRAM_18K += math.ceil(width / 36) * math.ceil(depth / 512)
            # one register per stream bit at the FIFO's output (its fitted cost differs per HLS tool)
            self._fifo[row.name] = {"LUT": lut, "FF": float(width)}
            row.LUT += lut
            row.FF += width
            row.latency_cycles += 1
