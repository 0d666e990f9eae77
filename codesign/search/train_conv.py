"""Batched training of conv / attention candidates: one grouped convolution for a whole group.

Why: conv candidates trained one by one spend most of a step in Python and kernel launches.
Candidates with the same block kinds, pools, depth and input shape are stacked on a candidate
axis C; activations are carried as (C, N, channels, *spatial) and every conv block runs as ONE
``conv{1,2}d(groups=C)``: channels are zero-padded to the group's widest, kernels zero-padded
(centred) to its largest, and a 0/1 weight mask keeps padded taps and channels at zero (their
gradient is zero, so Adam never moves them). Activations, norms, skips and learning rates are
selected per candidate, quantizer scales and activation ranges are per candidate, attention runs
as batched matmuls with padded hidden channels (zeros add nothing to q^T k or to att v). So each
candidate computes what :class:`~codesign.search.nets.ConvCandidateNet` computes, up to float
summation order, and trains from the same initial weights in the same sample order.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from codesign.search.genome import (
    ATTENTION,
    ATTENTION_TENSORS,
    NORM_EPS,
    Genome,
    Params,
    _layer_dims,
    block_signed,
    softmax_scale,
)
from codesign.search.nets import BN_MOMENTUM, RANGE_MOMENTUM, activation, pow2_for_qmax, qbounds, snap, ste_quant

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


class ConvGroup:
    """Conv candidates of one ``Genome.arch_key`` (depth, kinds, pools, input shape), trained together."""

    def __init__(self, genomes: list[Genome], inits: list[Params], n_features: int, n_classes: int, device=None):
        with torch.device(device or "cpu"):
            self._init(genomes, inits, n_features, n_classes)

    def _init(self, genomes: list[Genome], inits: list[Params], n_features: int, n_classes: int) -> None:
        g0 = genomes[0]
        self.genomes, self.c, self.depth, self.n_conv = genomes, len(genomes), g0.depth, g0.n_conv
        self.input_shape, self.nd = tuple(g0.input_shape), len(g0.input_shape) - 1
        c = self.c
        dims = [_layer_dims(g, n_features, n_classes) for g in genomes]  # per candidate: (fan_in, out) per layer
        self.dims = dims

        def col(values: list[float], extra: int = 0) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float32).view(c, *(1,) * extra)

        self.bits = col([g.bits for g in genomes])
        self.lr = [g.learning_rate for g in genomes]
        self.l1 = col([g.l1 for g in genomes])
        self.keep = [1.0 - g.dropout for g in genomes]
        self.in_scale = col([float(p["in_scale"]) for p in inits])
        self.signed = [[s[i] for s in (block_signed(g) for g in genomes)] for i in range(self.depth)]
        self.params: dict[str, torch.Tensor] = {}
        self.masks: dict[str, torch.Tensor] = {}
        self.frozen: dict[str, torch.Tensor] = {}  # per-candidate 0/1 gradient gates (bias before batch norm)
        self.buffers: dict[str, torch.Tensor] = {}
        c_in = [self.input_shape[0]] * c
        for i in range(self.depth + 1):
            conv = i < self.n_conv
            att = conv and g0.kinds[i] == ATTENTION
            outs = [d[i][1] for d in dims]
            if att:  # q/k/v 1x1: channels -> hidden; projection hidden -> channels
                hidden = [g.widths[i] for g in genomes]
                for t in ATTENTION_TENSORS[:3]:
                    self._conv_param(f"w{t}{i}", f"b{t}{i}", inits, hidden, c_in, [1] * c)
                self._conv_param(f"w{i}", f"b{i}", inits, outs, hidden, [1] * c)
            elif conv:
                self._conv_param(f"w{i}", f"b{i}", inits, outs, c_in, [g.kernels[i] for g in genomes])
                c_in = outs
            else:
                self._dense_param(i, inits, [d[i][0] for d in dims], outs)
            if i == self.depth:
                break
            has = {g.norms[i] for g in genomes} - {"none"}
            shape = (c, max(outs))
            if has:
                gamma, beta = torch.zeros(shape), torch.zeros(shape)
                for k, (g, p) in enumerate(zip(genomes, inits)):
                    if g.norms[i] != "none":
                        gamma[k, : outs[k]] = torch.as_tensor(p[f"g{i}"])
                        beta[k, : outs[k]] = torch.as_tensor(p[f"be{i}"])
                self.params[f"g{i}"], self.params[f"be{i}"] = gamma, beta
                m = self._unit_mask(outs)
                self.masks[f"g{i}"] = self.masks[f"be{i}"] = m * col([float(g.norms[i] != "none") for g in genomes], 1)
            if "batch" in has:
                self.buffers[f"rm{i}"], self.buffers[f"rv{i}"] = torch.zeros(shape), self._unit_mask(outs).clone()
                self.frozen[f"b{i}"] = col([0.0 if g.norms[i] == "batch" else 1.0 for g in genomes], 1)
            self.buffers[f"act{i}"] = torch.zeros(c)
            if att:
                self.buffers[f"attn{i}"] = torch.zeros(c, 4)
            self.buffers[f"units{i}"] = self._unit_mask(outs)
        self.skip = [col([float(g.skips[i]) for g in genomes]) for i in range(self.n_conv)]
        self.state = {n: (torch.zeros_like(t), torch.zeros_like(t)) for n, t in self.params.items()}
        for t in self.params.values():
            t.requires_grad_()
        self.steps = 0
        self.lr_t = col(self.lr)
        self.keep_t = col(self.keep)

    # ------------------------------------------------------------------ parameters
    def _unit_mask(self, outs: list[int]) -> torch.Tensor:
        m = torch.zeros(self.c, max(outs))
        for k, o in enumerate(outs):
            m[k, :o] = 1.0
        return m

    def _conv_param(
        self, wname: str, bname: str, inits: list[Params], outs: list[int], ins: list[int], ks: list[int]
    ) -> None:
        kmax = max(ks)
        w = torch.zeros(self.c, max(outs), max(ins), *(kmax,) * self.nd)
        mask = torch.zeros_like(w)
        b = torch.zeros(self.c, max(outs))
        for k, p in enumerate(inits):
            lo = (kmax - ks[k]) // 2
            win = (slice(0, outs[k]), slice(0, ins[k]), *(slice(lo, lo + ks[k]),) * self.nd)
            w[(k, *win)] = torch.as_tensor(p[wname])
            mask[(k, *win)] = 1.0
            b[k, : outs[k]] = torch.as_tensor(p[bname])
        self.params[wname], self.params[bname] = w, b
        self.masks[wname], self.masks[bname] = mask, self._unit_mask(outs)

    def _dense_param(self, i: int, inits: list[Params], ins: list[int], outs: list[int]) -> None:
        """Dense (in, out) weights; the first after the conv blocks reads the flattened padded maps:
        candidate k's real features are the first ``ch_k * positions`` (channels are the slowest axis)."""
        w = torch.zeros(self.c, max(ins), max(outs))
        mask = torch.zeros_like(w)
        b = torch.zeros(self.c, max(outs))
        for k, p in enumerate(inits):
            w[k, : ins[k], : outs[k]] = torch.as_tensor(p[f"w{i}"])
            mask[k, : ins[k], : outs[k]] = 1.0
            b[k, : outs[k]] = torch.as_tensor(p[f"b{i}"])
        self.params[f"w{i}"], self.params[f"b{i}"] = w, b
        self.masks[f"w{i}"], self.masks[f"b{i}"] = mask, self._unit_mask(outs)

    # ------------------------------------------------------------------ forward
    def _bc(self, t: torch.Tensor, ndim: int) -> torch.Tensor:
        """(C,) or (C, X) -> broadcastable against a (C, N, X, ...) tensor of ``ndim`` dims."""
        if t.dim() == 1:
            return t.view(self.c, *(1,) * (ndim - 1))
        return t.view(self.c, 1, t.shape[1], *(1,) * (ndim - 3))

    def _wq(self, name: str) -> torch.Tensor:
        w = self.params[name] * self.masks[name]
        hi = qbounds(self.bits, True, True)[1]
        ws = pow2_for_qmax(w.detach().abs().flatten(1).amax(dim=1), hi)
        lo, hi_ = qbounds(self._bc(self.bits, w.dim()), True, True)
        return ste_quant(w, self._bc(ws, w.dim()), lo, hi_), ws

    def _conv(self, h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(C, N, in, *S) x (C, out, in, k...) -> (C, N, out, *S): one grouped conv, 'same' padding."""
        c, n = h.shape[:2]
        spatial = h.shape[3:]
        x = h.permute(1, 0, *range(2, h.dim())).reshape(n, -1, *spatial)
        fn = F.conv1d if self.nd == 1 else F.conv2d
        k = w.shape[-1]
        y = fn(x, w.reshape(-1, *w.shape[2:]), b.reshape(-1), padding=k // 2, groups=c)
        return y.view(n, c, -1, *spatial).permute(1, 0, *range(2, y.dim() + 1))

    def _track(self, h: torch.Tensor, name: str, j: int | None, signed, train: bool) -> torch.Tensor:
        """EMA range per candidate (training), then the power-of-two activation quantizer."""
        buf = self.buffers[name]
        r = buf if j is None else buf[:, j]
        if train:
            with torch.no_grad():
                batch_max = h.detach().abs().flatten(1).amax(dim=1)
                new = torch.where(r > 0, (1 - RANGE_MOMENTUM) * r + RANGE_MOMENTUM * batch_max, batch_max)
                if j is None:
                    buf.copy_(new)
                else:
                    buf[:, j] = new
                r = new
        sg = torch.tensor(signed, device=h.device).view(self.c) if not isinstance(signed, bool) else signed
        hi = qbounds(self.bits, sg, True)[1]
        scale = pow2_for_qmax(r, hi)
        sg_b = sg.view(self.c, *(1,) * (h.dim() - 1)) if not isinstance(sg, bool) else sg
        lo, hi_ = qbounds(self._bc(self.bits, h.dim()), sg_b, False)
        return ste_quant(h, self._bc(scale, h.dim()), lo, hi_), scale

    def _norm(self, i: int, h: torch.Tensor, train: bool) -> torch.Tensor:
        kinds = [g.norms[i] for g in self.genomes]
        if set(kinds) == {"none"}:
            return h
        conv = h.dim() > 3
        red = (1, *range(3, h.dim())) if conv else (1,)
        out = h
        if "batch" in kinds:
            if train:
                mean = h.mean(dim=red, keepdim=True)
                var = ((h - mean) ** 2).mean(dim=red, keepdim=True)
                with torch.no_grad():
                    n = h.numel() // (h.shape[0] * h.shape[2])
                    self.buffers[f"rm{i}"].mul_(1 - BN_MOMENTUM).add_(BN_MOMENTUM * mean.reshape(self.c, -1))
                    self.buffers[f"rv{i}"].mul_(1 - BN_MOMENTUM).add_(
                        BN_MOMENTUM * var.reshape(self.c, -1) * n / max(n - 1, 1)
                    )
            else:
                mean, var = self._bc(self.buffers[f"rm{i}"], h.dim()), self._bc(self.buffers[f"rv{i}"], h.dim())
            bn = (h - mean) / torch.sqrt(var + NORM_EPS)
            sel = self._bc(torch.tensor([float(k == "batch") for k in kinds], device=h.device), h.dim())
            out = out * (1 - sel) + bn * sel if len(set(kinds)) > 1 else bn
        if "layer" in kinds:
            m = self._bc(self.buffers[f"units{i}"], h.dim())
            lred = tuple(range(2, h.dim()))
            cnt = (m * torch.ones_like(h)).sum(dim=lred, keepdim=True)
            mean = (h * m).sum(dim=lred, keepdim=True) / cnt
            var = (((h - mean) * m) ** 2).sum(dim=lred, keepdim=True) / cnt
            ln = (h - mean) / torch.sqrt(var + NORM_EPS)
            sel = self._bc(torch.tensor([float(k == "layer") for k in kinds], device=h.device), h.dim())
            out = out * (1 - sel) + ln * sel if len(set(kinds)) > 1 else ln
        gamma, beta = self._bc(self.params[f"g{i}"], h.dim()), self._bc(self.params[f"be{i}"], h.dim())
        affine = out * gamma + beta
        sel = self._bc(torch.tensor([float(k != "none") for k in kinds], device=h.device), h.dim())
        return affine * sel + h * (1 - sel) if "none" in kinds else affine

    def _act(self, i: int, h: torch.Tensor) -> torch.Tensor:
        kinds = [g.activations[i] for g in self.genomes]
        if len(set(kinds)) == 1:
            return activation(kinds[0], h)
        out = torch.zeros_like(h)
        for kind in sorted(set(kinds)):
            sel = self._bc(torch.tensor([float(k == kind) for k in kinds], device=h.device), h.dim())
            out = out + sel * activation(kind, h)
        return out

    def _attention(self, i: int, h: torch.Tensor, train: bool) -> torch.Tensor:
        c, n = h.shape[:2]
        spatial = h.shape[3:]
        qkv = []
        for j, t in enumerate(ATTENTION_TENSORS[:3]):
            w, _ = self._wq(f"w{t}{i}")
            y = self._conv(h, w, self.params[f"b{t}{i}"] * self.masks[f"b{t}{i}"])
            y, _ = self._track(y, f"attn{i}", j, True, train)
            qkv.append(y.reshape(c, n, y.shape[2], -1))
        q, k, v = qkv
        att = torch.softmax(torch.matmul(q.transpose(2, 3), k), dim=-1)
        att = ste_quant(att, self._bc(torch.tensor([softmax_scale(g.bits) for g in self.genomes], device=h.device), 4),
                        *qbounds(self._bc(self.bits, 4), False, False))  # fmt: skip
        z = torch.matmul(att, v.transpose(2, 3)).transpose(2, 3).reshape(c, n, -1, *spatial)
        return self._track(z, f"attn{i}", 3, True, train)[0]

    def forward(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        n = len(x)
        lo, hi = qbounds(self._bc(self.bits, 2 + len(self.input_shape)), True, False)
        h = ste_quant(x.reshape(1, n, *self.input_shape).expand(self.c, -1, *(-1,) * len(self.input_shape)),
                      self._bc(self.in_scale.view(-1), 2 + len(self.input_shape)), lo, hi)  # fmt: skip
        s_in = self.in_scale.view(-1)
        for i in range(self.depth + 1):
            conv = i < self.n_conv
            w, ws = self._wq(f"w{i}")
            b = self.params[f"b{i}"] * self.masks[f"b{i}"]
            if conv:
                block_in = h
                att = self.genomes[0].kinds[i] == ATTENTION
                bias = b if att else snap(b, (s_in * ws).view(self.c, 1))
                h = self._conv(self._attention(i, h, train) if att else h, w, bias)
            else:
                if i == self.n_conv and self.n_conv:
                    h = h.flatten(2)
                h = torch.matmul(h, w) + snap(b, (s_in * ws).view(self.c, 1)).unsqueeze(1)
            if i == self.depth:
                return h
            h = self._act(i, self._norm(i, h, train)) * self._bc(self.buffers[f"units{i}"], h.dim())
            if train and min(self.keep) < 1.0:
                keep = self._bc(self.keep_t.view(-1), h.dim())
                h = h * torch.bernoulli(keep.expand_as(h)) / keep
            if conv:
                h = h + self._bc(self.skip[i].view(-1), h.dim()) * _fit(block_in, h.shape[2])
                pool = self.genomes[0].pools[i]
                if pool != "none":
                    fn = {
                        ("max", 1): F.max_pool1d,
                        ("max", 2): F.max_pool2d,
                        ("avg", 1): F.avg_pool1d,
                        ("avg", 2): F.avg_pool2d,
                    }
                    flat = h.reshape(self.c * n, *h.shape[2:])
                    flat = fn[(pool, self.nd)](flat, 2)
                    h = flat.view(self.c, n, *flat.shape[1:])
            h, s_in = self._track(h, f"act{i}", None, self.signed[i], train)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ training
    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self.forward(x, train=True)
        if y.is_floating_point():
            per = ((out - (y.unsqueeze(-1) if y.dim() == 1 else y).unsqueeze(0)) ** 2).mean(dim=(1, 2))
        else:
            per = F.cross_entropy(out.transpose(1, 2), y.expand(self.c, -1), reduction="none").mean(dim=1)
        if bool((self.l1 > 0).any()):
            ws = [n for n in self.params if n.startswith("w")]
            per = per + self.l1.view(-1) * sum((self.params[n] * self.masks[n]).abs().flatten(1).sum(dim=1) for n in ws)
        return per.sum()

    @torch.no_grad()
    def adam_step(self) -> None:
        """torch.optim.Adam per candidate (its own learning rate) on every padded tensor; masked
        entries have zero gradient, so their moments stay zero and they never move."""
        self.steps += 1
        b1, b2 = ADAM_BETAS
        bc1, bc2 = 1 - b1**self.steps, 1 - b2**self.steps
        for name, p in self.params.items():
            g = p.grad
            if g is None:
                continue
            g.mul_(self.masks[name])
            if name in self.frozen:
                g.mul_(self.frozen[name])
            m, v = self.state[name]
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            lr = self.lr_t.view(self.c, *(1,) * (p.dim() - 1))
            p.sub_(lr / bc1 * m / ((v.sqrt() / math.sqrt(bc2)).add_(ADAM_EPS)))
            p.grad = None

    @torch.no_grad()
    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x, train=False)

    # ------------------------------------------------------------------ export
    @torch.no_grad()
    def export(self, k: int) -> Params:
        """Candidate ``k``'s Params dict (the layout ConvCandidateNet.export_params writes)."""
        g, dims = self.genomes[k], self.dims[k]
        bits = self.bits[k : k + 1]
        p: Params = {"in_scale": np.float32(self.in_scale[k].item())}
        c_in = self.input_shape[0]

        def crop(name: str, outs: int, ins: int, kk: int) -> np.ndarray:
            w = self.params[name][k]
            lo = (w.shape[-1] - kk) // 2
            return w[(slice(0, outs), slice(0, ins), *(slice(lo, lo + kk),) * self.nd)].cpu().numpy().copy()

        def scale(w: np.ndarray) -> np.float32:
            return np.float32(pow2_for_qmax(torch.tensor(np.abs(w).max()), qbounds(bits, True, True)[1]).item())

        for i in range(self.depth + 1):
            outs = dims[i][1]
            if i < self.n_conv and g.kinds[i] == ATTENTION:
                hid = g.widths[i]
                for t in ATTENTION_TENSORS[:3]:
                    p[f"w{t}{i}"] = crop(f"w{t}{i}", hid, c_in, 1)
                    p[f"b{t}{i}"] = self.params[f"b{t}{i}"][k, :hid].cpu().numpy().copy()
                    p[f"ws{t}{i}"] = scale(p[f"w{t}{i}"])
                p[f"w{i}"] = crop(f"w{i}", outs, hid, 1)
            elif i < self.n_conv:
                p[f"w{i}"] = crop(f"w{i}", outs, c_in, g.kernels[i])
                c_in = outs
            else:
                p[f"w{i}"] = self.params[f"w{i}"][k, : dims[i][0], :outs].cpu().numpy().copy()
            p[f"b{i}"] = self.params[f"b{i}"][k, :outs].cpu().numpy().copy()
            p[f"ws{i}"] = scale(p[f"w{i}"])
            if i == self.depth:
                break
            sg = torch.tensor(bool(self.signed[i][k]))
            p[f"as{i}"] = np.float32(
                pow2_for_qmax(self.buffers[f"act{i}"][k : k + 1].cpu(), qbounds(bits, sg, True)[1]).item()
            )
            if f"attn{i}" in self.buffers:
                for j, t in enumerate(ATTENTION_TENSORS):
                    r = self.buffers[f"attn{i}"][k, j : j + 1].cpu()
                    p[f"a{t}{i}"] = np.float32(pow2_for_qmax(r, qbounds(bits, True, True)[1]).item())
            if g.norms[i] != "none":
                p[f"g{i}"] = self.params[f"g{i}"][k, :outs].detach().cpu().numpy().copy()
                p[f"be{i}"] = self.params[f"be{i}"][k, :outs].detach().cpu().numpy().copy()
            if g.norms[i] == "batch":
                p[f"rm{i}"] = self.buffers[f"rm{i}"][k, :outs].cpu().numpy().copy()
                p[f"rv{i}"] = self.buffers[f"rv{i}"][k, :outs].cpu().numpy().copy()
        return p


def _fit(h: torch.Tensor, channels: int) -> torch.Tensor:
    """``h`` (C, N, X, ...) cut or zero-padded to ``channels`` on axis 2: a residual's input in a group
    whose widest input and output differ (only candidates with equal real widths add it)."""
    if h.shape[2] == channels:
        return h
    if h.shape[2] > channels:
        return h[:, :, :channels]
    return F.pad(h, (0, 0) * (h.dim() - 3) + (0, channels - h.shape[2]))
