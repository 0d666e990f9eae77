"""Train a whole population of small quantized MLPs at once.

On a CPU, a 10-64-32-32-2 MLP at batch 128 spends most of each step in Python and
kernel-launch overhead, not arithmetic. Candidates of the same depth are therefore stacked
along a leading candidate axis (widths zero-padded and masked; activations and norms
selected per candidate), so one batched matmul, one loss and one hand-written vectorised
Adam step update every candidate of the group; per-candidate learning rate, L1, dropout,
bit width and activation signedness are tensors on that axis. Padding is exact: padded weights start at zero, receive zero
gradient and never move, so each candidate trains as it would alone.

:func:`train_single` is the plain per-candidate loop (``nn.Module`` + ``torch.optim.Adam``)
with the same initial weights and batch order; the benchmark and tests compare the two.
"""

from __future__ import annotations

import math
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from codesign.search.data import Dataset
from codesign.search.genome import NORM_EPS, UNSIGNED_ACTIVATIONS, Genome, Params, random_params
from codesign.search.nets import (
    BN_MOMENTUM,
    RANGE_MOMENTUM,
    activation,
    candidate_net,
    input_scale,
    pow2_for_qmax,
    pow2_scale_t,
    qbounds,
    snap,
    ste_quant,
)

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


@dataclass
class TrainResult:
    """A trained candidate: validation accuracy and its parameters (Params dict)."""

    accuracy: float
    params: Params
    seconds: float


def candidate_seed(genome: Genome, seed: int) -> int:
    """Deterministic per-candidate seed (initial weights do not depend on population order)."""
    return (zlib.crc32(genome.key().encode()) + 7919 * seed) % (2**31)


def initial_params(genome: Genome, data: Dataset, seed: int) -> Params:
    p = random_params(genome, data.n_features, data.n_classes, seed=candidate_seed(genome, seed))
    p["in_scale"] = np.float32(input_scale(data.x_train, genome.bits))
    return p


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The sample order of one epoch (shared by every candidate and by the plain loop)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100003 + epoch), device="cpu")


