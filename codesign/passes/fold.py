"""Constant folding with a size limit, in linear time.

qonnx's ``FoldConstants`` folds one node per sweep and re-infers every shape after each,
and folds whatever it is given: a 2.5 kB file with ``ConstantOfShape([16384, 16384])``
grew past 8 GiB. Here every standard-domain node whose inputs are all constant (and every
``Shape`` of a statically shaped tensor) is folded in one topological sweep, after its
output size is checked against a limit (``CODESIGN_MAX_FOLD_BYTES``, default 256 MiB):
a larger tensor is refused, naming the node, before anything is allocated.
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import onnx
from onnx import helper, numpy_helper

from codesign.errors import UnsupportedModelError
from codesign.ir.model import Model
from codesign.passes.base import Pass, PassResult

DEFAULT_MAX_FOLD_BYTES = 256 * 1024**2
#: Ops that must never be folded: their value is not a function of their inputs.
NONDETERMINISTIC = frozenset(
    {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli", "Dropout"}
)


def max_fold_bytes() -> int:
    """The folding limit in bytes (``CODESIGN_MAX_FOLD_BYTES`` overrides the default)."""
    raw = os.environ.get("CODESIGN_MAX_FOLD_BYTES")
    try:
        return int(raw) if raw else DEFAULT_MAX_FOLD_BYTES
    except ValueError:
        return DEFAULT_MAX_FOLD_BYTES


def _attr(node: onnx.NodeProto, name: str, default: object = None) -> object:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _ints(value: np.ndarray | None) -> list[int] | None:
    if value is None:
        return None
    flat = np.asarray(value).reshape(-1)
    if flat.dtype.kind not in "iuf" or not np.all(np.isfinite(flat.astype(np.float64))):
        return None
    return [int(v) for v in flat]


_SIZED_BY_VALUES = frozenset({"ConstantOfShape", "Expand", "Tile", "Range", "Resize", "Upsample"})


def _elements(model: Model, node: onnx.NodeProto, consts: dict[str, np.ndarray]) -> int | None:
    """Upper bound on the elements of ``node``'s largest output, or None if unknown."""
    op = node.op_type
    val = [consts.get(i) if i else None for i in node.input]
    if op not in _SIZED_BY_VALUES:  # those are sized by their operands' values, whatever the declared shape says
        shapes = [model.shape(o) for o in node.output if o]
        if shapes and all(s is not None for s in shapes):
            return max(math.prod(s) for s in shapes)
    if op == "ConstantOfShape":
        dims = _ints(val[0]) if val else []
        if dims is None:
            return None
        if any(d < 0 for d in dims):
            raise UnsupportedModelError(f"node {node.name!r} (ConstantOfShape): negative dimension in shape {dims}")
        return math.prod(dims)
    if op == "Expand" and len(val) > 1:
        dims = _ints(val[1])
        if dims is None or val[0] is None:
            return None
        a, b = list(val[0].shape), [max(d, 1) for d in dims]
        rank = max(len(a), len(b))
        a, b = [1] * (rank - len(a)) + a, [1] * (rank - len(b)) + b
        return math.prod(max(x, y) for x, y in zip(a, b))
    if op == "Tile" and len(val) > 1 and val[0] is not None:
        reps = _ints(val[1])
        return None if reps is None else val[0].size * math.prod(max(r, 0) for r in reps)
    if op == "Range" and len(val) == 3 and all(v is not None for v in val):
        start, limit, delta = (float(np.asarray(v).reshape(-1)[0]) for v in val)
        if delta == 0 or not all(map(math.isfinite, (start, limit, delta))):
            raise UnsupportedModelError(f"node {node.name!r} (Range): delta 0 or non-finite bounds")
        return max(0, math.ceil((limit - start) / delta))
    if op in ("Resize", "Upsample") and val and val[0] is not None:
        scales = next((v for v in val[1:][::-1] if v is not None and v.size and v.dtype.kind == "f"), None)
        sizes = _ints(val[3]) if op == "Resize" and len(val) > 3 and val[3] is not None and val[3].size else None
        if sizes is not None:
            return math.prod(max(s, 0) for s in sizes)
        if scales is not None:
            return int(val[0].size * float(np.prod(np.abs(scales.astype(np.float64))))) + 1
        return None
    sizes = [v.size for v in val if v is not None]
    return max(sizes) if sizes else None


