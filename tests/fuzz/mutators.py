"""Seeded mutators of real ONNX/QONNX models: what a broken exporter or a hostile user hands codesign.

Each family turns one base model into :class:`Mutant` s: the files to write (the model, and
for external data its weights file, plus symlinks) and what must happen: ``refuse`` (exit 0
would accept an invalid model), ``same`` (exit 0 must report the base model's totals) or
``any`` (exit 0 or a one-line refusal). Everything is reproducible from (model, family, seed).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MODEL = "m/model.onnx"


@dataclass
class Mutant:
    """One mutated model: files to write under a fresh folder, and what must happen."""

    family: str
    label: str
    base: str
    files: dict[str, bytes]
    expect: str = "any"  # refuse | same | any
    symlinks: dict[str, str] = field(default_factory=dict)

    def write(self, root: Path) -> Path:
        """Write the files under ``root``; return the model's path."""
        for rel, data in self.files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        for rel, target in self.symlinks.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).symlink_to(target)
        return root / MODEL


def _copy(m: onnx.ModelProto) -> onnx.ModelProto:
    c = onnx.ModelProto()
    c.CopyFrom(m)
    return c


def _mutant(family: str, label: str, base: str, m: onnx.ModelProto | bytes, expect: str = "any",
            extra: dict[str, bytes] | None = None, symlinks: dict[str, str] | None = None) -> Mutant:  # fmt: skip
    data = m if isinstance(m, bytes) else m.SerializeToString()
    return Mutant(family, label, base, {MODEL: data, **(extra or {})}, expect, symlinks or {})


# ------------------------------------------------------------------ protobuf bytes
def bytes_family(base: str, m: onnx.ModelProto, rng: random.Random) -> Iterator[Mutant]:
    """Byte flips, truncation, insertion, zeroed and repeated ranges of the serialized model."""
    raw = m.SerializeToString()
    n = len(raw)
    while True:
        kind = rng.choice(["flip", "truncate", "insert", "zero", "repeat", "flip1"])
        b = bytearray(raw)
        if kind in ("flip", "flip1"):
            for _ in range(1 if kind == "flip1" else rng.randint(2, 16)):
                i = rng.randrange(n)
                b[i] ^= 1 << rng.randrange(8) if kind == "flip1" else rng.randrange(1, 256)
        elif kind == "truncate":
            b = b[: rng.randrange(n)]
        elif kind == "insert":
            i = rng.randrange(n)
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
        elif kind == "zero":
            i, k = rng.randrange(n), rng.randint(1, 64)
            b[i : i + k] = bytes(len(b[i : i + k]))
        else:
            i = rng.randrange(n)
            b[i:i] = b[i : i + rng.randint(1, 256)]
        yield _mutant("bytes", f"{kind}@{rng.random():.6f}", base, bytes(b))


# ------------------------------------------------------------------ attributes and quantizer parameters
QUANT_BITS = [0, -1, 2.5, 1000, 1e30, math.nan, math.inf]
QUANT_SCALES = [0.0, math.nan, math.inf, -1.0]


def _set_init(m: onnx.ModelProto, name: str, value: float) -> bool:
    for i, t in enumerate(m.graph.initializer):
        if t.name == name:
            shape = tuple(t.dims)
            arr = np.full(shape, value, dtype=np.float32)
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(arr, name))
            return True
    return False


def _set_attr(node: onnx.NodeProto, name: str, value: object) -> None:
    for a in list(node.attribute):
        if a.name == name:
            node.attribute.remove(a)
    node.attribute.append(helper.make_attribute(name, value))


