"""Torch side of a candidate: QONNX-compatible fake quantization and the single-candidate module.

The quantizer math lives here once and is shared by the per-candidate module and the
population trainer (which broadcasts it over a leading candidate axis), so what the
search trains is, bit for bit, what the QONNX ``Quant`` nodes of the IR compute.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from codesign.search.genome import (
    ATTENTION_TENSORS,
    BIAS_OFFSET,
    LEAKY_ALPHA,
    NORM_EPS,
    UNSIGNED_ACTIVATIONS,
    Genome,
    Params,
    pow2_scale,
)

BN_MOMENTUM = 0.1
#: EMA factor of the activation-range tracker that sets each activation Quant's scale.
RANGE_MOMENTUM = 0.1


def qbounds(bits: torch.Tensor, signed: bool | torch.Tensor, narrow: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer range of a QONNX Quant; ``bits``/``signed`` may carry a candidate axis."""
    if isinstance(signed, bool):
        if signed:
            hi = torch.exp2(bits - 1) - 1
            return (-hi if narrow else -hi - 1), hi
        return torch.zeros_like(bits), torch.exp2(bits) - 1
    s_hi = torch.exp2(bits - 1) - 1
    s_lo = -s_hi if narrow else -s_hi - 1
    return torch.where(signed, s_lo, torch.zeros_like(bits)), torch.where(signed, s_hi, torch.exp2(bits) - 1)


def fake_quant(
    x: torch.Tensor, scale: torch.Tensor, bits: torch.Tensor, signed: bool | torch.Tensor, narrow: bool = False
) -> torch.Tensor:
    """QONNX ``Quant`` (zero point 0, ROUND) forward, straight-through gradient."""
    lo, hi = qbounds(bits, signed, narrow)
    return _StraightThroughQuant.apply(x, scale, lo, hi)


