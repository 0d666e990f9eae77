"""Differentiable hardware-aware search (DARTS / NASH style) into the same trial store as NSGA-II.

For each BOPs budget (or cost weight), a :class:`~codesign.search.supernet.Supernet` is
trained with first-order DARTS: weight steps on one part of the training rows, architecture
steps on the other, minimising ``task loss + |log(E[BOPs] / budget)|`` (or ``+ lambda *
log(E[BOPs] / largest)``) while the softmax temperature anneals. The most likely
architectures (``derive_top``) are derived into genomes and retrained from scratch by the
global stage's own trainer, once per learning-rate choice, so their accuracy, BOPs and
estimates are measured exactly as an NSGA-II candidate's are: the sweep gives a Pareto front
directly comparable with NSGA-II's. The supernets run once (warm-up shared); their outcome is
pinned in the store's meta, so ``--resume`` replays them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from codesign.search.data import Dataset
from codesign.search.genome import Genome
from codesign.search.nsga import Progress, Search
from codesign.search.space import DartsSpec, Space

DARTS_JSON = "darts.json"


def planned_trials(space: Space) -> int:
    """Upper bound of the trials a DARTS run stores: one per cost weight and learning rate."""
    assert space.search.darts is not None
    d = space.search.darts
    return len(d.sweep()) * d.derive_top * len(space.training.learning_rate)


def temperature(spec: DartsSpec, epoch: int) -> float:
    """Geometric anneal from ``temperature[0]`` (epoch 0) to ``temperature[1]`` (last epoch)."""
    t0, t1 = spec.temperature
    return t0 * (t1 / t0) ** (epoch / max(1, spec.epochs - 1))


def _split(data: Dataset, spec: DartsSpec, seed: int) -> tuple[Any, Any, Any, Any]:
    """(x_w, y_w, x_a, y_a): weight rows and architecture rows, a seeded split of the training set."""
    import torch

    order = np.random.default_rng(seed).permutation(len(data.y_train))
    n_a = max(1, round(spec.arch_fraction * len(order)))
    ya = torch.from_numpy(data.y_train)
    y = ya.float() if data.regression else ya.long()
    x = torch.from_numpy(data.x_train)
    w_idx, a_idx = torch.from_numpy(order[n_a:]), torch.from_numpy(order[:n_a])
    return x[w_idx], y[w_idx], x[a_idx], y[a_idx]


def _requires_grad(params: list[Any], flag: bool) -> None:
    for p in params:
        p.requires_grad_(flag)


def task_loss(out: Any, y: Any, regression: bool) -> Any:
    from codesign.search.train import task_loss as loss

    return loss(out, y)


class DartsSearch(Search):
    """The global stage with ``search.method: darts``: supernets instead of NSGA-II generations."""

    def __init__(self, space: Space, data: Dataset, store: Any, trials: int | None = None, workers: int = 1,
                 cluster: str | None = None):  # fmt: skip
        super().__init__(space, data, store, planned_trials(space), workers, cluster)
        from codesign.search.device import resolve_device

        self.spec: DartsSpec = space.search.darts  # type: ignore[assignment]
        self.device = resolve_device(space.training.device)  # supernets are built and trained under it
        self._warm: dict[str, Any] | None = None
        self._rows: tuple[Any, Any, Any, Any] | None = None

    def rows(self) -> tuple[Any, Any, Any, Any]:
        """(x_w, y_w, x_a, y_a) of :func:`_split`, made once per search."""
        if self._rows is None:
            self._rows = tuple(t.to(self.device) for t in _split(self.data, self.spec, self.space.search.seed))
        return self._rows

    # -------------------------------------------------------------- one supernet
    def _supernet(self) -> Any:
        from codesign.search.supernet import Supernet

        return Supernet(self.space, self.data.n_features, self.data.n_classes, self.data.x_train)

    def _batches(self, n: int, epoch: int, salt: int) -> list[Any]:
        import torch

        g = torch.Generator().manual_seed(self.space.search.seed * 7919 + salt * 101 + epoch)
        order = torch.randperm(n, generator=g, device="cpu")
        bs = self.space.training.batch_size
        return [order[s : s + bs] for s in range(0, n, bs) if len(order[s : s + bs]) > 1]

    def _warmup(self) -> dict[str, Any]:
        """Supernet weights trained with the architecture frozen at uniform (shared by every lambda)."""
        import torch

        if self._warm is None:
            torch.manual_seed(self.space.search.seed)
            net = self._supernet()
            xw, yw, _, _ = self.rows()
            opt = torch.optim.Adam(net.weights(), lr=self.spec.weight_learning_rate)
            net.train()
            for epoch in range(self.spec.warmup_epochs):
                for idx in self._batches(len(yw), epoch, salt=0):
                    loss = task_loss(
                        net(xw[idx], self.spec.temperature[0], arch_grad=False), yw[idx], self.data.regression
                    )
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            self._warm = {k: v.clone() for k, v in net.state_dict().items()}
        return self._warm

    def cost_term(self, net: Any, tau: float, ref: float, kind: str, value: float) -> Any:
        """lambda * log(E[BOPs] / max), or target_weight * |log(E[BOPs] / (fraction * max))|."""
        import torch

        ratio = net.expected_bops(tau) / ref
        if kind == "cost_weight":
            return value * torch.log(ratio).float()
        return self.spec.target_weight * torch.abs(torch.log(ratio / value)).float()

    def search_one(self, k: int, kind: str, value: float) -> dict[str, Any]:
        """Train supernet ``k`` (cost weight or BOPs budget ``value``) from the shared warm-up; return what it derived."""
        import torch

        t0 = time.perf_counter()
        warm = self._warmup()
        torch.manual_seed(self.space.search.seed + 1 + k)
        net = self._supernet()
        net.load_state_dict(warm)
        xw, yw, xa, ya = self.rows()
        weights = net.weights()
        w_opt = torch.optim.Adam(weights, lr=self.spec.weight_learning_rate)
        ref = net.max_bops()
        tau = self.spec.temperature[0]
        net.train()
        a_opt = None
        if len(net.alpha):  # a space with nothing to relax has one architecture: nothing to search
            a_opt = torch.optim.Adam(net.alpha.parameters(), lr=self.spec.arch_learning_rate, betas=(0.5, 0.999))
        for epoch in range(self.spec.epochs if a_opt is not None else 0):
            tau = temperature(self.spec, epoch)
            w_batches = self._batches(len(yw), epoch, salt=1 + k)
            a_batches = self._batches(len(ya), epoch, salt=1000 + k)
            for j, idx in enumerate(w_batches):
                loss = task_loss(net(xw[idx], tau, arch_grad=False), yw[idx], self.data.regression)
                w_opt.zero_grad()
                loss.backward()
                w_opt.step()
                if not a_batches:
                    continue
                a_idx = a_batches[j % len(a_batches)]
                _requires_grad(weights, False)  # an architecture step: no weight gradients to compute
                a_loss = task_loss(net(xa[a_idx], tau), ya[a_idx], self.data.regression)
                if value > 0 or kind == "bops_target":
                    a_loss = a_loss + self.cost_term(net, tau, ref, kind, value)
                a_opt.zero_grad()
                a_loss.backward()
                a_opt.step()
                _requires_grad(weights, True)
        genomes = net.derive_top(self.spec.derive_top)
        probs = {n: [round(float(v), 4) for v in q.detach()] for n, q in net.probs(tau).items() if n in net.alpha}
        return {
            kind: value, "genome": genomes[0].to_dict(), "label": genomes[0].label(), "probabilities": probs,
            "alternatives": [g.to_dict() for g in genomes[1:]],
            "expected_bops": float(net.expected_bops(tau).detach()), "max_bops": ref, "final_temperature": tau,
            "seconds": time.perf_counter() - t0,
        }  # fmt: skip

    # -------------------------------------------------------------- the loop
    def derived_candidates(self, genome: Genome) -> list[Genome]:
        """The derived architecture once per learning-rate choice (DARTS does not search training genes)."""
        return list(
            {
                g.key(): g for g in (replace(genome, learning_rate=lr) for lr in self.space.training.learning_rate)
            }.values()
        )

    def _run(self, on_progress: Callable[[Progress], None] | None) -> None:
        self._evaluate_baselines()
        outcomes = []
        for k, (kind, value) in enumerate(self.spec.sweep()):
            t0 = time.perf_counter()
            pinned = self.store.meta(f"darts_{k}")
            if pinned is None:  # one thread (Search.run): results independent of the machine's core count
                with self.device:  # every tensor the supernet makes (weights, masks, BOPs terms) on the device
                    info = self.search_one(k, kind, value)
                self.store.set_meta(f"darts_{k}", json.dumps(info))
            else:
                info = json.loads(pinned)
            outcomes.append(info)
            derived = [Genome.from_dict(d) for d in [info["genome"], *info.get("alternatives", [])]]
            todo = {g.key(): g for d in derived for g in self.derived_candidates(d)}.values()
            missing = [g for g in todo if self.store.get(g.key()) is None]
            self._evaluate(missing, k)
            if on_progress is not None:
                on_progress(self.progress(k, len(missing), time.perf_counter() - t0))
        write_darts_json(Path(self.store.path).parent, outcomes)


def write_darts_json(run_dir: Path, outcomes: list[dict[str, Any]]) -> None:
    """``darts.json``: per cost weight, the derived architecture, its probabilities and supernet time."""
    from codesign.search.run import staged_outputs

    with staged_outputs(run_dir, ".darts-", [DARTS_JSON], DARTS_JSON) as tmp:
        payload = {"supernets": outcomes, "supernet_seconds": math.fsum(o["seconds"] for o in outcomes)}
        (tmp / DARTS_JSON).write_text(json.dumps(payload, indent=2))
