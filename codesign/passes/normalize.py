"""Normalisation on load: every frontend hands its graph through :data:`normalize`.

Real files put QONNX quantizers in three domains, leave nodes unnamed, fix the batch
dimension at 789444 or leave it symbolic, keep initializers as graph inputs (old
opsets) and carry constant sub-graphs (``Shape -> Gather -> Concat`` flattens). After
these passes the IR is one canonical form that cost passes and backends can rely on.
"""

from __future__ import annotations

import numpy as np
import onnx
from qonnx.transformation.quant_constant_folding import FoldTransposeIntoQuantInit

from codesign.ir.model import Model
from codesign.ir.names import is_safe_name, safe_name, uniquify
from codesign.ir.quant import QONNX_DOMAIN
from codesign.passes.base import Pass, PassResult, QonnxPass, Sequential
from codesign.passes.batch import StaticBatchToOne
from codesign.passes.datatypes import InferDatatypes
from codesign.passes.fold import FoldConstantSubgraphs as _BoundedFold
from codesign.passes.layernorm import SpellOutLayerNormalization
from codesign.passes.qdq import QDQToQuant
from codesign.passes.quantizers import CheckQuantizers, FillQuantizerDefaults
from codesign.passes.repeat_as_resize import RepeatAsResize, TransposeSandwichedResize
from codesign.passes.sanity import CheckAnnotatedConstants, CheckWindowNodes
from codesign.passes.shapes import InferShapes
from codesign.passes.tidy import RemoveStaticGraphInputs, RemoveUnusedTensors, SortGraph, UniqueParameterTensors

#: Domains real exporters put QONNX ops in; all become ``qonnx.custom_op.general``.
QUANT_DOMAINS = frozenset({"", "qonnx", "onnx.brevitas", "finn.custom_op.general", "finn", QONNX_DOMAIN})
QONNX_GENERAL_OPS = frozenset({"Quant", "BipolarQuant", "Trunc", "FloatQuant", "IntQuant", "MultiThreshold"})

#: Batch dimensions at or above this are treated as an exporter's artefact.
HUGE_BATCH = 1024


class CanonicalizeQuantDomains(Pass):
    """Move Quant/BipolarQuant/Trunc/FloatQuant/MultiThreshold into the qonnx domain."""

    def call(self, model: Model) -> PassResult:
        modified = False
        for node in model.graph.node:
            if node.op_type in QONNX_GENERAL_OPS and node.domain in QUANT_DOMAINS and node.domain != QONNX_DOMAIN:
                node.domain = QONNX_DOMAIN
                modified = True
        for domain in sorted({n.domain for n in model.graph.node if n.domain not in ("", "ai.onnx")}):
            _ensure_opset(model.proto, domain, 1)
        if model.proto.ir_version < 4:  # IR v4+ lets initializers stay out of graph inputs
            model.proto.ir_version = 4
            modified = True
        if modified:
            for stale in ("qonnx", "onnx.brevitas", "finn.custom_op.general"):
                if not any(n.domain == stale for n in model.graph.node):
                    _drop_opset(model.proto, stale)
        model.invalidate()
        return PassResult(model, modified)


def _ensure_opset(proto: onnx.ModelProto, domain: str, version: int) -> None:
    if not any(o.domain == domain for o in proto.opset_import):
        proto.opset_import.append(onnx.helper.make_opsetid(domain, version))


def _drop_opset(proto: onnx.ModelProto, domain: str) -> None:
    for o in list(proto.opset_import):
        if o.domain == domain:
            proto.opset_import.remove(o)


class FillChannelsLastDefaults(Pass):
    """ONNX's defaults (strides/dilations 1, pads 0, group 1) written on qonnx channels-last Conv/MaxPool nodes.

    qonnx's wrappers require every window attribute; a channels-last graph converted from
    an ONNX node that left them out failed shape inference with "Required attribute pads".
    """

    def call(self, model: Model) -> PassResult:
        from onnx import helper

        modified = False
        for node in model.graph.node:
            if node.domain != "qonnx.custom_op.channels_last" or node.op_type not in ("Conv", "MaxPool"):
                continue
            have = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            if "kernel_shape" not in have:
                continue
            n = len(have["kernel_shape"])
            defaults: dict[str, object] = {"strides": [1] * n, "pads": [0] * (2 * n)}
            if node.op_type == "Conv":
                defaults.update(dilations=[1] * n, group=1)
            for key, value in defaults.items():
                if key not in have:
                    node.attribute.append(helper.make_attribute(key, value))
                    modified = True
        return PassResult(model, modified)


