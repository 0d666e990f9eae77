"""networkx view of the dataflow graph: nodes are ONNX nodes, edges are tensors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import networkx as nx

if TYPE_CHECKING:
    from codesign.ir.model import Model


def to_networkx(model: Model) -> nx.DiGraph:
    """DiGraph with one vertex per node (attrs: op, domain) and per graph input/output.

    Edges carry ``tensor``, ``shape`` and ``dtype``; constant inputs (weights) are not
    vertices, they are listed on the consuming node as ``params``.
    """
    g = nx.DiGraph(name=model.graph.name)
    for name in model.inputs:
        g.add_node(name, op="Input", domain="", params=[])
    for n in model.graph.node:
        params = [i for i in n.input if i and model.constant(i) is not None]
        g.add_node(n.name, op=n.op_type, domain=n.domain, params=params)
    for name in model.outputs:
        g.add_node(f"{name}:out", op="Output", domain="", params=[])
    src_of = {name: name for name in model.inputs}
    for n in model.graph.node:
        for o in n.output:
            src_of[o] = n.name

    def edge(tensor: str, dst: str) -> None:
        src = src_of.get(tensor)
        if src is not None:
            g.add_edge(src, dst, tensor=tensor, shape=model.shape(tensor), dtype=model.dtype(tensor).name)

    for n in model.graph.node:
        for i in n.input:
            if i and model.constant(i) is None:
                edge(i, n.name)
    for name in model.outputs:
        edge(name, f"{name}:out")
    return g


def to_dot(model: Model) -> str:
    """Graphviz DOT text of the dataflow graph (labels: op, name, output shape/dtype)."""
    g = to_networkx(model)
    lines = ["digraph codesign {", "  rankdir=TB;", '  node [shape=box, fontname="Helvetica", fontsize=10];']
    ids = {v: f"v{k}" for k, v in enumerate(g.nodes)}
    for v, attrs in g.nodes(data=True):
        label = f"{attrs['op']}\\n{_esc(v)}"
        lines.append(f'  {ids[v]} [label="{label}"];')
    for a, b, attrs in g.edges(data=True):
        shape = "x".join(str(d) for d in attrs["shape"]) if attrs["shape"] else "?"
        lines.append(f'  {ids[a]} -> {ids[b]} [label="{shape} {attrs["dtype"]}", fontsize=8];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def to_svg(model: Model) -> str:
    """A self-contained SVG picture of the dataflow graph (no graphviz needed).

    Vertices are placed by topological generation (one row each), left to right.
    """
    from xml.sax.saxutils import escape

    g = to_networkx(model)
    rows = [sorted(gen) for gen in nx.topological_generations(g)]
    box_w, box_h, gap_x, gap_y = 200, 44, 30, 40
    width = max(len(r) for r in rows) * (box_w + gap_x) + gap_x
    height = len(rows) * (box_h + gap_y) + gap_y
    pos: dict[str, tuple[float, float]] = {}
    for r, row in enumerate(rows):
        offset = (width - len(row) * (box_w + gap_x) + gap_x) / 2
        for c, v in enumerate(row):
            pos[v] = (offset + c * (box_w + gap_x), gap_y + r * (box_h + gap_y))
    out = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            'font-family="Helvetica,Arial,sans-serif" font-size="11">'
        ),
        (
            '<defs><marker id="a" markerWidth="8" markerHeight="8" refX="8" refY="4" orient="auto">'
            '<path d="M0,0 L8,4 L0,8 z" fill="#555"/></marker></defs>'
        ),
    ]
    for a, b, attrs in g.edges(data=True):
        (xa, ya), (xb, yb) = pos[a], pos[b]
        x1, y1, x2, y2 = xa + box_w / 2, ya + box_h, xb + box_w / 2, yb
        out.append(
            f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" stroke="#555" marker-end="url(#a)"/>'
        )
        shape = "x".join(str(d) for d in attrs["shape"]) if attrs["shape"] else "?"
        out.append(
            f'<text x="{(x1 + x2) / 2 + 4:.0f}" y="{(y1 + y2) / 2 + 4:.0f}" fill="#666" font-size="9">'
            f"{escape(shape)} {escape(attrs['dtype'])}</text>"
        )
    for v, attrs in g.nodes(data=True):
        x, y = pos[v]
        fill = {"Input": "#e8f4e8", "Output": "#f4e8e8"}.get(attrs["op"], "#eef2fb")
        out.append(
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{box_w}" height="{box_h}" rx="6" fill="{fill}" stroke="#345"/>'
        )
        out.append(f'<text x="{x + 8:.0f}" y="{y + 18:.0f}" font-weight="bold">{escape(attrs["op"])}</text>')
        out.append(f'<text x="{x + 8:.0f}" y="{y + 34:.0f}" fill="#333">{escape(v[:32])}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
