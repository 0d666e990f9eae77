"""PyTorch float models (MLPerf-Tiny-like and the layer idioms real exports carry) -> ONNX via the TorchScript exporter.

Each entry builds a module, gives it trained-like weights (a few optimizer steps on random inputs
labelled by a fixed random teacher; one entry stays untrained) and exports it with
``torch.onnx.export(dynamo=False)`` at the entry's opset. Real input sizes are noted where an
architecture is shrunk to keep a 2-core compile affordable.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass(frozen=True)
class TorchEntry:
    """One generated model: builder, input shape (batch 1), opset and export options."""

    name: str
    build: Callable[[], nn.Module]
    shape: tuple[int, ...]
    opset: int
    note: str = ""
    train: bool = True
    dynamic_batch: bool = False
    #: also exported with the dynamo exporter (torch's default since 2.9) as ``torch-dynamo/<name>``
    dynamo: bool = False


def _ds_block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(),
        nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
    )  # fmt: skip


def ds_cnn() -> nn.Module:
    """MLPerf Tiny KWS DS-CNN (49x10x1 MFCC), 16 channels instead of 64."""
    return nn.Sequential(
        nn.Conv2d(1, 16, (10, 4), (2, 2), (5, 1)), nn.BatchNorm2d(16), nn.ReLU(), nn.Dropout(0.2),
        _ds_block(16, 16), _ds_block(16, 16),
        nn.AvgPool2d((25, 5)), nn.Flatten(), nn.Linear(16, 12),
    )  # fmt: skip


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.b2 = nn.BatchNorm2d(cout)
        self.skip = nn.Conv2d(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.b1(self.c1(x)))
        return torch.relu(self.b2(self.c2(y)) + self.skip(x))


class ResNet8(nn.Module):
    """MLPerf Tiny image classification ResNet-8 (32x32x3 CIFAR); here 16x16x3, 8/16/16 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.blocks = nn.Sequential(ResBlock(8, 8, 1), ResBlock(8, 16, 2), ResBlock(16, 16, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.blocks(self.stem(x)))
        return self.fc(x.view(x.size(0), -1))


def mobilenet_v1() -> nn.Module:
    """MLPerf Tiny visual wake words MobileNetV1 alpha 0.25 (96x96x3); here 32x32x3, first blocks, ReLU6."""

    def dw(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(),
                nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6()]  # fmt: skip

    return nn.Sequential(
        nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
        *dw(8, 16, 1), *dw(16, 32, 2), *dw(32, 32, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 2),
    )  # fmt: skip


def autoencoder() -> nn.Module:
    """MLPerf Tiny anomaly detection dense AutoEncoder 640-128-128-128-8-128-128-128-640 with BN."""
    sizes = [640, 128, 128, 128, 8, 128, 128, 128]
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(128, 640))


def jet_tagger() -> nn.Module:
    """hls4ml jet tagger 16-64-32-32-5 with BatchNorm and Softmax."""
    return nn.Sequential(
        nn.Linear(16, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(),
        nn.Linear(32, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 5), nn.Softmax(dim=1),
    )  # fmt: skip


def conv1d_net() -> nn.Module:
    """1-D conv net (e.g. a trigger / radio classifier): Conv1d+BN+ReLU, MaxPool1d, flatten, dense."""
    return nn.Sequential(
        nn.Conv1d(2, 8, 5, padding=2), nn.BatchNorm1d(8), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(8, 16, 3, padding=1), nn.BatchNorm1d(16), nn.ReLU(), nn.MaxPool1d(2),
        nn.Flatten(), nn.Linear(16 * 8, 4),
    )  # fmt: skip


class ViewFlatten(nn.Module):
    """Conv net flattened with ``x.view(x.size(0), -1)``: the Shape/Gather/Unsqueeze/Concat/Reshape idiom."""

    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.act = act
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.act(self.conv(x)))
        return self.fc(x.view(x.size(0), -1))


