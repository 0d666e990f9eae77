"""The IR as an hls4ml project: lowered, typed from the IR, converted by hls4ml's QONNX frontend.

hls4ml itself does the conversion and writing (its templates and optimisers are the
product users want); codesign decides what hls4ml cannot infer: the lowering
(:mod:`lowering`), every layer's fixed-point types (:mod:`precision`), the part and clock
(:mod:`targets`), and one clear refusal naming the op when hls4ml cannot express a model.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codesign.backends.hls4ml_patches import binary_dense_fixed, codesign_path
from codesign.backends.lowering import lower, lower_for_hls4ml, refuse_unsupported
from codesign.backends.precision import PROBABILITY, ModelPrecision, derive
from codesign.backends.targets import Target
from codesign.errors import CodesignError, UnsupportedModelError
from codesign.ir.model import Model

IO_TYPES = {"parallel": "io_parallel", "stream": "io_stream"}
STRATEGIES = {"latency": "Latency", "resource": "Resource", "da": "distributed_arithmetic"}
#: hls4ml's precision where the IR pins nothing down (float tensors): its own default.
DEFAULT_PRECISION = "fixed<16,6>"
PROJECT_NAME = "myproject"


#: Why hls4ml's ONNX frontend refuses some ops codesign's IR accepts.
UNSUPPORTED_WHY = {
    "MultiThreshold": "FINN-style thresholds; compile the QONNX model from before FINN's streamlining, or use --backend finn",
    "FloatQuant": "hls4ml has no minifloat quantizer",
    "Gemm": "should have been lowered to MatMul",
}


class Hls4mlOptionError(CodesignError):
    """An hls4ml option value is not one codesign knows."""


@dataclass
class Hls4mlOptions:
    """What ``codesign compile --backend hls4ml`` lets a user choose."""

    io: str = "parallel"
    strategy: str = "latency"
    reuse_factor: int = 1
    layer_reuse: dict[str, int] = field(default_factory=dict)
    clock_ns: float | None = None
    hls_backend: str = "Vitis"
    project_name: str = PROJECT_NAME
    #: extra hls4ml per-layer settings by layer name (e.g. Softmax table sizes/types), merged last
    layer_config: dict[str, dict[str, Any]] = field(default_factory=dict)

    def check(self) -> None:
        if self.io not in IO_TYPES:
            raise Hls4mlOptionError(f"--io must be one of {', '.join(IO_TYPES)}, not {self.io!r}")
        if self.strategy not in STRATEGIES:
            raise Hls4mlOptionError(f"--strategy must be one of {', '.join(STRATEGIES)}, not {self.strategy!r}")
        for name, rf in [("global", self.reuse_factor), *self.layer_reuse.items()]:
            if int(rf) < 1:
                raise Hls4mlOptionError(f"--reuse-factor {name}: must be >= 1, got {rf}")
        if self.clock_ns is not None and not self.clock_ns > 0:
            raise Hls4mlOptionError(f"--clock must be a positive period in ns, got {self.clock_ns}")
        if self.strategy == "da":
            try:
                import da4ml  # noqa: F401
            except ImportError:
                raise Hls4mlOptionError("--strategy da needs the da4ml package (pip install da4ml)") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "io": self.io, "strategy": self.strategy, "reuse_factor": self.reuse_factor,
            "layer_reuse": dict(self.layer_reuse), "clock_ns": self.clock_ns, "hls_backend": self.hls_backend,
        }  # fmt: skip


@dataclass
class Hls4mlBuild:
    """A converted model: the lowered IR, its derived types, and hls4ml's ModelGraph."""

    lowered: Model
    precision: ModelPrecision
    config: dict[str, Any]
    hls_model: Any
    clock_ns: float

    def layer_types(self) -> list[dict[str, Any]]:
        """hls4ml's final per-layer types (what was written), for ``codesign.json``."""
        rows = []
        for layer in self.hls_model.get_layers():
            types = {k: str(v.precision) for k, v in layer.types.items()}
            rows.append({"name": layer.name, "class": layer.class_name, "types": types})
        return rows


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence hls4ml's prints (and its compilers' output) unless CODESIGN_DEBUG is set."""
    if os.environ.get("CODESIGN_DEBUG"):
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def supported_ops() -> set[str]:
    """Ops codesign's own layer builders express (:mod:`hls4ml_layers`), plus those lowering removes."""
    from codesign.backends import hls4ml_layers

    return set(hls4ml_layers.supported_ops()) | LOWERED_AWAY


