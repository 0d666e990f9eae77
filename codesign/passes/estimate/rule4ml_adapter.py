"""The ``rule4ml`` estimator (optional): rule4ml's learned surrogate of hls4ml synthesis.

rule4ml (Hawks-like GNN/MLP regressors trained on thousands of hls4ml + Vivado
syntheses) parses a *plain* torch MLP. This adapter rebuilds that torch module from the
IR (Linear/ReLU/Sigmoid/Tanh/Softmax/BatchNorm1d), maps our target names to rule4ml's
four boards and the IR's widest datatype to one ``ap_fixed`` precision, and returns
whole-model totals in the common schema (one row: rule4ml does not predict per layer).

rule4ml imports tensorflow at module top, though its default estimators are torch
models run through Keras 3; tensorflow is never installed here, so a stub module that
only re-exports ``keras`` stands in for it, with ``KERAS_BACKEND=torch``. Needs
``pip install --no-deps rule4ml keras torch_geometric pandas scikit-learn``.
``uncertainty=True`` adds rule4ml's Monte-Carlo-dropout standard deviation per quantity.
"""

from __future__ import annotations

import functools
import os
import sys
import types
from typing import Any

import numpy as np

from codesign.errors import UnsupportedModelError
from codesign.ir.model import QUANT_OPS, Model
from codesign.passes.cost import _is_weight_quantizer, _mac_geometry
from codesign.passes.estimate import EstimateConfig, EstimateError, EstimateReport, Estimator, LayerEstimate
from codesign.passes.estimate.hls4ml_model import bits_of

#: Our target names -> rule4ml board (same die: U250 is a VU13P, U200 a VU9P).
BOARDS = {"pynq-z2": "pynq-z2", "zcu102": "zcu102", "u200": "alveo-u200", "vu9p": "alveo-u200",
          "u250": "alveo-u250", "vu13p": "alveo-u250"}  # fmt: skip
#: The newest tool versions rule4ml's training data covers.
HLS4ML_VERSION, VIVADO_VERSION = "1.1.0", "2024.2"
QUANTITIES = {"LUT": "LUT", "FF": "FF", "DSP": "DSP", "BRAM": "BRAM_18K", "CYCLES": "latency_cycles", "INTERVAL": "ii"}
SKIP_OPS = frozenset({"Reshape", "Flatten", "Identity", "Transpose", "Squeeze", "Unsqueeze", "Dropout"}) | QUANT_OPS


def _install_tensorflow_stub() -> None:
    """Make ``import tensorflow`` give a stub exposing ``keras`` (rule4ml needs only that at import)."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    if "tensorflow" in sys.modules:
        return
    import keras

    stub = types.ModuleType("tensorflow")
    stub.keras = keras  # type: ignore[attr-defined]
    stub.__version__ = "0.0.0+codesign-stub"  # type: ignore[attr-defined]
    sys.modules["tensorflow"] = stub


@functools.lru_cache(maxsize=1)
def _wrapper() -> Any:
    """rule4ml's default estimators, loaded once (~0.3 s)."""
    try:
        _install_tensorflow_stub()
        import warnings

        warnings.filterwarnings("ignore")
        from rule4ml.models.wrappers import MultiModelWrapper
    except ImportError as exc:
        raise UnsupportedModelError(
            f"the 'rule4ml' estimator needs rule4ml, keras, torch_geometric, pandas, scikit-learn ({exc.name} missing)"
        ) from None
    wrapper = MultiModelWrapper()
    wrapper.load_default_models()
    return wrapper


