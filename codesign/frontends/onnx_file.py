"""ONNX / QONNX files (and in-memory ModelProtos) -> the IR.

Reading is defensive: the size is checked before parsing, external-data locations may
not leave the model's folder, and every failure becomes a one-line
:class:`ModelLoadError` naming the file and the problem.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import onnx
from google.protobuf.message import DecodeError
from onnx.external_data_helper import ExternalDataInfo, uses_external_data

from codesign.errors import CodesignError, ModelLoadError, UnsupportedModelError
from codesign.frontends.door import check_door
from codesign.frontends.qoperator import qoperator_to_qdq
from codesign.frontends.support import check_supported
from codesign.frontends.upgrade import upgrade_opset
from codesign.ir.model import Model

#: Default refusal size for a model file; override with CODESIGN_MAX_MODEL_BYTES.
DEFAULT_MAX_BYTES = 2 * 1024**3


def max_model_bytes() -> int:
    raw = os.environ.get("CODESIGN_MAX_MODEL_BYTES")
    try:
        return int(raw) if raw else DEFAULT_MAX_BYTES
    except ValueError:
        return DEFAULT_MAX_BYTES


def read_proto(path: str | Path) -> onnx.ModelProto:
    """Parse ``path`` safely into a ModelProto (external data resolved in its folder)."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file")
    if not path.is_file():
        raise ModelLoadError(f"{path}: not a file")
    size = path.stat().st_size
    if size == 0:
        raise ModelLoadError(f"{path}: empty file, not an ONNX model")
    limit = max_model_bytes()
    if size > limit:
        raise ModelLoadError(
            f"{path}: {size} bytes exceeds the {limit}-byte model size limit (CODESIGN_MAX_MODEL_BYTES)"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read ({exc.strerror})") from None
    proto = parse_bytes(data, str(path))
    _load_external_data(proto, path.parent.resolve(), str(path))
    return proto


def parse_bytes(data: bytes, label: str = "<bytes>") -> onnx.ModelProto:
    """Parse serialized ONNX; truncated or random bytes give a clear error."""
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(
            f"{label}: not a valid ONNX protobuf (truncated or corrupt: {exc.__class__.__name__})"
        ) from None
    if not proto.HasField("graph") or (len(proto.graph.node) == 0 and not proto.opset_import):
        raise ModelLoadError(f"{label}: not an ONNX model (no graph)")
    return proto


def _external_tensors(proto: onnx.ModelProto) -> list[onnx.TensorProto]:
    tensors = [t for t in proto.graph.initializer if uses_external_data(t)]
    for node in proto.graph.node:
        for attr in node.attribute:
            if attr.HasField("t") and uses_external_data(attr.t):
                tensors.append(attr.t)
    return tensors


def _load_external_data(proto: onnx.ModelProto, base: Path, label: str) -> None:
    """Resolve external data, refusing any location outside ``base``."""
    tensors = _external_tensors(proto)
    for tensor in tensors:
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        if "\x00" in location:
            raise ModelLoadError(f"{label}: tensor {tensor.name!r} has a NUL byte in its external data location")
        loc = Path(location)
        target = (base / loc).resolve()
        if loc.is_absolute() or ".." in loc.parts or base not in target.parents:
            raise ModelLoadError(
                f"{label}: tensor {tensor.name!r} has external data at {location!r}, outside the model's folder; refused"
            )
        if not target.is_file():
            raise ModelLoadError(f"{label}: external data file {location!r} for tensor {tensor.name!r} is missing")
        _check_extent(tensor, target, label)
        ExternalDataInfo(tensor)  # onnx's own checks of the remaining keys
    if tensors:
        try:
            onnx.load_external_data_for_model(proto, str(base))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{label}: cannot read external data ({exc})") from None


def _quiet_third_party_logs() -> None:
    """onnxruntime's multi-line coloured warnings (qonnx runs it per node) never reach the terminal."""
    try:
        import onnxruntime

        onnxruntime.set_default_logger_severity(4)  # errors arrive as exceptions
    except ImportError:  # pragma: no cover - onnxruntime is a core dependency
        pass


def _check_extent(tensor: onnx.TensorProto, target: Path, label: str) -> None:
    """offset/length of external data must be non-negative integers inside the data file."""
    raw = {e.key: e.value for e in tensor.external_data}
    size = target.stat().st_size
    values = {}
    for key in ("offset", "length"):
        if key in raw:
            try:
                values[key] = int(raw[key])
            except ValueError:
                raise ModelLoadError(
                    f"{label}: tensor {tensor.name!r} has external-data {key} {raw[key][:20]!r}, not an integer"
                ) from None
            if values[key] < 0:
                raise ModelLoadError(f"{label}: tensor {tensor.name!r} has negative external-data {key} {values[key]}")
    offset = values.get("offset", 0)
    length = values.get("length", size - offset)
    if offset + length > size:
        raise ModelLoadError(
            f"{label}: tensor {tensor.name!r} reads external data bytes {offset}..{offset + length} past the end of "
            f"{target.name} ({size} bytes)"
        )


def from_proto(proto: onnx.ModelProto, *, label: str = "model", **options: Any) -> Model:
    """Check support, normalise, and validate a ModelProto into the IR."""
    from codesign.passes.normalize import normalize

    if not proto.graph.node:
        raise ModelLoadError(f"{label}: graph has no nodes")
    check_door(proto, label)
    proto = upgrade_opset(proto, label)
    proto = qoperator_to_qdq(proto)  # onnxruntime's QOperator format, spelled out as QDQ
    check_supported(proto)
    _quiet_third_party_logs()
    try:
        model = normalize(**options)(Model(proto)).model
    except CodesignError:
        raise
    except Exception as exc:  # qonnx/onnx internals: report as one line, with the cause
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise UnsupportedModelError(
            f"{label}: cannot normalise model ({exc.__class__.__name__}: {first[:300]})"
        ) from exc
    model.validate()
    return model


def load_onnx(source: str | Path | bytes | onnx.ModelProto, **options: Any) -> Model:
    """Load an ONNX or QONNX model from a path, raw bytes or a ModelProto."""
    if isinstance(source, onnx.ModelProto):
        proto = onnx.ModelProto()
        proto.CopyFrom(source)
        return from_proto(proto, **options)
    if isinstance(source, (bytes, bytearray)):
        return from_proto(parse_bytes(bytes(source)), **options)
    return from_proto(read_proto(source), label=str(source), **options)
