"""Move each initializer into the innermost If/Loop/Scan body that holds all of its uses.

An initializer of the main graph that only a branch of an If reads is, for onnxruntime, an
outer-scope value: every run of the If passes it into the branch's execution frame. Held by
the branch itself it is a plain constant of that branch. Nothing is computed differently;
the weights only move to where they are read. On silero VAD (opset 18, whose two If branches
hold the 8 kHz and 16 kHz networks) this is the difference between onnxslim's latency and
ours at the same node count.

An initializer read by the main graph, by two sibling bodies, or that is a graph input or
output stays where it is.
"""

from __future__ import annotations

import onnx_ir as ir

from hwopt.passes.base import Pass, PassContext, PassResult
from hwopt.passes.registry import register


def _parents(model: ir.Model) -> dict[int, ir.Graph]:
    """The enclosing graph of every subgraph, by id of the subgraph."""
    parents: dict[int, ir.Graph] = {}
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        for attr in node.attributes.values():
            if attr.type == ir.AttributeType.GRAPH:
                parents[id(attr.value)] = node.graph
            elif attr.type == ir.AttributeType.GRAPHS:
                for sub in attr.value:
                    parents[id(sub)] = node.graph
    return parents


def _chain(graph: ir.Graph, parents: dict[int, ir.Graph]) -> list[ir.Graph]:
    """``graph`` and its enclosing graphs, outermost first."""
    chain = [graph]
    while id(chain[-1]) in parents:
        chain.append(parents[id(chain[-1])])
    return chain[::-1]


def _innermost_common(chains: list[list[ir.Graph]]) -> ir.Graph:
    common = chains[0][0]
    for depth in range(min(len(c) for c in chains)):
        candidates = {id(c[depth]) for c in chains}
        if len(candidates) != 1:
            break
        common = chains[0][depth]
    return common


@register
class LocalizeInitializers(Pass):
    name = "localize_initializers"
    description = "move initializers into the If/Loop/Scan body that alone reads them"

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        result = PassResult(model)
        parents = _parents(model)
        if not parents:
            return result
        main = model.graph
        for value in list(main.initializers.values()):
            if value.is_graph_input() or value.is_graph_output() or not value.uses():
                continue
            chains = [_chain(node.graph, parents) for node, _ in value.uses()]
            home = _innermost_common(chains)
            if home is main:
                continue
            main.initializers.pop(value.name)
            home.register_initializer(value)
            result.rewrites["moved"] += 1
        return result
