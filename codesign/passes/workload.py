"""What one sample of a model costs to run (MACs, activation bytes), and how many samples fit a budget.

Every step that runs a model on many samples (calibration, the precision search, the
reference, the C-simulation) sizes its sample count and batches from these numbers, so a
big spatial network (a 128x128 super-resolution net: 1 GMAC and 30 MB of activations per
sample) gets fewer samples and smaller batches instead of a MemoryError or an hour's run.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from codesign.errors import CodesignError
from codesign.ir.model import Model

#: Bytes the activations of one batch may take (all of a run's live tensors); ``CODESIGN_BATCH_MEMORY_GB``.
DEFAULT_BATCH_MEMORY_GB = 1.0
#: MACs one evaluation of the calibration set may cost (samples are cut to fit, never below MIN_SAMPLES).
EVAL_MACS = 1e10
#: MACs the whole precision search may cost (its evaluations are cut to fit, never below MIN_EVALUATIONS).
SEARCH_MACS = 1.5e11
MIN_SAMPLES = 4
MIN_EVALUATIONS = 4


@dataclass(frozen=True)
class SampleCost:
    """One sample's work and memory: dense MACs and the bytes of every dynamic tensor (float32)."""

    macs: float
    activation_bytes: int
    largest_tensor: str = ""
    largest_bytes: int = 0


def sample_cost(model: Model) -> SampleCost:
    """MACs (before sparsity: every backend's simulation multiplies zeros too) and activation bytes per sample."""
    from codesign.passes.cost import dense_macs

    total, largest, largest_bytes = 0, "", 0
    seen = set(model.inputs)
    names = list(model.inputs) + [o for n in model.graph.node for o in n.output if o and o not in seen]
    for name in dict.fromkeys(names):
        shape = model.shape(name)
        if shape is None or (name not in model.inputs and model.constant(name) is not None):
            continue
        size = 4 * math.prod(shape[1:])
        total += size
        if size > largest_bytes:
            largest, largest_bytes = name, size
    return SampleCost(dense_macs(model), total, largest, largest_bytes)


def env_number(name: str, value: float | None, default: float, unit: str) -> float:
    """``value``, else the environment variable ``name``, else ``default``; refused unless > 0."""
    if value is None:
        env = os.environ.get(name)
        try:
            value = float(env) if env else default
        except ValueError:
            raise CodesignError(f"{name}={env!r}: expected a number of {unit}") from None
    if not value > 0:
        raise CodesignError(f"{name} must be > 0 {unit}, got {value}")
    return float(value)


def batch_memory_bytes() -> int:
    """The activation budget of one batch: ``CODESIGN_BATCH_MEMORY_GB`` or :data:`DEFAULT_BATCH_MEMORY_GB`."""
    return int(env_number("CODESIGN_BATCH_MEMORY_GB", None, DEFAULT_BATCH_MEMORY_GB, "GiB") * (1 << 30))


def batch_size(model: Model, requested: int, copies: float = 3.0) -> int:
    """The largest batch <= ``requested`` whose activations (times ``copies``: outputs, casts) fit the budget."""
    per = max(1, sample_cost(model).activation_bytes) * copies
    return int(max(1, min(requested, batch_memory_bytes() // per)))


def samples_within(requested: int, cost_per_sample: float, budget: float, minimum: int = 1) -> int:
    """``requested`` cut so that ``samples * cost_per_sample <= budget`` (never below ``minimum``)."""
    if cost_per_sample <= 0:
        return requested
    return int(max(min(minimum, requested), min(requested, budget // cost_per_sample)))


__all__ = ["SampleCost", "batch_memory_bytes", "batch_size", "env_number", "sample_cost", "samples_within"]
