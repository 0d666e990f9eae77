"""QONNX datatypes as the IR uses them: parse, name, and bit widths.

qonnx's ``DataType`` is the single source of truth; this module adds the few helpers the
cost passes and backends need so that none of them re-implement datatype parsing.
"""

from __future__ import annotations

from qonnx.core.datatype import BaseDataType, DataType

FLOAT32: BaseDataType = DataType["FLOAT32"]

__all__ = ["FLOAT32", "BaseDataType", "DataType", "bitwidth", "dtype_name", "is_float", "parse_dtype"]


def parse_dtype(name: str | BaseDataType) -> BaseDataType:
    """Parse ``"INT8"``, ``"UINT4"``, ``"BIPOLAR"``, ``"FIXED<16,6>"``, ``"SCALEDINT<8>"``..."""
    if isinstance(name, BaseDataType):
        return name
    try:
        return DataType[name.strip().upper().replace(" ", "")]
    except (KeyError, ValueError, AttributeError) as exc:
        raise ValueError(f"unknown QONNX datatype {name!r}") from exc


def bitwidth(dt: BaseDataType) -> int:
    """Bits one value of ``dt`` occupies (32 for FLOAT32)."""
    return int(dt.bitwidth())


def is_float(dt: BaseDataType) -> bool:
    """True for float containers (FLOAT32/FLOAT16/arbitrary-precision floats)."""
    return not dt.is_integer() and not dt.is_fixed_point() and not dt.name.startswith("SCALEDINT")


def dtype_name(dt: BaseDataType | None) -> str:
    """Canonical printable name; ``-`` when unknown."""
    return "-" if dt is None else dt.name
