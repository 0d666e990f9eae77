"""The FPGA target catalogue: part names, resources and defaults per board or device.

One data file (``targets.json``, vendor data-sheet numbers) serves ``codesign targets``,
the backends (part, board, clock) and the resource estimators (budgets), so that a
device's numbers are written down exactly once.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codesign.errors import CodesignError

CATALOGUE = Path(__file__).with_name("targets.json")
RESOURCE_KEYS = ("LUT", "FF", "DSP", "BRAM_18K", "URAM")


class UnknownTargetError(CodesignError):
    """The --target name is neither a catalogue entry nor a known part."""


@dataclass(frozen=True)
class Target:
    """One FPGA target: a bare device or a board carrying one."""

    name: str
    part: str
    family: str
    kind: str
    resources: dict[str, int]
    default_clock_ns: float
    backends: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    hls4ml_board: str | None = None
    finn_board: str | None = None
    shell_flow_type: str | None = None
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> str:
        """The die without package/speed grade (``xcvu13p``)."""
        return self.part.split("-")[0].lower()

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["backends"] = list(self.backends)
        d["aliases"] = list(self.aliases)
        d.pop("extra")
        return d


@functools.lru_cache(maxsize=1)
def catalogue() -> dict[str, Target]:
    """All catalogue targets by canonical name, in file order."""
    raw = json.loads(CATALOGUE.read_text())
    out: dict[str, Target] = {}
    for name, entry in raw.items():
        if name.startswith("_"):
            continue
        known = {f.name for f in dataclasses.fields(Target)} - {"name", "extra"}
        kwargs = {k: v for k, v in entry.items() if k in known}
        kwargs["backends"] = tuple(kwargs.get("backends", ()))
        kwargs["aliases"] = tuple(kwargs.get("aliases", ()))
        extra = {k: v for k, v in entry.items() if k not in known}
        out[name] = Target(name=name, extra=extra, **kwargs)
    return out


def _norm(s: str) -> str:
    return s.strip().lower().replace("_", "-")


def get_target(name: str) -> Target:
    """Resolve a catalogue name, an alias, or a full part name to a :class:`Target`.

    A part of a catalogued die in another package or speed grade (``xcvu13p-fhga2104-3-e``)
    keeps that die's resources and uses the given part string.
    """
    key = _norm(name)
    targets = catalogue()
    for t in targets.values():
        if key == _norm(t.name) or key == _norm(t.part) or key in {_norm(a) for a in t.aliases}:
            return t
    for t in targets.values():
        if key.startswith("xc") and key.split("-")[0] == t.device and "-" in key:
            return dataclasses.replace(t, name=name.strip().lower(), part=name.strip(), hls4ml_board=None, finn_board=None,
                                       shell_flow_type=None, kind="device")  # fmt: skip
    raise UnknownTargetError(
        f"unknown target {name!r}; known: {', '.join(targets)} (or a full part name of one of them)"
    )


def list_targets() -> list[Target]:
    return list(catalogue().values())


__all__ = ["RESOURCE_KEYS", "Target", "UnknownTargetError", "catalogue", "get_target", "list_targets"]
