"""SQLite trial store: every finished trial is committed at once, so a kill loses none.

One row per distinct genome (``key`` is unique), with its metrics, feasibility and the
trained parameters (an .npz blob, so Pareto candidates can be exported later without
retraining). ``meta`` pins the search space's digest: resuming with a different space
is refused instead of silently mixing incomparable trials.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from codesign.errors import CodesignError
from codesign.search.genome import Genome, Params

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    generation INTEGER NOT NULL,
    name TEXT,
    genome TEXT NOT NULL,
    metrics TEXT NOT NULL,
    feasible INTEGER NOT NULL,
    violation REAL NOT NULL,
    seconds REAL NOT NULL,
    finished REAL NOT NULL,
    params BLOB
);
"""


class StoreError(CodesignError):
    """The trial store cannot be opened, or belongs to a different search space."""


@dataclass
class Trial:
    """One evaluated candidate."""

    genome: Genome
    metrics: dict[str, Any]
    generation: int
    name: str | None = None
    feasible: bool = True
    violation: float = 0.0
    seconds: float = 0.0
    id: int | None = None
    params: Params | None = field(default=None, repr=False)

    @property
    def key(self) -> str:
        return self.genome.key()

    @property
    def is_baseline(self) -> bool:
        return self.name is not None


def _pack(params: Params | None) -> bytes | None:
    if params is None:
        return None
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in params.items()})
    return buf.getvalue()


def _unpack(blob: bytes | None) -> Params | None:
    if blob is None:
        return None
    with np.load(io.BytesIO(blob)) as f:
        return {k: f[k] for k in f.files}


class TrialStore:
    """Trials of one search, in an SQLite file (WAL, one transaction per batch)."""

    def __init__(self, path: str | Path, digest: str, resume: bool = False):
        self.path = Path(path)
        self.on_add: list[Callable[[list[Trial]], Any]] = []  # called with each committed batch (optuna_study.attach)
        existed = self.path.exists()
        try:
            self.db = sqlite3.connect(self.path, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open the trial store ({exc})") from None
        stored = self.meta("space_digest")
        held = self._raw_count()
        if existed and stored is not None and not resume and held > 0:
            self.db.close()
            raise StoreError(f"{self.path} already holds {held} trials; pass --resume to continue it")
        if stored is not None and stored != digest:
            self.db.close()
            raise StoreError(f"{self.path} was made with a different search space (digest {stored} != {digest})")
        if stored is None:
            self.set_meta("space_digest", digest)

    @classmethod
    def open_existing(cls, path: str | Path) -> TrialStore:
        """A finished run's store, whatever space it was made with (readers: report, export-study)."""
        try:
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
                row = con.execute("SELECT value FROM meta WHERE key = 'space_digest'").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: not a trial store ({exc})") from None
        if row is None:
            raise StoreError(f"{path}: not a trial store (no search space recorded)")
        return cls(path, str(row[0]), resume=True)

    def _raw_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM trials").fetchone()[0])

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def add(self, trials: Iterable[Trial]) -> None:
        """Commit a batch of finished trials in one transaction (all or nothing)."""
        now, trials = time.time(), list(trials)
        rows = [
            (t.key, t.generation, t.name, json.dumps(t.genome.to_dict()), json.dumps(t.metrics), int(t.feasible),
             float(t.violation), float(t.seconds), now, _pack(t.params))
            for t in trials
        ]  # fmt: skip
        with self.db:
            self.db.executemany(
                "INSERT OR IGNORE INTO trials (key, generation, name, genome, metrics, feasible, violation, seconds,"
                " finished, params) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        for hook in self.on_add:
            hook(trials)

    def _row(self, row: tuple, with_params: bool) -> Trial:
        tid, gen, name, genome, metrics, feasible, violation, seconds, blob = row
        return Trial(
            Genome.from_dict(json.loads(genome)), json.loads(metrics), gen, name, bool(feasible), violation, seconds, tid,
            _unpack(blob) if with_params else None,
        )  # fmt: skip

    _COLS = "id, generation, name, genome, metrics, feasible, violation, seconds"

    def get(self, key: str, with_params: bool = False) -> Trial | None:
        cols = self._COLS + (", params" if with_params else ", NULL")
        row = self.db.execute(f"SELECT {cols} FROM trials WHERE key = ?", (key,)).fetchone()
        return None if row is None else self._row(row, with_params)

    def trials(self, with_params: bool = False, include_baselines: bool = True) -> list[Trial]:
        cols = self._COLS + (", params" if with_params else ", NULL")
        where = "" if include_baselines else " WHERE name IS NULL"
        return [self._row(r, with_params) for r in self.db.execute(f"SELECT {cols} FROM trials{where} ORDER BY id")]

    def count(self, include_baselines: bool = False) -> int:
        where = "" if include_baselines else " WHERE name IS NULL"
        return int(self.db.execute(f"SELECT COUNT(*) FROM trials{where}").fetchone()[0])

    def close(self) -> None:
        self.db.close()
