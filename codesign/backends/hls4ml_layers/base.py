"""What every op-family module shares: the registry and the per-conversion context.

Each family module turns IR nodes of the lowered (channels-last) graph into hls4ml
layer dicts, the representation hls4ml's own converters hand to
``ModelGraph.from_layer_list``. Registering by op type makes the supported set static,
so a model is refused, naming every op and node, before anything expensive runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper

from codesign.backends.precision import ModelPrecision
from codesign.errors import UnsupportedModelError
from codesign.ir.model import Model

Layer = dict[str, Any]
Handler = Callable[["Context", onnx.NodeProto], list[Layer]]

#: op type -> handler, filled by the family modules' ``@handles`` decorators.
HANDLERS: dict[str, Handler] = {}


def handles(*ops: str) -> Callable[[Handler], Handler]:
    """Register a handler for ``ops`` (one family module per op family)."""

    def register(fn: Handler) -> Handler:
        for op in ops:
            if op in HANDLERS:
                raise RuntimeError(f"two hls4ml layer handlers for {op}")
            HANDLERS[op] = fn
        return fn

    return register


def attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    """An ONNX attribute's value (strings decoded), ``default`` when absent."""
    for a in node.attribute:
        if a.name == name:
            v = helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


class LayerRefused(UnsupportedModelError):
    """An IR node whose attributes hls4ml cannot express (names op and node)."""

    def __init__(self, node: onnx.NodeProto, why: str):
        super().__init__(f"hls4ml cannot express {node.op_type} {node.name}: {why}")


@dataclass
class Context:
    """One conversion: the lowered IR, its derived types, and what earlier layers absorbed."""

    model: Model
    precision: ModelPrecision
    #: tensor -> the tensor that carries it in hls4ml (removed Identity/Dropout)
    alias: dict[str, str] = field(default_factory=dict)
    #: nodes folded into an earlier layer (a Dense's bias Add): skipped
    fused: set[str] = field(default_factory=set)
    #: per-layer hls4ml config (``Precision`` etc.) the handlers decide, merged into LayerName
    config: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: "parallel" or "stream": hls4ml's streamed layers lack some options (padded pools)
    io: str = "parallel"
    #: a float model's check before its type selection: activation types are not chosen yet
    untyped: bool = False

    def src(self, tensor: str) -> str:
        """The hls4ml variable carrying IR tensor ``tensor``."""
        while tensor in self.alias:
            tensor = self.alias[tensor]
        return tensor

    def shape(self, tensor: str) -> list[int]:
        """Static shape without the batch dimension (hls4ml's convention)."""
        shape = self.model.shape(tensor)
        if shape is None:
            raise UnsupportedModelError(f"tensor {tensor} has no static shape")
        return [int(d) for d in shape[1:]]

    def const(self, tensor: str) -> np.ndarray | None:
        """A constant input's value (an initializer, or a quantized initializer), else None."""
        return self.model.constant(tensor) if tensor else None

    def base(self, node: onnx.NodeProto, class_name: str, inputs: list[str] | None = None, **extra: Any) -> Layer:
        """A layer dict named after the IR node (so per-layer config and types keep working)."""
        ins = [self.src(t) for t in (inputs if inputs is not None else node.input[:1])]
        return {"name": node.name, "class_name": class_name, "inputs": ins, "outputs": [node.output[0]], **extra}

    def types(self, name: str) -> dict[str, str]:
        """The IR-derived precisions of layer ``name`` (hls4ml config spelling)."""
        lp = self.precision.layers.get(name)
        return lp.config() if lp is not None else {}

    def set_precision(self, name: str, **types: str) -> None:
        self.config.setdefault(name, {}).setdefault("Precision", {}).update(types)


__all__ = ["HANDLERS", "Context", "Handler", "Layer", "LayerRefused", "attr", "handles"]
