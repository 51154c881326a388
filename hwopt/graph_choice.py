"""Float graph variants a build keeps only where they measure faster.

Some rewrites are exact but not always faster: onnxruntime's fused transformer kernels
(Attention, SkipLayerNormalization, BiasGelu) ran at 1.02x and 1.15x the latency of the
unfused graphs at sequence 128 on our 2-core hosts, and faster on other models. A target lists
such rewrites as *measured variants* (``Target.measured_variants``: a label and the passes that
run before the target's pipeline to make it). For each variant whose first pass changes the
model:

1. the variant's passes and then the target's whole pipeline run on the loaded model, every
   pass verified (checker, outputs against the previous step's within the pass's tolerance);
2. the variant races the pipeline's graph, interleaved, fresh sessions each race; it is kept
   only when it is faster by more than the noise margin in a majority of up to five races (the
   rule INT8 ships by: on a tie the graph with fewer rewrites wins, so repeated runs ship the
   same build);
3. the precision stage then quantizes every graph, so an INT8 form of the other graph can
   still win there (hwopt.quant.choose).

The report lists every variant with its ratios and why it was kept or not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx

from hwopt.errors import one_line
from hwopt.passes.pipeline import APPLIED, PipelineResult
from hwopt.session import ORT_ERRORS, Providers, create_session
from hwopt.timing import bench_session_options, race_sessions

# A variant must beat the pipeline's graph by more than this in a majority of up to RACES
# races (the rule INT8 ships by): one race in several lands 10% off on these hosts.
SPEED_MARGIN = 0.98
RACES = 5


@dataclasses.dataclass
class GraphVariant:
    label: str
    result: PipelineResult  # the variant's passes, then the target's pipeline, on the loaded model
    ratios: list[float] = dataclasses.field(default_factory=list)  # p50 / pipeline graph's p50, per race
    kept: bool = False
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "passes": [r.name for r in self.result.records],
            "nodes": len(self.result.model.graph.node),
            "latency_ratios": list(self.ratios),
            "kept": self.kept,
            "reason": self.reason,
        }


@dataclasses.dataclass
class GraphChoice:
    variants: list[GraphVariant]

    @property
    def chosen(self) -> GraphVariant | None:
        return next((v for v in self.variants if v.kept), None)

    def to_dict(self) -> dict[str, Any]:
        chosen = self.chosen
        return {"chosen": chosen.label if chosen else "pipeline", "variants": [v.to_dict() for v in self.variants]}


def applies(result: PipelineResult) -> bool:
    """Whether a variant's first pass (the rewrite it is about) changed the model."""
    return bool(result.records) and result.records[0].status == APPLIED


def choose_graph(
    base: onnx.ModelProto,
    variants: Mapping[str, PipelineResult],
    feeds: Mapping[str, np.ndarray],
    session_options: Mapping[str, Any],
    providers: Providers,
    seconds: float,
) -> GraphChoice:
    """Race each applicable variant against ``base``; at most one is kept (the fastest)."""
    choice = GraphChoice([GraphVariant(label, result) for label, result in variants.items()])
    options = bench_session_options(session_options)
    for variant in choice.variants:
        if not applies(variant.result):
            first = variant.result.records[0] if variant.result.records else None
            if first is None:
                variant.reason = "no pass"
            else:
                variant.reason = f"{first.name}: {first.status}" + (f" ({first.reason})" if first.reason else "")
            continue
        try:
            variant.ratios = _races(base, variant.result.model, feeds, options, providers, seconds)
        except ORT_ERRORS as exc:
            variant.reason = f"onnxruntime: {one_line(exc)}"
            continue
        if _wins(variant.ratios) > len(variant.ratios) // 2:
            variant.kept = True
            variant.reason = f"faster in most races: {_ratios(variant.ratios)} the pipeline's latency"
        else:
            variant.reason = (f"not faster than the pipeline's graph beyond noise ({_ratios(variant.ratios)}; "
                              f"needs < {SPEED_MARGIN:.2f}x in a majority of up to {RACES} races)")
    kept = [v for v in choice.variants if v.kept]
    for loser in sorted(kept, key=lambda v: float(np.median(v.ratios)))[1:]:
        loser.kept, loser.reason = False, loser.reason + "; another variant was faster"
    return choice


def _wins(ratios: Sequence[float]) -> int:
    return sum(r < SPEED_MARGIN for r in ratios)


def _races(base: onnx.ModelProto, variant: onnx.ModelProto, feeds, options, providers, seconds: float) -> list[float]:
    """p50(variant) / p50(base) per race, fresh sessions each race; stops once the variant has
    won or lost a majority of RACES."""
    ratios: list[float] = []
    majority = RACES // 2 + 1
    for _ in range(RACES):
        sessions = {"base": create_session(base, options, providers), "variant": create_session(variant, options, providers)}
        stats = race_sessions(sessions, feeds, seconds)
        ratios.append(stats["variant"].p50_ms / stats["base"].p50_ms)
        if _wins(ratios) >= majority or len(ratios) - _wins(ratios) >= majority:
            break
    return ratios


def _ratios(ratios: Sequence[float]) -> str:
    return ", ".join(f"{r:.3f}x" for r in ratios)