class Mlp(nn.Module):
    """Dense net with a chosen activation and optional channel Mul/Add constants (input scaling)."""

    def __init__(self, act: nn.Module, affine: bool = False, width: int = 32) -> None:
        super().__init__()
        self.affine = affine
        self.scale = nn.Parameter(torch.linspace(0.5, 2.0, 16), requires_grad=False)
        self.shift = nn.Parameter(torch.linspace(-0.25, 0.25, 16), requires_grad=False)
        self.l1, self.act, self.l2 = nn.Linear(16, width), act, nn.Linear(width, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.affine:
            x = x * self.scale + self.shift
        return self.l2(self.act(self.l1(x)))


class PoolPad(nn.Module):
    """Conv with padded MaxPool/AvgPool (ceil_mode, count_include_pad) and torch.flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3)
        self.p1 = nn.MaxPool2d(3, 2, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.p2 = nn.AvgPool2d(2, 2, padding=1, count_include_pad=False)
        self.fc = nn.Linear(8 * 4 * 4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.p1(torch.relu(self.c1(x)))
        x = self.p2(nn.functional.leaky_relu(self.c2(x), 0.1))
        return self.fc(torch.flatten(x, 1))


class UNetMini(nn.Module):
    """Encoder/decoder with nearest Upsample and a Concat skip (segmentation / super-resolution idiom)."""

    def __init__(self, transpose: bool = False, mode: str = "nearest") -> None:
        super().__init__()
        self.e1 = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.down = nn.MaxPool2d(2)
        self.e2 = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU())
        linear = {"align_corners": False} if mode == "bilinear" else {}
        self.up = nn.ConvTranspose2d(8, 8, 2, 2) if transpose else nn.Upsample(scale_factor=2, mode=mode, **linear)
        self.d1 = nn.Sequential(nn.Conv2d(12, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.e1(x)
        b = self.up(self.e2(self.down(a)))
        return self.d1(torch.cat([a, b], dim=1))


class MeanPoolNet(nn.Module):
    """Conv net pooled by ``x.mean((2, 3))`` (ReduceMean: the PyTorch idiom for global average pooling), ZeroPad2d."""

    def __init__(self) -> None:
        super().__init__()
        self.pad = nn.ZeroPad2d(1)
        self.c1 = nn.Conv2d(3, 8, 3)
        self.b1 = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, 2, 1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.b1(self.c1(self.pad(x))))
        return self.fc(torch.relu(self.c2(x)).mean((2, 3)))


class DeepSets(nn.Module):
    """DeepSets jet tagger: per-particle dense phi on (1, N, F), pooled over the particles (sum/mean/max), rho."""

    def __init__(self, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.phi = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())
        self.rho = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.phi(x)
        h = h.sum(1) if self.pool == "sum" else h.mean(1) if self.pool == "mean" else h.max(1).values
        return self.rho(h)


class GluMlp(nn.Module):
    """A gated MLP: ``u, v = fc(x).chunk(2, -1)``, ``u * sigmoid(v)`` (Split/Slice of the features)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(16, 32), nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = self.a(x).chunk(2, dim=1)
        return self.b(u * torch.sigmoid(v))


class StemResNet(nn.Module):
    """ResNet-18-style stem (7x7/2 conv, BN, ReLU, MaxPool(3, 2, 1)) and two residual blocks, 32x32 input."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 7, 2, 3), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        self.blocks = nn.Sequential(ResBlock(16, 16, 1), ResBlock(16, 32, 2))
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1))


class NormMlp(nn.Module):
    """Dense -> LayerNorm -> activation -> Dense on (1, F), or per token on (1, T, F) then flattened."""

    def __init__(self, act: nn.Module, tokens: int = 0) -> None:
        super().__init__()
        self.tokens, self.act = tokens, act
        self.a, self.n = (
            nn.Linear(6 if tokens else 16, 32 if not tokens else 16),
            nn.LayerNorm(32 if not tokens else 16),
        )
        self.b = nn.Linear(16 * tokens if tokens else 32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.act(self.n(self.a(x))).flatten(1))


def mobilenet_v1_full() -> nn.Module:
    """MLPerf Tiny VWW MobileNetV1 alpha 0.25 at its real 96x96x3 (13 depthwise blocks, ReLU6): io_stream."""

    def dw(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(),
                nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6()]  # fmt: skip

    cfg = [(8, 16, 1), (16, 32, 2), (32, 32, 1), (32, 64, 2), (64, 64, 1), (64, 128, 2)]
    cfg += [(128, 128, 1)] * 5 + [(128, 256, 2), (256, 256, 1)]
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
        *[m for c in cfg for m in dw(*c)], nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 2),
    )  # fmt: skip


ENTRIES: list[TorchEntry] = [
    TorchEntry("ds_cnn_kws", ds_cnn, (1, 1, 49, 10), 13, "MLPerf Tiny KWS, 16 ch (real 64)", dynamo=True),
    TorchEntry(
        "resnet8_cifar", ResNet8, (1, 3, 16, 16), 11, "MLPerf Tiny IC, 16x16 (real 32x32), 8/16/16 ch", dynamo=True
    ),
    TorchEntry(
        "mobilenetv1_vww",
        mobilenet_v1,
        (1, 3, 32, 32),
        13,
        "MLPerf Tiny VWW, 32x32 (real 96x96), 4 blocks",
        dynamo=True,
    ),
    TorchEntry(
        "mobilenetv1_vww96", mobilenet_v1_full, (1, 3, 96, 96), 13, "MLPerf Tiny VWW, real size (ReLU6 streamed)"
    ),
    TorchEntry("resnet_stem_maxpool", StemResNet, (1, 3, 32, 32), 13, "7x7/2 conv + MaxPool(3, 2, 1) stem, residuals"),
    TorchEntry("deepsets_sum", lambda: DeepSets("sum"), (1, 16, 3), 13, "DeepSets, sum over 16 particles (ReduceSum)"),
    TorchEntry("deepsets_mean", lambda: DeepSets("mean"), (1, 16, 3), 13, "DeepSets, mean over particles", dynamo=True),
    TorchEntry("deepsets_max", lambda: DeepSets("max"), (1, 16, 3), 13, "DeepSets, max over particles (ReduceMax)"),
    TorchEntry("glu_mlp", GluMlp, (1, 16), 13, "x.chunk(2, -1) gate (Split), SiLU-like u * sigmoid(v)"),
    TorchEntry("layernorm_mlp", lambda: NormMlp(nn.ReLU()), (1, 16), 17, "LayerNorm (LayerNormalization op)"),
    TorchEntry(
        "layernorm_gelu_mlp", lambda: NormMlp(nn.GELU()), (1, 16), 13, "LayerNorm spelled out + exact GELU (Erf)"
    ),
    TorchEntry("token_layernorm", lambda: NormMlp(nn.ReLU(), tokens=8), (1, 8, 6), 13, "per-token Dense + LayerNorm"),
    TorchEntry("autoencoder_ad", autoencoder, (1, 640), 17, "MLPerf Tiny AD, real size"),
    TorchEntry("jet_tagger", jet_tagger, (1, 16), 9, "hls4ml jet tagger, real size"),
    TorchEntry("jet_tagger_untrained", jet_tagger, (1, 16), 13, "untrained (kaiming init)", train=False),
    TorchEntry("jet_tagger_dynbatch", jet_tagger, (1, 16), 11, "dynamic batch axis", dynamic_batch=True, dynamo=True),
    TorchEntry("conv1d_radio", conv1d_net, (1, 2, 32), 11, "1-D conv, 2x32 (RadioML-like, real 2x1024)", dynamo=True),
    TorchEntry("view_flatten_relu", lambda: ViewFlatten(nn.ReLU()), (1, 1, 8, 8), 9, "x.view(x.size(0), -1)"),
    TorchEntry("view_flatten_relu6", lambda: ViewFlatten(nn.ReLU6()), (1, 1, 8, 8), 13, "ReLU6 (Clip)"),
    TorchEntry("view_flatten_hardtanh", lambda: ViewFlatten(nn.Hardtanh()), (1, 1, 8, 8), 11, "Hardtanh (Clip)"),
    TorchEntry("mlp_leakyrelu", lambda: Mlp(nn.LeakyReLU(0.01)), (1, 16), 13),
    TorchEntry("mlp_sigmoid", lambda: Mlp(nn.Sigmoid()), (1, 16), 11),
    TorchEntry("mlp_tanh_affine", lambda: Mlp(nn.Tanh(), affine=True), (1, 16), 17, "channel Mul/Add constants"),
    TorchEntry("mlp_elu", lambda: Mlp(nn.ELU()), (1, 16), 13),
    TorchEntry("mlp_selu", lambda: Mlp(nn.SELU()), (1, 16), 9),
    TorchEntry("pool_padding", PoolPad, (1, 3, 16, 16), 13, "padded Max/AvgPool, torch.flatten", dynamo=True),
    TorchEntry("unet_upsample_concat", UNetMini, (1, 1, 8, 8), 11, "Upsample nearest + Concat skip", dynamo=True),
    TorchEntry("unet_upsample_opset9", UNetMini, (1, 1, 8, 8), 9, "opset-9 Upsample op"),
    TorchEntry(
        "unet_bilinear",
        lambda: UNetMini(mode="bilinear"),
        (1, 1, 8, 8),
        13,
        "bilinear Upsample (half_pixel)",
        dynamo=True,
    ),
    TorchEntry(
        "mean_pool_zeropad", MeanPoolNet, (1, 3, 8, 8), 11, "x.mean((2, 3)) (ReduceMean), ZeroPad2d", dynamo=True
    ),
    TorchEntry("mlp_hardsigmoid", lambda: Mlp(nn.Hardsigmoid()), (1, 16), 14, "HardSigmoid"),
    TorchEntry(
        "unet_convtranspose", lambda: UNetMini(True), (1, 1, 8, 8), 13, "ConvTranspose2d(2, 2): per-phase 1x1 convs"
    ),
]


def _train(module: nn.Module, shape: tuple[int, ...], steps: int = 60, seed: int = 0) -> None:
    """A few Adam steps towards a fixed random teacher's labels/targets: realistic scales, no near-ties."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((256, *shape[1:]), generator=g)
    module.train()
    with torch.no_grad():
        out = module(x[:2])
    teacher = torch.randn((int(torch.tensor(shape[1:]).prod()), out[0].numel()), generator=g)
    y = (x.flatten(1) @ teacher).reshape(x.shape[0], *out.shape[1:])
    opt = torch.optim.Adam(module.parameters(), lr=3e-3)
    classify = out.dim() == 2 and out.shape[1] > 1 and out.shape[1] < 20
    for i in range(steps):
        batch = slice((i * 32) % 256, (i * 32) % 256 + 32)
        pred = module(x[batch])
        if classify:
            loss = nn.functional.cross_entropy(pred, y[batch].argmax(1))
        else:
            loss = nn.functional.mse_loss(pred, torch.tanh(y[batch] / y.std()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    module.eval()


def export(entry: TorchEntry, path: Path, dynamo: bool = False) -> None:
    """Build, train (unless untrained) and export one entry to ``path`` (``dynamo``: torch's default exporter)."""
    torch.manual_seed(0)
    module = entry.build()
    if entry.train:
        _train(module, entry.shape)
    module.eval()
    axes = {"input": {0: "batch"}, "output": {0: "batch"}} if entry.dynamic_batch else None
    with torch.no_grad():
        if dynamo:
            torch.onnx.export(module, (torch.randn(entry.shape),), str(path), dynamo=True, external_data=False,
                              input_names=["input"], output_names=["output"])  # fmt: skip
        else:
            torch.onnx.export(module, (torch.randn(entry.shape),), str(path), dynamo=False, opset_version=entry.opset,
                              input_names=["input"], output_names=["output"], dynamic_axes=axes)  # fmt: skip
