"""Names that are safe to carry into generated code (C++, Tcl, Verilog, file names).

ONNX allows any string as a node or tensor name. A name like ``x"; system("rm -rf ~``
must never reach a generated file, so the IR keeps only names made of a conservative
character set, and backends derive identifiers with :func:`c_identifier`.
"""

from __future__ import annotations

import hashlib
import re

#: Longest node/tensor name kept (generated HLS and Verilog identifiers derive from them).
MAX_NAME = 200
_SAFE = re.compile(r"^[A-Za-z0-9_.:/\-]+$")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9_.:/\-]")
_NON_IDENT = re.compile(r"[^A-Za-z0-9_]")


def is_safe_name(name: str) -> bool:
    """A name the IR keeps as the user wrote it."""
    return bool(_SAFE.match(name)) and len(name) <= MAX_NAME


def safe_name(name: str, fallback: str = "t") -> str:
    """Replace every character outside ``[A-Za-z0-9_.:/-]`` with ``_`` (never empty)."""
    cleaned = _UNSAFE_CHARS.sub("_", name)[:MAX_NAME]
    return cleaned if cleaned.strip("_") else fallback


def c_identifier(name: str, prefix: str = "n") -> str:
    """A valid C/C++/Verilog identifier derived from ``name``."""
    ident = _NON_IDENT.sub("_", name)
    if not ident or not (ident[0].isalpha() or ident[0] == "_"):
        ident = f"{prefix}_{ident}"
    return ident


def shorten(name: str) -> str:
    """``name`` if short enough, else its head and a hash of all of it, :data:`MAX_NAME` characters.

    Cutting the tail alone made ``<long>_scale`` and ``<long>_zero`` one name: two fresh names taken
    before either entered the graph collided, and a weight was overwritten by a scale (fuzz, seed 13).
    """
    if len(name) <= MAX_NAME:
        return name
    return f"{name[: MAX_NAME - 9]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def uniquify(name: str, taken: set[str]) -> str:
    """``name`` if free, else ``name_1``, ``name_2``...; records the result in ``taken``.

    At most :data:`MAX_NAME` characters: a suffix replaces the tail of a long name (tf2onnx writes
    names of several hundred characters; a cut one plus ``_1`` was no longer a safe name).
    """
    base = shorten(name)
    candidate, k = base, 0
    while candidate in taken:
        k += 1
        suffix = f"_{k}"
        candidate = f"{base[: MAX_NAME - len(suffix)]}{suffix}"
    taken.add(candidate)
    return candidate