class NameNodesAndTensors(Pass):
    """Unique, code-safe node names; unsafe tensor names replaced (safe ones kept)."""

    def call(self, model: Model) -> PassResult:
        modified = False
        taken: set[str] = set()
        counters: dict[str, int] = {}
        for node in model.graph.node:
            name = node.name
            if not name:
                counters[node.op_type] = counters.get(node.op_type, -1) + 1
                name = f"{node.op_type}_{counters[node.op_type]}"
            elif not is_safe_name(name):
                name = safe_name(name, fallback=node.op_type)
            name = uniquify(name, taken)
            if name != node.name:
                node.name, modified = name, True
        renames = _unsafe_tensor_renames(model)
        if renames:
            _rename_tensors(model.proto, renames)
            modified = True
        model.invalidate()
        return PassResult(model, modified)


def _all_tensor_names(proto: onnx.ModelProto) -> list[str]:
    g = proto.graph
    names = [t.name for t in g.initializer] + [v.name for v in g.input] + [v.name for v in g.output]
    for n in g.node:
        names.extend(list(n.input) + list(n.output))
    return [n for n in dict.fromkeys(names) if n]


def _unsafe_tensor_renames(model: Model) -> dict[str, str]:
    names = _all_tensor_names(model.proto)
    taken = {n for n in names if is_safe_name(n)}
    return {n: uniquify(safe_name(n), taken) for n in names if not is_safe_name(n)}


def _rename_tensors(proto: onnx.ModelProto, renames: dict[str, str]) -> None:
    g = proto.graph
    for coll in (g.initializer, g.input, g.output, g.value_info):
        for item in coll:
            if item.name in renames:
                item.name = renames[item.name]
    for ann in g.quantization_annotation:
        if ann.tensor_name in renames:
            ann.tensor_name = renames[ann.tensor_name]
    for n in g.node:
        for k, i in enumerate(n.input):
            if i in renames:
                n.input[k] = renames[i]
        for k, o in enumerate(n.output):
            if o in renames:
                n.output[k] = renames[o]


class FixBatchDim(Pass):
    """Symbolic or huge (>= 1024) leading dims of inputs/outputs become ``batch``.

    Exporters write the batch they traced with (pytorch: 789444) or a symbol; cost
    analysis wants one sample. Reshape targets that spelled the old batch follow.
    """

    def __init__(self, batch: int = 1, huge: int = HUGE_BATCH):
        self.batch, self.huge = batch, huge

    def call(self, model: Model) -> PassResult:
        g = model.graph
        inits = {t.name for t in g.initializer}
        old: set[int] = set()
        modified = False
        for vi in list(g.input) + list(g.output):
            if vi.name in inits or not vi.type.tensor_type.HasField("shape"):
                continue
            dims = vi.type.tensor_type.shape.dim
            if not dims:
                continue
            d0 = dims[0]
            if d0.HasField("dim_value") and d0.dim_value < self.huge and d0.dim_value != 0:
                continue
            if d0.HasField("dim_value"):
                old.add(d0.dim_value)
            d0.Clear()
            d0.dim_value = self.batch
            modified = True
        if modified:
            g.ClearField("value_info")
            for node in model.nodes_of(["Reshape"]):
                target = model.initializer(node.input[1]) if len(node.input) > 1 else None
                if target is not None and target.size and int(target[0]) in old:
                    fixed = target.copy()
                    fixed[0] = self.batch
                    model.set_initializer(node.input[1], fixed.astype(np.int64))
        model.invalidate()
        return PassResult(model, modified)


