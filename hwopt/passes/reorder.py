"""Reorder nodes into a topological order that lowers the peak of live activation bytes.

The order comes from hwopt.memory.schedule: the graph is split at cut nodes, each segment is
scheduled exactly by dynamic programming over downsets (beam search past a state budget),
a greedy order is tried too, and the model's own order is kept unless one of them lowers
the peak. Sizes come from shape inference at the run's concrete input shapes; buffers of
unknown size are left out (the memory report lists them).

Only the order of the nodes changes, so every output must be bit-identical: the pass's
tolerance is zero. onnxruntime follows the file order only with the session option
``execution_order = priority_based`` (its default order is a reverse depth-first walk that
runs the branch written last first); the cpu target sets it.
"""

from __future__ import annotations

import onnx_ir as ir

from hwopt.memory.liveness import build_memory_graph, peak_live_bytes
from hwopt.memory.schedule import best_schedule
from hwopt.model.shapes import infer_tensor_info
from hwopt.passes.base import BIT_EXACT, Pass, PassContext, PassResult
from hwopt.passes.registry import register


@register
class Reorder(Pass):
    name = "reorder"
    description = "memory-aware node order: lower peak live activation bytes (bit-exact)"
    tolerance = BIT_EXACT
    option_defaults = {"state_budget": 50_000, "beam_width": 32}

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        proto = ir.serde.serialize_model(model)
        tensors = infer_tensor_info(proto, ctx.input_specs).tensors
        graph = build_memory_graph(proto, tensors)
        winner, candidates = best_schedule(
            graph,
            state_budget=int(ctx.options.get("state_budget", 50_000)),
            beam_width=int(ctx.options.get("beam_width", 32)),
        )
        before = peak_live_bytes(graph)
        result = PassResult(model)
        result.metrics = {
            "peak_live_bytes_before": before,
            "peak_live_bytes_after": winner.peak,
            "method": winner.method,
            "candidates": {c.method: c.peak for c in candidates},
            "unknown_size_tensors": len(graph.unknown),
        }
        if winner.peak >= before:
            result.notes.append(f"kept the model's order: no order found below {before} peak bytes")
            return result
        nodes = list(model.graph)
        for node in nodes:
            model.graph.remove(node)
        model.graph.extend(nodes[i] for i in winner.order)
        result.rewrites["reordered"] = 1
        result.notes.append(
            f"peak live activation bytes {before} -> {winner.peak} "
            f"({(winner.peak - before) / before:+.1%}, {winner.method})"
        )
        return result
