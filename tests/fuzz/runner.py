"""Run the ``codesign`` CLI on one mutant in a child process, capped, and classify how it ended.

A fork server: the parent imports codesign (and the backends' heavy libraries) once; every
mutant runs in a freshly forked child with an RLIMIT_AS cap, its stdout/stderr file
descriptors redirected to files (so C-level output counts too) and a wall-clock timeout.
That is the CLI in a subprocess at ~10x the rate of ``python -m codesign.cli`` per mutant.
"""

from __future__ import annotations

import os
import resource
import signal
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from fuzz.mutators import Mutant

#: Outcome classes. Only OK and REFUSED are good.
OK, REFUSED = "ok", "refused"
ACCEPTED_INVALID = "accepted-invalid"  # exit 0 on a mutant that must be refused
INTERNAL = "internal"  # exit 1: an internal error (one line, but a bug)
MULTILINE = "multiline"  # exit 2 with more than one stderr line (e.g. a third-party log)
TRACEBACK = "traceback"
MEMORY = "memory"  # hit the RLIMIT_AS cap (MemoryError, bad_alloc) or its RSS went over it
SIGNAL = "signal"
TIMEOUT = "timeout"
OTHER_EXIT = "other-exit"
VERIFY_FAILED = "verify-failed"  # exit 3: ``compile --verify`` measured a mismatch vs the reference
HALF_WRITTEN = "half-written"  # a failed compile left its -o folder, or the next run could not clean up after it
WRONG = "wrong-result"  # exit 0 with totals other than the unmutated model's (a rename changed the cost)
GOOD = (OK, REFUSED)
CLASSES = (
    OK, REFUSED, ACCEPTED_INVALID, WRONG, VERIFY_FAILED, INTERNAL, MULTILINE, TRACEBACK, MEMORY, SIGNAL, TIMEOUT,
    OTHER_EXIT, HALF_WRITTEN,
)  # fmt: skip

MEMORY_MARKS = ("MemoryError", "Unable to allocate", "bad_alloc", "Cannot allocate memory", "out of memory")


@dataclass
class Outcome:
    """How one mutant ended."""

    mutant: Mutant
    command: str
    cls: str
    code: int | None
    seconds: float
    max_rss_mb: float
    stderr: str = field(repr=False, default="")
    stdout: str = field(repr=False, default="")

    def totals(self) -> dict | None:
        """``inspect --json``'s totals, when it printed them."""
        import json

        try:
            return json.loads(self.stdout)["totals"]
        except (ValueError, KeyError, TypeError):
            return None

    def line(self) -> str:
        err = self.stderr.strip().splitlines()
        first = err[0][:160] if err else ""
        return f"{self.cls:17s} {self.command:8s} {self.mutant.family:10s} {self.mutant.label[:60]:60s} {first}"


def classify(code: int | None, signum: int | None, stderr: str, expect: str, timed_out: bool, rss_mb: float,
             mem_mb: int) -> str:  # fmt: skip
    """The outcome class of one run (``expect``: 'refuse' when exit 0 would be wrong)."""
    if timed_out:
        return TIMEOUT
    if any(m in stderr for m in MEMORY_MARKS) or rss_mb > mem_mb:
        return MEMORY
    if "Traceback (most recent call last)" in stderr:
        return TRACEBACK
    if signum is not None:
        return SIGNAL
    if code == 0:
        return ACCEPTED_INVALID if expect == "refuse" else OK
    if code == 2:
        lines = stderr.strip("\n").split("\n")
        return REFUSED if len(lines) == 1 and lines[0].startswith("codesign: error: ") else MULTILINE
    if code == 1:
        return INTERNAL
    if code == 3:
        return VERIFY_FAILED
    return OTHER_EXIT


