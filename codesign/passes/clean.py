"""Fold and clean passes: exact, function-preserving rewrites backends expect.

hls4ml wants MatMul+Add rather than Gemm, no Identity/Dropout, BatchNorm folded into
the layer before it; FINN wants channels-last. qonnx has most of these as
transformations; here they become codesign passes, with the cases where qonnx fails
(Gemm without bias, Conv with bias or branching graphs in channels-last) handled
first. Every pass returns a model whose reference execution equals its input's.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper
from qonnx.transformation.quant_constant_folding import FoldTransposeIntoQuantInit

from codesign.errors import UnsupportedModelError
from codesign.ir.model import Model
from codesign.passes.base import Pass, PassResult, QonnxPass, Sequential
from codesign.passes.graph_edit import (
    add_initializer,
    bypass,
    channel_shape,
    finish,
    insert_after,
    make_node,
    rename_tensor,
    replace_initializer,
    tidy,
)
from codesign.passes.normalize import FoldConstantSubgraphs

MAC_OPS = frozenset({"MatMul", "Gemm", "Conv"})


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _set_attr(node: onnx.NodeProto, name: str, value) -> None:
    for a in list(node.attribute):
        if a.name == name:
            node.attribute.remove(a)
    node.attribute.append(helper.make_attribute(name, value))


def _sole_consumer(model: Model, tensor: str, node: onnx.NodeProto) -> bool:
    cons = model.consumers(tensor)
    return len(cons) == 1 and cons[0] is node and tensor not in model.outputs


# --------------------------------------------------------------------- identity
class RemoveIdentity(Pass):
    """Drop Identity and inference-mode Dropout; with ``arithmetic``, x*1, x/1, x+0, x-0.

    Arithmetic neutrals are removed only when exactly neutral and when broadcasting the
    constant does not change the output shape, so the function is unchanged bit for bit.
    """

    def __init__(self, arithmetic: bool = True):
        self.arithmetic = arithmetic

    def _removable(self, model: Model, node: onnx.NodeProto) -> bool:
        if node.op_type == "Identity":
            return True
        if node.op_type == "Dropout":
            mask_used = len(node.output) > 1 and node.output[1] and model.consumers(node.output[1])
            training = model.initializer(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            return not mask_used and (training is None or not bool(training))
        if not self.arithmetic or node.op_type not in ("Mul", "Div", "Add", "Sub") or node.domain:
            return False
        const = model.initializer(node.input[1])
        if const is None or model.constant(node.input[0]) is not None:
            return False
        neutral = 1.0 if node.op_type in ("Mul", "Div") else 0.0
        x_shape, out_shape = model.shape(node.input[0]), model.shape(node.output[0])
        return bool(np.all(const == neutral)) and x_shape is not None and x_shape == out_shape

    def call(self, model: Model) -> PassResult:
        removed: list[str] = []
        for node in list(model.graph.node):
            if self._removable(model, node) and bypass(model, node):
                removed.append(node.name)
        return finish(model, bool(removed), {"removed": removed})


# --------------------------------------------------------------------- constants
class FoldConstantsPass(Pass):
    """Fold constant sub-graphs; weight quantizers are kept unless ``fold_quantizers``."""

    def __init__(self, fold_quantizers: bool = False):
        self.fold_quantizers = fold_quantizers

    def call(self, model: Model) -> PassResult:
        if self.fold_quantizers:
            from qonnx.transformation.fold_constants import FoldConstants

            result = QonnxPass(FoldConstants(exclude_op_types=[]))(model)
        else:
            result = FoldConstantSubgraphs()(model)
        return finish(result.model, result.modified)


# --------------------------------------------------------------------- Gemm
def _split_gemm(g: onnx.GraphProto, gemm: onnx.NodeProto, fresh) -> list[onnx.NodeProto]:
    """``Gemm`` -> [Transpose] MatMul [Mul alpha] + [Mul beta] C (constants added to ``g``)."""
    a, b, c = gemm.input[0], gemm.input[1], gemm.input[2]
    alpha, beta = float(_attr(gemm, "alpha", 1.0)), float(_attr(gemm, "beta", 1.0))
    new: list[onnx.NodeProto] = []

    def add(op: str, inputs: list[str], out: str | None = None) -> str:
        out = out or fresh(f"{gemm.name}_{op.lower()}_out")
        new.append(helper.make_node(op, inputs, [out], name=fresh(f"{gemm.name}_{op.lower()}")))
        return out

    def const(value: float, what: str) -> str:
        name = fresh(f"{gemm.name}_{what}")
        g.initializer.append(onnx.numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    if int(_attr(gemm, "transA", 0)):
        a = add("Transpose", [a])
    if int(_attr(gemm, "transB", 0)):
        b = add("Transpose", [b])
    y = add("MatMul", [a, b])
    if alpha != 1.0:
        y = add("Mul", [y, const(alpha, "alpha")])
    if beta != 1.0:
        c = add("Mul", [c, const(beta, "beta")])
    add("Add", [y, c], gemm.output[0])
    return new


def _split_gemms(model: Model, gemms: list[onnx.NodeProto]) -> None:
    """Every ``Gemm`` split in one sweep (qonnx's ``GemmToMatMul`` converts one Gemm per pass and re-runs
    shape inference and cleanup after each: quadratic)."""
    from codesign.ir.names import uniquify

    g = model.graph
    taken = {t.name for t in g.initializer} | {v.name for c in (g.input, g.output, g.value_info) for v in c}
    taken |= {x for n in g.node for x in (n.name, *n.input, *n.output)}

    def fresh(base: str) -> str:
        name = uniquify(base, taken)
        taken.add(name)
        return name

    nodes = list(g.node)
    for gemm in gemms:
        k = nodes.index(gemm)
        nodes[k : k + 1] = _split_gemm(g, gemm, fresh)
    del g.node[:]
    g.node.extend(nodes)
    model.invalidate()


class GemmToMatMul(Pass):
    """qonnx ``GemmToMatMul`` (MatMul + Add), plus the cleanup it leaves undone.

    qonnx fails on Gemm without its optional C input and leaves Transpose-of-weight,
    Mul-by-alpha/beta and unnamed nodes behind; those are handled here.
    """

    def call(self, model: Model) -> PassResult:
        gemms = model.nodes_of(["Gemm"])
        if not gemms:
            return PassResult(model, False)
        for node in gemms:
            if len(node.input) < 3 or not node.input[2]:
                out_shape = model.shape(node.output[0])
                n_out = out_shape[-1] if out_shape else 1
                zero = add_initializer(model, f"{node.name}_zero_bias", np.zeros((n_out,), dtype=np.float32))
                while len(node.input) < 3:
                    node.input.append("")
                node.input[2] = zero
        _split_gemms(model, gemms)
        model = Sequential(tidy(), FoldConstantSubgraphs(), QonnxPass(FoldTransposeIntoQuantInit()))(model).model
        model = RemoveIdentity(arithmetic=True)(tidy()(model).model).model
        return PassResult(model, True, {"converted": [n.name for n in gemms]})


# --------------------------------------------------------------------- BatchNorm
@dataclass
class _Affine:
    """BatchNorm as y = a * x + b per channel (axis 1)."""

    a: np.ndarray
    b: np.ndarray


def _bn_affine(model: Model, bn: onnx.NodeProto) -> _Affine | None:
    params = [model.initializer(i) for i in bn.input[1:5]]
    if any(p is None for p in params):
        return None
    scale, bias, mean, var = (np.asarray(p, dtype=np.float64).reshape(-1) for p in params)
    eps = float(_attr(bn, "epsilon", 1e-5))
    a = scale / np.sqrt(var + eps)
    return _Affine(a, bias - mean * a)


@dataclass
class _FoldSite:
    """A MAC node whose output channels are BatchNorm's channels, plus its bias Add."""

    mac: onnx.NodeProto
    add: onnx.NodeProto | None


