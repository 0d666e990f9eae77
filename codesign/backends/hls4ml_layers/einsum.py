"""MatMul of two computed tensors (attention's ``q @ k^T``, ``attn @ v``) -> hls4ml's two-input Einsum.

hls4ml's Dense needs a constant weight; its ``Einsum`` layer (``nnet_einsum.h``, io_parallel and
the Latency strategy only) multiplies two variables. The equation follows ONNX MatMul's numpy
semantics (batched over leading axes, size-1 batch axes broadcast). Size-1 axes are left out of
the equation: that keeps row-major data order, and a broadcast axis then simply belongs to one
operand (an Einsum letter of one input and the output), which hls4ml's recipe supports.
"""

from __future__ import annotations

import string

import onnx

from codesign.backends.hls4ml_layers.base import Context, Layer, LayerRefused

#: hls4ml's template asserts ``strategy == latency`` for Einsum (``backends/vivado/passes/einsum.py``).
EINSUM_STRATEGY = "Latency"


def matmul_equation(a: list[int], b: list[int]) -> tuple[str, tuple[int, ...], tuple[int, ...]]:
    """(einsum equation, operand shapes) of ONNX ``MatMul(a, b)`` over full shapes, size-1 axes dropped.

    Raises ``ValueError`` naming the shapes when they do not multiply (ONNX's broadcasting rules).
    """
    a2 = list(a) if len(a) >= 2 else [1, *a]  # ONNX: a 1-D left operand is a row, a 1-D right one a column
    b2 = list(b) if len(b) >= 2 else [*b, 1]
    if a2[-1] != b2[-2]:
        raise ValueError(f"inner dimensions differ ({a} @ {b})")
    nb = max(len(a2), len(b2)) - 2
    letters = iter(string.ascii_letters)
    batch = [next(letters) for _ in range(nb)]
    m, k, n = next(letters), next(letters), next(letters)
    ax_a = [*batch[nb - (len(a2) - 2) :], m, k]
    ax_b = [*batch[nb - (len(b2) - 2) :], k, n]
    size: dict[str, int] = {}
    for axes, shape in ((ax_a, a2), (ax_b, b2)):
        for ax, d in zip(axes, shape, strict=True):
            if size.get(ax, 1) not in (1, d) and d != 1:
                raise ValueError(f"batch dimensions do not broadcast ({a} @ {b})")
            size[ax] = max(size.get(ax, 1), int(d))
    kept_a = [(x, d) for x, d in zip(ax_a, a2, strict=True) if d != 1]
    kept_b = [(x, d) for x, d in zip(ax_b, b2, strict=True) if d != 1]
    out = [x for x in (*batch, m, n) if size[x] != 1]
    if not kept_a or not kept_b:
        raise ValueError(f"an operand holds a single element ({a} @ {b}): a scalar product, not a matrix one")
    eq = f"{''.join(x for x, _ in kept_a)},{''.join(x for x, _ in kept_b)}->{''.join(out)}"
    return eq, tuple(d for _, d in kept_a), tuple(d for _, d in kept_b)


def activation_matmul(ctx: Context, node: onnx.NodeProto) -> list[Layer]:
    """``MatMul(A, B)``, both computed -> one Einsum layer (types: the exact accumulator of ``precision.derive``)."""
    if ctx.io == "stream":
        raise LayerRefused(node, "a product of two computed tensors has no io_stream layer (hls4ml's Einsum is "
                                 "io_parallel only)")  # fmt: skip
    a, b = (ctx.model.shape(t) for t in node.input)
    if a is None or b is None:
        raise LayerRefused(node, "operands without static shapes")
    try:
        eq, a_shape, b_shape = matmul_equation([int(d) for d in a], [int(d) for d in b])
    except ValueError as exc:
        raise LayerRefused(node, str(exc)) from None
    out_shape = tuple(ctx.shape(node.output[0])) or (1,)
    types = ctx.types(node.name)
    if types:
        ctx.set_precision(node.name, **types)
    ctx.config.setdefault(node.name, {})["Strategy"] = EINSUM_STRATEGY
    return [ctx.base(node, "Einsum", inputs=list(node.input), equation=eq, inp0_shape=a_shape, inp1_shape=b_shape,
                     out_shape=out_shape)]  # fmt: skip


__all__ = ["EINSUM_STRATEGY", "activation_matmul", "matmul_equation"]
