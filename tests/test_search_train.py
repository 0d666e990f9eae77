"""Population trainer: exact per-candidate semantics (padding/masking), agreement with the plain loop."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from codesign.search.data import split
from codesign.search.genome import Genome
from codesign.search.train import train_population, train_single


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(900, 6)).astype(np.float32)
    y = ((x[:, 0] * x[:, 1] + 0.5 * x[:, 2]) > 0).astype(np.int64) + (x[:, 3] > 1.0)
    return split(x, y, ["a", "b", "c"], 0.25, seed=0, name="synthetic")


def test_padding_is_exact(data):
    """A candidate trained alone == trained padded inside a group with wider candidates of other activations/norms."""
    torch.set_num_threads(1)
    small = Genome((4, 3), ("relu", "tanh"), ("batch", "layer"), bits=6, learning_rate=3e-3, l1=1e-4)
    wide = Genome((32, 16), ("sigmoid", "relu"), ("none", "batch"), bits=8, learning_rate=1e-3, dropout=0.1)
    other = Genome((8, 8), ("gelu", "identity"), ("layer", "none"), bits=4)
    alone = train_population([small], data, 2, 64)[0]
    grouped = train_population([wide, small, other], data, 2, 64)[1]
    for k, v in alone.params.items():
        np.testing.assert_allclose(grouped.params[k], v, rtol=1e-4, atol=1e-5, err_msg=k)
    assert grouped.accuracy == pytest.approx(alone.accuracy, abs=0.01)


@pytest.mark.parametrize(
    "genome",
    [
        Genome((16, 8), ("relu", "relu"), ("none", "none"), bits=8),
        Genome((8,), ("gelu",), ("batch",), bits=4, learning_rate=1e-2),
        Genome((6, 6), ("sigmoid", "leaky_relu"), ("layer", "none"), bits=6, l1=1e-4),
    ],
)
def test_population_matches_plain_loop(data, genome):
    """Same init, same batch order: the batched trainer reproduces torch.optim.Adam on nn.Module."""
    torch.set_num_threads(1)
    pop = train_population([genome, Genome((24, 5), ("tanh", "relu"), ("batch", "none"))], data, 2, 64)[0]
    plain = train_single(genome, data, 2, 64)
    assert pop.params.keys() == plain.params.keys()
    for k in pop.params:
        np.testing.assert_allclose(pop.params[k], plain.params[k], rtol=1e-3, atol=1e-4, err_msg=k)
    assert abs(pop.accuracy - plain.accuracy) <= 0.01


def test_results_in_input_order(data):
    gs = [Genome((w,), ("relu",), ("none",)) for w in (3, 9, 5)] + [Genome((4, 4), ("tanh", "tanh"), ("none", "none"))]
    res = train_population(gs, data, 1, 128)
    assert [r.params["w0"].shape[1] for r in res] == [3, 9, 5, 4]
