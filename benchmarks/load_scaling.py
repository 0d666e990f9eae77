"""Load + normalise + cost time, and the hls4ml/FINN lowering, against node count: must grow linearly.

A generated chain of quantized dense blocks (weight Quant -> MatMul -> Add -> Relu ->
activation Quant, 5 nodes a block) is loaded from bytes through the frontend, then
costed. Per-node time should stay flat as the chain grows (qonnx's datatype inference
alone made 5,000 nodes take ~64 s).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/load_scaling.py [1000 5000 10000]
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

warnings.filterwarnings("ignore")


def quant_chain(n_nodes: int, width: int = 8, seed: int = 0) -> onnx.ModelProto:
    """A chain of about ``n_nodes`` nodes: blocks of Quant(W), MatMul, Add, Relu, Quant(act)."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def const(name: str, value: np.ndarray | float) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    const("s", 2.0**-4)
    const("z", 0.0)
    const("b8", 8.0)
    x = "x"
    for k in range(max(1, n_nodes // 5)):
        w = const(f"w{k}", rng.normal(size=(width, width)) * 0.3)
        b = const(f"bias{k}", rng.normal(size=(width,)) * 0.1)
        q = {"domain": "qonnx.custom_op.general", "signed": 1, "narrow": 0, "rounding_mode": "ROUND"}
        nodes += [
            helper.make_node("Quant", [w, "s", "z", "b8"], [f"qw{k}"], name=f"qw{k}", **q),
            helper.make_node("MatMul", [x, f"qw{k}"], [f"mm{k}"], name=f"mm{k}"),
            helper.make_node("Add", [f"mm{k}", b], [f"add{k}"], name=f"add{k}"),
            helper.make_node("Relu", [f"add{k}"], [f"relu{k}"], name=f"relu{k}"),
            helper.make_node("Quant", [f"relu{k}", "s", "z", "b8"], [f"a{k}"], name=f"qa{k}", **q),
        ]
        x = f"a{k}"
    graph = helper.make_graph(
        nodes, "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, width])],
        inits,
    )  # fmt: skip
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("qonnx.custom_op.general", 1)]
    )


def time_load_and_cost(n_nodes: int) -> tuple[float, float, float, int]:
    """(load, cost, hls4ml-lowering seconds, node count) for a chain of ``n_nodes``."""
    from codesign.backends.hls4ml_backend import check_expressible, lower_model
    from codesign.frontends import load
    from codesign.passes.cost import cost_report

    data = quant_chain(n_nodes).SerializeToString()
    t0 = time.perf_counter()
    model = load(data)
    t1 = time.perf_counter()
    cost_report(model)
    t2 = time.perf_counter()
    check_expressible(lower_model(model), "parallel")  # cleanup, folding, datatypes, layout, layer list
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, len(model.graph.node)


def main(sizes: list[int]) -> None:
    print(
        f"{'nodes':>7} {'load s':>8} {'cost s':>8} {'lower s':>8} {'us/node':>8} {'ratio':>6} {'lower us/node':>14} {'ratio':>6}"
    )
    base = base_lower = None
    for n in sizes:
        load_s, cost_s, lower_s, count = time_load_and_cost(n)
        per_node, lower_per_node = (load_s + cost_s) / count * 1e6, lower_s / count * 1e6
        base, base_lower = base or per_node, base_lower or lower_per_node
        print(
            f"{count:>7} {load_s:>8.2f} {cost_s:>8.2f} {lower_s:>8.2f} {per_node:>8.1f} {per_node / base:>6.2f} "
            f"{lower_per_node:>14.1f} {lower_per_node / base_lower:>6.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1000, 5000, 10000])
