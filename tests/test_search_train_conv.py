"""Batched conv / attention candidates (train_conv.ConvGroup): each candidate trains as it would alone."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from test_search_bragg import TINY

from codesign.backends.reference import predict
from codesign.search.data import load_dataset
from codesign.search.genome import build_ir, decode
from codesign.search.space import parse_space
from codesign.search.train import plan_conv_groups, score_outputs, train_population, train_single

MIXED = json.loads(json.dumps(TINY))
MIXED["data"]["max_rows"] = 400
MIXED["model"]["blocks"] = [
    {"type": "conv2d", "channels": [2, 4], "kernel": [1, 3], "activation": ["leaky_relu", "relu"], "norm": ["none", "batch", "layer"]},
    {"type": "conv_attention", "channels": [2, 3], "activation": ["identity", "relu"]},
    {"type": "conv2d", "channels": [2, 4], "kernel": [1, 3], "skip": [True, False], "pool": ["max"], "norm": ["none", "batch"]},
    {"type": "dense", "width": [4, 8], "activation": ["relu", "tanh"], "norm": ["none", "batch", "layer"]},
]  # fmt: skip


def _genomes(space, n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    out, keys = [], set()
    while len(out) < n:
        g = decode(space, [rng.integers(len(c)) for _, c in space.genes()])
        if g.key() not in keys:
            keys.add(g.key())
            out.append(g)
    return out


def test_conv_groups_follow_the_architecture_key_and_a_memory_cap(monkeypatch):
    from codesign.search import train

    space = parse_space(MIXED)
    gs = _genomes(space, 6)
    (one,) = plan_conv_groups(gs, 64)  # one architecture key (depth 4, same kinds and pools): one group
    assert sorted(one) == list(range(6))
    monkeypatch.setattr(train, "CONV_GROUP_ELEMENTS", 64 * (4 * 121 + 121**2) * 2)
    assert sorted(len(c) for c in plan_conv_groups(gs, 64)) == [2, 2, 2]


def test_batched_conv_gradients_equal_each_candidate_alone():
    """At the same weights and batch, every candidate's outputs and its first and last layers' weight
    gradients in the group equal those of its own ConvCandidateNet (padding and masks are exact;
    float summation order is the only difference)."""
    from codesign.search.train import _tensors, candidate_net, initial_params, task_loss
    from codesign.search.train_conv import ConvGroup

    torch.set_num_threads(1)
    space = parse_space(MIXED)
    data = load_dataset(space.data)
    gs = _genomes(space, 4)
    xt, yt, _, _ = _tensors(data)
    inits = [initial_params(g, data, 0) for g in gs]
    group = ConvGroup(gs, inits, data.n_features, data.n_classes)
    x, y = xt[:64], yt[:64]
    out = group.forward(x, train=True).detach()
    group.loss(x, y).backward()
    for k, (g, p) in enumerate(zip(gs, inits)):
        net = candidate_net(g, data.n_features, data.n_classes)
        net.load_params(p)
        net.act_range.zero_()
        net.attn_range.zero_()
        o = net(x)
        task_loss(o, y).backward()
        # float summation order may flip an activation quantizer's rounding on a few samples; all else equal
        rows = (o.detach() - out[k]).abs().amax(dim=1)
        assert int((rows > 1e-5).sum()) <= 8 and float(rows.max()) < 0.01  # (of 64 rows)
        w0, wl = net.linears[0].weight.grad, net.linears[-1].weight.grad
        lo = (group.params["w0"].shape[-1] - g.kernels[0]) // 2
        k0 = group.params["w0"].grad[k, : w0.shape[0], : w0.shape[1], lo : lo + g.kernels[0], lo : lo + g.kernels[0]]
        kl = group.params[f"w{g.depth}"].grad[k, : wl.shape[1], : wl.shape[0]].T
        assert torch.allclose(
            k0, w0, atol=0.05 * float(w0.abs().max()) + 1e-7
        )  # (a flipped sample moves them a little)
        assert torch.allclose(kl, wl, atol=0.05 * float(wl.abs().max()) + 1e-7)


def test_batched_conv_candidates_train_as_alone_and_export_what_they_compute():
    """Channels 2/4 padded, kernels 1/3 padded, attention hidden 2/3, norms/activations/skips mixed:
    per-candidate distances match the plain loop within noise (Adam turns float-order differences
    of near-zero gradients into full steps, so runs diverge chaotically, not systematically), and
    each exported candidate's QONNX reference execution reproduces the batched score exactly."""
    torch.set_num_threads(1)
    space = parse_space(MIXED)
    data = load_dataset(space.data)
    gs = _genomes(space, 4)
    batched = train_population(gs, data, 2, 64, seed=0)
    alone = [train_single(g, data, 2, 64, seed=0) for g in gs]
    diff = np.abs([b.accuracy - a.accuracy for b, a in zip(batched, alone)])
    assert diff.mean() < 0.02 and diff.max() < 0.06, diff  # pixels; the candidates score 0.25-0.75 px
    for g, r in zip(gs, batched):
        out = predict(build_ir(g, data.n_features, data.n_classes, r.params), data.x_val.reshape(-1, 1, 11, 11))
        ref = score_outputs(torch.from_numpy(np.asarray(out)), torch.from_numpy(data.y_val), "distance")
        assert ref == pytest.approx(r.accuracy, abs=1e-5)
        assert -1.0 < r.accuracy < 0
