"""QDQ / QCDQ graphs (QuantizeLinear, optional Clip, DequantizeLinear) become QONNX ``Quant``.

onnxruntime/TensorRT-style exporters and MLPerf Tiny submissions write int8 QDQ. qonnx's
``QCDQToQuant`` does the fusion; this pass first brings the graph into the form it
handles (its bit-width rules are reused; the fusion itself is a linear sweep here) and fixes what it misses: a missing zero point becomes the spec's
(zero, of the quantized type), negative or per-tensor ``axis`` is resolved, initializers
get value_info (a lone DequantizeLinear on an int8 weight), and afterwards every Quant
parameter (uint8/int32 zero points, int weights) is float32 as QONNX requires.
Rounding agrees: QuantizeLinear and Quant(ROUND) both round half to even.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper, numpy_helper
from qonnx.transformation.qcdq_to_qonnx import extract_elem_type

from codesign.errors import UnsupportedModelError
from codesign.ir.model import Model
from codesign.ir.names import uniquify
from codesign.ir.quant import QONNX_DOMAIN
from codesign.passes.base import Pass, PassResult
from codesign.passes.shapes import infer_shapes

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
_INT_TYPES = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT16, onnx.TensorProto.UINT16,
              onnx.TensorProto.INT32, onnx.TensorProto.UINT32}  # fmt: skip


def _attr(node: onnx.NodeProto, name: str) -> onnx.AttributeProto | None:
    return next((a for a in node.attribute if a.name == name), None)


def _elem_type(model: Model, name: str) -> int | None:
    init = (
        next((t for t in model.graph.initializer if t.name == name), None)
        if model.initializer(name) is not None
        else None
    )
    if init is not None:
        return init.data_type
    vi = model._value_infos().get(name)
    return vi.type.tensor_type.elem_type if vi is not None else None


def _prepare(model: Model) -> None:
    """Make every Q/DQ node explicit: zero point present, axis non-negative or absent."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    taken = _taken(model)
    for node in [n for n in g.node if n.op_type in QDQ_OPS]:
        block = _attr(node, "block_size")
        if block is not None and block.i > 0:
            raise UnsupportedModelError(
                f"node {node.name!r} ({node.op_type}): blocked quantization (block_size) is not supported"
            )
        if len(node.input) < 2 or not node.input[1]:
            raise UnsupportedModelError(f"node {node.name!r} ({node.op_type}): missing scale input")
        if len(node.input) < 3 or not node.input[2]:
            if node.op_type == "DequantizeLinear":
                elem = inits[node.input[0]].data_type if node.input[0] in inits else _elem_type(model, node.input[0])
            else:
                out_dt = _attr(node, "output_dtype")
                elem = out_dt.i if out_dt is not None and out_dt.i else onnx.TensorProto.UINT8
            if elem not in _INT_TYPES:
                raise UnsupportedModelError(
                    f"node {node.name!r} ({node.op_type}): quantized type {elem} is not an integer type"
                )
            scale = model.initializer(node.input[1])
            zp_name = uniquify(f"{node.name or node.output[0]}_zero_point", taken)
            zp = np.zeros(scale.shape if scale is not None else (), dtype=helper.tensor_dtype_to_np_dtype(elem))
            tensor = numpy_helper.from_array(zp, zp_name)
            g.initializer.append(tensor)
            inits[zp_name] = tensor
            while len(node.input) < 3:
                node.input.append("")
            node.input[2] = zp_name
        axis = _attr(node, "axis")
        scale = model.initializer(node.input[1])
        if axis is None and scale is not None and scale.ndim == 1 and scale.size > 1:
            axis = helper.make_attribute("axis", 1)  # the spec's default axis for per-channel
            node.attribute.append(axis)
            axis = _attr(node, "axis")
        if axis is not None and scale is not None and scale.size <= 1 and scale.ndim <= 1:
            node.attribute.remove(axis)  # per-tensor: qonnx would reshape a scalar along the axis
            if scale.ndim == 1:
                inits[node.input[1]].CopyFrom(numpy_helper.from_array(scale.reshape(()), node.input[1]))
        elif axis is not None and axis.i < 0:
            shape = model.shape(node.input[0])
            if shape is None:
                raise UnsupportedModelError(
                    f"node {node.name!r} ({node.op_type}): negative axis on a tensor of unknown rank"
                )
            axis.i += len(shape)
    known = {vi.name for vi in g.value_info} | {vi.name for vi in g.input}
    g.value_info.extend(
        helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in g.initializer if t.name not in known
    )
    model.invalidate()


