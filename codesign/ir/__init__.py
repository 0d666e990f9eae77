"""The IR: a QONNX graph with shapes, datatypes, weights, sparsity and a graph view."""

from codesign.ir.datatypes import DataType, bitwidth, parse_dtype
from codesign.ir.model import Model, as_model

__all__ = ["Model", "as_model", "DataType", "parse_dtype", "bitwidth"]
