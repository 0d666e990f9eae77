"""The pass contract: ``Pass.call(model) -> PassResult(model, modified)``.

Modelled on onnx-ir's pass infrastructure, and interoperable with qonnx both ways:

* a qonnx ``Transformation`` becomes a codesign pass with :func:`as_pass`
  (``model.transform(GemmToMatMul())`` just works);
* a codesign pass is usable inside a qonnx/FINN flow with ``ModelWrapper.transform(
  pass_.as_qonnx())``, or called directly on a ``ModelWrapper`` or ``ModelProto``.

A pass never mutates the model it was given: the base class hands ``call`` a private
copy (``in_place = True`` opts out, for passes that only read). Analysis passes return
``modified=False`` and put what they computed in ``PassResult.info``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import onnx
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation

from codesign.ir.model import Model


@dataclass(frozen=True)
class PassResult:
    """What a pass returns: the (new) model, whether it changed, and optional info."""

    model: Model
    modified: bool
    info: Any = None


class Pass(abc.ABC):
    """Base class of every codesign pass."""

    #: True for passes that never mutate (analyses): they skip the defensive copy.
    in_place: bool = False

    @property
    def name(self) -> str:
        return type(self).__name__

    @abc.abstractmethod
    def call(self, model: Model) -> PassResult:
        """Do the work on ``model`` (already a private copy unless ``in_place``)."""

    def __call__(self, model: Model | ModelWrapper | onnx.ModelProto) -> PassResult:
        if not isinstance(model, Model):
            model = Model(model)
        work = model if self.in_place else model.copy()
        result = self.call(work)
        if not isinstance(result, PassResult):
            raise TypeError(f"{self.name}.call returned {type(result).__name__}, expected PassResult")
        return result

    def as_qonnx(self) -> Transformation:
        """This pass as a qonnx ``Transformation`` (for ``ModelWrapper.transform``)."""
        return _QonnxAdapter(self)

    def __repr__(self) -> str:
        return f"{self.name}()"


class FunctionalPass(Pass):
    """A pass built from a plain function ``fn(model) -> bool`` that mutates its copy."""

    def __init__(self, fn: Any, name: str | None = None):
        self._fn = fn
        self._name = name or getattr(fn, "__name__", "FunctionalPass")

    @property
    def name(self) -> str:
        return self._name

    def call(self, model: Model) -> PassResult:
        modified = bool(self._fn(model))
        model.invalidate()
        return PassResult(model, modified)


class QonnxPass(Pass):
    """A qonnx ``Transformation`` run to its fixed point, as a codesign pass."""

    def __init__(self, transformation: Transformation, max_iterations: int = 100):
        self.transformation = transformation
        self.max_iterations = max_iterations

    @property
    def name(self) -> str:
        return type(self.transformation).__name__

    def call(self, model: Model) -> PassResult:
        # qonnx lets one-shot transformations report "unchanged" after changing the
        # model, so when no iteration claims a change the bytes decide.
        before = model.proto.SerializeToString(deterministic=True)
        wrapper, modified = model.wrapper, False
        for _ in range(self.max_iterations):
            wrapper, changed = self.transformation.apply(wrapper)
            if not changed:
                break
            modified = True
        if not modified:
            modified = wrapper.model.SerializeToString(deterministic=True) != before
        return PassResult(Model(wrapper), modified)


class Sequential(Pass):
    """Run passes in order; modified if any of them modified."""

    in_place = True  # each member copies for itself

    def __init__(self, *passes: Pass | Transformation):
        self.passes: list[Pass] = [as_pass(p) for p in passes]

    def call(self, model: Model) -> PassResult:
        modified = False
        for p in self.passes:
            result = p(model)
            model, modified = result.model, modified or result.modified
        return PassResult(model, modified)

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(map(repr, self.passes))})"


class PassManager(Sequential):
    """Sequential passes repeated until nothing changes, validating between steps."""

    def __init__(self, passes: Sequence[Pass | Transformation], *, steps: int = 1, check: bool = False):
        super().__init__(*passes)
        self.steps = steps
        self.check = check

    def call(self, model: Model) -> PassResult:
        modified = False
        for _ in range(self.steps):
            step_modified = False
            for p in self.passes:
                result = p(model)
                model = result.model
                step_modified = step_modified or result.modified
                if self.check:
                    model.validate()
            modified = modified or step_modified
            if not step_modified:
                break
        return PassResult(model, modified)


class _QonnxAdapter(Transformation):
    """Wraps a codesign pass so qonnx's ``ModelWrapper.transform`` can run it."""

    def __init__(self, pass_: Pass):
        super().__init__()
        self.pass_ = pass_

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        result = self.pass_(Model(model))
        # The pass already ran to completion: report "unchanged" so qonnx stops.
        return result.model.wrapper, False


def as_pass(step: Pass | Transformation | Any) -> Pass:
    """Accept a codesign pass, a qonnx Transformation, or a function ``fn(model)->bool``."""
    if isinstance(step, Pass):
        return step
    if isinstance(step, Transformation):
        return QonnxPass(step)
    if callable(step):
        return FunctionalPass(step)
    raise TypeError(f"not a pass: {step!r}")