#: IR ops the hls4ml lowering rewrites into supported ones (Gemm -> MatMul + Add).
LOWERED_AWAY = frozenset({"Gemm"})


def onnx_frontend_ops() -> set[str]:
    """Ops hls4ml's own ONNX frontend has a handler for (the fallback path, see :func:`convert`)."""
    from hls4ml.converters import get_supported_onnx_layers

    return set(get_supported_onnx_layers()) | {"Identity", "Dropout"}


def lower_model(model: Model) -> Model:
    """The IR lowered for hls4ml, refused with the op's name if hls4ml cannot express it."""
    refuse_unbatched(model)
    lowered = lower(model, lower_for_hls4ml(), "hls4ml")
    refuse_unsupported(lowered, supported_ops() | onnx_frontend_ops(), "hls4ml", UNSUPPORTED_WHY)
    return lowered


def check_expressible(lowered: Model, io: str = "parallel", untyped: bool = False) -> None:
    """Build the layer list once, without hls4ml: attribute limits (Clip bounds, grouped conv, ...) refused now.

    Before a float model's type selection (minutes on a conv net), not after it, at convert time;
    ``untyped``: that selection is still to come (what needs its types is checked at convert).
    """
    if uses_onnx_frontend(lowered):
        return
    from codesign.backends import hls4ml_layers

    hls4ml_layers.build(lowered, derive(lowered), io, untyped=untyped)


def refuse_unbatched(model: Model) -> None:
    """hls4ml (and the verification's sample axis) take dimension 0 of every input as a batch of 1."""
    for name in model.inputs:
        shape = model.shape(name)
        if shape and shape[0] != 1:
            raise UnsupportedModelError(
                f"input {name} has leading dimension {shape[0]}, not a batch of 1 "
                f"(shape {'x'.join(map(str, shape))}); export with a batch axis first (sequence-first layouts too)"
            )


def uses_onnx_frontend(lowered: Model) -> bool:
    """Whether ``lowered`` has an op only hls4ml's ONNX frontend handles (then the whole model takes that path)."""
    native = supported_ops()
    return any(n.op_type not in native for n in lowered.graph.node)


