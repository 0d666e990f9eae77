"""A genome (choice indices) -> architecture -> QONNX IR built directly, or a torch module.

The IR is assembled with ``onnx.helper`` (no torch export), so costing a candidate takes
milliseconds; it is then given shapes and datatypes by the same passes every loaded model
goes through, so ``cost_report`` on it is the number ``inspect``/``compile`` would show.

Trained parameters travel as one flat ``{name: ndarray}`` dict (``Params``) that the
population trainer, the torch module and the IR builder all read and write:
``in_scale``; per hidden layer ``i``: ``w{i}`` (in x out), ``b{i}``, ``ws{i}`` (weight
scale), ``as{i}`` (activation scale) and, with a norm, ``g{i}``/``be{i}`` (+ ``rm{i}``/
``rv{i}`` for batch norm); the output layer uses index ``L`` = number of hidden layers.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from codesign.ir.model import Model
from codesign.ir.quant import QONNX_DOMAIN
from codesign.search.space import BaselineSpec, Space

Params = dict[str, np.ndarray]

#: Activations whose outputs are >= 0 (quantized unsigned, like hls4ml's ufixed).
UNSIGNED_ACTIVATIONS = frozenset({"relu", "sigmoid"})
OPSET = 17
NORM_EPS = 1e-5
LEAKY_ALPHA = 0.01
#: NAC/BraggNN conv attention: 1x1 q/k/v convs, softmax(q^T k) v over positions, 1x1 output projection, residual
ATTENTION = "conv_attention"
#: the extra quantized tensors of an attention block (query, key, value, attention output)
ATTENTION_TENSORS = ("q", "k", "v", "z")


@dataclass(frozen=True)
class Genome:
    """One decoded candidate: the architecture plus its training hyper-parameters."""

    widths: tuple[int, ...]
    activations: tuple[str, ...]
    norms: tuple[str, ...]
    dropout: float = 0.0
    bits: int = 8
    learning_rate: float = 1e-3
    l1: float = 0.0
    reuse_factor: int = 1
    # conv blocks (empty for a pure MLP): per block 'dense'/'conv1d'/'conv2d', kernel size (0 for
    # dense), residual skip, 2x pooling; ``input_shape`` is the channels-first per-sample shape
    kinds: tuple[str, ...] = ()
    kernels: tuple[int, ...] = ()
    skips: tuple[bool, ...] = ()
    pools: tuple[str, ...] = ()
    input_shape: tuple[int, ...] = ()

    @property
    def depth(self) -> int:
        return len(self.widths)

    @property
    def n_conv(self) -> int:
        """Leading conv blocks (0 for an MLP)."""
        return sum(k != "dense" for k in self.kinds)

    def key(self) -> str:
        """Canonical identity: genomes that differ only in unused genes share it."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def train_key(self) -> str:
        """Identity for training: genomes differing only in hardware genes share one trained model."""
        return replace(self, reuse_factor=1).key()

    def arch_key(self) -> tuple[Any, ...]:
        """What must be equal for two candidates to train in one batched group (widths,
        activations and norms may differ: they are padded or selected per candidate; conv
        candidates also share block kinds, pools and input shape: ``train_conv.ConvGroup``)."""
        return (self.depth,) if not self.n_conv else ("convgroup", self.depth, self.kinds, self.pools, self.input_shape)

    def label(self) -> str:
        acts = self.activations[0] if len(set(self.activations)) == 1 else "/".join(self.activations)
        norms = "" if all(n == "none" for n in self.norms) else "+" + "/".join(sorted(set(self.norms) - {"none"}))
        rf = f" rf{self.reuse_factor}" if self.reuse_factor != 1 else ""
        widths = [self._block_label(i) for i in range(self.depth)]
        return f"{'-'.join(widths)} {acts}{norms} w{self.bits}{rf}"

    def _block_label(self, i: int) -> str:
        """'32' (dense), 'c8k3rmp' (conv: channels, kernel, residual, max pool), 'a4' (attention, hidden)."""
        if i >= self.n_conv:
            return str(self.widths[i])
        pool = "" if self.pools[i] == "none" else self.pools[i][0] + "p"
        if self.kinds[i] == ATTENTION:
            return f"a{self.widths[i]}{pool}"
        return f"c{self.widths[i]}k{self.kernels[i]}{'r' if self.skips[i] else ''}{pool}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not self.kinds:  # an MLP keeps the key it had before conv blocks existed
            for k in ("kinds", "kernels", "skips", "pools", "input_shape"):
                del d[k]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Genome:
        return cls(
            widths=tuple(d["widths"]), activations=tuple(d["activations"]), norms=tuple(d["norms"]),
            dropout=float(d["dropout"]), bits=int(d["bits"]), learning_rate=float(d["learning_rate"]), l1=float(d["l1"]),
            reuse_factor=int(d.get("reuse_factor", 1)), kinds=tuple(d.get("kinds", ())), kernels=tuple(d.get("kernels", ())),
            skips=tuple(bool(v) for v in d.get("skips", ())), pools=tuple(d.get("pools", ())),
            input_shape=tuple(d.get("input_shape", ())),
        )  # fmt: skip


