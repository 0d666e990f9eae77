"""Frontends: every foreign format becomes the IR here, and only here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codesign.frontends.onnx_file import load_onnx
from codesign.ir.model import Model


def load(source: Any, **options: Any) -> Model:
    """Load a model from a path, bytes, ModelProto, ModelWrapper or Model.

    Options: ``batch`` (default 1), ``input_shapes`` ({name: shape}) for dynamic inputs.
    For PyTorch/Brevitas modules use :func:`codesign.frontends.torch.from_torch`.
    """
    if isinstance(source, Model):
        return load_onnx(source.proto, **options)
    if type(source).__name__ == "ModelWrapper":
        return load_onnx(source.model, **options)
    if isinstance(source, (str, Path, bytes, bytearray)) or hasattr(source, "graph"):
        return load_onnx(source, **options)
    if type(source).__module__.startswith("torch") or hasattr(source, "forward"):
        raise TypeError("torch modules need an example input: codesign.frontends.torch.from_torch(module, example)")
    raise TypeError(f"cannot load a model from {type(source).__name__}")


__all__ = ["load", "load_onnx"]
