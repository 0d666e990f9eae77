"""Zero-cost proxies: score an untrained candidate in milliseconds, to skip training hopeless ones.

Each proxy runs on the genome's own torch module (:func:`codesign.search.nets.candidate_net`)
at its deterministic initial weights (:func:`codesign.search.train.initial_params`), on one
fixed mini-batch of training data; higher is more promising for every proxy:

``synflow``    sum |theta * dR/dtheta| with R the output of the net on all-ones input and
               |theta| weights (Tanaka et al. 2020), as log: data-free, layer-collapse aware.
``naswot``     log-det of the Hamming kernel of the binary activation codes of the batch
               (Mellor et al. 2021): nets that separate inputs early train well.
``grad_norm``  L2 norm of the loss gradient at init (Abdelfattah et al. 2021).

:func:`screen` ranks a batch of NSGA-II offspring and keeps the top ``keep`` fraction.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from codesign.errors import CodesignError
from codesign.search.data import Dataset
from codesign.search.genome import Genome
from codesign.search.nets import candidate_net
from codesign.search.train import candidate_seed, initial_params

#: Rows of the scoring mini-batch (NASWOT's kernel is batch x batch).
PROXY_BATCH = 64


def _net(genome: Genome, data: Dataset, seed: int, x: torch.Tensor) -> torch.nn.Module:
    """The candidate at its initial weights, activation ranges calibrated on ``x`` (like training's first step)."""
    net = candidate_net(genome, data.n_features, data.n_classes)
    net.load_params(initial_params(genome, data, seed))
    net.act_range.zero_()
    if hasattr(net, "attn_range"):
        net.attn_range.zero_()
    net.dropout.p = 0.0  # a proxy must not depend on a dropout draw
    net.train()
    with torch.no_grad():
        net(x)  # the first training forward sets every activation quantizer's range
    return net


def synflow(genome: Genome, data: Dataset, x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> float:
    net = _net(genome, data, seed, x).double()
    net.eval()  # batch statistics of an all-ones batch are degenerate; running stats are the identity at init
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    ones = torch.ones((1, x.shape[1]), dtype=torch.float64)
    net.zero_grad()
    net(ones).sum().backward()
    total = sum(float((p.detach() * p.grad).abs().sum()) for p in net.parameters() if p.grad is not None)
    return math.log(total) if total > 0 else -math.inf


def naswot(genome: Genome, data: Dataset, x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> float:
    net = _net(genome, data, seed, x)
    codes: list[torch.Tensor] = []
    hooks = [
        norm.register_forward_hook(lambda _m, _i, out: codes.append((out > 0).flatten(1).double()))
        for norm in net.norms
    ]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in hooks:
            h.remove()
    c = torch.cat(codes, dim=1)
    kernel = c @ c.T + (1 - c) @ (1 - c).T  # number of units where two inputs agree
    # + identity: inputs with identical codes make the kernel singular; this ranks them finitely
    sign, logdet = torch.linalg.slogdet(kernel + torch.eye(len(kernel), dtype=kernel.dtype))
    return float(logdet) if float(sign) > 0 else -math.inf


def grad_norm(genome: Genome, data: Dataset, x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> float:
    net = _net(genome, data, seed, x)
    out = net(x)
    loss = F.mse_loss(out[:, 0], y) if data.regression else F.cross_entropy(out, y)
    net.zero_grad()
    loss.backward()
    sq = sum(float(p.grad.pow(2).sum()) for p in net.parameters() if p.grad is not None)
    return math.sqrt(sq)


PROXIES: dict[str, Callable[..., float]] = {"synflow": synflow, "naswot": naswot, "grad_norm": grad_norm}


def proxy_batch(data: Dataset, seed: int = 0, size: int = PROXY_BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed scoring batch: the same rows for every candidate of a search."""
    rng = np.random.default_rng(zlib.crc32(b"proxy") + seed)
    idx = rng.choice(len(data.x_train), size=min(size, len(data.x_train)), replace=False)
    x = torch.as_tensor(data.x_train[idx], dtype=torch.float32)
    y = torch.as_tensor(data.y_train[idx], dtype=torch.float32 if data.regression else torch.int64)
    return x, y


def score(genomes: list[Genome], data: Dataset, proxy: str, seed: int = 0) -> list[float]:
    """Proxy score of each genome (higher = more promising), in order; deterministic."""
    if proxy not in PROXIES:
        raise CodesignError(f"unknown proxy {proxy!r}; choose from {', '.join(PROXIES)}")
    x, y = proxy_batch(data, seed)
    fn = PROXIES[proxy]
    out = []
    for g in genomes:
        torch.manual_seed(candidate_seed(g, seed))
        value = fn(g, data, x, y, seed)
        out.append(value if math.isfinite(value) else -math.inf)
    return out


def screen(genomes: list[Genome], scores: list[float], keep: float, costs: list[float] | None = None) -> list[bool]:
    """Which genomes to train: ``ceil(keep * n)`` of them (at least one; ties by order).

    Without ``costs``: the best scores. With ``costs`` (e.g. BOPs, known before training):
    by non-dominated rank on (score up, cost down), then NSGA-II crowding distance (the
    cheapest and the best-scored of a level first), then score, since every proxy favours
    big networks and a pure proxy ranking would starve the cheap end of the front."""
    if not genomes:
        return []
    n = max(1, math.ceil(keep * len(genomes) - 1e-9))
    scores = [v if math.isfinite(v) else -1e300 for v in scores]  # keeps the crowding arithmetic finite
    rank = [0] * len(genomes)
    crowd = [0.0] * len(genomes)
    if costs is not None:
        from codesign.search.objectives import pareto_mask

        left = list(range(len(genomes)))
        level = 0
        while left:
            mask = pareto_mask([[-scores[i], costs[i]] for i in left])
            members = [i for i, on_front in zip(left, mask) if on_front]
            for i in members:
                rank[i] = level
            for values in ([-scores[i] for i in members], [math.log1p(max(costs[i], 0.0)) for i in members]):
                order = sorted(range(len(members)), key=lambda k: values[k])
                span = (values[order[-1]] - values[order[0]]) or 1.0
                crowd[members[order[0]]] = crowd[members[order[-1]]] = math.inf
                for a, b, c in zip(order, order[1:], order[2:]):
                    crowd[members[b]] += (values[c] - values[a]) / span
            left = [i for i, on_front in zip(left, mask) if not on_front]
            level += 1
    order = sorted(range(len(genomes)), key=lambda i: (rank[i], -crowd[i], -scores[i]))  # stable: ties by position
    chosen = set(order[:n])
    return [i in chosen for i in range(len(genomes))]


__all__ = ["PROXIES", "PROXY_BATCH", "grad_norm", "naswot", "proxy_batch", "score", "screen", "synflow"]
