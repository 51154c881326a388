"""Which execution provider runs each node: onnxruntime's own record of its partitioning.

With the session config entry ``session.record_ep_graph_assignment_info`` set, onnxruntime
keeps, per execution provider, the nodes it assigned (after its graph optimizations, so the
names are those of the optimized graph: fused nodes appear under their fused names). Nodes
on any provider but the target's first are the "fallback" a build must not hide.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import onnxruntime as ort

# The session config entry that makes onnxruntime keep the assignment.
RECORD_ASSIGNMENT = {"session.record_ep_graph_assignment_info": "1"}


def provider_assignment(session: ort.InferenceSession) -> dict[str, list[str]]:
    """Node names by execution provider, for a session created with assignment recording."""
    by_ep: dict[str, list[str]] = {}
    for subgraph in session.get_provider_graph_assignment_info():
        names = [node.name or node.op_type for node in subgraph.get_nodes()]
        by_ep.setdefault(subgraph.ep_name, []).extend(names)
    return by_ep


def fallback_nodes(assignment: Mapping[str, Sequence[str]], provider: str) -> list[str]:
    """The nodes of an assignment that did not go to ``provider`` (the one the session is for)."""
    return [node for ep, nodes in assignment.items() if ep != provider for node in nodes]
