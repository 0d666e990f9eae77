"""hls4ml's C-simulation, bounded: cost estimated before the build, g++ under a memory cap, a big stack.

hls4ml's ``io_parallel`` code unrolls every layer; g++ must hold all of it, and the
C-simulation keeps each layer's product array on the stack. Both grow with the layer, so
a large model can drive g++ past the machine's memory or segfault on the default 8 MiB
stack. Here: the cost is known before anything is built (:func:`csim_cost`), conv models
too large for ``io_parallel`` switch to ``io_stream``, anything still over the limit is
refused with its numbers, g++ runs under ``RLIMIT_AS`` (an overrun is one line), and
``predict`` runs in a thread whose stack holds the largest layer.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnx

from codesign.errors import CodesignError
from codesign.ir.model import Model
from codesign.passes.workload import env_number

T = TypeVar("T")

#: g++ address-space cap for one C-simulation build (GiB); ``CODESIGN_CSIM_MEMORY_GB`` overrides it.
DEFAULT_MEMORY_GB = 4.0
#: io_parallel multipliers (all layers, after reuse) above which a conv model is built io_stream instead.
PARALLEL_MULT_LIMIT = 1 << 20
#: g++ address space for a C-sim build: a base plus bytes per weight (measured at -O3, io_parallel latency:
#: 262k weights 0.36 GB peak RSS, 1.05M weights 0.42 GB; ~75 B/weight, doubled for address space vs RSS).
BASE_GB = 0.6
BYTES_PER_WEIGHT = 150
#: bytes of C-sim stack per element of a layer's product array (ap_fixed accumulators, with margin).
STACK_BYTES_PER_MULT = 16
MIN_STACK = 64 << 20
MAX_STACK = 2 << 30
#: C-simulation nanoseconds per multiply (dense MACs), per io type: measured on the 2-core development machine
#: (io_stream 512x512 separable conv: 107M MACs in 19.6 s, ~180 ns; io_parallel dense/conv ~10x faster).
NS_PER_MAC = {"stream": 200.0, "parallel": 25.0}
#: NS_PER_MAC was measured at load ~15 on 2 cores (an idle machine is ~3x faster): one sample is refused only
#: when its estimate exceeds the budget this many times; the first sample's measured time then cuts the rest.
ESTIMATE_SLACK = 3.0
#: C-simulation seconds ``--verify`` may spend; ``CODESIGN_CSIM_SECONDS`` overrides it.
DEFAULT_SECONDS = 120.0
#: g++/cc1plus messages that mean the memory cap was hit.
OOM_MARKERS = ("virtual memory exhausted", "out of memory", "cannot allocate memory", "std::bad_alloc", "killed")


class CsimLimitError(CodesignError):
    """The C-simulation build would exceed (or exceeded) its memory or time limit."""


def memory_limit_gb(value: float | None = None) -> float:
    """The g++ memory cap: the given one, else ``CODESIGN_CSIM_MEMORY_GB``, else :data:`DEFAULT_MEMORY_GB`."""
    return env_number("CODESIGN_CSIM_MEMORY_GB", value, DEFAULT_MEMORY_GB, "GiB")


def time_limit_s(value: float | None = None) -> float:
    """The C-simulation time budget: the given one, else ``CODESIGN_CSIM_SECONDS``, else :data:`DEFAULT_SECONDS`."""
    return env_number("CODESIGN_CSIM_SECONDS", value, DEFAULT_SECONDS, "seconds")


@dataclass
class CsimCost:
    """What a C-simulation build of a lowered model costs, per layer and in total."""

    weights: int = 0
    #: multiplies of one sample (weights x output pixels, no reuse): what the C-simulation executes
    macs: int = 0
    parallel_mults: int = 0
    stream_mults: int = 0
    largest_layer: str = ""
    largest_mults: int = 0
    has_conv: bool = False
    layers: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _reuse(name: str, reuse: int | dict[str, int]) -> int:
    if isinstance(reuse, dict):
        return max(1, int(reuse.get(name, reuse.get("*", 1))))
    return max(1, int(reuse))


def csim_cost(lowered: Model, reuse: int | dict[str, int] = 1) -> CsimCost:
    """Weights and unrolled multipliers per MatMul/Conv of a lowered (channels-last) model.

    Dense: ``n_in * n_out``; conv: ``kernel * ch_in/group * ch_out`` per output pixel, times the
    output pixels in ``io_parallel`` (one pixel at a time in ``io_stream``); both divided by reuse.
    """
    cost = CsimCost()
    for node in lowered.nodes_of(["MatMul", "Conv", "Gemm"]):
        w = lowered.constant(node.input[1]) if len(node.input) > 1 else None
        if w is None:
            cost.macs += _activation_matmul_macs(lowered, node)
            continue
        rf = _reuse(node.name, reuse)
        n_w = int(np.asarray(w).size)
        out = lowered.shape(node.output[0]) or ()
        pixels = int(np.prod(out[1:-1])) if len(out) > 2 else 1  # channels-last: (N, *spatial, C)
        if node.op_type == "Conv":
            cost.has_conv = True
            per_pixel = math.ceil(n_w / rf)
            par, stream = per_pixel * pixels, per_pixel
        else:
            par = stream = math.ceil(n_w / rf)
        cost.macs += n_w * pixels
        cost.weights += n_w
        cost.parallel_mults += par
        cost.stream_mults += stream
        cost.layers[node.name] = {"weights": n_w, "parallel_mults": par, "stream_mults": stream}
        if par > cost.largest_mults:
            cost.largest_layer, cost.largest_mults = node.name, par
    return cost


def _activation_matmul_macs(lowered: Model, node: onnx.NodeProto) -> int:
    """Multiplies of a MatMul of two computed tensors (an Einsum): C-simulation time, no weights, no unrolling."""
    a, out = lowered.shape(node.input[0]), lowered.shape(node.output[0])
    if node.op_type != "MatMul" or not a or not out:
        return 0
    return int(np.prod(out)) * int(a[-1])


#: A model io_stream cannot express stays io_parallel up to this many times :data:`PARALLEL_MULT_LIMIT`
#: (BraggNN's attention winner: 1.2x builds; light_squeezenet's 333x ran g++ out of 4 GiB after 48 s).
KEEP_PARALLEL_FACTOR = 4


def plan_io(cost: CsimCost, io: str, memory_gb: float) -> tuple[str, str | None]:
    """(io to build with, the one-line reason when it changed); raise when no io fits the memory cap.

    A conv model whose io_parallel unrolling exceeds :data:`PARALLEL_MULT_LIMIT` switches to
    io_stream; a model whose weights alone need more than the cap is refused with its numbers.
    """
    need_gb = BASE_GB + cost.weights * BYTES_PER_WEIGHT / (1 << 30)
    if need_gb > memory_gb:
        raise CsimLimitError(
            f"C-simulation of {cost.weights:,} weights needs ~{need_gb:.1f} GiB for g++, over the {memory_gb:g} GiB "
            f"limit (largest layer {cost.largest_layer}); raise CODESIGN_CSIM_MEMORY_GB or prune/shrink the model"
        )
    if io == "parallel" and cost.has_conv and cost.parallel_mults > PARALLEL_MULT_LIMIT:
        return "stream", (
            f"io_parallel would unroll {cost.parallel_mults:,} multipliers (> {PARALLEL_MULT_LIMIT:,}; largest "
            f"{cost.largest_layer}): building io_stream instead ({cost.stream_mults:,})"
        )
    return io, None


def seconds_per_sample(cost: CsimCost, io: str) -> float:
    """Estimated C-simulation time of one sample (:data:`NS_PER_MAC` x its multiplies)."""
    return cost.macs * NS_PER_MAC.get(io, NS_PER_MAC["stream"]) * 1e-9


def plan_samples(cost: CsimCost, io: str, requested: int, budget_s: float) -> tuple[int, str | None]:
    """(samples to C-simulate, the one-line reason when fewer than ``requested``) within ``budget_s``.

    Refused (before anything is built) when one sample alone is estimated over the budget.
    """
    per = seconds_per_sample(cost, io)
    if per > ESTIMATE_SLACK * budget_s:
        raise CsimLimitError(
            f"--verify: C-simulating one sample ({cost.macs:,} multiplies, io_{io}) would take ~{per:.0f} s, over "
            f"{ESTIMATE_SLACK:g}x the {budget_s:g} s budget; raise CODESIGN_CSIM_SECONDS, or compile without --verify"
        )
    from codesign.passes.workload import samples_within

    n = samples_within(requested, per, budget_s)
    if n >= requested:
        return requested, None
    return n, (f"--verify: C-simulating {n} of the {requested} samples (~{per:.1f} s each, {cost.macs:,} "
               f"multiplies, io_{io}; budget {budget_s:g} s, CODESIGN_CSIM_SECONDS)")  # fmt: skip


def stack_bytes(cost: CsimCost) -> int:
    """A C-sim stack holding the largest layer's product array (at least 64 MiB, at most 2 GiB)."""
    return int(min(MAX_STACK, max(MIN_STACK, STACK_BYTES_PER_MULT * cost.largest_mults * 2)))


