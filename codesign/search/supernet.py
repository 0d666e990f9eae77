"""A DARTS supernet over a search space: every relaxed gene is a softmax over its choices.

Choices of one gene share weights (FBNetV2 / single-path NAS style): widths and channels are
soft masks over one max-width layer, kernel sizes are centred masks over one max-size kernel,
bit widths mix fake-quantized copies of the same tensor, depth mixes one output head per
depth. One forward costs about one max-size network, which is what fits the search on a
2-core machine. :meth:`Supernet.expected_bops` is the cost term: the exact expectation of
the IR cost pass's BOPs under the architecture distribution (``qonnx`` definition; the
``nac`` one's log term is a plug-in estimate), so at a one-hot distribution it equals
``cost_report(build_ir(derived genome))`` (tested).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from codesign.search.genome import NORM_EPS, UNSIGNED_ACTIVATIONS, Genome, decode
from codesign.search.nets import BN_MOMENTUM, RANGE_MOMENTUM, activation, fake_quant, input_scale, pow2_scale_t
from codesign.search.space import SearchSpaceError, Space

#: Genes the supernet relaxes (the rest take their first choice; learning rates are swept at retraining).
RELAXED = ("layers", "width", "kernel", "skip", "activation", "norm", "bits")
#: Genes held at their first choice in the supernet: a pool changes the shape, so it cannot be mixed.
FIXED = ("pool", "dropout", "learning_rate", "l1", "reuse_factor")


def gene_base(name: str) -> str:
    """'width3' -> 'width' (per-block genes carry their block index)."""
    return name.rstrip("0123456789")


class Supernet(nn.Module):
    """All architectures of ``space`` at once; ``alpha[gene]`` holds the logits of each relaxed gene."""

    def __init__(self, space: Space, n_features: int, n_classes: int, x_train: np.ndarray):
        super().__init__()
        self.space, self.n_features, self.n_classes = space, n_features, n_classes
        self.genes = space.genes()
        self.choices = dict(self.genes)
        self.alpha = nn.ParameterDict(
            {n: nn.Parameter(torch.zeros(len(c))) for n, c in self.genes if gene_base(n) in RELAXED and len(c) > 1}
        )
        m = space.model
        self.depths = self.choices["layers"]
        self.n_blocks = max(self.depths)
        self.kinds = [m.blocks[i].type if m.blocks else "dense" for i in range(self.n_blocks)]
        if "conv_attention" in self.kinds:
            raise SearchSpaceError("method darts: conv_attention blocks are not relaxed (use method nsga2)")
        self.in_shape = tuple(m.input_shape) if m.conv_type() else (n_features,)
        self.nd = len(self.in_shape) - 1
        self.bits = [float(b) for b in self.choices["bits"]]
        self._bit_t = [torch.tensor(b) for b in self.bits]  # made once: every forward quantizes with them
        self.register_buffer("in_scales", torch.tensor([input_scale(x_train, int(b)) for b in self.bits]))
        self._window_cache: dict[int, list[torch.Tensor]] = {}
        self._unit_cache: dict[int, list[torch.Tensor]] = {}
        self._build()
        self.register_buffer("act_range", torch.zeros(self.n_blocks))

    # ------------------------------------------------------------------ structure
    def _gene(self, base: str, i: int) -> str:
        """Name of block ``i``'s gene (per-block, or the shared one when the space has no per-block list)."""
        return f"{base}{i}" if f"{base}{i}" in self.choices else base

    def _build(self) -> None:
        self.layers, self.norms, self.heads = nn.ModuleList(), nn.ModuleList(), nn.ModuleDict()
        self.pools: list[str] = []
        self.spatial: list[tuple[int, ...]] = []  # spatial size at each block's input (conv blocks)
        self.flat: list[int] = []  # per-sample size of each block's output, max widths
        c_in, spatial, flat = self.in_shape[0], self.in_shape[1:], self.n_features
        conv_cls = nn.Conv1d if self.nd == 1 else nn.Conv2d
        bn_cls = nn.BatchNorm1d if self.nd == 1 else nn.BatchNorm2d
        for i, kind in enumerate(self.kinds):
            out = max(self.choices[f"width{i}"])
            conv = kind != "dense"
            if conv:
                ks = self.choices[f"kernel{i}"]  # odd (the space checks): every k x k window centres in the max one
                self.layers.append(conv_cls(c_in, out, max(ks), padding=max(ks) // 2))
                self.spatial.append(tuple(spatial))
                pool = self.choices[f"pool{i}"][0] if min(spatial) >= 2 else "none"
                spatial = tuple(d // 2 for d in spatial) if pool != "none" else spatial
                c_in, flat = out, out * math.prod(spatial)
            else:
                pool = "none"
                self.layers.append(nn.Linear(flat, out))
                self.spatial.append(())
                flat = out
            self.pools.append(pool)
            self.flat.append(flat)
            norms = nn.ModuleDict()
            for n in self.choices[self._gene("norm", i)]:
                if n == "batch":
                    norms[n] = (bn_cls if conv else nn.BatchNorm1d)(out, eps=NORM_EPS, momentum=BN_MOMENTUM)
                elif n == "layer":
                    norms[n] = nn.GroupNorm(1, out, eps=NORM_EPS) if conv else nn.LayerNorm(out, eps=NORM_EPS)
            self.norms.append(norms)
        for d in self.depths:
            self.heads[str(d)] = nn.Linear(self.flat[d - 1], self.n_classes)

    def weights(self) -> list[nn.Parameter]:
        """Supernet weights (everything but the architecture logits)."""
        return [p for n, p in self.named_parameters() if not n.startswith("alpha.")]

    # ------------------------------------------------------------------ the distribution
    def probs(self, tau: float = 1.0, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """Choice probabilities of every gene: softmax(alpha / tau) for relaxed genes, one-hot first choice otherwise."""
        out = {}
        for name, choices in self.genes:
            if name in self.alpha:
                out[name] = torch.softmax(self.alpha[name].to(dtype) / tau, dim=0)
            else:
                out[name] = F.one_hot(torch.tensor(0), len(choices)).to(dtype)
        return out

    def derive(self) -> Genome:
        """The discrete architecture: every relaxed gene at its most likely choice, the rest at their first."""
        return self.derive_top(1)[0]

    def derive_top(self, k: int) -> list[Genome]:
        """The ``k`` most probable distinct architectures: the argmax, then the single-gene changes
        of it ranked by joint probability (independent genes: a sum of log-probabilities)."""
        names = [n for n, _ in self.genes]
        best = [int(torch.argmax(self.alpha[n]).item()) if n in self.alpha else 0 for n in names]
        logp = {n: torch.log_softmax(self.alpha[n].detach(), dim=0) for n in self.alpha}
        ranked = [(0.0, best)]
        for i, n in enumerate(names):
            for j in range(len(logp.get(n, ()))):
                if j != best[i]:
                    ranked.append((float(logp[n][j] - logp[n][best[i]]), best[:i] + [j] + best[i + 1 :]))
        ranked.sort(key=lambda r: -r[0])
        out: dict[str, Genome] = {}
        for _, x in ranked:
            g = decode(self.space, x)
            out.setdefault(g.key(), g)
            if len(out) == k:
                break
        return list(out.values())

    def _expect(self, p: dict[str, torch.Tensor], gene: str, fn: Any = float) -> torch.Tensor:
        values = torch.tensor([fn(v) for v in self.choices[gene]], dtype=p[gene].dtype)
        return (p[gene] * values).sum()

    # ------------------------------------------------------------------ the cost term
    def expected_bops(self, tau: float = 1.0, definition: str | None = None) -> torch.Tensor:
        """E[BOPs] of the architecture drawn from ``probs(tau)``, as the IR cost pass counts them."""
        definition = definition or self.space.search.bops
        p = self.probs(tau, torch.float64)
        eb, eb2 = self._expect(p, "bits"), self._expect(p, "bits", lambda b: float(b) ** 2)
        depth_p = dict(zip(self.depths, p["layers"]))
        survive = [
            sum((q for d, q in depth_p.items() if d > i), torch.zeros((), dtype=torch.float64))
            for i in range(self.n_blocks)
        ]
        widths = [self._expect(p, f"width{i}") for i in range(self.n_blocks)]

        def layer(macs: torch.Tensor, fan_in: torch.Tensor) -> torch.Tensor:
            if definition == "qonnx":
                return macs * eb2
            return macs * (eb2 + 2 * eb + torch.log2(fan_in))  # 'nac': log term at the expected fan-in

        def flat_out(i: int) -> torch.Tensor:
            """Expected per-sample size of block ``i``'s output (-1: the input)."""
            if i < 0:
                return torch.tensor(float(self.n_features), dtype=torch.float64)
            if self.kinds[i] == "dense":
                return widths[i]
            pooled = self.flat[i] / max(self.choices[f"width{i}"])  # spatial positions after the pool
            return widths[i] * pooled

        total = torch.zeros((), dtype=torch.float64)
        c_in = torch.tensor(float(self.in_shape[0]), dtype=torch.float64)
        for i, kind in enumerate(self.kinds):
            if kind == "dense":
                fan_in = flat_out(i - 1)
                macs = fan_in * widths[i]
            else:
                k_vol = self._expect(p, f"kernel{i}", lambda k: float(k) ** self.nd)
                fan_in = c_in * k_vol
                macs = fan_in * widths[i] * math.prod(self.spatial[i])
                c_in = widths[i]
            total = total + survive[i] * layer(macs, fan_in)
        for d, q in depth_p.items():
            fan_in = flat_out(d - 1)
            total = total + q * layer(fan_in * self.n_classes, fan_in)
        return total

    def max_bops(self) -> float:
        """BOPs of the largest architecture (every gene at its costliest choice): the cost term's scale."""
        saved = {n: a.detach().clone() for n, a in self.alpha.items()}
        with torch.no_grad():
            for n, a in self.alpha.items():
                a.fill_(-1e4)
                numeric = gene_base(n) in ("layers", "width", "kernel", "bits")
                a[int(np.argmax(self.choices[n])) if numeric else 0] = 1e4
            value = float(self.expected_bops())
            for n, a in self.alpha.items():
                a.copy_(saved[n])
        return value

    # ------------------------------------------------------------------ forward
    def _quant(
        self, x: torch.Tensor, scales: list[torch.Tensor], pb: torch.Tensor, signed: bool, narrow: bool = False
    ) -> torch.Tensor:
        """Mixture over bit widths of QONNX-style fake quantization."""
        out = 0
        for k in range(len(self.bits)):
            if pb[k] > 0:
                out = out + pb[k] * fake_quant(x, scales[k], self._bit_t[k], signed, narrow)
        return out

    def _weight(self, w: torch.Tensor, pb: torch.Tensor) -> torch.Tensor:
        scales = [pow2_scale_t(w.detach().abs().max(), b, True) for b in self._bit_t]
        return self._quant(w, scales, pb, True, narrow=True)

    def _windows(self, i: int) -> list[torch.Tensor]:
        """Centred k x k windows of block ``i``'s max kernel, one per kernel choice (made once)."""
        if i not in self._window_cache:
            ks = self.choices[f"kernel{i}"]
            kmax, out = max(ks), []
            for k in ks:
                lo = (kmax - k) // 2
                window = torch.zeros((kmax,) * self.nd)
                window[tuple(slice(lo, lo + k) for _ in range(self.nd))] = 1.0
                out.append(window)
            self._window_cache[i] = out
        return self._window_cache[i]

    def _kernel_mask(self, i: int, p: dict[str, torch.Tensor]) -> torch.Tensor:
        """sum_k P(kernel = k) * (centred k x k window of the max kernel)."""
        windows = self._windows(i)
        mask = torch.zeros_like(windows[0])
        for q, window in zip(p[f"kernel{i}"], windows):
            mask = mask + q * window
        return mask

    def _width_mask(self, i: int, p: dict[str, torch.Tensor]) -> torch.Tensor:
        """Soft channel mask: unit c is kept with P(width > c)."""
        if i not in self._unit_cache:
            ws = self.choices[f"width{i}"]
            units = torch.arange(max(ws), dtype=torch.float32)
            self._unit_cache[i] = [(units < w).float() for w in ws]
        return sum(q * m for q, m in zip(p[f"width{i}"], self._unit_cache[i]))

    def forward(self, x: torch.Tensor, tau: float = 1.0, arch_grad: bool = True) -> torch.Tensor:
        """Output of the mixture; ``arch_grad=False`` (weight steps) keeps the architecture out of autograd."""
        p = self.probs(tau)
        if not arch_grad:
            p = {n: q.detach() for n, q in p.items()}
        pb = p["bits"]
        h = x.reshape(len(x), *self.in_shape)
        h = self._quant(h, list(self.in_scales), pb, True)
        out = 0
        depth_p = dict(zip(self.depths, p["layers"]))
        for i, (layer, kind) in enumerate(zip(self.layers, self.kinds)):
            conv = kind != "dense"
            block_in = h
            if conv:
                w = self._weight(layer.weight * self._kernel_mask(i, p), pb)
                z = layer._conv_forward(h, w, layer.bias)
            else:
                z = F.linear(h.flatten(1), self._weight(layer.weight, pb), layer.bias)
            norms = self.choices[self._gene("norm", i)]
            z = sum(q * (self.norms[i][n](z) if n != "none" else z) for q, n in zip(p[self._gene("norm", i)], norms))
            acts = self.choices[self._gene("activation", i)]
            a = sum(q * activation(n, z) for q, n in zip(p[self._gene("activation", i)], acts))
            a = a * self._width_mask(i, p).reshape(1, -1, *(1,) * (a.dim() - 2))
            skip_ok = conv and block_in.shape == a.shape
            if skip_ok and True in self.choices[f"skip{i}"]:
                a = a + p[f"skip{i}"][self.choices[f"skip{i}"].index(True)] * block_in
            if self.pools[i] != "none":
                pool = (F.max_pool1d, F.max_pool2d) if self.pools[i] == "max" else (F.avg_pool1d, F.avg_pool2d)
                a = pool[self.nd - 1](a, 2)
            signed = any(n not in UNSIGNED_ACTIVATIONS for n in acts) or skip_ok
            if self.training:
                with torch.no_grad():
                    m = a.detach().abs().max()
                    r = self.act_range[i]
                    self.act_range[i] = torch.where(r > 0, (1 - RANGE_MOMENTUM) * r + RANGE_MOMENTUM * m, m)
            scales = [pow2_scale_t(self.act_range[i], b, signed) for b in self._bit_t]
            h = self._quant(a, scales, pb, signed)
            if i + 1 in depth_p:
                head = self.heads[str(i + 1)]
                out = out + depth_p[i + 1] * F.linear(h.flatten(1), self._weight(head.weight, pb), head.bias)
        return out
