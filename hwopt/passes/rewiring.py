"""Rewiring consumers from one value to another while graph outputs keep their names.

Removing a node that passes its input through (an Identity, or a rule's no-op) means every
consumer of its output must read its input instead. A graph output's name is part of the
model's contract, so when the removed output is a graph output, the input takes over the
name; that is only possible when the input is a value computed in the same graph and is not
itself a graph input, initializer, outer-scope value or another graph output.
"""

from __future__ import annotations

from collections.abc import Collection

import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass

from hwopt.passes.base import Declined
from hwopt.passes.irpass import count_nodes
from hwopt.passes.values import describe


def rename_blocker(source: ir.Value, output: ir.Value) -> str | None:
    """Why ``output`` cannot be replaced by ``source`` everywhere, or None when it can.

    An internal value can always be replaced. A graph output must keep its name, so ``source``
    takes that name; that is only possible for a value computed by a node of the same graph
    that is not itself a graph output.
    """
    if not output.is_graph_output():
        return None
    where = f"straight to graph output '{output.name}', whose name must stay"
    if source.is_graph_input():
        return f"it connects graph input '{source.name}' {where}"
    if source.is_initializer():
        return f"it connects initializer '{source.name}' {where}"
    if source.is_graph_output():
        return f"it connects graph output '{source.name}' {where}"
    producer = source.producer()
    if producer is None or producer.graph is not output.graph:
        return f"it connects outer-scope value '{source.name}' {where}"
    return None


def _replace(output: ir.Value, source: ir.Value, node: ir.Node) -> None:
    """Rewire every use of ``output`` (the Identity ``node``'s) to ``source`` and drop ``node``."""
    if output.is_graph_output():
        # The graph output's declared type and shape are the model's contract; keep them.
        name = output.name
        if output.type is not None:
            source.type = output.type
        if output.shape is not None:
            source.shape = output.shape
        output.replace_all_uses_with(source, replace_graph_outputs=True)
        node.graph.remove(node, safe=True)
        source.name = name
        return
    if source.type is None:
        source.type = output.type
    if source.shape is None:
        source.shape = output.shape
    output.replace_all_uses_with(source)
    node.graph.remove(node, safe=True)


def eliminate_identities(
    model: ir.Model, spare: Collection[ir.Node] = ()
) -> tuple[int, list[Declined]]:
    """Remove every Identity node of the model (subgraphs and functions too) that can go, except
    those in ``spare``.

    onnx_ir's ``IdentityEliminationPass`` follows the same rules but renames the source even
    when it is another graph output (two outputs then share one name) or a value of an outer
    graph (it renames the parent's value, or raises when that value is the parent's output).

    Returns how many were removed and, for each one kept, why.
    """
    removed, kept = 0, []
    for node in identity_nodes(model):
        if node in spare:
            continue
        source, output = node.inputs[0], node.outputs[0]
        reason = "its input is missing" if source is None else rename_blocker(source, output)
        if reason is not None:
            kept.append(Declined("RemoveIdentity", describe(node), f"{describe(node)} kept: {reason}"))
            continue
        _replace(output, source, node)
        removed += 1
    return removed, kept


def identity_nodes(model: ir.Model) -> list[ir.Node]:
    """Every Identity node of the model, its subgraphs and its functions."""
    graphs = [model.graph, *(function.graph for function in model.functions.values())]
    return [
        node
        for graph in graphs
        for node in ir.traversal.RecursiveGraphIterator(graph)
        if node.op_type == "Identity" and node.domain == ""
    ]


def remove_unused_nodes(model: ir.Model) -> int:
    """Remove the nodes whose outputs nothing uses (onnx_ir's pass); returns how many went."""
    before = count_nodes(model)
    RemoveUnusedNodesPass()(model)
    return before - count_nodes(model)
