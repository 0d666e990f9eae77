"""A zoo of Brevitas- and qonnx-style QONNX models, as users write them, for the unseen-models bar (issue 14).

``generate(out_dir)`` writes ~25 small models (outside the repo): Brevitas modules exported with
``export_qonnx(..., dynamo=False)`` after a few SGD steps on random data (TFC/SFC/LFC-like MLPs,
a jet tagger, a KWS MLP, a small CNV, a 1-D RadioML-like conv, a residual block, QuantCat, TruncAvgPool;
default float-scale quantizers, power-of-two ones, per-channel scales, binary/ternary weights,
2..8-bit weights, quantized or float biases, with and without input quantizers) and graphs written
directly the way qonnx's own generators and QKeras conversions write them (per-channel scale tensors,
Quant on bias, other Quant domains, BipolarQuant, Trunc, MultiThreshold, channels-last nodes).
``__main__`` runs them through ``benchmarks/real_models.py``'s runner and classifier:

    PYTHONPATH=. python benchmarks/wild_brevitas.py [--out ~/.cache/codesign-wild-brevitas] [--models 'jet*']
        [--timeout 300] [--samples 100] [--markdown table.md]
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_models  # the runner/classifier, reused

QONNX = "qonnx.custom_op.general"
CHANLAST = "qonnx.custom_op.channels_last"


# ------------------------------------------------------------------ Brevitas modules
def _q():
    import brevitas.quant as bq

    return bq


def _train(model, shape: tuple[int, ...], classes: int, steps: int = 6, seed: int = 0):
    """Calibrate activation scales and BN statistics, then a few SGD steps on random data: trained-like weights."""
    import torch

    torch.manual_seed(seed)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    for _ in range(steps):
        x = torch.randn(64, *shape)
        y = torch.randint(0, classes, (64,))
        out = model(x)
        out = out.value if hasattr(out, "value") else out
        loss = torch.nn.functional.cross_entropy(out.reshape(64, -1)[:, :classes], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _seq(*layers):
    import torch

    return torch.nn.Sequential(*[layer for layer in layers if layer is not None])


def _mlp(sizes, wq, aq, wbits, abits, *, bn=True, inp=None, bias=True, bias_q=None, act="relu", narrow=None,
         per_channel=False, rqt=False):  # fmt: skip
    """A Brevitas MLP: [QuantIdentity] (QuantLinear [BN] act)* QuantLinear; the FINN/hls4ml examples' shape."""
    import brevitas.nn as qnn
    import torch

    kw = {"weight_quant": wq, "weight_bit_width": wbits, "bias": bias, "return_quant_tensor": False}
    if bias_q is not None:
        kw["bias_quant"] = bias_q
    if narrow is not None:
        kw["weight_narrow_range"] = narrow
    if per_channel:
        kw["weight_scaling_per_output_channel"] = True
    layers = [qnn.QuantIdentity(act_quant=inp, return_quant_tensor=True) if inp is not None else None]
    for i in range(len(sizes) - 1):
        layers.append(qnn.QuantLinear(sizes[i], sizes[i + 1], **kw))
        if i < len(sizes) - 2:
            if bn:
                layers.append(torch.nn.BatchNorm1d(sizes[i + 1]))
            if act == "relu":
                layers.append(qnn.QuantReLU(act_quant=aq, bit_width=abits, return_quant_tensor=rqt))
            elif act == "hardtanh":
                layers.append(qnn.QuantHardTanh(act_quant=aq, bit_width=abits, return_quant_tensor=rqt,
                                                max_val=1.0, min_val=-1.0))  # fmt: skip
            else:  # a sign/ternary activation: QuantIdentity with its own quantizer
                layers.append(qnn.QuantIdentity(act_quant=aq, return_quant_tensor=rqt))
    return _seq(*layers)


def _conv_block(qnn, torch, dim, cin, cout, wq, aq, wbits, abits, pool=True):
    conv = qnn.QuantConv2d if dim == 2 else qnn.QuantConv1d
    bn = torch.nn.BatchNorm2d if dim == 2 else torch.nn.BatchNorm1d
    mp = torch.nn.MaxPool2d if dim == 2 else torch.nn.MaxPool1d
    return [conv(cin, cout, 3, padding=1, bias=False, weight_quant=wq, weight_bit_width=wbits), bn(cout),
            qnn.QuantReLU(act_quant=aq, bit_width=abits, return_quant_tensor=True), mp(2) if pool else None]  # fmt: skip


