"""N:M pattern pruning and norm-ranked channel pruning, with their estimated-resource effect.

N:M (e.g. 2:4, Mishra et al. 2021): along the reduction (input) axis of every weight,
each group of M consecutive weights keeps only its N largest magnitudes, so every
output's adder tree has a fixed, regular share of non-zero terms. Zeros are written
into the float source of the weights (like :class:`~codesign.passes.prune.MagnitudePrune`),
so ``cost_report`` and the hls4ml estimator (zero multiplications removed at reuse
factor 1) see them. Channel pruning by L1/L2 norm is
:class:`~codesign.passes.prune.StructuredPrune` with ``criterion="l1"|"l2"``;
:func:`norm_prune` is its named entry point.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from codesign.errors import CodesignError
from codesign.ir.model import Model
from codesign.passes.base import Pass, PassResult
from codesign.passes.graph_edit import finish
from codesign.passes.prune import PruneInfo, StructuredPrune, _in_axis, _zero_smallest, prunable_layers


def parse_pattern(spec: str) -> tuple[int, int]:
    """``"2:4"`` -> ``(2, 4)``; one-line error for anything else."""
    try:
        n_str, m_str = spec.split(":")
        n, m = int(n_str), int(m_str)
    except ValueError:
        raise CodesignError(f"pattern {spec!r}: expected N:M, e.g. 2:4") from None
    _check_pattern(n, m)
    return n, m


def _check_pattern(n: int, m: int) -> None:
    if not (m >= 1 and 0 < n <= m):
        raise CodesignError(f"pattern {n}:{m}: need 0 < N <= M")


def nm_mask(values: np.ndarray, axis: int, n: int, m: int) -> np.ndarray:
    """Boolean mask of the entries to zero: in each group of ``m`` consecutive entries
    along ``axis``, all but the ``n`` of largest magnitude (ties: the earlier one is kept)."""
    _check_pattern(n, m)
    moved = np.moveaxis(np.abs(values), axis, -1)
    length = moved.shape[-1]
    groups = -(-length // m)
    # pad with -inf so a short last group of g entries keeps min(g, n) of them
    padded = np.full(moved.shape[:-1] + (groups * m,), -np.inf)
    padded[..., :length] = moved
    grouped = padded.reshape(-1, groups, m)
    # stable descending order: sort by -magnitude, ties resolved by position
    order = np.argsort(-grouped, axis=-1, kind="stable")
    drop = np.zeros(grouped.shape, dtype=bool)
    np.put_along_axis(drop, order[..., n:], True, axis=-1)
    drop = drop.reshape(padded.shape)[..., :length]
    return np.moveaxis(drop, -1, axis)


class NMPrune(Pass):
    """Keep the ``n`` largest of every ``m`` consecutive weights along each layer's input axis.

    Magnitudes are those of the quantized weights when a quantizer is present; ``n == m``
    is the identity. Conv weights (O, I, kh, kw) are grouped along I (per output and tap).
    """

    def __init__(self, n: int, m: int, layers: Iterable[str] | None = None):
        _check_pattern(int(n), int(m))
        self.n, self.m = int(n), int(m)
        self.layers = list(layers) if layers is not None else None

    def call(self, model: Model) -> PassResult:
        info = PruneInfo()
        targets = prunable_layers(model, self.layers)
        if self.n == self.m or not targets:
            return PassResult(model, False, info)
        before: dict[str, float] = {}
        for node in targets:
            w = model.constant(node.input[1])
            before[node.name] = float(np.mean(w == 0))
            _zero_smallest(model, node, nm_mask(w, _in_axis(node, w.ndim), self.n, self.m))
        model.invalidate()
        for node in targets:
            w = model.constant(node.input[1])
            info.layers[node.name] = {"before": before[node.name], "after": float(np.mean(w == 0)), "size": int(w.size)}
        total = sum(v["size"] for v in info.layers.values())
        info.sparsity = sum(v["after"] * v["size"] for v in info.layers.values()) / total
        return finish(model, True, info)


def norm_prune(fraction: float, norm: str = "l2", layers: Iterable[str] | None = None) -> StructuredPrune:
    """Structured removal of the ``fraction`` of output channels with the lowest L1/L2 norm."""
    if norm not in ("l1", "l2"):
        raise CodesignError(f"norm must be 'l1' or 'l2', not {norm!r}")
    return StructuredPrune(fraction=fraction, criterion=norm, layers=layers)


def estimated_resources(model: Model, target: str = "vu13p", estimator: str = "hls4ml") -> dict[str, float]:
    """Totals (LUT, FF, DSP, BRAM_18K, URAM, latency...) of the analytic estimate at reuse factor 1."""
    from codesign.passes.estimate import EstimateConfig, get_estimator

    return dict(get_estimator(estimator, EstimateConfig(target=target))(model).info.totals)


__all__ = ["NMPrune", "estimated_resources", "nm_mask", "norm_prune", "parse_pattern"]