def conv_shapes(genome: Genome) -> list[tuple[int, ...]]:
    """Channels-first shape after each conv block (a 2x pool halves, flooring, each spatial dim)."""
    shape, out = tuple(genome.input_shape), []
    for i in range(genome.n_conv):
        spatial = shape[1:]
        if genome.pools[i] != "none":
            spatial = tuple(d // 2 for d in spatial)
        shape = (shape[0] if genome.kinds[i] == ATTENTION else genome.widths[i], *spatial)
        out.append(shape)
    return out


def block_signed(genome: Genome) -> list[bool]:
    """Whether each block's quantized output is signed: the activation's range, widened by a skip
    (a residual adds the block input, which may be negative); the input itself is signed."""
    out, prev = [], True
    for i in range(genome.depth):
        s = genome.activations[i] not in UNSIGNED_ACTIVATIONS or (i < genome.n_conv and genome.skips[i] and prev)
        out.append(s)
        prev = s
    return out


def _layer_dims(genome: Genome, n_features: int, n_classes: int) -> list[tuple[int, int]]:
    """(fan-in per output unit, outputs) of every layer; conv fan-in = in channels x kernel volume."""
    nd = len(genome.input_shape) - 1
    dims, c_in, flat = [], genome.input_shape[0] if genome.n_conv else n_features, n_features
    for i in range(genome.n_conv):
        if genome.kinds[i] == ATTENTION:  # the output projection: hidden -> the block's input channels
            dims.append((genome.widths[i], c_in))
            continue
        dims.append((c_in * genome.kernels[i] ** nd, genome.widths[i]))
        c_in = genome.widths[i]
    if genome.n_conv:
        flat = math.prod(conv_shapes(genome)[-1])
    sizes = (flat, *genome.widths[genome.n_conv :], n_classes)
    return dims + [(sizes[j], sizes[j + 1]) for j in range(len(sizes) - 1)]


def decode(space: Space, x: np.ndarray | list[int]) -> Genome:
    """Choice indices (one per gene of ``space.genes()``) -> Genome."""
    genes = space.genes()
    values = {name: choices[int(np.clip(round(float(i)), 0, len(choices) - 1))] for (name, choices), i in zip(genes, x)}
    depth = values["layers"]
    acts = tuple(values.get(f"activation{i}", values.get("activation")) for i in range(depth))
    norms = tuple(values.get(f"norm{i}", values.get("norm")) for i in range(depth))
    widths = tuple(values[f"width{i}"] for i in range(depth))
    conv = _conv_genes(space, widths, values.__getitem__) if space.model.conv_type() else {}
    return Genome(
        widths=widths, activations=acts, norms=norms,
        dropout=values["dropout"], bits=values["bits"], learning_rate=values["learning_rate"], l1=values["l1"],
        reuse_factor=values.get("reuse_factor", space.reuse_factor[0]), **conv,
    )  # fmt: skip


def _conv_genes(space: Space, widths: tuple[int, ...], gene: Any) -> dict[str, Any]:
    """The conv fields of a genome whose blocks are the first ``len(widths)`` of the space's, from
    ``gene(name)`` for ``kernel{i}``/``skip{i}``/``pool{i}``; canonical: a skip needs equal channels,
    a pool a spatial size >= 2, an attention block is residual with 1x1 projections."""
    depth = len(widths)
    kinds = tuple(space.model.blocks[i].type for i in range(depth))
    n_conv = sum(k != "dense" for k in kinds)
    in_shape = tuple(space.model.input_shape)
    skips, pools, spatial, c_in = [], [], in_shape[1:], in_shape[0]
    for i in range(n_conv):
        attention = kinds[i] == ATTENTION  # always residual, 1x1 projections, keeps the channels
        skips.append(attention or (bool(gene(f"skip{i}")) and c_in == widths[i]))
        pool = gene(f"pool{i}") if min(spatial) >= 2 else "none"
        pools.append(pool)
        spatial = tuple(d // 2 for d in spatial) if pool != "none" else spatial
        c_in = c_in if attention else widths[i]
    pad = (0,) * (depth - n_conv)
    kernels = tuple(1 if kinds[i] == ATTENTION else gene(f"kernel{i}") for i in range(n_conv))
    return {
        "kinds": kinds, "kernels": kernels + pad,
        "skips": tuple(skips) + (False,) * (depth - n_conv), "pools": tuple(pools) + ("none",) * (depth - n_conv),
        "input_shape": in_shape,
    }  # fmt: skip


def encode(space: Space, genome: Genome) -> np.ndarray | None:
    """Genome -> choice indices, or None when a value is not among the space's choices."""
    want: dict[str, Any] = {"layers": genome.depth, "dropout": genome.dropout, "bits": genome.bits}
    want |= {"learning_rate": genome.learning_rate, "l1": genome.l1, "reuse_factor": genome.reuse_factor}
    for i in range(space.model.layers.max):
        if i < genome.depth:
            want[f"width{i}"], want[f"activation{i}"], want[f"norm{i}"] = (
                genome.widths[i],
                genome.activations[i],
                genome.norms[i],
            )
        if i < genome.n_conv:
            want[f"kernel{i}"], want[f"skip{i}"], want[f"pool{i}"] = genome.kernels[i], genome.skips[i], genome.pools[i]
    if len(set(genome.activations)) == 1:
        want["activation"] = genome.activations[0]
    if len(set(genome.norms)) == 1:
        want["norm"] = genome.norms[0]
    out = []
    for name, choices in space.genes():
        if name not in want:
            if name.startswith(("width", "activation", "norm", "kernel", "skip", "pool")) and name[-1].isdigit():
                out.append(0)  # unused gene of a shallower genome
                continue
            return None
        if want[name] not in choices:
            return None
        out.append(choices.index(want[name]))
    return np.asarray(out, dtype=int)


def baseline_genome(space: Space, spec: BaselineSpec) -> Genome:
    """A named baseline from the config, with the space's first learning rate by default. With
    ``kernels`` it is a conv net on the first ``len(widths)`` blocks of the space (conv channels /
    attention hidden channels, then dense widths), else an MLP."""
    n = len(spec.widths)
    conv: dict[str, Any] = {}
    if spec.kernels is not None:
        from codesign.search.space import SearchSpaceError

        blocks = space.model.blocks or []
        if not space.model.conv_type() or n > len(blocks):
            raise SearchSpaceError(f"baseline {spec.name}: a conv baseline needs a conv space with >= {n} blocks")
        convs = [i for i in range(n) if blocks[i].type != "dense"]
        lists = {
            "kernel": spec.kernels,
            "skip": spec.skips or [False] * len(convs),
            "pool": spec.pools or ["none"] * len(convs),
        }
        bad = [k for k, v in lists.items() if len(v) != len(convs)]
        if bad:
            raise SearchSpaceError(
                f"baseline {spec.name}: {bad[0]}s lists {len(lists[bad[0]])} values for {len(convs)} conv blocks"
            )
        conv = _conv_genes(
            space,
            tuple(spec.widths),
            lambda name: lists[name.rstrip("0123456789")][int(name[len(name.rstrip("0123456789")) :])],
        )
    return Genome(
        widths=tuple(spec.widths), activations=(spec.activation,) * n, norms=(spec.norm,) * n, dropout=spec.dropout,
        bits=spec.bits, learning_rate=spec.learning_rate or space.training.learning_rate[0], l1=spec.l1,
        reuse_factor=space.reuse_factor[0], **conv,
    )  # fmt: skip


# ----------------------------------------------------------------------------- numbers


def pow2_scale(max_abs: float, bits: int, signed: bool) -> float:
    """Smallest power-of-two step whose integer range covers ``max_abs`` (hls4ml-style fixed point)."""
    qmax = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    return float(2.0 ** math.ceil(math.log2(max(float(max_abs), 1e-8) / qmax)))


def bias_grid(genome: Genome, p: Params, i: int) -> float | None:
    """Step of layer ``i``'s accumulator (input scale x weight scale), None for an attention projection.
    A bias on this grid adds exactly in fixed point, so hls4ml's C-simulation matches the IR bit for bit."""
    if i < genome.n_conv and genome.kinds[i] == ATTENTION:
        return None
    return float(p["in_scale"] if i == 0 else p[f"as{i - 1}"]) * float(p[f"ws{i}"])


#: Biases sit a quarter step off the accumulator grid: ``acc + b`` then never lands on a rounding tie
#: of a following quantizer whose step is >= 2 (or exactly 1) accumulator steps, so toolflows that
#: round ties differently from QONNX's half-to-even (FINN's thresholds round them up) agree with the IR.
BIAS_OFFSET = 0.25


def snapped_bias(genome: Genome, p: Params, i: int) -> np.ndarray:
    """Layer ``i``'s bias at the nearest point of :func:`bias_grid` shifted by ``BIAS_OFFSET`` steps
    (float32 arithmetic, as the trainers' forward does)."""
    grid = bias_grid(genome, p, i)
    b = np.asarray(p[f"b{i}"], dtype=np.float32)
    if grid is None:
        return b
    g, off = np.float32(grid), np.float32(BIAS_OFFSET)
    return ((np.round(b / g - off) + off) * g).astype(np.float32)


def random_params(genome: Genome, n_features: int, n_classes: int, seed: int = 0) -> Params:
    """Untrained parameters (nn.Linear's init) so an IR exists before training, for costing."""
    rng = np.random.default_rng(seed)
    p: Params = {"in_scale": np.float32(pow2_scale(4.0, genome.bits, True))}
    signed = block_signed(genome)
    nd = len(genome.input_shape) - 1
    c_in = genome.input_shape[0] if genome.n_conv else 0
    for i, (fan_in, out) in enumerate(_layer_dims(genome, n_features, n_classes)):
        bound = 1.0 / math.sqrt(fan_in)
        if i < genome.n_conv and genome.kinds[i] == ATTENTION:
            shape: tuple[int, ...] = (out, fan_in, *(1,) * nd)  # projection hidden -> channels
            qb = 1.0 / math.sqrt(c_in)
            for t in ATTENTION_TENSORS[:3]:
                p[f"w{t}{i}"] = rng.uniform(-qb, qb, (fan_in, c_in, *(1,) * nd)).astype(np.float32)
                p[f"b{t}{i}"] = rng.uniform(-qb, qb, fan_in).astype(np.float32)
                p[f"ws{t}{i}"] = np.float32(pow2_scale(np.abs(p[f"w{t}{i}"]).max(), genome.bits, True))
            for t in ATTENTION_TENSORS:
                p[f"a{t}{i}"] = np.float32(pow2_scale(4.0, genome.bits, True))
        elif i < genome.n_conv:  # ONNX/torch conv layout (out, in, k...)
            shape = (out, c_in, *(genome.kernels[i],) * nd)
            c_in = out
        else:
            shape = (fan_in, out)
        p[f"w{i}"] = rng.uniform(-bound, bound, shape).astype(np.float32)
        p[f"b{i}"] = rng.uniform(-bound, bound, out).astype(np.float32)
        p[f"ws{i}"] = np.float32(pow2_scale(np.abs(p[f"w{i}"]).max(), genome.bits, True))
        if i < genome.depth:
            p[f"as{i}"] = np.float32(pow2_scale(4.0, genome.bits, signed[i]))
            if genome.norms[i] != "none":
                p[f"g{i}"], p[f"be{i}"] = np.ones(out, np.float32), np.zeros(out, np.float32)
            if genome.norms[i] == "batch":
                p[f"rm{i}"], p[f"rv{i}"] = np.zeros(out, np.float32), np.ones(out, np.float32)
    return p


# ----------------------------------------------------------------------------- IR


class _GraphBuilder:
    """Collects nodes and initializers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, name: str, value: np.ndarray | float) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def const_int(self, name: str, value: list[int]) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.int64), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, domain: str = "", **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=f"{output}_{op}", domain=domain, **attrs))
        return output

    def quant(self, x: str, scale: float, bits: int, signed: bool, narrow: bool, out: str) -> str:
        ins = [x, self.const(f"{out}_scale", scale), self.const(f"{out}_zeropt", 0.0), self.const(f"{out}_bits", bits)]
        return self.node("Quant", ins, out, QONNX_DOMAIN, signed=int(signed), narrow=int(narrow), rounding_mode="ROUND")

    def activation(self, kind: str, x: str, out: str) -> str:
        if kind == "relu":
            return self.node("Relu", [x], out)
        if kind == "leaky_relu":
            return self.node("LeakyRelu", [x], out, alpha=LEAKY_ALPHA)
        if kind == "tanh":
            return self.node("Tanh", [x], out)
        if kind == "sigmoid":
            return self.node("Sigmoid", [x], out)
        if kind == "identity":
            return self.node("Identity", [x], out)
        if kind == "gelu":  # exact erf form, as torch.nn.GELU(): 0.5 x (1 + erf(x / sqrt 2))
            e = self.node(
                "Erf", [self.node("Div", [x, self.const(f"{out}_sqrt2", math.sqrt(2.0))], f"{out}_div")], f"{out}_erf"
            )
            s = self.node("Add", [e, self.const(f"{out}_one", 1.0)], f"{out}_add")
            return self.node("Mul", [self.node("Mul", [x, s], f"{out}_mul"), self.const(f"{out}_half", 0.5)], out)
        raise ValueError(f"unknown activation {kind!r}")


def build_ir(
    genome: Genome, n_features: int, n_classes: int, params: Params | None = None, name: str = "candidate"
) -> Model:
    """The candidate as a QONNX IR model (Quant on input, weights and activations), shapes and datatypes inferred."""
    from codesign.passes.normalize import InferDatatypes
    from codesign.passes.shapes import InferShapes

    p = params if params is not None else random_params(genome, n_features, n_classes)
    g = _GraphBuilder()
    h = g.quant("x", float(p["in_scale"]), genome.bits, True, False, "x_q")
    signed = block_signed(genome)
    nd = len(genome.input_shape) - 1
    for i in range(genome.depth + 1):
        wq = g.quant(g.const(f"w{i}", p[f"w{i}"]), float(p[f"ws{i}"]), genome.bits, True, True, f"w{i}_q")
        if i < genome.n_conv and genome.kinds[i] == ATTENTION:
            block_in = h
            z = _attention_ir(g, genome, p, i, h)
            h = g.node("Conv", [z, wq, g.const(f"b{i}", snapped_bias(genome, p, i))], f"conv{i}", kernel_shape=[1] * nd)
        elif i < genome.n_conv:  # Conv, 'same' padding, bias as the Conv's third input
            k = genome.kernels[i]
            block_in = h
            h = g.node(
                "Conv",
                [h, wq, g.const(f"b{i}", snapped_bias(genome, p, i))],
                f"conv{i}",
                kernel_shape=[k] * nd,
                pads=[k // 2] * (2 * nd),
            )
        else:
            if i == genome.n_conv and genome.n_conv:
                h = g.node("Flatten", [h], "flat", axis=1)
            h = g.node(
                "Add",
                [g.node("MatMul", [h, wq], f"mm{i}"), g.const(f"b{i}", snapped_bias(genome, p, i))],
                f"fc{i}" if i < genome.depth else "y",
            )
        if i == genome.depth:
            break
        norm, conv = genome.norms[i], i < genome.n_conv
        per_channel = (-1, *(1,) * nd) if conv else (-1,)
        if norm == "batch":
            ins = [h] + [g.const(f"{k}{i}", p[f"{k}{i}"]) for k in ("g", "be", "rm", "rv")]
            h = g.node("BatchNormalization", ins, f"bn{i}", epsilon=NORM_EPS)
        elif norm == "layer":  # conv: over (C, spatial) with a per-channel affine, as torch GroupNorm(1, C)
            gb = [g.const(f"{k}{i}", p[f"{k}{i}"].reshape(per_channel)) for k in ("g", "be")]
            h = g.node("LayerNormalization", [h, *gb], f"ln{i}", axis=1 if conv else -1, epsilon=NORM_EPS)
        h = g.activation(genome.activations[i], h, f"act{i}")
        if conv and genome.skips[i]:
            h = g.node("Add", [h, block_in], f"res{i}")
        pool = genome.pools[i] if conv else "none"
        if pool == "max":  # quantize, then pool: the same values (max commutes with a monotone quantizer),
            # in the order FINN's streamlining maps to hardware (MultiThreshold -> MaxPool)
            h = g.quant(h, float(p[f"as{i}"]), genome.bits, signed[i], False, f"h{i}_pre")
            h = g.node("MaxPool", [h], f"h{i}", kernel_shape=[2] * nd, strides=[2] * nd)
            continue
        if pool == "avg":
            h = g.node("AveragePool", [h], f"pool{i}", kernel_shape=[2] * nd, strides=[2] * nd)
        h = g.quant(h, float(p[f"as{i}"]), genome.bits, signed[i], False, f"h{i}")
    in_shape = [1, *genome.input_shape] if genome.n_conv else [1, n_features]
    graph = helper.make_graph(
        g.nodes, name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n_classes])],
        initializer=g.inits,
    )  # fmt: skip
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(QONNX_DOMAIN, 1)],
        producer_name="codesign.search",
    )
    proto.ir_version = 8
    model = Model(proto)
    model = InferShapes()(model).model
    return InferDatatypes()(model).model


def _attention_ir(g: _GraphBuilder, genome: Genome, p: Params, i: int, x: str) -> str:
    """softmax(q^T k) v over the positions of ``x`` (q/k/v: quantized 1x1 convs), back to (hidden, positions...)."""
    nd = len(genome.input_shape) - 1
    spatial = (conv_shapes(genome)[i - 1] if i else tuple(genome.input_shape))[1:]
    hidden, positions = genome.widths[i], math.prod(spatial)
    flat_shape = g.const_int(f"qkv{i}_shape", [1, hidden, positions])
    qkv = {}
    for t in ATTENTION_TENSORS[:3]:
        w = g.quant(g.const(f"w{t}{i}", p[f"w{t}{i}"]), float(p[f"ws{t}{i}"]), genome.bits, True, True, f"w{t}{i}_q")
        c = g.node("Conv", [x, w, g.const(f"b{t}{i}", p[f"b{t}{i}"])], f"{t}{i}_conv", kernel_shape=[1] * nd)
        c = g.quant(c, float(p[f"a{t}{i}"]), genome.bits, True, False, f"{t}{i}_quant")
        qkv[t] = g.node("Reshape", [c, flat_shape], f"{t}{i}_flat")
    q_t = g.node("Transpose", [qkv["q"]], f"q{i}_t", perm=[0, 2, 1])
    att = g.node("Softmax", [g.node("MatMul", [q_t, qkv["k"]], f"att{i}_logits")], f"att{i}_softmax", axis=-1)
    att = g.quant(att, softmax_scale(genome.bits), genome.bits, False, False, f"att{i}")
    z = g.node("MatMul", [att, g.node("Transpose", [qkv["v"]], f"v{i}_t", perm=[0, 2, 1])], f"z{i}_mm")
    z = g.node("Transpose", [z], f"z{i}_t", perm=[0, 2, 1])
    z = g.node("Reshape", [z, g.const_int(f"z{i}_shape", [1, hidden, *spatial])], f"z{i}_r")
    return g.quant(z, float(p[f"az{i}"]), genome.bits, True, False, f"z{i}")


def softmax_scale(bits: int) -> float:
    """Fixed step of the (unsigned) quantizer on attention weights: covers [0, 1]."""
    return pow2_scale(1.0, bits, False)


def to_torch(genome: Genome, n_features: int, n_classes: int, params: Params | None = None):
    """The same architecture as a trainable ``torch.nn.Module`` (optionally with ``params`` loaded)."""
    from codesign.search.nets import candidate_net

    net = candidate_net(genome, n_features, n_classes)
    if params is not None:
        net.load_params(params)
    return net