def with_stack(fn: Callable[[], T], size: int) -> T:
    """Run ``fn`` in a thread with a ``size``-byte stack (the C-simulation's arrays live there)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    old = threading.stack_size()
    try:
        threading.stack_size(size)
        worker = threading.Thread(target=run, name="codesign-csim")
    finally:
        threading.stack_size(old)
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


class CsimAbortedError(CodesignError):
    """The C-simulation died by a signal (an hls4ml ``assert``, a stack overflow): reported, not inherited."""


def isolated(fn: Callable[[], T]) -> T:
    """``fn()`` in a forked child: an abort inside hls4ml's C++ (its asserts) ends the child, not codesign.

    The C-simulation is a shared library called in-process; an ``assert`` in it used to kill the
    whole command with a C++ message and no folder. The child's result (or exception) comes back
    pickled; its stderr's last line names the failed assertion.
    """
    import pickle
    import signal
    import tempfile

    with tempfile.TemporaryDirectory(prefix="codesign-csim-") as tmp:
        result, err = Path(tmp) / "result.pkl", Path(tmp) / "stderr.txt"
        pid = os.fork()
        if pid == 0:  # child: never returns
            code = 0
            try:
                fd = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.dup2(fd, 2)
                try:
                    payload = ("value", fn())
                except BaseException as exc:  # carried to the parent
                    payload = ("error", exc)
                try:
                    data = pickle.dumps(payload)
                except Exception:
                    data = pickle.dumps(("error", RuntimeError(repr(payload[1]))))
                result.write_bytes(data)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status) or not result.exists():
            sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            lines = (
                [ln.strip() for ln in err.read_text(errors="replace").splitlines() if ln.strip()]
                if err.exists()
                else []
            )
            why = lines[-1][:300] if lines else "no message"
            name = signal.Signals(sig).name if sig else f"exit {os.WEXITSTATUS(status)}"
            raise CsimAbortedError(f"hls4ml's C-simulation aborted ({name}): {why}")
        kind, value = pickle.loads(result.read_bytes())
    if kind == "error":
        raise value
    return value


class _LimitedSubprocess:
    """Stand-in for the ``subprocess`` module inside hls4ml: every ``run`` under an address-space cap."""

    def __init__(self, limit_bytes: int):
        self.limit = limit_bytes
        self.outputs: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)

    def _preexec(self) -> None:
        resource.setrlimit(resource.RLIMIT_AS, (self.limit, self.limit))

    def run(self, *args: Any, **kwargs: Any) -> subprocess.CompletedProcess:
        kwargs.setdefault("preexec_fn", self._preexec)
        res = subprocess.run(*args, **kwargs)
        self.outputs.append(str(res.stdout or "") + str(res.stderr or ""))
        return res


@contextlib.contextmanager
def memory_limited_build(memory_gb: float) -> Iterator[None]:
    """Inside, hls4ml's C-simulation build (``build_lib.sh``: g++) runs under ``memory_gb`` of address space.

    An overrun becomes :class:`CsimLimitError` naming the limit instead of hls4ml's bare failure.
    """
    from hls4ml.backends.fpga import fpga_backend

    shim = _LimitedSubprocess(int(memory_gb * (1 << 30)))
    saved = fpga_backend.subprocess
    fpga_backend.subprocess = shim
    try:
        yield
    except CodesignError as exc:
        text = "\n".join(shim.outputs).lower()
        if any(m in text for m in OOM_MARKERS):
            raise CsimLimitError(
                f"C-simulation build (g++) ran out of its {memory_gb:g} GiB memory limit; use --io stream, a larger "
                "--reuse-factor or raise CODESIGN_CSIM_MEMORY_GB"
            ) from exc
        raise
    finally:
        fpga_backend.subprocess = saved


def relocate_libraries(tmp: Path, final: Path) -> list[str]:
    """Point the C-sim libraries built in ``tmp`` at ``final`` (their weights folder is baked in as a string).

    hls4ml compiles ``WEIGHTS_DIR="<build folder>/firmware/weights"`` into the ``.so``; the build folder
    is a temp one that is renamed to ``final``, so a shipped library would exit() on first use. The
    path string is rewritten in place, padded with '/' (``a//b`` is ``a/b``) to keep its length.
    Libraries that cannot be patched (``final`` the longer path, or the path stored in pieces) are
    deleted, as they could never load: their names are returned.
    """
    old, new = str(tmp).encode(), str(final).encode()
    dropped = []
    for lib in sorted(tmp.glob("firmware/*.so")):
        data = lib.read_bytes()
        if old not in data:
            continue
        if len(new) > len(old):
            lib.unlink()  # the loaded library keeps its (unlinked) inode
            dropped.append(lib.name)
            continue
        fresh = lib.with_name(lib.name + ".tmp")  # a new inode: the loaded library's mapping stays intact
        fresh.write_bytes(data.replace(old, new + b"/" * (len(old) - len(new))))
        os.chmod(fresh, lib.stat().st_mode)
        os.replace(fresh, lib)
        patched = lib.read_bytes()
        if tmp.name.encode() in patched or tmp.name[-6:].encode() in patched:  # the path was stored in pieces
            lib.unlink()
            dropped.append(lib.name)
    return dropped


__all__ = [
    "DEFAULT_MEMORY_GB", "DEFAULT_SECONDS", "PARALLEL_MULT_LIMIT", "CsimAbortedError", "CsimCost", "CsimLimitError", "csim_cost",
    "isolated", "memory_limit_gb", "memory_limited_build", "plan_io", "plan_samples", "relocate_libraries", "seconds_per_sample",
    "stack_bytes", "time_limit_s", "with_stack",
]  # fmt: skip
