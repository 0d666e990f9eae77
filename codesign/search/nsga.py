"""NSGA-II over genomes (pymoo ask/tell), with the trial store as the single source of truth.

Resumability comes from determinism, not from pickling the optimiser: pymoo draws all its
randomness from a generator seeded by the config, so replaying ask/tell with the stored
results of already-finished trials reproduces the exact same generations; a trial found
in the store is never trained again, and the first missing one is where work resumes
(after ``kill -9`` or with a larger ``--trials``). Duplicates are eliminated on the
decoded genome (genes a shallower network does not use are ignored) against the current
population *and* every trial evaluated in earlier generations, so each generation brings
only new candidates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.duplicate import DuplicateElimination
from pymoo.core.evaluator import Evaluator
from pymoo.core.problem import Problem
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.problems.static import StaticProblem

from codesign.search.cluster import DaskPool, LocalPool, make_pool
from codesign.search.data import Dataset
from codesign.search.genome import Genome, baseline_genome, decode, encode
from codesign.search.objectives import check_estimator, constraint_vector, measure, n_constraints, objective_vector
from codesign.search.space import Space
from codesign.search.store import Trial, TrialStore
from codesign.search.train import train_population

#: Give up when this many generations in a row bring no new candidate (space exhausted).
MAX_STALE_GENERATIONS = 5


class SearchProblem(Problem):
    """Integer genome (one choice index per gene); evaluation happens outside (ask/tell)."""

    def __init__(self, space: Space):
        genes = space.genes()
        super().__init__(
            n_var=len(genes), n_obj=len(space.objectives), n_ieq_constr=n_constraints(space), xl=np.zeros(len(genes)),
            xu=np.asarray([len(c) - 1 for _, c in genes], dtype=float), vtype=int,
        )  # fmt: skip


class GenomeDuplicates(DuplicateElimination):
    """Duplicate = same decoded genome as an earlier individual, the other population, or a past trial."""

    def __init__(self, space: Space, seen: set[str]):
        super().__init__()
        self.space, self.seen = space, seen

    def _key(self, ind: Any) -> str:
        return decode(self.space, ind.X).key()

    def _do(self, pop: Any, other: Any, is_duplicate: np.ndarray) -> np.ndarray:
        taken = set(self.seen)
        if other is not None:
            taken |= {self._key(o) for o in other}
        for i, ind in enumerate(pop):
            k = self._key(ind)
            if k in taken:
                is_duplicate[i] = True
            taken.add(k)
        return is_duplicate


# ----------------------------------------------------------------------------- evaluation


def evaluate_genomes(
    space: Space, data: Dataset, genomes: list[Genome]
) -> list[tuple[float, dict[str, Any], Any, float]]:
    """Train (batched) and measure: (accuracy, metrics, params, seconds) per genome, in order."""
    from codesign.search.device import resolve_device

    t = space.training
    unique = list({g.train_key(): replace(g, reuse_factor=1) for g in genomes}.values())
    results = train_population(
        unique, data, t.epochs, t.batch_size, seed=space.search.seed, device=resolve_device(t.device)
    )
    trained = {g.train_key(): r for g, r in zip(unique, results)}
    out = []
    for g in genomes:
        r = trained[g.train_key()]
        metrics = {"accuracy": r.accuracy, **measure(space, g, r.params, data.n_features, data.n_classes)}
        out.append((r.accuracy, metrics, r.params, r.seconds))
    return out


#: Accuracy recorded for a candidate the proxy screened out (never trained): no better than nothing.
SCREENED_ACCURACY = 0.0


def pessimistic_objectives(space: Space, metrics: list[dict[str, Any]]) -> np.ndarray:
    """Objective matrix where proxy-screened rows take the worst value of each column:
    NSGA-II ranks them last without an infinity that would distort crowding distances."""
    f = np.asarray([objective_vector(space, m) for m in metrics], dtype=float)
    screened = np.asarray([bool(m.get("screened")) for m in metrics], dtype=bool)
    if screened.any() and f.size:
        f[screened] = f.max(axis=0)
    return f


def _chunks(genomes: list[Genome], n: int) -> list[list[Genome]]:
    """Split into ``n`` chunks keeping batched groups (same arch key) together where possible."""
    groups: dict[tuple, list[Genome]] = {}
    for g in genomes:
        groups.setdefault(g.arch_key(), []).append(g)
    bins: list[list[Genome]] = [[] for _ in range(n)]
    for members in sorted(groups.values(), key=len, reverse=True):
        min(bins, key=len).extend(members)
    return [b for b in bins if b]


@dataclass
class Progress:
    """What the progress bar shows after each generation."""

    done: int
    total: int
    generation: int
    pareto_size: int
    best: dict[str, float]
    new: int


class Search:
    """One NSGA-II search over ``space``; results go to ``store`` as they finish."""

    def __init__(
        self, space: Space, data: Dataset, store: TrialStore, trials: int | None = None, workers: int = 1,
        cluster: str | None = None,
    ):  # fmt: skip
        check_estimator(space)
        self.space, self.data, self.store = space, data, store
        self.trials = trials if trials is not None else space.search.trials
        self.workers = max(1, int(workers))
        self.cluster = cluster
        self._pool: LocalPool | DaskPool | None = None
        self._pool_made = False
        self._proxy_scores: dict[str, float] = {}  # proxy score of trained candidates, stored in their metrics

    # -------------------------------------------------------------- evaluation
    def _evaluate(self, genomes: list[Genome], generation: int, names: list[str | None] | None = None) -> None:
        if not genomes:
            return
        if not self._pool_made:  # local processes (--workers) or a Dask cluster (--cluster): same chunks, same function
            self._pool, self._pool_made = make_pool(self.space, self.data, self.workers, self.cluster), True
        if self._pool is not None and len(genomes) > 1:
            chunks = _chunks(genomes, self._pool.workers)
            by_key: dict[str, Any] = {}
            for chunk, res in zip(chunks, self._pool.map(chunks)):
                by_key |= {g.key(): r for g, r in zip(chunk, res)}
            results = [by_key[g.key()] for g in genomes]
        else:
            results = evaluate_genomes(self.space, self.data, genomes)
        trials = []
        for i, (g, (_, metrics, params, seconds)) in enumerate(zip(genomes, results)):
            if g.key() in self._proxy_scores:
                metrics = {**metrics, "proxy": self._proxy_scores[g.key()]}
            g_vec = constraint_vector(self.space, metrics)
            violation = float(sum(max(0.0, v) for v in g_vec))
            trials.append(
                Trial(
                    g,
                    metrics,
                    generation,
                    names[i] if names else None,
                    violation == 0.0,
                    violation,
                    seconds,
                    params=params,
                )
            )
        self.store.add(trials)

    def _screen(self, missing: list[Genome], budget: int, generation: int) -> list[Genome]:
        """Zero-cost pre-screen of a generation's new candidates: of ``missing[:budget]``, store
        those outside the best ``proxy_keep`` share (ranked over all of ``missing``) untrained,
        and return the rest to train.

        The choice is made over the whole generation and pinned in the store's meta before any
        trial is written, so neither the trial budget nor a resume (after a kill anywhere)
        changes which candidates are trained."""
        import json

        from codesign.search.proxies import score, screen
        from codesign.search.train import initial_params

        spec = self.space.search
        t0 = time.perf_counter()
        pinned = self.store.meta(f"proxy_keep_g{generation}")
        genomes = missing if pinned is None else missing[:budget]
        scores = score(genomes, self.data, spec.proxy, seed=spec.seed)
        seconds = (time.perf_counter() - t0) / max(1, len(genomes))
        hardware = [measure(self.space, g, initial_params(g, self.data, spec.seed), self.data.n_features, self.data.n_classes)
                    for g in genomes]  # fmt: skip
        if pinned is None:
            costs = [h["bops"] for h in hardware] if spec.proxy_cost else None
            keep = [g.key() for g, k in zip(genomes, screen(genomes, scores, spec.proxy_keep, costs)) if k]
            self.store.set_meta(f"proxy_keep_g{generation}", json.dumps(keep))
        else:
            keep = json.loads(pinned)
        genomes, scores = genomes[:budget], scores[:budget]
        trained = [g for g in genomes if g.key() in keep]
        dropped = []
        for g, s, hw in zip(genomes, scores, hardware):
            if g.key() in keep:
                continue
            metrics = {"accuracy": SCREENED_ACCURACY, **hw, "proxy": s, "screened": True}
            dropped.append(Trial(g, metrics, generation, None, False, 1.0, seconds))
        self.store.add(dropped)
        for g, s in zip(genomes, scores):
            self._proxy_scores[g.key()] = s
        return trained

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        self._pool, self._pool_made = None, False

    # -------------------------------------------------------------- the loop
    def baselines(self) -> list[Genome]:
        return [baseline_genome(self.space, b) for b in self.space.baselines]

    def _initial_x(self) -> np.ndarray:
        """Encodable baselines first, then seeded random genomes, all distinct after decoding."""
        rng = np.random.default_rng(self.space.search.seed)
        genes = self.space.genes()
        rows, keys = [], set()
        for g in self.baselines():
            x = encode(self.space, g)
            if x is not None and g.key() not in keys:
                rows.append(x)
                keys.add(g.key())
        attempts = 0
        while len(rows) < self.space.search.population and attempts < 1000 * self.space.search.population:
            attempts += 1
            x = np.asarray([rng.integers(len(c)) for _, c in genes])
            k = decode(self.space, x).key()
            if k not in keys:
                rows.append(x)
                keys.add(k)
        return np.asarray(rows, dtype=float)

    def run(self, on_progress: Callable[[Progress], None] | None = None) -> None:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small tensors: intra-op threads only add contention; parallelism is --workers
        try:
            self._run(on_progress)
        finally:
            torch.set_num_threads(threads)
            self.close()

    def _evaluate_baselines(self) -> None:
        """Train the config's baselines not yet in the store (generation -1)."""
        base = [g for g in self.baselines() if self.store.get(g.key()) is None]
        self._evaluate(base, -1, [b.name for b, g in zip(self.space.baselines, self.baselines()) if g in base])

    def _run(self, on_progress: Callable[[Progress], None] | None) -> None:
        space = self.space
        self._evaluate_baselines()
        seen: set[str] = set()
        algorithm = NSGA2(
            pop_size=space.search.population,
            sampling=self._initial_x(),
            crossover=SBX(prob=1.0, eta=3.0, vtype=float, repair=RoundingRepair()),
            mutation=PM(prob=1.0, eta=3.0, vtype=float, repair=RoundingRepair()),
            eliminate_duplicates=GenomeDuplicates(space, seen),
        )
        problem = SearchProblem(space)
        algorithm.setup(problem, termination=("n_gen", 10**9), seed=space.search.seed)
        generation, stale = 0, 0
        while self.store.count() < self.trials and stale < MAX_STALE_GENERATIONS:
            pop = algorithm.ask()
            if pop is None or len(pop) == 0:  # mating found no new genome this time: draw again
                stale += 1
                continue
            genomes = [decode(space, x) for x in pop.get("X")]
            missing = list({g.key(): g for g in genomes if self.store.get(g.key()) is None}.values())
            budget = self.trials - self.store.count()
            t0 = time.perf_counter()
            todo = missing[:budget]
            if space.search.proxy is not None:
                todo = self._screen(missing, budget, generation)
            self._evaluate(todo, generation)
            if len(missing) > budget:
                break  # trial budget reached inside this generation; a resume with more trials continues here
            rows = [self.store.get(g.key()) for g in genomes]
            metrics = [r.metrics for r in rows if r is not None]
            fresh = any(g.key() not in seen for g in genomes)  # replayed generations (resume) are not stale
            seen.update(g.key() for g in genomes)
            out: dict[str, Any] = {"F": pessimistic_objectives(space, metrics)}
            if problem.n_ieq_constr:
                out["G"] = np.asarray([constraint_vector(space, m) for m in metrics], dtype=float)
            Evaluator().eval(StaticProblem(problem, **out), pop)
            algorithm.tell(infills=pop)
            stale = stale + 1 if not fresh else 0
            if on_progress is not None:
                on_progress(self.progress(generation, len(missing), time.perf_counter() - t0))
            generation += 1

    def progress(self, generation: int, new: int, seconds: float = 0.0) -> Progress:
        from codesign.search.objectives import metric_key, pareto_trials

        front = pareto_trials(self.space, self.store.trials(include_baselines=False))
        best: dict[str, float] = {}
        for o in self.space.objectives:
            key = metric_key(o)
            vals = [t.metrics[key] for t in front if key in t.metrics]
            if vals:
                best[o] = max(vals) if o == "accuracy" else min(vals)
        return Progress(self.store.count(), self.trials, generation, len(front), best, new)
