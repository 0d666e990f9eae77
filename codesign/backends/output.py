"""Output folders that appear whole or not at all.

A backend writes into a temporary sibling of the destination; only when everything is
written does it replace the destination (one atomic exchange where the filesystem can,
else two renames), so a crash, a refused model or Ctrl-C never leaves a half-written
project where a user (or a previous good build) expects one. Hidden siblings carry their
owner's pid: the next run removes those of dead owners, and puts back a previous build
that a kill left hidden between the two renames of ``--force``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from codesign.errors import OutputError

#: Hidden siblings: ``.NAME.tmp-PID-XXXX`` (a build being written), ``.NAME.old-PID-XXXX/NAME``
#: (the previous build, between the two renames of ``--force``).
TMP, OLD = "tmp", "old"


def _sibling_prefix(dest: Path, kind: str) -> str:
    return f".{dest.name}.{kind}-{os.getpid()}-"


def _start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), from /proc; None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat[stat.rindex(")") + 2 :].split()[19])  # field 22: start time in clock ticks after boot
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime "))  # fmt: skip
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


#: This run's start: a hidden sibling without an owner pid (an older codesign's) is stale when older.
_RUN_STARTED = time.time()


def _owner_alive(path: Path) -> bool:
    """Whether the process named in ``.NAME.KIND-PID-XXXX`` still runs and is older than ``path``."""
    try:
        mtime = path.lstat().st_mtime
    except OSError:
        return True  # gone already, or not ours to judge
    try:
        pid = int(path.name.rsplit(".", 1)[-1].split("-")[1])
    except (IndexError, ValueError):
        return mtime >= _RUN_STARTED  # no pid in the name: stale once older than this run
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's
    started = _start_time(pid)  # a pid reused by a process younger than the folder does not own it
    return started is None or started <= mtime + 1.0


def clean_stale(dest: Path) -> list[Path]:
    """Remove the hidden siblings of ``dest`` that dead runs left; put back a hidden previous build.

    Returns what was removed or restored. Siblings of live runs are left alone.
    """
    done: list[Path] = []
    try:
        siblings = sorted(dest.parent.glob(f".{glob_escape(dest.name)}.*-*"))
    except OSError:
        return done
    for path in siblings:
        kind = path.name[len(dest.name) + 2 :].split("-", 1)[0]
        if kind not in (TMP, OLD) or not path.is_dir() or path.is_symlink() or _owner_alive(path):
            continue
        hidden = path / dest.name
        if kind == OLD and hidden.is_dir() and not os.path.lexists(dest):
            try:
                os.replace(hidden, dest)  # a kill between the two renames of --force: the good build returns
            except OSError:
                continue
        shutil.rmtree(path, ignore_errors=True)
        done.append(path)
    return done


def glob_escape(name: str) -> str:
    """``name`` with glob metacharacters made literal."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _holds(folder: Path, path: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (symlinks resolved)."""
    try:
        folder, path = folder.resolve(), path.resolve()
    except OSError:
        return False
    return path == folder or folder in path.parents


def _cwd() -> Path | None:
    try:
        return Path.cwd()
    except OSError:  # the current folder was deleted under us
        return None


def check_destination(dest: Path, force: bool, keep: Path | None = None) -> None:
    """Refuse an existing destination without ``force``, one that is not a folder, or one holding ``keep``.

    ``keep`` is the input model: ``-o . --force`` must not delete the model being compiled.
    """
    dest = Path(dest).absolute()
    clean_stale(dest)
    if dest.exists() or dest.is_symlink():
        if not dest.is_dir() or dest.is_symlink():
            raise OutputError(f"output {dest} exists and is not a folder; choose another -o")
        if not force:
            raise OutputError(f"output folder {dest} already exists; pass --force to replace it")
        for protected, what in ((keep, "the input model"), (_cwd(), "the current folder")):
            if protected is not None and _holds(dest, Path(protected)):
                raise OutputError(f"--force would delete {dest}, which holds {what} ({protected}); choose another -o")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_output_dir(dest: str | Path, force: bool = False, keep: Path | None = None) -> Iterator[Path]:
    """Yield an empty temp folder; on success it replaces ``dest`` at once (``keep``: see check_destination)."""
    dest = Path(dest).absolute()
    check_destination(dest, force, keep)
    parent = dest.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=_sibling_prefix(dest, TMP), dir=parent))
    except OSError as exc:
        raise OutputError(f"cannot write {dest}: {exc.strerror or exc}") from None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        _move_into_place(tmp, dest, force, keep)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # after an exchange it holds the previous build


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2); False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EXDEV, errno.EPERM, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err))


def _move_into_place(tmp: Path, dest: Path, force: bool, keep: Path | None = None) -> None:
    old: Path | None = None
    try:
        if not dest.exists():
            os.replace(tmp, dest)
            return
        check_destination(dest, force, keep)  # it may have appeared meanwhile
        if _exchange(tmp, dest):
            return  # tmp now holds the previous build; the caller removes it
        old = Path(tempfile.mkdtemp(prefix=_sibling_prefix(dest, OLD), dir=dest.parent))
        os.replace(dest, old / dest.name)
        os.replace(tmp, dest)  # a kill before this line: clean_stale puts old/NAME back next time
    except OSError as exc:
        if old is not None and (old / dest.name).exists() and not dest.exists():
            os.replace(old / dest.name, dest)  # put the previous build back
        raise OutputError(f"cannot move output into {dest}: {exc.strerror or exc}") from None
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


__all__ = ["atomic_output_dir", "check_destination", "clean_stale"]
