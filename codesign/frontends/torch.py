"""PyTorch and Brevitas modules -> the IR.

Brevitas modules go through ``brevitas.export.export_qonnx(..., dynamo=False)`` (the
TorchScript exporter is ~10x faster than dynamo and writes QONNX ``Quant`` nodes);
plain torch modules through ``torch.onnx.export(dynamo=False)``. Either way the result
goes through the same ONNX frontend as a file would.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

from codesign.errors import CodesignError
from codesign.frontends.onnx_file import load_onnx
from codesign.ir.model import Model


def is_brevitas_module(module: Any) -> bool:
    """True when any submodule comes from brevitas (a quantized layer or quantizer)."""
    return any(type(m).__module__.startswith("brevitas") for m in module.modules())


def export_onnx_bytes(module: Any, example: Any, *, opset: int = 13) -> bytes:
    """Serialized ONNX/QONNX of ``module`` traced on ``example`` (eval mode, CPU)."""
    import torch

    was_training = module.training
    module.eval()
    args = example if isinstance(example, tuple) else (example,)
    try:
        with torch.no_grad():
            if is_brevitas_module(module):
                from brevitas.export import export_qonnx

                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / "model.onnx"
                    export_qonnx(module, args=args, export_path=str(path), dynamo=False, opset_version=opset)
                    return path.read_bytes()
            buf = io.BytesIO()
            torch.onnx.export(
                module, args, buf, dynamo=False, opset_version=opset, input_names=["input"], output_names=["output"]
            )
            return buf.getvalue()
    except Exception as exc:  # the exporter's own error, as one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CodesignError(f"cannot export {type(module).__name__} to ONNX: {first[:300]}") from exc
    finally:
        module.train(was_training)


def from_torch(module: Any, example: Any, **options: Any) -> Model:
    """Export ``module`` with ``example`` input and load the result into the IR."""
    return load_onnx(export_onnx_bytes(module, example), **options)
