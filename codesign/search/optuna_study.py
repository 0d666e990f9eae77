"""Optuna interop: a search run's trials as finished trials of an Optuna study (RDB URL or journal file).

Why: ``trials.sqlite`` is our own schema; an Optuna study is what optuna-dashboard and Optuna's
own analysis tools read. Each codesign trial becomes one ``create_trial`` (COMPLETE, or PRUNED for
proxy-screened ones) with the run's objectives as values (directions from ``space.objectives``),
the budgets' ``g <= 0`` overshoots as Optuna's ``constraints`` system attribute, the genome's genes
as categorical parameters, and label / metrics / estimates / its QONNX file as user attributes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from codesign.errors import CodesignError, OutputError
from codesign.search.genome import Genome, Params, build_ir, encode
from codesign.search.objectives import constraint_vector, n_constraints, objective_vector
from codesign.search.space import OBJECTIVES, Space, parse_space
from codesign.search.store import Trial, TrialStore

#: per-trial QONNX files (every trial with trained parameters), relative to the run folder
TRIAL_FILES = "trials"
#: Optuna's constraints attribute (``optuna.study._constrained_optimization._CONSTRAINTS_KEY``)
CONSTRAINTS_KEY = "constraints"
#: per-block genes of ``Space.genes()`` (width0, kernel1, ...): unused by a shallower genome
BLOCK_GENE = re.compile(r"(?:width|activation|norm|kernel|skip|pool)(\d+)")


class StudyError(CodesignError):
    """The Optuna storage cannot be opened, or its study belongs to another run."""


def _sqlalchemy_error() -> type[Exception]:
    try:
        from sqlalchemy.exc import SQLAlchemyError
    except ImportError:  # optuna without SQLAlchemy: journal files only
        return OSError
    return SQLAlchemyError


def open_storage(url: str) -> Any:
    """An Optuna storage: ``sqlite:///f.db`` (any SQLAlchemy URL) or a journal file path."""
    import optuna

    try:
        if "://" in url:
            return optuna.storages.RDBStorage(url)
        path = Path(url)
        if not path.parent.is_dir():
            raise StudyError(f"{url}: the journal file's folder does not exist")
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(path)))
    except StudyError:
        raise
    except (ImportError, OSError, ValueError, _sqlalchemy_error()) as exc:  # bad URL, missing driver, unwritable file
        raise StudyError(f"{url}: cannot open the Optuna storage ({str(exc).splitlines()[0]})") from None


def directions(space: Space) -> list[str]:
    return ["maximize" if OBJECTIVES[o] == "max" else "minimize" for o in space.objectives]


def open_study(url: str, space: Space, run_dir: Path, study_name: str | None = None) -> Any:
    """Create (or reopen, for the same run folder) the study ``study_name`` (default: the run folder's name)."""
    import optuna

    name = study_name or run_dir.name
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "[I ...] study created" lines on stderr
    storage = open_storage(url)
    try:
        study = optuna.create_study(storage=storage, study_name=name, directions=directions(space), load_if_exists=True)
    except (optuna.exceptions.OptunaError, ValueError, _sqlalchemy_error()) as exc:
        raise StudyError(f"{url}: cannot create study {name!r} ({str(exc).splitlines()[0]})") from None
    owner = study.user_attrs.get("codesign_run")
    if owner is not None and owner != str(run_dir.resolve()):
        raise StudyError(f"{url}: study {name!r} holds another run ({owner}); pass --study-name")
    if [d.name.lower() for d in study.directions] != directions(space):
        raise StudyError(f"{url}: study {name!r} has other objective directions than {space.objectives}")
    if owner is None:
        study.set_user_attr("codesign_run", str(run_dir.resolve()))
        study.set_user_attr("space", space.name)
        study.set_user_attr("objectives", list(space.objectives))
    return study


def io_sizes(genome: Genome, params: Params) -> tuple[int, int]:
    """(n_features, n_classes) of a trained candidate, read off its parameters (no data set needed)."""
    n_classes = int(params[f"b{genome.depth}"].shape[0])
    n_features = math.prod(genome.input_shape) if genome.n_conv else int(params["w0"].shape[0])
    return n_features, n_classes


def gene_params(space: Space, genome: Genome) -> tuple[dict[str, Any], dict[str, Any]]:
    """(params, distributions): the genes this genome uses, as categorical choices of the space."""
    from optuna.distributions import CategoricalDistribution

    idx = encode(space, genome)
    if idx is None:  # a baseline outside the space's choices
        return {}, {}
    params, dists = {}, {}
    for (name, choices), i in zip(space.genes(), idx):
        block = BLOCK_GENE.fullmatch(name)
        if block and int(block.group(1)) >= genome.depth:
            continue  # a gene of a block this genome does not have
        params[name], dists[name] = choices[int(i)], CategoricalDistribution(list(choices))
    return params, dists


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=float))


