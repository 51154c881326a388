"""Which execution provider runs each node: onnxruntime's own record of its partitioning.

With the session config entry ``session.record_ep_graph_assignment_info`` set, onnxruntime
keeps, per execution provider, the nodes it assigned (after its graph optimizations, so the
names are those of the optimized graph: fused nodes appear under their fused names). Nodes
on any provider but the target's first are the "fallback" a build must not hide.
"""

from __future__ import annotations

import onnxruntime as ort


def provider_assignment(session: ort.InferenceSession) -> dict[str, list[str]]:
    """Node names by execution provider, for a session created with assignment recording."""
    by_ep: dict[str, list[str]] = {}
    for subgraph in session.get_provider_graph_assignment_info():
        names = [node.name or node.op_type for node in subgraph.get_nodes()]
        by_ep.setdefault(subgraph.ep_name, []).extend(names)
    return by_ep