def _fold_site(model: Model, bn: onnx.NodeProto) -> _FoldSite | None:
    x = bn.input[0]
    producer = model.producer(x)
    add = None
    if producer is not None and producer.op_type == "Add" and _sole_consumer(model, x, bn):
        const_idx = [k for k, i in enumerate(producer.input) if model.initializer(i) is not None]
        if len(const_idx) != 1:
            return None
        add, x = producer, producer.input[1 - const_idx[0]]
        producer = model.producer(x)
    if producer is None or producer.op_type not in MAC_OPS or producer.domain:
        return None
    if not _sole_consumer(model, producer.output[0], add if add is not None else bn):
        return None
    if model.initializer(producer.input[1]) is None or len(model.consumers(producer.input[1])) != 1:
        return None  # quantized or shared weights: scaling them would not be exact
    out_shape = model.shape(producer.output[0])
    if out_shape is None:
        return None
    if producer.op_type == "MatMul" and len(out_shape) != 2:
        return None  # channel axis of MatMul is the last one; BatchNorm's is axis 1
    gemm_c = producer.input[2] if producer.op_type == "Gemm" and len(producer.input) > 2 else ""
    if gemm_c and (model.initializer(gemm_c) is None or len(model.consumers(gemm_c)) != 1):
        return None
    if add is not None:
        bias = add.input[1] if add.input[0] == x else add.input[0]
        if len(model.consumers(bias)) != 1:
            return None
    return _FoldSite(producer, add)