class FixNonconformingBatchNorm(Pass):
    """BatchNormalization whose parameters run along an axis other than 1 -> Mul + Add.

    Old keras2onnx exports wrap a dense layer's BatchNorm in Transposes, so the 64
    features sit on axis 0 of a (64, 1) tensor; onnxruntime (rightly) rejects that
    ("Invalid input scale: 0th dimension != 1"). The intended function is a
    per-feature affine map: it becomes ``x * a + b`` along the axis whose size matches
    the parameters, and a surrounding Transpose pair that cancels is dropped.
    """

    def call(self, model: Model) -> PassResult:
        modified = False
        for bn in list(model.nodes_of(["BatchNormalization"])):
            if self._rewrite(model, bn):
                modified = True
        if modified:
            model.graph.ClearField("value_info")
            model.invalidate()
        return PassResult(model, modified)

    @staticmethod
    def _rewrite(model: Model, bn: onnx.NodeProto) -> bool:
        shape = model.shape(bn.input[0])
        params = [model.initializer(i) for i in bn.input[1:5]]
        if shape is None or len(shape) < 2 or any(p is None for p in params) or len(bn.output) != 1:
            return False
        size = params[0].size
        axes = [k for k, d in enumerate(shape) if d == size]
        if shape[1] == size or len(axes) != 1:
            return False
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        scale, bias, mean, var = (p.astype(np.float64).reshape(-1) for p in params)
        a = scale / np.sqrt(var + eps)
        b = bias - mean * a
        src, dst, axis, rank = bn.input[0], bn.output[0], axes[0], len(shape)
        removed: list[onnx.NodeProto] = []
        t1, consumers = model.producer(src), model.consumers(dst)
        t2 = consumers[0] if len(consumers) == 1 else None
        if (t1 is not None and t2 is not None and t1.op_type == t2.op_type == "Transpose"
                and len(model.consumers(src)) == 1):  # fmt: skip
            perm1 = _perm(t1, rank)
            perm2 = _perm(t2, rank)
            if [perm1[p] for p in perm2] == list(range(rank)):
                src, dst, axis = t1.input[0], t2.output[0], perm1[axis]
                removed = [t1, t2]
        bshape = [1] * rank
        bshape[axis] = size
        a_name, b_name = f"{bn.name}_affine_scale", f"{bn.name}_affine_shift"
        model.set_initializer(a_name, a.reshape(bshape).astype(np.float32))
        model.set_initializer(b_name, b.reshape(bshape).astype(np.float32))
        mid = f"{bn.name}_scaled"
        mul = onnx.helper.make_node("Mul", [src, a_name], [mid], name=f"{bn.name}_mul")
        add = onnx.helper.make_node("Add", [mid, b_name], [dst], name=f"{bn.name}_add")
        nodes = model.graph.node
        idx = list(nodes).index(bn)
        nodes.insert(idx, add)
        nodes.insert(idx, mul)
        for node in [bn, *removed]:
            nodes.remove(node)
        model.invalidate()
        return True


def _perm(node: onnx.NodeProto, rank: int) -> list[int]:
    for a in node.attribute:
        if a.name == "perm":
            return list(a.ints)
    return list(reversed(range(rank)))


class RefuseDynamicShapes(Pass):
    """After batch fixing, any remaining symbolic input dimension is an error."""

    in_place = True

    def call(self, model: Model) -> PassResult:
        from codesign.errors import UnsupportedModelError

        bad = []
        inits = {t.name for t in model.graph.initializer}
        for vi in model.graph.input:
            if vi.name in inits:
                continue
            dims = vi.type.tensor_type.shape.dim
            if not vi.type.tensor_type.HasField("shape") or any(not d.HasField("dim_value") for d in dims):
                shown = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
                bad.append(f"{vi.name} {shown}")
        if bad:
            raise UnsupportedModelError(
                f"dynamic input shape cannot be resolved: {', '.join(bad)}; pass input_shapes/--input-shape NAME=D0,D1,..."
            )
        return PassResult(model, False)


class SetInputShapes(Pass):
    """Pin user-given input shapes (``{"x": (1, 16)}``) before shape inference."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]):
        self.shapes = dict(shapes)

    def call(self, model: Model) -> PassResult:
        from codesign.errors import UnsupportedModelError

        names = {vi.name: vi for vi in model.graph.input}
        for name, shape in self.shapes.items():
            if name not in names:
                raise UnsupportedModelError(
                    f"--input-shape names {name!r}, which is not a model input ({', '.join(model.inputs)})"
                )
            tt = names[name].type.tensor_type
            tt.ClearField("shape")
            for d in shape:
                tt.shape.dim.add().dim_value = int(d)
        if self.shapes:
            model.graph.ClearField("value_info")
        model.invalidate()
        return PassResult(model, bool(self.shapes))


class FoldConstantSubgraphs(_BoundedFold):
    """Fold constant sub-graphs (Shape/Gather/Concat flattens...), keeping quantizers (size-limited)."""

    def __init__(self, limit: int | None = None) -> None:
        super().__init__(QONNX_GENERAL_OPS | {"QuantizeLinear", "DequantizeLinear"}, limit)


def normalize(
    batch: int = 1,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
) -> Sequential:
    """The canonicalisation every loaded model goes through (see module docstring)."""
    return Sequential(
        CanonicalizeQuantDomains(),
        FillQuantizerDefaults(),
        FillChannelsLastDefaults(),
        NameNodesAndTensors(),
        RemoveStaticGraphInputs(),
        SetInputShapes(input_shapes or {}),
        FixBatchDim(batch),
        StaticBatchToOne(),
        RefuseDynamicShapes(),
        InferShapes(),
        CheckWindowNodes(),
        UniqueParameterTensors(),
        QDQToQuant(),
        FixNonconformingBatchNorm(),
        InferShapes(),
        UniqueParameterTensors(),
        FoldConstantSubgraphs(),
        RepeatAsResize(),
        TransposeSandwichedResize(),
        SpellOutLayerNormalization(),
        CheckQuantizers(),
        CheckAnnotatedConstants(),
        QonnxPass(FoldTransposeIntoQuantInit()),
        RemoveUnusedTensors(),
        SortGraph(),
        InferShapes(),
        InferDatatypes(),
    )