def _taken(model: Model) -> set[str]:
    """Every tensor and node name in the graph (for :func:`uniquify`), built once per sweep."""
    g = model.graph
    taken = {t.name for t in g.initializer} | {v.name for v in (*g.input, *g.output, *g.value_info)}
    for n in g.node:
        taken.update((n.name, *n.input, *n.output))
    return taken


def _bits_signed(elem: int) -> tuple[int, int]:
    dt = helper.tensor_dtype_to_np_dtype(elem)
    return 8 * dt.itemsize, int(np.issubdtype(dt, np.signedinteger))


def _lone_weight_dequantizers(model: Model) -> int:
    """DequantizeLinear of an integer initializer -> Quant of its float value (per-tensor or per-channel).

    qonnx's fusion broadcasts a per-channel scale against the weight's last axis; here scale
    and zero point are reshaped along ``axis`` first. The float weight lies on the Quant grid,
    so the Quant reproduces it exactly.
    """
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    nodes = list(g.node)  # held: ids below stay unique while these references live
    taken = _taken(model)
    swaps: dict[int, onnx.NodeProto] = {}
    for node in nodes:
        if (
            node.op_type != "DequantizeLinear"
            or node.input[0] not in inits
            or inits[node.input[0]].data_type not in _INT_TYPES
        ):
            continue
        q, scale, zp = (model.initializer(i) for i in node.input[:3])
        if scale is None or zp is None:
            continue
        bshape = [1] * q.ndim
        axis = _attr(node, "axis")
        if scale.size > 1:
            bshape[axis.i if axis is not None else 1] = scale.size
            scale, zp = scale.reshape(bshape), zp.reshape(bshape)
        else:
            scale, zp = scale.reshape(()), zp.reshape(())
        bits, signed = _bits_signed(inits[node.input[0]].data_type)
        weight = ((q.astype(np.float64) - zp.astype(np.float64)) * scale.astype(np.float64)).astype(np.float32)
        base = node.name or node.output[0]
        names = [uniquify(f"{base}_{k}", taken) for k in ("w", "scale", "zero_point", "bits")]
        values = [weight, scale.astype(np.float32), zp.astype(np.float32), np.array(bits, dtype=np.float32)]
        g.initializer.extend(numpy_helper.from_array(v, n) for v, n in zip(values, names))
        quant = helper.make_node("Quant", names, [node.output[0]], name=base, domain=QONNX_DOMAIN,
                                 signed=signed, narrow=0, rounding_mode="ROUND")  # fmt: skip
        swaps[id(node)] = quant
    if swaps:
        nodes = [swaps.get(id(n), n) for n in nodes]
        g.ClearField("node")
        g.node.extend(nodes)
        _ensure_qonnx_opset(model.proto)
        model.invalidate()
    return len(swaps)


def _ensure_qonnx_opset(proto: onnx.ModelProto) -> None:
    if not any(o.domain == QONNX_DOMAIN for o in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid(QONNX_DOMAIN, 1))


def _quant_range(lo: int, hi: int, signed: int) -> tuple[int, int]:
    """The integer range qonnx's fusion gives a Clip(lo, hi) between Q and DQ."""
    bits = max(1, math.ceil(math.log2(hi - lo + 1)))
    narrow = int(lo == -hi)
    return (-(2 ** (bits - 1)) + narrow, 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1 - narrow)