def _layer_key(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").lower()


def hls_config(
    lowered: Model, precision: ModelPrecision, options: Hls4mlOptions, layer_list: Any = None
) -> dict[str, Any]:
    """hls4ml's 'name'-granularity config with IR-derived precisions and the user's options.

    ``layer_list`` is the :class:`hls4ml_layers.LayerList` being converted (built here when
    not given); models on the ONNX-frontend fallback get hls4ml's own config instead.
    """
    import hls4ml

    from codesign.backends import hls4ml_layers

    native = not uses_onnx_frontend(lowered)
    if native:
        if layer_list is None:
            layer_list = hls4ml_layers.build(lowered, precision, options.io)
        config = {
            "Model": {"Precision": {"default": DEFAULT_PRECISION}, "ReuseFactor": options.reuse_factor,
                      "Strategy": "Latency", "BramFactor": 1_000_000_000, "TraceOutput": False},
            "LayerName": hls4ml_layers.layer_config(layer_list.layers, options.hls_backend, options.reuse_factor),
        }  # fmt: skip
        for name, extra in layer_list.config.items():
            for key, value in extra.items():
                slot = config["LayerName"].setdefault(name, {})
                slot[key] = {**slot.get(key, {}), **value} if isinstance(value, dict) else value
    else:
        with quiet():
            config = hls4ml.utils.config_from_onnx_model(
                lowered.wrapper, granularity="name", backend=options.hls_backend,
                default_precision=DEFAULT_PRECISION, default_reuse_factor=options.reuse_factor,
            )  # fmt: skip
    # DA replaces only the constant-matrix multiplies; every other layer stays latency.
    config["Model"]["Strategy"] = "Latency" if options.strategy == "da" else STRATEGIES[options.strategy]
    mac_layers = {n.name for n in lowered.nodes_of(["MatMul", "Conv"])}
    layers = config["LayerName"]
    for name, t in precision.input.items():
        key = name.replace(".", "_")
        layers.setdefault(key, {}).setdefault("Precision", {})["result"] = t.hls()
    for name, lp in precision.layers.items():
        types = lp.config()
        if lp.op in ("MatMul", "Conv") and not native and not lp.pin_result:
            types.pop("result", None)  # left to hls4ml: a set result type blocks fusing the bias Add
        if lp.pin_result and not native:
            types.pop("weight", None)  # bipolar weights: hls4ml's ONNX parser keeps its own 1-bit encoding
        layers.setdefault(name, {}).setdefault("Precision", {}).update(types)
    for layer in layers.values():
        if "ReuseFactor" in layer:
            layer["ReuseFactor"] = options.reuse_factor
    pinned = {n for n, extra in layer_list.config.items() if "Strategy" in extra} if native else set()
    for name, layer in layers.items():
        if name in pinned:
            continue  # a layer with one strategy only (Einsum: Latency)
        if options.strategy == "resource" or (options.strategy == "da" and name in mac_layers):
            layer["Strategy"] = STRATEGIES[options.strategy]
    for name, extra in [*activation_tables(lowered).items(), *options.layer_config.items()]:
        for key, value in extra.items():
            slot = layers.setdefault(name, {})
            if isinstance(value, dict):
                slot.setdefault(key, {}).update(value)
            else:
                slot[key] = value
    if options.layer_reuse:
        by_key = {_layer_key(n): n for n in layers}
        for wanted, rf in options.layer_reuse.items():
            hit = wanted if wanted in layers else by_key.get(_layer_key(wanted))
            if hit is None:
                mac = ", ".join(n.name for n in lowered.nodes_of(["MatMul", "Conv"]))
                raise Hls4mlOptionError(f"--reuse-factor {wanted}={rf}: no such layer (layers with weights: {mac})")
            layers[hit]["ReuseFactor"] = int(rf)
    return config


#: Sigmoid/Softmax LUT settings: output tables on [0, 1] with 16 fractional bits, 4096 entries.
TABLE_SIZE = 4096
#: Integer bits of Softmax's ``x_max - x`` (differences past 32 have exp < 1e-13: saturated)
NORM_INT = 5
PROB_TYPE = PROBABILITY.hls()
#: Fractional bits of the exp sum indexing Softmax's inverse table, and that table's largest index width
INV_FRAC, MAX_INV_BITS = 8, 16


def activation_tables(lowered: Model) -> dict[str, dict[str, Any]]:
    """hls4ml settings for Sigmoid/Softmax LUTs, sized from the IR (hls4ml's defaults lose up to ~0.5).

    A Softmax whose input is a power-of-two Quant of b bits, or the codes of a non-power-of-two
    one (:func:`softmax_code_scale`), runs hls4ml's stable implementation with an exp table
    indexed exactly by those bits; the sum of exponentials (in [1, n]) and its inverse get
    types that hold their real ranges.
    """
    import math

    from codesign.backends.hls4ml_layers.activation import softmax_code_scale
    from codesign.backends.precision import quant_type

    index_cap = int(math.log2(TABLE_SIZE))
    out: dict[str, dict[str, Any]] = {}
    for node in lowered.nodes_of(["Sigmoid", "Softmax"]):
        if node.op_type == "Sigmoid":
            out[node.name] = {"TableSize": TABLE_SIZE, "table_t": PROB_TYPE, "Precision": {"result": PROB_TYPE}}
            continue
        producer = lowered.producer(node.input[0])
        shape = lowered.shape(node.input[0])
        coded = softmax_code_scale(lowered, producer)
        t = quant_type(lowered, producer) if producer is not None else None
        if shape is None or (coded is None and (t is None or not t.signed)):
            continue
        if coded is not None:  # integer codes q; exp(-s * (q_max - q)) ~ 0 past 2**NORM_INT / s codes
            scale, bits = coded
            norm_int = min(bits, max(1, math.ceil(math.log2(2.0**NORM_INT / scale))))
            norm_width = min(norm_int, index_cap)
        else:  # x_max - x past 2**(NORM_INT) has exp ~ 0: saturated there, however wide the logits' type
            norm_int = min(t.integer - 1, max(NORM_INT, index_cap - t.frac))
            norm_width = norm_int + t.frac
        n = int(shape[-1])
        sum_int = max(1, math.ceil(math.log2(n + 1))) + 1
        # long rows (attention's 121 positions: sum_int 8) kept 4 fractional bits of the sum: 1/sum off by 6%
        inv_bits = min(MAX_INV_BITS, max(index_cap, sum_int + INV_FRAC))
        out[node.name] = {
            "Implementation": "stable",
            "TableSize": TABLE_SIZE,
            # x_max - x indexes the exp table exactly; saturating (not wrapping) past the range, where exp ~ 0
            "ExpTableSize": 2 ** min(norm_width, index_cap),
            "InvTableSize": 2**inv_bits,  # set, so hls4ml's FixSoftmaxTableSize leaves it (it cut it to 2**input bits)
            "inp_norm_t": f"ufixed<{norm_width},{norm_int},TRN,SAT>",
            "exp_table_t": PROB_TYPE, "inv_table_t": PROB_TYPE, "inv_inp_t": f"ufixed<{inv_bits},{sum_int}>",
            "Precision": {"result": PROB_TYPE, "accum": f"ufixed<{16 + sum_int},{sum_int}>"},
        }  # fmt: skip
    return out


@contextlib.contextmanager
def pooling_1d_fixed() -> Iterator[None]:
    """Inside, hls4ml's ONNX MaxPool/AveragePool handler gets 1-D pooling right.

    hls4ml 1.3 reads a channels-last (N, L, C) input as (N, C, L) for 1-D pools (swapping
    ``n_in`` and ``n_filt``) and never sets ``pad_left``/``pad_right``: every 1-D pool
    fails to convert. The handler's 2-D path is right and is left alone.
    """
    import importlib

    # the module itself: hls4ml.converters re-exports a function of the same name
    onnx_to_hls = importlib.import_module("hls4ml.converters.onnx_to_hls")
    originals = {op: onnx_to_hls.layer_handlers.get(op) for op in ("MaxPool", "AveragePool")}

    def wrap(original):
        def handler(node, input_names, input_shapes, graph):
            layer = original(node, input_names, input_shapes, graph)
            if len(input_shapes[0]) == 3:  # (N, L, C)
                pads = list(layer.get("pads") or [0, 0])
                layer["n_in"], layer["n_filt"] = input_shapes[0][1], input_shapes[0][2]
                layer["pad_left"], layer["pad_right"] = pads[0], pads[-1]
                span = (layer["pool_width"] - 1) * layer["dilations"][0] + 1
                layer["n_out"] = (layer["n_in"] + pads[0] + pads[-1] - span) // layer["stride_width"] + 1
            return layer

        return handler

    for op, original in originals.items():
        if original is not None:
            onnx_to_hls.layer_handlers[op] = wrap(original)
    try:
        yield
    finally:
        for op, original in originals.items():
            if original is not None:
                onnx_to_hls.layer_handlers[op] = original


def _culprit(exc: BaseException) -> str:
    """The hls4ml layer or ONNX node being processed when hls4ml failed, from the traceback."""
    tb, found = exc.__traceback__, ""
    while tb is not None:
        for key in ("node", "layer"):
            obj = tb.tb_frame.f_locals.get(key)
            op = getattr(obj, "op_type", None) or getattr(obj, "class_name", None)
            if isinstance(op, str):
                found = f"{op} {getattr(obj, 'name', '')!r}"
        tb = tb.tb_next
    return found


def _from_layer_list(
    lowered: Model, precision: ModelPrecision, options: Hls4mlOptions, target: Target, clock: float, output_dir: Path
) -> tuple[dict[str, Any], Any]:
    """codesign's own layer list -> hls4ml ModelGraph (what ``convert_from_onnx_model`` does after parsing)."""
    from hls4ml.converters import _check_hls_config, _check_model_config
    from hls4ml.model import ModelGraph
    from hls4ml.utils.config import create_config

    from codesign.backends import hls4ml_layers

    layer_list = hls4ml_layers.build(lowered, precision, options.io)
    config = hls_config(lowered, precision, options, layer_list)
    full = create_config(
        output_dir=str(output_dir), project_name=options.project_name, backend=options.hls_backend,
        part=target.part, clock_period=clock, io_type=IO_TYPES[options.io],
    )  # fmt: skip
    full["HLSConfig"] = {"Model": _check_model_config(config.get("Model"))}
    _check_hls_config(full, config)
    with quiet():
        hls_model = ModelGraph.from_layer_list(full, layer_list.layers, layer_list.inputs, layer_list.outputs)
    return config, hls_model


def convert(model: Model, target: Target, options: Hls4mlOptions, output_dir: Path) -> Hls4mlBuild:
    """Lower, type and convert ``model`` into an hls4ml ModelGraph writing to ``output_dir``."""
    import hls4ml

    options.check()
    lowered = lower_model(model)
    precision = derive(lowered)
    precision.apply_constants(lowered)  # nudged float biases: the values the types were derived for
    clock = float(options.clock_ns or target.default_clock_ns)
    try:
        if uses_onnx_frontend(lowered):  # an op no family module handles yet: hls4ml's ONNX parser
            config = hls_config(lowered, precision, options)
            with quiet(), pooling_1d_fixed(), binary_dense_fixed():
                hls_model = hls4ml.converters.convert_from_onnx_model(
                    lowered.wrapper, output_dir=str(output_dir), project_name=options.project_name,
                    backend=options.hls_backend, part=target.part, clock_period=clock,
                    io_type=IO_TYPES[options.io], hls_config=config,
                )  # fmt: skip
        else:
            with codesign_path():  # hls4ml's optimisers run on this path too
                config, hls_model = _from_layer_list(lowered, precision, options, target, clock, output_dir)
    except CodesignError:
        raise
    except Exception as exc:  # hls4ml asserts/raises deep inside its optimisers
        where = _culprit(exc)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        how = " with --strategy da (hls4ml's DA pass on ONNX graphs)" if options.strategy == "da" else ""
        raise UnsupportedModelError(
            f"hls4ml cannot convert this model{how}{' at ' + where if where else ''}: {type(exc).__name__}: {first}"
        ) from exc
    return Hls4mlBuild(lowered, precision, config, hls_model, clock)


def write(build: Hls4mlBuild) -> None:
    """hls4ml's ``write()``: the HLS project (firmware, build scripts, testbench)."""
    with quiet():
        build.hls_model.write()


def compile_csim(build: Hls4mlBuild) -> None:
    """Build the C-simulation library (g++) and load it for ``predict``."""
    try:
        with quiet():
            build.hls_model.compile()
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise CodesignError(f"hls4ml C-simulation build failed: {first}") from exc


def fix_output_dir(folder: Path, final: Path) -> None:
    """Point hls4ml's recorded OutputDir at the final folder (it was written in a temp one)."""
    cfg = folder / "hls4ml_config.yml"
    if cfg.is_file():
        cfg.write_text(cfg.read_text().replace(str(folder), str(final)))


__all__ = [
    "Hls4mlBuild", "Hls4mlOptions", "compile_csim", "convert", "hls_config", "lower_model", "supported_ops", "write",
]  # fmt: skip
