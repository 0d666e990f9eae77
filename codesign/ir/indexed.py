"""A read-mostly view of a ``ModelWrapper`` with O(1) look-ups, for qonnx node code.

qonnx's ``ModelWrapper`` answers ``get_initializer``, ``get_tensor_valueinfo``,
``get_tensor_datatype`` and ``find_producer`` by scanning the graph, so running its
per-node code (datatype inference, custom-op hooks) over every node is quadratic: a
5,000-node chain took a minute. This view indexes the graph once; datatype writes are
kept in a dict and written back in one pass by :meth:`IndexedWrapper.commit_datatypes`.
It must not be used across graph edits (nodes, initializers, value_info).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from qonnx.core.datatype import BaseDataType, DataType
from qonnx.core.modelwrapper import ModelWrapper

_ONNX_TO_QONNX = {onnx.TensorProto.FLOAT: "FLOAT32", onnx.TensorProto.FLOAT16: "FLOAT16"}
_KEY = "finn_datatype"


class IndexedWrapper:
    """Duck-typed ``ModelWrapper`` whose look-ups are dict hits (see module docstring)."""

    def __init__(self, wrapper: ModelWrapper):
        self._w = wrapper
        g = wrapper.model.graph
        self._inits = {t.name: t for t in g.initializer}
        self._arrays: dict[str, np.ndarray] = {}
        self._vis: dict[str, onnx.ValueInfoProto] = {}
        for coll in (g.value_info, g.output, g.input):
            for vi in coll:
                self._vis.setdefault(vi.name, vi)
        self._dtypes: dict[str, BaseDataType | None] = {}
        for ann in g.quantization_annotation:
            for kv in ann.quant_parameter_tensor_names:
                if kv.key == _KEY and kv.value:
                    self._dtypes[ann.tensor_name] = DataType[kv.value]
        self._changed: set[str] = set()
        self._producers = {o: n for n in g.node for o in n.output}
        self._consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in g.node:
            for i in n.input:
                self._consumers.setdefault(i, []).append(n)

    def __getattr__(self, name: str) -> Any:  # everything not indexed: qonnx's own
        return getattr(self._w, name)

    # ---------------------------------------------------------------- look-ups
    def get_initializer(self, tensor_name: str, return_dtype: bool = False) -> Any:
        t = self._inits.get(tensor_name)
        if t is None:
            return (None, None) if return_dtype else None
        arr = self._arrays.get(tensor_name)
        if arr is None:
            arr = self._arrays[tensor_name] = numpy_helper.to_array(t)
        return (arr, t.data_type) if return_dtype else arr

    def get_tensor_valueinfo(self, tensor_name: str) -> onnx.ValueInfoProto | None:
        return self._vis.get(tensor_name)

    def get_tensor_shape(self, tensor_name: str, fix_missing_init_shape: bool = False) -> list[int] | None:
        vi = self._vis.get(tensor_name)
        if vi is not None and vi.type.tensor_type.HasField("shape"):
            return [d.dim_value for d in vi.type.tensor_type.shape.dim]  # 0 when symbolic, as qonnx
        t = self._inits.get(tensor_name)
        return list(t.dims) if t is not None else None

    def find_producer(self, tensor_name: str) -> onnx.NodeProto | None:
        return self._producers.get(tensor_name)

    def find_consumers(self, tensor_name: str) -> list[onnx.NodeProto]:
        return list(self._consumers.get(tensor_name, []))

    def find_consumer(self, tensor_name: str) -> onnx.NodeProto | None:
        cons = self._consumers.get(tensor_name, [])
        return cons[0] if len(cons) == 1 else None

    def find_direct_predecessors(self, node: onnx.NodeProto) -> list[onnx.NodeProto] | None:
        preds = [self._producers[i] for i in node.input if i in self._producers]
        return preds or None

    def find_direct_successors(self, node: onnx.NodeProto) -> list[onnx.NodeProto] | None:
        succ = [c for o in node.output for c in self._consumers.get(o, [])]
        return succ or None

    # ---------------------------------------------------------------- datatypes
    def get_tensor_datatype(self, tensor_name: str) -> BaseDataType:
        dt = self._dtypes.get(tensor_name)
        if dt is not None:
            return dt
        vi = self._vis.get(tensor_name)
        if vi is not None:
            elem = vi.type.tensor_type.elem_type
        else:
            t = self._inits.get(tensor_name)
            elem = t.data_type if t is not None else onnx.TensorProto.FLOAT
        return DataType[_ONNX_TO_QONNX.get(elem, "FLOAT32")]

    def set_tensor_datatype(self, tensor_name: str, datatype: BaseDataType | None) -> None:
        if self._dtypes.get(tensor_name) != datatype:
            self._dtypes[tensor_name] = datatype
            self._changed.add(tensor_name)

    def commit_datatypes(self) -> bool:
        """Write changed datatypes into the graph's quantization annotations, in one pass."""
        if not self._changed:
            return False
        g = self._w.model.graph
        anns = {a.tensor_name: a for a in g.quantization_annotation}
        for name in sorted(self._changed):
            dt = self._dtypes.get(name)
            ann = anns.get(name)
            entry = (
                None if ann is None else next((kv for kv in ann.quant_parameter_tensor_names if kv.key == _KEY), None)
            )
            if dt is None:
                if entry is not None:
                    entry.Clear()
                continue
            if ann is None:
                ann = g.quantization_annotation.add()
                ann.tensor_name = name
                anns[name] = ann
            if entry is None:
                entry = ann.quant_parameter_tensor_names.add()
                entry.key = _KEY
            entry.value = dt.name
        self._changed.clear()
        return True