def attr_family(base: str, m: onnx.ModelProto, rng: random.Random) -> Iterator[Mutant]:
    """Invalid quantizer parameters, Conv group, graph dims, a huge ConstantOfShape (all must be refused)."""
    inits = {t.name for t in m.graph.initializer}
    quants = [n for n in m.graph.node if n.op_type == "Quant"]
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    makers: list[Callable[[onnx.ModelProto], str | None]] = []

    def quant_input(slot: int, values: list[float], what: str) -> None:
        def make(c: onnx.ModelProto) -> str | None:
            q = [n for n in c.graph.node if n.op_type == "Quant" and len(n.input) > slot and n.input[slot] in inits]
            if not q:
                return None
            node, v = rng.choice(q), rng.choice(values)
            _set_init(c, node.input[slot], v)
            return f"Quant {what}={v}"

        makers.append(make)

    if quants:
        quant_input(3, QUANT_BITS, "bit_width")
        quant_input(1, QUANT_SCALES, "scale")
        quant_input(2, [math.nan, math.inf], "zero_point")
        for attr, values in (("signed", [5, -1]), ("narrow", [7]), ("rounding_mode", ["JUNK", "", "ROUND;rm -rf"])):

            def make(c: onnx.ModelProto, attr=attr, values=values) -> str | None:
                node, v = rng.choice([n for n in c.graph.node if n.op_type == "Quant"]), rng.choice(values)
                _set_attr(node, attr, v)
                return f"Quant {attr}={v!r}"

            makers.append(make)
    if convs:

        def conv_group(c: onnx.ModelProto) -> str:
            node, v = rng.choice([n for n in c.graph.node if n.op_type == "Conv"]), rng.choice([0, -1, 2**31 - 1])
            _set_attr(node, "group", v)
            return f"Conv group={v}"

        def conv_kernel(c: onnx.ModelProto) -> str:
            node = rng.choice([n for n in c.graph.node if n.op_type == "Conv"])
            _set_attr(node, "kernel_shape", [rng.choice([0, -3, 10**6])] * 2)
            return "Conv kernel_shape bad"

        makers += [conv_group, conv_kernel]

    def input_dims(c: onnx.ModelProto) -> str | None:
        ins = [i for i in c.graph.input if i.name not in inits and i.type.tensor_type.HasField("shape")]
        if not ins or not ins[0].type.tensor_type.shape.dim:
            return None
        dims = ins[0].type.tensor_type.shape.dim
        d, v = rng.randrange(len(dims)), rng.choice([-3, 0, 2**40])
        dims[d].Clear()
        dims[d].dim_value = v
        return f"input dim {d}={v}"

    def const_of_shape(c: onnx.ModelProto) -> str:
        side = rng.choice([65536, 2**20])
        c.graph.initializer.append(numpy_helper.from_array(np.array([side, side], dtype=np.int64), "fz_shape"))
        c.graph.node.append(helper.make_node("ConstantOfShape", ["fz_shape"], ["fz_big"], name="fz_cos",
                                             value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])))  # fmt: skip
        c.graph.output.append(helper.make_tensor_value_info("fz_big", TensorProto.FLOAT, [side, side]))
        return f"ConstantOfShape [{side},{side}]"

    makers += [input_dims, const_of_shape]
    while True:
        c = _copy(m)
        label = rng.choice(makers)(c)
        if label is not None:
            # a batch of 0 is re-batched to 1 like any fixed batch; every other bad dim must be refused
            expect = (
                "any"
                if label.startswith("ConstantOfShape") or "=1099511627776" in label or label == "input dim 0=0"
                else "refuse"
            )
            yield _mutant("attr", label, base, c, expect)


# ------------------------------------------------------------------ external data
def _externalise(m: onnx.ModelProto) -> tuple[onnx.ModelProto, onnx.TensorProto, bytes] | None:
    big = max(m.graph.initializer, key=lambda t: len(t.raw_data) or 0, default=None)
    if big is None or not big.raw_data:
        return None
    c = _copy(m)
    t = next(t for t in c.graph.initializer if t.name == big.name)
    data = t.raw_data
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    return c, t, data


def _ext(t: onnx.TensorProto, **kv: str) -> None:
    del t.external_data[:]
    for k, v in kv.items():
        e = t.external_data.add()
        e.key, e.value = k, v


