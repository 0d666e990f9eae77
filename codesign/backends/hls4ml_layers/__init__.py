"""The lowered IR as hls4ml's layer list, built by codesign (no hls4ml ONNX parser).

One module per op family registers handlers (:mod:`base`); :func:`build` walks the
lowered, channels-last graph in order and asks each node's handler for layer dicts,
which ``hls4ml.model.graph.ModelGraph.from_layer_list`` turns into a ModelGraph (the
path hls4ml's own Keras/PyTorch converters take). Layer names are the IR node names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from codesign.backends.hls4ml_layers import activation, core  # noqa: F401  (register handlers)
from codesign.backends.hls4ml_layers.base import HANDLERS, Context, Layer, LayerRefused
from codesign.backends.precision import ModelPrecision
from codesign.errors import UnsupportedModelError
from codesign.ir.model import Model

for _family in ("conv", "pooling", "merge", "reshape", "resize", "batchnorm", "padding", "lut"):
    try:  # families land one by one; a missing module only narrows supported_ops()
        __import__(f"{__name__}.{_family}")
    except ModuleNotFoundError as _exc:  # pragma: no cover
        if _exc.name != f"{__name__}.{_family}":
            raise


def supported_ops() -> frozenset[str]:
    """Every op type some family handles: known before any conversion."""
    return frozenset(HANDLERS)


@dataclass
class LayerList:
    """What ``ModelGraph.from_layer_list`` takes, plus the per-layer config the handlers decided."""

    layers: list[Layer]
    inputs: list[str]
    outputs: list[str]
    config: dict[str, dict[str, Any]]


def build(model: Model, precision: ModelPrecision, io: str = "parallel", untyped: bool = False) -> LayerList:
    """hls4ml layer dicts for every node of the lowered ``model`` (constants folded into their layers).

    ``untyped``: a float model checked before its type selection (what needs a chosen type is not built).
    """
    ctx = Context(model, precision, io=io, untyped=untyped)
    layers: list[Layer] = []
    for name in model.inputs:
        layers.append({"name": name, "class_name": "InputLayer", "input_shape": ctx.shape(name)})
    for node in model.graph.node:
        if node.name in ctx.fused or (node.output and model.constant(node.output[0]) is not None):
            continue  # folded into a consumer (a bias Add, a weight quantizer)
        handler = HANDLERS.get(node.op_type)
        if handler is None:
            raise UnsupportedModelError(f"hls4ml cannot express op {node.op_type} at {node.name}")
        layers.extend(handler(ctx, node))
    producer = {out: layer["name"] for layer in layers for out in layer.get("outputs", [layer["name"]])}
    outputs = []
    for out in model.outputs:
        src = ctx.src(out)
        if src not in producer:
            raise UnsupportedModelError(f"model output {out} is not computed by any hls4ml layer")
        outputs.append(producer[src])
    return LayerList(layers, list(model.inputs), outputs, ctx.config)


def layer_config(layers: list[Layer], backend: str, reuse_factor: int) -> dict[str, dict[str, Any]]:
    """hls4ml's 'name'-granularity defaults for each layer (what ``config_from_*_model`` writes)."""
    import hls4ml
    from hls4ml.model.attributes import TypeAttribute

    be = hls4ml.backends.get_backend(backend)
    out: dict[str, dict[str, Any]] = {}
    for layer in layers:
        cls = be.create_layer_class(hls4ml.model.layers.layer_map[layer["class_name"]])
        cfg: dict[str, Any] = {}
        for a in (a for a in cls.expected_attributes if a.configurable):
            if isinstance(a, TypeAttribute):
                key = a.name[:-2] if a.name.endswith("_t") else a.name
                cfg.setdefault("Precision", {})[key] = "auto" if a.default is None else str(a.default)
            elif a.name == "reuse_factor":
                cfg[a.config_name] = reuse_factor
            elif a.default is not None:
                cfg[a.config_name] = a.default
        out[layer["name"]] = cfg
    return out


__all__ = ["LayerList", "LayerRefused", "build", "layer_config", "supported_ops"]