def torch_mlp(model: Model) -> Any:
    """The IR as the plain ``torch.nn.Sequential`` rule4ml parses (MLPs only)."""
    import torch

    layers: list[Any] = []
    for node in model.graph.node:
        op = node.op_type
        if _is_weight_quantizer(model, node) or op in SKIP_OPS:
            continue
        if op in ("MatMul", "Gemm"):
            _, fan_in, w_name = _mac_geometry(model, node)
            if w_name is None:
                raise UnsupportedModelError(f"{node.name}: rule4ml models only dense layers with constant weights")
            out_shape = model.shape(node.output[0])
            bias = op == "Gemm" and len(node.input) > 2 and bool(node.input[2])
            layers.append(torch.nn.Linear(int(fan_in), int(out_shape[-1]), bias=bias))
        elif (
            op == "Add"
            and layers
            and isinstance(layers[-1], torch.nn.Linear)
            and any(model.constant(i) is not None for i in node.input)
        ):
            last = layers[-1]
            if last.bias is None:  # bias add after MatMul: hls4ml folds it into the Dense
                layers[-1] = torch.nn.Linear(last.in_features, last.out_features, bias=True)
        elif op in ("Relu", "Sigmoid", "Tanh"):
            layers.append({"Relu": torch.nn.ReLU, "Sigmoid": torch.nn.Sigmoid, "Tanh": torch.nn.Tanh}[op]())
        elif op == "Softmax":
            layers.append(torch.nn.Softmax(dim=-1))
        elif op == "BatchNormalization":
            layers.append(torch.nn.BatchNorm1d(int(model.shape(node.output[0])[-1])))
        else:
            raise UnsupportedModelError(f"{node.name}: rule4ml models only MLPs, not {op}")
    if not any(isinstance(x, torch.nn.Linear) for x in layers):
        raise UnsupportedModelError("rule4ml needs at least one dense layer")
    return torch.nn.Sequential(*layers)


def precision_of(model: Model) -> str:
    """One model-wide ``ap_fixed<W,I>``: the widest weight/activation of the MAC layers."""
    widths = [bits_of(model.dtype(i)) for n in model.nodes_of(("MatMul", "Gemm")) for i in n.input[:2]]
    w = max(widths, default=16)
    return f"ap_fixed<{w}, {max(1, round(w * 3 / 8))}>"


class Rule4mlEstimator(Estimator):
    """Analysis pass: rule4ml's whole-model prediction as a one-row report."""

    key = "rule4ml"

    def __init__(self, config: EstimateConfig | None = None, *, uncertainty: bool = False, samples: int = 20,
                 **options: Any):  # fmt: skip
        super().__init__(config, **options)
        self.uncertainty = uncertainty
        self.samples = samples

    def board(self) -> str:
        target = (self.config.target or "vu13p").lower()
        if target not in BOARDS:
            raise EstimateError(f"rule4ml has no model for target {target!r}; it covers {', '.join(BOARDS)}")
        return BOARDS[target]

    def hls_config(self, model: Model) -> dict[str, Any]:
        rf = self.config.reuse_factor if isinstance(self.config.reuse_factor, int) else self.config.rf("*")
        return {"board": self.board(), "model": {"strategy": self.config.strategy, "precision": precision_of(model),
                                                  "reuse_factor": rf}}  # fmt: skip

    def predict(self, model: Model) -> tuple[dict[str, float], dict[str, float]]:
        """(mean, std) per rule4ml quantity (std all 0 unless ``uncertainty``)."""
        net, cfg = torch_mlp(model), self.hls_config(model)
        wrapper = _wrapper()
        mean: dict[str, float] = {}
        std: dict[str, float] = {}
        for key, est in wrapper._models.items():
            labels = key.split("-")
            args = ([net], [cfg], [HLS4ML_VERSION], [VIVADO_VERSION])
            if self.uncertainty:
                draws = np.array([est.predict(*args, mc_dropout=True) for _ in range(self.samples)], dtype=float)
                m, s = draws.mean(axis=0)[0], draws.std(axis=0)[0]
            else:
                m, s = np.asarray(est.predict(*args), dtype=float)[0], np.zeros(len(labels))
            for i, label in enumerate(labels):
                mean[label], std[label] = float(m[i]), float(s[i])
        return mean, std

    def estimate(self, model: Model) -> EstimateReport:
        mean, std = self.predict(model)
        row = LayerEstimate("model", "rule4ml")
        for label, field in QUANTITIES.items():
            if label in mean:
                value = max(0.0, mean[label])
                setattr(row, field, round(value) if field in ("latency_cycles", "ii") else value)
        row.ii = max(1, row.ii)
        if self.uncertainty:
            row.note = "std " + ", ".join(f"{k} {v:.3g}" for k, v in std.items())
        return EstimateReport(self.key, self.config, [row])
