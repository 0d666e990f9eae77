"""Output folders that appear whole or not at all.

A backend writes into a temporary sibling of the destination; only when everything is
written does one rename put it in place, so a crash, a refused model or Ctrl-C never
leaves a half-written project where a user (or a previous good build) expects one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from codesign.errors import OutputError


def check_destination(dest: Path, force: bool) -> None:
    """Refuse an existing destination without ``force``, or one that is not a folder."""
    if dest.exists() or dest.is_symlink():
        if not dest.is_dir() or dest.is_symlink():
            raise OutputError(f"output {dest} exists and is not a folder; choose another -o")
        if not force:
            raise OutputError(f"output folder {dest} already exists; pass --force to replace it")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_output_dir(dest: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield an empty temp folder; on success it replaces ``dest`` in one rename."""
    dest = Path(dest).absolute()
    check_destination(dest, force)
    parent = dest.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=parent))
    except OSError as exc:
        raise OutputError(f"cannot write {dest}: {exc.strerror or exc}") from None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        _move_into_place(tmp, dest, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _move_into_place(tmp: Path, dest: Path, force: bool) -> None:
    old: Path | None = None
    try:
        if dest.exists():
            check_destination(dest, force)  # it may have appeared meanwhile
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            os.replace(dest, old / dest.name)
        os.replace(tmp, dest)
    except OSError as exc:
        if old is not None and (old / dest.name).exists() and not dest.exists():
            os.replace(old / dest.name, dest)  # put the previous build back
        raise OutputError(f"cannot move output into {dest}: {exc.strerror or exc}") from None
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


__all__ = ["atomic_output_dir", "check_destination"]