def _float_clips(model: Model) -> None:
    """A Clip between Q and DQ whose bounds are not a Quant range moves after the DQ, in floats.

    qonnx turns Clip(-100, 100) into an 8-bit narrow Quant ([-127, 127]): wrong. Clamping
    commutes with the monotonic dequantisation, so Q -> DQ -> Clip((lo-zp)s, (hi-zp)s) is exact.
    """
    g = model.graph
    taken: set[str] | None = None
    for clip in [n for n in g.node if n.op_type == "Clip"]:
        q, users = model.producer(clip.input[0]), model.consumers(clip.output[0])
        if q is None or q.op_type != "QuantizeLinear" or len(users) != 1 or users[0].op_type != "DequantizeLinear":
            continue
        bounds = [model.initializer(i) if len(clip.input) > k and i else None for k, i in enumerate(clip.input[1:3], 1)]
        dq, zp_t = users[0], model.initializer(q.input[2])
        if any(b is None for b in bounds) or zp_t is None:
            continue
        lo, hi = (int(b.reshape(-1)[0]) for b in bounds)
        if (
            hi > lo
            and lo <= 0 < hi
            and _quant_range(lo, hi, int(np.issubdtype(zp_t.dtype, np.signedinteger))) == (lo, hi)
        ):
            continue
        scale, zp = model.initializer(dq.input[1]), model.initializer(dq.input[2])
        if scale is None or zp is None or scale.size != 1:
            raise UnsupportedModelError(
                f"node {clip.name!r} (Clip): bounds {lo}..{hi} between a per-channel Q/DQ pair are not supported"
            )
        s, z = float(scale.reshape(-1)[0]), float(zp.reshape(-1)[0])
        taken = taken if taken is not None else _taken(model)
        names = [uniquify(f"{clip.name}_min", taken), uniquify(f"{clip.name}_max", taken)]
        g.initializer.extend(numpy_helper.from_array(np.float32((v - z) * s), n) for v, n in zip((lo, hi), names))
        out = dq.output[0]
        dq.input[0] = clip.input[0]
        dq.output[0] = uniquify(f"{out}_unclipped", taken)
        float_clip = helper.make_node("Clip", [dq.output[0], *names], [out], name=clip.name)
        g.node.remove(clip)
        g.node.insert(list(g.node).index(dq) + 1, float_clip)
        model.invalidate()


#: Ops that only move elements: integer codes pass through them unchanged, a per-tensor quantizer commutes.
_MOVES = frozenset({"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity"})


def _dequantizers_through_moves(model: Model, tensor: str) -> list[onnx.NodeProto] | None:
    """The DequantizeLinear nodes reading ``tensor`` directly or through element-moving ops (tf2onnx puts a
    Transpose between an NHWC int8 input and its DequantizeLinear); None if anything else reads it."""
    found: list[onnx.NodeProto] = []
    for reader in model.consumers(tensor):
        if reader.op_type == "DequantizeLinear" and reader.input[0] == tensor:
            found.append(reader)
        elif reader.op_type in _MOVES and reader.input[0] == tensor and reader.output[0] not in model.outputs:
            more = _dequantizers_through_moves(model, reader.output[0])
            if not more:
                return None
            found += more
        else:
            return None
    return found


def _moves_out_of_pairs(model: Model) -> int:
    """QuantizeLinear -> Squeeze/Reshape/Transpose -> DequantizeLinear (tf2onnx's transpose optimiser) -> the move
    first, then the pair: a per-tensor quantizer commutes with ops that only move elements."""
    g = model.graph
    moved = 0
    for dq in [n for n in g.node if n.op_type == "DequantizeLinear"]:
        mid = model.producer(dq.input[0])
        q = model.producer(mid.input[0]) if mid is not None and mid.op_type in _MOVES and mid.input else None
        if q is None or q.op_type != "QuantizeLinear" or len(model.consumers(q.output[0])) != 1:
            continue
        if len(model.consumers(mid.output[0])) != 1:
            continue
        scale = model.initializer(q.input[1])
        if scale is None or scale.size != 1:
            continue
        x, q_out, mid_out = q.input[0], q.output[0], mid.output[0]
        mid.input[0], mid.output[0] = x, q_out  # x -> move -> (renamed) q_out
        q.input[0], q.output[0] = q_out, mid_out  # -> Q -> mid_out -> DQ
        nodes = [n for n in g.node if n is not mid]
        nodes.insert(nodes.index(q), mid)
        g.ClearField("node")
        g.node.extend(nodes)
        model.invalidate()
        moved += 1
    return moved


