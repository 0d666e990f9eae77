"""One status line on stderr for steps that take seconds (lowering, type search, g++, C-simulation).

Shown only when stderr is a terminal (rich's transient status); pipes and tests see nothing,
so a refusal stays one line.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def step(message: str) -> Iterator[None]:
    """``with step("building the C-simulation (g++)"):`` shows a spinner and the message while it runs."""
    if not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(f"[bold]{message}[/] ...", spinner="dots"):
        yield


__all__ = ["step"]
