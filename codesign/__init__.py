"""codesign: hardware-aware neural-network codesign for FPGAs on one QONNX IR."""

__version__ = "0.1.0"


def load(source, **options):
    """Load any ONNX/QONNX model into the IR (see :func:`codesign.frontends.load`)."""
    from codesign.frontends import load as _load

    return _load(source, **options)


def compile(model, target, backend="hls4ml", **options):
    """Compile a model for an FPGA target (see :func:`codesign.backends.api.compile`)."""
    from codesign.backends.api import compile as _compile

    return _compile(model, target, backend, **options)
