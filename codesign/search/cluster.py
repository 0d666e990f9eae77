"""Where a generation's training chunks run: local spawned processes or a Dask cluster.

Both pools expose one method, ``map(chunks) -> results`` (in chunk order), over the same
function (:func:`codesign.search.nsga.evaluate_genomes`) and the same chunking, so
``--workers N`` and ``--cluster ADDRESS`` differ only in who executes a chunk, and give
identical trials. Dask distributed was chosen over Ray: it is pure Python (pip-installs
in seconds, no raylet/GCS daemons, no plasma store), a cluster is one ``dask scheduler``
plus ``dask worker`` per node over plain TCP (what HPC users already run, also through
dask-jobqueue on SLURM/PBS), and a ``LocalCluster`` on loopback makes it testable in CI.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
from typing import Any

from codesign.errors import CodesignError
from codesign.search.data import Dataset
from codesign.search.space import Space

#: How long to wait for an existing scheduler before giving up with a one-line error.
CONNECT_TIMEOUT_S = 20


class ClusterError(CodesignError):
    """The Dask cluster is unavailable, unreachable or failed a task."""


_WORKER: dict[str, Any] = {}


def _init_worker(space: Space, data: Dataset, counter: Any = None) -> None:
    import torch

    from codesign.search.device import pin

    torch.set_num_threads(1)
    _WORKER["space"], _WORKER["data"] = space, data
    if counter is not None:  # worker k of N takes GPU k mod G (auto/cuda; cpu and cuda:N stay as they are)
        with counter.get_lock():
            index = counter.value
            counter.value += 1
        pin(space.training.device, index)


def _pin_dask_worker(device: str, index: int) -> str:
    """Run once on each Dask worker: pin it to its device (as a local worker is)."""
    from codesign.search.device import pin

    return pin(device, index)


def _local_eval(genomes: list[Any]) -> list[Any]:
    from codesign.search.nsga import evaluate_genomes

    return evaluate_genomes(_WORKER["space"], _WORKER["data"], genomes)


def _dask_eval(space: Space, data: Dataset, genomes: list[Any]) -> list[Any]:
    """One chunk on a Dask worker (space and data arrive once per worker, scattered)."""
    import torch

    from codesign.search.nsga import evaluate_genomes

    torch.set_num_threads(1)
    return evaluate_genomes(space, data, genomes)


class LocalPool:
    """``--workers N``: N spawned processes, each holding the space and data from its initializer."""

    def __init__(self, space: Space, data: Dataset, workers: int):
        self.workers = workers
        ctx = mp.get_context("spawn")
        self._pool = cf.ProcessPoolExecutor(
            workers, ctx, initializer=_init_worker, initargs=(space, data, ctx.Value("i", 0))
        )

    def map(self, chunks: list[list[Any]]) -> list[list[Any]]:
        return list(self._pool.map(_local_eval, chunks))

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)


class DaskPool:
    """``--cluster tcp://HOST:PORT`` (an existing scheduler) or ``--cluster local:N`` (a LocalCluster
    of N single-threaded worker processes on 127.0.0.1, closed with the search)."""

    def __init__(self, space: Space, data: Dataset, address: str):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ClusterError("--cluster needs Dask: pip install 'codesign[distributed]'") from None
        self._cluster = None
        try:
            if address.startswith("local:"):
                n = _local_workers(address)
                self._cluster = LocalCluster(
                    n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
                )
                self.client = Client(self._cluster)
            else:
                self.client = Client(address, timeout=f"{CONNECT_TIMEOUT_S}s")
        except (OSError, TimeoutError) as exc:
            self._close_cluster()
            raise ClusterError(f"cannot connect to the Dask cluster at {address}: {exc}") from None
        self.workers = max(1, sum(self.client.nthreads().values()))
        self.devices = {  # one device per worker, round-robin over each node's GPUs in address order
            addr: self.client.run(_pin_dask_worker, space.training.device, k, workers=[addr])[addr]
            for k, addr in enumerate(sorted(self.client.nthreads()))
        }
        # one copy of the (possibly large) data per worker, not one per task
        self._space, self._data = self.client.scatter([space, data], broadcast=True)

    def map(self, chunks: list[list[Any]]) -> list[list[Any]]:
        futures = self.client.map(
            _dask_eval, [self._space] * len(chunks), [self._data] * len(chunks), chunks, pure=False
        )
        try:
            return self.client.gather(futures)
        except Exception as exc:
            raise ClusterError(f"a Dask worker failed: {type(exc).__name__}: {exc}") from None

    def _close_cluster(self) -> None:
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def close(self) -> None:
        self.client.close()
        self._close_cluster()


def _local_workers(address: str) -> int:
    try:
        n = int(address.removeprefix("local:"))
    except ValueError:
        n = 0
    if n < 1:
        raise ClusterError(f"--cluster {address}: expected local:N with N >= 1 workers")
    return n


def make_pool(space: Space, data: Dataset, workers: int = 1, cluster: str | None = None) -> LocalPool | DaskPool | None:
    """The pool for ``--cluster`` (wins) or ``--workers N > 1``; None = evaluate in this process."""
    if cluster:
        return DaskPool(space, data, cluster)
    return LocalPool(space, data, workers) if workers > 1 else None
