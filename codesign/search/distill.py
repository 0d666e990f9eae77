"""Knowledge distillation for the local stage: the candidate's trained float twin teaches its
quantized / pruned students (Hinton et al. 2015, soft targets at temperature T).

Student loss = (1 - alpha) * CE(student, y) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)).
The T^2 factor keeps the soft-target gradients on the scale of the hard-label ones as T grows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class DistillError(ValueError):
    """Bad ``local.distill`` settings (turned into a one-line LocalSearchError by LocalSpec)."""


@dataclass(frozen=True)
class DistillSpec:
    """``local.distill``: ``{alpha: 0.5, temperature: 2.0}`` (``true`` = these defaults, the better
    of the two settings measured on MAGIC by benchmarks/distillation.py; see docs/pipeline.md)."""

    alpha: float = 0.5
    temperature: float = 2.0

    @classmethod
    def parse(cls, value: Any) -> DistillSpec | None:
        """``None``/``false`` -> off, ``true`` -> defaults, a mapping -> validated settings."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, DistillSpec):
            return value
        if not isinstance(value, dict):
            raise DistillError("must be true, false or a mapping {alpha, temperature}")
        bad = sorted(set(value) - {"alpha", "temperature"})
        if bad:
            raise DistillError(f"{bad[0]}: unknown key (known: alpha, temperature)")
        try:
            spec = cls(**{k: float(v) for k, v in value.items()})
        except (TypeError, ValueError):
            raise DistillError("alpha and temperature must be numbers") from None
        if not 0.0 < spec.alpha <= 1.0:
            raise DistillError(f"alpha must be in (0, 1], not {spec.alpha:g}")
        if not spec.temperature > 0.0:
            raise DistillError(f"temperature must be > 0, not {spec.temperature:g}")
        return spec


def kd_loss(student: Any, teacher: Any, y: Any, alpha: float, temperature: float) -> Any:
    """(1 - alpha) * CE(student, y) + alpha * T^2 * KL(p_teacher || p_student), batch mean.

    With ``alpha == 0`` this is exactly ``F.cross_entropy(student, y)``.
    """
    import torch.nn.functional as F

    ce = F.cross_entropy(student, y)
    if alpha == 0.0:
        return ce
    t = float(temperature)
    kl = F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1), reduction="batchmean",
                  log_target=True)  # fmt: skip
    return (1.0 - alpha) * ce + alpha * t * t * kl


@dataclass
class Teacher:
    """Precomputed teacher logits for every training row (the train set is fixed, so computing
    them once in eval mode equals a per-batch no_grad forward, at a fraction of the cost)."""

    logits: Any  # torch.Tensor [n_train, n_classes]
    spec: DistillSpec
    accuracy: float

    def loss(self, student: Any, y: Any, idx: Any) -> Any:
        return kd_loss(student, self.logits[idx], y, self.spec.alpha, self.spec.temperature)


def teacher_logits(net: Any, x: Any, batch: int = 4096) -> Any:
    """The float teacher's logits on ``x`` (eval mode: no dropout, running norm statistics)."""
    import torch

    net.eval()
    with torch.no_grad():
        out = [net(x[i : i + batch]) for i in range(0, len(x), batch)]
    return torch.cat([o.value if hasattr(o, "value") else o for o in out]).detach()


def teacher_hparams(choices: dict[str, list[Any]]) -> dict[str, Any]:
    """Training settings of the teacher (it is trained before TPE, whose trials it teaches):
    the most epochs, no extra regularisation (smallest l1 / dropout), the smallest batch and
    the median learning rate of the local lists."""
    lrs = sorted(choices["learning_rate"])
    return {
        "learning_rate": lrs[len(lrs) // 2], "batch_size": min(choices["batch_size"]), "l1": min(choices["l1"]),
        "dropout": min(choices["dropout"]), "epochs": max(choices["epochs"]),
    }  # fmt: skip
