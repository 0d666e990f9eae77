"""Lowering steps the backends share: cleanup, Gemm -> MatMul, channels-last, op checks.

hls4ml's ONNX frontend and FINN's QONNX step both want a qonnx-cleaned graph (unique
node names, folded constants, quantizers kept, canonical QONNX domains); hls4ml also
wants MatMul+Add instead of Gemm and channels-last tensors. Written once here so the
two backends lower the same IR the same way.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import helper
from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean

from codesign.backends.exact_affine import ExactAffineBeforeQuant
from codesign.errors import UnsupportedModelError
from codesign.ir.model import Model
from codesign.ir.quant import QONNX_DOMAIN
from codesign.passes.base import Pass, PassResult, QonnxPass, Sequential
from codesign.passes.datatypes import InferDatatypes


class QonnxCleanup(Pass):
    """qonnx ``cleanup_model`` (quantizers preserved): the form both toolflows read."""

    #: ``cleanup_model``'s list, with codesign's shape inference in place of qonnx's
    #: (qonnx's stand-in for a channels-last Conv is a full-size random tensor: minutes) and
    #: codesign's linear-time folding, parameter copies and datatype inference (qonnx's: quadratic).
    def call(self, model: Model) -> PassResult:
        from qonnx.transformation.quant_constant_folding import FoldTransposeIntoQuantInit

        from codesign.passes.fold import FoldConstantSubgraphs
        from codesign.passes.shapes import InferShapes
        from codesign.passes.tidy import RemoveStaticGraphInputs, RemoveUnusedTensors, UniqueParameterTensors

        keep = ["Quant", "BipolarQuant", "QuantizeLinear", "DequantizeLinear"]
        before = model.proto.SerializeToString()
        out = Sequential(
            InferShapes(),
            UniqueParameterTensors(),  # qonnx's GiveUniqueParameterTensors and FoldConstants, linear time
            FoldConstantSubgraphs(exclude=frozenset(keep)),
            QonnxPass(FoldTransposeIntoQuantInit()),
            RemoveUnusedTensors(),
            RemoveStaticGraphInputs(),
            CIdentifierNames(),
            ReadableTensorNames(),
            InferShapes(),
        )(model).model
        for node in out.graph.node:  # what cleanup_model's "temporary fix" does
            if node.op_type in ("Quant", "Trunc", "BipolarQuant"):
                node.domain = QONNX_DOMAIN
        return PassResult(out, out.proto.SerializeToString() != before)


class CIdentifierNames(Pass):
    """Node names that are C identifiers, keeping the user's (``/l1/Gemm`` -> ``l1_Gemm``).

    Both toolflows paste node names into generated C++/HLS; qonnx's ``GiveUniqueNodeNames``
    would make them legal by discarding them (``Gemm_0``), losing the user's layer names.
    """

    def call(self, model: Model) -> PassResult:
        taken: set[str] = set()
        modified = False
        for i, node in enumerate(model.graph.node):
            base = re.sub(r"[^0-9A-Za-z_]+", "_", node.name).strip("_") or f"{node.op_type}_{i}"
            if base[0].isdigit():
                base = f"{node.op_type}_{base}"
            name, k = base, 1
            while name.lower() in taken:
                name, k = f"{base}_{k}", k + 1
            taken.add(name.lower())
            if name != node.name:
                node.name, modified = name, True
        model.invalidate()
        return PassResult(model, modified)


#: qonnx ``SortCommutativeInputsInitializerLast``'s ops
_COMMUTATIVE = frozenset({"Add", "Mul", "And", "Or", "Xor", "Sum"})


def _initializers_last(g: onnx.GraphProto) -> None:
    """qonnx's ``SortCommutativeInputsInitializerLast`` (constants after dynamic inputs, each group in order),
    with one set of initializer names instead of a scan per input."""
    inits = {t.name for t in g.initializer}
    for node in g.node:
        if node.op_type in _COMMUTATIVE:
            ordered = [i for i in node.input if i not in inits] + [i for i in node.input if i in inits]
            node.input[:] = ordered


class ReadableTensorNames(Pass):
    """qonnx's ``GiveReadableTensorNames`` (``NODE_outK``, ``NODE_paramK``, ``global_in``/``global_out``) in one sweep.

    qonnx renames tensor by tensor, each rename a scan of the whole graph: a 2,000-node chain
    took minutes. Here the same sequence of renames is replayed on a name map, applied once.
    """

    def call(self, model: Model) -> PassResult:
        before = model.proto.SerializeToString()
        _sort_like_qonnx(model.graph)  # what qonnx's rename step runs first (ModelWrapper.cleanup), in linear time
        _initializers_last(model.graph)
        g = model.graph
        refs = [*g.input, *g.output, *g.value_info, *g.initializer]
        names = {x for n in g.node for x in (*n.input, *n.output) if x} | {r.name for r in refs}
        names |= {a.tensor_name for a in g.quantization_annotation}
        now = {x: x for x in names}  # original name -> current name
        members: dict[str, set[str]] = {x: {x} for x in names}  # current name -> original names
        inits = {t.name for t in g.initializer}

        def rename(old: str, new: str) -> None:  # ModelWrapper.rename_tensor, on the map
            if old == new or old not in members:
                return
            moved = members.pop(old)
            for x in moved:
                now[x] = new
            members.setdefault(new, set()).update(moved)

        for i, x in enumerate([*(v.name for v in g.value_info), *(v.name for v in g.input),
                               *(v.name for v in g.output)]):  # fmt: skip
            rename(x, f"tensor_{i}")  # GiveUniqueTensorNames first, as qonnx does (a name listed twice keeps the first)
        for node in g.node:
            if not node.name:
                raise UnsupportedModelError(f"unnamed {node.op_type} node reached tensor naming")
            for k, o in enumerate(node.output):
                if o:
                    rename(now[o], f"{node.name}_out{k}")
            k = 0
            for x in node.input:
                if x and members.get(now[x], set()) & inits:
                    rename(now[x], f"{node.name}_param{k}")
                    k += 1
        for prefix, coll in (("global_in", g.input), ("global_out", g.output)):
            for i, v in enumerate(coll):
                rename(now[v.name], prefix if i == 0 else f"{prefix}_{i}")
        for r in refs:
            r.name = now[r.name]
        for a in g.quantization_annotation:
            a.tensor_name = now[a.tensor_name]
        for node in g.node:
            node.input[:] = [now[x] if x else x for x in node.input]
            node.output[:] = [now[x] if x else x for x in node.output]
        model.invalidate()
        return PassResult(model, model.proto.SerializeToString() != before)


def _sort_like_qonnx(graph: onnx.GraphProto) -> None:
    """qonnx's ``SortGraph`` order (``toposort_flatten``: level by level, each sorted) in linear time."""
    nodes = list(graph.node)
    if len(nodes) < 2:
        return
    producer: dict[str, int] = {}
    for k, n in enumerate(nodes):
        for o in n.output:
            producer.setdefault(o, k)
    known = {t.name for t in graph.initializer} | {i.name for i in graph.input}
    deps: dict[int, set[int]] = {}
    for k, n in enumerate(nodes):
        preds = {producer[x] for x in n.input if x in producer}
        if preds or any(x in known for x in n.input):
            deps[k] = preds
    for k, d in list(deps.items()):
        d.discard(k)
        for p in d:
            deps.setdefault(p, set())
    waiting = {k: len(d) for k, d in deps.items()}
    users: dict[int, list[int]] = {}
    for k, d in deps.items():
        for p in d:
            users.setdefault(p, []).append(k)
    order: list[int] = []
    level = sorted(k for k, w in waiting.items() if w == 0)
    while level:
        order += level
        ready = []
        for k in level:
            for u in users.get(k, []):
                waiting[u] -= 1
                if not waiting[u]:
                    ready.append(u)
        level = sorted(ready)
    del graph.node[:]
    graph.node.extend(nodes[k] for k in order)