def _integer_ports(model: Model) -> int:
    """int8/uint8 graph inputs read by DequantizeLinear and outputs written by QuantizeLinear -> float ports of codes.

    Fully integer models (TFLite int8 converted by tf2onnx, MLPerf Tiny submissions) take and
    return integer codes. The port keeps those values as float: an input becomes
    ``Quant(x, 1, 0, bits)`` (the port's integer type) ``-> Sub(z) -> Mul(s)``, an output
    ``Div(r, s) -> Quant(., 1, z, bits) -> Add(z)``, which is QuantizeLinear's ``clip(round(r / s) + z)``.
    """
    g = model.graph
    taken = _taken(model)
    changed = 0

    def params(node: onnx.NodeProto, rank: int) -> tuple[str, str, int, int] | None:
        scale, zp = (model.initializer(i) for i in node.input[1:3])
        if scale is None or zp is None:
            return None
        shape: list[int] = []
        if scale.size > 1:
            axis = _attr(node, "axis")
            shape = [1] * rank
            shape[axis.i if axis is not None else 1] = scale.size
        bits, signed = _bits_signed(helper.np_dtype_to_tensor_dtype(zp.dtype))
        base = node.name or node.output[0]
        s_name, z_name = uniquify(f"{base}_port_scale", taken), uniquify(f"{base}_port_zero_point", taken)
        g.initializer.extend([numpy_helper.from_array(scale.astype(np.float32).reshape(shape), s_name),
                              numpy_helper.from_array(zp.astype(np.float32).reshape(shape), z_name)])  # fmt: skip
        return s_name, z_name, bits, signed

    def unit_quant(x: str, out: str, zero: str, bits: int, signed: int, base: str) -> onnx.NodeProto:
        names = [uniquify(f"{base}_{k}", taken) for k in ("unit", "no_zero", "bits")]
        g.initializer.extend(numpy_helper.from_array(np.float32(v), n) for v, n in zip((1.0, 0.0, bits), names))
        return helper.make_node("Quant", [x, names[0], zero or names[1], names[2]], [out], name=uniquify(base, taken),
                                domain=QONNX_DOMAIN, signed=signed, narrow=0, rounding_mode="ROUND")  # fmt: skip

    new_nodes: list[onnx.NodeProto] = []  # the input ports' Quants, first in the graph
    instead: dict[int, list[onnx.NodeProto]] = {}  # id(DQ/Q node) -> the nodes in its place
    for port in g.input:
        if port.type.tensor_type.elem_type not in _INT_TYPES:
            continue
        readers = _dequantizers_through_moves(model, port.name)
        if not readers:
            continue
        found = [params(r, len(model.shape(r.input[0]) or ())) for r in readers]
        if any(f is None for f in found):
            continue
        codes = uniquify(f"{port.name}_codes", taken)
        bits, signed = _bits_signed(port.type.tensor_type.elem_type)
        new_nodes.append(unit_quant(port.name, codes, "", bits, signed, f"{port.name}_port"))
        for reader in model.consumers(port.name):  # the codes, not the raw port, go on (moves keep them)
            reader.input[:] = [codes if i == port.name else i for i in reader.input]
        for dq, (s_name, z_name, _, _) in zip(readers, found):
            codes_in = dq.input[0]
            centred = uniquify(f"{dq.output[0]}_centred", taken)
            instead[id(dq)] = [helper.make_node("Sub", [codes_in, z_name], [centred], name=uniquify(f"{dq.name}_centre", taken)),
                               helper.make_node("Mul", [centred, s_name], [dq.output[0]], name=dq.name or uniquify("dq", taken))]  # fmt: skip
        port.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
        changed += 1
    for port in g.output:
        q = model.producer(port.name)
        if port.type.tensor_type.elem_type not in _INT_TYPES or q is None or q.op_type != "QuantizeLinear":
            continue
        found = params(q, len(port.type.tensor_type.shape.dim))
        if found is None or len(model.consumers(port.name)):
            continue
        s_name, z_name, bits, signed = found
        over, codes = uniquify(f"{port.name}_over_scale", taken), uniquify(f"{port.name}_centred_codes", taken)
        instead[id(q)] = [helper.make_node("Div", [q.input[0], s_name], [over], name=uniquify(f"{q.name}_divide", taken)),
                          unit_quant(over, codes, z_name, bits, signed, f"{q.name}_round"),
                          helper.make_node("Add", [codes, z_name], [port.name], name=q.name or uniquify("q", taken))]  # fmt: skip
        port.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
        changed += 1
    if changed:
        nodes = [m for n in g.node for m in instead.get(id(n), [n])]
        g.ClearField("node")
        g.node.extend(new_nodes + nodes)
        _ensure_qonnx_opset(model.proto)
        model.invalidate()
    return changed