class _StraightThroughQuant(torch.autograd.Function):
    """round(clamp(x / scale)) * scale forward, identity backward (3 kernels instead of 7 + 3)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.clamp(torch.round(x / scale), lo, hi).mul_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return grad, None, None, None


def pow2_scale_t(max_abs: torch.Tensor, bits: torch.Tensor, signed: bool | torch.Tensor) -> torch.Tensor:
    """Tensor version of :func:`codesign.search.genome.pow2_scale` (same formula)."""
    return pow2_for_qmax(max_abs, qbounds(bits, signed, narrow=True)[1])


def pow2_for_qmax(max_abs: torch.Tensor, qmax: torch.Tensor) -> torch.Tensor:
    """Smallest power-of-two step with ``qmax * step >= max_abs`` (qmax precomputed by hot loops)."""
    return torch.exp2(torch.ceil(torch.log2(torch.clamp(max_abs, min=1e-8) / qmax)))


def ste_quant(x: torch.Tensor, scale: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """:func:`fake_quant` with the integer bounds precomputed (the population trainer's hot path)."""
    return _StraightThroughQuant.apply(x, scale, lo, hi)


def snap(b: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bias on the offset accumulator grid (genome.snapped_bias), straight-through gradient."""
    return b + ((torch.round(b / grid - BIAS_OFFSET) + BIAS_OFFSET) * grid - b).detach()


def activation(kind: str, x: torch.Tensor) -> torch.Tensor:
    if kind == "relu":
        return F.relu(x)
    if kind == "leaky_relu":
        return F.leaky_relu(x, LEAKY_ALPHA)
    if kind == "gelu":
        return F.gelu(x)
    if kind == "tanh":
        return torch.tanh(x)
    if kind == "sigmoid":
        return torch.sigmoid(x)
    if kind == "identity":
        return x
    raise ValueError(f"unknown activation {kind!r}")


def input_scale(x_train: np.ndarray, bits: int) -> float:
    """Power-of-two input step covering the 99.9th percentile of |x| (outliers clip)."""
    return pow2_scale(float(np.quantile(np.abs(x_train), 0.999)), bits, True)


class CandidateNet(nn.Module):
    """One candidate: [Quant -> Linear -> norm -> act -> dropout -> Quant] x depth -> Linear."""

    def __init__(self, genome: Genome, n_features: int, n_classes: int):
        super().__init__()
        self.genome = genome
        dims = (n_features, *genome.widths, n_classes)
        self.linears = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) for i in range(genome.depth + 1))
        self.norms = nn.ModuleList(
            nn.BatchNorm1d(w, eps=NORM_EPS, momentum=BN_MOMENTUM) if n == "batch" else nn.LayerNorm(w, eps=NORM_EPS) if n == "layer" else nn.Identity()
            for w, n in zip(genome.widths, genome.norms)
        )  # fmt: skip
        for lin, norm in zip(self.linears, genome.norms):
            if norm == "batch":  # batch norm cancels the bias in front of it; training it only adds noise
                lin.bias.requires_grad_(False)
        self.dropout = nn.Dropout(genome.dropout)
        self.register_buffer("bits", torch.tensor(float(genome.bits)))
        self.register_buffer("in_scale", torch.tensor(pow2_scale(4.0, genome.bits, True)))
        self.register_buffer("act_range", torch.zeros(genome.depth))

    def set_input_scale(self, scale: float) -> None:
        self.in_scale.fill_(scale)

    def weight_scale(self, i: int) -> torch.Tensor:
        return pow2_scale_t(self.linears[i].weight.detach().abs().max(), self.bits, True)

    def act_scale(self, i: int) -> torch.Tensor:
        return pow2_scale_t(self.act_range[i], self.bits, self.genome.activations[i] not in UNSIGNED_ACTIVATIONS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = fake_quant(x, self.in_scale, self.bits, True)
        s_in = self.in_scale
        for i, lin in enumerate(self.linears):
            ws = self.weight_scale(i)
            w = fake_quant(lin.weight, ws, self.bits, True, narrow=True)
            h = F.linear(h, w, snap(lin.bias, s_in * ws))
            if i == self.genome.depth:
                return h
            h = self.dropout(activation(self.genome.activations[i], self.norms[i](h)))
            if self.training:
                with torch.no_grad():
                    batch_max = h.detach().abs().max()
                    seen = self.act_range[i] > 0
                    self.act_range[i] = torch.where(
                        seen, (1 - RANGE_MOMENTUM) * self.act_range[i] + RANGE_MOMENTUM * batch_max, batch_max
                    )
            s_in = self.act_scale(i)
            h = fake_quant(h, s_in, self.bits, self.genome.activations[i] not in UNSIGNED_ACTIVATIONS)
        return h

    def l1_penalty(self) -> torch.Tensor:
        return sum(lin.weight.abs().sum() for lin in self.linears)

    # -------------------------------------------------------------- Params dict
    def export_params(self) -> Params:
        p: Params = {"in_scale": np.float32(self.in_scale.item())}
        for i, lin in enumerate(self.linears):
            p[f"w{i}"] = lin.weight.detach().numpy().T.copy()
            p[f"b{i}"] = lin.bias.detach().numpy().copy()
            p[f"ws{i}"] = np.float32(self.weight_scale(i).item())
            if i == self.genome.depth:
                break
            p[f"as{i}"] = np.float32(self.act_scale(i).item())
            norm = self.norms[i]
            if isinstance(norm, (nn.BatchNorm1d, nn.LayerNorm)):
                p[f"g{i}"], p[f"be{i}"] = norm.weight.detach().numpy().copy(), norm.bias.detach().numpy().copy()
            if isinstance(norm, nn.BatchNorm1d):
                p[f"rm{i}"], p[f"rv{i}"] = norm.running_mean.numpy().copy(), norm.running_var.numpy().copy()
        return p

    @torch.no_grad()
    def load_params(self, p: Params) -> None:
        """Load a Params dict; activation ranges are set so act_scale reproduces ``as{i}``."""
        self.in_scale.fill_(float(p["in_scale"]))
        for i, lin in enumerate(self.linears):
            lin.weight.copy_(torch.as_tensor(p[f"w{i}"]).T)
            lin.bias.copy_(torch.as_tensor(p[f"b{i}"]))
            if i == self.genome.depth:
                break
            signed = self.genome.activations[i] not in UNSIGNED_ACTIVATIONS
            qmax = 2 ** (self.genome.bits - 1) - 1 if signed else 2**self.genome.bits - 1
            self.act_range[i] = float(p[f"as{i}"]) * qmax  # pow2_scale of this is exactly as{i}
            norm = self.norms[i]
            if isinstance(norm, (nn.BatchNorm1d, nn.LayerNorm)):
                norm.weight.copy_(torch.as_tensor(p[f"g{i}"]))
                norm.bias.copy_(torch.as_tensor(p[f"be{i}"]))
            if isinstance(norm, nn.BatchNorm1d):
                norm.running_mean.copy_(torch.as_tensor(p[f"rm{i}"]))
                norm.running_var.copy_(torch.as_tensor(p[f"rv{i}"]))


def count_params(genome: Genome, n_features: int, n_classes: int) -> int:
    dims = (n_features, *genome.widths, n_classes)
    return int(sum(dims[i] * dims[i + 1] + dims[i + 1] for i in range(len(dims) - 1)))


class ConvCandidateNet(nn.Module):
    """A candidate with leading conv blocks: [Quant -> Conv -> norm -> act (+ skip) -> pool -> Quant] x n_conv,
    flatten, then the dense blocks and output layer of :class:`CandidateNet`; the IR's ops, one for one."""

    def __init__(self, genome: Genome, n_features: int, n_classes: int):
        super().__init__()
        from codesign.search.genome import ATTENTION, _layer_dims, block_signed

        self.genome, self.n_conv = genome, genome.n_conv
        self.input_shape = tuple(genome.input_shape)
        nd = len(self.input_shape) - 1
        conv_cls, bn_cls = (nn.Conv1d, nn.BatchNorm1d) if nd == 1 else (nn.Conv2d, nn.BatchNorm2d)
        layers: list[nn.Module] = []
        norms: list[nn.Module] = []
        self.qkv = nn.ModuleDict()
        c_in = self.input_shape[0]
        for i, (fan_in, out) in enumerate(_layer_dims(genome, n_features, n_classes)):
            if i < self.n_conv and genome.kinds[i] == ATTENTION:  # q/k/v: channels -> hidden; projection back
                self.qkv[str(i)] = nn.ModuleList(conv_cls(c_in, fan_in, 1) for _ in range(3))
                layers.append(conv_cls(fan_in, out, 1))
            elif i < self.n_conv:
                k = genome.kernels[i]
                layers.append(conv_cls(c_in, out, k, padding=k // 2))
                c_in = out
            else:
                layers.append(nn.Linear(fan_in, out))
            if i == genome.depth:
                break
            norm, conv = genome.norms[i], i < self.n_conv
            bn = bn_cls if conv else nn.BatchNorm1d
            if norm == "batch":
                norms.append(bn(out, eps=NORM_EPS, momentum=BN_MOMENTUM))
                layers[-1].bias.requires_grad_(False)  # cancelled by the batch norm
            elif norm == "layer":
                norms.append(nn.GroupNorm(1, out, eps=NORM_EPS) if conv else nn.LayerNorm(out, eps=NORM_EPS))
            else:
                norms.append(nn.Identity())
        self.linears = nn.ModuleList(layers)  # (named as in CandidateNet: l1_penalty, export walk it)
        self.norms = nn.ModuleList(norms)
        self.signed = block_signed(genome)
        self.dropout = nn.Dropout(genome.dropout)
        self.register_buffer("bits", torch.tensor(float(genome.bits)))
        self.register_buffer("in_scale", torch.tensor(pow2_scale(4.0, genome.bits, True)))
        self.register_buffer("act_range", torch.zeros(genome.depth))
        self.register_buffer("attn_range", torch.zeros(genome.depth, 4))  # q, k, v, z of attention blocks

    def set_input_scale(self, scale: float) -> None:
        self.in_scale.fill_(scale)

    def weight_scale(self, i: int) -> torch.Tensor:
        return pow2_scale_t(self.linears[i].weight.detach().abs().max(), self.bits, True)

    def act_scale(self, i: int) -> torch.Tensor:
        return pow2_scale_t(self.act_range[i], self.bits, self.signed[i])

    def _tracked(self, x: torch.Tensor, ranges: torch.Tensor, j: int, signed: bool) -> torch.Tensor:
        """Update the EMA range ``ranges[j]`` (training) and quantize ``x`` with its power-of-two scale."""
        if self.training:
            with torch.no_grad():
                batch_max = x.detach().abs().max()
                ranges[j] = torch.where(
                    ranges[j] > 0, (1 - RANGE_MOMENTUM) * ranges[j] + RANGE_MOMENTUM * batch_max, batch_max
                )
        return fake_quant(x, pow2_scale_t(ranges[j], self.bits, signed), self.bits, signed)

    def _attention(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """The IR's attention subgraph (genome._attention_ir), op for op."""
        from codesign.search.genome import softmax_scale

        n, spatial, hidden = len(h), h.shape[2:], self.genome.widths[i]
        qkv = []
        for j, conv in enumerate(self.qkv[str(i)]):
            w = fake_quant(
                conv.weight,
                pow2_scale_t(conv.weight.detach().abs().max(), self.bits, True),
                self.bits,
                True,
                narrow=True,
            )
            qkv.append(
                self._tracked(conv._conv_forward(h, w, conv.bias), self.attn_range[i], j, True).reshape(n, hidden, -1)
            )
        q, k, v = qkv
        att = torch.softmax(torch.matmul(q.transpose(1, 2), k), dim=-1)
        att = fake_quant(att, torch.tensor(softmax_scale(self.genome.bits)), self.bits, False)
        z = torch.matmul(att, v.transpose(1, 2)).transpose(1, 2).reshape(n, hidden, *spatial)
        return self._tracked(z, self.attn_range[i], 3, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.genome
        h = fake_quant(x.reshape(len(x), *self.input_shape), self.in_scale, self.bits, True)
        s_in = self.in_scale
        for i, layer in enumerate(self.linears):
            ws = self.weight_scale(i)
            w = fake_quant(layer.weight, ws, self.bits, True, narrow=True)
            if i < self.n_conv:
                block_in = h
                attention = str(i) in self.qkv  # its projection's input is the attention output: bias not snapped
                bias = layer.bias if attention else snap(layer.bias, s_in * ws)
                h = layer._conv_forward(self._attention(i, h) if attention else h, w, bias)
            else:
                if i == self.n_conv:
                    h = h.flatten(1)
                h = F.linear(h, w, snap(layer.bias, s_in * ws))
            if i == g.depth:
                return h
            h = self.dropout(activation(g.activations[i], self.norms[i](h)))
            if i < self.n_conv and g.skips[i]:
                h = h + block_in
            if i < self.n_conv and g.pools[i] != "none":
                pool = (F.max_pool1d, F.max_pool2d) if g.pools[i] == "max" else (F.avg_pool1d, F.avg_pool2d)
                h = pool[h.dim() - 3](h, 2)
            h = self._tracked(h, self.act_range, i, self.signed[i])
            s_in = self.act_scale(i)
        return h

    def l1_penalty(self) -> torch.Tensor:
        convs = [*self.linears, *(c for m in self.qkv.values() for c in m)]
        return sum(layer.weight.abs().sum() for layer in convs)

    def export_params(self) -> Params:
        p: Params = {"in_scale": np.float32(self.in_scale.item())}
        for i, layer in enumerate(self.linears):
            w = layer.weight.detach().numpy()
            p[f"w{i}"] = (w if i < self.n_conv else w.T).copy()
            p[f"b{i}"] = layer.bias.detach().numpy().copy()
            p[f"ws{i}"] = np.float32(self.weight_scale(i).item())
            if i == self.genome.depth:
                break
            p[f"as{i}"] = np.float32(self.act_scale(i).item())
            for j, conv in enumerate(self.qkv[str(i)] if str(i) in self.qkv else []):
                t = ATTENTION_TENSORS[j]
                p[f"w{t}{i}"], p[f"b{t}{i}"] = conv.weight.detach().numpy().copy(), conv.bias.detach().numpy().copy()
                p[f"ws{t}{i}"] = np.float32(pow2_scale_t(conv.weight.detach().abs().max(), self.bits, True).item())
            if str(i) in self.qkv:
                for j, t in enumerate(ATTENTION_TENSORS):
                    p[f"a{t}{i}"] = np.float32(pow2_scale_t(self.attn_range[i, j], self.bits, True).item())
            norm = self.norms[i]
            if not isinstance(norm, nn.Identity):
                p[f"g{i}"], p[f"be{i}"] = norm.weight.detach().numpy().copy(), norm.bias.detach().numpy().copy()
            if isinstance(norm, nn.modules.batchnorm._BatchNorm):
                p[f"rm{i}"], p[f"rv{i}"] = norm.running_mean.numpy().copy(), norm.running_var.numpy().copy()
        return p

    @torch.no_grad()
    def load_params(self, p: Params) -> None:
        """Load a Params dict; activation ranges are set so act_scale reproduces ``as{i}``."""
        self.in_scale.fill_(float(p["in_scale"]))
        for i, layer in enumerate(self.linears):
            w = torch.as_tensor(p[f"w{i}"])
            layer.weight.copy_(w if i < self.n_conv else w.T)
            layer.bias.copy_(torch.as_tensor(p[f"b{i}"]))
            if i == self.genome.depth:
                break
            qmax = 2 ** (self.genome.bits - 1) - 1 if self.signed[i] else 2**self.genome.bits - 1
            self.act_range[i] = float(p[f"as{i}"]) * qmax
            if str(i) in self.qkv:
                for j, conv in enumerate(self.qkv[str(i)]):
                    t = ATTENTION_TENSORS[j]
                    conv.weight.copy_(torch.as_tensor(p[f"w{t}{i}"]))
                    conv.bias.copy_(torch.as_tensor(p[f"b{t}{i}"]))
                signed_max = 2 ** (self.genome.bits - 1) - 1
                for j, t in enumerate(ATTENTION_TENSORS):
                    self.attn_range[i, j] = float(p[f"a{t}{i}"]) * signed_max
            norm = self.norms[i]
            if not isinstance(norm, nn.Identity):
                norm.weight.copy_(torch.as_tensor(p[f"g{i}"]))
                norm.bias.copy_(torch.as_tensor(p[f"be{i}"]))
            if isinstance(norm, nn.modules.batchnorm._BatchNorm):
                norm.running_mean.copy_(torch.as_tensor(p[f"rm{i}"]))
                norm.running_var.copy_(torch.as_tensor(p[f"rv{i}"]))


def candidate_net(genome: Genome, n_features: int, n_classes: int) -> CandidateNet | ConvCandidateNet:
    """The torch module of any genome: the MLP net, or the conv net when it has conv blocks."""
    return (
        ConvCandidateNet(genome, n_features, n_classes)
        if genome.n_conv
        else CandidateNet(genome, n_features, n_classes)
    )
