"""Pruning on the IR: zeros in the weights, or whole neurons/channels removed.

Unstructured magnitude pruning writes exact zeros into the (float source of the)
weights of MatMul/Gemm/Conv layers; the cost pass sees them through
``Model.constant`` and discounts MACs/BOPs by density. Structured pruning removes
output channels of a layer together with everything indexed by them downstream
(bias, BatchNorm and per-channel quantizer parameters, the next layer's input rows),
so tensor shapes, MACs and memory really shrink.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper

from codesign.errors import CodesignError
from codesign.ir.model import QUANT_OPS, Model
from codesign.passes.base import Pass, PassResult
from codesign.passes.graph_edit import finish, replace_initializer

MAC_OPS = frozenset({"MatMul", "Gemm", "Conv"})
#: Ops that act on each channel independently: a pruned channel passes straight through.
CHANNELWISE_OPS = frozenset(
    {"Add", "Sub", "Mul", "Div", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Selu", "Elu", "Clip", "HardSigmoid",
     "BatchNormalization", "Identity", "Dropout", "Quant", "BipolarQuant", "Trunc", "PRelu", "Softsign"}
)  # fmt: skip
#: Ops that keep every channel separate but change the spatial size (pooling).
POOL_OPS = frozenset({"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"})


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _check_fraction(value: float, what: str) -> None:
    if not 0.0 <= value < 1.0:
        raise CodesignError(f"{what} must be in [0, 1), not {value}")


def _weight_source(model: Model, name: str) -> str | None:
    """Float initializer behind a weight input (directly, or under a quantizer)."""
    if model.initializer(name) is not None:
        return name
    producer = model.producer(name)
    if producer is not None and producer.op_type in QUANT_OPS and model.initializer(producer.input[0]) is not None:
        return producer.input[0]
    return None


def prunable_layers(model: Model, names: Iterable[str] | None = None) -> list[onnx.NodeProto]:
    """MAC layers with static weights (optionally restricted to ``names``)."""
    wanted = set(names) if names is not None else None
    layers = [
        n for n in model.graph.node
        if n.op_type in MAC_OPS and len(n.input) > 1 and _weight_source(model, n.input[1]) is not None
    ]  # fmt: skip
    if wanted is not None:
        missing = wanted - {n.name for n in layers}
        if missing:
            raise CodesignError(f"no prunable layer named {min(missing)!r}")
        layers = [n for n in layers if n.name in wanted]
    return layers


# ------------------------------------------------------------------ unstructured
@dataclass
class PruneInfo:
    """Per-layer sparsity before/after (unstructured) or removed channels (structured)."""

    layers: dict[str, dict] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    sparsity: float = 0.0


def _zero_smallest(model: Model, layer: onnx.NodeProto, mask: np.ndarray) -> None:
    src = _weight_source(model, layer.input[1])
    w = model.initializer(src).copy()
    w[mask] = 0.0
    replace_initializer(model, src, w)


class MagnitudePrune(Pass):
    """Zero the smallest-magnitude weights to reach ``sparsity``.

    ``scope="layer"`` prunes every layer to the target; ``"global"`` ranks all weights
    together (layers with many small weights lose more). Magnitudes are those of the
    quantized weights when a quantizer is present (what the hardware multiplies).
    """

    def __init__(self, sparsity: float, scope: str = "layer", layers: Iterable[str] | None = None):
        _check_fraction(sparsity, "sparsity")
        if scope not in ("layer", "global"):
            raise CodesignError(f"scope must be 'layer' or 'global', not {scope!r}")
        self.sparsity, self.scope = float(sparsity), scope
        self.layers = list(layers) if layers is not None else None

    def call(self, model: Model) -> PassResult:
        info = PruneInfo()
        targets = prunable_layers(model, self.layers)
        if self.sparsity == 0.0 or not targets:
            return PassResult(model, False, info)
        mags = {n.name: np.abs(model.constant(n.input[1])) for n in targets}
        before = {k: float(np.mean(v == 0)) for k, v in mags.items()}
        masks: dict[str, np.ndarray] = {}
        if self.scope == "layer":
            for name, m in mags.items():
                masks[name] = _smallest(m.reshape(-1), round(self.sparsity * m.size)).reshape(m.shape)
        else:
            flat = np.concatenate([m.reshape(-1) for m in mags.values()])
            chosen = _smallest(flat, round(self.sparsity * flat.size))
            offset = 0
            for name, m in mags.items():
                masks[name] = chosen[offset : offset + m.size].reshape(m.shape)
                offset += m.size
        for node in targets:
            _zero_smallest(model, node, masks[node.name])
        model.invalidate()
        for node in targets:
            value = model.constant(node.input[1])
            info.layers[node.name] = {
                "before": before[node.name],
                "after": float(np.mean(value == 0)),
                "size": int(value.size),
            }
        total = sum(v["size"] for v in info.layers.values())
        info.sparsity = sum(v["after"] * v["size"] for v in info.layers.values()) / total
        return finish(model, True, info)


def _smallest(values: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the ``k`` smallest entries (stable: ties broken by position)."""
    mask = np.zeros(values.shape, dtype=bool)
    if k > 0:
        mask[np.argsort(values, kind="stable")[:k]] = True
    return mask


