"""Write examples/jet_tagger_mlp.onnx: the 16-64-32-32-5 jet-tagger MLP with power-of-two quantizers.

A Brevitas model (8-bit input and first/last weights, 4-bit hidden weights and
activations, 16-bit biases on the accumulator grid, all scales powers of two), with
deterministic random weights and calibrated activation ranges; exported as QONNX. Its
hls4ml C-simulation is bit-exact with the reference execution (`make demo`).

Usage: python examples/make_jet_tagger.py [OUT.onnx]
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

DEFAULT_OUT = Path(__file__).with_name("jet_tagger_mlp.onnx")
SIZES = (16, 64, 32, 32, 5)
#: weight bits per layer, activation bits after each hidden layer
WEIGHT_BITS = (8, 4, 4, 8)
ACT_BITS = (8, 4, 4)


def build_model(seed: int = 0):
    """The Brevitas module (eval mode, activation ranges calibrated on random jets)."""
    import brevitas.nn as qnn
    import torch
    from brevitas.quant import (
        Int8ActPerTensorFixedPoint,
        Int8WeightPerTensorFixedPoint,
        Int16Bias,
        Uint8ActPerTensorFixedPoint,
    )
    from torch import nn

    torch.manual_seed(seed)

    class JetTaggerMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True)
            layers: list[nn.Module] = []
            for i, (n_in, n_out) in enumerate(itertools.pairwise(SIZES)):
                layers.append(
                    qnn.QuantLinear(
                        n_in, n_out, bias=True, weight_quant=Int8WeightPerTensorFixedPoint,
                        weight_bit_width=WEIGHT_BITS[i], bias_quant=Int16Bias, return_quant_tensor=False,
                    )
                )  # fmt: skip
                if i < len(ACT_BITS):
                    layers.append(
                        qnn.QuantReLU(
                            act_quant=Uint8ActPerTensorFixedPoint, bit_width=ACT_BITS[i], return_quant_tensor=True
                        )
                    )
            self.body = nn.Sequential(*layers)

        def forward(self, x):
            return self.body(self.inp(x))

    model = JetTaggerMLP()
    model.train()
    with torch.no_grad():  # calibrate the activation scales (powers of two) on a few batches
        for _ in range(8):
            model(torch.randn(256, SIZES[0]) * 1.5)
    return model.eval()


def export(out: Path = DEFAULT_OUT, seed: int = 0) -> Path:
    import torch
    from brevitas.export import export_qonnx

    model = build_model(seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    export_qonnx(model, torch.zeros(1, SIZES[0]), str(out), dynamo=False)
    return out


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore")
    path = export(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)
    print(f"wrote {path} ({path.stat().st_size} bytes)")