def _cnn(dim, shape, channels, classes, wq, aq, wbits, abits, inp):
    """CNV-like (2-D) or RadioML-like (1-D): quantized conv/BN/ReLU/max-pool blocks, flatten, QuantLinear."""
    import brevitas.nn as qnn
    import torch

    layers = [qnn.QuantIdentity(act_quant=inp, return_quant_tensor=True)]
    cin, size = shape[0], list(shape[1:])
    for cout in channels:
        layers += _conv_block(qnn, torch, dim, cin, cout, wq, aq, wbits, abits)
        cin, size = cout, [s // 2 for s in size]
    layers += [torch.nn.Flatten(), qnn.QuantLinear(cin * int(np.prod(size)), classes, bias=False, weight_quant=wq,
                                                   weight_bit_width=wbits)]  # fmt: skip
    return _seq(*layers)


def _residual(wq, aq, bits):
    """conv-BN-ReLU-conv-BN + skip (QuantEltwiseAdd), ReLU, global average pool (TruncAvgPool-free), linear."""
    import brevitas.nn as qnn
    import torch

    class Res(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(act_quant=aq, bit_width=bits, return_quant_tensor=True)
            self.c1 = qnn.QuantConv2d(4, 4, 3, padding=1, bias=False, weight_quant=wq, weight_bit_width=bits)
            self.b1 = torch.nn.BatchNorm2d(4)
            self.r1 = qnn.QuantReLU(act_quant=aq, bit_width=bits, return_quant_tensor=True)
            self.c2 = qnn.QuantConv2d(4, 4, 3, padding=1, bias=False, weight_quant=wq, weight_bit_width=bits)
            self.b2 = torch.nn.BatchNorm2d(4)
            self.q2 = qnn.QuantIdentity(act_quant=aq, bit_width=bits, return_quant_tensor=True)
            self.add = qnn.QuantEltwiseAdd(return_quant_tensor=True)
            self.r2 = qnn.QuantReLU(act_quant=aq, bit_width=bits, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(4 * 8 * 8, 5, bias=True, weight_quant=wq, weight_bit_width=bits)

        def forward(self, x):
            x = self.inp(x)
            y = self.q2(self.b2(self.c2(self.r1(self.b1(self.c1(x))))))
            return self.fc(torch.flatten(self.r2(self.add(x, y)), 1))

    return Res()


def _cat(wq, aq, bits):
    """Two conv branches concatenated (torch.cat of QuantTensors sharing one scale; QuantCat is broken in 0.13)."""
    import brevitas.nn as qnn
    import torch

    class Cat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(act_quant=aq, bit_width=bits, return_quant_tensor=True)
            self.a = qnn.QuantConv2d(3, 4, 3, padding=1, bias=False, weight_quant=wq, weight_bit_width=bits)
            self.b = qnn.QuantConv2d(3, 4, 1, bias=False, weight_quant=wq, weight_bit_width=bits)
            self.q = qnn.QuantIdentity(act_quant=aq, bit_width=bits, return_quant_tensor=True)
            self.r = qnn.QuantReLU(act_quant=aq, bit_width=bits, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(8 * 8 * 8, 4, bias=False, weight_quant=wq, weight_bit_width=bits)

        def forward(self, x):
            x = self.inp(x)
            a, b = self.q(self.a(x)), self.q(self.b(x))
            return self.fc(torch.flatten(self.r(torch.cat([a, b], dim=1)), 1))

    return Cat()


def _avgpool(wq, aq, bits):
    """conv, ReLU, TruncAvgPool2d (Brevitas' quantized average pool: a Trunc node), linear."""
    import brevitas.nn as qnn
    import torch

    return _seq(qnn.QuantIdentity(act_quant=aq, bit_width=bits, return_quant_tensor=True),
                qnn.QuantConv2d(2, 4, 3, padding=1, bias=False, weight_quant=wq, weight_bit_width=bits),
                qnn.QuantReLU(act_quant=aq, bit_width=bits, return_quant_tensor=True),
                qnn.TruncAvgPool2d(kernel_size=2, stride=2, bit_width=bits),
                torch.nn.Flatten(), qnn.QuantLinear(4 * 4 * 4, 3, bias=False, weight_quant=wq, weight_bit_width=bits))  # fmt: skip


def brevitas_specs() -> dict[str, tuple[Callable, tuple[int, ...], int]]:
    """name -> (module factory, input shape without batch, classes)."""
    q = _q()
    fx_w, fx_a, fx_u = q.Int8WeightPerTensorFixedPoint, q.Int8ActPerTensorFixedPoint, q.Uint8ActPerTensorFixedPoint
    fl_w, fl_a, fl_u = q.Int8WeightPerTensorFloat, q.Int8ActPerTensorFloat, q.Uint8ActPerTensorFloat
    jet = (16, 64, 32, 32, 5)
    return {
        "tfc_w2a2_pot": (lambda: _mlp((784, 64, 64, 64, 10), fx_w, fx_u, 2, 2, inp=fx_a), (784,), 10),
        "sfc_w1a1_bin": (
            lambda: _mlp(
                (784, 64, 64, 10),
                q.SignedBinaryWeightPerTensorConst,
                q.SignedBinaryActPerTensorConst,
                1,
                1,
                act="sign",
                inp=q.SignedBinaryActPerTensorConst,
                bias=False,
            ),
            (784,),
            10,
        ),
        "lfc_w2a2_ternary": (
            lambda: _mlp(
                (784, 64, 64, 10),
                q.SignedTernaryWeightPerTensorConst,
                q.SignedTernaryActPerTensorConst,
                2,
                2,
                act="sign",
                inp=fx_a,
                bias=False,
            ),
            (784,),
            10,
        ),
        "jet_default_float_scales": (lambda: _mlp(jet, fl_w, fl_u, 8, 8, inp=fl_a), (16,), 5),
        "jet_default_no_input_quant": (lambda: _mlp(jet, fl_w, fl_u, 8, 8, bn=False), (16,), 5),
        "jet_pot_w6a6_int16bias": (
            lambda: _mlp(jet, fx_w, fx_u, 6, 6, inp=fx_a, bias_q=q.Int16Bias, bn=False, rqt=True),
            (16,),
            5,
        ),
        "jet_pot_w4a4_perchannel": (lambda: _mlp(jet, fx_w, fx_u, 4, 4, inp=fx_a, per_channel=True), (16,), 5),
        "jet_pot_w3a4_nobias_narrow": (
            lambda: _mlp(jet, fx_w, fx_u, 3, 4, inp=fx_a, bias=False, narrow=True),
            (16,),
            5,
        ),
        "jet_pot_w8a8_int8bias": (
            lambda: _mlp(jet, fx_w, fx_u, 8, 8, inp=fx_a, bias_q=q.Int8Bias, bn=False, rqt=True),
            (16,),
            5,
        ),
        "jet_pot_hardtanh": (lambda: _mlp(jet, fx_w, fx_a, 4, 4, inp=fx_a, act="hardtanh"), (16,), 5),
        "jet_pot_no_input_quant": (lambda: _mlp(jet, fx_w, fx_u, 4, 4), (16,), 5),
        "kws_mlp_w3a3": (lambda: _mlp((490, 64, 64, 12), fx_w, fx_u, 3, 3, inp=fx_a), (490,), 12),
        "cnv_small_w2a2": (lambda: _cnn(2, (3, 16, 16), (8, 16), 10, fx_w, fx_u, 2, 2, fx_a), (3, 16, 16), 10),
        "cnv_small_default": (lambda: _cnn(2, (3, 16, 16), (8, 16), 10, fl_w, fl_u, 8, 8, fl_a), (3, 16, 16), 10),
        "radioml_conv1d_w4a4": (lambda: _cnn(1, (2, 64), (8, 8), 6, fx_w, fx_u, 4, 4, fx_a), (2, 64), 6),
        "residual_block_w4a4": (lambda: _residual(fx_w, fx_a, 4), (4, 8, 8), 5),
        "quantcat_w4a4": (lambda: _cat(fx_w, fx_a, 4), (3, 8, 8), 4),
        "truncavgpool_w4a4": (lambda: _avgpool(fx_w, fx_u, 4), (2, 8, 8), 3),
    }


def export_brevitas(name: str, out: Path) -> Path:
    import torch
    from brevitas.export import export_qonnx

    factory, shape, classes = brevitas_specs()[name]
    torch.manual_seed(0)  # the same models on every run
    model = _train(factory(), shape, classes)
    export_qonnx(model, torch.randn(1, *shape), str(out), dynamo=False)
    return out


# ------------------------------------------------------------------ QONNX written directly
class _G:
    """A tiny graph writer (qonnx test-generator style): nodes, initializers, one input, one output."""

    def __init__(self, shape, seed=0):
        self.shape, self.nodes, self.inits, self.n = shape, [], [], 0
        self.rng = np.random.default_rng(seed)

    def c(self, value, base="c"):
        self.n += 1
        name = f"{base}{self.n}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def op(self, op, inputs, domain="", **attrs):
        self.n += 1
        out = f"{op.lower()}{self.n}_out"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{op}_{self.n}", domain=domain, **attrs))
        return out

    def quant(self, x, scale, bits, signed=1, narrow=0, domain=QONNX, rounding="ROUND", write_rounding=True):
        attrs = {"signed": signed, "narrow": narrow}
        if write_rounding:
            attrs["rounding_mode"] = rounding
        return self.op("Quant", [x, self.c(scale, "s"), self.c(0.0, "z"), self.c(float(bits), "b")], domain, **attrs)

    def model(self, out, out_shape, opset=13):
        graph = helper.make_graph(self.nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, self.shape)],
                                  [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)], self.inits)  # fmt: skip
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _qweight(g, shape, bits, scale, **kw):
    top = 2 ** (bits - 1) - 1
    w = g.rng.integers(-top, top + 1, size=shape) * np.asarray(scale, dtype=np.float64)
    return g.quant(g.c(w, "w"), scale, bits, narrow=1, **kw)


def gemm_perchannel() -> onnx.ModelProto:
    """QKeras-style dense: Gemm(transB) with weight Quant scale [out,1], Quant on bias, per-tensor act quants."""
    g = _G([1, 16])
    x = g.quant("x", 2.0**-4, 8)
    for i, (a, b) in enumerate(((16, 32), (32, 5))):
        scales = 2.0 ** g.rng.integers(-5, -2, size=(b, 1))
        w = _qweight(g, (b, a), 6, scales)
        bias = g.quant(g.c(g.rng.integers(-64, 64, size=b) * 2.0**-8), 2.0**-8, 12)
        x = g.op("Gemm", [x, w, bias], transB=1)
        if i == 0:
            x = g.quant(g.op("Relu", [x]), 2.0**-3, 6, signed=0)
    return g.model(x, [1, 5])


def conv_perchannel(domain: str = QONNX, write_rounding: bool = True) -> onnx.ModelProto:
    """Conv with per-output-channel weight scales [C,1,1,1], quantized bias, ReLU, flatten, MatMul."""
    g = _G([1, 3, 8, 8])
    x = g.quant("x", 2.0**-4, 8, domain=domain, write_rounding=write_rounding)
    scales = 2.0 ** g.rng.integers(-5, -2, size=(4, 1, 1, 1))
    w = _qweight(g, (4, 3, 3, 3), 4, scales, domain=domain, write_rounding=write_rounding)
    b = g.quant(g.c(g.rng.integers(-32, 32, size=4) * 2.0**-9), 2.0**-9, 16, domain=domain,
                write_rounding=write_rounding)  # fmt: skip
    x = g.op("Conv", [x, w, b], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    x = g.quant(g.op("Relu", [x]), 2.0**-3, 4, signed=0, domain=domain, write_rounding=write_rounding)
    x = g.op("Flatten", [x], axis=1)
    wd = _qweight(g, (256, 4), 4, 2.0**-4, domain=domain, write_rounding=write_rounding)
    return g.model(g.op("MatMul", [x, wd]), [1, 4])


def bipolar_mlp() -> onnx.ModelProto:
    """A BNN the FINN way: BipolarQuant weights and activations, float BN-like Mul/Add between."""
    g = _G([1, 32])
    x = g.op("BipolarQuant", ["x", g.c(1.0)], QONNX)
    for i, (a, b) in enumerate(((32, 32), (32, 8))):
        w = g.op("BipolarQuant", [g.c(g.rng.normal(size=(a, b))), g.c(1.0)], QONNX)
        x = g.op("MatMul", [x, w])
        if i == 0:
            x = g.op("Add", [g.op("Mul", [x, g.c(g.rng.uniform(0.5, 1.5, size=b))]), g.c(g.rng.normal(size=b))])
            x = g.op("BipolarQuant", [x, g.c(1.0)], QONNX)
    return g.model(x, [1, 8])


def trunc_avgpool() -> onnx.ModelProto:
    """AveragePool as Brevitas writes it with a Trunc after it (qonnx Trunc op, power-of-two scale)."""
    g = _G([1, 2, 8, 8])
    x = g.quant("x", 2.0**-3, 6, signed=0)
    w = _qweight(g, (4, 2, 3, 3), 4, 2.0**-3)
    x = g.quant(g.op("Relu", [g.op("Conv", [x, w], kernel_shape=[3, 3], pads=[1, 1, 1, 1])]), 2.0**-2, 4, signed=0)
    x = g.op("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
    # Trunc(x, scale, zeropt, input_bit_width, output_bit_width): an 8-bit sum truncated back to 4 bits
    x = g.op("Trunc", [x, g.c(2.0**-2), g.c(0.0), g.c(8.0), g.c(4.0)], QONNX, rounding_mode="FLOOR")
    x = g.op("Flatten", [x], axis=1)
    return g.model(g.op("MatMul", [x, _qweight(g, (64, 3), 4, 2.0**-3)]), [1, 3])


def multithreshold() -> onnx.ModelProto:
    """A FINN-ONNX streamlined layer: MatMul then MultiThreshold (expect a clean refusal naming the op)."""
    g = _G([1, 16])
    x = g.op("MatMul", ["x", g.c(g.rng.integers(-3, 4, size=(16, 8)))])
    thr = np.sort(g.rng.normal(size=(8, 3)) * 4, axis=1)
    x = g.op("MultiThreshold", [x, g.c(thr)], "qonnx.custom_op.general", out_dtype="UINT2")
    return g.model(x, [1, 8])


def chanlast_conv() -> onnx.ModelProto:
    """A graph after qonnx's channels-last conversion: Transpose in, channels-last Conv/MaxPool, Transpose out."""
    g = _G([1, 3, 8, 8])
    x = g.quant("x", 2.0**-4, 8)
    x = g.op("Transpose", [x], perm=[0, 2, 3, 1])
    w = _qweight(g, (4, 3, 3, 3), 4, 2.0**-3)
    x = g.op("Conv", [x, w], CHANLAST, kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    x = g.quant(g.op("Relu", [x]), 2.0**-3, 4, signed=0)
    x = g.op("MaxPool", [x], CHANLAST, kernel_shape=[2, 2], strides=[2, 2])
    x = g.op("Transpose", [x], perm=[0, 3, 1, 2])
    x = g.op("Flatten", [x], axis=1)
    return g.model(g.op("MatMul", [x, _qweight(g, (64, 4), 4, 2.0**-3)]), [1, 4])


def direct_specs() -> dict[str, Callable[[], onnx.ModelProto]]:
    return {
        "qonnx_gemm_perchannel_biasquant": gemm_perchannel,
        "qonnx_conv_perchannel_biasquant": conv_perchannel,
        "qonnx_conv_domain_onnx_brevitas": lambda: conv_perchannel("onnx.brevitas"),
        "qonnx_conv_domain_empty_norounding": lambda: conv_perchannel("", write_rounding=False),
        "qonnx_bipolar_mlp": bipolar_mlp,
        "qonnx_trunc_avgpool": trunc_avgpool,
        "qonnx_multithreshold": multithreshold,
        "qonnx_chanlast_conv": chanlast_conv,
    }


# ------------------------------------------------------------------ generate + run
def generate(out_dir: Path, pattern: str = "*") -> list[Path]:
    """Write every model whose name matches ``pattern`` into ``out_dir``; their paths."""
    import warnings

    warnings.filterwarnings("ignore")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in brevitas_specs():
        if fnmatch.fnmatch(name, pattern):
            paths.append(export_brevitas(name, out_dir / f"brevitas_{name}.onnx"))
    for name, build in direct_specs().items():
        if fnmatch.fnmatch(name, pattern):
            path = out_dir / f"{name}.onnx"
            onnx.save(build(), str(path))
            paths.append(path)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path.home() / ".cache" / "codesign-wild-brevitas", help="model folder")
    ap.add_argument("--models", default="*", help="glob on the model names")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--memory-gb", type=float, default=6.0)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--no-generate", action="store_true", help="reuse the models already in --out")
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()
    paths = sorted(args.out.glob("*.onnx")) if args.no_generate else generate(args.out, args.models)
    paths = [p for p in paths if fnmatch.fnmatch(p.stem.removeprefix("brevitas_"), args.models)]
    lines = ["| model | quantized | hls4ml --verify |", "|---|---|---|"]
    counts: dict[str, int] = {}
    t0 = time.perf_counter()
    for path in paths:
        py = [sys.executable, "-m", "codesign.cli"]
        with real_models.tempfile.TemporaryDirectory(prefix="wildbrev-") as tmp:
            cmd = [*py, "compile", str(path), "-t", real_models.TARGET, "-o", str(Path(tmp) / "out"), "--verify",
                   "--samples", str(args.samples)]  # fmt: skip
            outcome = real_models.classify(*real_models.run_step(cmd, args.timeout, args.memory_gb), verify=True)
        counts[outcome.kind] = counts.get(outcome.kind, 0) + 1
        quantized = real_models.is_quantized(path)
        lines.append(f"| `{path.stem}` | {'yes' if quantized else 'no'} | {outcome.cell().replace('|', '/')} |")
        print(f"  {path.stem}: {outcome.cell()}", file=sys.stderr, flush=True)
    text = "\n".join(lines) + "\n\n" + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    text += f" ({len(paths)} models, {time.perf_counter() - t0:.0f} s, target {real_models.TARGET})\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
