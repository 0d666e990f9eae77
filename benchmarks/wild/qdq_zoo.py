"""onnxruntime static quantization of float zoo models: QDQ (per-tensor/per-channel, int8/uint8) and QOperator.

What MLPerf Tiny / TensorRT-style flows write: ``quantize_static`` with a small calibration
reader of N(0, 1) inputs, after onnxruntime's own pre-processing (shape inference, BN folding).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class QdqEntry:
    """One quantized model derived from the float entry ``source`` of torch_zoo."""

    name: str
    source: str
    fmt: str = "QDQ"  # or "QOperator"
    per_channel: bool = False
    activation: str = "QInt8"  # or "QUInt8"
    symmetric: bool = True  # activations; weights are always symmetric int8
    note: str = ""


ENTRIES: list[QdqEntry] = [
    QdqEntry("jet_tagger_qdq_s8", "jet_tagger", note="per-tensor, int8 symmetric"),
    QdqEntry("jet_tagger_qdq_u8", "jet_tagger", activation="QUInt8", symmetric=False, note="uint8 asymmetric"),
    QdqEntry(
        "ds_cnn_qdq_pc_u8",
        "ds_cnn_kws",
        per_channel=True,
        activation="QUInt8",
        symmetric=False,
        note="per-channel weights, uint8 activations",
    ),
    QdqEntry("resnet8_qdq_pc_s8", "resnet8_cifar", per_channel=True, note="per-channel, int8 symmetric"),
    QdqEntry("conv1d_qdq_s8_asym", "conv1d_radio", symmetric=False, note="int8 asymmetric activations"),
    QdqEntry("autoencoder_qdq_pc_s8", "autoencoder_ad", per_channel=True, note="per-channel Gemm"),
    QdqEntry(
        "resnet8_qdq_pc_s8_asym",
        "resnet8_cifar",
        per_channel=True,
        symmetric=False,
        note="onnxruntime's defaults: int8 asymmetric activations (zero point -128 after ReLU), padded convs",
    ),
    QdqEntry("mobilenetv1_qdq_s8_asym", "mobilenetv1_vww", symmetric=False, note="int8 asymmetric, depthwise"),
    QdqEntry("jet_tagger_qop", "jet_tagger", fmt="QOperator", note="QLinearMatMul / QGemm (refusal ok)"),
    QdqEntry(
        "ds_cnn_qop",
        "ds_cnn_kws",
        fmt="QOperator",
        activation="QUInt8",
        symmetric=False,
        note="QLinearConv (refusal ok)",
    ),
]


def quantize(entry: QdqEntry, float_path: Path, path: Path, shape: tuple[int, ...]) -> None:
    """Quantize the float model at ``float_path`` into ``path`` as ``entry`` says."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(1)
            self.data = iter([{"input": rng.normal(size=shape).astype(np.float32)} for _ in range(32)])

        def get_next(self) -> dict | None:
            return next(self.data, None)

    pre = path.with_suffix(".pre.onnx")
    try:
        quant_pre_process(str(float_path), str(pre))
        quantize_static(
            str(pre), str(path), Reader(),
            quant_format=QuantFormat.QDQ if entry.fmt == "QDQ" else QuantFormat.QOperator,
            per_channel=entry.per_channel, activation_type=getattr(QuantType, entry.activation),
            weight_type=QuantType.QInt8,
            extra_options={"ActivationSymmetric": entry.symmetric, "WeightSymmetric": True},
        )  # fmt: skip
    finally:
        pre.unlink(missing_ok=True)