# ------------------------------------------------------------------ structured
@dataclass
class _Region:
    """A producer layer, the channel-wise nodes after it, and the layers that read it."""

    producer: onnx.NodeProto
    chain: list[onnx.NodeProto]
    consumers: list[onnx.NodeProto]
    channels: int
    spatial: int = 1  # > 1 when a Flatten/Reshape turns (N, C, H, W) into (N, C*H*W) before the consumers
    flatten: onnx.NodeProto | None = None


def _out_axis(node: onnx.NodeProto, ndim: int) -> int:
    """Axis of the weight tensor indexing the layer's output channels."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm" and _attr(node, "transB", 0):
        return 0
    return ndim - 1


def _in_axis(node: onnx.NodeProto, ndim: int) -> int:
    """Axis of the weight tensor indexing the layer's input channels."""
    if node.op_type == "Conv":
        return 1
    if node.op_type == "Gemm" and _attr(node, "transB", 0):
        return ndim - 1
    return 0


def _region(model: Model, layer: onnx.NodeProto) -> _Region | str:
    """The prunable region starting at ``layer``, or why there is none."""
    out_shape = model.shape(layer.output[0])
    if out_shape is None or len(out_shape) < 2:
        return "unknown output shape"
    if layer.op_type == "Conv" and (layer.domain or int(_attr(layer, "group", 1)) != 1):
        return "grouped or channels-last convolution"
    if layer.op_type == "MatMul" and len(out_shape) != 2:
        return "MatMul on more than two dimensions"
    channels = out_shape[1]
    chain: list[onnx.NodeProto] = []
    tensor = layer.output[0]
    outputs = set(model.outputs)
    flatten: onnx.NodeProto | None = None
    spatial = 1
    while True:
        if tensor in outputs:
            return "its output reaches a graph output"
        cons = model.consumers(tensor)
        if not cons:
            return "its output is unused"
        if all(c.op_type in MAC_OPS and c.input[0] == tensor and _weight_source(model, c.input[1]) for c in cons):
            if any(c.op_type == "Conv" and (c.domain or int(_attr(c, "group", 1)) != 1) for c in cons):
                return "feeds a grouped or channels-last convolution"
            if any(c.op_type == "Gemm" and _attr(c, "transA", 0) for c in cons):
                return "feeds a Gemm with transA"
            if flatten is not None and any(c.op_type == "Conv" for c in cons):
                return "a flattened tensor feeds a convolution"
            return _Region(layer, chain, cons, channels, spatial, flatten)
        node = cons[0] if len(cons) == 1 else None
        if flatten is None and node is not None and _is_flatten(model, node, tensor):
            flatten, spatial = node, int(np.prod(model.shape(tensor)[2:]))
            tensor = node.output[0]
            continue
        if node is None or node.op_type not in CHANNELWISE_OPS | POOL_OPS or node.domain.endswith("channels_last"):
            what = node.op_type if node is not None else "several nodes"
            return f"its output feeds {what}, not a channel-wise op or a layer"
        if any(i and i != tensor and model.constant(i) is None for i in node.input):
            return f"{node.op_type} {node.name!r} joins another branch"
        in_shape, out_shape = model.shape(tensor), model.shape(node.output[0])
        if node.op_type in POOL_OPS:
            if flatten is not None or in_shape is None or out_shape is None or out_shape[:2] != in_shape[:2]:
                return f"{node.op_type} {node.name!r} changes the channels"
        elif out_shape != in_shape:
            return f"{node.op_type} {node.name!r} changes the shape"
        elif flatten is not None and any(i != tensor and model.constant(i).size > 1 for i in node.input if i):
            return f"{node.op_type} {node.name!r} has per-element parameters after a flatten"
        chain.append(node)
        tensor = node.output[0]


