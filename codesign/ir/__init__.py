"""The IR: a QONNX graph with shapes, datatypes, weights, sparsity and a graph view."""

from codesign.ir.datatypes import DataType, bitwidth, parse_dtype
from codesign.ir.model import Model, as_model

__all__ = ["DataType", "Model", "as_model", "bitwidth", "parse_dtype"]