#: What a child of each command imports (and its ``--verify`` runs): ``compile`` preloads every backend's.
PRELOAD: dict[str, tuple[str, ...]] = {
    "compile-hls4ml": ("codesign.backends.compile", "codesign.backends.hls4ml_backend", "codesign.backends.verify",
                       "hls4ml"),
    "compile-rtl": ("codesign.backends.compile", "codesign.backends.rtl_backend", "codesign.backends.verify", "da4ml"),
    "compile-finn": ("codesign.backends.compile", "codesign.backends.finn_backend", "codesign.backends.verify",
                     "codesign.backends.verdict", "codesign.backends.segments", "onnxruntime", "qonnx.core.onnx_exec"),
}  # fmt: skip


def preload(commands: set[str]) -> None:
    """Import in the parent what every child needs, so forks start warm (``compile-<backend>``: one backend's)."""
    import codesign.cli
    import codesign.frontends
    import codesign.passes.cost  # noqa: F401

    mods = [mod for cmd, names in PRELOAD.items() if cmd in commands for mod in names]
    if "compile" in commands:  # every backend
        mods += [mod for cmd, names in PRELOAD.items() if cmd.startswith("compile-") for mod in names]
    for mod in dict.fromkeys(mods):
        try:
            __import__(mod)
        except Exception:
            pass