def _is_flatten(model: Model, node: onnx.NodeProto, tensor: str) -> bool:
    """Flatten(axis=1) or Reshape of an (N, C, ...) tensor to (N, C*...)."""
    in_shape, out_shape = model.shape(tensor), model.shape(node.output[0])
    if in_shape is None or out_shape is None or len(in_shape) < 3 or len(out_shape) != 2:
        return False
    if node.op_type == "Flatten":
        return int(_attr(node, "axis", 1)) == 1
    return node.op_type == "Reshape" and out_shape == (in_shape[0], int(np.prod(in_shape[1:])))


def _drop_from_constant(model: Model, name: str, keep: np.ndarray, axis_from_end: int, channels: int) -> None:
    """Delete dropped channels from a constant (or a quantizer's inputs) broadcast on that axis."""
    src = name
    producer = model.producer(name)
    if model.initializer(name) is None:
        if producer is None or producer.op_type not in QUANT_OPS:
            return
        for inp in producer.input:
            if inp:
                _drop_from_constant(model, inp, keep, axis_from_end, channels)
        return
    value = model.initializer(src)
    if value.ndim < axis_from_end or value.shape[value.ndim - axis_from_end] != channels:
        return  # scalar or broadcast along this axis: nothing indexed by channel
    replace_initializer(model, src, np.take(value, np.flatnonzero(keep), axis=value.ndim - axis_from_end))


def _drop_weight_axis(model: Model, layer: onnx.NodeProto, axis: int, keep: np.ndarray, channels: int) -> None:
    w_shape = model.constant(layer.input[1]).shape
    _drop_from_constant(model, layer.input[1], keep, len(w_shape) - axis, channels)


def _remove_channels(model: Model, region: _Region, drop: np.ndarray) -> None:
    keep = np.ones(region.channels, dtype=bool)
    keep[drop] = False
    layer, c = region.producer, region.channels
    ndim_w = len(model.constant(layer.input[1]).shape)
    _drop_weight_axis(model, layer, _out_axis(layer, ndim_w), keep, c)
    if layer.op_type in ("Gemm", "Conv") and len(layer.input) > 2 and layer.input[2]:
        _drop_from_constant(model, layer.input[2], keep, 1, c)
    out_rank = len(model.shape(layer.output[0]))
    for node in region.chain:
        for k, inp in enumerate(node.input):
            if k == 0 or not inp:
                continue
            if node.op_type == "BatchNormalization":
                _drop_from_constant(model, inp, keep, 1, c)
            else:  # broadcast against an (N, C, ...) tensor: channel axis is rank-1 from the end
                _drop_from_constant(model, inp, keep, out_rank - 1, c)
    wide = np.repeat(keep, region.spatial)  # channel-major (NCHW) flatten order
    for consumer in region.consumers:
        nd = len(model.constant(consumer.input[1]).shape)
        _drop_weight_axis(model, consumer, _in_axis(consumer, nd), wide, c * region.spatial)
    flat = region.flatten
    if flat is not None and flat.op_type == "Reshape":
        target = model.initializer(flat.input[1])
        if target is not None and target.size == 2 and target[1] != -1:
            replace_initializer(model, flat.input[1], np.array([target[0], int(wide.sum())], dtype=np.int64))
    model.invalidate()