class GemmToMatMul(Pass):
    """Gemm -> MatMul (+ Add) (hls4ml's ONNX frontend has no Gemm handler), keeping the Gemm's name.

    The rewrite is ``codesign.passes.clean.GemmToMatMul`` (which also handles Gemm
    without bias); names are kept so per-layer options can use the user's layer names.
    """

    def call(self, model: Model) -> PassResult:
        from codesign.passes.clean import GemmToMatMul as _Clean

        gemm_of = {n.output[0]: n.name for n in model.nodes_of(["Gemm"])}
        result = _Clean()(model)
        _keep_gemm_names(result.model, gemm_of)
        return result


def _keep_gemm_names(model: Model, gemm_of: dict[str, str]) -> None:
    """The MatMul keeps the Gemm's name, its bias Add gets ``<name>_bias``: users' layer names survive."""
    for node in model.graph.node:
        name = gemm_of.get(node.output[0])
        if name is None:
            continue
        mm = model.producer(node.input[0]) if node.op_type == "Add" else None
        if mm is not None and mm.op_type == "MatMul":
            mm.name, node.name = name, f"{name}_bias"
        elif node.op_type == "MatMul":
            node.name = name
    model.invalidate()


#: Ops whose layout matters; graphs without them (MLPs) need no channels-last rewrite.
SPATIAL_OPS = frozenset({"Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Resize", "Pad"})