def _scale_weight(model: Model, mac: onnx.NodeProto, a: np.ndarray) -> None:
    w = model.initializer(mac.input[1]).astype(np.float64)
    if mac.op_type == "MatMul":
        w = w * a[None, :]
    elif mac.op_type == "Gemm":
        w = w * (a[:, None] if _attr(mac, "transB", 0) else a[None, :])
    else:  # Conv: output channels first
        w = w * a.reshape(channel_shape(w.ndim, len(a), 0))
    replace_initializer(model, mac.input[1], w.astype(np.float32))


def _fold_bias(model: Model, site: _FoldSite, aff: _Affine, ndim: int) -> None:
    a_b = aff.a.reshape(channel_shape(ndim, len(aff.a)))
    b_b = aff.b.reshape(channel_shape(ndim, len(aff.b)))
    mac = site.mac
    if site.add is not None:
        name = site.add.input[1] if model.initializer(site.add.input[1]) is not None else site.add.input[0]
        c = model.initializer(name).astype(np.float64)
        replace_initializer(model, name, (c * a_b + b_b).astype(np.float32))
    elif mac.op_type == "Conv":
        if len(mac.input) > 2 and mac.input[2]:
            c = model.initializer(mac.input[2]).astype(np.float64)
            replace_initializer(model, mac.input[2], (c * aff.a + aff.b).astype(np.float32))
        else:
            mac.input.append(add_initializer(model, f"{mac.name}_bias", aff.b.astype(np.float32)))
    elif mac.op_type == "Gemm":
        beta = float(_attr(mac, "beta", 1.0))
        if len(mac.input) > 2 and mac.input[2] and beta != 0.0:
            c = np.broadcast_to(model.initializer(mac.input[2]).astype(np.float64), (1, len(aff.a)))
            replace_initializer(model, mac.input[2], (c * aff.a + aff.b / beta).reshape(-1).astype(np.float32))
        else:
            _set_attr(mac, "beta", 1.0)
            name = add_initializer(model, f"{mac.name}_bias", aff.b.astype(np.float32))
            while len(mac.input) < 3:
                mac.input.append("")
            mac.input[2] = name
    else:  # MatMul without bias: add one
        bias = add_initializer(model, f"{mac.name}_bias", b_b.astype(np.float32))
        out = mac.output[0]
        new_out = f"{out}_matmul"
        mac.output[0] = new_out
        insert_after(model, mac, make_node(model, "Add", [new_out, bias], [out], f"{mac.name}_bias_add"))