class StudyWriter:
    """Adds a run's trials to an Optuna study, each once (by codesign trial id), writing each trial's
    QONNX file to ``RUN_DIR/trials/`` so its ``qonnx_file`` user attribute names a real file."""

    def __init__(self, study: Any, space: Space, store: TrialStore, run_dir: Path):
        self.study, self.space, self.store, self.run_dir = study, space, store, run_dir
        self.done = {t.user_attrs.get("codesign_trial") for t in study.get_trials(deepcopy=False)}

    def _qonnx(self, t: Trial) -> str | None:
        if t.params is None:
            return None
        from codesign.ir.io import save_model

        rel = f"{TRIAL_FILES}/trial{t.id:05d}.onnx"
        path = self.run_dir / rel
        if not path.is_file():
            try:
                path.parent.mkdir(exist_ok=True)
                nf, nc = io_sizes(t.genome, t.params)
                tmp = path.with_name(f".{path.name}.tmp")
                save_model(build_ir(t.genome, nf, nc, t.params, name=f"trial{t.id}"), tmp)
                tmp.replace(path)
            except OSError as exc:
                raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        return rel

    def frozen(self, t: Trial) -> Any:
        """One codesign trial as an Optuna FrozenTrial."""
        import optuna
        from optuna.trial import TrialState

        params, dists = gene_params(self.space, t.genome)
        values = [
            -v if OBJECTIVES[o] == "max" else v
            for o, v in zip(self.space.objectives, objective_vector(self.space, t.metrics))
        ]
        screened = bool(t.metrics.get("screened"))
        ok = not screened and all(math.isfinite(v) for v in values)
        attrs = {
            "codesign_trial": t.id, "label": t.genome.label(), "generation": t.generation, "baseline": t.name,
            "feasible": t.feasible, "violation": t.violation, "train_seconds": t.seconds,
            "genome": t.genome.to_dict(), "qonnx_file": self._qonnx(t), **t.metrics,
        }  # fmt: skip
        system = {CONSTRAINTS_KEY: constraint_vector(self.space, t.metrics)} if n_constraints(self.space) else {}
        state = TrialState.COMPLETE if ok else (TrialState.PRUNED if screened else TrialState.FAIL)
        return optuna.trial.create_trial(
            state=state, values=values if ok else None, params=params, distributions=dists,
            user_attrs=_jsonable(attrs), system_attrs=system,
        )  # fmt: skip

    def add(self, trials: Iterable[Trial], progress: Callable[[int, int], None] | None = None) -> int:
        """Add the trials not yet in the study (ids looked up in the store); returns how many.
        ``progress(done, total)`` per trial converted (its QONNX file written)."""
        new = []
        for t in trials:
            if t.id is None:  # a trial as handed to TrialStore.add: take its id from the store
                stored = self.store.get(t.key)
                if stored is None:
                    continue
                t = Trial(
                    t.genome, t.metrics, t.generation, t.name, t.feasible, t.violation, t.seconds, stored.id, t.params
                )
            if t.id not in self.done:
                new.append(t)
        if new:
            frozen = []
            for t in new:
                frozen.append(self.frozen(t))
                if progress:
                    progress(len(frozen), len(new))
            self.study.add_trials(frozen)
            self.done |= {t.id for t in new}
        return len(new)

    def sync(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Add every stored trial not yet in the study (a resumed run, or a finished one)."""
        return self.add(self.store.trials(with_params=True), progress)


def attach(store: TrialStore, space: Space, run_dir: Path, url: str, study_name: str | None = None) -> StudyWriter:
    """Mirror ``store`` into the study live: what it holds now, then every batch as it is committed."""
    writer = StudyWriter(open_study(url, space, run_dir, study_name), space, store, run_dir)
    writer.sync()
    store.on_add.append(writer.add)
    return writer


def export_run(
    run_dir: str | Path, url: str, study_name: str | None = None, progress: Callable[[int, int], None] | None = None
) -> tuple[Any, int]:
    """``codesign export-study``: a finished run's ``trials.sqlite`` into a study; returns (study, trials added)."""
    run_dir = Path(run_dir)
    db = run_dir / "trials.sqlite"
    if not db.is_file():
        raise CodesignError(f"{run_dir}: not a search run folder (no trials.sqlite)")
    store = TrialStore.open_existing(db)
    try:
        raw = store.meta("space")
        if raw is None:
            raise CodesignError(f"{db}: no search space recorded in the store")
        space = parse_space(json.loads(raw), source=str(db))
        writer = StudyWriter(open_study(url, space, run_dir, study_name), space, store, run_dir)
        return writer.study, writer.sync(progress)
    finally:
        store.close()