def _fuse_pairs(model: Model) -> int:
    """QuantizeLinear [-> Clip] -> DequantizeLinear -> one Quant, in one linear sweep.

    qonnx's ``QCDQToQuant`` restarts its scan after every fusion (quadratic; and a pass
    capped at 100 iterations stops half-way on a large net); its bit-width/narrow rules
    (``extract_elem_type``) are reused as they are.
    """
    g = model.graph
    nodes = list(g.node)  # held: ids below stay unique while these references live
    taken = _taken(model)
    fused: dict[int, onnx.NodeProto] = {}  # id(DQ node) -> its Quant
    drop: set[int] = set()
    for dq in [n for n in nodes if n.op_type == "DequantizeLinear"]:
        chain = [model.producer(dq.input[0])]
        if chain[0] is not None and chain[0].op_type == "Clip":
            chain.append(model.producer(chain[0].input[0]))
        q = chain[-1]
        if q is None or q.op_type != "QuantizeLinear" or any(len(model.consumers(n.output[0])) != 1 for n in chain):
            continue
        params = [model.initializer(i) for i in (*q.input[1:3], *dq.input[1:3])]
        if (
            any(p is None for p in params)
            or params[0].shape != params[2].shape
            or not (np.array_equal(params[0], params[2]) and np.array_equal(params[1], params[3]))
        ):
            continue
        clip_range = None
        if len(chain) == 2:
            clip_range = tuple(model.initializer(i) for i in chain[0].input[1:3])
            if any(c is None for c in clip_range):
                continue
            clip_range = tuple(np.asarray(c).reshape(()) for c in clip_range)
        bits, signed, narrow = extract_elem_type(helper.np_dtype_to_tensor_dtype(params[1].dtype), clip_range)
        scale, zp = params[2].astype(np.float32), params[3].astype(np.float32)
        axis = _attr(dq, "axis")
        if scale.size > 1:
            shape = [1] * len(model.shape(q.input[0]))
            shape[axis.i if axis is not None else 1] = scale.size
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        base = dq.name or dq.output[0]
        names = [uniquify(f"{base}_{k}", taken) for k in ("scale", "zero_point", "bits")]
        g.initializer.extend(numpy_helper.from_array(v, n) for v, n in zip((scale, zp, np.float32(bits)), names))
        fused[id(dq)] = helper.make_node("Quant", [q.input[0], *names], [dq.output[0]], name=base, domain=QONNX_DOMAIN,
                                         signed=int(signed), narrow=int(narrow), rounding_mode="ROUND")  # fmt: skip
        drop.update(id(n) for n in chain)
    if not fused:
        return 0
    nodes = [fused.get(id(n), n) for n in nodes if id(n) not in drop]
    g.ClearField("node")
    g.node.extend(nodes)
    model.invalidate()
    return len(fused)


def _floats_for_quant(model: Model) -> None:
    """Every Quant input that is an integer initializer becomes float32 (QONNX parameters are float)."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    names = {i for n in g.node if n.op_type == "Quant" for i in n.input if i in inits}
    for name in names:
        t = inits[name]
        if t.data_type != onnx.TensorProto.FLOAT:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), name))
    for vi in g.value_info:
        if vi.name in names:
            vi.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    model.invalidate()


class QDQToQuant(Pass):
    """QuantizeLinear/Clip/DequantizeLinear chains and lone weight DequantizeLinear -> Quant."""

    def call(self, model: Model) -> PassResult:
        if not any(n.op_type in QDQ_OPS for n in model.graph.node):
            return PassResult(model, False)
        infer_shapes(model)
        _prepare(model)
        _lone_weight_dequantizers(model)
        _integer_ports(model)
        _moves_out_of_pairs(model)
        _float_clips(model)
        _fuse_pairs(model)
        _ensure_qonnx_opset(model.proto)
        _floats_for_quant(model)
        g = model.graph
        g.ClearField("value_info")  # int8 tensors are float now: re-infer from scratch
        infer_shapes(model)
        leftover = sorted({n.name for n in g.node if n.op_type in QDQ_OPS})
        if leftover:
            raise UnsupportedModelError(
                f"QuantizeLinear/DequantizeLinear not in a Q-DQ pair cannot become QONNX Quant (node {leftover[0]!r}"
                f"{f' +{len(leftover) - 1} more' if len(leftover) > 1 else ''})"
            )
        return PassResult(model, True)
