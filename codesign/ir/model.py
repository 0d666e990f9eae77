"""The IR: one QONNX model, with cached per-tensor facts the passes read many times.

The core is qonnx's ``ModelWrapper`` (so every qonnx/FINN transformation runs on it
unchanged). ``Model`` adds O(1) look-ups of shapes, datatypes, constants, producers and
consumers, which qonnx computes by scanning the graph on every call; the search costs
thousands of models a minute and cannot pay that scan per query.

Caches are rebuilt lazily. Code that mutates ``model.proto`` in place must call
:meth:`Model.invalidate` afterwards; passes that return a new model need not.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation

from codesign.ir.datatypes import FLOAT32, BaseDataType, DataType

if TYPE_CHECKING:
    import networkx as nx

#: Ops whose output is a quantized copy of their first input (weights or activations).
QUANT_OPS = frozenset({"Quant", "BipolarQuant", "Trunc", "FloatQuant", "IntQuant"})
#: ONNX element types of float tensors (float, float16, double, bfloat16)
_FLOAT_ELEM_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                               onnx.TensorProto.BFLOAT16})  # fmt: skip

_DATATYPES: dict[str, BaseDataType] = {}


def _datatype(name: str) -> BaseDataType:
    """``DataType[name]``, memoised: qonnx re-parses the name on every look-up."""
    dt = _DATATYPES.get(name)
    if dt is None:
        dt = _DATATYPES[name] = DataType[name]
    return dt


def _to_array(t: onnx.TensorProto) -> np.ndarray:
    """numpy_helper.to_array with a fast path for raw float32 (most weights and scales)."""
    if t.data_type == onnx.TensorProto.FLOAT and t.raw_data and not t.external_data:
        return np.frombuffer(t.raw_data, dtype=np.float32).reshape(tuple(t.dims))
    return numpy_helper.to_array(t)


class Model:
    """A QONNX graph with per-tensor shapes, datatypes, weights and sparsity."""

    def __init__(self, model: Model | ModelWrapper | onnx.ModelProto, *, copy_proto: bool = False):
        if isinstance(model, Model):
            proto = model.proto
        elif isinstance(model, ModelWrapper):
            proto = model.model
        elif isinstance(model, onnx.ModelProto):
            proto = model
        else:
            raise TypeError(f"Model expects a ModelProto, ModelWrapper or Model, got {type(model).__name__}")
        if copy_proto:
            proto = copy.deepcopy(proto)
        self.wrapper = ModelWrapper(proto, fix_missing_initializer_valueinfo=False)
        self.invalidate()

    # ----------------------------------------------------------------- plumbing
    @property
    def proto(self) -> onnx.ModelProto:
        """The underlying ONNX ModelProto (shared, not copied)."""
        return self.wrapper.model

    @property
    def graph(self) -> onnx.GraphProto:
        return self.wrapper.model.graph

    @property
    def nodes(self) -> list[onnx.NodeProto]:
        return list(self.graph.node)

    def copy(self) -> Model:
        """A deep copy: passes mutate copies, never the caller's model."""
        return Model(self.proto, copy_proto=True)

    def invalidate(self) -> None:
        """Drop every cache; call after mutating the proto in place."""
        self._shapes: dict[str, tuple[int, ...] | None] = {}
        self._vis: dict[str, onnx.ValueInfoProto] | None = None
        self._dtypes: dict[str, BaseDataType] | None = None
        self._inits: dict[str, onnx.TensorProto] | None = None
        self._arrays: dict[str, np.ndarray] = {}
        self._consts: dict[str, np.ndarray | None] = {}
        self._nonzeros: dict[str, int] = {}
        self._producers: dict[str, onnx.NodeProto] | None = None
        self._consumers: dict[str, list[onnx.NodeProto]] | None = None

    # ----------------------------------------------------------------- tensors
    @property
    def inputs(self) -> list[str]:
        """Graph inputs that are not initializers (the model's real inputs)."""
        inits = self._initializers()
        return [i.name for i in self.graph.input if i.name not in inits]

    @property
    def outputs(self) -> list[str]:
        return [o.name for o in self.graph.output]

    def _initializers(self) -> dict[str, onnx.TensorProto]:
        if self._inits is None:
            self._inits = {t.name: t for t in self.graph.initializer}
        return self._inits

    def _value_infos(self) -> dict[str, onnx.ValueInfoProto]:
        if self._vis is None:
            g = self.graph
            self._vis = {vi.name: vi for coll in (g.value_info, g.output, g.input) for vi in coll}
        return self._vis

    def shape(self, name: str) -> tuple[int, ...] | None:
        """Static shape of tensor ``name``, or None when unknown or symbolic."""
        if name in self._shapes:
            return self._shapes[name]
        shape: tuple[int, ...] | None = None
        init = self._initializers().get(name)
        if init is not None:
            shape = tuple(int(d) for d in init.dims)
        else:
            vi = self._value_infos().get(name)
            if vi is not None and vi.type.tensor_type.HasField("shape"):
                dims = vi.type.tensor_type.shape.dim
                if all(d.HasField("dim_value") for d in dims):
                    shape = tuple(int(d.dim_value) for d in dims)
        self._shapes[name] = shape
        return shape

    def is_float(self, name: str) -> bool:
        """Whether tensor ``name`` holds floats (ONNX element type float/double/half), False when unknown."""
        init = self._initializers().get(name)
        if init is not None:
            return init.data_type in _FLOAT_ELEM_TYPES
        vi = self._value_infos().get(name)
        return vi is not None and vi.type.tensor_type.elem_type in _FLOAT_ELEM_TYPES

    def _build_dtypes(self) -> dict[str, BaseDataType]:
        out: dict[str, BaseDataType] = {}
        for ann in self.graph.quantization_annotation:
            for kv in ann.quant_parameter_tensor_names:
                if kv.key == "finn_datatype" and kv.value:
                    out[ann.tensor_name] = _datatype(kv.value)
        return out

    def dtype(self, name: str) -> BaseDataType:
        """QONNX datatype of tensor ``name`` (FLOAT32 when not annotated)."""
        if self._dtypes is None:
            self._dtypes = self._build_dtypes()
        dt = self._dtypes.get(name)
        if dt is not None:
            return dt
        return self.wrapper.get_tensor_datatype(name) if self._has_vi(name) else FLOAT32

    def _has_vi(self, name: str) -> bool:
        return name in self._initializers() or name in self._value_infos()

    def set_dtype(self, name: str, dt: BaseDataType | str) -> None:
        dt = DataType[dt] if isinstance(dt, str) else dt
        self.wrapper.set_tensor_datatype(name, dt)
        if self._dtypes is not None:
            self._dtypes[name] = dt

    def initializer(self, name: str) -> np.ndarray | None:
        """Initializer ``name`` as numpy (cached), or None."""
        arr = self._arrays.get(name)
        if arr is None:
            t = self._initializers().get(name)
            if t is None:
                return None
            arr = _to_array(t)
            self._arrays[name] = arr
        return arr

    def set_initializer(self, name: str, value: np.ndarray) -> None:
        """Set (or add) initializer ``name``; a same-shape, same-type update is in place, in O(1)
        (qonnx's scans every initializer and value_info: quadratic over a model's biases)."""
        old = self._initializers().get(name)
        new = numpy_helper.from_array(np.asarray(value), name)
        if old is not None and list(old.dims) == list(new.dims) and old.data_type == new.data_type:
            old.CopyFrom(new)
            self._arrays.pop(name, None)
            self._consts, self._nonzeros = {}, {}  # values derived from constants
            return
        self.wrapper.set_initializer(name, value)
        self.invalidate()

    def is_constant(self, name: str) -> bool:
        return self.constant(name) is not None

    def constant(self, name: str) -> np.ndarray | None:
        """Value of ``name`` if it is static: an initializer, or a quantizer of one.

        Weight quantizers (``Quant`` on an initializer) stay in the graph as QONNX
        requires; the quantized value is computed here so that sparsity and weight
        statistics see what the hardware sees.
        """
        if name in self._consts:
            return self._consts[name]
        value = self.initializer(name)
        if value is None:
            node = self.producer(name)
            if node is not None and node.op_type in QUANT_OPS:
                value = self._fold_quant(node)
        self._consts[name] = value
        return value

    def _fold_quant(self, node: onnx.NodeProto) -> np.ndarray | None:
        from codesign.ir.quant import execute_quant

        if self.constant(node.input[0]) is None:  # an activation quantizer: not static
            return None
        args = [self.constant(i) if i else None for i in node.input]
        if any(a is None for a, i in zip(args, node.input) if i):
            return None
        return execute_quant(node, args)

    def nonzero(self, name: str) -> int:
        """Number of non-zero values of a constant tensor (cached; 0 if dynamic)."""
        count = self._nonzeros.get(name)
        if count is None:
            value = self.constant(name)
            count = self._nonzeros[name] = 0 if value is None else int(np.count_nonzero(value))
        return count

    def sparsity(self, name: str) -> float | None:
        """Share of exact zeros in a constant tensor (quantized value), None if dynamic."""
        value = self.constant(name)
        if value is None or value.size == 0:
            return None
        return 1.0 - np.count_nonzero(value) / value.size

    # ----------------------------------------------------------------- topology
    def producer(self, name: str) -> onnx.NodeProto | None:
        if self._producers is None:
            self._producers = {o: n for n in self.graph.node for o in n.output}
        return self._producers.get(name)

    def consumers(self, name: str) -> list[onnx.NodeProto]:
        if self._consumers is None:
            cons: dict[str, list[onnx.NodeProto]] = {}
            for n in self.graph.node:
                for i in n.input:
                    cons.setdefault(i, []).append(n)
            self._consumers = cons
        return self._consumers.get(name, [])

    def node_bypassed(self, node: onnx.NodeProto, src: str, dst: str) -> None:
        """``node`` (``src`` -> ``dst``) is gone and ``dst``'s readers read ``src``: the topology caches follow."""
        if self._consumers is not None:
            readers = self._consumers.pop(dst, [])
            self._consumers[src] = [c for c in self._consumers.get(src, []) if c is not node] + readers
        if self._producers is not None:
            self._producers.pop(dst, None)

    def node(self, name: str) -> onnx.NodeProto:
        for n in self.graph.node:
            if n.name == name:
                return n
        raise KeyError(f"no node named {name!r}")

    def nodes_of(self, op_types: Iterable[str]) -> list[onnx.NodeProto]:
        wanted = set(op_types)
        return [n for n in self.graph.node if n.op_type in wanted]

    def graph_view(self) -> nx.DiGraph:
        """The dataflow graph as networkx: node names are ONNX node names."""
        from codesign.ir.graph import to_networkx

        return to_networkx(self)

    # ----------------------------------------------------------------- passes
    def transform(self, step: Any) -> Model:
        """Apply a codesign pass or a qonnx Transformation; returns the new model, this one untouched.

        Duck-typed (a pass is any callable returning a result with ``.model``) so that the IR,
        the ground floor, imports nothing from the passes built on it.
        """
        if isinstance(step, Transformation):
            return Model(self.wrapper.transform(step, make_deepcopy=True, cleanup=False))
        result = step(self)
        if not hasattr(result, "model"):
            raise TypeError(f"{step!r} is not a pass; wrap functions in codesign.passes.FunctionalPass")
        return result.model

    def analysis(self, fn: Any) -> Any:
        """Run a qonnx-style analysis function ``fn(ModelWrapper) -> dict``."""
        return fn(self.wrapper)

    # ----------------------------------------------------------------- io
    def save(self, path: str | Path) -> Path:
        """Write the model as one self-contained .onnx file."""
        from codesign.ir.io import save_model

        return save_model(self, Path(path))

    def validate(self) -> None:
        """Raise :class:`codesign.errors.ValidationError` if an invariant is broken."""
        from codesign.ir.validate import validate

        validate(self)

    def __repr__(self) -> str:
        return f"<codesign.Model {self.graph.name or '?'}: {len(self.graph.node)} nodes>"


def as_model(model: Model | ModelWrapper | onnx.ModelProto) -> Model:
    """Coerce whatever a qonnx/FINN flow holds into a :class:`Model` (no copy)."""
    return model if isinstance(model, Model) else Model(model)