class _Group:
    """Candidates of equal depth stacked on axis 0: widths zero-padded and masked, activations
    and norms selected per candidate (each kind present is computed once, on the whole stack)."""

    def __init__(self, genomes: list[Genome], inits: list[Params], n_features: int, n_classes: int, device=None):
        with torch.device(device or "cpu"):  # every tensor of the group is made on the training device
            self._init(genomes, inits, n_features, n_classes)

    def _init(self, genomes: list[Genome], inits: list[Params], n_features: int, n_classes: int) -> None:
        self.genomes = genomes
        self.depth = genomes[0].depth
        c = len(genomes)
        real = [(n_features, *g.widths, n_classes) for g in genomes]
        self.dims = [max(r[i] for r in real) for i in range(self.depth + 2)]
        self.real = real

        def col(values: list[float]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float32).view(c, 1, 1)

        def select(values: list[str]) -> dict[str, torch.Tensor | None]:
            """kind -> per-candidate 0/1 selector (None when every candidate uses that kind)."""
            kinds = sorted(set(values))
            return {k: None if len(kinds) == 1 else col([float(v == k) for v in values]) for k in kinds}

        self.bits = col([g.bits for g in genomes])
        self.lr = col([g.learning_rate for g in genomes])
        self.l1 = torch.tensor([g.l1 for g in genomes])
        self.keep = col([1.0 - g.dropout for g in genomes])
        self.in_scale = col([float(p["in_scale"]) for p in inits])
        self.any_dropout = any(g.dropout > 0 for g in genomes)
        self.acts = [select([g.activations[i] for g in genomes]) for i in range(self.depth)]
        self.norms = [select([g.norms[i] for g in genomes]) for i in range(self.depth)]
        self.signed = [torch.tensor([g.activations[i] not in UNSIGNED_ACTIVATIONS for g in genomes]).view(c, 1, 1)
                       for i in range(self.depth)]  # fmt: skip
        # integer bounds of every quantizer, computed once: (lo, hi) of input, weights, each activation
        self.q_in = qbounds(self.bits, True, False)
        self.q_w = qbounds(self.bits, True, True)
        self.q_act = [qbounds(self.bits, sg, False) for sg in self.signed]
        self.w, self.b, self.gamma, self.beta, self.rm, self.rv, self.mask, self.act_range = ([] for _ in range(8))
        self.bias_grad: list[torch.Tensor | None] = []
        for i in range(self.depth + 1):
            din, dout = self.dims[i], self.dims[i + 1]
            w, b, mask = torch.zeros(c, din, dout), torch.zeros(c, 1, dout), torch.zeros(c, 1, dout)
            for k, p in enumerate(inits):
                ri, ro = real[k][i], real[k][i + 1]
                w[k, :ri, :ro] = torch.as_tensor(p[f"w{i}"])
                b[k, 0, :ro] = torch.as_tensor(p[f"b{i}"])
                mask[k, 0, :ro] = 1.0
            self.w.append(w)
            self.b.append(b)
            self.mask.append(mask)
            if i == self.depth:
                self.bias_grad.append(None)
                break
            # a bias right before batch norm is cancelled by it: frozen (as CandidateNet does)
            is_bn = [g.norms[i] == "batch" for g in genomes]
            self.bias_grad.append(col([0.0 if bn else 1.0 for bn in is_bn]) if any(is_bn) else None)
            has_norm = set(self.norms[i]) != {"none"}
            self.gamma.append(mask.clone() if has_norm else None)
            self.beta.append(torch.zeros(c, 1, dout) if has_norm else None)
            self.rm.append(torch.zeros(c, 1, dout))
            self.rv.append(mask.clone())
            self.act_range.append(torch.zeros(c, 1, 1))
        # every parameter of every candidate lives in one (C, P) leaf tensor: one Adam update per step
        slots = [("w", i, t) for i, t in enumerate(self.w)] + [("b", i, t) for i, t in enumerate(self.b)]
        slots += [("gamma", i, t) for i, t in enumerate(self.gamma) if t is not None]
        slots += [("beta", i, t) for i, t in enumerate(self.beta) if t is not None]
        self.layout: list[tuple[str, int, tuple[int, ...], int, int]] = []
        offset = 0
        for kind, i, t in slots:
            size = t[0].numel()
            self.layout.append((kind, i, tuple(t.shape), offset, offset + size))
            offset += size
        self.flat = torch.cat([t.reshape(c, -1) for _, _, t in slots], dim=1).requires_grad_()
        self.grad_keep: torch.Tensor | None = None
        if any(k is not None for k in self.bias_grad):
            self.grad_keep = torch.ones(c, offset)
            for kind, i, _, a, z in self.layout:
                if kind == "b" and self.bias_grad[i] is not None:
                    self.grad_keep[:, a:z] = self.bias_grad[i].view(c, 1)
        self.m, self.v = torch.zeros(c, offset), torch.zeros(c, offset)
        self.lr2 = self.lr.view(c, 1)
        self.step_count = 0
        self._bind()

    def _bind(self) -> None:
        """Fresh views of ``flat`` as per-layer tensors (re-made each forward, for autograd)."""
        for kind, i, shape, a, z in self.layout:
            getattr(self, kind)[i] = self.flat[:, a:z].view(shape)

    @staticmethod
    def _mix(selectors: dict[str, torch.Tensor | None], fn) -> torch.Tensor:
        """``fn(kind)`` for the one kind, or the per-candidate selection among several (exact: x*1 + y*0)."""
        if len(selectors) == 1:
            return fn(next(iter(selectors)))
        return sum(sel * fn(kind) for kind, sel in selectors.items())

    def forward(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        self._bind()
        h = ste_quant(x.unsqueeze(0), self.in_scale, *self.q_in)
        s_in = self.in_scale
        for i in range(self.depth + 1):
            ws = pow2_for_qmax(self.w[i].detach().abs().amax(dim=(1, 2), keepdim=True), self.q_w[1])
            h = torch.matmul(h, ste_quant(self.w[i], ws, *self.q_w)) + snap(self.b[i], s_in * ws)
            if i == self.depth:
                return h
            h = self._mix(self.norms[i], lambda kind, i=i, h=h: self._norm(i, kind, h, train))
            h = self._mix(self.acts[i], lambda kind, h=h: activation(kind, h)) * self.mask[i]
            if train and self.any_dropout:
                h = h * torch.bernoulli(self.keep.expand_as(h)) / self.keep
            if train:
                with torch.no_grad():
                    batch_max = h.detach().abs().amax(dim=(1, 2), keepdim=True)
                    r = self.act_range[i]
                    self.act_range[i] = torch.where(
                        r > 0, (1 - RANGE_MOMENTUM) * r + RANGE_MOMENTUM * batch_max, batch_max
                    )
            lo, hi = self.q_act[i]
            s_in = pow2_for_qmax(self.act_range[i], hi)
            h = ste_quant(h, s_in, lo, hi)
        raise AssertionError("unreachable")

    def _norm(self, i: int, kind: str, h: torch.Tensor, train: bool) -> torch.Tensor:
        if kind == "none":
            return h
        if kind == "batch":
            if train:
                mean = h.mean(dim=1, keepdim=True)
                var = ((h - mean) ** 2).mean(dim=1, keepdim=True)  # (aten::var is 10x slower here)
                with torch.no_grad():
                    n = h.shape[1]
                    self.rm[i].mul_(1 - BN_MOMENTUM).add_(BN_MOMENTUM * mean)
                    self.rv[i].mul_(1 - BN_MOMENTUM).add_(BN_MOMENTUM * var * n / max(n - 1, 1))
            else:
                mean, var = self.rm[i], self.rv[i]
        else:  # layer norm over each candidate's real units only
            mask = self.mask[i]
            n = mask.sum(dim=2, keepdim=True)
            mean = (h * mask).sum(dim=2, keepdim=True) / n
            var = (((h - mean) * mask) ** 2).sum(dim=2, keepdim=True) / n
        return (h - mean) / torch.sqrt(var + NORM_EPS) * self.gamma[i] + self.beta[i]

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = self.forward(x, train=True)
        if y.is_floating_point():  # regression: mean squared error over the outputs
            ce = ((logits - (y.unsqueeze(-1) if y.dim() == 1 else y).unsqueeze(0)) ** 2).mean(dim=(1, 2))
        else:
            ce = F.cross_entropy(logits.transpose(1, 2), y.expand(logits.shape[0], -1), reduction="none").mean(dim=1)
        if bool((self.l1 > 0).any()):
            ce = ce + self.l1 * sum(w.abs().sum(dim=(1, 2)) for w in self.w)
        return ce.sum()

    @torch.no_grad()
    def adam_step(self) -> None:
        """torch.optim.Adam's update, with a per-candidate learning rate, on the flat (C, P) tensor."""
        self.step_count += 1
        b1, b2 = ADAM_BETAS
        bc1, bc2 = 1 - b1**self.step_count, 1 - b2**self.step_count
        g = self.flat.grad
        if self.grad_keep is not None:
            g.mul_(self.grad_keep)
        self.m.mul_(b1).add_(g, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (self.v.sqrt() / bc2**0.5).add_(ADAM_EPS)
        self.flat.sub_(self.lr2 / bc1 * self.m / denom)
        self.flat.grad = None

    @torch.no_grad()
    def accuracy(self, x: torch.Tensor, y: torch.Tensor, kind: str = "accuracy") -> list[float]:
        """Validation score per candidate (:func:`score_outputs`)."""
        out = self.forward(x, train=False)
        return [score_outputs(out[k], y, kind) for k in range(out.shape[0])]

    @torch.no_grad()
    def export(self, k: int) -> Params:
        self._bind()
        g, real = self.genomes[k], self.real[k]
        p: Params = {"in_scale": np.float32(self.in_scale[k].item())}
        for i in range(self.depth + 1):
            w = self.w[i][k, : real[i], : real[i + 1]]
            p[f"w{i}"] = w.cpu().numpy().copy()
            p[f"b{i}"] = self.b[i][k, 0, : real[i + 1]].cpu().numpy().copy()
            p[f"ws{i}"] = np.float32(pow2_scale_t(w.abs().max(), self.bits[k, 0, 0], True).item())
            if i == self.depth:
                break
            signed = g.activations[i] not in UNSIGNED_ACTIVATIONS
            p[f"as{i}"] = np.float32(pow2_scale_t(self.act_range[i][k, 0, 0], self.bits[k, 0, 0], signed).item())
            if g.norms[i] != "none":
                p[f"g{i}"] = self.gamma[i][k, 0, : real[i + 1]].cpu().numpy().copy()
                p[f"be{i}"] = self.beta[i][k, 0, : real[i + 1]].cpu().numpy().copy()
            if g.norms[i] == "batch":
                p[f"rm{i}"] = self.rm[i][k, 0, : real[i + 1]].cpu().numpy().copy()
                p[f"rv{i}"] = self.rv[i][k, 0, : real[i + 1]].cpu().numpy().copy()
        return p


def r2_score(pred: torch.Tensor, y: torch.Tensor) -> float:
    """Coefficient of determination: the regression score the search maximises like accuracy
    (several targets: of all their values together, around each target's mean)."""
    sst = float(((y - y.mean(dim=0)) ** 2).sum())
    return 1.0 - float(((pred - y) ** 2).sum()) / sst if sst > 0 else 0.0


def score_outputs(out: torch.Tensor, y: torch.Tensor, kind: str) -> float:
    """One candidate's validation score from its outputs (B, T): classification accuracy, R^2, or
    minus the mean Euclidean distance of predicted to true coordinates (``distance``)."""
    if kind == "accuracy":
        return float((out.argmax(dim=1) == y).float().mean())
    pred = out[:, 0] if y.dim() == 1 else out
    if kind == "distance":
        return -float(torch.linalg.vector_norm((pred - y).reshape(len(y), -1), dim=1).mean())
    return r2_score(pred, y)


def task_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy, or (float targets) the mean squared error over the outputs."""
    if y.is_floating_point():
        return F.mse_loss(out[:, 0] if y.dim() == 1 else out, y)
    return F.cross_entropy(out, y)


_TENSORS: dict[str, tuple] = {}


def _tensors(data: Dataset, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Data as tensors on ``device``, made once per data set and device (the last one is kept, so a
    search moves its data to the GPU once, not per generation): int64 labels or float32 targets."""
    device = torch.device(device or "cpu")
    key = (id(data), len(data.y_train), str(device))
    if _TENSORS.get("key") != key:
        ydt = torch.float32 if data.regression else torch.int64
        _TENSORS["key"], _TENSORS["data"] = (
            key,
            tuple(
                torch.as_tensor(a, dtype=dt).to(device)
                for a, dt in (
                    (data.x_train, torch.float32),
                    (data.y_train, ydt),
                    (data.x_val, torch.float32),
                    (data.y_val, ydt),
                )
            ),
        )
        _TENSORS["ref"] = data  # keeps id(data) from being reused while cached
    return _TENSORS["data"]


def plan_groups(genomes: list[Genome], max_group: int = 64, max_padding: float = math.inf) -> list[list[int]]:
    """Indices of genomes trained together: same ``arch_key``, and padded width at most
    ``max_padding`` x the real width summed over the group (big and tiny nets apart). On a
    2-core CPU with MAGIC-sized nets one group per depth measured fastest (inf, the default)."""
    by_key: dict[tuple, list[int]] = defaultdict(list)
    for idx, g in enumerate(genomes):
        by_key[g.arch_key()].append(idx)
    plan: list[list[int]] = []
    for members in by_key.values():
        members = sorted(members, key=lambda i: (-sum(genomes[i].widths), i))
        chunk: list[int] = []
        for i in members:
            trial = chunk + [i]
            padded = len(trial) * sum(max(genomes[j].widths[k] for j in trial) for k in range(genomes[i].depth))
            real = sum(sum(genomes[j].widths) for j in trial)
            if chunk and (len(trial) > max_group or padded > max_padding * real):
                plan.append(chunk)
                trial = [i]
            chunk = trial
        plan.append(chunk)
    return plan


#: activation values one batched conv group may hold per tensor (candidates x batch x widest channels x
#: positions, + the attention maps): 2^24 floats = 64 MiB, so a group stays within a few GiB with autograd
CONV_GROUP_ELEMENTS = 2**24


def plan_conv_groups(genomes: list[Genome], batch_size: int, max_group: int = 64) -> list[list[int]]:
    """Indices of conv genomes trained together: same ``arch_key`` (depth, block kinds, pools, input
    shape), chunked so one activation tensor of the group stays under ``CONV_GROUP_ELEMENTS``."""
    by_key: dict[tuple, list[int]] = defaultdict(list)
    for idx, g in enumerate(genomes):
        by_key[g.arch_key()].append(idx)
    plan: list[list[int]] = []
    for members in by_key.values():
        g = genomes[members[0]]
        positions = math.prod(g.input_shape[1:])
        attention = positions**2 if "conv_attention" in g.kinds else 0
        chunk: list[int] = []
        for i in sorted(members, key=lambda i: (-max(genomes[i].widths[: g.n_conv]), i)):
            trial = chunk + [i]
            widest = max(max(genomes[j].widths[: g.n_conv]) for j in trial)
            size = len(trial) * batch_size * (widest * positions + attention)
            if chunk and (len(trial) > max_group or size > CONV_GROUP_ELEMENTS):
                plan.append(chunk)
                trial = [i]
            chunk = trial
        plan.append(chunk)
    return plan


def _fit_group(group: Any, xt: torch.Tensor, yt: torch.Tensor, epochs: int, batch_size: int, seed: int) -> None:
    """The batched trainers' shared loop: one loss over every candidate per mini-batch, one Adam step each."""
    for epoch in range(epochs):
        order = epoch_order(len(yt), seed, epoch).to(xt.device)
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            group.loss(xt[idx], yt[idx]).backward()
            group.adam_step()


def train_population(
    genomes: list[Genome],
    data: Dataset,
    epochs: int,
    batch_size: int,
    seed: int = 0,
    max_group: int = 64,
    max_padding: float = math.inf,
    device=None,
) -> list[TrainResult]:
    """Train every genome (MLPs batched in the groups of :func:`plan_groups`, conv candidates in those
    of :func:`plan_conv_groups`, a lone one with :func:`train_single`) on ``device``; results in input order."""
    torch.manual_seed(seed)
    xt, yt, xv, yv = _tensors(data, device)
    results: list[TrainResult | None] = [None] * len(genomes)
    convs = [i for i, g in enumerate(genomes) if g.n_conv]
    for sub in plan_conv_groups([genomes[i] for i in convs], batch_size, max_group):
        chunk = [convs[j] for j in sub]
        if len(chunk) == 1:  # alone: the plain loop (what a lone candidate trained as before batching)
            results[chunk[0]] = train_single(genomes[chunk[0]], data, epochs, batch_size, seed, device)
            continue
        from codesign.search.train_conv import ConvGroup

        torch.manual_seed(candidate_seed(genomes[chunk[0]], seed))
        t0 = time.perf_counter()
        cgroup = ConvGroup([genomes[i] for i in chunk], [initial_params(genomes[i], data, seed) for i in chunk],
                           data.n_features, data.n_classes, xt.device)  # fmt: skip
        _fit_group(cgroup, xt, yt, epochs, batch_size, seed)
        out = cgroup.outputs(xv)
        per = (time.perf_counter() - t0) / len(chunk)
        for k, i in enumerate(chunk):
            results[i] = TrainResult(score_outputs(out[k], yv, data.score), cgroup.export(k), per)
    mlps = [i for i, g in enumerate(genomes) if not g.n_conv]
    for sub in plan_groups([genomes[i] for i in mlps], max_group, max_padding):
        chunk = [mlps[j] for j in sub]
        # dropout masks seeded per group, not by what ran before it in this process: a group trains
        # the same in one process, in a --workers process or on a Dask worker
        torch.manual_seed(candidate_seed(genomes[chunk[0]], seed))
        t0 = time.perf_counter()
        group = _Group([genomes[i] for i in chunk], [initial_params(genomes[i], data, seed) for i in chunk],
                       data.n_features, data.n_classes, xt.device)  # fmt: skip
        _fit_group(group, xt, yt, epochs, batch_size, seed)
        accs = group.accuracy(xv, yv, data.score)
        per = (time.perf_counter() - t0) / len(chunk)
        for k, i in enumerate(chunk):
            results[i] = TrainResult(accs[k], group.export(k), per)
    return [r for r in results if r is not None]


def train_single(
    genome: Genome, data: Dataset, epochs: int, batch_size: int, seed: int = 0, device=None
) -> TrainResult:
    """The plain per-candidate loop (NAC/SNAC style): one module, torch.optim.Adam, one batch at a time."""
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    xt, yt, xv, yv = _tensors(data, device)
    net = candidate_net(genome, data.n_features, data.n_classes)
    net.load_params(initial_params(genome, data, seed))
    net.act_range.zero_()
    if hasattr(net, "attn_range"):  # conv attention blocks: q/k/v/z ranges restart too
        net.attn_range.zero_()
    net.to(xt.device)
    opt = torch.optim.Adam(net.parameters(), lr=genome.learning_rate)
    net.train()
    for epoch in range(epochs):
        order = epoch_order(len(yt), seed, epoch).to(xt.device)
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            out = net(xt[idx])
            loss = task_loss(out, yt[idx])
            if genome.l1 > 0:
                loss = loss + genome.l1 * net.l1_penalty()
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        acc = score_outputs(net(xv), yv, data.score)
    return TrainResult(acc, net.cpu().export_params(), time.perf_counter() - t0)
