"""--cluster: a 2-worker Dask LocalCluster on loopback gives exactly the trials of the single-process run."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("pymoo")
pytest.importorskip("distributed")

from codesign.search import cluster as cluster_mod
from codesign.search import nsga
from codesign.search.cluster import ClusterError, DaskPool, _local_workers
from codesign.search.data import load_dataset
from codesign.search.space import parse_space
from codesign.search.store import TrialStore
from tests.test_search_nsga import _space


def test_two_worker_dask_cluster_equals_single_process(tmp_path):
    spec = _space(tmp_path, trials=8, population=4)
    spec["model"]["dropout"] = [0.0, 0.2]  # random dropout masks must not depend on which worker trains a group
    space = parse_space(spec)
    data = load_dataset(space.data)
    runs, workers_seen = [], []
    for name, cluster in (("single", None), ("dask", "local:2")):
        store = TrialStore(tmp_path / f"{name}.sqlite", space.digest())
        search = nsga.Search(space, data, store, cluster=cluster)
        search.run()
        runs.append([(t.key, t.metrics["accuracy"], t.metrics["bops"], t.generation) for t in store.trials()])
        params = [t.params for t in store.trials(with_params=True)]
        workers_seen.append(params)
    assert len(runs[1]) == 9 and runs[0] == runs[1]
    for a, b in zip(*workers_seen):  # trained weights identical too, not just the scores
        assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_dask_pool_uses_both_loopback_workers(tmp_path):
    space = parse_space(_space(tmp_path, trials=4, population=4))
    pool = DaskPool(space, load_dataset(space.data), "local:2")
    try:
        addrs = list(pool.client.nthreads())
        assert pool.workers == 2 and len(addrs) == 2 and all(a.startswith("tcp://127.0.0.1:") for a in addrs)
    finally:
        pool.close()


def test_bad_cluster_addresses_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(cluster_mod, "CONNECT_TIMEOUT_S", 1)
    with pytest.raises(ClusterError, match="local:N"):
        _local_workers("local:zero")
    space = parse_space(_space(tmp_path, trials=4, population=4))
    with pytest.raises(ClusterError, match="cannot connect"):
        DaskPool(space, load_dataset(space.data), "tcp://127.0.0.1:1")


def test_cli_cluster_flag(tmp_path):
    import yaml
    from typer.testing import CliRunner

    from codesign.cli import app

    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(_space(tmp_path, trials=4, population=4)))
    res = CliRunner().invoke(app, ["search", str(path), "-o", str(tmp_path / "run"), "--cluster", "local:2"])
    assert res.exit_code == 0, res.output
    assert "4 trials in" in res.output and (tmp_path / "run" / "pareto.csv").is_file()
    res = CliRunner().invoke(app, ["search", str(path), "-o", str(tmp_path / "run2"), "--cluster", "local:0"])
    assert res.exit_code == 2 and "local:N" in res.output
    assert not (tmp_path / "run2").exists()  # no half-made run folder left behind
