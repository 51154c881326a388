"""What rewrite rules read off onnx-ir values and nodes: constants, static shapes, names.

One place for the questions every rule asks ("is this a constant, and what is it?", "is the
shape known?", "how do I name this node in a message?", "which name is still free?"), so the
answers are the same in every pass.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import onnx_ir as ir


def constant(value: ir.Value | None) -> np.ndarray | None:
    """The value of an initializer, a Constant node's output, or an Identity of either.

    None for anything computed at run time, and for an initializer that is also a graph
    input: a caller can override that one, so it is not a constant.
    """
    while value is not None:
        if value.is_graph_input():
            return None
        try:
            tensor = ir.convenience.get_const_tensor(value)
        except ValueError:  # a malformed or sparse Constant node: not a value to rely on
            return None
        if tensor is not None:
            return tensor.numpy()
        producer = value.producer()
        if producer is None or producer.op_type != "Identity" or producer.domain != "":
            return None
        value = producer.inputs[0]
    return None


def static_dims(value: ir.Value) -> list[int | None] | None:
    """Each dimension when known statically, None for the others; None when the rank is unknown."""
    if value.shape is None:
        return None
    return [dim if isinstance(dim, int) else None for dim in value.shape]


def static_shape(value: ir.Value) -> list[int] | None:
    """The whole shape when every dimension is known (from inference or from the constant)."""
    dims = static_dims(value)
    if dims is not None and all(d is not None for d in dims):
        return dims  # type: ignore[return-value]
    const = constant(value)
    return list(const.shape) if const is not None else None


def rank(value: ir.Value) -> int | None:
    return value.shape.rank() if value.shape is not None else None


def label(node: ir.Node) -> str:
    """A node's name, else its first output's name, else its operator."""
    return node.name or (node.outputs[0].name if node.outputs else "") or node.op_type


def describe(node: ir.Node) -> str:
    """``Reshape 'name'``: how decline reasons name a node."""
    return f"{node.op_type} '{label(node)}'"


def fresh_name(taken: Collection[str], base: str) -> str:
    """``base``, or ``base_<n>`` for the first n that is not in ``taken``.

    New initializers need names no initializer has: the rewriter replaces an initializer of the
    same name, which silently rewires every other node that read it.
    """
    name, n = base, 1
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    return name


def initializer_name(context, base: str) -> str | None:
    """A name for a new initializer of a rewrite rule's matched graph: one no value or
    initializer of that graph or of the main graph has; None inside a function, which cannot
    hold initializers. ``context`` is the rewriter's match context."""
    if isinstance(context.graph_or_function, ir.Function):
        return None
    taken: set[str] = set()
    for graph in {id(g): g for g in (context.graph_or_function, context.model.graph)}.values():
        taken.update(graph.initializers)
        taken.update(v.name for v in graph.inputs if v.name)
        taken.update(v.name for node in graph for v in node.outputs if v.name)
    return fresh_name(taken, base)