def _to_affine(model: Model, bn: onnx.NodeProto, aff: _Affine) -> None:
    shape = model.shape(bn.input[0])
    ndim = len(shape) if shape is not None else 2
    a = add_initializer(model, f"{bn.name}_mul", aff.a.reshape(channel_shape(ndim, len(aff.a))).astype(np.float32))
    b = add_initializer(model, f"{bn.name}_add", aff.b.reshape(channel_shape(ndim, len(aff.b))).astype(np.float32))
    mid = f"{bn.output[0]}_scaled"
    mul = make_node(model, "Mul", [bn.input[0], a], [mid], f"{bn.name}_mul")
    add = make_node(model, "Add", [mid, b], [bn.output[0]], f"{bn.name}_add")
    index = list(model.graph.node).index(bn)
    model.graph.node.remove(bn)
    model.graph.node.insert(index, add)
    model.graph.node.insert(index, mul)
    model.invalidate()


@dataclass
class FoldInfo:
    """Which BatchNorms were folded, turned into Mul+Add, or kept (and why)."""

    folded: list[str] = field(default_factory=list)
    affine: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


class FoldBatchNorm(Pass):
    """Fold inference BatchNorm into the MatMul/Gemm/Conv (+bias Add) before it.

    Where folding cannot be exact (quantized or shared weights, no linear producer, a
    fan-out in between) the BatchNorm becomes Mul+Add with ``to_affine`` (FINN's form)
    or stays as is (hls4ml implements BatchNormalization natively).
    """

    def __init__(self, to_affine: bool = False):
        self.to_affine = to_affine

    def call(self, model: Model) -> PassResult:
        info = FoldInfo()
        for bn in model.nodes_of(["BatchNormalization"]):
            if bn.domain or (len(bn.output) > 1 and any(bn.output[1:])):
                info.kept.append(bn.name)
                continue
            aff = _bn_affine(model, bn)
            shape = model.shape(bn.input[0])
            if aff is None or shape is None or len(shape) < 2 or shape[1] != len(aff.a):
                info.kept.append(bn.name)
                continue
            site = _fold_site(model, bn)
            if site is not None:
                _scale_weight(model, site.mac, aff.a)
                _fold_bias(model, site, aff, len(shape))
                model.graph.node.remove(bn)  # the folded chain now writes BN's output name
                rename_tensor(model, bn.input[0], bn.output[0])
                info.folded.append(bn.name)
            elif self.to_affine:
                _to_affine(model, bn, aff)
                info.affine.append(bn.name)
            else:
                info.kept.append(bn.name)
        return finish(model, bool(info.folded or info.affine), info)


# --------------------------------------------------------------------- channels-last
def _isolate_output_forks(model: Model) -> list[str]:
    """Graph outputs also read inside the graph get their own Identity copy.

    qonnx's MoveTransposePastFork counts a graph output as a fork branch but then finds
    a single consumer and asserts ("Must have >1 consumer"); after this edit the
    internal tensor forks only between nodes.
    """
    isolated = []
    for out in model.outputs:
        if not model.consumers(out) or model.producer(out) is None:
            continue
        inner = f"{out}_inner"
        rename_tensor(model, out, inner)
        for o in model.graph.output:
            if o.name == inner:
                o.name = out
        model.graph.node.append(make_node(model, "Identity", [inner], [out], f"{out}_copy"))
        model.invalidate()
        isolated.append(out)
    return isolated


@contextlib.contextmanager
def _fast_qonnx_shape_inference():
    """Inside, qonnx's InferShapes runs codesign's (same result, no full-size random
    stand-in tensors for channels-last Conv): the conversion calls it a dozen times,
    which took ~14 s on a 224x224 image model and takes well under one now."""
    from qonnx.transformation.infer_shapes import InferShapes as QonnxInferShapes

    from codesign.passes.shapes import infer_shapes

    original = QonnxInferShapes.apply

    def apply(self, wrapper):
        infer_shapes(Model(wrapper))
        return wrapper, False

    QonnxInferShapes.apply = apply
    try:
        yield
    finally:
        QonnxInferShapes.apply = original