class ChannelsLast(Pass):
    """qonnx ``ConvertToChannelsLastAndClean`` (input made channels-last too), for spatial graphs only.

    An MLP on a 3-D/4-D input would otherwise gain an input Transpose that hls4ml drops
    together with its input edge.
    """

    def call(self, model: Model) -> PassResult:
        if not any(n.op_type in SPATIAL_OPS and n.domain in ("", "ai.onnx") for n in model.graph.node):
            return PassResult(model, False)
        try:  # the project's pass: qonnx's conversion plus its failure cases (forks, conv bias)
            from codesign.passes.clean import ToChannelsLast

            return ToChannelsLast(make_input_channels_last=True, check=False)(model)
        except ImportError:  # pragma: no cover
            return QonnxPass(ConvertToChannelsLastAndClean(make_input_channels_last=True), max_iterations=1)(model)


class ExplicitDefaults(Pass):
    """Spell out attributes ONNX lets exporters omit: Transpose ``perm``, Conv/pool ``pads`` etc.

    hls4ml's Transpose handler and qonnx's channels-last wrappers read these attributes
    and fail when they are absent; their ONNX defaults are written so nothing changes.
    """

    def call(self, model: Model) -> PassResult:
        modified = False
        for node in model.graph.node:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            shape = model.shape(node.input[0]) if node.input else None
            if node.op_type == "Transpose" and "perm" not in attrs:
                if shape is None:
                    raise UnsupportedModelError(f"Transpose {node.name} has no perm and an unknown input shape")
                node.attribute.append(helper.make_attribute("perm", list(reversed(range(len(shape))))))
                modified = True
            elif node.op_type in ("Conv", "MaxPool", "AveragePool") and node.domain in ("", "ai.onnx") and shape:
                modified |= _explicit_window(model, node, attrs, shape)
        return PassResult(model, modified)


