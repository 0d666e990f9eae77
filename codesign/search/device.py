"""Where the search trains: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``, resolved to one ``torch.device``.

Every trainer (population, per-candidate, DARTS supernet, local stage) takes the resolved device and
keeps its data there for the whole run; a multi-worker run pins one device per worker
(:func:`worker_device`), so N workers on a node with G GPUs share them round-robin.
"""

from __future__ import annotations

import re
from typing import Any

from codesign.errors import CodesignError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
_PATTERN = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")

#: the device a worker process was pinned to (set once per worker by :func:`pin`); None = not a worker
_PINNED: dict[str, Any] = {}


class DeviceError(CodesignError):
    """The requested device string is malformed or names a device this machine does not have."""


def check_device(spec: str) -> str:
    """Validate the syntax of a device string (no torch needed); returns it normalised."""
    text = str(spec).strip().lower()
    m = _PATTERN.match(text)
    if m is None or (m.group(2) is not None and m.group(1) != "cuda"):
        raise DeviceError(f"device {spec!r}: expected {DEVICE_CHOICES}")
    return text


def resolve_device(spec: str = "cpu") -> Any:
    """``torch.device`` for ``spec``: ``auto`` = the (pinned or first) CUDA device when present, else CPU;
    ``cuda``/``cuda:N`` need that GPU (one-line DeviceError otherwise)."""
    import torch

    text = check_device(spec)
    if text == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if text == "auto" and not available:
        return torch.device("cpu")
    if not available:
        raise DeviceError(
            f"device {spec!r}: no CUDA GPU is available here (torch {torch.__version__}); use --device cpu or auto"
        )
    if text in ("auto", "cuda"):
        return _PINNED.get("device") or torch.device("cuda", 0)
    index = int(text.split(":")[1])
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceError(f"device {spec!r}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index)


def worker_device(spec: str, worker: int) -> Any:
    """The device worker number ``worker`` of a multi-worker run uses: ``auto``/``cuda`` spread the
    workers round-robin over the visible GPUs; ``cpu`` and an explicit ``cuda:N`` are kept."""
    import torch

    text = check_device(spec)
    if text in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", worker % max(1, torch.cuda.device_count()))
    return resolve_device(text)


def pin(spec: str, worker: int) -> str:
    """Pin this (worker) process to :func:`worker_device`; later ``auto``/``cuda`` resolutions return it."""
    dev = worker_device(spec, worker)
    if dev.type == "cuda":
        _PINNED["device"] = dev
    return str(dev)


def describe(device: Any) -> str:
    """'cpu' or 'cuda:0 (NVIDIA H200)' for progress lines."""
    if getattr(device, "type", "cpu") != "cuda":
        return "cpu"
    import torch

    return f"{device} ({torch.cuda.get_device_name(device)})"
