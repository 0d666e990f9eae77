"""Regression tasks: a float target, MSE training, validation R^2 as the score the search maximises."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from codesign.search.data import load_dataset, split
from codesign.search.genome import Genome
from codesign.search.space import SearchSpaceError, parse_space
from codesign.search.train import r2_score, train_population, train_single


def _table(tmp_path, n=800):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    y = 2.0 * x[:, 0] - x[:, 1] + 0.5 * x[:, 2] * x[:, 3] + 0.05 * rng.normal(size=n)
    path = tmp_path / "reg.csv"
    rows = ["a,b,c,d,e,energy"] + [",".join(f"{v:.6f}" for v in (*xi, yi)) for xi, yi in zip(x, y)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_r2_score():
    y = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert r2_score(y, y) == 1.0 and r2_score(torch.full((4,), 2.5), y) == 0.0


def test_regression_trains_to_high_r2_in_both_trainers(tmp_path):
    space = parse_space(
        {"name": "r", "data": {"dataset": "csv", "path": str(_table(tmp_path)), "label": "energy", "task": "regression"},
         "model": {"layers": {"min": 1, "max": 2}, "width": [8, 16], "bits": [8]},
         "training": {"epochs": 1}, "search": {"trials": 2, "population": 2}}
    )  # fmt: skip
    data = load_dataset(space.data)
    assert data.regression and data.n_classes == 1 and data.y_train.dtype == np.float32
    assert abs(float(data.y_train.mean())) < 1e-5  # standardised with train statistics
    torch.set_num_threads(1)
    g = Genome((16, 8), ("relu", "relu"), ("none", "none"), bits=8, learning_rate=1e-2)
    pop = train_population([g, Genome((8,), ("tanh",), ("none",))], data, 20, 64)[0]
    plain = train_single(g, data, 20, 64)
    assert pop.accuracy > 0.9 and abs(pop.accuracy - plain.accuracy) < 0.01


def test_regression_needs_a_user_table():
    with pytest.raises(SearchSpaceError, match="regression"):
        parse_space({"name": "r", "data": {"dataset": "magic", "task": "regression"},
                     "model": {"layers": {"min": 1, "max": 1}, "width": [4]}})  # fmt: skip


def test_regression_split_keeps_float_targets():
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    d = split(x, x[:, 0] * 3, [], 0.2, task="regression")
    assert d.regression and d.classes == [] and d.y_val.dtype == np.float32