def _importance(model: Model, layer: onnx.NodeProto, criterion: str, region: _Region) -> np.ndarray:
    """Per-output-channel score: L1 or L2 norm of incoming weights, or L1 of outgoing weights."""
    if criterion in ("l1", "l2"):
        w = model.constant(layer.input[1])
        axis = _out_axis(layer, w.ndim)
        rows = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
        return np.abs(rows).sum(axis=1) if criterion == "l1" else np.sqrt(np.square(rows).sum(axis=1))
    score = np.zeros(region.channels)
    for consumer in region.consumers:
        w = model.constant(consumer.input[1])
        axis = _in_axis(consumer, w.ndim)
        score += np.abs(np.moveaxis(w, axis, 0)).reshape(region.channels, -1).sum(axis=1)
    return score


class StructuredPrune(Pass):
    """Remove a ``fraction`` of the output channels of every prunable layer (or given
    ``neurons`` per layer); output layers are never pruned.

    Channels with the smallest ``criterion`` score go: ``"l1"`` / ``"l2"`` (norm of the
    incoming weights, Li et al. 2017) or ``"outgoing"`` (weights that read the channel downstream).
    """

    def __init__(
        self,
        fraction: float = 0.25,
        neurons: dict[str, Iterable[int]] | None = None,
        criterion: str = "l1",
        layers: Iterable[str] | None = None,
    ):
        _check_fraction(fraction, "fraction")
        if criterion not in ("l1", "l2", "outgoing"):
            raise CodesignError(f"criterion must be 'l1', 'l2' or 'outgoing', not {criterion!r}")
        self.fraction, self.criterion = float(fraction), criterion
        self.neurons = {k: sorted({int(i) for i in v}) for k, v in (neurons or {}).items()}
        self.layers = list(layers) if layers is not None else None

    def call(self, model: Model) -> PassResult:
        info = PruneInfo()
        names = list(self.neurons) if self.neurons else self.layers
        plan: list[tuple[str, np.ndarray]] = []
        for layer in prunable_layers(model, names):
            region = _region(model, layer)
            if isinstance(region, str):
                if layer.name in self.neurons:
                    raise CodesignError(f"cannot prune neurons of {layer.name!r}: {region}")
                info.skipped[layer.name] = region
                continue
            if layer.name in self.neurons:
                drop = np.array(self.neurons[layer.name], dtype=int)
                if drop.size and (drop.min() < 0 or drop.max() >= region.channels):
                    raise CodesignError(f"{layer.name!r} has {region.channels} channels; cannot remove {drop.tolist()}")
            else:
                n = min(int(np.floor(self.fraction * region.channels)), region.channels - 1)
                drop = np.sort(np.argsort(_importance(model, layer, self.criterion, region), kind="stable")[:n])
            if drop.size >= region.channels:
                raise CodesignError(f"cannot remove all {region.channels} channels of {layer.name!r}")
            if drop.size:
                plan.append((layer.name, drop))
                info.layers[layer.name] = {"channels": region.channels, "removed": drop.tolist()}
        # regions are computed on the unmodified graph; apply them one by one
        for name, drop in plan:
            region = _region(model, model.node(name))
            if isinstance(region, str):  # cannot happen: regions are disjoint by construction
                raise CodesignError(f"{name}: {region}")
            _remove_channels(model, region, drop)
            model.graph.ClearField("value_info")
            model.invalidate()
            from codesign.passes.shapes import infer_shapes

            infer_shapes(model)
        weights = [model.constant(n.input[1]) for n in prunable_layers(model)]
        info.sparsity = sum(int(np.sum(w == 0)) for w in weights) / max(1, sum(w.size for w in weights))
        return finish(model, bool(plan), info)


def prune(model: Model, sparsity: float, structured: bool = False, **options) -> PassResult:
    """Functional form used by the CLI: unstructured to ``sparsity``, or structured with
    ``sparsity`` as the fraction of channels removed per layer."""
    if structured:
        return StructuredPrune(fraction=sparsity, **options)(model)
    return MagnitudePrune(sparsity, **options)(model)


__all__ = ["MagnitudePrune", "PruneInfo", "StructuredPrune", "prunable_layers", "prune"]
