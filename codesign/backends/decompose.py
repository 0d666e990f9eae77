"""Ops hls4ml has no layer for, spelled with ops it has (exactly the same function)."""

from __future__ import annotations

from onnx import helper

from codesign.backends.lowering import replace_node
from codesign.ir.model import Model
from codesign.passes.base import Pass, PassResult


class HardSwishAsHardSigmoidMul(Pass):
    """HardSwish(x) = x * HardSigmoid(x; 1/6, 1/2) (MobileNetV3's activation): a HardSigmoid and a two-input Mul."""

    def call(self, model: Model) -> PassResult:
        done = []
        for node in list(model.nodes_of(["HardSwish"])):
            if node.domain not in ("", "ai.onnx"):
                continue
            x, y = node.input[0], node.output[0]
            gate = f"{y}_gate"
            new = [
                helper.make_node("HardSigmoid", [x], [gate], name=f"{node.name}_gate", alpha=1.0 / 6.0, beta=0.5),
                helper.make_node("Mul", [x, gate], [y], name=node.name),
            ]
            replace_node(model, node, new)
            done.append(node.name)
        return PassResult(model, bool(done), {"hard_swish": done})


__all__ = ["HardSwishAsHardSigmoidMul"]