@contextlib.contextmanager
def _terminating_1d_transpose_moves():
    """Inside, qonnx's MoveChanFirstDownstream stops on 1-D graphs with a two-input Add.

    For 3-D tensors the to-channels-first and to-channels-last Transposes are both
    ``(0, 2, 1)``: moving one past a residual Add inserts the "inverse" on the Add's other
    input, which qonnx then takes for a to-channels-first Transpose and moves back, forever.
    Here a 3-D Transpose only moves past a multi-input op whose other non-constant inputs
    come from Transposes (their inverses cancel); qonnx's fork step settles the rest.
    Same moves as qonnx's own pass for 4-D and larger tensors.
    """
    from qonnx.transformation import channels_last as cl

    original = cl.MoveChanFirstDownstream.apply

    def moves_cleanly(model, node: onnx.NodeProto, successor: onnx.NodeProto) -> bool:
        for name in successor.input:
            if name == node.output[0] or model.get_initializer(name) is not None:
                continue
            producer = model.find_producer(name)
            if producer is None or producer.op_type != "Transpose":
                return False
        return True

    def apply(self, model):
        for node in model.graph.node:
            if node.op_type != "Transpose":
                continue
            ndim = len(model.get_tensor_shape(node.input[0]))
            if cl.get_transpose_perms(node, model) != list(cl.to_channels_first_args(ndim)):
                continue
            successors = model.find_direct_successors(node)
            if model.find_direct_predecessors(node) is None or successors is None:
                continue
            if not cl.is_eltwise_optype(successors[0].op_type):
                continue
            if ndim == 3 and not moves_cleanly(model, node, successors[0]):
                continue
            return cl.move_transpose_past_eltwise(node, successors[0], model), True
        return model, False

    cl.MoveChanFirstDownstream.apply = apply
    try:
        yield
    finally:
        cl.MoveChanFirstDownstream.apply = original


def _convert_channels_last(model: Model, make_input_channels_last: bool) -> Model:
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean

    with warnings.catch_warnings(), _fast_qonnx_shape_inference(), _terminating_1d_transpose_moves():
        warnings.simplefilter("ignore")
        wrapper = model.wrapper.transform(ConvertToChannelsLastAndClean(make_input_channels_last))
    return Model(wrapper)


