"""Passes built from onnx-ir's own passes (dead-code removal, deduplication, CSE).

onnx-ir's passes report only "modified"; the wrapper measures what changed (nodes and
initializers, through subgraphs) so the report can say how much each one removed.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx_ir as ir

from hwopt.passes.base import Pass, PassContext, PassResult


def count_nodes(model: ir.Model) -> int:
    """Nodes of the main graph, its subgraphs and the model's functions."""
    graphs = [model.graph, *(function.graph for function in model.functions.values())]
    return sum(1 for graph in graphs for _ in ir.traversal.RecursiveGraphIterator(graph))


def count_initializers(model: ir.Model) -> int:
    return sum(len(graph.initializers) for graph in model.graphs())


class OnnxIrPass(Pass):
    """Base for passes that run a sequence of onnx-ir passes in place."""

    def ir_passes(self, ctx: PassContext) -> Sequence[ir.passes.PassBase]:
        raise NotImplementedError

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        result = PassResult(model)
        for ir_pass in self.ir_passes(ctx):
            nodes, inits = count_nodes(model), count_initializers(model)
            outcome = ir_pass(model)
            model = outcome.model
            if not outcome.modified:
                continue
            label = type(ir_pass).__name__.removesuffix("Pass")
            removed_nodes = nodes - count_nodes(model)
            removed_inits = inits - count_initializers(model)
            result.rewrites[label] = max(1, removed_nodes + removed_inits)
            if removed_nodes or removed_inits:
                result.notes.append(
                    f"{label}: {removed_nodes} node(s) and {removed_inits} initializer(s) removed"
                )
        result.model = model
        return result
