"""A search run folder: ``trials.sqlite``, ``pareto.csv|json``, ``candidates/*.onnx``, ``plots/*.png``.

The store is written trial by trial (that is what makes ``--resume`` work); the derived
outputs are rebuilt from it at the end of every run in a temp folder and moved into
place, so a reader never sees a half-written Pareto set.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codesign.errors import OutputError
from codesign.ir.io import save_model
from codesign.search.data import Dataset, load_dataset
from codesign.search.genome import build_ir
from codesign.search.nsga import Progress, Search
from codesign.search.objectives import pareto_trials
from codesign.search.space import Space, load_space
from codesign.search.store import Trial, TrialStore

OUTPUTS = ("pareto.csv", "pareto.json", "candidates", "plots")


@dataclass
class RunSummary:
    """What a finished (or resumed) run reports."""

    run_dir: Path
    trials: int
    pareto: list[Trial]
    baselines: list[Trial]

    def best_vs_baseline(self, baseline: Trial) -> Trial | None:
        """Cheapest (BOPs) searched trial at least as accurate as ``baseline``."""
        ok = [t for t in self.pareto if t.metrics["accuracy"] >= baseline.metrics["accuracy"]]
        return min(ok, key=lambda t: t.metrics["bops"], default=None)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _row(rank: int, t: Trial, file: str | None) -> dict[str, Any]:
    g = t.genome
    row: dict[str, Any] = {"rank": rank, "trial": t.id, "name": t.name or "", "label": g.label()}
    row |= {k: v for k, v in t.metrics.items()}
    row |= {
        "widths": "-".join(map(str, g.widths)), "activations": "/".join(g.activations), "norms": "/".join(g.norms),
        "bits": g.bits, "dropout": g.dropout, "learning_rate": g.learning_rate, "l1": g.l1,
        "reuse_factor": g.reuse_factor, "feasible": t.feasible,
        "generation": t.generation, "file": file or "",
    }  # fmt: skip
    return row


def csv_text(rows: list[dict[str, Any]]) -> str:
    """CSV of ``rows`` with the union of their keys as columns (in first-seen order)."""
    fields = list(dict.fromkeys(k for r in rows for k in r)) or ["rank"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def staging_dir(run_dir: Path, prefix: str) -> Path:
    """A fresh temp folder in ``run_dir`` for outputs, after removing ones a killed run left."""
    for stale in run_dir.glob(f"{prefix}*"):
        shutil.rmtree(stale, ignore_errors=True)
    try:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=run_dir))
    except OSError as exc:
        raise OutputError(f"cannot write into {run_dir}: {exc.strerror or exc}") from None


@contextmanager
def staged_outputs(run_dir: Path, prefix: str, names: Iterable[str], what: str = "outputs") -> Iterator[Path]:
    """A temp folder to write ``names`` into; on success they replace the run folder's, all at once.
    The temp folder is always removed; an OSError becomes a one-line OutputError."""
    tmp = staging_dir(run_dir, prefix)
    try:
        yield tmp
        publish(tmp, run_dir, names)
    except OSError as exc:
        raise OutputError(f"cannot write the {what} of {run_dir}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(tmp: Path, run_dir: Path, names: Iterable[str]) -> None:
    """Move each finished output from ``tmp`` into ``run_dir``, replacing the previous one."""
    for name in names:
        dest = run_dir / name
        if dest.is_dir():
            shutil.rmtree(dest)
        elif dest.exists():
            dest.unlink()
        os.replace(tmp / name, dest)


def write_outputs(space: Space, store: TrialStore, run_dir: Path, n_features: int, n_classes: int) -> list[Trial]:
    """Rebuild pareto.csv/.json, candidates/ and plots/ from the store (atomically per run)."""
    trials = store.trials(with_params=True)
    searched = [t for t in trials if not t.is_baseline]
    baselines = [t for t in trials if t.is_baseline]
    front = pareto_trials(space, searched)
    with staged_outputs(run_dir, ".outputs.", OUTPUTS) as tmp:
        (tmp / "candidates").mkdir()
        (tmp / "plots").mkdir()
        rows = []
        for rank, t in enumerate(front):
            fname = f"candidates/{rank:03d}_trial{t.id}_{_slug(t.genome.label())}.onnx"
            if t.params is not None:
                save_model(build_ir(t.genome, n_features, n_classes, t.params, name=f"trial{t.id}"), tmp / fname)
            rows.append(_row(rank, t, fname if t.params is not None else None))
        (tmp / "pareto.csv").write_text(csv_text(rows))
        payload = {
            "space": space.name, "method": space.search.method, "objectives": space.objectives, "trials": len(searched),
            "wall_seconds": float(store.meta("wall_seconds") or 0.0), "pareto": rows,
            "baselines": [_row(-1, b, None) for b in baselines],
        }  # fmt: skip
        (tmp / "pareto.json").write_text(json.dumps(payload, indent=2, default=float))
        _plots(space, searched, front, baselines, tmp / "plots")
    return front


def _plots(space: Space, trials: list[Trial], front: list[Trial], baselines: list[Trial], folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [("bops", "accuracy", "BOPs", "validation accuracy", "accuracy_vs_bops.png", True)]
    if any("LUT" in t.metrics for t in trials):
        pairs += [
            ("LUT", "accuracy", "estimated LUT", "validation accuracy", "accuracy_vs_lut.png", True),
            ("latency", "resources_pct", "estimated latency (cycles)", "estimated resources (% of target)",
             "resources_vs_latency.png", False),
        ]  # fmt: skip
    for xk, yk, xl, yl, fname, logx in pairs:
        fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
        pts = [t for t in trials if xk in t.metrics and yk in t.metrics]
        ax.scatter(
            [t.metrics[xk] for t in pts], [t.metrics[yk] for t in pts], s=12, c="0.6", label=f"trials ({len(pts)})"
        )
        fr = sorted((t for t in front if xk in t.metrics), key=lambda t: t.metrics[xk])
        ax.plot([t.metrics[xk] for t in fr], [t.metrics[yk] for t in fr], "o-", c="tab:red", ms=4, label="Pareto front")
        for b in baselines:
            if xk in b.metrics:
                ax.scatter(
                    [b.metrics[xk]], [b.metrics[yk]], marker="*", s=140, c="tab:blue", label=f"baseline {b.name}"
                )
        if logx and pts and min(t.metrics[xk] for t in pts) > 0:
            ax.set_xscale("log")
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_title(f"{space.name}: {len(trials)} trials")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / fname)
        plt.close(fig)


_held: dict[Path, int] = {}  # run folders this process has locked (re-entrant: a pipeline's stages nest)


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive fcntl.flock on the run folder itself (no file left behind; a kill releases it),
    so a second search on the same folder exits with one line instead of training the same trials."""
    import fcntl

    key = Path(run_dir).resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    try:
        fd = os.open(key, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise OutputError(f"cannot lock {run_dir}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise OutputError(f"{run_dir} is in use by another codesign search; wait for it to finish") from None
        _held[key] = 1
        try:
            yield
        finally:
            del _held[key]
    finally:
        os.close(fd)  # releases the lock


def check_unlocked(run_dir: Path | None, space: Space) -> None:
    """Refuse a run folder another search holds, before a caller draws its progress bar."""
    run_dir = Path(run_dir) if run_dir is not None else Path("runs") / _slug(space.name)
    if run_dir.is_dir():
        with run_lock(run_dir):
            pass


def search_class(space: Space) -> type[Search]:
    """The global stage's algorithm: NSGA-II, or the differentiable supernet search."""
    if space.search.method == "darts":
        from codesign.search.darts import DartsSearch

        return DartsSearch
    return Search


def prepare_run_dir(run_dir: Path, resume: bool) -> bool:
    """Create the run folder (True if created here); refuse a non-run folder or a finished run without --resume."""
    if run_dir.exists() and not run_dir.is_dir():
        raise OutputError(f"{run_dir} exists and is not a folder")
    if run_dir.is_dir():
        has_store = (run_dir / "trials.sqlite").exists()
        if any(run_dir.iterdir()) and not has_store:
            raise OutputError(f"{run_dir} exists and is not a search run folder; choose another -o")
        if resume and not has_store:
            raise OutputError(f"{run_dir}: nothing to resume (no trials.sqlite)")
        return False
    if resume:
        raise OutputError(f"{run_dir}: nothing to resume (folder does not exist)")
    try:
        run_dir.mkdir(parents=True)
    except OSError as exc:
        raise OutputError(f"cannot create {run_dir}: {exc.strerror or exc}") from None
    return True


def run_search(
    space: Space | str | Path,
    run_dir: str | Path | None = None,
    trials: int | None = None,
    workers: int = 1,
    resume: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    data: Dataset | None = None,
    cluster: str | None = None,
    optuna_storage: str | None = None,
    study_name: str | None = None,
) -> RunSummary:
    """Load data (unless given), search (resuming from the store if asked), then write the run folder's outputs;
    with ``optuna_storage``, every trial also goes into an Optuna study as it finishes (``optuna_study``)."""
    space = space if isinstance(space, Space) else load_space(space)
    data = data if data is not None else load_dataset(space.data)
    run_dir = Path(run_dir) if run_dir is not None else Path("runs") / _slug(space.name)
    created = prepare_run_dir(run_dir, resume)
    with run_lock(run_dir):
        return _run_locked(space, data, run_dir, created, trials, workers, resume, on_progress, cluster,
                           optuna_storage, study_name)  # fmt: skip


def _run_locked(space: Space, data: Dataset, run_dir: Path, created: bool, trials: int | None, workers: int,
                resume: bool, on_progress: Callable[[Progress], None] | None, cluster: str | None,
                optuna_storage: str | None, study_name: str | None) -> RunSummary:  # fmt: skip
    """run_search's body, with the run folder locked."""
    try:
        store = TrialStore(run_dir / "trials.sqlite", space.digest(), resume=resume)
    except Exception:
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    try:
        if store.meta("space") is None:
            store.set_meta("space", space.model_dump_json())
        if optuna_storage:
            from codesign.search.optuna_study import attach

            attach(store, space, run_dir, optuna_storage, study_name)
        t0 = time.perf_counter()
        try:
            search_class(space)(space, data, store, trials=trials, workers=workers, cluster=cluster).run(on_progress)
        finally:  # wall time over every (resumed) session of this run: what method comparisons report
            store.set_meta("wall_seconds", str(float(store.meta("wall_seconds") or 0.0) + time.perf_counter() - t0))
        front = write_outputs(space, store, run_dir, data.n_features, data.n_classes)
        baselines = [t for t in store.trials() if t.is_baseline]
        return RunSummary(run_dir, store.count(), front, baselines)
    except BaseException:
        if created and store.count(include_baselines=True) == 0:
            store.close()
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        store.close()
