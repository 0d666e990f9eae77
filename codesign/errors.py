"""Errors a user can act on: each carries a one-line message naming the problem.

The CLI prints ``str(err)`` on stderr and exits 2; no traceback reaches a user for these.
"""

from __future__ import annotations

#: Exit codes of the ``codesign`` command: user error (one line), internal error, failed ``--verify``.
EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_VERIFY_FAILED = 3


class CodesignError(Exception):
    """Base class of every error codesign reports to a user as one line."""


class ModelLoadError(CodesignError):
    """The file is missing, unreadable, not ONNX, too large, or unsafe."""


class UnsupportedModelError(CodesignError):
    """The model uses ops or shapes that codesign cannot express."""


class OnnxruntimeError(UnsupportedModelError):
    """onnxruntime rejected the graph or failed running it (a batched run may still work per sample)."""


class ValidationError(CodesignError):
    """The IR broke one of its invariants (a pass bug or a malformed model)."""


class OutputError(CodesignError):
    """An output path cannot be written."""
