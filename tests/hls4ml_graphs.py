"""Tiny QONNX graphs for the hls4ml layer-family tests, and their C-simulation check.

Every graph quantizes with power-of-two ``Quant`` nodes, so hls4ml's C-simulation must
equal the IR's reference execution bit for bit (``codesign compile --verify``'s check).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

QONNX = "qonnx.custom_op.general"


class Graph:
    """Builds a channels-first ONNX graph node by node (names are the node names hls4ml keeps)."""

    def __init__(self, input_shape: tuple[int, ...], seed: int = 0):
        self.shape = (1, *input_shape)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.rng = np.random.default_rng(seed)
        self.n = 0
        self.inputs: list[tuple[str, tuple[int, ...]]] = [("x", self.shape)]

    def input(self, name: str, shape: tuple[int, ...]) -> str:
        """Another graph input (after ``x``) of shape ``(1, *shape)``."""
        self.inputs.append((name, (1, *shape)))
        return name

    def _name(self, base: str) -> str:
        self.n += 1
        return f"{base}{self.n}"

    def const(self, value, base: str = "c") -> str:
        name = self._name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], name: str | None = None, **attrs) -> str:
        name = name or self._name(op.lower())
        out = f"{name}_out"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def quant(self, x: str, bits: int = 6, exp: int = -3, signed: bool = True, narrow: bool = False) -> str:
        """Power-of-two Quant: ``fixed<bits, bits + exp>``."""
        s, z, b = self.const(2.0**exp, "s"), self.const(0.0, "z"), self.const(float(bits), "b")
        out = self._name("q")
        self.nodes.append(helper.make_node("Quant", [x, s, z, b], [out], name=out, domain=QONNX, signed=int(signed),
                                           narrow=int(narrow), rounding_mode="ROUND"))  # fmt: skip
        return out

    def quant_scaled(
        self, x: str, scale: float, bits: int = 8, signed: bool = True, narrow: bool = False, zero: float = 0.0
    ) -> str:
        """A Quant with a float (non-power-of-two) scale, as Brevitas' default quantizers export it
        (a non-zero ``zero``: onnxruntime's asymmetric QDQ activations)."""
        s, z, b = self.const(scale, "s"), self.const(zero, "z"), self.const(float(bits), "b")
        out = self._name("fq")
        self.nodes.append(helper.make_node("Quant", [x, s, z, b], [out], name=out, domain=QONNX, signed=int(signed),
                                           narrow=int(narrow), rounding_mode="ROUND"))  # fmt: skip
        return out

    def weight(self, shape: tuple[int, ...], bits: int = 4, exp: int = -3) -> str:
        """A quantized weight: integers within ``bits`` (narrow) times ``2**exp``."""
        top = 2 ** (bits - 1) - 1
        w = self.rng.integers(-top, top + 1, size=shape) * 2.0**exp
        return self.quant(self.const(w, "w"), bits, exp, narrow=True)

    def bias(self, n: int, exp: int = -4) -> str:
        return self.const(self.rng.integers(-8, 9, size=n) * 2.0**exp, "bias")

    def model(self, out: str, out_shape: tuple[int, ...]) -> onnx.ModelProto:
        """The graph with output ``out`` of shape ``(1, *out_shape)``."""
        graph = helper.make_graph(
            self.nodes, "tiny", [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in self.inputs],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, *out_shape])], self.inits,
        )  # fmt: skip
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def csim(proto: onnx.ModelProto, tmp_path: Path, samples: int = 40, **options) -> dict:
    """Compile (g++ C-simulation) and verify against the IR reference; the verify report."""
    from codesign.backends.compile import compile_hls4ml
    from codesign.backends.hls4ml_backend import Hls4mlOptions
    from codesign.frontends import load

    result = compile_hls4ml(load(proto), "vu13p", tmp_path / "prj", options=Hls4mlOptions(**options), verify=True,
                            samples=samples)  # fmt: skip
    return result.verify


def assert_bit_exact(report: dict) -> None:
    assert report["max_abs_diff"] == 0.0 and report["bit_exact"] is True, report


def layer_classes(tmp_path: Path) -> dict[str, str]:
    """hls4ml layer name -> class, from the project's codesign.json."""
    import json

    manifest = json.loads((tmp_path / "prj" / "codesign.json").read_text())
    return {row["name"]: row["class"] for row in manifest["hls4ml"]["layers"]}
