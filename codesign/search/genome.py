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

    @property
    def depth(self) -> int:
        return len(self.widths)

    def key(self) -> str:
        """Canonical identity: genomes that differ only in unused genes share it."""
        return json.dumps(asdict(self), sort_keys=True)

    def train_key(self) -> str:
        """Identity for training: genomes differing only in hardware genes share one trained model."""
        return replace(self, reuse_factor=1).key()

    def arch_key(self) -> tuple[Any, ...]:
        """What must be equal for two candidates to train in one batched group (widths,
        activations and norms may differ: they are padded or selected per candidate)."""
        return (self.depth,)

    def label(self) -> str:
        acts = self.activations[0] if len(set(self.activations)) == 1 else "/".join(self.activations)
        norms = "" if all(n == "none" for n in self.norms) else "+" + "/".join(sorted(set(self.norms) - {"none"}))
        rf = f" rf{self.reuse_factor}" if self.reuse_factor != 1 else ""
        return f"{'-'.join(map(str, self.widths))} {acts}{norms} w{self.bits}{rf}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Genome:
        return cls(
            widths=tuple(d["widths"]), activations=tuple(d["activations"]), norms=tuple(d["norms"]),
            dropout=float(d["dropout"]), bits=int(d["bits"]), learning_rate=float(d["learning_rate"]), l1=float(d["l1"]),
            reuse_factor=int(d.get("reuse_factor", 1)),
        )  # fmt: skip


def decode(space: Space, x: np.ndarray | list[int]) -> Genome:
    """Choice indices (one per gene of ``space.genes()``) -> Genome."""
    genes = space.genes()
    values = {name: choices[int(np.clip(round(float(i)), 0, len(choices) - 1))] for (name, choices), i in zip(genes, x)}
    depth = values["layers"]
    acts = tuple(values.get(f"activation{i}", values.get("activation")) for i in range(depth))
    norms = tuple(values.get(f"norm{i}", values.get("norm")) for i in range(depth))
    return Genome(
        widths=tuple(values[f"width{i}"] for i in range(depth)), activations=acts, norms=norms,
        dropout=values["dropout"], bits=values["bits"], learning_rate=values["learning_rate"], l1=values["l1"],
        reuse_factor=values.get("reuse_factor", space.reuse_factor[0]),
    )  # fmt: skip


def encode(space: Space, genome: Genome) -> np.ndarray | None:
    """Genome -> choice indices, or None when a value is not among the space's choices."""
    want: dict[str, Any] = {"layers": genome.depth, "dropout": genome.dropout, "bits": genome.bits}
    want |= {"learning_rate": genome.learning_rate, "l1": genome.l1, "reuse_factor": genome.reuse_factor}
    for i in range(space.model.layers.max):
        if i < genome.depth:
            want[f"width{i}"], want[f"activation{i}"], want[f"norm{i}"] = genome.widths[i], genome.activations[i], genome.norms[i]
    if len(set(genome.activations)) == 1:
        want["activation"] = genome.activations[0]
    if len(set(genome.norms)) == 1:
        want["norm"] = genome.norms[0]
    out = []
    for name, choices in space.genes():
        if name not in want:
            if name.startswith(("width", "activation", "norm")) and name[-1].isdigit():
                out.append(0)  # unused gene of a shallower genome
                continue
            return None
        if want[name] not in choices:
            return None
        out.append(choices.index(want[name]))
    return np.asarray(out, dtype=int)


def baseline_genome(space: Space, spec: BaselineSpec) -> Genome:
    """A named baseline from the config, with the space's first learning rate by default."""
    n = len(spec.widths)
    return Genome(
        widths=tuple(spec.widths), activations=(spec.activation,) * n, norms=(spec.norm,) * n, dropout=spec.dropout,
        bits=spec.bits, learning_rate=spec.learning_rate or space.training.learning_rate[0], l1=spec.l1,
        reuse_factor=space.reuse_factor[0],
    )  # fmt: skip


# ----------------------------------------------------------------------------- numbers


def pow2_scale(max_abs: float, bits: int, signed: bool) -> float:
    """Smallest power-of-two step whose integer range covers ``max_abs`` (hls4ml-style fixed point)."""
    qmax = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    return float(2.0 ** math.ceil(math.log2(max(float(max_abs), 1e-8) / qmax)))


