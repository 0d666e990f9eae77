"""Fixes to hls4ml 1.3 optimizer passes that break bit-exactness, applied only while converting.

Each is a context manager around hls4ml's conversion, undone on exit, so hls4ml
itself is never modified for other users of the process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from unittest.mock import patch

import numpy as np


def _never(self, node) -> bool:
    """An optimiser pass's ``match`` that turns the pass off."""
    return False


@contextlib.contextmanager
def binary_dense_fixed() -> Iterator[None]:
    """hls4ml's ``QuantizeDenseOutput`` re-quantizes 1-bit weights already encoded as 0/1: every weight becomes 1.

    A bipolar Dense after a BatchNorm + sign layer (a BNN's hidden layers) then ignores
    its weights. The encoded values are turned back into +-1 first, so the pass's
    ``x >= 0 -> 1`` quantizer restores the same 0/1 code.
    """
    from hls4ml.backends.vivado.passes.bn_quant import QuantizeDenseOutput
    from hls4ml.model.types import XnorPrecisionType

    original = QuantizeDenseOutput.transform

    def transform(self, model, node):
        weights = node.weights.get("weight")
        if weights is not None and isinstance(weights.type.precision, XnorPrecisionType):
            data = np.asarray(weights.data)
            if np.isin(data, (0, 1)).all():
                weights.data = np.where(data > 0, 1.0, -1.0)
        return original(self, model, node)

    with patch.object(QuantizeDenseOutput, "transform", transform):
        yield


@contextlib.contextmanager
def scales_kept() -> Iterator[None]:
    """hls4ml's ``scale_down_*``/``bias_down_add`` passes move ApplyAlphas past Add/MatMul/Conv; off on codesign's path.

    codesign types every ApplyAlpha where the IR has it, so a moved one computes in other
    types; moving a Quant's rescale past a residual Add also left its output variable
    undeclared (a C++ build failure).
    """
    from hls4ml.model.optimizer.passes import move_scales

    passes = [move_scales.ScaleDownAdd, move_scales.BiasDownAdd, move_scales.ScaleDownMatMul, move_scales.ScaleDownConv]
    with contextlib.ExitStack() as stack:
        for p in passes:
            stack.enter_context(patch.object(p, "match", _never))
        yield


@contextlib.contextmanager
def no_affine_fusion() -> Iterator[None]:
    """hls4ml's ``FuseConsecutiveBatchNormalization`` off: codesign's layers keep the types derived for them.

    It folds an untyped BatchNorm/ApplyAlpha into the next one, whose scale and bias types
    were sized for its own constants: a float BN or a weight-scale Mul + bias Add before a
    non-power-of-two Quant lands in that Quant's scale ApplyAlpha, whose bias type holds only
    the zero point, and the bias is lost (onnxruntime QDQ models: top-1 30%). The layer list
    codesign builds already has the affines it means; fusing them saves one multiplier per channel.
    """
    from hls4ml.model.optimizer.passes.batchnorm_opt import FuseConsecutiveBatchNormalization

    with patch.object(FuseConsecutiveBatchNormalization, "match", _never):
        yield


@contextlib.contextmanager
def stream_reshape_typed() -> Iterator[None]:
    """hls4ml's ``ReshapeStream`` reads the Reshape's type as ``attributes[node.name]``: a KeyError unless the
    layer's output variable is named after the layer; codesign names outputs after IR tensors (io_stream
    Flatten/Reshape: "KeyError: 'flat'"). The output variable's type is taken instead."""
    from hls4ml.backends.fpga.passes.repack_stream import Repack, ReshapeStream

    def transform(self, model, node):
        if model.config.get_config_value("IOType") != "io_stream":
            return False
        repack = model.make_node(Repack, "repack_" + node.name, {"target_shape": node.get_attr("target_shape")},
                                 node.inputs.copy())  # fmt: skip
        repack.get_output_variable().type = node.get_output_variable().type
        model.replace_node(node, repack)
        return True

    with patch.object(ReshapeStream, "transform", transform):
        yield


@contextlib.contextmanager
def indexed_input_nodes() -> Iterator[None]:
    """hls4ml's ``Layer.get_input_node`` scans every layer of the graph; its optimisers call it per layer per
    restart (a 2,000-node chain: 400,000 calls, 53 s). Here a producer index per model answers it, checked on
    every hit (the node still in the graph, still producing the tensor: one producer per tensor) and rebuilt
    when the graph changed under it."""
    from hls4ml.model.layers import Layer

    original = Layer.get_input_node
    index: dict[int, dict[str, Any]] = {}

    def get_input_node(self, input_name=None):
        name = input_name if input_name is not None else (self.inputs[0] if len(self.inputs) > 0 else None)
        if name is None:
            return None
        graph = self.model.graph
        producers = index.get(id(self.model))
        for attempt in range(2):
            node = producers.get(name) if producers is not None else None
            if node is not None and graph.get(node.name) is node and name in node.outputs:
                return node
            if attempt == 0:
                producers = {}
                for layer in graph.values():
                    for out in layer.outputs:
                        producers.setdefault(out, layer)
                index[id(self.model)] = producers
        return original(self, input_name)  # no producer: hls4ml's own answer (None)

    with patch.object(Layer, "get_input_node", get_input_node):
        yield


@contextlib.contextmanager
def codesign_path() -> Iterator[None]:
    """Every patch codesign's own layer-list path needs, for one conversion."""
    with binary_dense_fixed(), scales_kept(), no_affine_fusion(), stream_reshape_typed(), indexed_input_nodes():
        yield


__all__ = [
    "binary_dense_fixed", "codesign_path", "indexed_input_nodes", "no_affine_fusion", "scales_kept",
    "stream_reshape_typed",
]  # fmt: skip