def random_feeds(model: Model, seed: int = 0) -> dict[str, np.ndarray]:
    """One random sample per input, inside the input's QONNX datatype (UINT8 -> 0..255)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name in model.inputs:
        dt, shape = model.dtype(name), model.shape(name)
        if dt.is_integer():
            feeds[name] = rng.integers(int(dt.min()), int(dt.max()) + 1, size=shape).astype(np.float32)
        else:
            feeds[name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def _fill_conv_defaults(model: Model) -> None:
    """qonnx's channels-last Conv requires pads/strides/dilations/kernel_shape attributes
    that ONNX makes optional ("Required attribute pads unspecified"); spell them out."""
    for node in model.nodes_of(["Conv"]):
        w = model.shape(node.input[1])
        if w is None:
            continue
        nsp = len(w) - 2
        defaults = {"kernel_shape": list(w[2:]), "strides": [1] * nsp, "dilations": [1] * nsp, "group": 1}
        auto_pad = _attr(node, "auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            defaults["pads"] = _same_pads(model, node, list(w[2:]), auto_pad)
            if defaults["pads"] is None:
                continue
            _remove_attr(node, "auto_pad")
        elif auto_pad in ("NOTSET", "VALID"):
            defaults["pads"] = [0] * (2 * nsp)
        for key, value in defaults.items():
            if _attr(node, key) is None:
                node.attribute.append(helper.make_attribute(key, value))
    model.invalidate()


def _same_pads(model: Model, node: onnx.NodeProto, kernel: list[int], mode: str) -> list[int] | None:
    """Explicit pads equivalent to auto_pad SAME_UPPER/SAME_LOWER (ONNX's formula)."""
    shape = model.shape(node.input[0])
    if shape is None:
        return None
    strides = _attr(node, "strides", None) or [1] * len(kernel)
    dil = _attr(node, "dilations", None) or [1] * len(kernel)
    begin, end = [], []
    for size, k, s, d in zip(shape[2:], kernel, strides, dil):
        total = max(0, (-(-size // s) - 1) * s + (k - 1) * d + 1 - size)
        small, large = total // 2, total - total // 2
        begin.append(small if mode == "SAME_UPPER" else large)
        end.append(large if mode == "SAME_UPPER" else small)
    return begin + end


def _remove_attr(node: onnx.NodeProto, name: str) -> None:
    for a in list(node.attribute):
        if a.name == name:
            node.attribute.remove(a)


def _check_same_function(before: Model, after: Model, what: str, atol: float = 1e-4) -> bool:
    """Guard against silent miscompiles of third-party rewrites: one random sample.

    Returns False when the input model cannot be executed (nothing to compare)."""
    from codesign.backends.reference import execute

    feeds = random_feeds(before)
    try:
        ref = execute(before, feeds)
    except Exception:
        return False
    out = execute(after, _permute_inputs(before, after, feeds))
    for name in before.outputs:
        if ref[name].shape != out[name].shape or not np.allclose(ref[name], out[name], atol=atol, rtol=1e-4):
            raise UnsupportedModelError(f"{what} changed the model's output {name!r}; refusing the rewrite")
    return True


def _permute_inputs(before: Model, after: Model, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Inputs made channels-last (NCHW -> NHWC) get the same data, transposed."""
    out = {}
    for name, x in feeds.items():
        if after.shape(name) != before.shape(name) and x.ndim >= 3:
            x = np.moveaxis(x, 1, -1)
        out[name] = x
    return out


class ToChannelsLast(Pass):
    """qonnx ``ConvertToChannelsLastAndClean``, with its failure cases handled.

    * Branching graphs where a graph output also feeds other nodes: the output is
      isolated behind an Identity first (qonnx asserts otherwise).
    * Conv with a bias: qonnx before 0.2 refused the 1-D bias ("only available for 3D
      and 4D tensors"); if the installed qonnx still does, biases are moved into a
      separate Add and the conversion retried.
    The result is checked against the reference execution of the input model.
    """

    def __init__(self, make_input_channels_last: bool = False, check: bool = True):
        self.make_input_channels_last = make_input_channels_last
        self.check = check

    def call(self, model: Model) -> PassResult:
        layout_ops = ("Conv", "MaxPool", "AveragePool", "BatchNormalization")
        if not any(n.op_type in layout_ops and not n.domain for n in model.graph.node):
            return PassResult(model, False)  # nothing channels-first left to convert
        original = model.copy()
        isolated = _isolate_output_forks(model)
        _fill_conv_defaults(model)
        model = tidy()(model).model
        try:
            try:
                converted = _convert_channels_last(model, self.make_input_channels_last)
            except AssertionError as exc:
                if "3D and 4D" not in str(exc):
                    raise
                from qonnx.transformation.extract_conv_bias import ExtractBiasFromConv

                unbiased = QonnxPass(ExtractBiasFromConv())(model).model
                converted = _convert_channels_last(unbiased, self.make_input_channels_last)
        except Exception as exc:  # qonnx internals: one line for the user
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UnsupportedModelError(f"channels-last conversion failed: {first[:200]}") from exc
        result = RemoveIdentity(arithmetic=False)(tidy()(converted).model).model
        verified = _check_same_function(original, result, "channels-last conversion") if self.check else False
        return PassResult(result, True, {"isolated_outputs": isolated, "verified": verified})


def clean(to_affine: bool = False, channels_last: bool = False) -> Sequential:
    """Everything above in a sensible order: the form hls4ml and FINN consume."""
    steps: list[Pass] = [
        RemoveIdentity(),
        FoldConstantsPass(),
        FoldBatchNorm(to_affine=to_affine),
        GemmToMatMul(),
        RemoveIdentity(),
    ]
    if channels_last:
        steps.append(ToChannelsLast())
    return Sequential(*steps)


__all__ = [
    "FoldBatchNorm",
    "FoldConstantsPass",
    "FoldInfo",
    "GemmToMatMul",
    "RemoveIdentity",
    "ToChannelsLast",
    "clean",
]
