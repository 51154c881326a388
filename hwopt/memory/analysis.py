"""A model's static memory picture at concrete input shapes: what the memory report shows.

For the model's own node order: weight, input and output bytes (accounted apart from the
arena), naive activation bytes (every buffer its own), peak live bytes (the most activation
bytes live at once), the lower bound (the same with sizes rounded to the arena alignment,
which no plan can beat), the planned arena (hwopt.memory.planner), and the buffers of
unknown size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx

from hwopt.feeds.inputs import InputSpec
from hwopt.memory.liveness import build_memory_graph, lifetimes, peak_live_bytes
from hwopt.memory.planner import DEFAULT_ALIGNMENT, MemoryPlan, lower_bound, naive_bytes, plan_memory
from hwopt.model.shapes import infer_tensor_info

MEMORY_PLAN_SCHEMA = "hwopt.memory_plan/1"


@dataclasses.dataclass
class MemoryAnalysis:
    weight_bytes: int
    input_bytes: int
    output_bytes: int
    naive_activation_bytes: int
    lower_bound_bytes: int
    peak_live_bytes: int
    planned_arena_bytes: int
    plan_strategy: str
    unknown_size_tensors: list[str]
    alignment: int
    plan: MemoryPlan
    node_labels: list[str]
    order: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "weight_bytes": self.weight_bytes,
            "input_bytes": self.input_bytes,
            "output_bytes": self.output_bytes,
            "naive_activation_bytes": self.naive_activation_bytes,
            "lower_bound_bytes": self.lower_bound_bytes,
            "peak_live_bytes": self.peak_live_bytes,
            "planned_arena_bytes": self.planned_arena_bytes,
            "plan_strategy": self.plan_strategy,
            "arena_over_bound": (
                self.planned_arena_bytes / self.lower_bound_bytes if self.lower_bound_bytes else 1.0
            ),
            "alignment": self.alignment,
            "unknown_size_tensors": list(self.unknown_size_tensors),
        }

    def plan_document(self, specs: Sequence[InputSpec]) -> dict[str, Any]:
        """``memory_plan.json``: every activation buffer's offset, size and first/last use."""
        step_node = [self.node_labels[v] for v in self.order]
        return {
            "schema": MEMORY_PLAN_SCHEMA,
            "inputs": [spec.to_dict() for spec in specs],
            "alignment": self.alignment,
            "strategy": self.plan_strategy,
            "arena_bytes": self.planned_arena_bytes,
            "lower_bound_bytes": self.lower_bound_bytes,
            "unknown_size_tensors": list(self.unknown_size_tensors),
            "tensors": [
                {
                    "tensor": p.name,
                    "offset": p.offset,
                    "size": p.size,
                    "first_use": p.start,
                    "last_use": p.end,
                    "first_node": step_node[p.start],
                    "last_node": step_node[p.end],
                }
                for p in self.plan.placements
            ],
        }


def analyze_memory(
    model: onnx.ModelProto,
    specs: Sequence[InputSpec],
    alignment: int = DEFAULT_ALIGNMENT,
    feeds: Mapping[str, np.ndarray] | None = None,
) -> MemoryAnalysis:
    """The memory picture of ``model`` in its own node order at the specs' shapes; ``feeds``
    (of those shapes) let a run fill in the sizes shape inference cannot give."""
    graph = build_memory_graph(model, infer_tensor_info(model, specs, feeds).tensors)
    order = graph.file_order()
    buffers = lifetimes(graph, order)
    plan = plan_memory(buffers, alignment)
    return MemoryAnalysis(
        weight_bytes=graph.weight_bytes,
        input_bytes=graph.input_bytes,
        output_bytes=graph.output_bytes,
        naive_activation_bytes=naive_bytes(buffers, alignment),
        lower_bound_bytes=lower_bound(buffers, alignment),
        peak_live_bytes=peak_live_bytes(graph, order),
        planned_arena_bytes=plan.arena_bytes,
        plan_strategy=plan.strategy,
        unknown_size_tensors=list(graph.unknown),
        alignment=alignment,
        plan=plan,
        node_labels=graph.labels,
        order=order,
    )