def _explicit_window(model: Model, node: onnx.NodeProto, attrs: dict, shape: tuple[int, ...]) -> bool:
    nsp = len(shape) - 2
    kernel = attrs.get("kernel_shape")
    if kernel is None and node.op_type == "Conv":
        w = model.shape(node.input[1])
        kernel = list(w[2:]) if w else None
    if kernel is None or nsp < 1:
        return False
    strides = list(attrs.get("strides", [1] * nsp))
    dil = list(attrs.get("dilations", [1] * nsp))
    new: dict[str, list[int]] = {}
    if "kernel_shape" not in attrs:
        new["kernel_shape"] = list(kernel)
    if "strides" not in attrs:
        new["strides"] = strides
    if node.op_type == "Conv" and "dilations" not in attrs:
        new["dilations"] = dil
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if "pads" not in attrs:
        begin, end = [0] * nsp, [0] * nsp
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            for i in range(nsp):
                size = shape[2 + i]
                total = max((-(-size // strides[i]) - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - size, 0)
                small, big = total // 2, total - total // 2
                begin[i], end[i] = (small, big) if auto == "SAME_UPPER" else (big, small)
        new["pads"] = begin + end
    group = node.op_type == "Conv" and "group" not in attrs  # FINN's LowerConvsToMatMul reads it
    if not new and not group and auto in ("NOTSET", None):
        return False
    for a in list(node.attribute):
        if a.name == "auto_pad":
            node.attribute.remove(a)
    for key, value in new.items():
        node.attribute.append(helper.make_attribute(key, [int(v) for v in value]))
    if group:
        node.attribute.append(helper.make_attribute("group", 1))
    return True


def replace_node(model: Model, node: onnx.NodeProto, new: list[onnx.NodeProto]) -> None:
    """``new`` where ``node`` was (topological order kept); the model's caches invalidated."""
    from codesign.passes.graph_edit import replace_nodes

    replace_nodes(model, [node], new)


class AveragePoolAsDepthwiseConv(Pass):
    """AveragePool (no padding) -> a depthwise Conv with constant ``1/window`` weights.

    qonnx 1.0's channels-last conversion has no AveragePool, and hls4ml's ONNX frontend
    takes pools only channels-last; the depthwise Conv is converted by both. Same
    arithmetic (exact for power-of-two windows, whose ``1/window`` is a fixed-point number).
    """

    def call(self, model: Model) -> PassResult:
        modified = False
        for node in list(model.nodes_of(["AveragePool"])):
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            shape = model.shape(node.input[0])
            kernel = list(attrs.get("kernel_shape", []))
            if node.domain not in ("", "ai.onnx") or shape is None or len(shape) not in (3, 4) or not kernel:
                continue
            if (
                any(attrs.get("pads", []))
                or attrs.get("ceil_mode", 0)
                or any(d != 1 for d in attrs.get("dilations", []))
            ):
                continue
            channels = int(shape[1])
            weight = np.full((channels, 1, *kernel), 1.0 / float(np.prod(kernel)), dtype=np.float32)
            wname = f"{node.name}_weight"
            model.set_initializer(wname, weight)
            conv = helper.make_node(
                "Conv", [node.input[0], wname], list(node.output), name=node.name, group=channels,
                kernel_shape=kernel, strides=list(attrs.get("strides", [1] * len(kernel))),
                pads=[0] * (2 * len(kernel)), dilations=[1] * len(kernel),
            )  # fmt: skip
            replace_node(model, node, [conv])
            modified = True
        return PassResult(model, modified)


class TruncAsQuants(Pass):
    """Trunc (Brevitas' TruncAvgPool) with power-of-two scales and zero point 0 -> power-of-two Quants.

    v2 (x, scale, zeropt, in bits, out scale, out bits): ``round(x / s)`` is a ROUND Quant on
    ``s``'s grid, the truncation a Quant with the output scale (``s`` times a power of two),
    ``out bits`` and the Trunc's rounding mode. v1 (x, scale, zeropt, in bits, out bits) does
    not clamp and rescales by ``s``: the Quants get spare bits and a Mul by ``2**-(in - out)``
    follows (qonnx's trunc_v1/v2). Other Truncs are left for the refusal naming them.
    """

    def call(self, model: Model) -> PassResult:
        modified = False
        for node in list(model.nodes_of(["Trunc"])):
            params = [model.constant(t) for t in node.input[1:]]
            if len(node.input) not in (5, 6) or any(v is None or np.size(v) != 1 for v in params):
                continue
            s, z, in_bits = (float(np.asarray(v).ravel()[0]) for v in params[:3])
            v2 = len(node.input) == 6
            out_s = (
                float(np.asarray(params[3]).ravel()[0]) if v2 else s * 2.0 ** (in_bits - float(params[3].ravel()[0]))
            )
            if z != 0 or not _pow2_scalar(np.array([s])) or not _pow2_scalar(np.array([out_s / s])):
                continue
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            mode = attrs.get("rounding_mode", "FLOOR")
            mode = (mode.decode() if isinstance(mode, bytes) else str(mode)).upper()
            signed, narrow = (int(attrs.get("signed", 1)), int(attrs.get("narrow", 0))) if v2 else (1, 0)
            spare = 0 if v2 else 2  # v1 never clamps
            out_bits = float(np.asarray(params[-1]).ravel()[0])
            consts = {
                "in_bits": in_bits + spare,
                "out_scale": out_s,
                "out_bits": out_bits + spare,
                "unscale": s / out_s,
            }
            names = {k: f"{node.name}_{k}" for k in consts}
            for k, v in consts.items():
                model.set_initializer(names[k], np.asarray(v, dtype=np.float32))
            mid, out = f"{node.output[0]}_rounded", node.output[0] if v2 else f"{node.output[0]}_codes"
            new = [
                helper.make_node("Quant", [node.input[0], node.input[1], node.input[2], names["in_bits"]], [mid],
                                 name=f"{node.name}_round", domain=QONNX_DOMAIN, signed=signed, narrow=0,
                                 rounding_mode="ROUND"),
                helper.make_node("Quant", [mid, names["out_scale"], node.input[2], names["out_bits"]], [out],
                                 name=node.name, domain=QONNX_DOMAIN, signed=signed, narrow=narrow,
                                 rounding_mode=mode),
            ]  # fmt: skip
            if not v2:
                new.append(
                    helper.make_node("Mul", [out, names["unscale"]], list(node.output), name=f"{node.name}_rescale")
                )
            replace_node(model, node, new)
            modified = True
        return PassResult(model, modified)


def _pow2_scalar(value: np.ndarray) -> bool:
    flat = np.unique(np.asarray(value, dtype=np.float64).ravel())
    return flat.size == 1 and flat[0] > 0 and np.frexp(flat[0])[0] == 0.5


class ExtractWeightScale(Pass):
    """MatMul/Conv(x, Quant(W, s)) with a per-channel or non-power-of-two ``s`` -> Mul(MatMul(x, Quant(W/s, 1)), s).

    BipolarQuant weights too (Brevitas' SignedBinaryWeightPerTensorConst: +-0.1). A Conv's
    bias input becomes an Add after the Mul.

    hls4ml only keeps power-of-two scales inside fixed-point weights; moving the scale
    behind the MatMul leaves it integer weights plus one per-output-channel multiply
    (an ApplyAlpha it can fuse with a following BatchNorm). Exact up to float rounding.
    """

    def call(self, model: Model) -> PassResult:
        modified = False
        for mm in list(model.nodes_of(["MatMul", "Conv"])):
            row = self._channel_scale(model, mm)
            if row is None:
                continue
            quant = model.producer(mm.input[1])
            w = model.initializer(quant.input[0])
            model.set_initializer(quant.input[0], (w / row.reshape(_weight_axes(mm, w))).astype(np.float32))
            one = f"{quant.name}_unit_scale"
            model.set_initializer(one, np.ones((), dtype=np.float32))
            quant.input[1] = one
            sname = f"{mm.name}_channel_scale"
            rank = w.ndim  # a Conv's output has its weight's rank; MatMul's is not used
            model.set_initializer(sname, row.reshape(_output_axes(mm, row, rank)).astype(np.float32))
            out = mm.output[0]
            mid = f"{out}_unscaled"
            mm.output[0] = mid
            new = [helper.make_node("Mul", [mid, sname], [out], name=f"{mm.name}_scale")]
            if mm.op_type == "Conv" and len(mm.input) > 2 and mm.input[2]:
                bias = model.constant(mm.input[2])
                bname = f"{mm.name}_moved_bias"
                model.set_initializer(bname, np.asarray(bias, np.float32).reshape(_output_axes(mm, bias, rank)))
                new = [helper.make_node("Mul", [mid, sname], [f"{out}_scaled"], name=f"{mm.name}_scale"),
                       helper.make_node("Add", [f"{out}_scaled", bname], [out], name=f"{mm.name}_bias")]  # fmt: skip
                del mm.input[2]
            idx = list(model.graph.node).index(mm)
            for k, node in enumerate(new):
                model.graph.node.insert(idx + 1 + k, node)
            model.invalidate()
            modified = True
        if modified:
            model.graph.ClearField("value_info")
            from codesign.passes.shapes import infer_shapes

            infer_shapes(model)
        return PassResult(model, modified)

    @staticmethod
    def _channel_scale(model: Model, mm: onnx.NodeProto) -> np.ndarray | None:
        """The weight quantizer's scale as a scalar or one value per output channel; None: nothing to extract."""
        quant = model.producer(mm.input[1])
        if quant is None or quant.op_type not in ("Quant", "BipolarQuant") or model.initializer(quant.input[0]) is None:
            return None
        scale = model.initializer(quant.input[1])
        zero = model.initializer(quant.input[2]) if quant.op_type == "Quant" else np.zeros(1, dtype=np.float32)
        w = model.initializer(quant.input[0])
        if scale is None or zero is None or np.any(zero != 0) or _pow2_scalar(scale) or np.any(scale <= 0):
            return None
        if len(model.consumers(mm.input[1])) != 1:
            return None
        if mm.op_type == "MatMul" and w.ndim != 2:
            return None
        if mm.op_type == "Conv" and (
            w.ndim < 3 or (len(mm.input) > 2 and mm.input[2] and model.constant(mm.input[2]) is None)
        ):
            return None
        s, n_out = np.asarray(scale, dtype=np.float32), w.shape[1] if mm.op_type == "MatMul" else w.shape[0]
        if s.size == 1:
            return s.reshape(())
        per_channel = (1, n_out) if mm.op_type == "MatMul" else (n_out,) + (1,) * (w.ndim - 1)
        if s.shape in (per_channel, (n_out,)):  # one scale per output channel
            return s.reshape(n_out)
        return None


def _weight_axes(mm: onnx.NodeProto, w: np.ndarray) -> tuple[int, ...]:
    """Shape that broadcasts a per-output-channel vector onto a MatMul (in, out) or Conv (out, in, k...) weight."""
    if mm.op_type == "MatMul":
        return (1, -1)
    return (-1,) + (1,) * (w.ndim - 1)


def _output_axes(mm: onnx.NodeProto, v: np.ndarray, rank: int) -> tuple[int, ...]:
    """Shape that broadcasts a per-output-channel vector onto the op's output (channels last for MatMul, axis 1 for Conv)."""
    if np.size(v) == 1:
        return ()
    if mm.op_type == "MatMul":
        return (1, -1)
    return (1, -1) + (1,) * (rank - 2)


class QuantizeTableInputs(Pass):
    """A saturating ``fixed<16,6>`` Quant (more integer bits if the logits' IR type needs them) before each
    Softmax not already fed by a quantizer.

    hls4ml's Softmax indexes its exp table with the top bits of its input type; an
    inferred accumulator type (``fixed<38,18>`` for a float Dense) maps every logit to one
    entry and the output is constant. The Quant pins the hardware's input type, and the
    reference comparison (``--verify``) reports the rounding it adds.
    """

    BITS, EXPONENT = 16, -10

    def call(self, model: Model) -> PassResult:
        from codesign.backends.precision import derive

        modified = False
        known = None
        for node in list(model.nodes_of(["Softmax"])):
            src = node.input[0]
            producer = model.producer(src)
            if producer is not None and producer.op_type in ("Quant", "BipolarQuant"):
                continue
            known = derive(model).tensors if known is None else known
            # integer bits for the logits' exact range when the IR pins it: saturating them makes ties
            t = known.get(src)
            bits = self.BITS + max(0, t.integer - (self.BITS + self.EXPONENT)) if t is not None else self.BITS
            base = f"{node.name}_input_quant"
            for suffix, value in (("scale", 2.0**self.EXPONENT), ("zeropt", 0.0), ("bits", float(bits))):
                model.wrapper.set_initializer(f"{base}_{suffix}", np.asarray(value, dtype=np.float32))
            quant = helper.make_node(
                "Quant", [src, f"{base}_scale", f"{base}_zeropt", f"{base}_bits"], [f"{base}_out"], name=base,
                domain=QONNX_DOMAIN, signed=1, narrow=0, rounding_mode="ROUND",
            )  # fmt: skip
            node.input[0] = f"{base}_out"
            model.graph.node.insert(list(model.graph.node).index(node), quant)
            model.invalidate()
            modified = True
        if modified:
            from codesign.passes.shapes import infer_shapes

            infer_shapes(model)
        return PassResult(model, modified)


def lower_for_hls4ml() -> Sequential:
    """IR -> the graph codesign's hls4ml layer builders read (cleaned, MatMul, channels-last)."""
    from codesign.backends.decompose import ConvTransposeAsPhases, GroupedConvAsDense, HardSwishAsHardSigmoidMul
    from codesign.backends.integer_codes import IntegerCodes
    from codesign.backends.last_axis import FeatureStatistics
    from codesign.backends.layout import ChannelsLastLayout
    from codesign.backends.linear_resize import LinearResizeAsNearestAndConv
    from codesign.backends.reduce_as_pool import ReduceAsGlobalPool
    from codesign.backends.slice_as_select import SliceAsOneHotSelect

    return Sequential(
        QonnxCleanup(),
        TruncAsQuants(),
        GemmToMatMul(),
        GroupedConvAsDense(),
        ExtractWeightScale(),
        HardSwishAsHardSigmoidMul(),
        ConvTransposeAsPhases(),
        LinearResizeAsNearestAndConv(),
        SliceAsOneHotSelect(),
        FeatureStatistics(),
        IntegerCodes(),
        ExplicitDefaults(),
        ReduceAsGlobalPool(),
        AveragePoolAsDepthwiseConv(),
        QuantizeTableInputs(),
        ExactAffineBeforeQuant(),
        QonnxCleanup(),
        ExplicitDefaults(),
        InferDatatypes(),
        ChannelsLastLayout(),
    )


def lower_for_finn() -> Sequential:
    """IR -> the QONNX graph FINN's ``step_qonnx_to_finn`` reads (FINN does its own layout)."""
    return Sequential(QonnxCleanup(), ExplicitDefaults(), InferDatatypes())


#: Float32 activations of one sample, all tensors together: qonnx's executor (constant folding
#: included) allocates every tensor of the graph at once, so a 2**40-wide input dim is refused here.
DEFAULT_MAX_ACTIVATION_BYTES = 1 << 30


def max_activation_bytes() -> int:
    """The activation limit in bytes (``CODESIGN_MAX_ACTIVATION_BYTES`` overrides the default)."""
    raw = os.environ.get("CODESIGN_MAX_ACTIVATION_BYTES", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_MAX_ACTIVATION_BYTES


def refuse_oversized(model: Model, backend: str) -> None:
    """Refuse, naming the largest tensor, a model whose activations of one sample exceed the limit."""
    from codesign.passes.shapes import activation_sizes

    sizes = activation_sizes(model)
    total, limit = 4 * sum(sizes.values()), max_activation_bytes()
    if total > limit:
        big = max(sizes, key=sizes.__getitem__)
        raise UnsupportedModelError(
            f"cannot compile for {backend}: activations of one sample take {total / 2**30:,.1f} GiB as float32 "
            f"(largest: {big!r} of shape {model.shape(big)}), over the {limit / 2**30:g} GiB limit "
            "(CODESIGN_MAX_ACTIVATION_BYTES)"
        )


def lower(model: Model, steps: Sequential, backend: str) -> Model:
    """Run ``steps`` (after :func:`refuse_oversized`); a toolflow crash becomes one line naming the backend."""
    refuse_oversized(model, backend)
    try:
        return steps(model).model
    except UnsupportedModelError:
        raise
    except Exception as exc:  # qonnx transformations assert on graphs they cannot take
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UnsupportedModelError(
            f"cannot lower the model for {backend}: {type(exc).__name__}: {first[:200]}"
        ) from exc


def refuse_unsupported(model: Model, supported: Iterable[str], backend: str, why: dict[str, str] | None = None) -> None:
    """Raise one :class:`UnsupportedModelError` naming every op ``backend`` cannot express."""
    allowed = set(supported)
    bad: dict[str, list[str]] = {}
    for node in model.graph.node:
        if node.op_type not in allowed:
            bad.setdefault(node.op_type, []).append(node.name)
    if not bad:
        return
    parts = []
    for op, names in sorted(bad.items()):
        reason = f" ({why[op]})" if why and op in why else ""
        parts.append(f"{op}{reason} at {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}")
    raise UnsupportedModelError(f"{backend} cannot express op{'s' if len(bad) > 1 else ''} {'; '.join(parts)}")


__all__ = [
    "AveragePoolAsDepthwiseConv",
    "ChannelsLast",
    "ExplicitDefaults",
    "ExtractWeightScale",
    "GemmToMatMul",
    "QonnxCleanup",
    "lower",
    "lower_for_finn",
    "lower_for_hls4ml",
    "refuse_unsupported",
]