def extdata_family(base: str, m: onnx.ModelProto, rng: random.Random) -> Iterator[Mutant]:
    """The largest initializer moved to a weights file, then offsets, lengths and paths broken or escaping."""
    made = _externalise(m)
    if made is None:
        return
    _, _, data = made
    n = len(data)
    secret = {"secret.bin": bytes(n + 64)}
    cases: list[tuple[str, dict[str, str], str, dict[str, bytes], dict[str, str]]] = [
        ("valid", {"location": "w.bin", "offset": "0", "length": str(n)}, "same", {"m/w.bin": data}, {}),
        ("offset -1", {"location": "w.bin", "offset": "-1", "length": str(n)}, "refuse", {"m/w.bin": data}, {}),
        ("offset huge", {"location": "w.bin", "offset": str(2**62), "length": str(n)}, "refuse", {"m/w.bin": data}, {}),
        ("offset past end", {"location": "w.bin", "offset": str(n), "length": str(n)}, "refuse", {"m/w.bin": data}, {}),
        ("length -1", {"location": "w.bin", "offset": "0", "length": "-1"}, "refuse", {"m/w.bin": data}, {}),
        ("length huge", {"location": "w.bin", "offset": "0", "length": str(2**62)}, "refuse", {"m/w.bin": data}, {}),
        (
            "length short",
            {"location": "w.bin", "offset": "0", "length": str(max(n // 2, 1))},
            "refuse",
            {"m/w.bin": data},
            {},
        ),
        ("length junk", {"location": "w.bin", "offset": "0", "length": "12abc"}, "refuse", {"m/w.bin": data}, {}),
        ("file short", {"location": "w.bin"}, "refuse", {"m/w.bin": data[: n // 2]}, {}),
        ("escape ../", {"location": "../secret.bin", "offset": "0", "length": str(n)}, "refuse", secret, {}),
        ("escape abs", {"location": "/etc/hostname"}, "refuse", {}, {}),
        ("dev zero", {"location": "/dev/zero", "length": str(2**40)}, "refuse", {}, {}),
        ("symlink out", {"location": "w.bin"}, "refuse", secret, {"m/w.bin": "../secret.bin"}),
        ("symlink devzero", {"location": "w.bin", "length": str(2**40)}, "refuse", {}, {"m/w.bin": "/dev/zero"}),
        ("missing", {"location": "nope.bin"}, "refuse", {}, {}),
        ("empty location", {"location": ""}, "refuse", {}, {}),
        ("location dir", {"location": "."}, "refuse", {}, {}),
        ("location NUL", {"location": "w.bin\x00.txt"}, "refuse", {"m/w.bin": data}, {}),
        ("no location", {"offset": "0"}, "refuse", {"m/w.bin": data}, {}),
    ]
    while True:
        label, kv, expect, extra, links = rng.choice(cases)
        c, t, _ = _externalise(m)  # type: ignore[misc]
        _ext(t, **kv)
        yield _mutant("extdata", label, base, c, expect, extra, links)


# ------------------------------------------------------------------ names
NAMES = [
    "δ_ü/名前",
    "a b",
    "x;rm -rf ~",
    "$(touch pwned)",
    "`id`",
    "'\"",
    "</script><script>alert(1)</script>",
    "%s%n%x",
    "..",
    "../../etc/passwd",
    "a\nb",
    "\t",
    "CON",
    "1abc",
    "-rf",
    "{{7*7}}",
    "\\\\",
    "a" * 5000,
    "",
]


def _rename_tensor(m: onnx.ModelProto, old: str, new: str) -> None:
    g = m.graph
    for n in g.node:
        n.input[:] = [new if x == old else x for x in n.input]
        n.output[:] = [new if x == old else x for x in n.output]
    for coll in (g.input, g.output, g.value_info, g.initializer):
        for v in coll:
            if v.name == old:
                v.name = new
    for ann in g.quantization_annotation:
        if ann.tensor_name == old:
            ann.tensor_name = new


def names_family(base: str, m: onnx.ModelProto, rng: random.Random) -> Iterator[Mutant]:
    """Unicode, injection-like, very long, empty, duplicate and invalid-UTF-8 node and tensor names."""
    while True:
        c = _copy(m)
        kind = rng.choice(["node", "tensor", "dup-node", "graph", "utf8", "all-nodes"])
        name = rng.choice(NAMES)
        if kind == "node" and c.graph.node:
            rng.choice(c.graph.node).name = name
        elif kind == "all-nodes":
            for i, n in enumerate(c.graph.node):
                n.name = f"{name}{i}"
        elif kind == "dup-node" and len(c.graph.node) > 1:
            for n in c.graph.node:
                n.name = "same"
        elif kind == "graph":
            c.graph.name = name
        elif kind == "tensor" or kind == "utf8":
            produced = [o for n in c.graph.node for o in n.output if o]
            if not produced:
                continue
            old = rng.choice(produced)
            if kind == "utf8":
                marker = "Q" * 12
                _rename_tensor(c, old, marker)
                raw = c.SerializeToString().replace(marker.encode(), b"\xff\xfe\xc3(" + b"Q" * 8)
                yield _mutant("names", "invalid utf-8 tensor name", base, raw, "any")
                continue
            if name == "" or name in {o for n in c.graph.node for o in list(n.input) + list(n.output)}:
                continue
            _rename_tensor(c, old, name)
        else:
            continue
        yield _mutant("names", f"{kind}={name[:24]!r}", base, c, "same")


# ------------------------------------------------------------------ graph surgery
def graph_family(base: str, m: onnx.ModelProto, rng: random.Random) -> Iterator[Mutant]:
    """Outputs dropped, inputs dangling, cycles, duplicate producers, long chains, bad opsets."""
    inits = {t.name for t in m.graph.initializer}
    while True:
        c = _copy(m)
        g = c.graph
        kind = rng.choice(["no-outputs", "dangling", "drop-node", "cycle", "dup-output", "chain", "opset", "no-nodes",
                           "no-inputs", "drop-init"])  # fmt: skip
        expect = "refuse"
        if kind == "no-outputs":
            del g.output[:]
        elif kind == "dangling" and g.node:
            n = rng.choice(g.node)
            if n.input:
                n.input[0] = "fz_nowhere"
            else:
                n.input.append("fz_nowhere")
        elif kind == "drop-node" and len(g.node) > 1:
            producers = [
                i for i, n in enumerate(g.node) if any(o in {x for k in g.node for x in k.input} for o in n.output)
            ]
            if not producers:
                continue
            del g.node[rng.choice(producers)]
        elif kind == "cycle" and len(g.node) > 1:
            first = next((n for n in g.node if any(x not in inits for x in n.input)), None)
            if first is None:
                continue
            i = next(k for k, x in enumerate(first.input) if x not in inits)
            first.input[i] = g.node[-1].output[0]
        elif kind == "dup-output" and len(g.node) > 1:
            a, b = rng.sample(range(len(g.node)), 2)
            g.node[b].output[0] = g.node[a].output[0]
        elif kind == "chain":
            length = rng.choice([500, 2000])
            out = g.output[0]
            prev = out.name
            new = "fz_chain_in"
            _rename_tensor(c, prev, new)
            g.output[0].name = prev  # the graph output keeps its name, at the end of the chain
            x = new
            for k in range(length):
                y = prev if k == length - 1 else f"fz_chain_{k}"
                g.node.append(helper.make_node("Identity" if k % 2 else "Relu", [x], [y], name=f"fz_chain_node_{k}"))
                x = y
            expect = "any"
            kind = f"chain {length}"
        elif kind == "opset":
            v = rng.choice([1, 99, 10**6])
            for op in c.opset_import:
                if op.domain in ("", "ai.onnx"):
                    op.version = v
            kind = f"opset {v}"
            expect = "any" if v == 1 else "refuse"  # opset 1 is real: upgraded by onnx's converter, or refused
        elif kind == "no-nodes":
            del g.node[:]
        elif kind == "no-inputs":
            keep = [i for i in g.input if i.name in inits]
            del g.input[:]
            g.input.extend(keep)
        elif kind == "drop-init" and g.initializer:
            used = {x for n in g.node for x in n.input}
            cand = [t for t in g.initializer if t.name in used]
            if not cand:
                continue
            t = rng.choice(cand)
            g.initializer.remove(t)
            for i in [i for i in g.input if i.name == t.name]:
                g.input.remove(i)
        else:
            continue
        yield _mutant("graph", kind, base, c, expect)


FAMILIES: dict[str, Callable[[str, onnx.ModelProto, random.Random], Iterator[Mutant]]] = {
    "bytes": bytes_family, "attr": attr_family, "extdata": extdata_family, "names": names_family, "graph": graph_family,
}  # fmt: skip


def generate(models: list[Path], per_model: dict[str, int], seed: int = 0, root: Path | None = None) -> list[Mutant]:
    """``per_model[family]`` mutants of each model, seeded; labels name the base model relative to ``root``."""
    out: list[Mutant] = []
    for path in models:
        base = str(path.relative_to(root)) if root else path.name
        m = onnx.load(str(path), load_external_data=False)
        for fam, count in per_model.items():
            rng = random.Random(f"{seed}:{base}:{fam}")
            it = FAMILIES[fam](base, m, rng)
            for _ in range(count):
                mut = next(it, None)
                if mut is None:
                    break
                out.append(mut)
    return out


def base_mutant(path: Path, root: Path | None = None) -> Mutant:
    """The unmutated model, as a Mutant (the reference for ``same``)."""
    base = str(path.relative_to(root)) if root else path.name
    return Mutant("base", "unmutated", base, {MODEL: path.read_bytes()}, "any")


__all__ = ["FAMILIES", "MODEL", "Mutant", "base_mutant", "generate"]