def random_params(genome: Genome, n_features: int, n_classes: int, seed: int = 0) -> Params:
    """Untrained parameters (nn.Linear's init) so an IR exists before training, for costing."""
    rng = np.random.default_rng(seed)
    p: Params = {"in_scale": np.float32(pow2_scale(4.0, genome.bits, True))}
    dims = (n_features, *genome.widths, n_classes)
    for i in range(genome.depth + 1):
        bound = 1.0 / math.sqrt(dims[i])
        p[f"w{i}"] = rng.uniform(-bound, bound, (dims[i], dims[i + 1])).astype(np.float32)
        p[f"b{i}"] = rng.uniform(-bound, bound, dims[i + 1]).astype(np.float32)
        p[f"ws{i}"] = np.float32(pow2_scale(np.abs(p[f"w{i}"]).max(), genome.bits, True))
        if i < genome.depth:
            signed = genome.activations[i] not in UNSIGNED_ACTIVATIONS
            p[f"as{i}"] = np.float32(pow2_scale(4.0, genome.bits, signed))
            if genome.norms[i] != "none":
                p[f"g{i}"], p[f"be{i}"] = np.ones(dims[i + 1], np.float32), np.zeros(dims[i + 1], np.float32)
            if genome.norms[i] == "batch":
                p[f"rm{i}"], p[f"rv{i}"] = np.zeros(dims[i + 1], np.float32), np.ones(dims[i + 1], np.float32)
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
            e = self.node("Erf", [self.node("Div", [x, self.const(f"{out}_sqrt2", math.sqrt(2.0))], f"{out}_div")], f"{out}_erf")
            s = self.node("Add", [e, self.const(f"{out}_one", 1.0)], f"{out}_add")
            return self.node("Mul", [self.node("Mul", [x, s], f"{out}_mul"), self.const(f"{out}_half", 0.5)], out)
        raise ValueError(f"unknown activation {kind!r}")


def build_ir(genome: Genome, n_features: int, n_classes: int, params: Params | None = None, name: str = "candidate") -> Model:
    """The candidate as a QONNX IR model (Quant on input, weights and activations), shapes and datatypes inferred."""
    from codesign.passes.normalize import InferDatatypes
    from codesign.passes.shapes import InferShapes

    p = params if params is not None else random_params(genome, n_features, n_classes)
    g = _GraphBuilder()
    h = g.quant("x", float(p["in_scale"]), genome.bits, True, False, "x_q")
    for i in range(genome.depth + 1):
        wq = g.quant(g.const(f"w{i}", p[f"w{i}"]), float(p[f"ws{i}"]), genome.bits, True, True, f"w{i}_q")
        h = g.node("Add", [g.node("MatMul", [h, wq], f"mm{i}"), g.const(f"b{i}", p[f"b{i}"])], f"fc{i}" if i < genome.depth else "y")
        if i == genome.depth:
            break
        norm = genome.norms[i]
        if norm == "batch":
            ins = [h] + [g.const(f"{k}{i}", p[f"{k}{i}"]) for k in ("g", "be", "rm", "rv")]
            h = g.node("BatchNormalization", ins, f"bn{i}", epsilon=NORM_EPS)
        elif norm == "layer":
            h = g.node("LayerNormalization", [h, g.const(f"g{i}", p[f"g{i}"]), g.const(f"be{i}", p[f"be{i}"])], f"ln{i}", axis=-1, epsilon=NORM_EPS)
        h = g.activation(genome.activations[i], h, f"act{i}")
        signed = genome.activations[i] not in UNSIGNED_ACTIVATIONS
        h = g.quant(h, float(p[f"as{i}"]), genome.bits, signed, False, f"h{i}")
    graph = helper.make_graph(
        g.nodes, name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n_features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n_classes])],
        initializer=g.inits,
    )  # fmt: skip
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(QONNX_DOMAIN, 1)], producer_name="codesign.search"
    )
    proto.ir_version = 8
    model = Model(proto)
    model = InferShapes()(model).model
    return InferDatatypes()(model).model


def to_torch(genome: Genome, n_features: int, n_classes: int, params: Params | None = None):
    """The same architecture as a trainable ``torch.nn.Module`` (optionally with ``params`` loaded)."""
    from codesign.search.nets import CandidateNet

    net = CandidateNet(genome, n_features, n_classes)
    if params is not None:
        net.load_params(params)
    return net