def _child(argv: list[str], cwd: Path, out: Path, err: Path, mem_mb: int) -> None:
    """In the forked child: cap memory, redirect fds, run the CLI, exit with its code (never returns)."""
    code = 70
    try:
        os.setsid()
        try:  # die with the parent (a killed benchmark leaves no children behind)
            import ctypes

            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        resource.setrlimit(resource.RLIMIT_AS, (mem_mb << 20, mem_mb << 20))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        for fd, path in ((1, out), (2, err)):
            f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(f, fd)
            os.close(f)
        os.chdir(cwd)
        import sys

        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False)
        from codesign.cli import app

        try:
            app(argv, prog_name="codesign", standalone_mode=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            import sys

            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


@dataclass
class _Running:
    """A forked child and what is needed to classify it."""

    mutant: Mutant
    command: list[str]
    workdir: Path
    pid: int
    t0: float
    timeout: float
    mem_mb: int


def _spawn(mutant: Mutant, command: list[str], workdir: Path, timeout: float, mem_mb: int) -> _Running:
    model = mutant.write(workdir)
    argv = [command[0], str(model), *[a.replace("{out}", str(workdir / "out")) for a in command[1:]]]
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(argv, workdir, workdir / ".stdout", workdir / ".stderr", mem_mb)
    return _Running(mutant, command, workdir, pid, t0, timeout, mem_mb)


def _poll(r: _Running, block: bool = False) -> Outcome | None:
    """The outcome once ``r`` ended (killing it past its timeout), else None."""
    timed_out = False
    got, status, usage = os.wait4(r.pid, 0 if block else os.WNOHANG)
    if not got:
        if time.monotonic() - r.t0 <= r.timeout:
            return None
        timed_out = True
        try:
            os.killpg(r.pid, signal.SIGKILL)  # the child and anything it started (g++, iverilog)
        except ProcessLookupError:
            pass
        _, status, usage = os.wait4(r.pid, 0)
    seconds = time.monotonic() - r.t0
    try:
        os.killpg(r.pid, signal.SIGKILL)  # leftovers of a finished child
    except (ProcessLookupError, PermissionError):
        pass
    out, err = r.workdir / ".stdout", r.workdir / ".stderr"
    stderr = err.read_text(errors="replace") if err.exists() else ""
    code = os.waitstatus_to_exitcode(status)
    signum = -code if code < 0 else None
    rss_mb = usage.ru_maxrss / 1024
    cls = classify(None if signum else code, signum, stderr, r.mutant.expect, timed_out, rss_mb, r.mem_mb)
    stdout = out.read_text(errors="replace")[:1_000_000] if out.exists() else ""
    # exit 3 (--verify failed) writes the project too, by design: the verdict is in its codesign.json
    if any("{out}" in a for a in r.command) and not _output_whole(r.workdir / "out", code in (0, 3)):
        cls = HALF_WRITTEN
    return Outcome(r.mutant, r.command[0], cls, code, seconds, rss_mb, stderr, stdout)


def _output_whole(dest: Path, succeeded: bool) -> bool:
    """A compile's -o folder is there (with its manifest) iff it succeeded; what a killed one left, the next
    run's clean-up removes."""
    from codesign.backends.output import clean_stale

    if succeeded != (dest / "codesign.json").is_file() or (not succeeded and dest.exists()):
        return False
    clean_stale(dest)  # what the next run into this folder does first
    return not [p for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}.")]


def run_one(mutant: Mutant, command: list[str], workdir: Path, timeout: float = 60.0, mem_mb: int = 4096) -> Outcome:
    """Write ``mutant`` into ``workdir``, run ``codesign COMMAND... MODEL`` on it capped, and classify."""
    r = _spawn(mutant, command, workdir, timeout, mem_mb)
    while (o := _poll(r)) is None:
        time.sleep(0.01)
    return o


def run_all(mutants: list[Mutant], command: list[str], timeout: float = 60.0, mem_mb: int = 4096,
            progress: bool = False, jobs: int = 1) -> list[Outcome]:  # fmt: skip
    """Run every mutant in its own temp folder, ``jobs`` at a time; outcomes in the mutants' order."""
    for m in mutants:
        if m.expect == "same" and "--json" in command and (m.base, tuple(command)) not in _REFS:
            _REFS[m.base, tuple(command)] = _reference(m, command, timeout, mem_mb)
    refs = {base: ref for (base, cmd), ref in _REFS.items() if cmd == tuple(command)}
    outcomes: dict[int, Outcome] = {}
    running: dict[int, tuple[_Running, tempfile.TemporaryDirectory]] = {}
    todo = list(enumerate(mutants))[::-1]
    t0 = time.monotonic()
    while todo or running:
        while todo and len(running) < max(1, jobs):
            i, m = todo.pop()
            d = tempfile.TemporaryDirectory(prefix="codesign-fuzz-")
            running[i] = (_spawn(m, command, Path(d.name), timeout, mem_mb), d)
        for i, (r, d) in list(running.items()):
            o = _poll(r)
            if o is None:
                continue
            d.cleanup()
            del running[i]
            ref = refs.get(o.mutant.base)
            if o.cls == OK and o.mutant.expect == "same" and ref is not None and o.totals() != ref:
                o.cls = WRONG
            outcomes[i] = o
            if progress and len(outcomes) % 50 == 0:
                bad = sum(x.cls not in GOOD for x in outcomes.values())
                print(f"  {command[0]}: {len(outcomes)}/{len(mutants)} mutants, {bad} bad, "
                      f"{time.monotonic() - t0:.0f} s", flush=True)  # fmt: skip
        time.sleep(0.01)
    return [outcomes[i] for i in range(len(mutants))]


def _reference(m: Mutant, command: list[str], timeout: float, mem_mb: int) -> dict | None:
    """The unmutated model's totals (None when it is not registered or is itself refused)."""
    base = _BASES.get(m.base)
    if base is None:
        return None
    with tempfile.TemporaryDirectory(prefix="codesign-fuzz-") as d:
        o = run_one(base, command, Path(d), timeout, mem_mb)
    return o.totals() if o.cls == OK else None


#: The unmutated models' totals, by (base label, command).
_REFS: dict[tuple[str, tuple[str, ...]], dict | None] = {}

#: Unmutated models by base label, registered by whoever generates mutants (fuzz.mutators.base_mutant).
_BASES: dict[str, Mutant] = {}


def register_bases(bases: list[Mutant]) -> None:
    """Tell run_all the unmutated models that ``same`` mutants are compared with."""
    _BASES.update({b.base: b for b in bases})


def tally(outcomes: list[Outcome]) -> Counter:
    """Counts per (family, class)."""
    return Counter((o.mutant.family, o.cls) for o in outcomes)


__all__ = ["CLASSES", "GOOD", "Outcome", "classify", "preload", "register_bases", "run_all", "run_one", "tally"]