def _shape_value(node: onnx.NodeProto, shape: tuple[int, ...]) -> np.ndarray:
    rank = len(shape)
    start, end = int(_attr(node, "start", 0)), _attr(node, "end", None)
    start = max(0, start + rank if start < 0 else start)
    stop = rank if end is None else (int(end) + rank if int(end) < 0 else int(end))
    return np.array(shape[start:stop], dtype=np.int64)


def _run_node(model: Model, node: onnx.NodeProto, consts: dict[str, np.ndarray]) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    feeds = {i: consts[i] for i in node.input if i}
    graph = helper.make_graph(
        [node], "fold",
        [helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape)) for i, v in feeds.items()],
        [helper.make_empty_tensor_value_info(o) for o in node.output if o],
    )  # fmt: skip
    opsets = [o for o in model.proto.opset_import if o.domain in ("", "ai.onnx")] or [helper.make_opsetid("", 13)]
    proto = helper.make_model(graph, opset_imports=opsets, ir_version=model.proto.ir_version or 8)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return list(ReferenceEvaluator(proto).run(None, feeds))


def fold_constants(model: Model, exclude: frozenset[str] = frozenset(), limit: int | None = None) -> bool:
    """Fold constant nodes in place (see module docstring); True if any node was folded."""
    limit = max_fold_bytes() if limit is None else limit
    g = model.graph
    consts: dict[str, np.ndarray] = {}
    init_names = {t.name for t in g.initializer}
    nodes = list(g.node)
    folded: set[int] = set()
    new_inits: list[onnx.TensorProto] = []
    for idx, node in enumerate(nodes):
        if node.domain not in ("", "ai.onnx") or node.op_type in exclude or node.op_type in NONDETERMINISTIC:
            continue
        if not node.output or any(o in init_names for o in node.output):
            continue
        if node.op_type == "Shape" and node.input and model.shape(node.input[0]) is not None:
            values = [_shape_value(node, model.shape(node.input[0]))]
        elif all((not i) or i in consts or i in init_names for i in node.input):
            for i in node.input:
                if i and i not in consts:
                    consts[i] = model.initializer(i)
            count = _elements(model, node, consts)
            if count is not None and count * 8 > limit:
                raise UnsupportedModelError(
                    f"node {node.name!r} ({node.op_type}) would fold to a constant of {count} elements, over the "
                    f"{limit // 1024**2} MiB constant-folding limit (CODESIGN_MAX_FOLD_BYTES)"
                )
            try:
                values = _run_node(model, node, consts)
            except Exception as exc:
                first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
                raise UnsupportedModelError(
                    f"node {node.name!r} ({node.op_type}): cannot evaluate constant ({first[:200]})"
                ) from None
        else:
            continue
        for out, value in zip([o for o in node.output if o], values):
            value = np.asarray(value)
            if value.nbytes > limit:
                raise UnsupportedModelError(
                    f"node {node.name!r} ({node.op_type}) folds to {value.nbytes} bytes, over the constant-folding limit"
                )
            consts[out] = value
            new_inits.append(numpy_helper.from_array(value, out))
        folded.add(idx)
    if not folded:
        return False
    keep = [n for k, n in enumerate(nodes) if k not in folded]
    g.ClearField("node")
    g.node.extend(keep)
    g.initializer.extend(new_inits)
    produced = {t.name for t in new_inits}
    kept_vi = [vi for vi in g.value_info if vi.name not in produced]
    g.ClearField("value_info")
    g.value_info.extend(kept_vi)
    model.invalidate()
    return True


class FoldConstantSubgraphs(Pass):
    """Fold constant sub-graphs (Shape/Gather/Concat flattens...), keeping quantizers."""

    def __init__(self, exclude: frozenset[str] = frozenset(), limit: int | None = None):
        self.exclude, self.limit = frozenset(exclude), limit

    def call(self, model: Model) -> PassResult:
        from codesign.passes.shapes import infer_shapes

        modified = False
        for _ in range(8):  # a Shape whose input's shape only became static after folding
            if not fold_constants(model, self.exclude, self.limit):
                break
            modified = True
            infer_shapes(model)
        return PassResult(model, modified)
