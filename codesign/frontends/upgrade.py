"""Old opsets are upgraded with onnx's version converter before anything else reads them.

onnxruntime runs nothing older than opset 7, and opset-6 ops differ in kind, not detail
(Gemm's ``broadcast`` flag, BatchNormalization's ``spatial``/``is_test``): qonnx and the
backends assume modern semantics. A model below :data:`OLDEST_KEPT` is converted to
:data:`UPGRADE_TO` (a well-supported opset all backends read); newer ones are left as written.
"""

from __future__ import annotations

import warnings

import onnx
from onnx import version_converter

from codesign.errors import UnsupportedModelError
from codesign.frontends.door import default_opset

OLDEST_KEPT = 7
UPGRADE_TO = 11


def upgrade_opset(proto: onnx.ModelProto, label: str = "model") -> onnx.ModelProto:
    """``proto`` itself if its opset is recent enough, else an upgraded copy (one-line error if impossible)."""
    version = default_opset(proto)
    if version is None or version >= OLDEST_KEPT:
        return proto
    staged = onnx.ModelProto()
    staged.CopyFrom(proto)
    listed = {vi.name for vi in staged.graph.input}  # old IR: the converter wants initializers as inputs
    staged.graph.input.extend(
        onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
        for t in staged.graph.initializer
        if t.name not in listed
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            upgraded = version_converter.convert_version(staged, UPGRADE_TO)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise UnsupportedModelError(
            f"{label}: cannot upgrade opset {version} to {UPGRADE_TO} ({first[:200]})"
        ) from None
    upgraded.ir_version = max(upgraded.ir_version, 4)
    return upgraded
