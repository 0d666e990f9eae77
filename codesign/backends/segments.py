"""qonnx's reference semantics with one onnxruntime session per run of standard nodes.

qonnx's ``execute_onnx`` builds and runs an onnxruntime session for every standard node on
every call, and looks tensors up by scanning the graph: a 1,000-node chain took 1.7 s a call,
quadratic in node count. Here the graph is cut once into maximal runs of standard nodes, each
one session (graph optimisations off, so every node runs the kernel it runs alone), and the
QONNX custom ops between them run in qonnx (``execute_custom_node``). As in qonnx, tensors
annotated with an integer datatype are sanitised where they are produced (runs' outputs,
custom nodes' outputs) and where they enter (graph inputs and initializers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from codesign.backends.reference import ort_run, ort_session
from codesign.errors import UnsupportedModelError
from codesign.ir.model import Model

_STANDARD = ("", "ai.onnx")


@dataclass
class _Run:
    """A maximal run of standard nodes: one onnxruntime session."""

    session: Any
    inputs: list[str]
    outputs: list[str]


@dataclass
class _Custom:
    """A QONNX custom node, executed by qonnx."""

    node: onnx.NodeProto
    opset: int


def _sanitized(view: Any, names: list[str], context: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """qonnx's ``sanitize_quant_values``, its multi-line exception (a tensor's values off its integer datatype
    annotation, e.g. one a mutated attribute made wrong) one line naming the tensor."""
    from qonnx.util.basic import sanitize_quant_values

    try:
        return sanitize_quant_values(view, names, context)
    except Exception as exc:
        why = " ".join(str(exc).split())
        bad = next((n for n in names if why.endswith(f" {n}")), None)
        what = f"tensor {bad!r} ({view.get_tensor_datatype(bad).name})" if bad else "a tensor"
        raise UnsupportedModelError(
            f"reference execution: {what} holds values off its datatype annotation (qonnx: {why[:160]})"
        ) from exc


class SegmentedExecutor:
    """Runs ``model`` (static, topologically sorted) on feeds by name; see the module docstring."""

    def __init__(self, model: Model):
        import onnxruntime as ort
        from qonnx.util.basic import get_preferred_qonnx_opset

        self.model = model
        g = model.graph
        self.inits = {t.name: t for t in g.initializer}
        opsets = {o.domain: o.version for o in model.proto.opset_import}
        later_reads: list[set[str]] = []
        reads: set[str] = {o.name for o in g.output}
        for node in reversed(g.node):  # tensors read at or after each node (and graph outputs)
            later_reads.append(set(reads))
            reads |= {i for i in node.input if i}
        later_reads.reverse()  # later_reads[k]: read by nodes after k, or a graph output
        elem_types = {v.name: v.type.tensor_type.elem_type for c in (g.input, g.output, g.value_info) for v in c}

        opts = ort.SessionOptions()
        opts.log_severity_level = 4
        opts.intra_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        self.steps: list[_Run | _Custom] = []
        nodes = list(g.node)
        k = 0
        while k < len(nodes):
            node = nodes[k]
            if node.domain not in _STANDARD:
                self.steps.append(_Custom(node, opsets.get(node.domain, get_preferred_qonnx_opset())))
                k += 1
                continue
            end = k
            while end < len(nodes) and nodes[end].domain in _STANDARD:
                end += 1
            run = nodes[k:end]
            produced = {o for n in run for o in n.output if o}
            ins = list(dict.fromkeys(i for n in run for i in n.input if i and i not in produced))
            outs = [o for o in dict.fromkeys(o for n in run for o in n.output if o) if o in later_reads[end - 1]]

            def info(name: str) -> onnx.ValueInfoProto:
                return helper.make_tensor_value_info(name, elem_types.get(name) or TensorProto.FLOAT, None)

            consts = [self.inits[i] for i in ins if i in self.inits]
            feeds = [i for i in ins if i not in self.inits]
            graph = helper.make_graph(run, "run", [info(i) for i in feeds], [info(o) for o in outs], consts)
            proto = helper.make_model(
                graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items() if d in _STANDARD]
            )
            proto.ir_version = min(model.proto.ir_version or 8, 10) if model.proto.ir_version else 8
            session = ort_session(proto, opts)
            self.steps.append(_Run(session, feeds, outs))
            k = end

    def run(self, feeds: Mapping[str, np.ndarray], full_context: bool = False) -> dict[str, np.ndarray]:
        """Graph outputs by name (every tensor with ``full_context``)."""
        from qonnx.core.execute_custom_node import execute_custom_node
        from qonnx.util.basic import get_sanitize_quant_tensors

        from codesign.ir.indexed import IndexedWrapper

        view = IndexedWrapper(self.model.wrapper)
        sanitize = get_sanitize_quant_tensors() != 0
        g = self.model.graph
        context: dict[str, np.ndarray] = {name: self.model.initializer(name) for name in self.inits}
        context.update(feeds)
        if sanitize:
            context = _sanitized(view, list(context), context)
        for step in self.steps:
            if isinstance(step, _Run):
                values = ort_run(step.session, step.outputs, {i: context[i] for i in step.inputs})
                context.update(zip(step.outputs, values))
                produced = step.outputs
            else:
                for out in step.node.output:  # qonnx's custom ops write into a pre-made buffer
                    if out:
                        shape = self.model.shape(out)
                        context.setdefault(out, np.zeros(shape if shape is not None else (), dtype=np.float32))
                execute_custom_node(step.node, context, g, step.opset)
                produced = [o for o in step.node.output if o]
            if sanitize:
                context = _sanitized(view, produced, context)
        if full_context:
            return context
        return {o.name: context[o.name] for o in g.output}


__all__ = ["SegmentedExecutor"]
