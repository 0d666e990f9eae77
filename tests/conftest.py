"""Shared fixtures: the real third-party models in ../shared, skipped when absent."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

warnings.filterwarnings("ignore")

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CODESIGN_SHARED", ROOT.parent / "shared"))
MODELS = SHARED / "models"
DATA = SHARED / "data"

EX = MODELS / "fastmachinelearning+example-models" / "onnx"
ZOO = MODELS / "fastmachinelearning+qonnx_model_zoo" / "models"
QDATA = MODELS / "fastmachinelearning+qonnx" / "src" / "qonnx" / "data" / "onnx"
FINN = MODELS / "Xilinx+finn"
TFC = ZOO / "MNIST" / "Brevitas_FINN_TFC" / "TFC"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, skipping the test with a clear reason when absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs ../shared/{'/'.join(parts)} (real third-party data; not present in this checkout)")
    return path


def tfc_path(name: str = "TFC_2W2A") -> Path:
    """A Brevitas TFC MNIST model of the qonnx model zoo (TFC_1W1A, TFC_1W2A, TFC_2W2A)."""
    return shared_path("models", "fastmachinelearning+qonnx_model_zoo", "models", "MNIST", "Brevitas_FINN_TFC", "TFC",
                       f"{name}.onnx")  # fmt: skip


def all_shared_models() -> list[Path]:
    return sorted(MODELS.rglob("*.onnx")) if MODELS.is_dir() else []


def require_shared() -> None:
    if not MODELS.is_dir():
        pytest.skip("needs ../shared/models (real third-party models; not present in this checkout)")


@pytest.fixture
def shared() -> Path:
    require_shared()
    return SHARED
