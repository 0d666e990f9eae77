"""Write an IR model to disk atomically (a half-written .onnx is never left behind)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from codesign.errors import OutputError

if TYPE_CHECKING:
    from codesign.ir.model import Model


def save_model(model: Model, path: Path) -> Path:
    """Serialise to ``path`` via a temp file in the same folder, then rename."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"cannot write {path}: folder {folder} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model.proto.SerializeToString())
        os.replace(tmp, path)
    except (OSError, ValueError) as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc}") from None
    return path


def serialize(model: Model) -> bytes:
    return model.proto.SerializeToString()


def load_proto_bytes(data: bytes) -> onnx.ModelProto:
    return onnx.load_from_string(data)
