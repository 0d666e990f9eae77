"""Cost-pass throughput: codesign's cost pass vs qonnx inference_cost, side by side.

The search costs thousands of candidates a minute, so costing a 16-64-32-32-5 MLP built
in the IR must take well under a millisecond. Both tools cost the same quantized model
(8-bit weights and activations, 50% of weights zero); the numbers must agree.

    .venv/bin/python benchmarks/cost_throughput.py
"""

from __future__ import annotations

import itertools
import time
import warnings

import numpy as np
from onnx import TensorProto, helper, numpy_helper

warnings.filterwarnings("ignore")


def quantized_mlp(sizes=(16, 64, 32, 32, 5), bits: int = 8, sparsity: float = 0.5, seed: int = 0):
    """QONNX MLP: Quant(act) -> [Quant(W) MatMul Add Relu Quant(act)]* with pow2 scales."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def scalar(name, value):
        inits.append(numpy_helper.from_array(np.array(value, dtype=np.float32), name))
        return name

    def quant(src, dst, scale, signed=1):
        s, z, b = scalar(f"{dst}_s", scale), scalar(f"{dst}_z", 0.0), scalar(f"{dst}_b", float(bits))
        nodes.append(helper.make_node("Quant", [src, s, z, b], [dst], name=f"Q_{dst}", domain="qonnx.custom_op.general",
                                      signed=signed, narrow=0, rounding_mode="ROUND"))  # fmt: skip

    quant("x", "xq", 2.0**-4)
    x = "xq"
    for k, (a, b) in enumerate(itertools.pairwise(sizes)):
        w = rng.normal(size=(a, b)) / np.sqrt(a)
        w[rng.random(size=w.shape) < sparsity] = 0.0
        inits.append(numpy_helper.from_array(w.astype(np.float32), f"w{k}"))
        inits.append(numpy_helper.from_array(np.zeros(b, dtype=np.float32), f"b{k}"))
        quant(f"w{k}", f"w{k}q", 2.0**-6)
        nodes.append(helper.make_node("MatMul", [x, f"w{k}q"], [f"mm{k}"], name=f"dense{k}"))
        nodes.append(helper.make_node("Add", [f"mm{k}", f"b{k}"], [f"z{k}"], name=f"bias{k}"))
        if k < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [f"z{k}"], [f"r{k}"], name=f"relu{k}"))
            quant(f"r{k}", f"a{k}", 2.0**-4, signed=0)
            x = f"a{k}"
        else:
            x = f"z{k}"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, sizes[0]])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, sizes[-1]])], inits)  # fmt: skip
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("qonnx.custom_op.general", 1)]
    )


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.inference_cost import inference_cost

    import codesign
    from codesign.ir import Model
    from codesign.passes.cost import cost_report

    ir = codesign.load(quantized_mlp())  # normalised once, as the search's builder does
    proto = ir.proto

    def ours():  # cold caches: a fresh Model over the built proto, then the cost pass
        return cost_report(Model(proto))

    def theirs():
        return inference_cost(ModelWrapper(proto, make_deepcopy=True), discount_sparsity=True)["total_cost"]

    a, b = ours(), theirs()
    assert a.bops == b["total_bops"] and a.macs == b["total_macs"], (a.bops, b["total_bops"])
    t_ours = best_of(ours, 2000)
    t_qonnx = best_of(theirs, 30)
    print("cost of a 16-64-32-32-5 MLP, INT8 weights/activations, 50% sparse (median)")
    print(f"  codesign cost pass     : {t_ours * 1e6:9.1f} us   ({1 / t_ours:,.0f} models/s)")
    print(f"  qonnx inference_cost   : {t_qonnx * 1e6:9.1f} us   ({1 / t_qonnx:,.0f} models/s)")
    print(f"  speed-up               : {t_qonnx / t_ours:9.1f}x   (both report BOPs={a.bops:.0f}, MACs={a.macs:.0f})")


if __name__ == "__main__":
    main()
