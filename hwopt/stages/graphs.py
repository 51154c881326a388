"""The float graphs a build may ship: the target's verified pipeline, and its measured graph
variants kept only where they race faster (hwopt.graph_choice)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from hwopt import progress
from hwopt.errors import UsageError
from hwopt.graph_choice import GraphChoice, applies, choose_graph
from hwopt.passes.base import PassRecord
from hwopt.passes.pipeline import NOT_KEPT, PipelineResult
from hwopt.quant.choose import PIPELINE_GRAPH
from hwopt.stages.context import RunContext, session_options_for
from hwopt.targets import Target


def target_precision(target: Target, requested: str) -> str:
    """The precision a target builds for the requested one (``auto``: CPU measures; the GPU
    targets build FP16, their fast path)."""
    if requested == "auto":
        return "auto" if target.int8_formats else ("fp16" if "fp16" in target.precisions else "fp32")
    if requested not in target.precisions:
        raise UsageError(f"--precision {requested}: target {target.name} builds {', '.join(target.precisions)}"
                         + (f" ({target.precision_note})" if target.precision_note else ""))
    return requested


@dataclasses.dataclass
class FloatGraphs:
    """The float graphs a build may ship (the one to ship first) and how they were chosen."""

    result: PipelineResult  # the target's pipeline
    graphs: dict[str, PipelineResult]
    variants: dict[str, PipelineResult]
    choice: GraphChoice | None


def float_graphs(run: RunContext, target: Target, available: bool) -> FloatGraphs:
    """The target's verified pipeline and, where they apply and race faster, its graph variants."""
    options = run.options
    with progress.phase("passes"):
        result = run.pipeline_result(target)
    graphs, choice = {PIPELINE_GRAPH: result}, None
    with progress.phase("graph variants"):
        variants = run.graph_variants(target) if available else {}
        if any(applies(v) for v in variants.values()):
            choice = choose_graph(result.model, variants, run.feeds[0], session_options_for(target, options),
                                  target.providers(), seconds=options.race_seconds)
            graphs.update({label: v for label, v in variants.items() if applies(v)})
            if choice.chosen is not None:
                graphs = {choice.chosen.label: graphs[choice.chosen.label], **graphs}
    return FloatGraphs(result, graphs, variants, choice)


def records_for(result: PipelineResult, variants: Mapping[str, PipelineResult], graph: str,
                 choice: GraphChoice | None) -> list[PassRecord]:
    """The pass records of the graph the build ships; when that is the pipeline's, the applied
    first pass of each measured variant follows, marked not kept, with why."""
    if graph in variants:
        return list(variants[graph].records)
    records = list(result.records)
    reasons = {v.label: v.reason for v in choice.variants} if choice else {}
    for label, variant in variants.items():
        if applies(variant):
            first = variant.records[0]
            records.append(dataclasses.replace(first, status=NOT_KEPT, reason=f"{label} not shipped: {reasons[label]}"))
    return records

